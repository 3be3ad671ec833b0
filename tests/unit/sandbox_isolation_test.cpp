// Each isolation layer as applied, read back from inside a real instance (in
// the manner of Firecracker's jailer tests): the instance prints what it sees
// (/proc/self/*, id, mounts) and, for cgroups, the test reads the limit files
// of the cgroup the instance says it is in. Skipped where the host does not
// offer the layer (not root, no cgroup controller): `tamaya doctor` says so.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/fd.h"
#include "gtest/gtest.h"
#include "sandbox/cgroup.h"
#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/netns.h"
#include "sandbox_run.h"

namespace tamaya::sandbox {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kUid = 201'234;
constexpr int64_t kMemoryBytes = 96ll << 20;
constexpr int64_t kPids = 37;
constexpr int64_t kShares = 74;
constexpr int64_t kTmpBytes = 16ll << 20;

using testing::Finished;
using testing::TestHost;

// Every test runs twice: launched directly (Direct), and by sandboxes made
// ahead of need (Ready, ReadySandboxes in launcher.cpp), whose members must
// end up with exactly the same walls. In Ready, a launch with the suite's
// shape must be served by a member.
class Isolated : public ::testing::TestWithParam<int> {
 protected:
  static void TearDownTestSuite() {
    for (auto*& h : hosts_) {
      if (h != nullptr) testing::drop_test_host(h);
      h = nullptr;
    }
  }
  void SetUp() override {
    const int ahead = GetParam();
    // One host at a time: the cgroup tests count what is under the bases
    // the two would share.
    TestHost*& other = hosts_[ahead > 0 ? 0 : 1];
    if (other != nullptr) {
      testing::drop_test_host(other);
      other = nullptr;
    }
    TestHost*& h = hosts_[ahead > 0 ? 1 : 0];
    if (h == nullptr) {
      h = testing::make_test_host(ahead > 0 ? "iso-ready" : "iso", "hello.txt", "hello\n", ahead);
    }
    host_ = h;
    dir_ = &h->dir;
    caps_ = &h->caps;
    launcher_ = h->launcher;
    ASSERT_NE(launcher_, nullptr);
    if (!caps_->namespaces) GTEST_SKIP() << "host lacks namespaces: " << summary(*caps_);
    ready_mode_ = ahead > 0;
    if (ready_mode_ && launcher_->ready_counters().served == 0) {
      // The first launch that fits sets what members are made like.
      testing::launch_and_finish(*launcher_, shell("true"), std::chrono::seconds(10));
    }
  }

  static LaunchSpec shell(const std::string& script) {
    LaunchSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.cwd = kTaskRoot;
    spec.isolation.enabled = true;
    spec.isolation.name = "test-" + std::to_string(getpid()) + "-" + std::to_string(counter_++);
    spec.isolation.uid = kUid;
    spec.isolation.gid = kUid;
    spec.isolation.hostname = "tamaya-test";
    spec.isolation.memory_bytes = kMemoryBytes;
    spec.isolation.pids_max = kPids;
    spec.isolation.cpu_shares = kShares;
    spec.isolation.tmp_bytes = kTmpBytes;
    spec.isolation.code_dir = *dir_ + "/code";
    spec.limits.open_files = 77;
    spec.limits.file_size_bytes = 5 << 20;
    return spec;
  }

  // Whether a member made for shell()'s specs can serve `spec`.
  static bool has_suite_shape(const LaunchSpec& spec) {
    const Isolation& iso = spec.isolation;
    return iso.network == Network::kHost && iso.readonly_paths.empty() &&
           iso.hostname == "tamaya-test" && iso.tmp_bytes == kTmpBytes && iso.memory_bytes > 0 &&
           iso.pids_max > 0 && iso.cpu_shares > 0 && spec.stdin_fd < 0;
  }

