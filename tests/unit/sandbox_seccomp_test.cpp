// The instances' seccomp filter, loaded in a forked child, in either layout:
// every refused call answers EPERM, clone with a namespace flag too, clone3
// ENOSYS, and what is not refused reaches the kernel. The arguments are
// invalid on purpose (-1 as fd, pointer, flags and length): the kernel
// refuses such a call with its own errno and changes nothing, filter or not.
#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <string>

#include "sandbox/seccomp_filter.h"

namespace tamaya::sandbox {
namespace {

// Runs `before`, loads `program`, runs `after(before's result)`, all in a
// forked child; the child's findings (one line each) come back, or
// "load failed".
template <typename Before, typename After>
std::string in_filtered_child(const SeccompProgram& program, Before before, After after) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    auto first = before();
    sock_fprog prog = program.program();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
      (void)!write(fds[1], "load failed", 11);
      _exit(1);
    }
    std::string out = after(first);
    (void)!write(fds[1], out.data(), out.size());
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  return out;
}

constexpr long kBad = -1;

// What instances must not call, named here rather than taken from
// refused_syscalls(), so that a name dropped from the filter's list fails.
const char* const kMustRefuse[] = {"mount",
                                   "umount2",
                                   "pivot_root",
                                   "ptrace",
                                   "process_vm_readv",
                                   "process_vm_writev",
                                   "bpf",
                                   "kexec_load",
                                   "kexec_file_load",
                                   "init_module",
                                   "finit_module",
                                   "delete_module",
                                   "keyctl",
                                   "add_key",
                                   "request_key",
                                   "unshare",
                                   "setns",
                                   "reboot",
                                   "swapon",
                                   "swapoff",
                                   "perf_event_open",
                                   "open_by_handle_at",
                                   "userfaultfd",
                                   "acct",
                                   "settimeofday",
                                   "clock_settime",
                                   "clock_adjtime",
                                   "adjtimex",
                                   "fsopen",
                                   "fsmount",
                                   "fsconfig",
                                   "move_mount",
                                   "open_tree",
                                   "mount_setattr",
                                   "name_to_handle_at",
                                   "quotactl",
                                   "sethostname",
                                   "setdomainname",
                                   "iopl",
                                   "ioperm",
                                   "kcmp",
                                   "pidfd_getfd",
                                   "syslog"};

// The errno of each of those calls made with invalid arguments, by name.
std::map<std::string, int> refused_call_errnos() {
  std::map<std::string, int> out;
  for (const char* name : kMustRefuse) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;
    errno = 0;
    long rc = syscall(nr, kBad, kBad, kBad, kBad, kBad, kBad);
    out[name] = rc == -1 ? errno : 0;
  }
  return out;
}

class SeccompFilter : public ::testing::TestWithParam<SeccompLayout> {};

TEST_P(SeccompFilter, EveryRefusedCallAnswersEperm) {
  auto program = build_seccomp_program(GetParam());
  ASSERT_TRUE(program.ok()) << program.status().message();
  std::string out = in_filtered_child(*program, refused_call_errnos, [](const auto& before) {
    // A call the kernel already answers EPERM here (kexec or module loading
    // turned off, lockdown) says nothing about the filter; every other one
    // must change to EPERM. Most calls must be testable.
    std::string found;
    size_t tested = 0;
    for (const auto& [name, e] : refused_call_errnos()) {
      if (before.at(name) == EPERM) continue;
      ++tested;
      if (e != EPERM) found += name + " errno " + std::to_string(e) + "\n";
    }
    if (tested * 2 < before.size()) found += "too few calls testable\n";
    return found;
  });
  EXPECT_EQ(out, "");
}

TEST_P(SeccompFilter, CloneWithANamespaceFlagIsRefusedAndWithoutReachesTheKernel) {
  auto program = build_seccomp_program(GetParam());
  ASSERT_TRUE(program.ok()) << program.status().message();
  std::string out = in_filtered_child(
      *program, [] { return 0; },
      [](int) {
        std::string found;
        // CLONE_SIGHAND without CLONE_VM is EINVAL in the kernel, before any
        // namespace or process is made.
        auto clone_errno = [](unsigned long flags) {
          errno = 0;
          long rc = syscall(SYS_clone, flags | CLONE_SIGHAND, 0, 0, 0, 0);
          return rc == -1 ? errno : 0;
        };
        for (unsigned long flag : {CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
                                   CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP}) {
          if (int e = clone_errno(flag); e != EPERM)
            found += "flag " + std::to_string(flag) + " errno " + std::to_string(e) + "\n";
        }
        if (int e = clone_errno(0); e != EINVAL)
          found += "plain clone errno " + std::to_string(e) + "\n";
        errno = 0;
        if (syscall(SYS_clone3, nullptr, 0) != -1 || errno != ENOSYS)
          found += "clone3 not ENOSYS\n";
        // Calls that are not refused work as usual.
        if (syscall(SYS_getppid) <= 0) found += "getppid failed\n";
        errno = 0;
        if (syscall(SYS_close, kBad) != -1 || errno != EBADF) found += "close(-1) not EBADF\n";
        return found;
      });
  EXPECT_EQ(out, "");
}

INSTANTIATE_TEST_SUITE_P(Layouts, SeccompFilter,
                         ::testing::Values(SeccompLayout::kTree, SeccompLayout::kRow),
                         [](const auto& info) {
                           return info.param == SeccompLayout::kTree ? "Tree" : "Row";
                         });

}  // namespace
}  // namespace tamaya::sandbox
