/*
 * pxeherd-spawner: runs nodescripts for the pxeherd server.
 *
 * Why: forking from the Node.js process (hundreds of MB of address space) is what limits
 * how many nodescripts per second the master can run. This helper is a few KB, so fork()
 * is cheap; Node sends it job requests on stdin and reads results on stdout.
 *
 * Wire format (all integers little-endian u32 unless noted):
 *   request:  len | id | timeout_ms | grace_ms | max_stdout | max_stderr | nstr |
 *             nstr NUL-terminated strings: path, cwd, then "KEY=VALUE" environment entries
 *   response: len | id | pid (i32) | kind (u8: 0 exited, 1 signaled, 2 could not execute) |
 *             timed_out (u8) | too_large (u8) | stderr_truncated (u8) |
 *             value (i32: exit code, signal number or errno) |
 *             stdout_len | stdout bytes | stderr_len | stderr bytes
 *   len counts the bytes after itself.
 *
 * Each job: fork, setsid, stdin </dev/null, stdout/stderr pipes, execve with only the given
 * environment. At the deadline the job's process group gets SIGTERM, grace_ms later SIGKILL.
 * When the job's leader exits, anything left in its group is SIGKILLed. The helper is a child
 * subreaper, so orphaned grandchildren are reaped here and never linger as zombies.
 * EOF on stdin: kill every running group and exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQ (16u * 1024u * 1024u)

struct buf {
  char *p;
  size_t len, cap;
};

struct job {
  uint32_t id;
  pid_t pid;
  int out_fd, err_fd;
  struct buf out, err;
  uint32_t max_out, max_err, grace_ms;
  int64_t deadline_ms, kill_at_ms; /* kill_at_ms: when to SIGKILL after SIGTERM, 0 = not armed */
  int timed_out, too_large, err_trunc;
  int exited, status;
  struct job *next;
};

static struct job *jobs;
static int sig_pipe[2];
static struct buf inbuf, outq;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *msg) {
  fprintf(stderr, "pxeherd-spawner: %s: %s\n", msg, strerror(errno));
  exit(1);
}

static void buf_add(struct buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n) c *= 2;
    char *q = realloc(b->p, c);
    if (!q) die("out of memory");
    b->p = q;
    b->cap = c;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) {
  unsigned char x[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
  buf_add(b, x, 4);
}

static uint32_t get_u32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
}

