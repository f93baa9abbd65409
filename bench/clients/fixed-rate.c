/*
 * Open-loop load at a fixed rate, wrk2-style, for the latency scenario of bench/compare.ts.
 *   fixed-rate HOST PORT HOST_HEADER PATH RATE SECONDS CONNECTIONS [CALIBRATE]
 * Prints one JSON line: {"sent","completed","requests","errors","seconds","latenciesUs":{"p50","p99","p999","max"}}.
 *
 * CALIBRATE (seconds, default 0) runs the same load on the same connections first and leaves it
 * out of the figures, as wrk2's calibration period: "sent", "completed", "seconds" and the
 * percentiles are for the SECONDS after it; "requests" counts every completed request, calibration
 * included (what the proxy's CPU time over the whole run is divided by).
 *
 * The same method as fixed-rate.ts: request i is due at start + i / RATE and its latency runs from
 * that due time, so a stall of the server is charged to every request it delayed (no coordinated
 * omission). Written in C because at tens of thousands of requests a second a Node client shares
 * CPU 1 with the upstreams and its own event-loop turns and garbage collection became the noise floor
 * of every target's p99: the client sleeps in epoll_pwait2 until the next due time (nanosecond
 * timeout), sends prebuilt bytes and only frames responses (Content-Length or chunked), so it costs
 * a few microseconds per request. Built by bench/clients/build.sh with the machine's cc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536

typedef struct {
  int fd;
  double due;       /* due time (ns since start) of the request in flight, or -1 when idle */
  char buf[BUF_SIZE];
  size_t len;       /* bytes held in buf */
  long remaining;   /* body bytes still to skip; -1 while reading chunks; -2 between responses */
  int status;
} conn_t;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y ? 1 : 0;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Finds a header's value in head[0..len): case-insensitive name at a line start. Returns NULL when absent. */
static const char *header(const char *head, size_t len, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i + 2 + n < len; i++) {
    if (head[i] == '\r' && head[i + 1] == '\n' && strncasecmp(head + i + 2, name, n) == 0 && head[i + 2 + n] == ':') return head + i + 3 + n;
  }
  return NULL;
}

