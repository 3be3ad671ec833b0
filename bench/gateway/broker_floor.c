// bench/gateway/broker_floor.c: the Lambda Runtime API's floor on this host.
//
// A minimal broker in plain C, one thread on epoll: clients POST to its public
// port, each request becomes an invocation, and function instances fetch
// invocations from its Runtime API port (GET .../invocation/next) and answer
// them (POST .../invocation/{id}/response), as they do from tamaya. It does
// only what the protocol needs: no routes, no event building (the event is the
// client's body, or a fixed file), no auth, logs, metering, sandbox or limits.
// Its throughput is an upper bound for any platform that runs unchanged Lambda
// runtimes on this host; the bench shows it beside the nginx pair so a gap to
// nginx can be told apart into what the protocol costs and what tamaya adds.
//
// Like tamaya it writes each connection's answers once per turn of the loop,
// so a runtime that pipelines its response with its next long poll gets the
// 202 and the next event in one write. Waiting instances are used last in,
// first out (a warm instance's cache stays warm); invocations wait in order.
//
//   broker_floor PUBLIC_PORT RUNTIME_PORT [EVENT_FILE]
//
// Not for anything but the bench: Content-Length bodies only, 64 KiB per
// request at most, no timeouts.

#define _GNU_SOURCE  // memmem, accept4
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST (64 * 1024)
#define MAX_EVENTS 128

enum kind { LISTEN_PUBLIC, LISTEN_RUNTIME, PUBLIC, RUNTIME };

struct buf {
  char* p;
  size_t len, cap;
};

struct conn {
  enum kind kind;
  int fd;
  struct buf in, out;
  int dirty;     // on the flush list
  int want_out;  // EPOLLOUT armed
  struct conn* next_dirty;
  struct conn* next_wait;  // waiting runtime stack
  struct conn* next_dead;  // closed this turn, freed at its end
  // PUBLIC: the invocation in flight (0: none). RUNTIME: the one it runs.
  unsigned long long inv;
  int waiting;  // RUNTIME: in a long poll
  int closed;
};

struct inv {
  unsigned long long id;
  struct conn* client;  // NULL once the client has gone
  char* body;
  size_t len;
  struct inv* next;
};

static int ep;
static struct conn* dead;
static struct conn* dirty_head;
static struct conn* waiting_top;
static struct inv *queue_head, *queue_tail;
static struct inv* running[1 << 16];  // by id & mask; ids are unique while in flight
static unsigned long long next_id = 1;
static char* fixed_event;
static size_t fixed_event_len;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void buf_append(struct buf* b, const char* p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("realloc");
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void buf_consume(struct buf* b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static void mark_dirty(struct conn* c) {
  if (c->dirty || c->closed) return;
  c->dirty = 1;
  c->next_dirty = dirty_head;
  dirty_head = c;
}

static void close_conn(struct conn* c);

static void flush(struct conn* c) {
  while (c->out.len > 0) {
    ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
    if (w > 0) {
      buf_consume(&c->out, (size_t)w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->want_out) {
        struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->want_out = 1;
      }
      return;
    }
    close_conn(c);
    return;
  }
  if (c->want_out) {
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->want_out = 0;
  }
}

static void send_event(struct conn* rt, struct inv* v) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long deadline = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 30000;
  char head[512];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Lambda-Runtime-Aws-Request-Id: %llu\r\n"
                   "Lambda-Runtime-Deadline-Ms: %lld\r\n"
                   "Lambda-Runtime-Invoked-Function-Arn: "
                   "arn:aws:lambda:local:000000000000:function:floor\r\n"
                   "Content-Length: %zu\r\n\r\n",
                   v->id, deadline, v->len);
  buf_append(&rt->out, head, (size_t)n);
  buf_append(&rt->out, v->body, v->len);
  rt->inv = v->id;
  running[v->id & 0xffff] = v;
  mark_dirty(rt);
}

static void dispatch(struct inv* v) {
  if (waiting_top) {
    struct conn* rt = waiting_top;
    waiting_top = rt->next_wait;
    rt->waiting = 0;
    send_event(rt, v);
    return;
  }
  v->next = NULL;
  if (queue_tail)
    queue_tail->next = v;
  else
    queue_head = v;
  queue_tail = v;
}

static void free_inv(struct inv* v) {
  free(v->body);
  free(v);
}

static void close_conn(struct conn* c) {
  if (c->closed) return;
  c->closed = 1;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->kind == PUBLIC && c->inv) {
    struct inv* v = running[c->inv & 0xffff];
    if (v && v->id == c->inv) v->client = NULL;
    for (v = queue_head; v; v = v->next)
      if (v->client == c) v->client = NULL;
  }
  if (c->kind == RUNTIME && c->waiting) {
    struct conn** p = &waiting_top;
    while (*p && *p != c) p = &(*p)->next_wait;
    if (*p) *p = c->next_wait;
  }
  // Freed at the end of the loop's turn: this turn's events may still name it.
  c->next_dead = dead;
  dead = c;
}

