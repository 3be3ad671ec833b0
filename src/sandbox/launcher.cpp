// How an instance is started, and why this way:
//
// The daemon is multi-threaded and may hold a large heap, so the child is
// made with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), as posix_spawn does:
// no page tables are copied (fork of a 1 GiB daemon costs milliseconds, this
// does not grow with the heap), the launching thread sleeps until the child
// has called execve or died, and the kernel hands back a pidfd that cannot
// refer to a recycled pid. Because the child shares our memory until execve,
// it runs on its own small stack, writes nothing but the failure report in
// ChildArgs, and makes only async-signal-safe system calls (no malloc, no
// locks, no C++ library).
// Everything it needs (argv, envp, rlimits, fds) is built before the clone.
//
// A failure before execve is written into ChildArgs by the child; the parent
// reads it once clone returns (CLONE_VFORK guarantees the child is done by
// then), reaps the child and returns the error as a Status. Shared memory does
// what a report pipe would do in a forked child, without the extra fds.
#include "sandbox/launcher.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <utility>

#include "common/fd.h"
#include "common/log.h"
#include "common/thread_step.h"
#include "sandbox/cgroup.h"
#include "sandbox/child_socket.h"

namespace tamaya::sandbox {

namespace {

// The child runs a few system calls on this stack before execve; 64 KiB
// leaves room for a lazy PLT resolution saving the full AVX-512 state.
constexpr size_t kChildStackBytes = 64 << 10;

// Exit code of a child that failed before execve; the parent reaps it and
// reports the error it left in ChildArgs, so nobody else sees this code.
constexpr int kChildFailedExit = 127;
// How long a launch waits for a sandbox made ahead to exec once told to go:
// far more than it takes (well under a millisecond), bounded so a member
// stuck in the kernel cannot hold the launch.
constexpr int kMemberExecTimeoutMs = 5'000;

// Size of the kernel's sigset_t (64 signals) for the raw rt_sig* calls.
constexpr size_t kKernelSigsetBytes = 8;

// What the child was doing when it failed; turned into words by the parent.
enum class Step : int {
  kNone = 0,
  kSetsid,
  kDeathSignal,
  kStdio,
  kCloseFds,
  kRlimit,
  kChdir,
  kExec,
  kCgroup,
  kNetns,
  kMount,
  kPivotRoot,
  kHostname,
  kUid,
  kNoNewPrivs,
  kSeccomp,
  kCpuPolicy,
};

// What the child mounts on its copy of the prepared root, in order; the
// index of a failed one is left in ChildArgs::failed_limit.
enum class RootStep : size_t { kEnter, kUnshare, kCode, kRuntimes, kTmp, kProc, kProcSys };

const char* root_step_text(RootStep step) {
  switch (step) {
    case RootStep::kEnter:
      return "entering its prepared root (setns)";
    case RootStep::kUnshare:
      return "a mount namespace of its own (unshare)";
    case RootStep::kCode:
      return "mounting its code at /var/task";
    case RootStep::kRuntimes:
      return "mounting the runtime clients at /opt/tamaya/runtimes";
    case RootStep::kTmp:
      return "mounting its private /tmp";
    case RootStep::kProc:
      return "mounting /proc";
    case RootStep::kProcSys:
      return "making /proc/sys read-only";
  }
  return "preparing its root";
}

// One step of building the prepared root (RootTemplates), in order.
enum class MountKind : int { kMkdir, kTouch, kSymlink, kBind, kTmpfs, kProc };

struct MountOp {
  MountKind kind;
  const char* source;   // bind: host path; symlink: link text; tmpfs/proc: fs name
  const char* target;   // path under the new root, as seen before pivot_root
  unsigned long flags;  // bind: flags of the read-only remount (0: plain rw bind)
  const char* data;     // tmpfs options
};

struct LimitSetting {
  __rlimit_resource_t resource;
  rlimit value;
  const char* name;
};

// Shared with the child (CLONE_VM): inputs prepared by the parent, and the
// failure report written by the child. Nothing here is allocated by the child.
struct ChildArgs {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  const LimitSetting* limits;
  size_t limit_count;
  pid_t parent_pid;

  // Isolation, all prepared by the parent; absent parts are -1/null/0.
  const int* cgroup_fds;
  size_t cgroup_fd_count;
  int netns_fd = -1;
  int root_ns = -1;         // >= 0: the prepared root's mount namespace, copied for the child
  int code_tree = -1;       // detached read-only mount of the code (open_tree), for kTaskRoot
  int runtimes_tree = -1;   // the same for kRuntimesRoot; -1: none
  const char* tmp_options;  // tmpfs options of the private /tmp
  const char* hostname;
  uint32_t uid;  // 0: keep
  uint32_t gid;
  bool no_new_privs;
  const sock_fprog* seccomp;  // null: none
  int parent_pidfd = -1;      // >= 0 in a new pid namespace, where getppid() is 0
  // >= 0: a sandbox made ahead (ReadySandboxes). Walled in up to what
  // depends on its instance, it says "r" on this socket and waits for "g"
  // with the code (and runtimes) trees as fds; every field used after
  // that is filled in by then.
  int member_ctl = -1;
  int member_exec_fd = -1;  // a member's end of its exec pipe: kept open until execve
  bool batch_cpu;           // SCHED_BATCH (SandboxOptions::batch_cpu)

  Step failed_step = Step::kNone;
  int failed_errno;
  size_t failed_limit;  // also the index of a failed mount op
};

[[noreturn]] void child_fail(ChildArgs* args, Step step) {
  args->failed_errno = errno;
  args->failed_step = step;
  _exit(kChildFailedExit);
}

// The code (and runtimes) attached inside the child's copy of the root.
void mount_trees(ChildArgs* args, int code_tree, int runtimes_tree) {
  if (move_mount(code_tree, "", AT_FDCWD, kTaskRoot, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    args->failed_limit = static_cast<size_t>(RootStep::kCode);
    child_fail(args, Step::kMount);
  }
  if (runtimes_tree >= 0 &&
      move_mount(runtimes_tree, "", AT_FDCWD, kRuntimesRoot, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    args->failed_limit = static_cast<size_t>(RootStep::kRuntimes);
    child_fail(args, Step::kMount);
  }
}

// close_range of every fd from 3 up but the (up to) three given, in any
// order (-1: none). False when the kernel refuses.
bool close_all_but(int keep, int also_a = -1, int also_b = -1) {
  int kept[3] = {keep, also_a, also_b};
  // Sort the three (a tiny network): async-signal-safe, no library.
  auto order = [&](int i, int j) {
    if (kept[i] > kept[j]) {
      int t = kept[i];
      kept[i] = kept[j];
      kept[j] = t;
    }
  };
  order(0, 1);
  order(1, 2);
  order(0, 1);
  unsigned from = 3;
  for (int fd : kept) {
    if (fd < static_cast<int>(from)) continue;
    if (static_cast<unsigned>(fd) > from &&
        close_range(from, static_cast<unsigned>(fd) - 1, 0) < 0) {
      return false;
    }
    from = static_cast<unsigned>(fd) + 1;
  }
  return close_range(from, ~0U, 0) == 0;
}

// A member (ReadySandboxes) waits here for its instance, walled in but for
// the code, the uid, the rlimits and the filter. It holds only what it needs
// while it waits: a copy of any other fd of the daemon's would keep a
// connection or a pipe open for as long as it waits.
void wait_as_member(ChildArgs* args) {
  if (!close_all_but(args->member_ctl, args->member_exec_fd, args->parent_pidfd)) {
    child_fail(args, Step::kCloseFds);
  }
  // Dies with the holder thread that made it (the uid change below clears
  // this; it is set again after).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) child_fail(args, Step::kDeathSignal);
  pollfd parent{args->parent_pidfd, POLLIN, 0};
  if (args->parent_pidfd < 0 || poll(&parent, 1, 0) != 0) _exit(kChildFailedExit);
  if (send(args->member_ctl, "r", 1, MSG_NOSIGNAL) != 1) _exit(kChildFailedExit);
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(args->member_ctl, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  // Anything but "g" with its trees: the daemon let it go unused.
  int trees[2] = {-1, -1};
  cmsghdr* c = n == 1 && byte == 'g' ? CMSG_FIRSTHDR(&msg) : nullptr;
  if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
    _exit(kChildFailedExit);
  }
  const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  memcpy(trees, CMSG_DATA(c), (count < 2 ? count : 2) * sizeof(int));
  if (trees[0] < 0) _exit(kChildFailedExit);
  mount_trees(args, trees[0], trees[1]);
}

// Runs in the child, on its own stack, sharing the parent's memory:
// async-signal-safe system calls only. All signals are blocked on entry (the
// parent blocked them before clone), so no handler of the daemon can run here.
int child_main(void* opaque) {
  auto* args = static_cast<ChildArgs*>(opaque);

  // Default dispositions for every signal, including glibc's internal ones
  // that sigaction() refuses to touch. An all-zero kernel sigaction is
  // SIG_DFL with no flags, whatever the architecture's field order.
  const unsigned long default_action[8] = {};
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) {
      continue;
    }
    syscall(SYS_rt_sigaction, sig, default_action, nullptr, kKernelSigsetBytes);
  }
  const uint64_t empty_mask = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, nullptr, kKernelSigsetBytes);

