// Real processes only: every test starts programs from the base system and
// checks what they saw from the inside (/proc/self, ulimit, env, pwd).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "sandbox/exit_status.h"
#include "sandbox/launcher.h"

namespace tamaya::sandbox {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

// Generous: only a broken launcher ever gets near it.
constexpr int kDeadlineMs = 10'000;

LaunchSpec spec_of(std::vector<std::string> argv) {
  LaunchSpec spec;
  spec.argv = std::move(argv);
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.cwd = "/";
  return spec;
}

struct Finished {
  std::string out;
  std::string err;
  int status = -1;
};

// Reads one non-blocking pipe until it would block; false at EOF.
bool drain(int fd, std::string& into) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      return false;
    }
    if (errno == EINTR) {
      continue;
    }
    return errno == EAGAIN;
  }
}

// Collects both pipes to EOF and the exit status, then closes the fds.
Finished finish(Process& p) {
  Finished f;
  bool out_open = true, err_open = true, exited = false;
  const auto deadline = steady_clock::now() + std::chrono::milliseconds(kDeadlineMs);
  while ((out_open || err_open || !exited) && steady_clock::now() < deadline) {
    pollfd fds[3] = {{p.stdout_fd, POLLIN, 0}, {p.stderr_fd, POLLIN, 0}, {p.pidfd, POLLIN, 0}};
    if (!out_open) {
      fds[0].fd = -1;
    }
    if (!err_open) {
      fds[1].fd = -1;
    }
    if (exited) {
      fds[2].fd = -1;
    }
    if (poll(fds, 3, 100) < 0 && errno != EINTR) {
      break;
    }
    if (fds[0].revents) {
      out_open = drain(p.stdout_fd, f.out);
    }
    if (fds[1].revents) {
      err_open = drain(p.stderr_fd, f.err);
    }
    if (fds[2].revents) {
      exited = true;
    }
  }
  EXPECT_FALSE(out_open || err_open || !exited) << "process " << p.pid << " did not finish";
  auto status = reap(p);
  EXPECT_TRUE(status.ok()) << status.status().to_string();
  if (status.ok()) {
    f.status = *status;
  }
  close_fds(p);
  return f;
}

Finished run(const LaunchSpec& spec) {
  ProcessLauncher launcher;
  auto p = launcher.launch(spec);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  if (!p.ok()) {
    return {};
  }
  return finish(*p);
}

bool wait_readable(int fd, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  return poll(&pfd, 1, timeout_ms) == 1;
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

int count_own_fds() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') {
      ++n;
    }
  }
  closedir(dir);
  return n - 1;  // the directory stream itself
}

std::string limits_line(const std::string& limits, const std::string& name) {
  std::istringstream in(limits);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) == 0) {
      // "Max open files            77                   77                   files"
      std::istringstream fields(line.substr(name.size()));
      std::string soft, hard;
      fields >> soft >> hard;
      return soft.append(" ").append(hard);
    }
  }
  return "(missing " + name + ")";
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tamaya-sandbox-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Launcher, StdoutAndStderrArriveThroughPipesAndExitCodeThroughReap) {
  Finished f = run(spec_of({"/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"}));
  EXPECT_EQ(f.out, "to-out\n");
  EXPECT_EQ(f.err, "to-err\n");
  EXPECT_EQ(exit_code(f.status), 3);
  EXPECT_EQ(describe_exit(f.status), "exit status 3");
}

