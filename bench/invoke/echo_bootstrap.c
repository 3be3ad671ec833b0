/* The `native-echo` function: a minimal Lambda Runtime API client in plain C.
 *
 * It answers every invocation with the event's bytes, over one keep-alive
 * HTTP/1.1 connection to AWS_LAMBDA_RUNTIME_API. It exists so the benchmark
 * measures the daemon's invoke path and not a language runtime: whatever time
 * is left after this loop is tamaya's own.
 *
 * Built by bench/invoke/run.sh with `cc -O2`; not part of the product. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Lambda's limits: an event is at most 6 MiB, headers are small. */
#define MAX_HEADER_BYTES (16 * 1024)
#define MAX_BODY_BYTES (6 * 1024 * 1024 + 100)
/* The daemon may close an idle connection; reconnect this many times in a
 * row before giving up, so a dead daemon does not leave us spinning. */
#define MAX_CONNECT_ATTEMPTS 50

static char host[256];
static char port[16];
static int fd = -1;

/* Bytes read past the end of the last message (the next one's start). */
static char inbuf[MAX_HEADER_BYTES];
static size_t inlen = 0;

static void die(const char* what) {
  fprintf(stderr, "native-echo: %s: %s\n", what, errno ? strerror(errno) : "protocol error");
  exit(1);
}

static void disconnect(void) {
  if (fd >= 0) close(fd);
  fd = -1;
  inlen = 0;
}

static int connect_api(void) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  for (int attempt = 0; attempt < MAX_CONNECT_ATTEMPTS; ++attempt) {
    if (getaddrinfo(host, port, &hints, &res) == 0) {
      for (struct addrinfo* a = res; a; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (s < 0) continue;
        if (connect(s, a->ai_addr, a->ai_addrlen) == 0) {
          int one = 1;
          setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          freeaddrinfo(res);
          fd = s;
          inlen = 0;
          return 0;
        }
        close(s);
      }
      freeaddrinfo(res);
    }
    usleep(10000);
  }
  return -1;
}

static int write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Head and body in one syscall: two writes would be two segments on a
 * TCP_NODELAY socket, and the daemon would wake once for each. */
static int write_two(const char* a, size_t an, const char* b, size_t bn) {
  struct iovec iov[2] = {{(void*)a, an}, {(void*)b, bn}};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  while (iov[0].iov_len + iov[1].iov_len > 0) {
    ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    size_t left = (size_t)w;
    for (int i = 0; i < 2; ++i) {
      size_t take = left < iov[i].iov_len ? left : iov[i].iov_len;
      iov[i].iov_base = (char*)iov[i].iov_base + take;
      iov[i].iov_len -= take;
      left -= take;
    }
    if (iov[0].iov_len == 0) {
      msg.msg_iov = &iov[1];
      msg.msg_iovlen = 1;
    }
  }
  return 0;
}

/* Finds a header's value (case-insensitive name) in a header block; copies
 * at most cap-1 bytes. Returns 1 when found. */
static int header_value(const char* headers, const char* name, char* out, size_t cap) {
  size_t nlen = strlen(name);
  const char* line = strstr(headers, "\r\n");
  while (line) {
    line += 2;
    if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
      const char* v = line + nlen + 1;
      while (*v == ' ' || *v == '\t') ++v;
      const char* end = strstr(v, "\r\n");
      size_t len = end ? (size_t)(end - v) : strlen(v);
      while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) --len;
      if (len >= cap) len = cap - 1;
      memcpy(out, v, len);
      out[len] = '\0';
      return 1;
    }
    line = strstr(line, "\r\n");
  }
  return 0;
}

/* Reads one HTTP response: status, headers (NUL-terminated into `headers`)
 * and a Content-Length body into *body (malloc'd, caller frees). Returns the
 * status code, or -1 when the connection failed. */