  if (setsid() < 0) {
    child_fail(args, Step::kSetsid);
  }
  // Inherited by every thread and child it makes, across execve.
  if (args->batch_cpu) {
    const sched_param no_priority{};
    if (sched_setscheduler(0, SCHED_BATCH, &no_priority) < 0) {
      child_fail(args, Step::kCpuPolicy);
    }
  }

  // Into the cgroups first, so everything after is accounted and limited.
  // "0" names the writer in v1 and v2 alike, whatever its pid namespace.
  for (size_t i = 0; i < args->cgroup_fd_count; ++i) {
    if (write(args->cgroup_fds[i], "0", 1) != 1) {
      child_fail(args, Step::kCgroup);
    }
  }
  if (args->netns_fd >= 0 && setns(args->netns_fd, CLONE_NEWNET) < 0) {
    child_fail(args, Step::kNetns);
  }

  if (args->root_ns >= 0) {
    // Into a copy of the prepared root (RootTemplates below): it already
    // holds the read-only allowlist, /dev and the empty mount points, all
    // private, so only what differs per instance is mounted here.
    auto fail_at = [args](RootStep step) {
      args->failed_limit = static_cast<size_t>(step);
      child_fail(args, Step::kMount);
    };
    if (setns(args->root_ns, CLONE_NEWNS) < 0) fail_at(RootStep::kEnter);
    if (unshare(CLONE_NEWNS) < 0) fail_at(RootStep::kUnshare);
    if (args->member_ctl < 0) mount_trees(args, args->code_tree, args->runtimes_tree);
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, args->tmp_options) < 0) {
      fail_at(RootStep::kTmp);
    }
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
      fail_at(RootStep::kProc);
    }
    // The kernel's tunables stay readable, never writable.
    if (mount("/proc/sys", "/proc/sys", nullptr, MS_BIND | MS_REC, nullptr) < 0 ||
        mount(nullptr, "/proc/sys", nullptr,
              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) < 0) {
      fail_at(RootStep::kProcSys);
    }
    if (args->hostname != nullptr &&
        syscall(SYS_sethostname, args->hostname, strlen(args->hostname)) < 0) {
      child_fail(args, Step::kHostname);
    }
  }

  // The parent made sure these fds are >= 3, so dup2 never aliases them.
  if (dup2(args->stdin_fd, STDIN_FILENO) < 0 || dup2(args->stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(args->stderr_fd, STDERR_FILENO) < 0) {
    child_fail(args, Step::kStdio);
  }
  if (args->member_ctl >= 0) wait_as_member(args);

  for (size_t i = 0; i < args->limit_count; ++i) {
    if (setrlimit(args->limits[i].resource, &args->limits[i].value) < 0) {
      args->failed_limit = i;
      child_fail(args, Step::kRlimit);
    }
  }

  // Raw system calls: glibc's set*id wrappers would signal the daemon's
  // threads (its setxid broadcast), which this child shares memory with.
  if (args->uid != 0) {
    if (syscall(SYS_setgroups, 0, nullptr) < 0 ||
        syscall(SYS_setresgid, args->gid, args->gid, args->gid) < 0 ||
        syscall(SYS_setresuid, args->uid, args->uid, args->uid) < 0) {
      child_fail(args, Step::kUid);
    }
  }

  // After the uid change: changing credentials clears the death signal.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
    child_fail(args, Step::kDeathSignal);
  }
  // The daemon may have died between clone and prctl; then nobody waits for
  // this child and it must not run.
  if (args->parent_pidfd >= 0) {
    pollfd pfd{args->parent_pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) != 0) _exit(kChildFailedExit);
  } else if (getppid() != args->parent_pid) {
    _exit(kChildFailedExit);
  }

  if (!close_all_but(args->member_exec_fd)) child_fail(args, Step::kCloseFds);

  if (chdir(args->cwd) < 0) {
    child_fail(args, Step::kChdir);
  }

  if (args->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    child_fail(args, Step::kNoNewPrivs);
  }
  // Last: from here on mount, setns and friends are refused.
  if (args->seccomp != nullptr && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, args->seccomp) < 0) {
    child_fail(args, Step::kSeccomp);
  }

  execve(args->path, args->argv, args->envp);
  child_fail(args, Step::kExec);
}

// The child's stack, one per launching thread and kept: the child runs on it
// only while that thread waits in clone (CLONE_VFORK), so the next launch
// from the thread can use it again, and each launch saves an mmap and a
// munmap (a TLB shootdown across the daemon's threads). A guard page below
// turns an overflow into a crash of the child instead of a write into the
// daemon's memory. nullptr when it cannot be mapped.
char* child_stack() {
  struct Stack {
    ~Stack() {
      if (base != nullptr) munmap(base, mapped);
    }
    void* base = nullptr;
    size_t mapped = 0;
  };
  thread_local Stack stack;
  if (stack.base == nullptr) {
    const size_t guard = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t mapped = kChildStackBytes + guard;
    void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    if (mprotect(base, guard, PROT_NONE) < 0) {
      munmap(base, mapped);
      return nullptr;
    }
    stack.base = base;
    stack.mapped = mapped;
  }
  return static_cast<char*>(stack.base) + stack.mapped;
}

std::string errno_text(int err) { return std::strerror(err); }

// dup2 onto 0/1/2 in the child must never have 0/1/2 as its source (a
// daemon started with stdin closed gets fd 0 from pipe2), so such fds move up.
Status move_above_stdio(Fd& fd) {
  if (fd.get() > STDERR_FILENO) {
    return Status::Ok();
  }
  int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) {
    return Status::Internal("duplicating a pipe fd: " + errno_text(errno));
  }
  fd.reset(moved);
  return Status::Ok();
}

// A pipe whose read end (ours) is non-blocking; both ends close on exec so a
// concurrently launched instance never inherits them.
Status make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    return Status::Exhausted("cannot create a pipe for instance output: " + errno_text(errno) +
                             " (too many open files? raise the daemon's fd limit)");
  }
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  if (fcntl(read_end.get(), F_SETFL, O_NONBLOCK) < 0) {
    return Status::Internal("setting O_NONBLOCK on a pipe: " + errno_text(errno));
  }
  return move_above_stdio(write_end);
}

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

