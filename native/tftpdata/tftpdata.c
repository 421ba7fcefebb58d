/*
 * pxeherd's native TFTP data path (Linux, N-API, plain C).
 *
 * Why: a lock-step TFTP transfer is one DATA out and one ACK in per block, so its speed is
 * the cost of a datagram round trip through the server. In Node that is a libuv poll, a
 * JS callback and a send through the dgram layer: ~2x the cost of dnsmasq's C loop at
 * 512-byte blocks. Here one C thread (tftp.threads for up to 4) runs an epoll loop over
 * the transfers doing exactly what the RFC needs: sendmmsg() of a window (one
 * syscall for up to 64 blocks), recv() of the ACK. A bounded number of threads, not one
 * per transfer: a thousand runnable threads would take the CPU from the server's own
 * thread (DHCP, HTTP) and from anything else on the machine when many nodes boot at once.
 *
 * The server's thread keeps every decision (parsing, paths, options, events); this only
 * pumps DATA for one transfer whose content is already in memory (a Buffer the JS side
 * keeps referenced until the end callback), with the same state machine as session.ts:
 * OACK handshake, RFC 7440 windows, 16-bit block rollover, duplicate ACKs never answered
 * (no sorcerer's apprentice), retransmission on timeout with a bounded retry count, ERROR
 * from the client ends the transfer. Its outcome goes back through a thread-safe function.
 *
 * Ownership: the transfer struct is freed on the JS thread, in the end callback, after the
 * worker has taken its socket out of epoll and the JS side has closed it. JS may call
 * abort() any time before it has seen the end callback (both run on the JS thread, so they
 * never race with the free).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <node_api.h>

#define MAX_WINDOW 64
#define ERRPKT_MAX 600

/*
 * Waiting for an ACK by polling (spinning) instead of sleeping saves this thread's wake-up,
 * which on an idle machine (deep CPU idle states, or a VM whose idle vCPUs halt) costs more
 * than a whole loopback round trip: measured here, a UDP ping-pong takes 80 us with idle
 * cores and 7 us with a busy one. But when the cores are busy, a spinning thread takes the
 * CPU the client or the rest of the server needs, and everything gets 3x slower. Neither
 * can be known in advance, so each transfer measures: it runs in its better mode and now and
 * then tries the other for a few blocks, keeping whichever gave the shorter round trips
 * (struct spin_policy). Spinning is never tried while more transfers run than spare cores.
 */
#define SPIN_US 200.0
#define PROBE_BLOCKS 32
#define FIRST_RUN_BLOCKS 64
#define MAX_RUN_BLOCKS 16384
typedef struct spin_policy {
  int best;            /* 1 = spin in the current run phase */
  int probing;         /* the current phase tries !best */
  uint64_t left;       /* advancing ACKs left in this phase */
  uint64_t run_len;    /* length of the next run phase; doubles while `best` keeps winning */
  double sum;          /* round trips measured in this phase, ms */
  uint64_t n;
  double best_mean;    /* mean round trip of the last run phase */
} spin_policy_t;

/*
 * The same choice for a worker with many transfers: before it sleeps in epoll_wait it may poll
 * (epoll_wait with no timeout) for SPIN_US. Why: with tftp.streams, a few dozen lock-step
 * transfers leave the worker idle between ACKs, so it sleeps and is woken for nearly every
 * ACK. On a machine with idle cores each wake-up costs more than the ACK's work (a UDP
 * ping-pong here: 80 us with idle cores, 7 us with busy ones), and the scheduler may wake the
 * worker on the core of the client that sent the ACK, where the two (the worker at nice 5)
 * take turns while another core idles. Measured on the quiet machine: all-at-once dnsmasq
 * finished a 1000-node stage sooner than pxeherd's 32 streams, while under load pxeherd
 * needs less CPU per transfer than dnsmasq (BENCHMARKS.md, tftp21c): the quiet-machine tail
 * is idle time, not work. A polling worker keeps its own core and answers at once. (The
 * quiet-machine gain is expected, not yet measured.) On a busy machine polling takes CPU from the clients and
 * everything slows down, and the poller's own round trips do not show it (measured under
 * load: a round-trip probe like a lone transfer's picked polling, which then cost the storm
 * 15-25 % more server CPU and a longer stage): so 'auto' polls only while the machine has
 * no more runnable threads than cores (/proc/loadavg's running count, read every
 * IDLE_CHECK_MS), i.e. while the polling takes a core nobody else wants. setSpin() can force
 * a mode (tests, and to compare).
 */
#define IDLE_CHECK_MS 20.0
enum spin_mode { SPIN_AUTO = 0, SPIN_OFF = 1, SPIN_ON = 2 };
static atomic_int spin_mode;
static atomic_uint spin_switches;   /* times a worker's 'auto' decision changed */
static int ncores;
static atomic_ullong worker_wakes;  /* epoll_waits that slept (multi-transfer workers) */
static atomic_ullong worker_polls;  /* polling spells that found an event before SPIN_US */

static atomic_int active_transfers;
static int spin_max_active; /* cores - 1, set at load */

/*
 * Streams (tftp.streams, set by setStreams): at most `gate_streams` transfers are sent at once;
 * later ones wait in arrival order, here on the worker, not on the server's JavaScript thread:
 * a stream is handed on the moment a transfer ends or has held it `gate_hold_ms`, without a
 * round trip through an event loop that is also answering DHCP, HTTP and init when a whole
 * rack boots (measured: the whole-path storm's TFTP stage was 10x the stage alone). A request
 * waits at most `gate_wait_ms`, then starts anyway. 0 streams = every transfer starts at once.
 */