TEST(Launcher, ParentEndsAreNonBlockingAndCloseOnExec) {
  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({"/bin/true"}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  for (int fd : {p->stdout_fd, p->stderr_fd}) {
    EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  }
  EXPECT_TRUE(fcntl(p->pidfd, F_GETFD) & FD_CLOEXEC);
  finish(*p);
}

TEST(Launcher, EnvironmentIsExactlyWhatWasGiven) {
  setenv("TAMAYA_TEST_LEAK", "from-the-daemon", 1);
  LaunchSpec spec = spec_of({"/usr/bin/env"});
  spec.env = {"A=1", "B=two words", "EMPTY="};
  EXPECT_EQ(run(spec).out, "A=1\nB=two words\nEMPTY=\n");

  spec.env.clear();
  Finished f = run(spec);
  EXPECT_EQ(f.out, "");
  EXPECT_EQ(exit_code(f.status), 0);
}

TEST(Launcher, WorkingDirectoryIsApplied) {
  TempDir dir;
  LaunchSpec spec = spec_of({"/bin/pwd"});
  spec.cwd = dir.path();
  EXPECT_EQ(run(spec).out, fs::canonical(dir.path()).string() + "\n");
}

TEST(Launcher, RelativeProgramPathIsResolvedInTheWorkingDirectory) {
  TempDir dir;
  const std::string script = dir.path() + "/bootstrap";
  std::ofstream(script) << "#!/bin/sh\necho bootstrapped\n";
  chmod(script.c_str(), 0755);
  LaunchSpec spec = spec_of({"./bootstrap"});
  spec.cwd = dir.path();
  EXPECT_EQ(run(spec).out, "bootstrapped\n");
}

TEST(Launcher, ResourceLimitsAreSetInTheChild) {
  LaunchSpec spec = spec_of({"/bin/sh", "-c", "ulimit -n; ulimit -c; ulimit -Hn"});
  spec.limits.open_files = 77;
  spec.limits.file_size_bytes = 1 << 20;
  spec.limits.processes = 500;
  spec.limits.address_space_bytes = 4ll << 30;
  EXPECT_EQ(run(spec).out, "77\n0\n77\n");

  spec.argv = {"/bin/cat", "/proc/self/limits"};
  const std::string limits = run(spec).out;
  EXPECT_EQ(limits_line(limits, "Max open files"), "77 77");
  EXPECT_EQ(limits_line(limits, "Max file size"), "1048576 1048576");
  EXPECT_EQ(limits_line(limits, "Max core file size"), "0 0");
  EXPECT_EQ(limits_line(limits, "Max processes"), "500 500");
  EXPECT_EQ(limits_line(limits, "Max address space"), "4294967296 4294967296");
}

TEST(Launcher, FileSizeLimitStopsALargeWrite) {
  TempDir dir;
  LaunchSpec spec = spec_of({"/bin/sh", "-c", "exec /bin/dd if=/dev/zero of=big bs=4096 count=64"});
  spec.cwd = dir.path();
  spec.limits.file_size_bytes = 64 << 10;
  Finished f = run(spec);
  // dd dies of SIGXFSZ (its default action) at the limit.
  EXPECT_TRUE(WIFSIGNALED(f.status)) << f.status;
  EXPECT_EQ(WTERMSIG(f.status), SIGXFSZ);
  EXPECT_EQ(fs::file_size(dir.path() + "/big"), 64u << 10);
}

TEST(Launcher, CoreDumpsKeepTheInheritedCoreLimitWhenAllowed) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &saved), 0);
  constexpr rlim_t kCoreBytes = 2 << 20;
  rlimit ours{kCoreBytes, saved.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_CORE, &ours), 0);
  LaunchSpec spec = spec_of({"/bin/cat", "/proc/self/limits"});
  spec.limits.core_dumps = true;
  const std::string limits = run(spec).out;
  setrlimit(RLIMIT_CORE, &saved);
  const std::string core = limits_line(limits, "Max core file size");
  EXPECT_EQ(core.rfind(std::to_string(kCoreBytes) + " ", 0), 0u) << core;
}

TEST(Launcher, OnlyStdioIsOpenAndStdinIsDevNull) {
  // Leave fds open without close-on-exec, as a careless library would.
  int stray = open("/etc/hostname", O_RDONLY);
  int stray_pipe[2];
  ASSERT_EQ(pipe(stray_pipe), 0);
  ASSERT_GE(stray, 0);

  // ls opens /proc/self/fd itself: that is the one fd beyond 0, 1, 2.
  EXPECT_EQ(run(spec_of({"/bin/ls", "/proc/self/fd"})).out, "0\n1\n2\n3\n");
  EXPECT_EQ(run(spec_of({"/usr/bin/readlink", "/proc/self/fd/0"})).out, "/dev/null\n");
  Finished f = run(spec_of({"/usr/bin/readlink", "/proc/self/fd/1", "/proc/self/fd/2"}));
  EXPECT_EQ(f.out.rfind("pipe:[", 0), 0u) << f.out;
  EXPECT_EQ(std::count(f.out.begin(), f.out.end(), '\n'), 2);

  close(stray);
  close(stray_pipe[0]);
  close(stray_pipe[1]);
}