Status validate(const LaunchSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return Status::Invalid("launch: argv is empty; argv[0] must be the program's path");
  }
  for (const auto& arg : spec.argv) {
    if (has_nul(arg)) {
      return Status::Invalid("launch: an argument of " + spec.argv[0] +
                             " contains a NUL byte; remove it");
    }
  }
  for (const auto& entry : spec.env) {
    if (has_nul(entry) || entry.find('=') == std::string::npos || entry.front() == '=') {
      return Status::Invalid("launch: environment entry '" + entry.substr(0, entry.find('\0')) +
                             "' is not KEY=value");
    }
  }
  if (spec.cwd.empty() || has_nul(spec.cwd)) {
    return Status::Invalid("launch: the working directory of " + spec.argv[0] +
                           " is empty or contains a NUL byte; give an existing directory");
  }
  const ResourceLimits& l = spec.limits;
  if (l.open_files < 1) {
    return Status::Invalid("launch: open_files limit must be at least 1, got " +
                           std::to_string(l.open_files));
  }
  if (l.file_size_bytes < 0 || l.processes < 0 || l.address_space_bytes < 0) {
    return Status::Invalid("launch: resource limits must not be negative");
  }
  return Status::Ok();
}

// A null-terminated array of pointers into `strings` (argv, envp), which
// must outlive it: execve's form, built before the clone.
std::vector<char*> exec_array(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// What the child runs and with which rlimits; all of it must outlive the
// child's execve.
void set_program(ChildArgs& args, const std::vector<char*>& argv, const std::vector<char*>& envp,
                 const std::string& cwd, const std::vector<LimitSetting>& limits) {
  args.path = argv[0];
  args.argv = argv.data();
  args.envp = envp.data();
  args.cwd = cwd.c_str();
  args.limits = limits.data();
  args.limit_count = limits.size();
}

rlimit both(rlim_t value) { return rlimit{value, value}; }

// Soft and hard are set alike: the function may not raise its own limits.
std::vector<LimitSetting> limit_settings(const ResourceLimits& l) {
  std::vector<LimitSetting> out;
  out.push_back({RLIMIT_NOFILE, both(static_cast<rlim_t>(l.open_files)), "RLIMIT_NOFILE"});
  out.push_back({RLIMIT_FSIZE, both(static_cast<rlim_t>(l.file_size_bytes)), "RLIMIT_FSIZE"});
  if (!l.core_dumps) {
    out.push_back({RLIMIT_CORE, both(0), "RLIMIT_CORE"});
  }
  if (l.processes > 0) {
    out.push_back({RLIMIT_NPROC, both(static_cast<rlim_t>(l.processes)), "RLIMIT_NPROC"});
  }
  if (l.address_space_bytes > 0) {
    out.push_back({RLIMIT_AS, both(static_cast<rlim_t>(l.address_space_bytes)), "RLIMIT_AS"});
  } else {
    // "Unlimited" must be asked for only when the daemon runs under a lower
    // limit: raising a hard limit needs privilege, keeping one does not.
    rlimit current{};
    if (getrlimit(RLIMIT_AS, &current) == 0 &&
        (current.rlim_cur != RLIM_INFINITY || current.rlim_max != RLIM_INFINITY)) {
      out.push_back({RLIMIT_AS, both(RLIM_INFINITY), "RLIMIT_AS"});
    }
  }
  return out;
}

std::string limit_value_text(rlim_t value) {
  return value == RLIM_INFINITY ? "unlimited" : std::to_string(value);
}

// The instance's root, as a list of steps for the child. Strings live here;
// ops point into them (a deque would do too, but reserve() keeps it simple).
struct MountPlan {
  std::vector<std::unique_ptr<std::string>> strings;
  std::vector<MountOp> ops;
  std::set<std::string> dirs;  // made under the root already
  std::string root;

  const char* keep(std::string text) {
    strings.push_back(std::make_unique<std::string>(std::move(text)));
    return strings.back()->c_str();
  }
  void add(MountKind kind, const char* source, const std::string& inside, unsigned long flags = 0,
           const char* data = nullptr) {
    ops.push_back({kind, source, keep(root + inside), flags, data});
  }
  // Every parent of `inside` (an absolute path in the instance).
  void parents(const std::string& inside) {
    for (size_t slash = inside.find('/', 1); slash != std::string::npos;
         slash = inside.find('/', slash + 1)) {
      dir(inside.substr(0, slash));
    }
  }
  void dir(const std::string& inside) {
    if (!dirs.insert(inside).second) return;
    parents(inside);
    add(MountKind::kMkdir, nullptr, inside);
  }
  // A host path at the same place, read-only; symlinks are copied as links.
  void host_path(const std::string& path, bool read_only = true,
                 unsigned long extra = MS_NOSUID | MS_NODEV) {
    struct stat st {};
    if (lstat(path.c_str(), &st) < 0) return;  // not on this host: nothing to show
    parents(path);
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
      if (n <= 0) return;
      add(MountKind::kSymlink, keep(std::string(buf, size_t(n))), path);
      return;
    }
    bind(path, path, S_ISDIR(st.st_mode), read_only, extra);
  }
  void bind(const std::string& source, const std::string& inside, bool is_dir, bool read_only,
            unsigned long extra = MS_NOSUID | MS_NODEV) {
    parents(inside);
    if (is_dir) {
      dir(inside);
    } else {
      add(MountKind::kTouch, nullptr, inside);
    }
    add(MountKind::kBind, keep(source), inside, (read_only ? MS_RDONLY : 0) | extra);
  }
};

// The prepared root: the allowlist read-only, /dev, and the empty mount
// points each instance fills (code, runtimes, /tmp, /proc).
MountPlan template_plan(const std::vector<std::string>& paths, const std::string& root_dir) {
  MountPlan plan;
  plan.root = root_dir;
  plan.ops.push_back({MountKind::kTmpfs, "tamaya", plan.keep(root_dir), MS_NOSUID | MS_NODEV,
                      "size=1m,mode=0755"});
  for (const auto& path : paths) plan.host_path(path);
  plan.dir(kTaskRoot);
  plan.dir(kRuntimesRoot);
  plan.dir("/tmp");
  plan.dir("/proc");
  plan.dir("/dev");
  plan.add(MountKind::kTmpfs, "tmpfs", "/dev", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755");
  for (const char* dev : {"null", "zero", "full", "random", "urandom", "tty"}) {
    const std::string host = std::string("/dev/") + dev;
    if (access(host.c_str(), F_OK) == 0) plan.bind(host, host, false, false, MS_NOSUID | MS_NOEXEC);
  }
  plan.add(MountKind::kSymlink, "/proc/self/fd", "/dev/fd");
  plan.add(MountKind::kSymlink, "/proc/self/fd/0", "/dev/stdin");
  plan.add(MountKind::kSymlink, "/proc/self/fd/1", "/dev/stdout");
  plan.add(MountKind::kSymlink, "/proc/self/fd/2", "/dev/stderr");
  return plan;
}

// Runs the plan in the calling thread's mount namespace.
Status run_plan(const MountPlan& plan) {
  for (const MountOp& op : plan.ops) {
    int rc = 0;
    switch (op.kind) {
      case MountKind::kMkdir:
        rc = mkdir(op.target, 0755);
        if (rc < 0 && errno == EEXIST) rc = 0;
        break;
      case MountKind::kTouch: {
        int fd = open(op.target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        rc = fd < 0 ? -1 : close(fd);
        break;
      }
      case MountKind::kSymlink:
        rc = symlink(op.source, op.target);
        break;
      case MountKind::kBind:
        rc = mount(op.source, op.target, nullptr, MS_BIND | MS_REC, nullptr);
        if (rc == 0 && op.flags != 0) {
          rc = mount(nullptr, op.target, nullptr, MS_REMOUNT | MS_BIND | op.flags, nullptr);
        }
        break;
      case MountKind::kTmpfs:
        rc = mount(op.source, op.target, "tmpfs", op.flags, op.data);
        break;
      case MountKind::kProc:
        rc = mount(op.source, op.target, "proc", op.flags, nullptr);
        break;
    }
    if (rc < 0) {
      std::string text = std::string("preparing ") + op.target + ": " + errno_text(errno);
      if (op.kind == MountKind::kBind && errno == ENOENT) {
        text += std::string(" (does ") + op.source + " exist?)";
      }
      return Status::Internal(text);
    }
  }
  return Status::Ok();
}

// Builds the prepared root in a mount namespace of its own and returns that
// namespace's fd. Runs on a short-lived thread: unshare(CLONE_NEWNS) gives
// only that thread the new namespace (and its own root), so the daemon's
// other threads never see it, and the fd keeps it alive after the thread.
Result<int> build_root_namespace(const std::vector<std::string>& paths,
                                 const std::string& root_dir) {
  const MountPlan plan = template_plan(paths, root_dir);
  Status status = Status::Ok();
  int ns = -1;
  std::thread builder([&] {
    if (unshare(CLONE_NEWNS) < 0) {
      status =
          Status::Precondition("a mount namespace for the prepared root: " + errno_text(errno) +
                               " (needs root; see tamaya doctor)");
      return;
    }
    ns = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      status = Status::Internal("opening the prepared root's namespace: " + errno_text(errno));
      return;
    }
    // Private all the way down: nothing mounted here or in the copies made
    // from it propagates back to the host, and pivot_root needs it.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
      status = Status::Internal("making the prepared root's mounts private: " + errno_text(errno));
      return;
    }
    status = run_plan(plan);
    if (!status.ok()) return;
    const std::string dev = root_dir + "/dev";
    if (mount(nullptr, dev.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
              nullptr) < 0) {
      status = Status::Internal("making " + dev + " read-only: " + errno_text(errno));
      return;
    }
    // pivot_root(".", ".") stacks the old root under the new one; detaching
    // it leaves only what was mounted above.
    if (chdir(root_dir.c_str()) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0 ||
        mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) < 0) {
      status = Status::Internal("pivot_root to the prepared root at " + root_dir + ": " +
                                errno_text(errno));
    }
  });
  builder.join();
  if (!status.ok()) {
    if (ns >= 0) close(ns);
    return status;
  }
  return ns;
}