  // Launches `spec`; in Ready, one with the suite's shape waits (up to 5 s)
  // for a member to be ready and must be served by it.
  static Result<Process> launch(const LaunchSpec& spec) {
    const bool served = ready_mode_ && has_suite_shape(spec);
    if (served) {
      for (int i = 0; i < 500 && launcher_->ready_counters().ready == 0; ++i) usleep(10'000);
    }
    const int64_t before = launcher_->ready_counters().served;
    auto p = launcher_->launch(spec);
    if (served && p.ok()) {
      EXPECT_EQ(launcher_->ready_counters().served, before + 1) << "not served by a member";
    }
    return p;
  }

  // Runs the instance to the end; `while_running` sees it alive first (the
  // script must wait for stdin... it cannot: it sleeps instead).
  static Finished run(const LaunchSpec& spec,
                      const std::function<void(Process&)>& while_running = nullptr) {
    const bool served = ready_mode_ && has_suite_shape(spec);
    if (served) {
      for (int i = 0; i < 500 && launcher_->ready_counters().ready == 0; ++i) usleep(10'000);
    }
    const int64_t before = launcher_->ready_counters().served;
    Finished f =
        testing::launch_and_finish(*launcher_, spec, std::chrono::seconds(10), while_running);
    if (served) {
      EXPECT_EQ(launcher_->ready_counters().served, before + 1) << "not served by a member";
    }
    return f;
  }

  static inline TestHost* hosts_[2] = {nullptr, nullptr};
  static inline TestHost* host_ = nullptr;
  static inline std::string* dir_ = nullptr;
  static inline HostCapabilities* caps_ = nullptr;
  static inline ProcessLauncher* launcher_ = nullptr;
  static inline bool ready_mode_ = false;
  static inline int counter_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Launch, Isolated, ::testing::Values(0, 2),
                         [](const auto& info) { return info.param > 0 ? "Ready" : "Direct"; });

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST_P(Isolated, RunsAsTheFunctionsUidWithoutSupplementaryGroups) {
  if (!caps_->uid_switch) GTEST_SKIP() << "no uid switching here";
  Finished f = run(shell("id -u; id -g; id -G"));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.out, "201234\n201234\n201234\n");
}

// Field 41 of stat is the scheduling policy; 3 is SCHED_BATCH. `cut` is a
// child of the instance's shell: the policy is inherited across fork and exec.
TEST_P(Isolated, RunsUnderTheBatchCpuPolicy) {
  Finished f = run(shell("cut -d' ' -f41 /proc/self/stat"));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.out, "3\n");
}

TEST_P(Isolated, HasItsOwnPidNamespaceHostnameAndIpc) {
  Finished f =
      run(shell("echo $$; hostname; ls /proc | grep -c '^[0-9]'; "
                "readlink /proc/self/ns/ipc"));
  auto out = lines(f.out);
  ASSERT_EQ(out.size(), 4u) << f.out << f.err;
  EXPECT_EQ(out[0], "1");  // the runtime is init of its namespace
  EXPECT_EQ(out[1], "tamaya-test");
  EXPECT_LE(std::stoi(out[2]), 3);  // sh, ls, grep: nothing of the host
  char host_ipc[64] = {};
  ASSERT_GT(readlink("/proc/self/ns/ipc", host_ipc, sizeof host_ipc - 1), 0);
  EXPECT_NE(out[3], host_ipc);
}

TEST_P(Isolated, AppliesRlimitsNoNewPrivsAndSeccomp) {
  Finished f =
      run(shell("cat /proc/self/limits; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_NE(f.out.find("Max open files            77                   77"), std::string::npos)
      << f.out;
  EXPECT_NE(f.out.find("Max file size             5242880              5242880"),
            std::string::npos);
  EXPECT_NE(f.out.find("Max core file size        0                    0"), std::string::npos);
  EXPECT_NE(f.out.find("NoNewPrivs:\t1"), std::string::npos);
  if (caps_->seccomp) {
    EXPECT_NE(f.out.find("Seccomp:\t2"), std::string::npos);
  }
}

TEST_P(Isolated, RefusedSyscallsAnswerEperm) {
  if (!caps_->seccomp) GTEST_SKIP() << "no seccomp here";
  // As root in its own user... no: as the function's uid, unshare would be
  // EPERM anyway; run it as root (uid 0) so only seccomp can refuse it.
  LaunchSpec spec = shell("unshare --uts true; echo rc=$?");
  spec.isolation.uid = 0;
  Finished f = run(spec);
  EXPECT_NE(f.out.find("rc=1"), std::string::npos) << f.out << f.err;
  EXPECT_NE(f.err.find("Operation not permitted"), std::string::npos) << f.err;
}

TEST_P(Isolated, MountTableIsTheAllowlistOnly) {
  Finished f = run(shell("cut -d' ' -f2,4 /proc/self/mounts"));
  EXPECT_EQ(f.status, 0) << f.err;
  std::vector<std::string> allowed = {"/", kTaskRoot, "/tmp", "/proc", "/proc/sys", "/dev"};
  for (const auto& p : default_readonly_paths()) allowed.push_back(p);
  for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"}) {
    allowed.push_back(std::string("/dev/") + d);
  }
  int count = 0;
  for (const auto& line : lines(f.out)) {
    std::string point = line.substr(0, line.find(' '));
    std::string options = line.substr(line.find(' ') + 1);
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), point), allowed.end())
        << "unexpected mount " << point;
    if (point == "/" || point == kTaskRoot || point == "/usr") {
      EXPECT_EQ(options.rfind("ro,", 0), 0u) << point << " is not read-only: " << options;
    }
    if (point == "/tmp") {
      EXPECT_NE(options.find("size=16384k"), std::string::npos) << options;
      EXPECT_EQ(options.rfind("rw,", 0), 0u);
    }
    ++count;
  }
  EXPECT_GE(count, 6) << f.out;
  EXPECT_EQ(f.out.find(*dir_ + "/code"), std::string::npos);
}

