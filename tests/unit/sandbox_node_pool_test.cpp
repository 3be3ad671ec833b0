// Node.js instances taken from the pool of generic instances (sandbox/node_pool.h)
// get every wall a direct start gets, read back from inside: the function's
// module runs when bootstrap.js loads it, prints what it sees and exits.
// Skipped where the host lacks the sandbox's layers (not root) or node.
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "sandbox/cgroup.h"
#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/node_pool.h"
#include "sandbox_run.h"

namespace tamaya::sandbox {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

constexpr uint32_t kUid = 201'346;

constexpr const char* kApp = R"(const fs = require('fs');
const st = {};
for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
  const i = line.indexOf(':');
  st[line.slice(0, i)] = line.slice(i + 1).trim();
}
const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
const opt = (p) => {
  const m = mounts.filter((x) => x[1] === p);
  return m.length ? m[m.length - 1][3] : '';
};
let write = 'ok';
try { fs.writeFileSync('/var/task/x', 'y'); } catch (e) { write = e.code; }
const out = [
  'uid ' + st.Uid.split(/\s+/).join(','),
  'gid ' + st.Gid.split(/\s+/).join(','),
  'groups ' + st.Groups,
  'seccomp ' + st.Seccomp,
  'nnp ' + st.NoNewPrivs,
  'capeff ' + st.CapEff,
  'pid ' + process.pid,
  'pids ' + fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)).length,
  'cmd ' + fs.readFileSync('/proc/self/cmdline', 'utf8').split('\0')[1],
  'task ' + fs.readdirSync('/var/task').join(','),
  'taskro ' + opt('/var/task').split(',')[0],
  'write ' + write,
  'tmp ' + opt('/tmp'),
  'env ' + process.env.MARKER,
  'envkeys ' + Object.keys(process.env).sort().join(','),
  'cwd ' + process.cwd(),
];
fs.writeSync(1, out.join('\n') + '\n');
process.exit(3);
)";

using testing::fields;
using testing::Finished;