// What identifies a host path bound into the prepared root: when one is
// replaced (a new inode, e.g. resolv.conf rewritten by rename), the bind
// still shows the old one, so the root is built again.
struct PathStamp {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;
  bool operator==(const PathStamp&) const = default;
};

std::vector<PathStamp> stamps_of(const std::vector<std::string>& paths) {
  std::vector<PathStamp> out;
  out.reserve(paths.size());
  for (const auto& path : paths) {
    struct stat st {};
    PathStamp stamp;
    if (lstat(path.c_str(), &st) == 0) {
      stamp = {true, st.st_dev, st.st_ino, static_cast<mode_t>(st.st_mode & S_IFMT)};
    }
    out.push_back(stamp);
  }
  return out;
}

struct RootTemplate {
  RootTemplate() = default;
  RootTemplate(const RootTemplate&) = delete;
  RootTemplate& operator=(const RootTemplate&) = delete;
  ~RootTemplate() {
    if (ns >= 0) close(ns);
  }
  int ns = -1;
  std::vector<PathStamp> stamps;
  std::chrono::steady_clock::time_point checked;
};

// How often a launch looks whether a bound host path was replaced.
constexpr auto kRootRecheck = std::chrono::seconds(1);

}  // namespace

// The prepared roots of a launcher, one per allowlist (in practice the
// default one): a mount namespace built once whose root is the instance's
// minimal tree. Each instance copies it (setns + unshare) and adds only its
// code, /tmp and /proc: a handful of mounts instead of a bind and a
// read-only remount per allowlisted path, and no copy and teardown of the
// host's whole mount table.
class RootTemplates {
 public:
  explicit RootTemplates(std::string root_dir) : root_dir_(std::move(root_dir)) {}

  Result<std::shared_ptr<const RootTemplate>> get(const std::vector<std::string>& paths) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto it = roots_.find(paths);
    if (it != roots_.end()) {
      RootTemplate& root = *it->second;
      if (now - root.checked < kRootRecheck) return std::shared_ptr<const RootTemplate>(it->second);
      root.checked = now;
      if (stamps_of(paths) == root.stamps) return std::shared_ptr<const RootTemplate>(it->second);
    }
    // Instances being launched keep the old one alive (shared_ptr) until
    // their clone is done; running ones hold their own copies.
    auto fresh = std::make_shared<RootTemplate>();
    fresh->stamps = stamps_of(paths);
    fresh->checked = now;
    TAMAYA_ASSIGN_OR_RETURN(fresh->ns, build_root_namespace(paths, root_dir_));
    roots_[paths] = fresh;
    return std::shared_ptr<const RootTemplate>(fresh);
  }

 private:
  std::mutex mutex_;
  const std::string root_dir_;
  std::map<std::vector<std::string>, std::shared_ptr<RootTemplate>> roots_;
};

namespace {

// Waits for the child behind `pidfd`, which is exiting, and reaps it.
void reap_exited(int pidfd) {
  siginfo_t info{};
  while (waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED) < 0 && errno == EINTR) {
  }
}

// clone of child_main with CLONE_VFORK: returns once the child has exec'd or
// died. Every signal, glibc's internal ones too, is blocked around it, so no
// handler of the daemon runs in the child while it shares our memory; the
// child resets dispositions before unblocking. `clone_errno` gets errno.
pid_t clone_child(char* stack_top, int flags, ChildArgs* args, int* pidfd, int& clone_errno) {
  const uint64_t all_signals = ~uint64_t{0};
  uint64_t saved_mask = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all_signals, &saved_mask, kKernelSigsetBytes);
  const pid_t pid = clone(child_main, stack_top, flags, args, pidfd);
  clone_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved_mask, nullptr, kKernelSigsetBytes);
  return pid;
}

// The fds a child joins `cgroups` with, above stdio, in `owned` and (for
// ChildArgs) `raw`. On a failure the cgroups are removed.
Status procs_fds_for_child(InstanceCgroups& cgroups, std::vector<Fd>& owned,
                           std::vector<int>& raw) {
  auto fds = open_procs_files(cgroups);
  if (!fds.ok()) {
    remove_cgroups(cgroups);
    return fds.status();
  }
  owned.reserve(fds->size());
  for (int fd : *fds) owned.emplace_back(fd);
  for (Fd& fd : owned) {
    if (Status moved = move_above_stdio(fd); !moved.ok()) {
      owned.clear();
      remove_cgroups(cgroups);
      return moved;
    }
    raw.push_back(fd.get());
  }
  return Status::Ok();
}

// Who the child becomes: the function's uid (zygotes stay root), and
// no_new_privs and the filter (`program` holds it) unless it is a zygote.
void set_identity(ChildArgs& args, const Isolation& iso, const Layers& layers,
                  const SeccompProgram& seccomp, sock_fprog& program) {
  args.uid = args.gid = 0;
  if (layers.uids && iso.uid != 0 && !iso.zygote) {
    args.uid = iso.uid;
    args.gid = iso.gid != 0 ? iso.gid : iso.uid;
  }
  args.no_new_privs = !iso.zygote;
  if (layers.seccomp && !seccomp.code.empty() && !iso.zygote) {
    program = seccomp.program();
    args.seccomp = &program;
  }
}

// A detached read-only copy of `dir` (open_tree), which the child attaches
// inside its own root with move_mount: the host path is resolved here, in
// the daemon's namespace, where it exists.
Result<int> readonly_tree(const std::string& dir, const std::string& program) {
  int fd = open_tree(AT_FDCWD, dir.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (fd < 0) {
    std::string text = "cannot start " + program + ": mounting " + dir + ": " + errno_text(errno);
    if (errno == ENOENT) text += " (does " + dir + " exist?)";
    return Status::Internal(text);
  }
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
    int err = errno;
    close(fd);
    return Status::Internal("cannot start " + program + ": making " + dir +
                            " read-only: " + errno_text(err));
  }
  return fd;
}