static atomic_int gate_streams, gate_hold_ms, gate_wait_ms;
static atomic_int streams_held;   /* transfers holding a stream now */
static atomic_int streams_queued; /* handed over, not started yet */
static atomic_uint holds_expired; /* streams given up after gate_hold_ms */

enum status { ST_OK = 0, ST_TIMEOUT, ST_CLIENT_ERROR, ST_ABORTED, ST_SOCKET_ERROR };
static const char *status_names[] = { "ok", "timeout", "client-error", "aborted", "socket-error" };

typedef struct transfer {
  /* Set on the JS thread before the transfer is handed to its worker; read-only afterwards. */
  int fd;
  const uint8_t *data;
  size_t size;
  uint32_t blksize;
  uint32_t windowsize;
  uint32_t timeout_ms;
  uint32_t retries;
  int backoff; /* 1, 2, then 4 x timeout_ms between retransmissions of one window (session.ts) */
  uint8_t oack[ERRPKT_MAX];
  size_t oack_len; /* 0 = no OACK: start with DATA block 1 */
  uint8_t timeout_pkt[ERRPKT_MAX];
  size_t timeout_pkt_len;
  napi_ref content_ref;
  napi_ref callback_ref; /* the transfer's JS callback */
  napi_threadsafe_function tsfn; /* its environment's one queue to JS (shared by all transfers) */

  /* abort(): written on the JS thread, read by the worker. */
  atomic_int abort_requested;
  uint8_t abort_pkt[ERRPKT_MAX];
  size_t abort_pkt_len;

  /* Outcome: written by the worker before it posts the end, read on the JS thread. */
  enum status status;
  int sys_errno;
  uint64_t acked_blocks;
  int during_negotiation;
  double duration_ms;
  uint32_t retransmits, duplicate_acks, bad_packets;
  uint64_t data_packets;
  uint8_t client_err[ERRPKT_MAX];
  size_t client_err_len;
  int ended; /* set on the JS thread once the end callback ran */

  /* Transfer state, owned by its worker thread. */
  struct worker *worker;
  struct transfer *prev, *next; /* the worker's list (pending queue, then active list) */
  uint64_t total, acked, sent;
  int awaiting_oack, progressed;
  uint32_t retries_used;
  double start, last_send;
  spin_policy_t sp;
  int gated;        /* waits for a stream (the gate was on when it was handed over) */
  int holds_stream;
  double queued_at; /* when its worker took it (gated transfers) */
  double last_progress; /* start, then each ACK that moved the transfer on */
} transfer_t;

typedef struct worker {
  pthread_t thread;
  int ep;  /* epoll over the transfers' sockets */
  int efd; /* eventfd: new transfers or an abort */
  pthread_mutex_t mu;
  transfer_t *pending; /* handed over by the JS thread, under mu */
  transfer_t *active;  /* owned by the worker thread */
  transfer_t *queue, *queue_tail; /* gated transfers waiting for a stream, arrival order; worker-owned */
  atomic_int count;    /* pending + active, for picking the least busy worker */
  atomic_int spare_core; /* 'auto': at the last look, no more runnable threads than cores (read by streamStats) */
  double next_idle_check;
} worker_t;

#define MAX_WORKERS 4
static worker_t workers[MAX_WORKERS];
static int nworkers;
static int wanted_workers; /* setWorkers(); 0 = one */

/* What a worker posts to JS: progress (the client acknowledged something) or end. */
enum post_kind { POST_PROGRESS = 1, POST_END = 2, POST_STARTED = 3 };
typedef struct post { enum post_kind kind; transfer_t *t; } post_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Poll for a datagram without sleeping for at most SPIN_US; -1/EAGAIN when none came. */
static ssize_t spin_recv(int fd, uint8_t *buf, size_t len) {
  const double until = now_ms() + SPIN_US / 1e3;
  for (;;) {
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    if (now_ms() >= until) return -1;
  }
}

static void post(transfer_t *t, enum post_kind kind) {
  post_t *p = malloc(sizeof *p);
  if (!p) return; /* out of memory: a lost progress note is harmless; see end below */
  p->kind = kind;
  p->t = t;
  napi_call_threadsafe_function(t->tsfn, p, napi_tsfn_blocking);
}

/* Send blocks [from, to] (absolute, 1-based) in one sendmmsg; returns 0 or an errno. */
static int send_window(transfer_t *t, uint64_t from, uint64_t to) {
  struct mmsghdr msgs[MAX_WINDOW];
  struct iovec iov[MAX_WINDOW][2];
  uint8_t hdr[MAX_WINDOW][4];
  unsigned n = 0;
  for (uint64_t b = from; b <= to; b++, n++) {
    uint64_t off = (b - 1) * t->blksize;
    size_t len = off >= t->size ? 0 : (t->size - off < t->blksize ? t->size - off : t->blksize);
    hdr[n][0] = 0;
    hdr[n][1] = 3;
    hdr[n][2] = (uint8_t)((b >> 8) & 0xff);
    hdr[n][3] = (uint8_t)(b & 0xff);
    iov[n][0].iov_base = hdr[n];
    iov[n][0].iov_len = 4;
    iov[n][1].iov_base = (void *)(t->data + (len ? off : 0));
    iov[n][1].iov_len = len;
    memset(&msgs[n], 0, sizeof msgs[n]);
    msgs[n].msg_hdr.msg_iov = iov[n];
    msgs[n].msg_hdr.msg_iovlen = 2;
  }
  unsigned done = 0;
  while (done < n) {
    int r = sendmmsg(t->fd, msgs + done, n - done, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      /* A full send buffer loses the rest of the window like a lossy link would:
         the client's ACK (or our timer) resends it. */
      if (errno == EAGAIN || errno == ENOBUFS) break;
      return errno;
    }
    done += (unsigned)r;
  }
  t->data_packets += n;
  return 0;
}

