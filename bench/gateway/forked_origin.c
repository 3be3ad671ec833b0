// bench/gateway/forked_origin.c: a reference origin with the shape of
// function instances. One process per connection, blocking reads, one request
// at a time: like an instance waiting in its Runtime API long poll, each
// process sleeps between requests and a request wakes it. Behind the nginx
// proxy it tells how much of a gap to the nginx pair comes from that shape
// (a process woken per request) rather than from tamaya's own work.
//
// Answers every request on a connection with a fixed JSON body, as the nginx
// origin does; handles Content-Length bodies and pipelined requests. Not for
// anything but the bench: no chunked bodies, 64 KiB per request at most.
//
//   forked_origin PORT      (listens on 127.0.0.1:PORT; children die with it)

#define _GNU_SOURCE  // memmem
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char kAnswer[] =
    "HTTP/1.1 200 OK\r\nServer: forked_origin\r\nContent-Type: application/json\r\n"
    "Content-Length: 11\r\n\r\n{\"ok\":true}";

// Content-Length of the head in buf[0, head_len), or 0 without one.
static size_t content_length(const char* buf, size_t head_len) {
  static const char kName[] = "\r\ncontent-length:";
  const size_t n = sizeof kName - 1;
  for (size_t i = 0; i + n <= head_len; i++) {
    if (strncasecmp(buf + i, kName, n) == 0) return strtoul(buf + i + n, NULL, 10);
  }
  return 0;
}

static int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void serve(int fd) {
  static char buf[64 << 10];
  size_t have = 0;
  for (;;) {
    char* end = have >= 4 ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
    if (end != NULL) {
      size_t head = (size_t)(end - buf) + 4;
      size_t total = head + content_length(buf, head);
      if (total > sizeof buf) return;
      if (have >= total) {
        if (write_all(fd, kAnswer, sizeof kAnswer - 1) != 0) return;
        memmove(buf, buf + total, have - total);
        have -= total;
        continue;
      }
    } else if (have == sizeof buf) {
      return;
    }
    ssize_t r = read(fd, buf + have, sizeof buf - have);
    if (r <= 0) return;
    have += (size_t)r;
  }
}

int main(int argc, char** argv) {
  if (argc != 2 || atoi(argv[1]) <= 0) {
    fprintf(stderr, "usage: forked_origin PORT\n");
    return 2;
  }
  signal(SIGCHLD, SIG_IGN);  // children are reaped by the kernel
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (lfd < 0 || bind(lfd, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(lfd, 1024) != 0) {
    perror("forked_origin: listen");
    return 1;
  }
  const pid_t parent = getpid();
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid_t pid = fork();
    if (pid == 0) {
      close(lfd);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);  // the parent died before the prctl
      serve(fd);
      _exit(0);
    }
    close(fd);
  }
}
