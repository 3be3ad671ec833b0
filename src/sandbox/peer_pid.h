// A message from a child on a unix socket whose receiving end has
// SO_PASSCRED: the kernel attaches the sender's pid as the receiver sees it,
// which is how the daemon learns the host pid of a child that lives in a pid
// namespace of its own (a zygote's child, a sandbox made ahead).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstring>

namespace tamaya::sandbox {

// recvmsg of up to `len` bytes into `buf` with `flags`; `pid` gets the
// sender's pid (-1 when none came). Returns what recvmsg returned.
inline ssize_t recv_with_peer_pid(int sock, char* buf, size_t len, int flags, pid_t& pid) {
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  pid = -1;
  const ssize_t n = recvmsg(sock, &msg, flags);
  for (cmsghdr* c = n > 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      pid = cred.pid;
    }
  }
  return n;
}

}  // namespace tamaya::sandbox