static void send_raw(transfer_t *t, const uint8_t *pkt, size_t len) {
  if (len) (void)send(t->fd, pkt, len, MSG_DONTWAIT);
}

/* One advancing ACK came `rtt_ms` after its send: account it, and end the phase when due. */
static void spin_observe(spin_policy_t *p, double rtt_ms) {
  p->sum += rtt_ms;
  p->n++;
  if (--p->left > 0) return;
  double mean = p->sum / (double)p->n;
  p->sum = 0;
  p->n = 0;
  if (!p->probing) {
    /* End of a run in the best mode: probe the other one (spinning only with a spare core). */
    p->best_mean = mean;
    p->probing = p->best || atomic_load_explicit(&active_transfers, memory_order_relaxed) <= spin_max_active;
    p->left = p->probing ? PROBE_BLOCKS : p->run_len;
    return;
  }
  /* End of a probe: a clearly better other mode takes over; otherwise probe more rarely. */
  p->probing = 0;
  if (mean < p->best_mean * 0.8) {
    p->best = !p->best;
    p->run_len = FIRST_RUN_BLOCKS * 4;
  } else if (p->run_len < MAX_RUN_BLOCKS) {
    p->run_len *= 2;
  }
  p->left = p->run_len;
}

/* Fill in the outcome, leave the worker, and tell JS (which closes the socket and frees t). */
static void release_stream(transfer_t *t) {
  if (!t->holds_stream) return;
  t->holds_stream = 0;
  atomic_fetch_sub(&streams_held, 1);
}

static void finish(transfer_t *t, enum status st, int err) {
  worker_t *w = t->worker;
  release_stream(t);
  epoll_ctl(w->ep, EPOLL_CTL_DEL, t->fd, NULL);
  if (t->prev) t->prev->next = t->next; else w->active = t->next;
  if (t->next) t->next->prev = t->prev;
  atomic_fetch_sub(&w->count, 1);
  atomic_fetch_sub(&active_transfers, 1);
  t->status = st;
  t->sys_errno = err;
  t->acked_blocks = t->acked;
  t->during_negotiation = t->awaiting_oack;
  t->duration_ms = now_ms() - t->start;
  post(t, POST_END);
}

/* Send the window after the last acknowledged block; 0, or the transfer ended. */
static int send_next_window(transfer_t *t) {
  uint64_t to = t->acked + t->windowsize < t->total ? t->acked + t->windowsize : t->total;
  int err = send_window(t, t->acked + 1, to);
  if (err) { finish(t, ST_SOCKET_ERROR, err); return -1; }
  if (to > t->sent) t->sent = to;
  t->last_send = now_ms();
  return 0;
}

/* Poll before sleeping, for a worker with more than one active transfer (see IDLE_CHECK_MS)? */
static int worker_polls_now(worker_t *w) {
  int mode = atomic_load_explicit(&spin_mode, memory_order_relaxed);
  if (mode != SPIN_AUTO) return mode == SPIN_ON;
  return atomic_load_explicit(&w->spare_core, memory_order_relaxed);
}

/* Threads runnable on the machine now (this one included): the 4th field of /proc/loadavg,
   "running/total"; -1 if unknown. */
static int procs_running(void) {
  char buf[256];
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  double l1, l5, l15;
  int running, total;
  return sscanf(buf, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &total) == 5 ? running : -1;
}

/* 'auto': look again every IDLE_CHECK_MS whether polling would take a core nobody else wants. */
static void update_spare_core(worker_t *w, double now) {
  if (now < w->next_idle_check) return;
  w->next_idle_check = now + IDLE_CHECK_MS;
  if (atomic_load_explicit(&spin_mode, memory_order_relaxed) != SPIN_AUTO) return;
  int running = procs_running();
  int spare = running > 0 && running <= ncores && nworkers < ncores;
  if (spare != atomic_load_explicit(&w->spare_core, memory_order_relaxed)) atomic_fetch_add(&spin_switches, 1);
  atomic_store_explicit(&w->spare_core, spare, memory_order_relaxed);
}

static void progress(transfer_t *t) {
  if (!t->progressed) { t->progressed = 1; post(t, POST_PROGRESS); }
}

