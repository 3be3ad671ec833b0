// bench/spike load generator: the flood (closed loop on N keep-alive
// connections) and the steady open-loop client, in C, so that on two cores
// the clients take as little CPU from the daemon as possible. A Python
// asyncio flood sending ~12,000 requests/s used a whole core, which made B's
// p99 a measurement of the client rather than of tamaya.
//
//   loadgen flood  HOST PORT PATH CONNECTIONS SECONDS OUT
//   loadgen steady HOST PORT PATH RATE COUNT OUT
//
// Both POST a 16-byte JSON body to 127.0.0.1 only and write the same JSON
// summary as load.py (by status: count, p50/p99/max in ms). Every loop is
// bounded: flood by SECONDS, steady by COUNT and a 30 s per-request timeout.
// Latency in steady mode is measured from each request's scheduled send
// time, so a stalled server is not hidden (no coordinated omission).
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

enum { kMaxConns = 512, kBufSize = 65536, kMaxStatuses = 16 };
static const double kRequestTimeoutS = 30.0;
static const char kBody[] = "{\"page\":\"event\"}";

typedef struct {
  double *v;
  size_t n, cap;
} Samples;

typedef struct {
  int status;
  Samples lat;
} StatusBucket;

static StatusBucket g_buckets[kMaxStatuses];
static int g_nbuckets;
static long g_errors;
static char g_first_error[160];

typedef struct {
  int fd;
  int busy;
  double t0;  // send time (flood) or scheduled time (steady)
  size_t len;
  char buf[kBufSize];
} Conn;

static Conn g_conns[kMaxConns];
static int g_nconns;
static int g_epfd;
static char g_request[512];
static size_t g_request_len;
static struct sockaddr_in g_addr;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void record(int status, double seconds) {
  StatusBucket *b = NULL;
  for (int i = 0; i < g_nbuckets; i++)
    if (g_buckets[i].status == status) b = &g_buckets[i];
  if (b == NULL) {
    if (g_nbuckets == kMaxStatuses) return;
    b = &g_buckets[g_nbuckets++];
    b->status = status;
  }
  if (b->lat.n == b->lat.cap) {
    b->lat.cap = b->lat.cap ? b->lat.cap * 2 : 4096;
    b->lat.v = realloc(b->lat.v, b->lat.cap * sizeof(double));
    if (b->lat.v == NULL) die("realloc");
  }
  b->lat.v[b->lat.n++] = seconds * 1000.0;
}

static void note_error(const char *what) {
  g_errors++;
  if (g_first_error[0] == 0) snprintf(g_first_error, sizeof g_first_error, "%s", what);
}

static void conn_close(Conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->busy = 0;
  c->len = 0;
}

static int conn_open(Conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0) {
    note_error(strerror(errno));
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
  c->fd = fd;
  c->len = 0;
  c->busy = 0;
  return 0;
}

// Sends one request on an open connection; the request is small enough for
// one write on a fresh loopback socket.
static int conn_send(Conn *c, double t0) {
  ssize_t n = write(c->fd, g_request, g_request_len);
  if (n != (ssize_t)g_request_len) {
    note_error(n < 0 ? strerror(errno) : "short write");
    conn_close(c);
    return -1;
  }
  c->busy = 1;
  c->t0 = t0;
  c->len = 0;
  return 0;
}

// 1: a whole response is in buf (status set, *keep says keep-alive);
// 0: need more; -1: malformed.
static int parse_response(Conn *c, int *status, int *keep) {
  char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (end == NULL) return c->len == kBufSize ? -1 : 0;
  size_t head_len = (size_t)(end - c->buf) + 4;
  if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) return -1;
  *status = atoi(c->buf + 9);
  *keep = 1;
  long length = 0;
  for (char *line = memmem(c->buf, head_len, "\r\n", 2) + 2; line < end;) {
    char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
    if (eol == NULL) break;
    if (strncasecmp(line, "content-length:", 15) == 0) length = strtol(line + 15, NULL, 10);
    if (strncasecmp(line, "transfer-encoding:", 18) == 0) return -1;  // not sent by tamaya
    if (strncasecmp(line, "connection:", 11) == 0 && memmem(line, (size_t)(eol - line), "close", 5))
      *keep = 0;
    line = eol + 2;
  }
  if (length < 0 || head_len + (size_t)length > kBufSize) return -1;
  return c->len >= head_len + (size_t)length ? 1 : 0;
}