TEST(Launcher, SignalMaskAndDispositionsAreReset) {
  // A daemon typically ignores SIGPIPE and blocks signals in worker threads.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction saved_pipe {};
  sigaction(SIGPIPE, &ignore, &saved_pipe);
  Finished f;
  std::thread worker([&] {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    f = run(spec_of({"/bin/grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status"}));
  });
  worker.join();
  sigaction(SIGPIPE, &saved_pipe, nullptr);
  EXPECT_EQ(f.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(Launcher, MissingProgramIsAClearError) {
  const int fds_before = count_own_fds();
  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({"/nonexistent/bootstrap"}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(p.status().message().rfind(
                "cannot start /nonexistent/bootstrap: No such file or directory", 0),
            0u)
      << p.status().message();
  EXPECT_EQ(count_own_fds(), fds_before);
  // The failed child was reaped: this process has no children left.
  siginfo_t info{};
  EXPECT_EQ(waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(Launcher, NonExecutableFileIsAClearError) {
  TempDir dir;
  const std::string path = dir.path() + "/bootstrap";
  std::ofstream(path) << "#!/bin/sh\necho never\n";
  chmod(path.c_str(), 0644);
  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({path}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "cannot start " + path + ": Permission denied (is it executable?)");
}

TEST(Launcher, MissingWorkingDirectoryIsAClearError) {
  LaunchSpec spec = spec_of({"/bin/true"});
  spec.cwd = "/nonexistent/task";
  ProcessLauncher launcher;
  auto p = launcher.launch(spec);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "cannot start /bin/true: working directory /nonexistent/task: No such file or "
            "directory");
}

TEST(Launcher, MalformedSpecsAreRejectedBeforeForking) {
  ProcessLauncher launcher;
  LaunchSpec empty_argv = spec_of({});
  EXPECT_EQ(launcher.launch(empty_argv).status().code(), Code::kInvalidArgument);
  LaunchSpec bad_env = spec_of({"/bin/true"});
  bad_env.env = {"NO_EQUALS_SIGN"};
  EXPECT_EQ(launcher.launch(bad_env).status().message(),
            "launch: environment entry 'NO_EQUALS_SIGN' is not KEY=value");
  LaunchSpec no_cwd = spec_of({"/bin/true"});
  no_cwd.cwd.clear();
  EXPECT_EQ(launcher.launch(no_cwd).status().code(), Code::kInvalidArgument);
  LaunchSpec negative = spec_of({"/bin/true"});
  negative.limits.file_size_bytes = -1;
  EXPECT_EQ(launcher.launch(negative).status().code(), Code::kInvalidArgument);
}

TEST(Launcher, OwnSessionAndProcessGroup) {
  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({"/bin/sleep", "100"}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(getpgid(p->pid), p->pid);
  EXPECT_EQ(getsid(p->pid), p->pid);
  EXPECT_NE(getsid(p->pid), getsid(0));
  ASSERT_TRUE(kill_group(p->pid, SIGKILL).ok());
  EXPECT_EQ(describe_exit(finish(*p).status), "signal: killed");
}

TEST(Launcher, KillGroupKillsChildAndGrandchild) {
  // Orphaned grandchildren come to us, so their end can be observed exactly.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  ProcessLauncher launcher;
  // `exec`: a shell that waits for its last command could reap the killed
  // grandchild itself (its wait4 reaps before its own SIGKILL lands); a
  // sleep never waits, so the orphan comes to us.
  auto p = launcher.launch(spec_of({"/bin/sh", "-c", "sleep 100 & echo $!; exec sleep 100"}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();

  std::string line;
  const auto deadline = steady_clock::now() + std::chrono::milliseconds(kDeadlineMs);
  while (line.find('\n') == std::string::npos && steady_clock::now() < deadline) {
    wait_readable(p->stdout_fd, 100);
    drain(p->stdout_fd, line);
  }
  const pid_t grandchild = std::atoi(line.c_str());
  ASSERT_GT(grandchild, 0) << line;
  EXPECT_EQ(getpgid(grandchild), p->pid);

  ASSERT_TRUE(kill_group(p->pid, SIGKILL).ok());
  // finish() also requires stdout to reach EOF: no sleeper holds it any more.
  Finished f = finish(*p);
  EXPECT_EQ(describe_exit(f.status), "signal: killed");
  // The shell has exited, so its orphan is ours now and its status can be read.
  int grandchild_status = 0;
  pid_t waited = -1;
  do {
    waited = waitpid(grandchild, &grandchild_status, 0);
  } while (waited < 0 && errno == EINTR);
  ASSERT_EQ(waited, grandchild) << std::strerror(errno);
  EXPECT_EQ(describe_exit(grandchild_status), "signal: killed");
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST(Launcher, KillGroupOfAGoneProcessIsFineAndPidsBelowTwoAreRefused) {
  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({"/bin/true"}));
  ASSERT_TRUE(p.ok());
  const pid_t pid = p->pid;
  finish(*p);
  EXPECT_TRUE(kill_group(pid, SIGKILL).ok());
  EXPECT_EQ(kill_group(0, SIGKILL).code(), Code::kInvalidArgument);
  EXPECT_EQ(kill_group(1, SIGKILL).code(), Code::kInvalidArgument);
}

TEST(Launcher, PidfdBecomesReadableOnExitAndReapWaitsForIt) {
  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({"/bin/sh", "-c", "read line; exit 7"}));
  ASSERT_TRUE(p.ok());
  // stdin is /dev/null, so `read` returns at once; but first prove a running
  // process is not readable, with one that waits.
  auto sleeper = launcher.launch(spec_of({"/bin/sleep", "100"}));
  ASSERT_TRUE(sleeper.ok());
  EXPECT_FALSE(wait_readable(sleeper->pidfd, 0));
  auto early = reap(*sleeper);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(kill_group(sleeper->pid, SIGTERM).ok());
  EXPECT_TRUE(wait_readable(sleeper->pidfd, kDeadlineMs));
  EXPECT_EQ(describe_exit(finish(*sleeper).status), "signal: terminated");

  EXPECT_TRUE(wait_readable(p->pidfd, kDeadlineMs));
  EXPECT_EQ(exit_code(finish(*p).status), 7);
}

TEST(Launcher, InstanceDiesWithTheThreadThatLaunchedIt) {
  Process p;
  std::thread short_lived([&] {
    ProcessLauncher launcher;
    auto launched = launcher.launch(spec_of({"/bin/sleep", "100"}));
    ASSERT_TRUE(launched.ok());
    p = *launched;
  });
  short_lived.join();
  ASSERT_GT(p.pid, 0);
  ASSERT_TRUE(wait_readable(p.pidfd, kDeadlineMs));
  EXPECT_EQ(describe_exit(finish(p).status), "signal: killed");
}

TEST(Launcher, LaunchesFromSeveralThreadsWhileAnotherAllocates) {
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop) {
      std::vector<std::string> churn(1000, std::string(100, 'x'));
    }
  });
  constexpr int kPerThread = 50;
  std::atomic<int> good{0};
  auto launch_many = [&](int tag) {
    for (int i = 0; i < kPerThread; ++i) {
      const std::string word = std::to_string(tag) + "-" + std::to_string(i);
      Finished f = run(spec_of({"/bin/echo", word}));
      if (f.out == word + "\n" && exit_code(f.status) == 0) {
        ++good;
      }
    }
  };
  std::thread a(launch_many, 1), b(launch_many, 2);
  a.join();
  b.join();
  stop = true;
  busy.join();
  EXPECT_EQ(good.load(), 2 * kPerThread);
}

TEST(Launcher, TwoHundredLaunchesLeakNoFds) {
  const int before = count_own_fds();
  ProcessLauncher launcher;
  for (int i = 0; i < 200; ++i) {
    auto p = launcher.launch(spec_of({"/bin/true"}));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    ASSERT_TRUE(wait_readable(p->pidfd, kDeadlineMs));
    auto status = reap(*p);
    ASSERT_TRUE(status.ok());
    ASSERT_EQ(*status, 0);
    close_fds(*p);
  }
  EXPECT_EQ(count_own_fds(), before);
}

TEST(Launcher, PeakRssOfLiveProcesses) {
  constexpr size_t kBallast = 64 << 20;
  std::vector<char> ballast(kBallast, 1);
  EXPECT_GE(peak_rss_bytes(getpid()), static_cast<int64_t>(kBallast));

  ProcessLauncher launcher;
  auto p = launcher.launch(spec_of({"/bin/sleep", "100"}));
  ASSERT_TRUE(p.ok());
  const int64_t child_rss = peak_rss_bytes(p->pid);
  EXPECT_GT(child_rss, 0);
  EXPECT_LT(child_rss, static_cast<int64_t>(kBallast));  // nothing was copied to it
  ASSERT_TRUE(kill_group(p->pid, SIGKILL).ok());
  finish(*p);
  EXPECT_EQ(peak_rss_bytes(p->pid), 0);  // reaped: unknown
  EXPECT_EQ(peak_rss_bytes(-5), 0);
  EXPECT_GT(ballast[kBallast / 2], 0);
}

}  // namespace
}  // namespace tamaya::sandbox