/* One datagram from the client (n bytes in buf) at time `now`. */
static void on_packet(transfer_t *t, const uint8_t *buf, ssize_t n, double now) {
  if (n >= 4 && buf[0] == 0 && buf[1] == 4) {
    uint16_t blk = (uint16_t)((buf[2] << 8) | buf[3]);
    if (t->awaiting_oack) {
      if (blk != 0) { t->bad_packets++; return; }
      t->awaiting_oack = 0;
      t->retries_used = 0;
      t->last_progress = now;
      progress(t);
      send_next_window(t);
      return;
    }
    /* The nearest block at or after the last acknowledged one; beyond what was sent it is
       stale (a delayed ACK from before a rollover) and ignored like a duplicate. Duplicates
       are never answered with data (no sorcerer's apprentice): our timer resends. */
    uint64_t abs = t->acked + (uint16_t)(blk - (uint16_t)t->acked);
    if (abs > t->sent || abs == t->acked) { t->duplicate_acks++; return; }
    t->acked = abs;
    t->retries_used = 0;
    t->last_progress = now;
    spin_observe(&t->sp, now - t->last_send);
    progress(t);
    if (t->acked == t->total) { finish(t, ST_OK, 0); return; }
    send_next_window(t);
    return;
  }
  if (n >= 2 && buf[0] == 0 && buf[1] == 5) {
    memcpy(t->client_err, buf, (size_t)n);
    t->client_err_len = (size_t)n;
    finish(t, ST_CLIENT_ERROR, 0);
    return;
  }
  t->bad_packets++;
}

/* Aborts and retransmission deadlines. */
static void check(transfer_t *t, double now) {
  if (atomic_load_explicit(&t->abort_requested, memory_order_acquire)) {
    send_raw(t, t->abort_pkt, t->abort_pkt_len);
    finish(t, ST_ABORTED, 0);
    return;
  }
  /* A client silent for gate_hold_ms (gone, or its answers lost) gives its stream to the next
     in line and finishes outside the streams on its own clock. A client that keeps answering
     keeps its stream however slowly it goes: expiring streams by age instead let a loaded
     machine's slow transfers all expire, and the line became all-at-once (measured: p50 at
     0.95-1.0 of the last transfer, as without streams). */
  if (t->holds_stream && now - t->last_progress >= atomic_load_explicit(&gate_hold_ms, memory_order_relaxed)) {
    release_stream(t);
    atomic_fetch_add(&holds_expired, 1);
  }
  double interval = t->backoff ? (double)t->timeout_ms * (1u << (t->retries_used < 2 ? t->retries_used : 2)) : t->timeout_ms;
  if (now - t->last_send < interval) return;
  if (t->retries_used >= t->retries) {
    send_raw(t, t->timeout_pkt, t->timeout_pkt_len);
    finish(t, ST_TIMEOUT, 0);
    return;
  }
  t->retries_used++;
  t->retransmits++;
  if (t->awaiting_oack) {
    send_raw(t, t->oack, t->oack_len);
    t->last_send = now_ms();
  } else {
    send_next_window(t);
  }
}

/* A new transfer: into epoll and the active list, then its OACK or first window. */
static void begin(worker_t *w, transfer_t *t) {
  t->prev = NULL;
  t->next = w->active;
  if (w->active) w->active->prev = t;
  w->active = t;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = t };
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, t->fd, &ev) != 0) { finish(t, ST_SOCKET_ERROR, errno); return; }
  t->start = t->last_send = t->last_progress = now_ms();
  if (t->gated) post(t, POST_STARTED);
  if (t->awaiting_oack) send_raw(t, t->oack, t->oack_len);
  else send_next_window(t);
}

/* A gated transfer aborted (server stopping, superseded) before it started: it ends unsent. */
static void finish_queued(transfer_t *t) {
  atomic_fetch_sub(&t->worker->count, 1);
  atomic_fetch_sub(&active_transfers, 1);
  atomic_fetch_sub(&streams_queued, 1);
  send_raw(t, t->abort_pkt, t->abort_pkt_len);
  t->status = ST_ABORTED;
  t->during_negotiation = t->awaiting_oack;
  t->duration_ms = 0;
  post(t, POST_END);
}

/* Start the waiting transfers that may start: a stream is free, or they waited gate_wait_ms. */
static void admit_queued(worker_t *w, double now, int full) {
  int limit = atomic_load_explicit(&gate_streams, memory_order_relaxed);
  int wait_ms = atomic_load_explicit(&gate_wait_ms, memory_order_relaxed);
  transfer_t *prev = NULL;
  for (transfer_t *t = w->queue; t;) {
    transfer_t *next = t->next;
    int take = 0, aborted = atomic_load_explicit(&t->abort_requested, memory_order_acquire);
    if (!aborted) {
      int held = atomic_load(&streams_held);
      while (limit == 0 || held < limit) {
        if (atomic_compare_exchange_weak(&streams_held, &held, held + 1)) { take = 1; break; }
      }
      if (!take && now - t->queued_at < wait_ms) {
        /* No stream: the rest wait too (they came later). A full walk (after a wake-up, which
           may be an abort) still looks for aborted ones. */
        if (!full) return;
        prev = t;
        t = next;
        continue;
      }
    }
    /* Out of the queue. */
    if (prev) prev->next = next; else w->queue = next;
    if (w->queue_tail == t) w->queue_tail = prev;
    if (aborted) {
      finish_queued(t);
    } else {
      atomic_fetch_sub(&streams_queued, 1);
      t->holds_stream = take;
      begin(w, t);
    }
    t = next;
  }
}

/* Retransmission deadlines are checked every TICK_MS (a timeout is at most that late). */
#define TICK_MS 5.0
/* A lone transfer's blocking recv() returns after this long without a packet. */
#define SOLO_WAIT_MS 2