TEST_P(Isolated, CodeIsReadOnlyAndHostFilesAreAbsent) {
  Finished f =
      run(shell("cat /var/task/hello.txt; touch /var/task/x 2>&1; echo w=$?; "
                "ls /etc/shadow 2>&1; echo s=$?; ls /root 2>&1; echo r=$?; "
                "echo data > /tmp/f && cat /tmp/f"));
  EXPECT_NE(f.out.find("hello\n"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("Read-only file system"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("w=1"), std::string::npos);
  EXPECT_NE(f.out.find("s=2"), std::string::npos);  // /etc/shadow does not exist in here
  EXPECT_NE(f.out.find("r=2"), std::string::npos);
  EXPECT_NE(f.out.find("data\n"), std::string::npos);
}

TEST_P(Isolated, CgroupLimitsAsApplied) {
  if (caps_->cgroup == CgroupVersion::kNone) GTEST_SKIP() << "no cgroups here";
  std::string membership;
  Finished f = run(shell("cat /proc/self/cgroup; sleep 0.5"), [&](Process& p) {
    const InstanceCgroups& cg = p.cgroups;
    if (caps_->cgroup == CgroupVersion::kV1) {
      if (!cg.memory_dir.empty()) {
        EXPECT_EQ(read_cgroup_number(cg.memory_dir + "/memory.limit_in_bytes"), kMemoryBytes);
        if (caps_->memory_swap_control) {
          EXPECT_EQ(read_cgroup_number(cg.memory_dir + "/memory.memsw.limit_in_bytes"),
                    kMemoryBytes);
        }
      }
      if (!cg.cpu_dir.empty()) {
        EXPECT_EQ(read_cgroup_number(cg.cpu_dir + "/cpu.shares"), kShares);
      }
    } else {
      EXPECT_EQ(read_cgroup_number(cg.memory_dir + "/memory.max"), kMemoryBytes);
      EXPECT_EQ(read_cgroup_number(cg.cpu_dir + "/cpu.weight"), cpu_weight_from_shares(kShares));
    }
    if (!cg.pids_dir.empty()) {
      EXPECT_EQ(read_cgroup_number(cg.pids_dir + "/pids.max"), kPids);
    }
    // The instance is a member: its cgroup.procs lists its host pid.
    std::ifstream procs((cg.memory_dir.empty() ? cg.dirs.at(0) : cg.memory_dir) + "/cgroup.procs");
    std::string all((std::istreambuf_iterator<char>(procs)), {});
    EXPECT_NE(all.find(std::to_string(p.pid)), std::string::npos) << all;
    membership = cg.dirs.empty() ? "" : cg.dirs.front();
  });
  EXPECT_EQ(f.status, 0) << f.err;
  const std::string name = fs::path(membership).filename();
  EXPECT_NE(f.out.find(name), std::string::npos) << f.out;
  // With a stock (Ready), its thread removes the set soon after.
  for (int i = 0; i < 200 && fs::exists(membership); ++i) usleep(10'000);
  EXPECT_FALSE(fs::exists(membership)) << "cgroup not removed: " << membership;
}

// An instance being stopped can be put in the idle scheduling class, and
// back (the dispatcher does so when nothing waits for its end).
TEST_P(Isolated, CpuIdleIsWrittenAndTakenBack) {
  if (caps_->cgroup == CgroupVersion::kNone || caps_->cgroup_cpu.empty()) {
    GTEST_SKIP() << "no CPU cgroup here";
  }
  Status idle = Status::Ok();
  int64_t at_idle = -3, back = -3;
  Finished f = run(shell("sleep 0.3"), [&](Process& p) {
    idle = set_cpu_idle(p.cgroups, true);
    at_idle = read_cgroup_number(p.cgroups.cpu_dir + "/cpu.idle");
    EXPECT_TRUE(set_cpu_idle(p.cgroups, false).ok());
    back = read_cgroup_number(p.cgroups.cpu_dir + "/cpu.idle");
  });
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(set_cpu_idle(InstanceCgroups{}, true).code(), Code::kUnavailable);
  InstanceCgroups without_the_file;  // a kernel before 5.15
  without_the_file.cpu_dir = *dir_;
  EXPECT_EQ(set_cpu_idle(without_the_file, true).code(), Code::kUnavailable);
  if (idle.code() == Code::kUnavailable) GTEST_SKIP() << idle.message();
  ASSERT_TRUE(idle.ok()) << idle.to_string();
  EXPECT_EQ(at_idle, 1);
  EXPECT_EQ(back, 0);
}

// Other limits than the last launch's (which a member's cgroups carry
// already) are written before the instance runs.
TEST_P(Isolated, OtherLimitsThanTheLastAreApplied) {
  if (caps_->cgroup_memory.empty()) GTEST_SKIP() << "no memory cgroup here";
  LaunchSpec spec = shell("sleep 0.3");
  spec.isolation.memory_bytes = kMemoryBytes * 2;
  int64_t seen = -3;
  Finished f = run(spec, [&](Process& p) {
    const std::string file =
        caps_->cgroup == CgroupVersion::kV1 ? "/memory.limit_in_bytes" : "/memory.max";
    seen = read_cgroup_number(p.cgroups.memory_dir + file);
  });
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(seen, kMemoryBytes * 2);
}

// An fd the daemon opens while a member waits never reaches the instance:
// the instance holds stdio and nothing else.
TEST_P(Isolated, TheInstanceHoldsOnlyItsStdio) {
  for (int i = 0; i < 100 && launcher_->ready_counters().ready == 0 && ready_mode_; ++i) {
    usleep(10'000);
  }
  Fd opened_meanwhile(open("/dev/zero", O_RDONLY));  // not O_CLOEXEC on purpose
  ASSERT_TRUE(opened_meanwhile.valid());
  Finished f = run(shell("ls /proc/self/fd"));
  EXPECT_EQ(f.status, 0) << f.err;
  // 0, 1, 2 and the one ls opens to read the directory.
  EXPECT_EQ(f.out, "0\n1\n2\n3\n");
}

// A member may wait long: it must not keep a copy of any fd of the daemon's
// meanwhile, or a pipe (or a client's connection) the daemon closes would
// stay open. Here a pipe exists when members are made; once they are ready
// and the daemon closes its write end, the read end sees the end at once.
TEST_P(Isolated, AWaitingMemberKeepsNoFdOfTheDaemons) {
  int ends[2];
  ASSERT_EQ(pipe(ends), 0);  // inheritable on purpose
  Fd read_end(ends[0]), write_end(ends[1]);
  // The launch takes a member; its holder makes the next with the pipe open.
  EXPECT_EQ(run(shell("echo ok")).out, "ok\n");
  for (int i = 0; i < 200 && launcher_->ready_counters().ready < 2 && ready_mode_; ++i) {
    usleep(10'000);
  }
  write_end.reset();
  pollfd pfd{read_end.get(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 1000), 1) << "a member holds the write end";
  EXPECT_TRUE(pfd.revents & POLLHUP);
}

// A program that cannot start is the same error either way, and leaves
// nothing behind.
TEST_P(Isolated, AMissingProgramIsTheSameErrorEitherWay) {
  LaunchSpec spec = shell("true");
  spec.argv = {"/var/task/no-such-bootstrap"};
  auto p = launch(spec);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("/var/task/no-such-bootstrap"), std::string::npos)
      << p.status().message();
  EXPECT_NE(p.status().message().find("No such file"), std::string::npos) << p.status().message();
  // The next launch works.
  EXPECT_EQ(run(shell("echo ok")).out, "ok\n");
}

TEST_P(Isolated, PidsLimitStopsAForkBomb) {
  if (caps_->cgroup_pids.empty()) GTEST_SKIP() << "no pids cgroup here";
  int64_t refused = -1;
  int64_t peak = -2;
  Finished f = run(shell("for i in $(seq 60); do sleep 1 & done; echo spawned"), [&](Process& p) {
    // On a fast host the shell reaches the cap and gives up within a few
    // ms, faster than pids.current can be polled: wait for it to end, then
    // read what the cgroup recorded (it stays until the instance is reaped).
    pollfd pfd{p.pidfd, POLLIN, 0};
    poll(&pfd, 1, 10'000);
    peak = read_cgroup_number(p.cgroups.pids_dir + "/pids.peak");  // -2: no such file here
    std::ifstream events(p.cgroups.pids_dir + "/pids.events");
    std::string key;
    events >> key >> refused;
    EXPECT_EQ(key, "max");
  });
  EXPECT_GE(refused, 1) << "no fork was refused at the cap";
  if (peak != -2) {
    EXPECT_GT(peak, kPids / 2);
    EXPECT_LE(peak, kPids);
  }
  EXPECT_NE(f.err.find("fork"), std::string::npos) << f.err;  // dash: "Cannot fork"
}

TEST_P(Isolated, MemoryLimitOomKillIsReported) {
  if (caps_->cgroup_memory.empty()) GTEST_SKIP() << "no memory cgroup here";
  LaunchSpec spec = shell("x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived");
  bool oom = false;
  auto p = launch(spec);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  pollfd pfd{p->pidfd, POLLIN, 0};
  poll(&pfd, 1, 20'000);
  oom = oom_killed(*p);
  int64_t peak = peak_memory_bytes(*p);
  reap(*p).ok();
  close_fds(*p);
  release(*p);
  EXPECT_TRUE(oom);
  EXPECT_GT(peak, kMemoryBytes / 2);
  EXPECT_LE(peak, kMemoryBytes);
}

TEST_P(Isolated, NetworkNoneHasOnlyLoopback) {
  if (!caps_->net_namespace) GTEST_SKIP() << "no network namespaces here";
  auto ns = create_network_namespace();
  ASSERT_TRUE(ns.ok()) << ns.status().to_string();
  LaunchSpec spec = shell("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
  spec.isolation.network = Network::kNone;
  spec.isolation.netns_fd = *ns;
  Finished f = run(spec);
  close(*ns);
  EXPECT_EQ(f.out, "lo\n") << f.err;
}

TEST_P(Isolated, OffMeansAPlainProcess) {
  ProcessLauncher plain;
  LaunchSpec spec = shell("echo $$");
  spec.cwd = "/";
  auto p = plain.launch(spec);
  ASSERT_TRUE(p.ok());
  pollfd pfd{p->pidfd, POLLIN, 0};
  poll(&pfd, 1, 5000);
  char buf[64] = {};
  ssize_t n = read(p->stdout_fd, buf, sizeof buf - 1);
  reap(*p).ok();
  close_fds(*p);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::stoi(buf), p->pid);  // same pid namespace as the host
  EXPECT_TRUE(p->cgroups.dirs.empty());
}

// The hierarchy that switches the host to fast cgroup joins is mounted, held
// by its fd alone (no mount point), and seen by processes: a v1 named
// hierarchy is listed in every process's /proc/self/cgroup.
TEST_P(Isolated, FavorCgroupMigrationsHoldsAHierarchyWithoutAMountPoint) {
  if (caps_->cgroup == CgroupVersion::kNone) GTEST_SKIP() << "no cgroups here";
  auto held = favor_cgroup_migrations();
  if (!held.ok() && caps_->cgroup == CgroupVersion::kV2) {
    GTEST_SKIP() << "a v2 host without v1 named hierarchies: " << held.status().message();
  }
  ASSERT_TRUE(held.ok()) << held.status().message();
  EXPECT_TRUE(held->valid());
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mounts, line)) {
    EXPECT_EQ(line.find("name=tamaya"), std::string::npos) << "mounted somewhere: " << line;
  }
  if (caps_->cgroup == CgroupVersion::kV1) {
    std::ifstream own("/proc/self/cgroup");
    std::string text((std::istreambuf_iterator<char>(own)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find(":name=tamaya:/"), std::string::npos) << text;
  }
  // A second holder (another daemon on the host) shares the hierarchy.
  auto again = favor_cgroup_migrations();
  EXPECT_TRUE(again.ok()) << again.status().message();
}

// Sets made ahead of need carry the limits they are taken with, and the
// stock removes what it still holds when it goes.
TEST_P(Isolated, CgroupStockHandsOutSetsWithTheirLimits) {
  // The stock alone: once is enough, and the Ready host's own stock would
  // be counted with it.
  if (GetParam() > 0) GTEST_SKIP() << "a test of CgroupStock alone, run in Direct";
  if (caps_->cgroup == CgroupVersion::kNone) GTEST_SKIP() << "no cgroups here";
  const CgroupLimits limits{kMemoryBytes, kPids, kShares};
  auto ahead_dirs = [&] {
    int n = 0;
    for (const std::string& base : {caps_->cgroup_memory, caps_->cgroup_pids, caps_->cgroup_cpu}) {
      if (base.empty()) continue;
      for (const auto& e : fs::directory_iterator(base)) {
        n += e.path().filename().string().rfind("ahead-", 0) == 0 ? 1 : 0;
      }
    }
    return n;
  };
  {
    CgroupStock stock(*caps_, 2);
    std::optional<InstanceCgroups> set;
    for (int i = 0; i < 200 && !set; ++i) {
      set = stock.take(limits);
      if (!set) usleep(10'000);
    }
    ASSERT_TRUE(set.has_value()) << "no set was made ahead within 2 s";
    if (caps_->cgroup == CgroupVersion::kV1) {
      if (!set->memory_dir.empty()) {
        EXPECT_EQ(read_cgroup_number(set->memory_dir + "/memory.limit_in_bytes"), kMemoryBytes);
      }
      if (!set->cpu_dir.empty()) {
        EXPECT_EQ(read_cgroup_number(set->cpu_dir + "/cpu.shares"), kShares);
      }
    } else {
      EXPECT_EQ(read_cgroup_number(set->memory_dir + "/memory.max"), kMemoryBytes);
    }
    if (!set->pids_dir.empty()) {
      EXPECT_EQ(read_cgroup_number(set->pids_dir + "/pids.max"), kPids);
    }
    // Its cgroup.procs files come opened, one per directory, and are handed
    // over once: a second call opens its own.
    ASSERT_TRUE(set->procs_opened);
    ASSERT_EQ(set->procs_opened->size(), set->dirs.size());
    const int first_fd = set->procs_opened->front().get();
    auto handed = open_procs_files(*set);
    ASSERT_TRUE(handed.ok()) << handed.status().message();
    ASSERT_EQ(handed->size(), set->dirs.size());
    EXPECT_EQ(handed->front(), first_fd);
    EXPECT_FALSE(set->procs_opened);
    for (size_t i = 0; i < handed->size(); ++i) {
      char path[64];
      std::snprintf(path, sizeof path, "/proc/self/fd/%d", (*handed)[i]);
      EXPECT_EQ(fs::read_symlink(path).string(), set->dirs[i] + "/cgroup.procs");
    }
    auto again = open_procs_files(*set);
    ASSERT_TRUE(again.ok());
    EXPECT_NE(again->front(), first_fd);
    for (int fd : *handed) close(fd);
    for (int fd : *again) close(fd);
    // Limits without a controller the sets have get no set.
    EXPECT_FALSE(stock.take({kMemoryBytes, 0, kShares}).has_value());
    // Given back, the set is removed by the stock's thread, soon.
    const std::vector<std::string> dirs = set->dirs;
    ASSERT_FALSE(dirs.empty());
    remove_cgroups(*set);
    EXPECT_TRUE(set->dirs.empty());
    auto any_left = [&] {
      return std::any_of(dirs.begin(), dirs.end(), [](const auto& d) { return fs::exists(d); });
    };
    for (int i = 0; i < 200 && any_left(); ++i) usleep(10'000);
    EXPECT_FALSE(any_left()) << "a set given back was not removed within 2 s";
    // The stock makes up for the one taken.
    for (int i = 0; i < 200 && ahead_dirs() == 0; ++i) usleep(10'000);
    EXPECT_GT(ahead_dirs(), 0);
    // A set given back just before the stock ends is removed by its end.
    std::optional<InstanceCgroups> last;
    for (int i = 0; i < 200 && !last; ++i) {
      last = stock.take(limits);
      if (!last) usleep(10'000);
    }
    ASSERT_TRUE(last.has_value());
    remove_cgroups(*last);
  }
  EXPECT_EQ(ahead_dirs(), 0) << "sets left behind";
}

// Sets made after a take carry that take's limits already (a burst of one
// function writes none on its path); a take with other limits, larger or
// smaller, still gets exactly its own.
TEST_P(Isolated, CgroupStockWritesTheLastLimitsAheadAndRewritesOthers) {
  // The stock alone: once is enough, and the Ready host's own stock would
  // be counted with it.
  if (GetParam() > 0) GTEST_SKIP() << "a test of CgroupStock alone, run in Direct";
  if (caps_->cgroup == CgroupVersion::kNone) GTEST_SKIP() << "no cgroups here";
  auto take = [](CgroupStock& stock, const CgroupLimits& limits) {
    std::optional<InstanceCgroups> set;
    for (int i = 0; i < 200 && !set; ++i) {
      set = stock.take(limits);
      if (!set) usleep(10'000);
    }
    return set;
  };
  auto expect_limits = [&](const InstanceCgroups& set, const CgroupLimits& limits) {
    if (caps_->cgroup == CgroupVersion::kV1) {
      if (!set.memory_dir.empty()) {
        EXPECT_EQ(read_cgroup_number(set.memory_dir + "/memory.limit_in_bytes"),
                  limits.memory_bytes);
        if (caps_->memory_swap_control) {
          EXPECT_EQ(read_cgroup_number(set.memory_dir + "/memory.memsw.limit_in_bytes"),
                    limits.memory_bytes);
        }
      }
      if (!set.cpu_dir.empty()) {
        EXPECT_EQ(read_cgroup_number(set.cpu_dir + "/cpu.shares"), limits.cpu_shares);
      }
    } else {
      EXPECT_EQ(read_cgroup_number(set.memory_dir + "/memory.max"), limits.memory_bytes);
    }
    if (!set.pids_dir.empty()) {
      EXPECT_EQ(read_cgroup_number(set.pids_dir + "/pids.max"), limits.pids_max);
    }
  };
  const CgroupLimits a{kMemoryBytes, kPids, kShares};
  const CgroupLimits larger{kMemoryBytes * 4, kPids + 5, kShares * 2};
  const CgroupLimits smaller{kMemoryBytes / 2, kPids - 1, kShares / 2};
  CgroupStock stock(*caps_, 2);
  std::vector<InstanceCgroups> taken;
  for (const CgroupLimits* limits : {&a, &a, &a, &larger, &smaller, &a}) {
    auto set = take(stock, *limits);
    ASSERT_TRUE(set.has_value()) << "no set was made ahead within 2 s";
    expect_limits(*set, *limits);
    taken.push_back(std::move(*set));
    usleep(50'000);  // the stock makes the next ones with these limits
  }
  for (auto& set : taken) remove_cgroups(set);
}

TEST(CpuShares, ProportionalToMemoryAsLambda) {
  EXPECT_EQ(cpu_shares_for_memory(1769), 1024);
  EXPECT_EQ(cpu_shares_for_memory(128), 74);
  EXPECT_EQ(cpu_shares_for_memory(3538), 2048);
  EXPECT_EQ(cpu_weight_from_shares(1024), 39);
  EXPECT_EQ(cpu_weight_from_shares(2), 1);
}

}  // namespace
}  // namespace tamaya::sandbox
