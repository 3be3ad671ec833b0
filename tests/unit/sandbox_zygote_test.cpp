// Instances forked from the Python zygote (sandbox/zygote.h) get every wall a
// direct start gets, read back from inside: the function's module runs at
// import (the runtime client imports it first) and prints what it sees, then
// exits with a code the test gets back through the zygote (reap()).
// Skipped where the host lacks the sandbox's layers (not root).
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/setup.h"
#include "sandbox/zygote.h"
#include "sandbox_run.h"

namespace tamaya::sandbox {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

constexpr uint32_t kUid = 201'345;
constexpr int kExitCode = 3;

// The function's module: what this process sees, then an exit the test checks.
constexpr const char* kApp = R"(import os
st = {}
for line in open('/proc/self/status'):
    k, _, v = line.partition(':')
    st[k] = v.strip()
tmp = [l.split()[3] for l in open('/proc/self/mounts') if l.split()[1] == '/tmp']
cg = [l.strip() for l in open('/proc/self/cgroup') if ':pids:' in l or l.startswith('0::')]
print('uid', st['Uid'].split()[0])
print('gid', st['Gid'].split()[0])
print('seccomp', st['Seccomp'])
print('nnp', st['NoNewPrivs'])
print('capeff', st['CapEff'])
print('pid', os.getpid())
print('pids', len([p for p in os.listdir('/proc') if p.isdigit()]))
print('tmp', tmp[-1] if tmp else '')
print('cgroup', cg[0].rsplit('/', 1)[1] if cg else '')
print('env', os.environ.get('MARKER'))
print('nofile', open('/proc/self/limits').read().count('Max open files            77'))
import sys
sys.stdout.flush()
import time
time.sleep(float(os.environ.get('EXIT_AFTER_S', '0')))
os._exit(3)
)";

using testing::fields;

struct Finished : testing::Finished {
  pid_t pid = -1;
  bool forked = false;  // came from a zygote (reaped through it)
};

class Zygotes : public testing::SandboxSuite<Zygotes> {
 protected:
  static void SetUpTestSuite() { set_up_host("zyg", "app.py", kApp); }