/* Workers run at a lower priority than the server's own thread: pumping DATA for a
   thousand booting nodes must not delay the DHCP answers and boot decisions those nodes
   are also waiting for (measured: at equal priority a 1000-node storm saw ~300 DHCP
   retries; the nice value only matters when the CPU is saturated). */
#define WORKER_NICE 5

static void *work(void *arg) {
  worker_t *w = arg;
  /* PXEHERD_TFTP_PUMP_NICE (0-19) overrides it, for measuring (bench/storm-stage.ts). */
  const char *nice_env = getenv("PXEHERD_TFTP_PUMP_NICE");
  int nice_value = WORKER_NICE;
  if (nice_env && *nice_env >= '0' && *nice_env <= '9') {
    nice_value = atoi(nice_env);
    if (nice_value > 19) nice_value = 19;
  }
  (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice_value);
  /* Named, so its CPU time can be told from the server's thread (/proc/PID/task/TID/comm). */
  (void)pthread_setname_np(pthread_self(), "pxeherd-tftp");
  struct epoll_event evs[128];
  uint8_t buf[ERRPKT_MAX];
  double next_check = now_ms() + TICK_MS;
  for (;;) {
    if (w->queue) admit_queued(w, now_ms(), 0);
    /* A worker with a single transfer waits in recv() on its socket: one syscall per ACK
       instead of epoll_wait + recv (lock-step speed is syscalls per block). The socket's
       receive timeout (SOLO_WAIT_MS) and the TICK_MS check below bound how late it sees new
       transfers, aborts and deadlines. On an idle machine it may poll instead (spin_policy). */
    transfer_t *only = w->active && !w->active->next ? w->active : NULL;
    int timeout = -1;
    if (only) {
      if (now_ms() < next_check) {
        ssize_t got = -1;
        errno = EAGAIN;
        if ((only->sp.probing ? !only->sp.best : only->sp.best) &&
            atomic_load_explicit(&active_transfers, memory_order_relaxed) <= spin_max_active)
          got = spin_recv(only->fd, buf, sizeof buf);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) got = recv(only->fd, buf, sizeof buf, 0);
        if (got >= 0) {
          on_packet(only, buf, got, now_ms());
          continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          finish(only, ST_SOCKET_ERROR, errno);
          continue;
        }
      }
      timeout = 0; /* quiet for a while, or time to check: look at the eventfd and deadlines */
    } else if (w->active || w->queue) {
      double left = next_check - now_ms();
      timeout = left <= 0 ? 0 : (int)left + 1;
    }
    int n;
    if (timeout != 0 && w->active && w->active->next) update_spare_core(w, now_ms());
    if (timeout != 0 && w->active && w->active->next && worker_polls_now(w)) {
      /* Poll for SPIN_US (not past the next deadline check), then sleep as usual. */
      const double t0 = now_ms(), until = t0 + SPIN_US / 1e3 < next_check ? t0 + SPIN_US / 1e3 : next_check;
      do n = epoll_wait(w->ep, evs, 128, 0);
      while (n == 0 && now_ms() < until);
      if (n > 0) atomic_fetch_add_explicit(&worker_polls, 1, memory_order_relaxed);
      else {
        atomic_fetch_add_explicit(&worker_wakes, 1, memory_order_relaxed);
        n = epoll_wait(w->ep, evs, 128, timeout);
      }
    } else {
      if (timeout != 0 && w->active && w->active->next) atomic_fetch_add_explicit(&worker_wakes, 1, memory_order_relaxed);
      n = epoll_wait(w->ep, evs, 128, timeout);
    }
    double now = now_ms();
    int check_all = 0;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        uint64_t v;
        (void)!read(w->efd, &v, sizeof v);
        pthread_mutex_lock(&w->mu);
        transfer_t *p = w->pending;
        w->pending = NULL;
        pthread_mutex_unlock(&w->mu);
        /* The JS thread pushed them newest first: back into arrival order. */
        transfer_t *rev = NULL;
        while (p) {
          transfer_t *next = p->next;
          p->next = rev;
          rev = p;
          p = next;
        }
        for (p = rev; p;) {
          transfer_t *next = p->next;
          if (p->gated) {
            p->queued_at = now;
            p->next = NULL;
            if (w->queue_tail) w->queue_tail->next = p; else w->queue = p;
            w->queue_tail = p;
          } else {
            begin(w, p);
          }
          p = next;
        }
        check_all = 1; /* an abort may be what woke us */
        continue;
      }
      transfer_t *t = evs[i].data.ptr;
      ssize_t got = recv(t->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (got >= 0) on_packet(t, buf, got, now);
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) finish(t, ST_SOCKET_ERROR, errno);
      /* epoll reports a socket at most once per wait, and a transfer finishes only while its
         own event (or check()) is handled: no later event in evs refers to a finished one. */
    }
    if (check_all || now >= next_check) {
      for (transfer_t *t = w->active; t;) {
        transfer_t *next = t->next;
        check(t, now);
        t = next;
      }
      /* Streams freed by ends and expired holds, requests that waited too long, aborts. */
      if (w->queue) admit_queued(w, now, check_all);
      next_check = now + TICK_MS;
    }
  }
  return NULL;
}

/* Start the workers once: one unless setWorkers() asked for more. One is the default because
   measured here (2 cores, 20 concurrent lock-step atftp clients) one worker served 1.1x
   dnsmasq and two 0.9x: the workers and the clients then contend for the same cores, and a
   single loop handles many ready sockets per epoll_wait. Returns 0 or an errno. */
