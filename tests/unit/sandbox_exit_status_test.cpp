#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "sandbox/exit_status.h"

namespace tamaya::sandbox {
namespace {

// The status of a real child that ran `body`, so the encoding is the
// kernel's, not one the test made up.
template <typename Body>
int status_of(Body body) {
  pid_t pid = fork();
  if (pid == 0) {
    rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    // Sanitizers install their own SEGV/ABRT handlers; the kernel's default
    // action is what is being described.
    for (int sig : {SIGSEGV, SIGABRT, SIGTERM, SIGXFSZ}) signal(sig, SIG_DFL);
    body();
    _exit(0);
  }
  int status = -1;
  waitpid(pid, &status, 0);
  return status;
}

TEST(DescribeExit, ExitCodes) {
  EXPECT_EQ(describe_exit(status_of([] { _exit(1); })), "exit status 1");
  EXPECT_EQ(describe_exit(status_of([] { _exit(0); })), "exit status 0");
  EXPECT_EQ(describe_exit(status_of([] { _exit(255); })), "exit status 255");
}

TEST(DescribeExit, SignalsInLambdasWording) {
  EXPECT_EQ(describe_exit(status_of([] { raise(SIGKILL); })), "signal: killed");
  EXPECT_EQ(describe_exit(status_of([] { raise(SIGSEGV); })), "signal: segmentation fault");
  EXPECT_EQ(describe_exit(status_of([] { raise(SIGTERM); })), "signal: terminated");
  EXPECT_EQ(describe_exit(status_of([] { raise(SIGABRT); })), "signal: aborted");
  EXPECT_EQ(describe_exit(status_of([] { raise(SIGXFSZ); })), "signal: file size limit exceeded");
  EXPECT_EQ("Runtime exited with error: " + describe_exit(status_of([] { raise(SIGKILL); })),
            "Runtime exited with error: signal: killed");
}

TEST(DescribeExit, CoreDumpAndUnnamedSignals) {
  // The core flag cannot be produced without writing a core file here, so
  // this one status is built by hand in the Linux encoding (0x80 | signal).
  EXPECT_EQ(describe_exit(0x80 | SIGSEGV), "signal: segmentation fault (core dumped)");
  EXPECT_EQ(describe_exit(status_of([] { raise(SIGRTMIN + 1); })),
            "signal: signal " + std::to_string(SIGRTMIN + 1));
  EXPECT_EQ(signal_description(SIGHUP), "hangup");
  EXPECT_EQ(signal_description(SIGSYS), "bad system call");
}

}  // namespace
}  // namespace tamaya::sandbox
