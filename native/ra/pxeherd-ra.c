/*
 * pxeherd-ra: answers IPv6 Router Solicitations on one interface with a minimal Router
 * Advertisement (no prefixes, router lifetime 0, M and O flags clear).
 *
 * Why: iPXE configures IPv4 (DHCP) and IPv6 (router discovery) together and, on an IPv4-only
 * provisioning network, waits ~16 s for a router advertisement that never comes before it
 * fetches anything. An advertisement that says "no router, no DHCPv6, no prefixes" ends that
 * wait at once without giving any host an IPv6 route or address. Node.js has no raw sockets,
 * hence this small helper, which pxeherd starts and stops with its DHCP server.
 *
 * With DHCPv6 serving the link (pxeherd's dhcp6.mode: full), the advertisement carries what
 * hosts need to use it (RFC 4861 4.2, 4.6.2): -M (managed: addresses from DHCPv6), -O (other
 * configuration from DHCPv6), -p PREFIX/LEN (on-link prefix), -A (autonomous flag on it, for
 * hosts without a DHCPv6 client), -l SECONDS (the prefix's lifetimes). Then it also sends an
 * unsolicited advertisement at start and every 10 s, as a router does.
 *
 * Usage: pxeherd-ra [-M] [-O] [-p PREFIX/LEN [-A] [-l SECONDS]] IFNAME
 *        (needs CAP_NET_RAW; runs until killed)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void usage(void) {
  fprintf(stderr, "usage: pxeherd-ra [-M] [-O] [-p PREFIX/LEN [-A] [-l SECONDS]] IFNAME\n");
}

int main(int argc, char **argv) {
  int managed = 0, other = 0, autonomous = 0, opt;
  const char *prefix = NULL;
  unsigned long lifetime = 3600;
  while ((opt = getopt(argc, argv, "MOp:Al:")) != -1) {
    switch (opt) {
      case 'M': managed = 1; break;
      case 'O': other = 1; break;
      case 'A': autonomous = 1; break;
      case 'p': prefix = optarg; break;
      case 'l': lifetime = strtoul(optarg, NULL, 10); break;
      default: usage(); return 2;
    }
  }
  if (optind != argc - 1) {
    usage();
    return 2;
  }
  const char *ifname = argv[optind];
  /* Prefix information option (RFC 4861 4.6.2), filled in when -p is given. */
  struct nd_opt_prefix_info pi;
  memset(&pi, 0, sizeof pi);
  if (prefix) {
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(prefix, '/');
    size_t alen = slash ? (size_t)(slash - prefix) : 0;
    int plen = slash ? atoi(slash + 1) : -1;
    if (!slash || alen >= sizeof addr || plen < 0 || plen > 128) {
      fprintf(stderr, "pxeherd-ra: -p wants PREFIX/LEN such as fd00:77::/64, not %s\n", prefix);
      return 2;
    }
    memcpy(addr, prefix, alen);
    addr[alen] = 0;
    if (inet_pton(AF_INET6, addr, &pi.nd_opt_pi_prefix) != 1) {
      fprintf(stderr, "pxeherd-ra: -p: %s is not an IPv6 address\n", addr);
      return 2;
    }
    pi.nd_opt_pi_type = ND_OPT_PREFIX_INFORMATION;
    pi.nd_opt_pi_len = 4; /* in units of 8 bytes */
    pi.nd_opt_pi_prefix_len = (uint8_t)plen;
    pi.nd_opt_pi_flags_reserved = ND_OPT_PI_FLAG_ONLINK | (autonomous ? ND_OPT_PI_FLAG_AUTO : 0);
    pi.nd_opt_pi_valid_time = htonl((uint32_t)lifetime);
    pi.nd_opt_pi_preferred_time = htonl((uint32_t)lifetime);
  }
  unsigned ifindex = if_nametoindex(ifname);
  if (ifindex == 0) {
    fprintf(stderr, "pxeherd-ra: no interface %s\n", ifname);
    return 1;
  }
  int s = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  if (s < 0) {
    fprintf(stderr, "pxeherd-ra: raw ICMPv6 socket: %s (needs root or CAP_NET_RAW)\n", strerror(errno));
    return 1;
  }
  /* Only router solicitations reach us. */
  struct icmp6_filter filter;
  ICMP6_FILTER_SETBLOCKALL(&filter);
  ICMP6_FILTER_SETPASS(ND_ROUTER_SOLICIT, &filter);
  setsockopt(s, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
  if (setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, ifname, strlen(ifname)) < 0) {
    fprintf(stderr, "pxeherd-ra: bind to %s: %s\n", ifname, strerror(errno));
    return 1;
  }
  /* Neighbour discovery messages must carry hop limit 255 (RFC 4861 6.1.2). */
  int hops = 255;
  setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops);
  setsockopt(s, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops);
  setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex);
  /* Our own advertisements must not loop back into this host's stack: with the A flag the
   * kernel would configure itself a second (SLAAC) address on the served interface, and
   * replies sent from it (TFTP DATA) would not come from the address clients asked. */
  int loop = 0;
  setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop);
  struct ipv6_mreq mreq;
  memset(&mreq, 0, sizeof mreq);
  inet_pton(AF_INET6, "ff02::2", &mreq.ipv6mr_multiaddr);
  mreq.ipv6mr_interface = ifindex;
  if (setsockopt(s, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0) {
    fprintf(stderr, "pxeherd-ra: join ff02::2 on %s: %s\n", ifname, strerror(errno));
    return 1;
  }
  fprintf(stderr, "pxeherd-ra: answering router solicitations on %s%s%s%s%s%s\n", ifname, managed ? " (managed" : " (", other ? " other" : "",
          prefix ? " prefix " : "", prefix ? prefix : "", autonomous ? " autonomous)" : ")");

  unsigned char adv[sizeof(struct nd_router_advert) + sizeof(struct nd_opt_prefix_info)];
  struct nd_router_advert ra;
  memset(&ra, 0, sizeof ra);
  ra.nd_ra_type = ND_ROUTER_ADVERT;
  ra.nd_ra_curhoplimit = 0;
  /* M=0 O=0 unless DHCPv6 serves the link */
  ra.nd_ra_flags_reserved = (managed ? ND_RA_FLAG_MANAGED : 0) | (other ? ND_RA_FLAG_OTHER : 0);
  ra.nd_ra_router_lifetime = 0; /* not a default router: everything is on-link */
  memcpy(adv, &ra, sizeof ra);
  size_t adv_len = sizeof ra;
  if (prefix) {
    memcpy(adv + adv_len, &pi, sizeof pi);
    adv_len += sizeof pi;
    /* Periodic unsolicited advertisements (RFC 4861 6.2.4), so hosts that did not ask learn the prefix. */
    struct timeval tv = {10, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  struct sockaddr_in6 all_nodes;
  memset(&all_nodes, 0, sizeof all_nodes);
  all_nodes.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "ff02::1", &all_nodes.sin6_addr);
  all_nodes.sin6_scope_id = ifindex;

  unsigned char buf[1500];
  struct timespec last = {0, 0};
  if (prefix && sendto(s, adv, adv_len, 0, (struct sockaddr *)&all_nodes, sizeof all_nodes) < 0)
    fprintf(stderr, "pxeherd-ra: send: %s\n", strerror(errno));
  for (;;) {
    struct sockaddr_in6 from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (sendto(s, adv, adv_len, 0, (struct sockaddr *)&all_nodes, sizeof all_nodes) < 0)
          fprintf(stderr, "pxeherd-ra: send: %s\n", strerror(errno));
        continue;
      }
      fprintf(stderr, "pxeherd-ra: receive: %s\n", strerror(errno));
      return 1;
    }
    if (n < 8 || buf[0] != ND_ROUTER_SOLICIT || buf[1] != 0) continue; /* malformed: ignore */
    /* One multicast answer per 100 ms serves a storm of solicitations (RFC 4861 6.2.6 rate limit). */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000;
    if (ms < 100) continue;
    last = now;
    if (sendto(s, adv, adv_len, 0, (struct sockaddr *)&all_nodes, sizeof all_nodes) < 0)
      fprintf(stderr, "pxeherd-ra: send: %s\n", strerror(errno));
  }
}