static int start_workers(void) {
  if (nworkers) return 0;
  int want = wanted_workers ? wanted_workers : 1;
  for (int i = 0; i < want; i++) {
    worker_t *w = &workers[i];
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->ep < 0 || w->efd < 0) return errno;
    pthread_mutex_init(&w->mu, NULL);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev) != 0) return errno;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&w->thread, &attr, work, w);
    pthread_attr_destroy(&attr);
    if (e) return e;
    nworkers = i + 1;
  }
  return 0;
}

static void wake(worker_t *w) {
  uint64_t one = 1;
  (void)!write(w->efd, &one, sizeof one);
}

/* ---- JS side ---------------------------------------------------------------------- */

static void set_u32(napi_env env, napi_value obj, const char *name, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, obj, name, x);
}

/* Runs on the JS thread for every post: calls back (kind, result?). */
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  post_t *p = data;
  transfer_t *t = p->t;
  enum post_kind kind = p->kind;
  free(p);
  (void)cb;
  if (env == NULL) return; /* environment torn down: nothing to tell, memory goes with it */
  napi_value undef, args[2], fn;
  napi_get_undefined(env, &undef);
  if (kind == POST_PROGRESS || kind == POST_STARTED) {
    if (t->ended) return;
    napi_get_reference_value(env, t->callback_ref, &fn);
    napi_create_string_utf8(env, kind == POST_STARTED ? "started" : "progress", NAPI_AUTO_LENGTH, &args[0]);
    napi_call_function(env, undef, fn, 1, args, NULL);
    return;
  }
  t->ended = 1;
  close(t->fd);
  t->fd = -1;
  napi_value r;
  napi_create_object(env, &r);
  napi_value s;
  napi_create_string_utf8(env, status_names[t->status], NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, r, "status", s);
  uint64_t bytes = t->acked_blocks * (uint64_t)t->blksize;
  if (bytes > t->size) bytes = t->size;
  set_u32(env, r, "bytes", (double)bytes);
  set_u32(env, r, "durationMs", t->duration_ms);
  set_u32(env, r, "retransmits", t->retransmits);
  set_u32(env, r, "duplicateAcks", t->duplicate_acks);
  set_u32(env, r, "badPackets", t->bad_packets);
  set_u32(env, r, "dataPackets", (double)t->data_packets);
  napi_value b;
  napi_get_boolean(env, t->during_negotiation != 0, &b);
  napi_set_named_property(env, r, "duringNegotiation", b);
  if (t->status == ST_SOCKET_ERROR) {
    napi_value e;
    napi_create_string_utf8(env, strerror(t->sys_errno), NAPI_AUTO_LENGTH, &e);
    napi_set_named_property(env, r, "error", e);
  }
  if (t->status == ST_CLIENT_ERROR) {
    napi_value e;
    void *copy;
    napi_create_buffer_copy(env, t->client_err_len, t->client_err, &copy, &e);
    napi_set_named_property(env, r, "clientError", e);
  }
  napi_delete_reference(env, t->content_ref);
  napi_get_reference_value(env, t->callback_ref, &fn);
  napi_delete_reference(env, t->callback_ref);
  free(t);
  napi_create_string_utf8(env, "end", NAPI_AUTO_LENGTH, &args[0]);
  args[1] = r;
  napi_call_function(env, undef, fn, 2, args, NULL);
}

static void free_slot(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/*
 * One thread-safe function per JS environment, made at its first transfer and shared by all:
 * a function of its own per transfer cost each RRQ a libuv handle to open and close on the
 * server's thread, and each post its own wake-up of the event loop, where one shared queue
 * hands the server's thread everything the workers posted in one turn. Unreferenced: the
 * server's sockets, not this queue, keep the process alive.
 */
static napi_threadsafe_function env_tsfn(napi_env env) {
  napi_threadsafe_function *slot = NULL;
  if (napi_get_instance_data(env, (void **)&slot) == napi_ok && slot && *slot) return *slot;
  slot = calloc(1, sizeof *slot);
  if (!slot) return NULL;
  napi_value name;
  napi_create_string_utf8(env, "pxeherd-tftp", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, call_js, slot) != napi_ok) {
    free(slot);
    return NULL;
  }
  napi_unref_threadsafe_function(env, *slot);
  /* The environment's teardown finalizes the function; the slot is freed with the env data. */
  napi_set_instance_data(env, slot, free_slot, NULL);
  return *slot;
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok ? 0 : -1;
}

/* Bytes of a Uint8Array/Buffer argument (null/undefined -> len 0). */
static int get_bytes(napi_env env, napi_value v, void **data, size_t *len) {
  napi_valuetype vt;
  napi_typeof(env, v, &vt);
  if (vt == napi_null || vt == napi_undefined) { *data = NULL; *len = 0; return 0; }
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) return -1;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok || type != napi_uint8_array) return -1;
  return 0;
}

