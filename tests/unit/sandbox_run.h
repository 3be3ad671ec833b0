// Shared by the sandbox tests that run a real instance to its end: collect
// what it printed, reap it, and read its "key value" lines.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "sandbox/host.h"
#include "sandbox/launcher.h"

namespace tamaya::sandbox::testing {

// One test suite's host: a temporary directory with one code file, the
// host's capabilities and a sandboxed launcher (null when it can't be made;
// the failure is reported).
struct TestHost {
  std::string dir;
  HostCapabilities caps;
  ProcessLauncher* launcher = nullptr;
};

inline TestHost* make_test_host(const std::string& tag, const std::string& file,
                                const std::string& content, int sandboxes_ahead = 0) {
  namespace fs = std::filesystem;
  auto* h = new TestHost;
  h->dir = fs::temp_directory_path() / ("tamaya-" + tag + "-" + std::to_string(getpid()));
  fs::create_directories(h->dir + "/code");
  std::ofstream(h->dir + "/code/" + file) << content;
  fs::permissions(h->dir, fs::perms(0755));
  fs::permissions(h->dir + "/code", fs::perms(0755));
  h->caps = probe_host(h->dir + "/sandbox");
  SandboxOptions options;
  options.isolate = true;
  options.host = h->caps;
  options.root_dir = h->dir + "/sandbox/root";
  options.sandboxes_ahead = sandboxes_ahead;
  options.cgroups_ahead = sandboxes_ahead;
  options.batch_cpu = true;  // as the daemon's default (instance_cpu_policy=batch)
  auto made = ProcessLauncher::create(options);
  EXPECT_TRUE(made.ok()) << made.status().to_string();
  if (made.ok()) h->launcher = made->release();
  return h;
}

inline void drop_test_host(TestHost* h) {
  delete h->launcher;
  std::error_code ec;
  std::filesystem::remove_all(h->dir, ec);
  for (const std::string& base : {h->caps.cgroup_memory, h->caps.cgroup_pids, h->caps.cgroup_cpu}) {
    if (!base.empty()) rmdir(base.c_str());
  }
  delete h;
}

// The fixture of a suite that runs real runtime instances in the sandbox:
// one TestHost for the whole suite (made by the suite's SetUpTestSuite with
// set_up_host), its tests skipped where the host lacks the sandbox's layers.
// `Suite` (the deriving class) gives each suite statics of its own.
template <typename Suite>
class SandboxSuite : public ::testing::Test {
 protected:
  static void set_up_host(const std::string& tag, const std::string& file,
                          const std::string& content) {
    host_ = make_test_host(tag, file, content);
    dir_ = &host_->dir;
    caps_ = &host_->caps;
    direct_ = host_->launcher;
    ASSERT_NE(direct_, nullptr);
  }
  static void TearDownTestSuite() { drop_test_host(host_); }
  void SetUp() override {
    if (!caps_->namespaces || !caps_->uid_switch || !caps_->seccomp) {
      GTEST_SKIP() << "host lacks the sandbox's layers: " << summary(*caps_);
    }
  }

  static inline TestHost* host_ = nullptr;
  static inline std::string* dir_ = nullptr;
  static inline HostCapabilities* caps_ = nullptr;
  static inline ProcessLauncher* direct_ = nullptr;
  static inline int counter_ = 0;  // for unique instance names
};

struct Finished {
  std::string out, err;
  int status = -1;
};

// Reads the instance's stdout and stderr until both close and it exited (or
// `limit` passed), then reaps it and releases its fds and cgroups.
inline Finished finish(Process& p, std::chrono::seconds limit) {
  Finished f;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool exited = false, out_open = true, err_open = true;
  while ((!exited || out_open || err_open) && std::chrono::steady_clock::now() < deadline) {
    pollfd fds[3] = {{out_open ? p.stdout_fd : -1, POLLIN, 0},
                     {err_open ? p.stderr_fd : -1, POLLIN, 0},
                     {exited ? -1 : p.pidfd, POLLIN, 0}};
    poll(fds, 3, 100);
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (!fds[i].revents) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) (i == 0 ? f.out : f.err).append(buf, size_t(n));
      if (n == 0) (i == 0 ? out_open : err_open) = false;
    }
    if (fds[2].revents) exited = true;
  }
  auto status = reap(p);
  EXPECT_TRUE(status.ok()) << status.status().to_string();
  if (status.ok()) f.status = *status;
  close_fds(p);
  release(p);
  return f;
}

// Launches `spec`, lets `check` look at the live Process, then runs it to
// its end as finish() does.
inline Finished launch_and_finish(Launcher& launcher, const LaunchSpec& spec,
                                  std::chrono::seconds limit,
                                  const std::function<void(Process&)>& check = nullptr) {
  auto p = launcher.launch(spec);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  if (!p.ok()) return {};
  if (check) check(*p);
  return finish(*p, limit);
}

// "key value" lines, as the test instances print what they see.
inline std::map<std::string, std::string> fields(const std::string& out) {
  std::map<std::string, std::string> m;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) {
    auto sp = l.find(' ');
    if (sp != std::string::npos) m[l.substr(0, sp)] = l.substr(sp + 1);
  }
  return m;
}

}  // namespace tamaya::sandbox::testing