class NodePool : public testing::SandboxSuite<NodePool> {
 protected:
  static void SetUpTestSuite() { set_up_host("np", "app.js", kApp); }
  void SetUp() override {
    SandboxSuite::SetUp();
    if (IsSkipped()) return;
    if (access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/node";
  }

  static LaunchSpec node(const std::string& marker, int64_t memory_mb, int64_t tmp_mb) {
    const std::string runtimes = std::string(kRuntimesRoot);
    LaunchSpec spec;
    spec.argv = {"/usr/bin/node", runtimes + "/node/bootstrap.js"};
    spec.generic_argv = {"/usr/bin/node", runtimes + "/node/generic.js"};
    // Nothing listens there: the module's own exit comes first.
    spec.env = {"PATH=/usr/bin:/bin",
                "MARKER=" + marker,
                "_HANDLER=app.handler",
                "LAMBDA_TASK_ROOT=/var/task",
                "NODE_PATH=/var/task/node_modules",
                "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9"};
    spec.cwd = kTaskRoot;
    Isolation& iso = spec.isolation;
    iso.enabled = true;
    iso.name = "nptest-" + std::to_string(getpid()) + "-" + std::to_string(counter_++);
    iso.uid = iso.gid = kUid;
    iso.memory_bytes = memory_mb << 20;
    iso.pids_max = 64;
    iso.tmp_bytes = tmp_mb << 20;
    iso.code_dir = *dir_ + "/code";
    iso.runtimes_dir = std::string(TAMAYA_SOURCE_DIR) + "/runtimes";
    return spec;
  }

  // Launches, lets `check` look at the live Process, then collects its output and exit.
  static Finished run(Launcher& launcher, const LaunchSpec& spec,
                      const std::function<void(const Process&)>& check = {}) {
    return testing::launch_and_finish(launcher, spec, std::chrono::seconds(30), check);
  }

  static bool wait_ready(const NodePoolLauncher& pool, int n) {
    const auto deadline = steady_clock::now() + std::chrono::seconds(60);
    while (steady_clock::now() < deadline) {
      if (pool.counters().ready >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
};

TEST_F(NodePool, PooledInstanceIsWalledInLikeADirectOne) {
  NodePoolLauncher pool(*direct_, *direct_, {.size = 1});
  // The first start is direct and makes the template.
  Finished first = run(pool, node("first", 128, 8));
  auto d = fields(first.out);
  EXPECT_EQ(first.status, 3 << 8) << first.err;
  EXPECT_NE(d["cmd"].find("bootstrap.js"), std::string::npos) << first.out << first.err;
  ASSERT_TRUE(wait_ready(pool, 1));
  const pid_t member = pool.ready_pids().at(0);

  const LaunchSpec spec = node("second", 192, 16);
  int64_t limit = 0;
  Finished f = run(pool, spec, [&](const Process& p) {
    EXPECT_EQ(p.pid, member);
    if (!p.cgroups.memory_dir.empty()) {
      limit = read_cgroup_number(p.cgroups.memory_dir + (caps_->cgroup == CgroupVersion::kV2
                                                             ? "/memory.max"
                                                             : "/memory.limit_in_bytes"));
    }
  });
  EXPECT_EQ(f.status, 3 << 8) << f.err;
  auto m = fields(f.out);
  const std::string id = std::to_string(kUid);
  EXPECT_NE(m["cmd"].find("generic.js"), std::string::npos) << f.out << f.err;
  EXPECT_EQ(m["uid"], id + "," + id + "," + id + "," + id);
  EXPECT_EQ(m["gid"], id + "," + id + "," + id + "," + id);
  EXPECT_EQ(m["groups"], "");
  EXPECT_EQ(m["seccomp"], "2");
  EXPECT_EQ(m["nnp"], "1");
  EXPECT_EQ(m["capeff"], "0000000000000000");
  EXPECT_EQ(m["pid"], "1");
  EXPECT_EQ(m["pids"], "1");
  EXPECT_EQ(m["task"], "app.js");
  EXPECT_EQ(m["taskro"], "ro");
  EXPECT_EQ(m["write"], "EROFS");
  EXPECT_NE(m["tmp"].find("size=16384k"), std::string::npos) << m["tmp"];
  EXPECT_EQ(m["env"], "second");
  EXPECT_EQ(m["envkeys"], d["envkeys"]);  // exactly a direct start's variables
  EXPECT_EQ(m["cwd"], "/var/task");
  if (caps_->cgroup != CgroupVersion::kNone && !caps_->cgroup_memory.empty()) {
    EXPECT_EQ(limit, 192ll << 20);
  }
  EXPECT_EQ(pool.counters().specialised, 1);
  // A used member never comes back; a new one takes its place.
  ASSERT_TRUE(wait_ready(pool, 1));
  EXPECT_NE(pool.ready_pids().at(0), member);
}

TEST_F(NodePool, UnsuitedSpecsStartDirectly) {
  NodePoolLauncher pool(*direct_, *direct_, {.size = 1});
  run(pool, node("t", 128, 8));
  ASSERT_TRUE(wait_ready(pool, 1));
  LaunchSpec options = node("o", 128, 8);
  options.env.push_back("NODE_OPTIONS=--max-old-space-size=64");
  EXPECT_FALSE(pool.eligible(options));
  Finished f = run(pool, options);
  EXPECT_NE(fields(f.out)["cmd"].find("bootstrap.js"), std::string::npos) << f.out << f.err;
  EXPECT_EQ(pool.counters().specialised, 0);
  EXPECT_EQ(pool.counters().ready, 1);
}

TEST_F(NodePool, SizeZeroIsOff) {
  NodePoolLauncher pool(*direct_, *direct_, {.size = 0});
  EXPECT_FALSE(pool.eligible(node("z", 128, 8)));
  Finished f = run(pool, node("z", 128, 8));
  EXPECT_EQ(f.status, 3 << 8) << f.err;
  EXPECT_EQ(pool.counters().ready, 0);
}

}  // namespace
}  // namespace tamaya::sandbox