Status child_failure(const LaunchSpec& spec, const ChildArgs& args,
                     const std::vector<LimitSetting>& limits) {
  const std::string prefix = "cannot start " + spec.argv[0] + ": ";
  const int err = args.failed_errno;
  const std::string what = errno_text(err);
  switch (args.failed_step) {
    case Step::kExec: {
      std::string hint;
      switch (err) {
        case EACCES:
          hint = " (is it executable?)";
          break;
        case ENOENT:
          hint = " (check the path, and for a script its #! interpreter)";
          break;
        case ENOEXEC:
          hint = " (not a program for this machine and no #! line)";
          break;
        case ENOMEM:
          hint = " (is the address space limit too low?)";
          break;
        case E2BIG:
          hint = " (arguments and environment are too large)";
          break;
        case ETXTBSY:
          hint = " (the file is still open for writing)";
          break;
        default:
          break;
      }
      if (err == ENOMEM || err == EAGAIN) {
        return Status::Exhausted(prefix + what + hint);
      }
      return Status::Precondition(prefix + what + hint);
    }
    case Step::kChdir:
      return Status::Precondition(prefix + "working directory " + spec.cwd + ": " + what);
    case Step::kRlimit: {
      const LimitSetting& limit = limits.at(args.failed_limit);
      std::string text = prefix + "setting " + limit.name + " to " +
                         limit_value_text(limit.value.rlim_max) + ": " + what;
      if (err == EPERM) {
        text += " (the daemon's own hard limit is lower; raise it or lower the setting)";
      }
      return Status::Precondition(text);
    }
    case Step::kSetsid:
      return Status::Internal(prefix + "setsid: " + what);
    case Step::kDeathSignal:
      return Status::Internal(prefix + "prctl(PR_SET_PDEATHSIG): " + what);
    case Step::kStdio:
      return Status::Internal(prefix + "redirecting stdin/stdout/stderr: " + what);
    case Step::kCloseFds:
      return Status::Internal(prefix + "closing inherited fds: " + what);
    case Step::kCgroup:
      return Status::Internal(prefix + "joining its cgroup: " + what);
    case Step::kNetns:
      return Status::Internal(prefix + "joining its network namespace: " + what);
    case Step::kMount:
      return Status::Internal(prefix + root_step_text(static_cast<RootStep>(args.failed_limit)) +
                              ": " + what);
    case Step::kPivotRoot:
      return Status::Internal(prefix + "pivot_root to its minimal root: " + what);
    case Step::kHostname:
      return Status::Internal(prefix + "setting its hostname: " + what);
    case Step::kUid:
      return Status::Internal(prefix + "switching to uid " + std::to_string(args.uid) + ": " +
                              what);
    case Step::kNoNewPrivs:
      return Status::Internal(prefix + "prctl(PR_SET_NO_NEW_PRIVS): " + what);
    case Step::kSeccomp:
      return Status::Internal(prefix + "loading its seccomp filter: " + what);
    case Step::kCpuPolicy:
      return Status::Internal(prefix + "taking the SCHED_BATCH CPU policy: " + what +
                              " (set instance_cpu_policy to normal to skip it)");
    case Step::kNone:
      break;
  }
  return Status::Internal(prefix + "the child exited before execve without saying why");
}

// Converts what waitid reports into the waitpid encoding callers expect.
int wait_status_from(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED:
      return (info.si_status & 0xff) << 8;
    case CLD_KILLED:
      return info.si_status & 0x7f;
    case CLD_DUMPED:
      return (info.si_status & 0x7f) | 0x80;
    default:
      return info.si_status;
  }
}

}  // namespace

// Sandboxes made ahead of need for direct launches (`provided`, and any
// other instance not forked from a zygote). A holder thread clones a member
// just as launch() clones a child, with the same flags, and the member puts
// up every wall that does not depend on its instance: pid, ipc and uts
// namespaces, session, cgroups (from the stock, with the last limits asked
// for), its copy of the prepared root with /tmp, /proc and the hostname,
// stdio on fresh pipes. Then it closes every other fd, says "r" on its
// socket and waits. A launch that fits takes a ready member, writes its
// limits if they differ, fills in the rest of its ChildArgs (argv, env,
// cwd, rlimits, uid, seccomp) and sends "g" with the code tree: the member
// attaches it, drops to the function's uid, loads the filter and execs, as
// a direct child does after its walls. The holder sleeps in clone
// (CLONE_VFORK) all the while, so the member runs on the holder's stack and
// thread state alone, as a direct child runs on its launching thread's.
// The launch waits for the member's exec pipe to close (execve or exit),
// then reads a failure from ChildArgs as launch() does.
//
// What that takes off a start: the clone with its namespaces, the copy of
// the root and its mounts, the cgroup joins, the signal resets: 0.05-0.55
// ms of a back-to-back `provided` cold start's p50 here, 0.2 ms typically
// (docs/performance.md, "Sandboxes made ahead").
// A member never returns to the pool; one that fails before it is ready is
// reaped by its holder, which backs off before the next.
//
// Only launches like the first one that fitted are served (the same
// allowlist, hostname, /tmp size, and cgroup controllers asked for): those
// parts are in place before the instance is known. Network "none", an
// instance with its own stdin (a zygote) and zygotes are always direct.
class ReadySandboxes {
 public:
  ReadySandboxes(ProcessLauncher& launcher, int size) : launcher_(launcher), size_(size) {}
  ~ReadySandboxes() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      // A member whose socket closes leaves (its recvmsg, or its "r", fails).
      for (auto& m : queue_) m->ctl.reset();
    }
    wake_.notify_all();
    for (auto& t : holders_) t.join();
  }
  ReadySandboxes(const ReadySandboxes&) = delete;
  ReadySandboxes& operator=(const ReadySandboxes&) = delete;

  // The launch by a ready member; nullopt when the spec does not fit or
  // none is ready (the caller launches directly).
  std::optional<Result<Process>> launch(const LaunchSpec& spec);

  ReadyCounters counters() const {
    std::lock_guard lock(mu_);
    ReadyCounters c = counters_;
    c.ready = 0;
    for (const auto& m : queue_) c.ready += !m->done && read_ready(*m) ? 1 : 0;
    return c;
  }

 private:
  struct Shape {
    std::vector<std::string> paths;
    std::string hostname;
    int64_t tmp_bytes = 0;
    bool memory = false, pids = false, cpu = false;
    bool operator==(const Shape&) const = default;
  };
  struct Member {
    ChildArgs args{};
    std::shared_ptr<const RootTemplate> root;
    InstanceCgroups cgroups;
    CgroupLimits limits;
    std::vector<Fd> cgroup_fds;
    std::vector<int> raw_cgroup_fds;
    Fd dev_null, out_read, out_write, err_read, err_write;
    Fd ctl, member_ctl;  // a SEQPACKET pair; ours has SO_PASSCRED
    Fd exec_read, exec_write;
    std::string tmp_options;
    std::string hostname;
    int pidfd = -1;  // written by clone
    pid_t pid = -1;  // from its "r"
    bool said_ready = false;
    bool taken = false;
    bool done = false;  // its holder's clone returned: it exec'd or died
    ~Member() {
      if (pidfd >= 0) close(pidfd);
    }
  };

  static Shape shape_of(const LaunchSpec& spec) {
    const Isolation& iso = spec.isolation;
    return Shape{iso.readonly_paths.empty() ? default_readonly_paths() : iso.readonly_paths,
                 iso.hostname,
                 iso.tmp_bytes,
                 iso.memory_bytes > 0,
                 iso.pids_max > 0,
                 iso.cpu_shares > 0};
  }

  bool fits(const LaunchSpec& spec) const {
    const Isolation& iso = spec.isolation;
    return launcher_.options_.isolate && iso.enabled && launcher_.layers_.filesystem &&
           iso.network == Network::kHost && spec.stdin_fd < 0 && !iso.zygote &&
           !iso.code_dir.empty();
  }

  // Reads a member's "r" without waiting; true once it has said it.
  static bool read_ready(Member& m) {
    if (m.said_ready) return true;
    char byte = 0;
    pid_t pid = -1;
    if (recv_with_peer_pid(m.ctl.get(), &byte, 1, MSG_DONTWAIT, pid) != 1 || byte != 'r') {
      return false;
    }
    m.pid = pid;
    m.said_ready = m.pid > 0;
    return m.said_ready;
  }

  Result<std::shared_ptr<Member>> make_member(const Shape& shape, const CgroupLimits& limits);
  void hold();
  // Ends a member nobody will use and releases what it holds.
  static void discard(Member& m) {
    if (m.pid > 0) kill(m.pid, SIGKILL);
    if (m.pidfd >= 0) {
      if (m.pid <= 0) syscall(SYS_pidfd_send_signal, m.pidfd, SIGKILL, nullptr, 0);
      reap_exited(m.pidfd);
    }
    remove_cgroups(m.cgroups);
  }

  ProcessLauncher& launcher_;
  const int size_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::optional<Shape> shape_;                 // set by the first launch that fits
  CgroupLimits last_limits_{};                 // what new members' cgroups get
  std::deque<std::shared_ptr<Member>> queue_;  // made, in order; not yet taken
  std::vector<std::thread> holders_;
  ReadyCounters counters_;
  bool stop_ = false;
};