static void on_sigchld(int sig) {
  (void)sig;
  int e = errno;
  char c = 0;
  (void)!write(sig_pipe[1], &c, 1);
  errno = e;
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void kill_group(pid_t pid, int sig) {
  if (pid > 0) kill(-pid, sig);
}

static void respond(uint32_t id, int32_t pid, uint8_t kind, int tmo, int big, int etr, int32_t value,
                    const struct buf *o, const struct buf *e) {
  size_t olen = o ? o->len : 0, elen = e ? e->len : 0;
  put_u32(&outq, (uint32_t)(4 + 4 + 4 + 4 + 4 + olen + 4 + elen));
  put_u32(&outq, id);
  put_u32(&outq, (uint32_t)pid);
  unsigned char flags[4] = {kind, (unsigned char)tmo, (unsigned char)big, (unsigned char)etr};
  buf_add(&outq, flags, 4);
  put_u32(&outq, (uint32_t)value);
  put_u32(&outq, (uint32_t)olen);
  if (olen) buf_add(&outq, o->p, olen);
  put_u32(&outq, (uint32_t)elen);
  if (elen) buf_add(&outq, e->p, elen);
}

/* Start one job from a request payload (after len). */
static void start_job(const char *p, uint32_t n) {
  if (n < 24) return;
  uint32_t id = get_u32(p), timeout_ms = get_u32(p + 4), grace_ms = get_u32(p + 8);
  uint32_t max_out = get_u32(p + 12), max_err = get_u32(p + 16), nstr = get_u32(p + 20);
  const char *s = p + 24, *end = p + n;
  if (nstr < 2 || nstr > 100000) {
    respond(id, 0, 2, 0, 0, 0, EINVAL, NULL, NULL);
    return;
  }
  char **strs = calloc(nstr + 1, sizeof(char *));
  if (!strs) die("out of memory");
  for (uint32_t i = 0; i < nstr; i++) {
    const char *z = memchr(s, 0, (size_t)(end - s));
    if (!z) {
      free(strs);
      respond(id, 0, 2, 0, 0, 0, EINVAL, NULL, NULL);
      return;
    }
    strs[i] = (char *)s;
    s = z + 1;
  }
  const char *path = strs[0], *cwd = strs[1];
  char **envp = strs + 2; /* NULL-terminated by calloc */
  char *argv[2] = {(char *)path, NULL};

  int po[2], pe[2], px[2];
  if (pipe2(po, O_CLOEXEC) < 0) die("pipe");
  if (pipe2(pe, O_CLOEXEC) < 0) die("pipe");
  if (pipe2(px, O_CLOEXEC) < 0) die("pipe");
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(po[0]); close(po[1]); close(pe[0]); close(pe[1]); close(px[0]); close(px[1]);
    free(strs);
    respond(id, 0, 2, 0, 0, 0, e, NULL, NULL);
    return;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    int dn = open("/dev/null", O_RDONLY);
    if (dn >= 0) dup2(dn, 0);
    dup2(po[1], 1);
    dup2(pe[1], 2);
    if (chdir(cwd) == 0) execve(path, argv, envp);
    int e = errno;
    (void)!write(px[1], &e, sizeof e);
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  close(px[1]);
  free(strs);
  /* Wait for exec (CLOEXEC closes px) or its failure report. Fast: exec is immediate. */
  int e = 0;
  ssize_t r;
  do r = read(px[0], &e, sizeof e);
  while (r < 0 && errno == EINTR);
  close(px[0]);
  if (r == (ssize_t)sizeof e) {
    close(po[0]);
    close(pe[0]);
    /* the child _exit()s; reap_all() collects it (no job record, so it is just reaped) */
    respond(id, pid, 2, 0, 0, 0, e, NULL, NULL);
    return;
  }
  struct job *j = calloc(1, sizeof *j);
  if (!j) die("out of memory");
  j->id = id;
  j->pid = pid;
  j->out_fd = po[0];
  j->err_fd = pe[0];
  set_nonblock(j->out_fd);
  set_nonblock(j->err_fd);
  j->max_out = max_out;
  j->max_err = max_err;
  j->grace_ms = grace_ms;
  j->deadline_ms = now_ms() + timeout_ms;
  j->next = jobs;
  jobs = j;
}

/* Read what is available; returns 1 at EOF. */
static int drain(struct job *j, int is_err) {
  char tmp[65536];
  int fd = is_err ? j->err_fd : j->out_fd;
  for (;;) {
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r > 0) {
      if (is_err) {
        size_t room = j->err.len < j->max_err ? j->max_err - j->err.len : 0;
        size_t take = (size_t)r < room ? (size_t)r : room;
        if (take < (size_t)r) j->err_trunc = 1;
        if (take) buf_add(&j->err, tmp, take);
      } else if (!j->too_large) {
        if (j->out.len + (size_t)r > j->max_out) {
          j->too_large = 1;
          kill_group(j->pid, SIGKILL);
        } else {
          buf_add(&j->out, tmp, (size_t)r);
        }
      }
      continue;
    }
    if (r == 0) return 1;
    if (errno == EINTR) continue;
    return 0; /* EAGAIN */
  }
}

static void finish_job(struct job *j) {
  /* Leftovers in the group would keep the pipes open and linger on the master. */
  kill_group(j->pid, SIGKILL);
  if (j->out_fd >= 0) { drain(j, 0); close(j->out_fd); }
  if (j->err_fd >= 0) { drain(j, 1); close(j->err_fd); }
  int kind, value;
  if (WIFSIGNALED(j->status)) { kind = 1; value = WTERMSIG(j->status); }
  else { kind = 0; value = WEXITSTATUS(j->status); }
  respond(j->id, j->pid, (uint8_t)kind, j->timed_out, j->too_large, j->err_trunc, value, &j->out, &j->err);
  free(j->out.p);
  free(j->err.p);
}

static void reap_all(void) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0) break;
    for (struct job *j = jobs; j; j = j->next) {
      if (j->pid == p) {
        j->exited = 1;
        j->status = st;
        break;
      }
    }
  }
  struct job **pp = &jobs;
  while (*pp) {
    struct job *j = *pp;
    if (j->exited) {
      *pp = j->next;
      finish_job(j);
      free(j);
    } else {
      pp = &j->next;
    }
  }
}