static int read_response(char* headers, char** body, size_t* body_len, int* keep_alive) {
  size_t head_end = 0;
  for (;;) {
    char* end = NULL;
    if (inlen >= 4) {
      /* memmem: the buffer is not NUL-terminated. */
      end = memmem(inbuf, inlen, "\r\n\r\n", 4);
    }
    if (end) {
      head_end = (size_t)(end - inbuf) + 4;
      break;
    }
    if (inlen == sizeof inbuf) return -1;
    ssize_t r = recv(fd, inbuf + inlen, sizeof inbuf - inlen, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    inlen += (size_t)r;
  }
  memcpy(headers, inbuf, head_end - 2);
  headers[head_end - 2] = '\0';

  int status = 0;
  if (sscanf(headers, "HTTP/1.%*d %d", &status) != 1) return -1;
  char value[64];
  size_t length = 0;
  if (header_value(headers, "Content-Length", value, sizeof value)) {
    length = strtoul(value, NULL, 10);
  }
  if (length > MAX_BODY_BYTES) return -1;
  *keep_alive = !(header_value(headers, "Connection", value, sizeof value) &&
                  strcasecmp(value, "close") == 0);

  char* b = malloc(length + 1);
  if (!b) die("out of memory");
  size_t have = inlen - head_end;
  if (have > length) have = length;
  memcpy(b, inbuf + head_end, have);
  size_t consumed = head_end + have;
  memmove(inbuf, inbuf + consumed, inlen - consumed);
  inlen -= consumed;
  while (have < length) {
    ssize_t r = recv(fd, b + have, length - have, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(b);
      return -1;
    }
    have += (size_t)r;
  }
  b[length] = '\0';
  *body = b;
  *body_len = length;
  return status;
}

int main(void) {
  const char* api = getenv("AWS_LAMBDA_RUNTIME_API");
  if (!api || !*api) die("AWS_LAMBDA_RUNTIME_API is not set");
  const char* colon = strrchr(api, ':');
  if (!colon || (size_t)(colon - api) >= sizeof host || strlen(colon + 1) >= sizeof port) {
    die("AWS_LAMBDA_RUNTIME_API is not host:port");
  }
  memcpy(host, api, (size_t)(colon - api));
  host[colon - api] = '\0';
  strcpy(port, colon + 1);

  /* ECHO_DELAY_MS: wait this long before answering, to stand for a handler
   * that does work (bench/spike floods such a function). */
  const char* delay_env = getenv("ECHO_DELAY_MS");
  const long delay_ms = delay_env ? atol(delay_env) : 0;

  static char headers[MAX_HEADER_BYTES];
  char request[512];
  char request_id[256];
  int failures = 0;
  for (;;) {
    if (fd < 0 && connect_api() != 0) die("cannot connect to the Runtime API");

    int n = snprintf(request, sizeof request,
                     "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                     "Host: %s\r\n\r\n",
                     api);
    char* event = NULL;
    size_t event_len = 0;
    int keep_alive = 1;
    int status = -1;
    if (write_all(request, (size_t)n) == 0) {
      status = read_response(headers, &event, &event_len, &keep_alive);
    }
    if (status < 0) {
      /* A keep-alive connection the server closed: reconnect and ask again. */
      disconnect();
      if (++failures > MAX_CONNECT_ATTEMPTS) die("the Runtime API keeps closing the connection");
      continue;
    }
    failures = 0;
    if (!keep_alive) disconnect();
    if (status != 200 ||
        !header_value(headers, "Lambda-Runtime-Aws-Request-Id", request_id, sizeof request_id)) {
      free(event);
      fprintf(stderr, "native-echo: invocation/next answered %d without a request id\n", status);
      exit(1);
    }

    if (delay_ms > 0) usleep((useconds_t)(delay_ms * 1000));
    /* Echo the event back. */
    if (fd < 0 && connect_api() != 0) die("cannot connect to the Runtime API");
    n = snprintf(request, sizeof request,
                 "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\n"
                 "Host: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 request_id, api, event_len);
    if (write_two(request, (size_t)n, event, event_len) != 0) {
      die("sending the response");
    }
    free(event);
    char* ack = NULL;
    size_t ack_len = 0;
    status = read_response(headers, &ack, &ack_len, &keep_alive);
    if (status < 0) die("reading the response's acknowledgement");
    free(ack);
    if (status != 202) {
      fprintf(stderr, "native-echo: invocation response answered %d\n", status);
    }
    if (!keep_alive) disconnect();
  }
}