Result<std::shared_ptr<ReadySandboxes::Member>> ReadySandboxes::make_member(
    const Shape& shape, const CgroupLimits& limits) {
  auto m = std::make_shared<Member>();
  TAMAYA_ASSIGN_OR_RETURN(m->root, launcher_.roots_->get(shape.paths));
  m->dev_null.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!m->dev_null.valid()) return Status::Internal("opening /dev/null: " + errno_text(errno));
  TAMAYA_RETURN_IF_ERROR(move_above_stdio(m->dev_null));
  TAMAYA_RETURN_IF_ERROR(make_pipe(m->out_read, m->out_write));
  TAMAYA_RETURN_IF_ERROR(make_pipe(m->err_read, m->err_write));
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return Status::Internal("socketpair for a sandbox made ahead: " + errno_text(errno));
  }
  m->ctl.reset(pair[0]);
  m->member_ctl.reset(pair[1]);
  const int one = 1;
  setsockopt(m->ctl.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) < 0) {
    return Status::Internal("exec pipe for a sandbox made ahead: " + errno_text(errno));
  }
  m->exec_read.reset(exec_pipe[0]);
  m->exec_write.reset(exec_pipe[1]);
  TAMAYA_RETURN_IF_ERROR(move_above_stdio(m->member_ctl));
  TAMAYA_RETURN_IF_ERROR(move_above_stdio(m->exec_write));
  m->tmp_options = "size=" + std::to_string(shape.tmp_bytes) + ",mode=1777";
  m->hostname = shape.hostname;
  m->limits = limits;
  if (launcher_.layers_.cgroups && (shape.memory || shape.pids || shape.cpu)) {
    static std::atomic<uint64_t> made{0};
    TAMAYA_ASSIGN_OR_RETURN(m->cgroups,
                            launcher_.make_cgroups("ready-" + std::to_string(++made), limits));
    TAMAYA_RETURN_IF_ERROR(procs_fds_for_child(m->cgroups, m->cgroup_fds, m->raw_cgroup_fds));
  }
  ChildArgs& a = m->args;
  a.stdin_fd = m->dev_null.get();
  a.stdout_fd = m->out_write.get();
  a.stderr_fd = m->err_write.get();
  a.parent_pid = getpid();
  a.cgroup_fds = m->raw_cgroup_fds.data();
  a.cgroup_fd_count = m->raw_cgroup_fds.size();
  a.root_ns = m->root->ns;
  a.tmp_options = m->tmp_options.c_str();
  a.hostname = m->hostname.c_str();
  a.parent_pidfd = launcher_.self_pidfd_;
  a.member_ctl = m->member_ctl.get();
  a.member_exec_fd = m->exec_write.get();
  a.batch_cpu = launcher_.options_.batch_cpu;
  return m;
}

// One holder: makes a member, sleeps in clone while it waits and runs, and
// makes the next once it has exec'd (or died).
void ReadySandboxes::hold() {
  int backoff_ms = 0;
  for (;;) {
    Shape shape;
    CgroupLimits limits;
    {
      std::unique_lock lock(mu_);
      if (backoff_ms > 0) {
        wake_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stop_; });
      }
      wake_.wait(lock, [&] { return stop_ || (shape_ && int(queue_.size()) < size_); });
      if (stop_) return;
      shape = *shape_;
      limits = last_limits_;
    }
    auto made = step_result("making a sandbox ahead", [&] { return make_member(shape, limits); });
    if (!made.ok()) {
      backoff_ms = std::min(std::max(backoff_ms * 2, 100), 10'000);
      spdlog::warn("sandboxes made ahead: {}; next try in {} ms", made.status().message(),
                   backoff_ms);
      continue;
    }
    std::shared_ptr<Member> m = *std::move(made);
    {
      std::lock_guard lock(mu_);
      if (stop_) {
        remove_cgroups(m->cgroups);
        return;
      }
      queue_.push_back(m);
    }
    char* stack_top = child_stack();
    const int flags =
        CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    int clone_errno = ENOMEM;
    const pid_t pid =
        stack_top == nullptr ? -1 : clone_child(stack_top, flags, &m->args, &m->pidfd, clone_errno);
    bool taken = false;
    bool stopping = false;
    {
      std::lock_guard lock(mu_);
      m->done = true;
      taken = m->taken;
      stopping = stop_;
      if (!taken) {
        std::erase(queue_, m);
        if (!stopping) ++counters_.failures;
      }
    }
    if (taken) {
      backoff_ms = 0;
      continue;  // the launch that took it owns it now
    }
    if (pid < 0) {
      spdlog::warn("sandboxes made ahead: clone: {}", errno_text(clone_errno));
    } else if (!stopping && m->args.failed_step != Step::kNone) {
      spdlog::warn("sandboxes made ahead: a member failed at step {} ({})",
                   static_cast<int>(m->args.failed_step), errno_text(m->args.failed_errno));
    }
    discard(*m);
    backoff_ms = stopping ? 0 : std::min(std::max(backoff_ms * 2, 100), 10'000);
  }
}

