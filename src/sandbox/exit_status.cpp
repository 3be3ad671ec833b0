#include "sandbox/exit_status.h"

#include <sys/wait.h>

#include <array>
#include <string_view>

namespace tamaya::sandbox {

namespace {

// Linux signal numbers 1..31 in Go's wording (syscall/zerrors_linux_*.go):
// users compare these strings with what Lambda printed for the same crash.
constexpr std::array<std::string_view, 32> kSignalWords = {
    "",
    "hangup",
    "interrupt",
    "quit",
    "illegal instruction",
    "trace/breakpoint trap",
    "aborted",
    "bus error",
    "floating point exception",
    "killed",
    "user defined signal 1",
    "segmentation fault",
    "user defined signal 2",
    "broken pipe",
    "alarm clock",
    "terminated",
    "stack fault",
    "child exited",
    "continued",
    "stopped (signal)",
    "stopped",
    "stopped (tty input)",
    "stopped (tty output)",
    "urgent I/O condition",
    "CPU time limit exceeded",
    "file size limit exceeded",
    "virtual timer expired",
    "profiling timer expired",
    "window changed",
    "I/O possible",
    "power failure",
    "bad system call",
};

}  // namespace

std::string signal_description(int sig) {
  if (sig > 0 && sig < static_cast<int>(kSignalWords.size())) {
    return std::string(kSignalWords[sig]);
  }
  return "signal " + std::to_string(sig);
}

std::string describe_exit(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return "exit status " + std::to_string(WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    std::string text = "signal: " + signal_description(WTERMSIG(wait_status));
    if (WCOREDUMP(wait_status)) {
      text += " (core dumped)";
    }
    return text;
  }
  if (WIFSTOPPED(wait_status)) {
    return "stop signal: " + signal_description(WSTOPSIG(wait_status));
  }
  if (WIFCONTINUED(wait_status)) {
    return "continued";
  }
  return "unknown wait status " + std::to_string(wait_status);
}

}  // namespace tamaya::sandbox