/*
 * start(content, localAddress, peerAddress, peerPort, blksize, windowsize, timeoutMs,
 *       retries, oack|null, timeoutPacket, backoff, callback) -> handle
 * Throws (nothing started) when the socket or the worker threads cannot be made.
 */
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 12) {
    napi_throw_type_error(env, NULL, "start() needs 12 arguments");
    return NULL;
  }
  void *content, *oack, *tpkt;
  size_t content_len, oack_len, tpkt_len;
  char local[64], peer[64];
  size_t sl;
  uint32_t port, blksize, windowsize, timeout_ms, retries;
  bool backoff = false;
  if (get_bytes(env, argv[0], &content, &content_len) ||
      napi_get_value_string_utf8(env, argv[1], local, sizeof local, &sl) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], peer, sizeof peer, &sl) != napi_ok ||
      get_u32(env, argv[3], &port) || get_u32(env, argv[4], &blksize) || get_u32(env, argv[5], &windowsize) ||
      get_u32(env, argv[6], &timeout_ms) || get_u32(env, argv[7], &retries) ||
      get_bytes(env, argv[8], &oack, &oack_len) || get_bytes(env, argv[9], &tpkt, &tpkt_len) ||
      napi_get_value_bool(env, argv[10], &backoff) != napi_ok) {
    napi_throw_type_error(env, NULL, "start(): bad argument types");
    return NULL;
  }
  if (blksize < 8 || blksize > 65464 || windowsize < 1 || windowsize > MAX_WINDOW || port < 1 || port > 65535 ||
      timeout_ms < 1 || oack_len > ERRPKT_MAX || tpkt_len > ERRPKT_MAX) {
    napi_throw_range_error(env, NULL, "start(): argument out of range");
    return NULL;
  }
  /* IPv4 or IPv6 (a link-local peer carries its zone, fe80::1%br0): numeric only, no DNS. */
  struct sockaddr_storage la, pa;
  socklen_t la_len, pa_len;
  char port_text[8];
  snprintf(port_text, sizeof port_text, "%u", port);
  struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_DGRAM }, *lres = NULL, *pres = NULL;
  int family = AF_INET;
  struct sockaddr_in *l4 = (struct sockaddr_in *)&la, *p4 = (struct sockaddr_in *)&pa;
  memset(&la, 0, sizeof la);
  memset(&pa, 0, sizeof pa);
  l4->sin_family = p4->sin_family = AF_INET;
  p4->sin_port = htons((uint16_t)port);
  la_len = pa_len = sizeof(struct sockaddr_in);
  /* IPv4 as before (inet_pton, no allocation); anything else through getaddrinfo. */
  if (inet_pton(AF_INET, local, &l4->sin_addr) == 1 && inet_pton(AF_INET, peer, &p4->sin_addr) == 1) {
    /* done */
  } else if (getaddrinfo(local, "0", &hints, &lres) != 0 || getaddrinfo(peer, port_text, &hints, &pres) != 0 || lres->ai_family != pres->ai_family) {
    if (lres) freeaddrinfo(lres);
    if (pres) freeaddrinfo(pres);
    napi_throw_type_error(env, NULL, "start(): local and peer must be numeric addresses of one family");
    return NULL;
  } else {
    family = lres->ai_family;
    memcpy(&la, lres->ai_addr, lres->ai_addrlen);
    la_len = lres->ai_addrlen;
    memcpy(&pa, pres->ai_addr, pres->ai_addrlen);
    pa_len = pres->ai_addrlen;
    freeaddrinfo(lres);
    freeaddrinfo(pres);
  }

  int werr = start_workers();
  if (werr) return throw_errno(env, "TFTP worker threads", werr);
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  /* Blocking, with a short receive timeout: see SOLO_WAIT_MS. Everything else uses MSG_DONTWAIT. */
  struct timeval tv = { .tv_sec = 0, .tv_usec = SOLO_WAIT_MS * 1000 };
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 || bind(fd, (struct sockaddr *)&la, la_len) != 0 || connect(fd, (struct sockaddr *)&pa, pa_len) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "transfer socket", e);
  }

  transfer_t *t = calloc(1, sizeof *t);
  if (!t) { close(fd); return throw_errno(env, "calloc", ENOMEM); }
  t->fd = fd;
  t->data = content;
  t->size = content_len;
  t->blksize = blksize;
  t->windowsize = windowsize;
  t->timeout_ms = timeout_ms;
  t->retries = retries;
  t->backoff = backoff;
  memcpy(t->oack, oack, oack_len);
  t->oack_len = oack_len;
  memcpy(t->timeout_pkt, tpkt, tpkt_len);
  t->timeout_pkt_len = tpkt_len;
  t->tsfn = env_tsfn(env);
  if (!t->tsfn || napi_create_reference(env, argv[0], 1, &t->content_ref) != napi_ok) {
    close(fd);
    free(t);
    napi_throw_error(env, NULL, "start(): cannot set up the callback");
    return NULL;
  }
  if (napi_create_reference(env, argv[11], 1, &t->callback_ref) != napi_ok) {
    napi_delete_reference(env, t->content_ref);
    close(fd);
    free(t);
    napi_throw_error(env, NULL, "start(): cannot set up the callback");
    return NULL;
  }
  t->total = content_len / blksize + 1;
  t->awaiting_oack = oack_len > 0;
  t->sp = (spin_policy_t){ .best = 0, .probing = 0, .left = FIRST_RUN_BLOCKS, .run_len = FIRST_RUN_BLOCKS };
  t->gated = atomic_load(&gate_streams) > 0;
  if (t->gated) atomic_fetch_add(&streams_queued, 1);
  /* To the least busy worker. */
  worker_t *w = &workers[0];
  for (int i = 1; i < nworkers; i++)
    if (atomic_load(&workers[i].count) < atomic_load(&w->count)) w = &workers[i];
  t->worker = w;
  atomic_fetch_add(&w->count, 1);
  atomic_fetch_add(&active_transfers, 1);
  pthread_mutex_lock(&w->mu);
  t->next = w->pending;
  w->pending = t;
  pthread_mutex_unlock(&w->mu);
  wake(w);
  napi_value handle;
  napi_create_external(env, t, NULL, NULL, &handle);
  return handle;
}