std::optional<Result<Process>> ReadySandboxes::launch(const LaunchSpec& spec) {
  if (!fits(spec)) return std::nullopt;
  const Shape shape = shape_of(spec);
  const Isolation& iso = spec.isolation;
  const CgroupLimits limits{iso.memory_bytes, iso.pids_max, iso.cpu_shares};
  std::shared_ptr<Member> m;
  {
    std::lock_guard lock(mu_);
    if (!shape_) {
      // The first launch that fits sets what members are made like.
      shape_ = shape;
      for (int i = 0; i < size_; ++i) holders_.emplace_back([this] { hold(); });
    }
    if (*shape_ != shape) return std::nullopt;
    last_limits_ = limits;
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (!(*it)->done && read_ready(**it)) {
        m = *it;
        m->taken = true;
        queue_.erase(it);
        break;
      }
    }
    if (!m) {
      ++counters_.empty;
      return std::nullopt;
    }
    ++counters_.served;
  }
  wake_.notify_all();  // a holder makes the next

  // What a launch would have: a root that is still current, its limits.
  auto current = launcher_.roots_->get(shape.paths);
  Status ready = current.ok() && *current == m->root
                     ? Status::Ok()
                     : Status::Unavailable("the prepared root changed");
  if (ready.ok() && launcher_.layers_.cgroups && !(m->limits == limits)) {
    ready = set_cgroup_limits(launcher_.options_.host, m->cgroups, limits);
  }
  auto give_up = [&](const Status& why) -> std::optional<Result<Process>> {
    spdlog::debug("sandbox made ahead not used ({}); starting directly", why.message());
    discard(*m);
    return std::nullopt;
  };
  if (!ready.ok()) return give_up(ready);

  std::vector<char*> argv = exec_array(spec.argv);
  std::vector<char*> envp = exec_array(spec.env);
  const std::vector<LimitSetting> rlimits = limit_settings(spec.limits);
  auto code = readonly_tree(iso.code_dir, spec.argv[0]);
  if (!code.ok()) return give_up(code.status());
  Fd code_tree(*code), runtimes_tree;
  if (!iso.runtimes_dir.empty()) {
    auto runtimes = readonly_tree(iso.runtimes_dir, spec.argv[0]);
    if (!runtimes.ok()) return give_up(runtimes.status());
    runtimes_tree.reset(*runtimes);
  }
  sock_fprog seccomp_program{};
  ChildArgs& a = m->args;
  set_program(a, argv, envp, spec.cwd, rlimits);
  set_identity(a, iso, launcher_.layers_, launcher_.seccomp_, seccomp_program);
  // Our copies of the member's ends: its exec pipe must close with its exec.
  m->exec_write.reset();
  m->member_ctl.reset();
  m->out_write.reset();
  m->err_write.reset();
  m->dev_null.reset();
  m->cgroup_fds.clear();

  std::vector<int> trees{code_tree.get()};
  if (runtimes_tree.valid()) trees.push_back(runtimes_tree.get());
  if (!send_with_fds(m->ctl.get(), "g", trees)) {
    return give_up(Status::Unavailable("sending go: " + errno_text(errno)));
  }
  // The member now runs as a direct child after its walls: until execve or
  // its exit, which close its end of the exec pipe.
  pollfd pfd{m->exec_read.get(), POLLIN, 0};
  int polled;
  do {
    polled = poll(&pfd, 1, kMemberExecTimeoutMs);
  } while (polled < 0 && errno == EINTR);
  if (polled != 1) return give_up(Status::Unavailable("no execve in time"));
  if (a.failed_step != Step::kNone) {
    reap_exited(m->pidfd);
    remove_cgroups(m->cgroups);
    return Result<Process>(child_failure(spec, a, rlimits));
  }
  Process process;
  process.pid = m->pid;
  process.pidfd = std::exchange(m->pidfd, -1);
  process.stdout_fd = m->out_read.release();
  process.stderr_fd = m->err_read.release();
  process.cgroups = std::move(m->cgroups);
  return Result<Process>(std::move(process));
}

ReadyCounters ProcessLauncher::ready_counters() const {
  return ready_ ? ready_->counters() : ReadyCounters{};
}

std::vector<std::pair<int, uint64_t>> rlimit_values(const ResourceLimits& limits) {
  std::vector<std::pair<int, uint64_t>> out;
  for (const LimitSetting& l : limit_settings(limits)) {
    out.emplace_back(int(l.resource), uint64_t(l.value.rlim_max));
  }
  return out;
}

const std::vector<std::string>& default_readonly_paths() {
  static const std::vector<std::string> kPaths = {
      "/usr",
      "/bin",
      "/sbin",
      "/lib",
      "/lib32",
      "/lib64",
      "/libx32",
      "/etc/ld.so.cache",
      "/etc/ld.so.conf",
      "/etc/ld.so.conf.d",
      "/etc/ssl",
      "/etc/ca-certificates",
      "/etc/alternatives",
      "/etc/localtime",
      "/etc/timezone",
      "/etc/hosts",
      "/etc/resolv.conf",
      "/etc/nsswitch.conf",
      "/etc/host.conf",
      "/etc/gai.conf",
      "/etc/protocols",
      "/etc/services",
      "/etc/mime.types",
      "/etc/os-release",
  };
  return kPaths;
}

