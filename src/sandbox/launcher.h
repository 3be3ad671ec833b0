// Starts instance processes. This is the one place where per-instance limits
// are applied; the dispatcher only says what to run and with which limits.
// For now an instance gets: its own session and process group, rlimits, a
// clean environment, stdin from /dev/null, stdout/stderr to pipes, every
// other fd closed, and a pidfd to watch it. Namespaces, cgroups, uids and
// seccomp come with the isolation work (issue 3) behind this same interface.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace tamaya::sandbox {

struct ResourceLimits {
  int64_t open_files = 1024;              // RLIMIT_NOFILE
  int64_t file_size_bytes = 512ll << 20;  // RLIMIT_FSIZE
  int64_t processes = 0;                  // RLIMIT_NPROC, 0 = leave as is
  int64_t address_space_bytes = 0;        // RLIMIT_AS, 0 = unlimited
  bool core_dumps = false;                // RLIMIT_CORE 0 unless set
};

struct LaunchSpec {
  std::vector<std::string> argv;  // argv[0] is the program path (no PATH search)
  std::vector<std::string> env;   // "KEY=value"; nothing is inherited
  std::string cwd;
  ResourceLimits limits;
};

// Owned fds of a started process; the caller closes them.
struct Process {
  pid_t pid = -1;
  int pidfd = -1;      // readable when the process has exited
  int stdout_fd = -1;  // non-blocking, close-on-exec, read end
  int stderr_fd = -1;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual Result<Process> launch(const LaunchSpec& spec) = 0;
};

// fork/exec with the limits above. Safe to call from a multi-threaded
// process: everything the child needs is prepared before fork, and the child
// only makes async-signal-safe calls.
//
// The instance gets SIGKILL when the *thread* that launched it exits (that is
// how PR_SET_PDEATHSIG works), so launch from threads that live as long as
// the daemon (the io_context workers), never from a short-lived thread.
// A program that cannot be started (missing, not executable, bad cwd, limit
// refused) is an error Status naming the path and the cause; by then the
// failed child is already reaped and no fd is left open.
class ProcessLauncher final : public Launcher {
 public:
  Result<Process> launch(const LaunchSpec& spec) override;
};

// Sends sig to the whole process group of an instance.
Status kill_group(pid_t pid, int sig);

// Reaps the exited process behind a pidfd: its wait status (as waitpid), or
// nullopt-like error when it has not exited.
Result<int> reap(const Process& process);

// Peak resident set of a live process in bytes (VmHWM), 0 when unknown.
int64_t peak_rss_bytes(pid_t pid);

// Closes whichever of the process's fds are open and sets them to -1.
void close_fds(Process& process);

}  // namespace tamaya::sandbox