// Reads what is there; returns 1 with *status when a response completed,
// 0 when more is needed, -1 when the connection failed (already closed).
static int conn_read(Conn *c, int *status) {
  ssize_t n;
  do {
    n = read(c->fd, c->buf + c->len, kBufSize - c->len);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    note_error(n == 0 ? "connection closed by the server" : strerror(errno));
    conn_close(c);
    return -1;
  }
  c->len += (size_t)n;
  int keep = 1;
  int r = parse_response(c, status, &keep);
  if (r < 0) {
    note_error("malformed response");
    conn_close(c);
    return -1;
  }
  if (r == 0) return 0;  // the rest comes with the next readiness
  c->busy = 0;
  if (!keep) conn_close(c);
  return 1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(const Samples *s, double p) {
  size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
  return s->v[i < s->n ? i : s->n - 1];
}

static void write_stats(FILE *f, const Samples *s) {
  if (s == NULL || s->n == 0) {
    fprintf(f, "{\"count\": 0, \"p50_ms\": null, \"p99_ms\": null, \"max_ms\": null}");
    return;
  }
  qsort(s->v, s->n, sizeof(double), cmp_double);
  fprintf(f, "{\"count\": %zu, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}", s->n,
          percentile(s, 50), percentile(s, 99), s->v[s->n - 1]);
}

static void write_error_samples(FILE *f) {
  fprintf(f, "\"errors\": %ld, \"error_samples\": [", g_errors);
  if (g_first_error[0]) fprintf(f, "\"%s\"", g_first_error);
  fprintf(f, "]");
}

static int flood(int connections, double seconds, FILE *out) {
  if (connections < 1 || connections > kMaxConns) {
    fprintf(stderr, "loadgen: CONNECTIONS must be 1..%d\n", kMaxConns);
    return 1;
  }
  double stop = now_s() + seconds;
  g_nconns = connections;
  for (int i = 0; i < connections; i++) {
    g_conns[i].fd = -1;
    if (conn_open(&g_conns[i]) == 0) conn_send(&g_conns[i], now_s());
  }
  struct epoll_event events[64];
  // Whatever is still in flight at the stop gets up to the request timeout.
  while (now_s() < stop + kRequestTimeoutS) {
    int busy = 0;
    double t = now_s();
    for (int i = 0; i < g_nconns; i++) {
      Conn *c = &g_conns[i];
      if (c->fd < 0 && t < stop && conn_open(c) == 0) conn_send(c, t);
      busy += c->busy;
    }
    if (busy == 0 && t >= stop) break;
    int n = epoll_wait(g_epfd, events, 64, 100);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      Conn *c = events[i].data.ptr;
      int status = 0;
      if (conn_read(c, &status) != 1) continue;
      double done = now_s();
      record(status, done - c->t0);
      if (done < stop) {
        if (c->fd < 0 && conn_open(c) != 0) continue;
        conn_send(c, done);
      }
    }
  }
  fprintf(out, "{\"connections\": %d, \"seconds\": %g, \"by_status\": {", connections, seconds);
  for (int i = 0; i < g_nbuckets; i++) {
    fprintf(out, "%s\"%d\": ", i ? ", " : "", g_buckets[i].status);
    write_stats(out, &g_buckets[i].lat);
  }
  fprintf(out, "}, ");
  write_error_samples(out);
  fprintf(out, "}\n");
  return 0;
}

static Conn *idle_conn(void) {
  for (int i = 0; i < g_nconns; i++)
    if (g_conns[i].fd >= 0 && !g_conns[i].busy) return &g_conns[i];
  for (int i = 0; i < g_nconns; i++)
    if (g_conns[i].fd < 0 && conn_open(&g_conns[i]) == 0) return &g_conns[i];
  if (g_nconns < kMaxConns) {
    Conn *c = &g_conns[g_nconns++];
    c->fd = -1;
    if (conn_open(c) == 0) return c;
  }
  return NULL;
}