/* abort(handle, errorPacket|null): end the transfer, sending errorPacket when given. Only
   valid before the end callback (the JS wrapper guarantees it). */
static napi_value abort_transfer(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  transfer_t *t;
  void *pkt;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || get_bytes(env, argv[1], &pkt, &len) || len > ERRPKT_MAX) {
    napi_throw_type_error(env, NULL, "abort(handle, packet|null)");
    return NULL;
  }
  if (t->ended || atomic_load(&t->abort_requested)) return NULL;
  memcpy(t->abort_pkt, pkt, len);
  t->abort_pkt_len = len;
  atomic_store_explicit(&t->abort_requested, 1, memory_order_release);
  wake(t->worker); /* it checks every transfer's abort flag when woken */
  return NULL;
}

/* setWorkers(n): how many worker threads to start (1..MAX_WORKERS); only before the first
   transfer. Returns the number that will run (or runs). */
static napi_value set_workers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], r;
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || get_u32(env, argv[0], &n)) {
    napi_throw_type_error(env, NULL, "setWorkers(n)");
    return NULL;
  }
  if (!nworkers && n >= 1) wanted_workers = n > MAX_WORKERS ? MAX_WORKERS : (int)n;
  int will = nworkers ? nworkers : wanted_workers ? wanted_workers : 1;
  napi_create_uint32(env, (uint32_t)will, &r);
  return r;
}

/* setStreams(streams, holdMs, waitMs): the gate (see gate_streams); streams 0 = off. Applies
   to transfers handed over afterwards. */
static napi_value set_streams(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint32_t n, hold, wait;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || get_u32(env, argv[0], &n) ||
      get_u32(env, argv[1], &hold) || get_u32(env, argv[2], &wait) || hold < 1 || hold > 0x7fffffff || wait > 0x7fffffff) {
    napi_throw_type_error(env, NULL, "setStreams(streams, holdMs >= 1, waitMs)");
    return NULL;
  }
  atomic_store(&gate_hold_ms, (int)hold);
  atomic_store(&gate_wait_ms, (int)wait);
  atomic_store(&gate_streams, n > 0x7fffffff ? 0x7fffffff : (int)n);
  return NULL;
}

/* streamStats() -> { held, queued, holdsExpired } */
static napi_value stream_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_object(env, &r);
  set_u32(env, r, "held", atomic_load(&streams_held));
  set_u32(env, r, "queued", atomic_load(&streams_queued));
  set_u32(env, r, "holdsExpired", atomic_load(&holds_expired));
  int polling = 0;
  for (int i = 0; i < nworkers; i++) polling += worker_polls_now(&workers[i]);
  set_u32(env, r, "workersPolling", polling);
  set_u32(env, r, "spinSwitches", atomic_load(&spin_switches));
  set_u32(env, r, "sleeps", (double)atomic_load(&worker_wakes));
  set_u32(env, r, "polls", (double)atomic_load(&worker_polls));
  return r;
}

/* setSpin(mode): 'auto' (poll while a core is spare, the default), 'off' (always sleep), 'on'
   (always poll first) for workers with more than one active transfer; see IDLE_CHECK_MS. */
static napi_value set_spin(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char mode[8];
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, argv[0], mode, sizeof mode, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "setSpin('auto' | 'off' | 'on')");
    return NULL;
  }
  if (!strcmp(mode, "auto")) atomic_store(&spin_mode, SPIN_AUTO);
  else if (!strcmp(mode, "off")) atomic_store(&spin_mode, SPIN_OFF);
  else if (!strcmp(mode, "on")) atomic_store(&spin_mode, SPIN_ON);
  else {
    napi_throw_range_error(env, NULL, "setSpin('auto' | 'off' | 'on')");
    return NULL;
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  spin_max_active = cores > 1 ? (int)cores - 1 : 0;
  ncores = cores > 0 ? (int)cores : 1;

  napi_value fn;
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  napi_create_function(env, "abort", NAPI_AUTO_LENGTH, abort_transfer, NULL, &fn);
  napi_set_named_property(env, exports, "abort", fn);
  napi_create_function(env, "setWorkers", NAPI_AUTO_LENGTH, set_workers, NULL, &fn);
  napi_set_named_property(env, exports, "setWorkers", fn);
  napi_create_function(env, "setStreams", NAPI_AUTO_LENGTH, set_streams, NULL, &fn);
  napi_set_named_property(env, exports, "setStreams", fn);
  napi_create_function(env, "streamStats", NAPI_AUTO_LENGTH, stream_stats, NULL, &fn);
  napi_set_named_property(env, exports, "streamStats", fn);
  napi_create_function(env, "setSpin", NAPI_AUTO_LENGTH, set_spin, NULL, &fn);
  napi_set_named_property(env, exports, "setSpin", fn);
  napi_value max;
  napi_create_uint32(env, MAX_WINDOW, &max);
  napi_set_named_property(env, exports, "maxWindow", max);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