  static LaunchSpec python(const std::string& marker) {
    const std::string runtimes = std::string(kRuntimesRoot);
    LaunchSpec spec;
    spec.argv = {"/usr/bin/python3", "-I", runtimes + "/python/bootstrap.py"};
    spec.zygote_argv = {"/usr/bin/python3", "-I", runtimes + "/python/zygote.py"};
    // Nothing listens there: the module's own exit comes first.
    spec.env = {"PATH=/usr/bin:/bin", "MARKER=" + marker, "_HANDLER=app.handler",
                "LAMBDA_TASK_ROOT=/var/task", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9"};
    spec.cwd = kTaskRoot;
    Isolation& iso = spec.isolation;
    iso.enabled = true;
    iso.name = "ztest-" + std::to_string(getpid()) + "-" + std::to_string(counter_++);
    iso.uid = iso.gid = kUid;
    iso.memory_bytes = 128ll << 20;
    iso.pids_max = 64;
    iso.tmp_bytes = 8ll << 20;
    iso.code_dir = *dir_ + "/code";
    iso.runtimes_dir = std::string(TAMAYA_SOURCE_DIR) + "/runtimes";
    spec.limits.open_files = 77;
    return spec;
  }

  // The walls of a forked instance, read back from inside it: `spec` is what
  // it was launched with, python(marker).
  static void expect_walled_in(const Finished& f, const LaunchSpec& spec,
                               const std::string& marker) {
    EXPECT_EQ(f.status, kExitCode << 8) << f.err;  // its own exit status, through the zygote
    auto m = fields(f.out);
    EXPECT_EQ(m["uid"], std::to_string(kUid)) << f.out << f.err;
    EXPECT_EQ(m["gid"], std::to_string(kUid));
    EXPECT_EQ(m["seccomp"], "2");
    EXPECT_EQ(m["nnp"], "1");
    EXPECT_EQ(m["capeff"], "0000000000000000");
    EXPECT_EQ(m["pid"], "1");   // init of its own pid namespace
    EXPECT_EQ(m["pids"], "1");  // and sees nothing else, not even the zygote
    EXPECT_NE(m["tmp"].find("size=8192k"), std::string::npos) << m["tmp"];
    EXPECT_EQ(m["env"], marker);
    if (caps_->cgroup != CgroupVersion::kNone && !caps_->cgroup_pids.empty()) {
      EXPECT_EQ(m["cgroup"], spec.isolation.name);  // its own, not the zygote's
    }
  }

  static Finished run(Launcher& launcher, const LaunchSpec& spec) {
    Finished f;
    static_cast<testing::Finished&>(f) =
        testing::launch_and_finish(launcher, spec, std::chrono::seconds(20), [&](Process& p) {
          f.pid = p.pid;
          f.forked = p.exit_source != nullptr;
        });
    return f;
  }
};

TEST_F(Zygotes, ForkedInstanceIsWalledInLikeADirectOne) {
  ZygoteLauncher zygotes(*direct_, {});
  const LaunchSpec spec = python("first");
  Finished f = run(zygotes, spec);
  ASSERT_TRUE(f.forked) << f.err;
  expect_walled_in(f, spec, "first");
  EXPECT_EQ(fields(f.out)["nofile"], "1");
  EXPECT_EQ(zygotes.counters().forked, 1);
  EXPECT_EQ(zygotes.counters().zygotes, 1);
}

// Waits (bounded) until the zygote of `spec` has a child ready ahead of need.
static bool wait_for_offer(ZygoteLauncher& zygotes, const LaunchSpec& spec, int count = 1) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  while (steady_clock::now() < deadline) {
    if (zygotes.offers_ready(spec) >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST_F(Zygotes, AChildForkedAheadOfNeedIsWalledInLikeADirectOne) {
  ZygoteLauncher zygotes(*direct_, {});
  ASSERT_TRUE(run(zygotes, python("first")).forked);  // starts the zygote, which offers a child
  // On a fast host the first start may already take an offered child.
  const auto offered0 = zygotes.counters().offered;
  const LaunchSpec spec = python("offered");
  ASSERT_TRUE(wait_for_offer(zygotes, spec));
  Finished f = run(zygotes, spec);
  ASSERT_TRUE(f.forked) << f.err;
  EXPECT_EQ(zygotes.counters().offered, offered0 + 1);
  expect_walled_in(f, spec, "offered");
  EXPECT_EQ(fields(f.out)["nofile"], "1");
}

TEST_F(Zygotes, TwoChildrenAheadOfNeedServeTwoStartsInARowEachWalledIn) {
  ZygoteOptions options;
  options.prefork = 2;
  ZygoteLauncher zygotes(*direct_, options);
  ASSERT_TRUE(run(zygotes, python("first")).forked);
  const auto offered0 = zygotes.counters().offered;  // the first may have been one
  ASSERT_TRUE(wait_for_offer(zygotes, python("x"), 2));
  // Back to back: the second start must not wait for the first one's replacement.
  const LaunchSpec spec_a = python("a");
  const LaunchSpec spec_b = python("b");
  Finished a = run(zygotes, spec_a);
  Finished b = run(zygotes, spec_b);
  ASSERT_TRUE(a.forked && b.forked) << a.err << b.err;
  EXPECT_EQ(zygotes.counters().offered, offered0 + 2);
  expect_walled_in(a, spec_a, "a");
  expect_walled_in(b, spec_b, "b");
  // Both are replaced: the zygote keeps two ready again.
  EXPECT_TRUE(wait_for_offer(zygotes, python("x"), 2));
}

// Starts that find no child ready (a burst) make the zygote keep one more
// ready, up to prefork + kZygoteBurstPrefork; after burst_quiet_ms without
// such a start, the next start brings it back to prefork.
TEST_F(Zygotes, ABurstOfStartsKeepsMoreChildrenReadyUntilItIsOver) {
  ZygoteOptions options;
  options.prefork = 1;
  options.burst_quiet_ms = 1'500;
  ZygoteLauncher zygotes(*direct_, options);
  ASSERT_TRUE(run(zygotes, python("first")).forked);
  const LaunchSpec any = python("x");
  ASSERT_TRUE(wait_for_offer(zygotes, any, 1));
  // Starts in a row: the second (and likely the third) finds none ready,
  // the first's replacement being still in preparation, and is forked on
  // demand; each such start makes the zygote keep one more ready.
  std::vector<Process> burst;
  for (const char* marker : {"a", "b", "c"}) {
    auto p = zygotes.launch(python(marker));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    burst.push_back(*p);
  }
  EXPECT_TRUE(wait_for_offer(zygotes, any, 2)) << "a burst keeps more ready";
  for (Process& p : burst) {
    kill_group(p.pid, SIGKILL).ok();
    pollfd pfd{p.pidfd, POLLIN, 0};
    poll(&pfd, 1, 10'000);
    reap(p).ok();
    close_fds(p);
    release(p);
  }
  // Quiet: the next start, from a ready child, ends the burst; children
  // beyond prefork are let go, one stays ready.
  std::this_thread::sleep_for(std::chrono::milliseconds(1'600));
  Finished d = run(zygotes, python("d"));
  ASSERT_TRUE(d.forked) << d.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(zygotes.offers_ready(any), 1);
  EXPECT_EQ(zygotes.counters().fallbacks, 0);
}

// The first offered child reports the pages it writes and the zygote learns
// its own over its next forks; from then on every child copies those pages in
// bulk before anything else (runtimes/python/zygote.py, _populate). Those
// later children must be walled in exactly like the first.
TEST_F(Zygotes, ChildrenForkedAfterThePagesAreLearntAreWalledInToo) {
  ZygoteLauncher zygotes(*direct_, {});
  ASSERT_TRUE(run(zygotes, python("first")).forked);
  const auto offered0 = zygotes.counters().offered;  // the first may have been one
  for (int i = 0; i < 5; ++i) {
    const std::string marker = "offered" + std::to_string(i);
    const LaunchSpec spec = python(marker);
    ASSERT_TRUE(wait_for_offer(zygotes, spec)) << i;
    Finished f = run(zygotes, spec);
    ASSERT_TRUE(f.forked) << f.err;
    expect_walled_in(f, spec, marker);
    EXPECT_EQ(fields(f.out)["nofile"], "1");
  }
  EXPECT_EQ(zygotes.counters().offered, offered0 + 5);
  EXPECT_EQ(zygotes.counters().fallbacks, 0);
}

// The daemon takes a child over at its "go" (LaunchSpec::hand_over_at_go)
// and learns from walled_fd when it has walled itself in: the walls are the
// same, whether the child was offered or forked on demand.
TEST_F(Zygotes, AChildHandedOverAtItsGoSaysWhenItIsWalledIn) {
  for (int prefork : {2, 0}) {
    ZygoteOptions options;
    options.prefork = prefork;
    ZygoteLauncher zygotes(*direct_, options);
    ASSERT_TRUE(run(zygotes, python("first")).forked);
    LaunchSpec spec = python("early");
    spec.hand_over_at_go = true;
    if (prefork > 0) {
      ASSERT_TRUE(wait_for_offer(zygotes, spec));
    }
    Status walled = Status::Unavailable("not read");
    Finished f;
    static_cast<testing::Finished&>(f) =
        testing::launch_and_finish(zygotes, spec, std::chrono::seconds(20), [&](Process& p) {
          f.forked = p.exit_source != nullptr;
          ASSERT_GE(p.walled_fd, 0);
          pollfd pfd{p.walled_fd, POLLIN, 0};
          ASSERT_EQ(poll(&pfd, 1, 10'000), 1);
          walled = read_walled_in(p.walled_fd, p.exit_source.get());
        });
    ASSERT_TRUE(f.forked) << prefork << f.err;
    EXPECT_TRUE(walled.ok()) << prefork << walled.to_string();
    expect_walled_in(f, spec, "early");
    EXPECT_EQ(zygotes.counters().fallbacks, 0);
  }
}

// A child that cannot wall itself in after its "go" (here: an open-files
// limit above the kernel's maximum) says why, exits, and the zygote is not
// used for a while: the next start is direct, as after a failed spawn.
TEST_F(Zygotes, AChildThatCannotWallItselfInAfterItsGoSaysWhyAndTheNextStartIsDirect) {
  ZygoteLauncher zygotes(*direct_, {});
  ASSERT_TRUE(run(zygotes, python("first")).forked);
  LaunchSpec spec = python("unwalled");
  spec.hand_over_at_go = true;
  spec.limits.open_files = int64_t{1} << 40;
  ASSERT_TRUE(wait_for_offer(zygotes, spec));
  auto p = zygotes.launch(spec);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_GE(p->walled_fd, 0);
  pollfd pfd{p->walled_fd, POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 10'000), 1);
  Status walled = read_walled_in(p->walled_fd, p->exit_source.get());
  EXPECT_EQ(walled.code(), Code::kFailedPrecondition) << walled.to_string();
  EXPECT_NE(walled.message().find("could not specialise"), std::string::npos) << walled.message();
  pollfd exited{p->pidfd, POLLIN, 0};
  ASSERT_EQ(poll(&exited, 1, 10'000), 1);
  auto status = reap(*p);
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  EXPECT_EQ(*status, 127 << 8);
  close_fds(*p);
  release(*p);
  Finished f = run(zygotes, python("after"));
  EXPECT_FALSE(f.forked);
  EXPECT_EQ(fields(f.out)["env"], "after") << f.err;
  EXPECT_EQ(zygotes.counters().fallbacks, 1);
}

TEST_F(Zygotes, WithoutPreforkAChildForkedOnDemandHasTheSameWalls) {
  ZygoteOptions options;
  options.prefork = 0;
  ZygoteLauncher zygotes(*direct_, options);
  // From the third fork on, the zygote's children copy the pages its loop
  // writes first (learnt over its first forks): the same walls.
  for (int i = 0; i < 4; ++i) {
    const std::string marker = "on-demand" + std::to_string(i);
    const LaunchSpec spec = python(marker);
    Finished f = run(zygotes, spec);
    ASSERT_TRUE(f.forked) << f.err;
    expect_walled_in(f, spec, marker);
  }
  EXPECT_EQ(zygotes.counters().forked, 4);
  EXPECT_EQ(zygotes.counters().offered, 0);
}

TEST_F(Zygotes, AnOfferedChildTakesTheTmpSizeOfItsInstance) {
  ZygoteLauncher zygotes(*direct_, {});
  ASSERT_TRUE(run(zygotes, python("first")).forked);  // the zygote's children get 8 MiB
  LaunchSpec spec = python("bigger");
  spec.isolation.tmp_bytes = 16ll << 20;
  ASSERT_TRUE(wait_for_offer(zygotes, spec));
  const auto offered_before = zygotes.counters().offered;  // the first may have been one
  Finished f = run(zygotes, spec);
  ASSERT_TRUE(f.forked) << f.err;
  auto m = fields(f.out);
  EXPECT_NE(m["tmp"].find("size=16384k"), std::string::npos) << m["tmp"] << f.err;
  EXPECT_EQ(m["env"], "bigger");
  EXPECT_EQ(zygotes.counters().offered, offered_before + 1);
}

TEST_F(Zygotes, LaterInstancesComeFromTheSameZygoteWithTheirOwnEnvironment) {
  ZygoteLauncher zygotes(*direct_, {});
  Finished a = run(zygotes, python("a"));
  const pid_t zygote = zygotes.zygote_pid(python("x"));
  Finished b = run(zygotes, python("b"));
  EXPECT_TRUE(a.forked && b.forked);
  EXPECT_GT(zygote, 0);
  EXPECT_EQ(zygotes.zygote_pid(python("x")), zygote);
  EXPECT_EQ(fields(a.out)["env"], "a");
  EXPECT_EQ(fields(b.out)["env"], "b");
  EXPECT_EQ(zygotes.counters().forked, 2);
}

TEST_F(Zygotes, ADeadZygoteMeansADirectStart) {
  ZygoteLauncher zygotes(*direct_, {});
  ASSERT_TRUE(run(zygotes, python("before")).forked);
  const pid_t zygote = zygotes.zygote_pid(python("x"));
  ASSERT_GT(zygote, 0);
  ASSERT_EQ(kill(zygote, SIGKILL), 0);
  // Once it is dead (a zombie until the launcher reaps it) — a child it forked
  // ahead of need and that answers before the kill lands would otherwise
  // still be handed an instance, to die with its zygote like any other.
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  auto state = [&] {
    std::ifstream in("/proc/" + std::to_string(zygote) + "/stat");
    std::string line;
    std::getline(in, line);
    const size_t paren = line.rfind(')');
    return paren == std::string::npos || paren + 2 >= line.size() ? 'X' : line[paren + 2];
  };
  while (state() != 'Z' && state() != 'X' && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The next start does not hang or fail: it is direct, with the same walls.
  Finished f = run(zygotes, python("after"));
  EXPECT_FALSE(f.forked);
  EXPECT_EQ(f.status, kExitCode << 8) << f.err;
  auto m = fields(f.out);
  EXPECT_EQ(m["env"], "after");
  EXPECT_EQ(m["seccomp"], "2");
  EXPECT_EQ(zygotes.zygote_pid(python("x")), -1);
}

TEST_F(Zygotes, AnInstanceWhoseZygoteDiesIsReportedKilled) {
  ZygoteLauncher zygotes(*direct_, {});
  LaunchSpec spec = python("long");
  // A module that waits: the zygote dies under it.
  std::ofstream(*dir_ + "/code/wait.py") << "import time\ntime.sleep(30)\n";
  for (auto& e : spec.env) {
    if (e.rfind("_HANDLER=", 0) == 0) e = "_HANDLER=wait.handler";
  }
  auto p = zygotes.launch(spec);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_NE(p->exit_source, nullptr);
  ASSERT_EQ(kill(zygotes.zygote_pid(spec), SIGKILL), 0);
  pollfd pfd{p->pidfd, POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 10'000), 1);  // it went with its zygote's pid namespace
  auto status = reap(*p);
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  EXPECT_EQ(*status, SIGKILL);
  close_fds(*p);
  release(*p);
}

// The daemon reaps on its event loop: an instance's exit status must not wait
// for its zygote, which may be busy forking the next child (here: stopped).
TEST_F(Zygotes, AnInstancesExitStatusDoesNotWaitForItsZygote) {
  ZygoteLauncher zygotes(*direct_, {});
  LaunchSpec spec = python("busy");
  // The zygote must be stopped before the instance ends: one that reaps it
  // and is stopped before its report leaves nothing to read but the 1 s
  // wait and its SIGKILL (seen under ctest -j2).
  spec.env.push_back("EXIT_AFTER_S=0.5");
  auto p = zygotes.launch(spec);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_NE(p->exit_source, nullptr);
  const pid_t zygote = zygotes.zygote_pid(spec);
  ASSERT_GT(zygote, 0);
  ASSERT_EQ(kill(zygote, SIGSTOP), 0);
  pollfd pfd{p->pidfd, POLLIN, 0};
  const bool exited = poll(&pfd, 1, 20'000) == 1;  // the module exits with kExitCode
  auto status = exited ? reap(*p) : Result<int>(Status::Unavailable("did not exit"));
  kill(zygote, SIGCONT);
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  // Its own status, not the SIGKILL said of an instance whose zygote never answers.
  EXPECT_EQ(*status, kExitCode << 8);
  close_fds(*p);
  release(*p);
  // The zygote's own report, when it comes, changes nothing: the next start works.
  const LaunchSpec after = python("after");
  Finished f = run(zygotes, after);
  ASSERT_TRUE(f.forked) << f.err;
  expect_walled_in(f, after, "after");
}

TEST_F(Zygotes, SpecsWithoutAZygoteStartDirectly) {
  ZygoteLauncher zygotes(*direct_, {});
  LaunchSpec spec = python("plain");
  spec.zygote_argv.clear();
  Finished f = run(zygotes, spec);
  EXPECT_FALSE(f.forked);
  EXPECT_EQ(fields(f.out)["env"], "plain") << f.err;
  EXPECT_EQ(zygotes.counters().zygotes, 0);
}

TEST(SandboxSettings, UnknownPythonZygoteValueIsRefused) {
  auto s = Sandbox::open("off", fs::temp_directory_path() / "tamaya-zyg-setting", "maybe");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("python_zygote"), std::string::npos);
}

TEST(SandboxSettings, PreforkOutOfRangeIsRefused) {
  for (int prefork : {-1, kMaxZygotePrefork + 1}) {
    ZygoteOptions options;
    options.prefork = prefork;
    auto s = Sandbox::open("off", fs::temp_directory_path() / "tamaya-zyg-setting", "on", options);
    ASSERT_FALSE(s.ok()) << prefork;
    EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
    EXPECT_NE(s.status().message().find("python_zygote_prefork"), std::string::npos);
  }
}

}  // namespace
}  // namespace tamaya::sandbox
