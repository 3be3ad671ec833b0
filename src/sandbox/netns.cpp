#include "sandbox/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tamaya::sandbox {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

int open_own_netns() { return open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC); }

Status bring_loopback_up() {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Status::Internal("socket for loopback setup: " + errno_text(errno));
  ifreq req{};
  std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
  Status out = Status::Ok();
  if (ioctl(sock, SIOCGIFFLAGS, &req) < 0) {
    out = Status::Internal("reading flags of lo: " + errno_text(errno));
  } else {
    req.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(sock, SIOCSIFFLAGS, &req) < 0) {
      out = Status::Internal("bringing lo up: " + errno_text(errno));
    }
  }
  close(sock);
  return out;
}

}  // namespace

Result<int> create_network_namespace() {
  int home = open_own_netns();
  if (home < 0) {
    return Status::Internal("opening this thread's network namespace: " + errno_text(errno));
  }
  if (unshare(CLONE_NEWNET) < 0) {
    int err = errno;
    close(home);
    return Status::Precondition("cannot create a network namespace: " + errno_text(err) +
                                " (network 'none' needs root; see tamaya doctor)");
  }
  int made = open_own_netns();
  int open_errno = errno;
  Status up = made >= 0 ? bring_loopback_up() : Status::Ok();
  // Back home before anything else can happen on this thread; failing to is
  // a broken invariant (every later socket would land in the wrong place).
  if (setns(home, CLONE_NEWNET) < 0) {
    std::abort();
  }
  close(home);
  if (made < 0) {
    return Status::Internal("opening the new network namespace: " + errno_text(open_errno));
  }
  if (!up.ok()) {
    close(made);
    return up;
  }
  return made;
}

Status run_in_network_namespace(int netns_fd, const std::function<Status()>& fn) {
  int home = open_own_netns();
  if (home < 0) {
    return Status::Internal("opening this thread's network namespace: " + errno_text(errno));
  }
  if (setns(netns_fd, CLONE_NEWNET) < 0) {
    int err = errno;
    close(home);
    return Status::Internal("entering an instance's network namespace: " + errno_text(err));
  }
  Status out = fn();
  if (setns(home, CLONE_NEWNET) < 0) {
    std::abort();
  }
  close(home);
  return out;
}

}  // namespace tamaya::sandbox
