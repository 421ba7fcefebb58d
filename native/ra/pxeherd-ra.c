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
 * Usage: pxeherd-ra IFNAME        (needs CAP_NET_RAW; runs until killed)
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
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: pxeherd-ra IFNAME\n");
    return 2;
  }
  const char *ifname = argv[1];
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
  struct ipv6_mreq mreq;
  memset(&mreq, 0, sizeof mreq);
  inet_pton(AF_INET6, "ff02::2", &mreq.ipv6mr_multiaddr);
  mreq.ipv6mr_interface = ifindex;
  if (setsockopt(s, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0) {
    fprintf(stderr, "pxeherd-ra: join ff02::2 on %s: %s\n", ifname, strerror(errno));
    return 1;
  }
  fprintf(stderr, "pxeherd-ra: answering router solicitations on %s\n", ifname);

  struct nd_router_advert ra;
  memset(&ra, 0, sizeof ra);
  ra.nd_ra_type = ND_ROUTER_ADVERT;
  ra.nd_ra_curhoplimit = 0;
  ra.nd_ra_flags_reserved = 0; /* M=0 O=0: no DHCPv6 */
  ra.nd_ra_router_lifetime = 0; /* not a default router */

  struct sockaddr_in6 all_nodes;
  memset(&all_nodes, 0, sizeof all_nodes);
  all_nodes.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "ff02::1", &all_nodes.sin6_addr);
  all_nodes.sin6_scope_id = ifindex;

  unsigned char buf[1500];
  struct timespec last = {0, 0};
  for (;;) {
    struct sockaddr_in6 from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      if (errno == EINTR) continue;
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
    if (sendto(s, &ra, sizeof ra, 0, (struct sockaddr *)&all_nodes, sizeof all_nodes) < 0)
      fprintf(stderr, "pxeherd-ra: send: %s\n", strerror(errno));
  }
}