static void flush_out(int block) {
  while (outq.len) {
    ssize_t w = write(1, outq.p, outq.len);
    if (w > 0) {
      memmove(outq.p, outq.p + w, outq.len - (size_t)w);
      outq.len -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN && !block) return;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pf = {1, POLLOUT, 0};
      poll(&pf, 1, -1);
      continue;
    }
    exit(0); /* Node went away */
  }
}

static void shutdown_all(void) {
  for (struct job *j = jobs; j; j = j->next) kill_group(j->pid, SIGKILL);
  exit(0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  /* Orphans of nodescripts are re-parented here and reaped, never left as zombies. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  /* No PDEATHSIG: if the server dies, its end of stdin closes and the EOF path below kills
   * the running groups before exiting; a signal would leave them behind. */
  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  set_nonblock(0);
  set_nonblock(1);
  int stdin_open = 1;

  for (;;) {
    size_t nj = 0;
    for (struct job *j = jobs; j; j = j->next) nj++;
    struct pollfd *pf = calloc(3 + 2 * nj, sizeof *pf);
    struct job **owner = calloc(3 + 2 * nj, sizeof *owner);
    if (!pf || !owner) die("out of memory");
    int n = 0;
    pf[n++] = (struct pollfd){sig_pipe[0], POLLIN, 0};
    pf[n++] = (struct pollfd){stdin_open ? 0 : -1, POLLIN, 0};
    pf[n++] = (struct pollfd){outq.len ? 1 : -1, POLLOUT, 0};
    int64_t t = now_ms(), next = -1;
    for (struct job *j = jobs; j; j = j->next) {
      if (j->out_fd >= 0) { owner[n] = j; pf[n++] = (struct pollfd){j->out_fd, POLLIN, 0}; }
      if (j->err_fd >= 0) { owner[n] = j; pf[n++] = (struct pollfd){j->err_fd, POLLIN, 0}; }
      int64_t due = j->kill_at_ms ? j->kill_at_ms : (j->timed_out ? -1 : j->deadline_ms);
      if (due >= 0 && (next < 0 || due < next)) next = due;
    }
    int timeout = next < 0 ? -1 : (next <= t ? 0 : (int)(next - t));
    int r = poll(pf, (nfds_t)n, timeout);
    if (r < 0 && errno != EINTR) die("poll");
    if (r > 0) {
      if (pf[0].revents) {
        char tmp[256];
        while (read(sig_pipe[0], tmp, sizeof tmp) > 0) {}
      }
      for (int i = 3; i < n; i++) {
        if (!pf[i].revents) continue;
        struct job *j = owner[i];
        int is_err = pf[i].fd == j->err_fd;
        if (drain(j, is_err)) {
          close(pf[i].fd);
          if (is_err) j->err_fd = -1;
          else j->out_fd = -1;
        }
      }
      if (pf[1].revents) {
        char tmp[65536];
        for (;;) {
          ssize_t k = read(0, tmp, sizeof tmp);
          if (k > 0) { buf_add(&inbuf, tmp, (size_t)k); continue; }
          if (k == 0) { stdin_open = 0; break; }
          if (errno == EINTR) continue;
          break;
        }
        size_t off = 0;
        while (inbuf.len - off >= 4) {
          uint32_t len = get_u32(inbuf.p + off);
          if (len > MAX_REQ) { errno = EINVAL; die("request too large"); }
          if (inbuf.len - off - 4 < len) break;
          start_job(inbuf.p + off + 4, len);
          off += 4 + len;
        }
        if (off) {
          memmove(inbuf.p, inbuf.p + off, inbuf.len - off);
          inbuf.len -= off;
        }
      }
    }
    free(pf);
    free(owner);
    t = now_ms();
    for (struct job *j = jobs; j; j = j->next) {
      if (!j->timed_out && t >= j->deadline_ms) {
        j->timed_out = 1;
        kill_group(j->pid, SIGTERM);
        j->kill_at_ms = t + j->grace_ms;
      } else if (j->kill_at_ms && t >= j->kill_at_ms) {
        kill_group(j->pid, SIGKILL);
        j->kill_at_ms = 0;
      }
    }
    reap_all();
    flush_out(0);
    if (!stdin_open) {
      flush_out(1);
      shutdown_all();
    }
  }
}