static int steady(double rate, long count, FILE *out) {
  if (rate <= 0 || rate > 100000 || count < 1 || count > 10000000) {
    fprintf(stderr, "loadgen: RATE must be in (0, 100000] and COUNT in [1, 10^7]\n");
    return 1;
  }
  double start = now_s() + 0.05;
  double interval = 1.0 / rate;
  long next = 0, done = 0;
  struct epoll_event events[64];
  double give_up = start + (double)count * interval + kRequestTimeoutS;
  while (done < count && now_s() < give_up) {
    double t = now_s();
    // Send everything that is due; a request with no free connection waits
    // here, and that wait counts in its latency.
    while (next < count && start + (double)next * interval <= t) {
      Conn *c = idle_conn();
      if (c == NULL) break;
      if (conn_send(c, start + (double)next * interval) == 0) {
        next++;
      } else {
        done++;  // counted as an error by conn_send
        next++;
      }
    }
    double wait = next < count ? start + (double)next * interval - now_s() : 0.1;
    if (wait < 0) wait = 0;
    struct timespec ts = {.tv_sec = (time_t)wait, .tv_nsec = (long)((wait - (double)(time_t)wait) * 1e9)};
    int n = epoll_pwait2(g_epfd, events, 64, &ts, NULL);
    if (n < 0 && errno != EINTR) die("epoll_pwait2");
    for (int i = 0; i < n; i++) {
      Conn *c = events[i].data.ptr;
      int status = 0;
      int r = conn_read(c, &status);
      if (r == 0) continue;
      done++;
      if (r == 1) record(status, now_s() - c->t0);
    }
    for (int i = 0; i < g_nconns; i++) {
      Conn *c = &g_conns[i];
      if (c->busy && now_s() - c->t0 > kRequestTimeoutS) {
        note_error("timeout");
        conn_close(c);
        done++;
      }
    }
  }
  Samples *ok = NULL;
  for (int i = 0; i < g_nbuckets; i++)
    if (g_buckets[i].status == 200) ok = &g_buckets[i].lat;
  fprintf(out, "{\"rate\": %g, \"sent\": %ld, \"ok\": ", rate, count);
  write_stats(out, ok);
  fprintf(out, ", \"non_200\": {");
  int first = 1;
  for (int i = 0; i < g_nbuckets; i++) {
    if (g_buckets[i].status == 200) continue;
    fprintf(out, "%s\"%d\": %zu", first ? "" : ", ", g_buckets[i].status, g_buckets[i].lat.n);
    first = 0;
  }
  fprintf(out, "}, ");
  if (done < count) g_errors += count - done;
  write_error_samples(out);
  fprintf(out, "}\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 8 || (strcmp(argv[1], "flood") != 0 && strcmp(argv[1], "steady") != 0)) {
    fprintf(stderr,
            "usage: loadgen flood HOST PORT PATH CONNECTIONS SECONDS OUT\n"
            "       loadgen steady HOST PORT PATH RATE COUNT OUT\n");
    return 2;
  }
  memset(&g_addr, 0, sizeof g_addr);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((unsigned short)atoi(argv[3]));
  if (inet_pton(AF_INET, argv[2], &g_addr.sin_addr) != 1 || (ntohl(g_addr.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "loadgen: HOST must be a loopback address, got %s\n", argv[2]);
    return 2;
  }
  g_request_len = (size_t)snprintf(g_request, sizeof g_request,
                                   "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                                   "Content-Length: %zu\r\n\r\n%s",
                                   argv[4], argv[2], argv[3], strlen(kBody), kBody);
  g_epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g_epfd < 0) die("epoll_create1");
  FILE *out = fopen(argv[7], "w");
  if (out == NULL) die(argv[7]);
  int rc = strcmp(argv[1], "flood") == 0 ? flood(atoi(argv[5]), atof(argv[6]), out)
                                         : steady(atof(argv[5]), atol(argv[6]), out);
  if (fclose(out) != 0) die(argv[7]);
  return rc;
}