Result<std::unique_ptr<ProcessLauncher>> ProcessLauncher::create(SandboxOptions options) {
  auto launcher = std::make_unique<ProcessLauncher>();
  if (options.isolate) {
    const HostCapabilities& host = options.host;
    launcher->layers_.filesystem = host.namespaces && !options.root_dir.empty();
    launcher->layers_.network_none = host.net_namespace;
    launcher->layers_.uids = host.uid_switch;
    launcher->layers_.cgroups = host.cgroup != CgroupVersion::kNone;
    launcher->layers_.seccomp = host.seccomp;
    if (host.seccomp) {
      TAMAYA_ASSIGN_OR_RETURN(launcher->seccomp_, build_seccomp_program());
    }
    if (launcher->layers_.filesystem) {
      launcher->roots_ = std::make_shared<RootTemplates>(options.root_dir);
      // Built now, so the first instance does not pay for it and a host that
      // refuses it is known at start.
      auto root = launcher->roots_->get(default_readonly_paths());
      if (!root.ok()) {
        return Status(root.status().code(),
                      "preparing the instances' minimal root: " + root.status().message());
      }
      Fd self(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
      if (self.get() < 0) return Status::Internal("pidfd_open of the daemon: " + errno_text(errno));
      TAMAYA_RETURN_IF_ERROR(move_above_stdio(self));
      launcher->self_pidfd_ = self.release();
    }
  }
  if (launcher->layers_.cgroups && options.cgroups_ahead > 0) {
    launcher->cgroup_stock_ = std::make_unique<CgroupStock>(options.host, options.cgroups_ahead);
  }
  if (launcher->layers_.filesystem && options.sandboxes_ahead > 0) {
    launcher->ready_ = std::make_unique<ReadySandboxes>(*launcher, options.sandboxes_ahead);
  }
  launcher->options_ = std::move(options);
  return launcher;
}

Result<InstanceCgroups> ProcessLauncher::make_cgroups(const std::string& name,
                                                      const CgroupLimits& limits) const {
  if (cgroup_stock_) {
    if (auto ready = cgroup_stock_->take(limits)) return *std::move(ready);
  }
  return create_cgroups(options_.host, name, limits);
}

ProcessLauncher::ProcessLauncher() = default;

ProcessLauncher::~ProcessLauncher() {
  ready_.reset();  // its members use the root, the cgroups and our pidfd
  if (self_pidfd_ >= 0) close(self_pidfd_);
}

Result<Process> ProcessLauncher::launch(const LaunchSpec& spec) {
  TAMAYA_RETURN_IF_ERROR(validate(spec));
  if (ready_) {
    if (auto served = ready_->launch(spec)) return *std::move(served);
  }
  return launch_direct(spec);
}

Result<Process> ProcessLauncher::launch_direct(const LaunchSpec& spec) {
  const Isolation& iso = spec.isolation;
  const bool isolate = options_.isolate && iso.enabled;
  if (isolate && iso.network == Network::kNone) {
    if (!layers_.network_none) {
      return Status::Precondition("cannot start " + spec.argv[0] +
                                  ": network 'none' needs network namespaces, which this host "
                                  "refuses (see tamaya doctor); use network 'host' or run as root");
    }
    if (iso.netns_fd < 0) {
      return Status::Invalid("launch: network 'none' needs the namespace's fd (netns_fd)");
    }
  }
  if (isolate && layers_.filesystem && iso.code_dir.empty()) {
    return Status::Invalid("launch: an isolated instance needs its code_dir");
  }

  // Everything the child touches is built here, before the clone.
  std::vector<char*> argv = exec_array(spec.argv);
  std::vector<char*> envp = exec_array(spec.env);
  const std::vector<LimitSetting> limits = limit_settings(spec.limits);

  Fd dev_null(spec.stdin_fd >= 0 ? fcntl(spec.stdin_fd, F_DUPFD_CLOEXEC, 3)
                                 : open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (dev_null.get() < 0) {
    return Status::Internal("cannot start " + spec.argv[0] +
                            ": opening /dev/null: " + errno_text(errno));
  }
  TAMAYA_RETURN_IF_ERROR(move_above_stdio(dev_null));
  Fd out_read, out_write, err_read, err_write;
  TAMAYA_RETURN_IF_ERROR(make_pipe(out_read, out_write));
  TAMAYA_RETURN_IF_ERROR(make_pipe(err_read, err_write));

  char* stack_top = child_stack();
  if (stack_top == nullptr) {
    return Status::Exhausted("cannot start " + spec.argv[0] + ": no memory for the child's stack");
  }

  ChildArgs args{};
  set_program(args, argv, envp, spec.cwd, limits);
  args.stdin_fd = dev_null.get();
  args.stdout_fd = out_write.get();
  args.stderr_fd = err_write.get();
  args.parent_pid = getpid();
  args.batch_cpu = options_.batch_cpu;

  // Isolation: the root's parts and the cgroups, all before clone.
  int clone_flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD;
  InstanceCgroups cgroups;
  std::vector<Fd> cgroup_fds;
  std::vector<int> raw_cgroup_fds;
  std::shared_ptr<const RootTemplate> root;
  Fd code_tree, runtimes_tree;
  std::string tmp_options;
  sock_fprog seccomp_program{};
  if (isolate) {
    if (iso.network == Network::kNone) args.netns_fd = iso.netns_fd;
    if (layers_.filesystem) {
      const auto& paths =
          iso.readonly_paths.empty() ? default_readonly_paths() : iso.readonly_paths;
      auto got = roots_->get(paths);
      if (!got.ok()) {
        return Status(got.status().code(),
                      "cannot start " + spec.argv[0] + ": " + got.status().message());
      }
      root = *std::move(got);
      TAMAYA_ASSIGN_OR_RETURN(int code, readonly_tree(iso.code_dir, spec.argv[0]));
      code_tree.reset(code);
      if (!iso.runtimes_dir.empty()) {
        TAMAYA_ASSIGN_OR_RETURN(int runtimes, readonly_tree(iso.runtimes_dir, spec.argv[0]));
        runtimes_tree.reset(runtimes);
      }
      tmp_options = "size=" + std::to_string(iso.tmp_bytes) + ",mode=1777";
      args.root_ns = root->ns;
      args.code_tree = code_tree.get();
      args.runtimes_tree = runtimes_tree.get();
      args.tmp_options = tmp_options.c_str();
      args.hostname = iso.hostname.c_str();
      // No CLONE_NEWNS: the child enters the prepared root and copies that
      // (a copy of the host's mount table would only be thrown away).
      clone_flags |= CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
      args.parent_pidfd = self_pidfd_;
    }
    set_identity(args, iso, layers_, seccomp_, seccomp_program);
    // Last, so that every earlier failure has no cgroup to remove.
    if (layers_.cgroups && (iso.memory_bytes > 0 || iso.pids_max > 0 || iso.cpu_shares > 0)) {
      const std::string name = iso.name.empty() ? "i" + std::to_string(getpid()) : iso.name;
      TAMAYA_ASSIGN_OR_RETURN(cgroups,
                              make_cgroups(name, {iso.memory_bytes, iso.pids_max, iso.cpu_shares}));
      TAMAYA_RETURN_IF_ERROR(procs_fds_for_child(cgroups, cgroup_fds, raw_cgroup_fds));
      args.cgroup_fds = raw_cgroup_fds.data();
      args.cgroup_fd_count = raw_cgroup_fds.size();
    }
  }

  int pidfd = -1;
  int clone_errno = 0;
  const pid_t pid = clone_child(stack_top, clone_flags, &args, &pidfd, clone_errno);
  cgroup_fds.clear();
  code_tree.reset();
  runtimes_tree.reset();
  dev_null.reset();
  out_write.reset();
  err_write.reset();

  if (pid < 0) {
    remove_cgroups(cgroups);
    std::string text = "cannot start " + spec.argv[0] + ": clone: " + errno_text(clone_errno);
    if (clone_errno == EAGAIN) {
      return Status::Exhausted(text + " (process limit reached; lower concurrency or raise it)");
    }
    return Status::Internal(text);
  }
  Fd pid_fd(pidfd);

  if (args.failed_step != Step::kNone) {
    // The child is exiting (CLONE_VFORK returned without an exec): reap it
    // so no zombie is left behind.
    reap_exited(pid_fd.get());
    remove_cgroups(cgroups);
    return child_failure(spec, args, limits);
  }

  Process process;
  process.pid = pid;
  process.pidfd = pid_fd.release();
  process.stdout_fd = out_read.release();
  process.stderr_fd = err_read.release();
  process.cgroups = std::move(cgroups);
  return process;
}

int64_t peak_memory_bytes(const Process& process) {
  int64_t peak = cgroup_peak_memory_bytes(process.cgroups);
  return peak > 0 ? peak : peak_rss_bytes(process.pid);
}

bool oom_killed(const Process& process) { return cgroup_oom_killed(process.cgroups); }

void release(Process& process) { remove_cgroups(process.cgroups); }

Status kill_group(pid_t pid, int sig) {
  // pid 0 or 1 would signal our own group or everything: always a bug upstream.
  if (pid <= 1) {
    return Status::Invalid("kill_group: refusing to signal pid " + std::to_string(pid));
  }
  if (kill(-pid, sig) == 0 || errno == ESRCH) {
    return Status::Ok();
  }
  return Status::Internal("signalling process group " + std::to_string(pid) + ": " +
                          errno_text(errno));
}

Result<int> reap(const Process& process) {
  if (process.exit_source) {
    pollfd pfd{process.pidfd, POLLIN, 0};
    if (process.pidfd < 0 || poll(&pfd, 1, 0) != 1) {
      return Status::Precondition("reap: process " + std::to_string(process.pid) +
                                  " has not exited yet; wait for its pidfd to become readable");
    }
    return process.exit_source->exit_status(process.pid);
  }
  siginfo_t info{};
  int rc;
  if (process.pidfd >= 0) {
    rc = waitid(P_PIDFD, static_cast<id_t>(process.pidfd), &info, WEXITED | WNOHANG);
  } else if (process.pid > 0) {
    rc = waitid(P_PID, static_cast<id_t>(process.pid), &info, WEXITED | WNOHANG);
  } else {
    return Status::Invalid("reap: the process has neither a pid nor a pidfd");
  }
  if (rc < 0) {
    if (errno == ECHILD) {
      return Status::Precondition("reap: process " + std::to_string(process.pid) +
                                  " is not our child or was already reaped");
    }
    return Status::Internal("reap: waitid on process " + std::to_string(process.pid) + ": " +
                            errno_text(errno));
  }
  // WNOHANG leaves si_pid 0 when the child is still running.
  if (info.si_pid == 0) {
    return Status::Precondition("reap: process " + std::to_string(process.pid) +
                                " has not exited yet; wait for its pidfd to become readable");
  }
  return wait_status_from(info);
}

int64_t peak_rss_bytes(pid_t pid) {
  if (pid <= 0) {
    return 0;
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  constexpr std::string_view kKey = "VmHWM:";
  while (std::getline(status, line)) {
    if (line.compare(0, kKey.size(), kKey) != 0) {
      continue;
    }
    // "VmHWM:	    1234 kB": the kernel always reports kB.
    const char* begin = line.c_str() + kKey.size();
    while (*begin == ' ' || *begin == '\t') {
      ++begin;
    }
    int64_t kib = 0;
    const auto [end, ec] = std::from_chars(begin, line.c_str() + line.size(), kib);
    return ec == std::errc() && end != begin ? kib * 1024 : 0;
  }
  return 0;
}

void terminate(Process& process) {
  if (process.pid <= 0) return;
  kill_group(process.pid, SIGKILL).ok();
  pollfd pfd{process.pidfd, POLLIN, 0};
  if (process.pidfd >= 0) poll(&pfd, 1, 1'000);
  reap(process).ok();
  release(process);
  close_fds(process);
  process.pid = -1;
}

void close_fds(Process& process) {
  for (int* fd : {&process.pidfd, &process.stdout_fd, &process.stderr_fd, &process.walled_fd}) {
    if (*fd >= 0) {
      close(*fd);
    }
    *fd = -1;
  }
}

}  // namespace tamaya::sandbox