// Returns the length of one complete request at the start of b (0: not yet),
// with the body's offset and length; -1 for a request this broker refuses.
static long parse_request(struct buf* b, size_t* body_at, size_t* body_len) {
  char* end = b->len >= 4 ? memmem(b->p, b->len, "\r\n\r\n", 4) : NULL;
  if (!end) return b->len > MAX_REQUEST ? -1 : 0;
  size_t head = (size_t)(end - b->p) + 4;
  size_t len = 0;
  for (char* line = memmem(b->p, head, "\r\n", 2); line && line + 2 < b->p + head;
       line = memmem(line + 2, (size_t)(b->p + head - line - 2), "\r\n", 2)) {
    if (strncasecmp(line + 2, "content-length:", 15) == 0) len = strtoul(line + 17, NULL, 10);
  }
  if (len > MAX_REQUEST) return -1;
  if (b->len < head + len) return 0;
  *body_at = head;
  *body_len = len;
  return (long)(head + len);
}

static void process_input(struct conn* c);

static void on_public_request(struct conn* c, const char* body, size_t len) {
  struct inv* v = calloc(1, sizeof *v);
  if (!v) die("calloc");
  v->id = next_id++;
  v->client = c;
  const char* ev = fixed_event ? fixed_event : body;
  v->len = fixed_event ? fixed_event_len : len;
  v->body = malloc(v->len ? v->len : 1);
  if (!v->body) die("malloc");
  memcpy(v->body, ev, v->len);
  c->inv = v->id;
  dispatch(v);
}

static void on_runtime_request(struct conn* c, const char* req, const char* body, size_t len) {
  if (strncmp(req, "GET ", 4) == 0) {
    if (queue_head) {
      struct inv* v = queue_head;
      queue_head = v->next;
      if (!queue_head) queue_tail = NULL;
      send_event(c, v);
    } else {
      c->waiting = 1;
      c->next_wait = waiting_top;
      waiting_top = c;
    }
    return;
  }
  // POST /2018-06-01/runtime/invocation/{id}/response
  static const char k202[] =
      "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
      "{\"status\":\"OK\"}\n";
  buf_append(&c->out, k202, sizeof k202 - 1);
  mark_dirty(c);
  struct inv* v = running[c->inv & 0xffff];
  if (!v || v->id != c->inv) return;
  running[c->inv & 0xffff] = NULL;
  c->inv = 0;
  if (v->client) {
    char head[128];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     len);
    buf_append(&v->client->out, head, (size_t)n);
    buf_append(&v->client->out, body, len);
    struct conn* client = v->client;
    client->inv = 0;
    mark_dirty(client);
    free_inv(v);
    // Its next request may be waiting already (a pipelining client).
    if (client->in.len > 0) process_input(client);
    return;
  }
  free_inv(v);
}

// Handles the complete requests in c's buffer. A client has one request in
// flight at a time; a pipelined next one waits in its buffer until answered.
static void process_input(struct conn* c) {
  while (!c->closed && !(c->kind == PUBLIC && c->inv)) {
    size_t at = 0, len = 0;
    long n = parse_request(&c->in, &at, &len);
    if (n < 0) {
      close_conn(c);
      return;
    }
    if (n == 0) break;
    if (c->kind == PUBLIC)
      on_public_request(c, c->in.p + at, len);
    else
      on_runtime_request(c, c->in.p, c->in.p + at, len);
    buf_consume(&c->in, (size_t)n);
  }
}

static void on_readable(struct conn* c) {
  char tmp[16384];
  if (c->closed) return;
  for (;;) {
    ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
    if (r > 0) {
      buf_append(&c->in, tmp, (size_t)r);
      if ((size_t)r < sizeof tmp) break;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_conn(c);
    return;
  }
  process_input(c);
}

static int listen_on(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr*)&a, sizeof a) != 0) die("bind");
  if (listen(s, 1024) != 0) die("listen");
  return s;
}

static void add(int fd, enum kind kind) {
  struct conn* c = calloc(1, sizeof *c);
  if (!c) die("calloc");
  c->fd = fd;
  c->kind = kind;
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) die("epoll_ctl");
}

static void read_event_file(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) die(path);
  struct buf b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
  fclose(f);
  fixed_event = b.p ? b.p : "";
  fixed_event_len = b.len;
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: broker_floor PUBLIC_PORT RUNTIME_PORT [EVENT_FILE]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4) read_event_file(argv[3]);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  add(listen_on(atoi(argv[1])), LISTEN_PUBLIC);
  add(listen_on(atoi(argv[2])), LISTEN_RUNTIME);
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, events, MAX_EVENTS, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      struct conn* c = events[i].data.ptr;
      if (c->closed) continue;
      if (c->kind == LISTEN_PUBLIC || c->kind == LISTEN_RUNTIME) {
        int fd;
        while ((fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          add(fd, c->kind == LISTEN_PUBLIC ? PUBLIC : RUNTIME);
        }
        continue;
      }
      if (events[i].events & EPOLLOUT) flush(c);
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
    }
    // Each connection's answers of this turn go out in one write.
    while (dirty_head) {
      struct conn* c = dirty_head;
      dirty_head = c->next_dirty;
      c->dirty = 0;
      if (!c->closed) flush(c);
    }
    while (dead) {
      struct conn* c = dead;
      dead = c->next_dead;
      free(c->in.p);
      free(c->out.p);
      free(c);
    }
  }
  return 0;
}
