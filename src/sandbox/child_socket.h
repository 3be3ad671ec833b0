// Messages on the unix sockets between the daemon and a child it talks to
// before the child runs a function (a zygote and its children, a sandbox
// made ahead).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

namespace tamaya::sandbox {

// recvmsg of up to `len` bytes into `buf` with `flags`; `pid` gets the
// sender's pid (-1 when none came). The receiving end must have
// SO_PASSCRED: the kernel then attaches the sender's pid as the receiver
// sees it, which is how the daemon learns the host pid of a child in a pid
// namespace of its own. Returns what recvmsg returned.
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

// Sends `body` with `fds` attached (SCM_RIGHTS; at least one fd), retrying
// on EINTR. False with errno set when the socket refuses it.
inline bool send_with_fds(int sock, std::string_view body, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(body.data()), body.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return false;
  }
  return true;
}

}  // namespace tamaya::sandbox