/* Consumes complete responses from c->buf; returns how many completed, with *bad the non-2xx/3xx count. */
static int frame(conn_t *c, int *bad) {
  int done = 0;
  size_t off = 0;
  for (;;) {
    char *p = c->buf + off;
    size_t avail = c->len - off;
    if (c->remaining == -2) {
      char *end = memmem(p, avail, "\r\n\r\n", 4);
      if (end == NULL) break;
      size_t head_len = (size_t)(end - p);
      c->status = avail >= 12 ? atoi(p + 9) : 0;
      const char *cl = header(p, head_len, "content-length");
      const char *te = header(p, head_len, "transfer-encoding");
      if (cl != NULL) c->remaining = strtol(cl, NULL, 10);
      else if (te != NULL && memmem(te, head_len - (size_t)(te - p), "chunked", 7) != NULL) c->remaining = -1;
      else c->remaining = 0;
      off += head_len + 4;
      continue;
    }
    if (c->remaining >= 0) {
      if ((long)avail < c->remaining) {
        c->remaining -= (long)avail;
        off = c->len;
        break;
      }
      off += (size_t)c->remaining;
      c->remaining = -2;
      if (c->status < 200 || c->status >= 400) (*bad)++;
      done++;
      continue;
    }
    /* chunked: size CRLF data CRLF; the last chunk has size 0 and no trailers here */
    char *line_end = memmem(p, avail, "\r\n", 2);
    if (line_end == NULL) break;
    long size = strtol(p, NULL, 16);
    size_t need = (size_t)(line_end - p) + 2 + (size_t)size + 2;
    if (avail < need) break;
    off += need;
    if (size == 0) {
      c->remaining = -2;
      if (c->status < 200 || c->status >= 400) (*bad)++;
      done++;
    }
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  return done;
}

int main(int argc, char **argv) {
  if (argc != 8 && argc != 9) {
    fprintf(stderr, "usage: fixed-rate HOST PORT HOST_HEADER PATH RATE SECONDS CONNECTIONS [CALIBRATE]\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  double rate = atof(argv[5]);
  double seconds = atof(argv[6]);
  int nconn = atoi(argv[7]);
  double calibrate = argc == 9 ? atof(argv[8]) : 0;
  char request[1024];
  int request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", argv[4], argv[3]);
  long total = (long)(rate * (calibrate + seconds) + 0.5);
  double interval = 1e9 / rate;

  double *lat_us = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
  conn_t *conns = calloc((size_t)nconn, sizeof(conn_t));
  int *idle = malloc(sizeof(int) * (size_t)nconn);
  if (lat_us == NULL || conns == NULL || idle == NULL) die("malloc");
  int nidle = 0;

  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "fixed-rate: %s is not an IPv4 address\n", host);
    return 2;
  }
  for (int i = 0; i < nconn; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
    conns[i].fd = fd;
    conns[i].due = -1;
    conns[i].remaining = -2;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    idle[nidle++] = i;
  }

  /* FIXED_RATE_TIMELINE=1: the worst latency of each 250 ms of due times, on stderr (diagnosis). */
  int timeline = getenv("FIXED_RATE_TIMELINE") != NULL;
  int windows = (int)(seconds * 4) + 1;
  double *worst = calloc((size_t)windows, sizeof(double));
  double *gaps = calloc((size_t)windows, sizeof(double)); /* the client's own longest wait between wakeups */
  if (worst == NULL || gaps == NULL) die("calloc");
  double last_wake = 0;
  long sent = 0, completed = 0, errors = 0, measured_sent = 0, all_completed = 0;
  struct epoll_event events[256];
  double start = now_ns();
  double t0 = start + calibrate * 1e9; /* the measured part starts here */
  double give_up = t0 + (seconds + 10) * 1e9;
  for (;;) {
    double now = now_ns();
    long due_count = (long)((now - start) / interval) + 1;
    if (due_count > total) due_count = total;
    while (sent < due_count && nidle > 0) {
      conn_t *c = &conns[idle[--nidle]];
      c->due = start + (double)sent * interval;
      sent++;
      if (c->due >= t0) measured_sent++;
      if (write(c->fd, request, (size_t)request_len) != request_len) {
        errors++;
        c->due = -1;
      }
    }
    if (sent >= total && nidle == nconn) break;
    if (now > give_up) break; /* stuck requests: give up */
    /* Sleep until the next request is due, or a response arrives. */
    double next = start + (double)sent * interval;
    double wait = sent < total && nidle > 0 ? next - now_ns() : 1e8;
    if (wait < 0) wait = 0;
    struct timespec timeout = {.tv_sec = (time_t)(wait / 1e9), .tv_nsec = (long)((long long)wait % 1000000000LL)};
    int n = epoll_pwait2(ep, events, 256, &timeout, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait2");
    }
    double at = now_ns();
    if (last_wake > 0) {
      int gw = (int)((at - t0) / 250e6);
      if (gw >= 0 && gw < windows && at - last_wake > gaps[gw]) gaps[gw] = at - last_wake;
    }
    last_wake = at;
    for (int k = 0; k < n; k++) {
      int i = (int)events[k].data.u32;
      conn_t *c = &conns[i];
      ssize_t r = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        fprintf(stderr, "fixed-rate: connection %d closed by the server\n", i);
        errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        nconn--; /* never idle again */
        continue;
      }
      c->len += (size_t)r;
      int bad = 0;
      int done = frame(c, &bad);
      if (done > 0 && c->due >= 0) {
        if (bad > 0) errors++;
        else if (c->due < t0) all_completed++; /* calibration */
        else {
          all_completed++;
          lat_us[completed] = (at - c->due) / 1000.0;
          int w = (int)((c->due - t0) / 250e6);
          if (w >= 0 && w < windows && lat_us[completed] > worst[w]) worst[w] = lat_us[completed];
          completed++;
        }
        c->due = -1;
        idle[nidle++] = i;
      }
    }
  }
  double elapsed = (now_ns() - t0) / 1e9;
  if (timeline) {
    fprintf(stderr, "measured from CLOCK_MONOTONIC %.3f s (after %.1f s of calibration)\n", t0 / 1e9, calibrate);
    for (int w = 0; w < windows; w++) fprintf(stderr, "%.2fs %.0fus%s", w * 0.25, worst[w], w % 8 == 7 ? "\n" : "  ");
    fprintf(stderr, "\nthe client's longest gap between wakeups:\n");
    for (int w = 0; w < windows; w++) fprintf(stderr, "%.2fs %.0fus%s", w * 0.25, gaps[w] / 1000, w % 8 == 7 ? "\n" : "  ");
    fprintf(stderr, "\n");
  }
  qsort(lat_us, (size_t)completed, sizeof(double), cmp_double);
#define AT(p) (completed == 0 ? 0.0 : lat_us[(long)((p) / 100.0 * (double)completed + 0.999999) - 1 < 0 ? 0 : (long)((p) / 100.0 * (double)completed + 0.999999) - 1])
  printf("{\"sent\":%ld,\"completed\":%ld,\"requests\":%ld,\"errors\":%ld,\"seconds\":%.6f,\"latenciesUs\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}}\n", measured_sent, completed, all_completed, errors, elapsed,
         AT(50), AT(99), AT(99.9), completed == 0 ? 0.0 : lat_us[completed - 1]);
  return 0;
}
