// The dispatcher with real instances: the real Python runtime client, real
// processes, real Runtime API endpoints on loopback.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dispatch/dispatcher.h"

namespace tamaya::dispatch {
namespace {

namespace fs = std::filesystem;

class Recorder final : public Observer {
 public:
  void on_invocation(const std::string&, const InvokeResult& r, std::vector<LogLine> log) override {
    logs[r.request_id] = std::move(log);
  }
  std::map<std::string, std::vector<LogLine>> logs;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tamaya-dispatch-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ofstream(dir_ / "app.py") << R"(import os, time
count = 0
def handler(event, context):
    global count
    count += 1
    print("line from", event.get("tag", "?"))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("crash"):
        os._exit(3)
    if event.get("raise"):
        raise ValueError("boom")
    return {"count": count, "pid": os.getpid()}
)";
    settings_.queue_timeout_ms = 300;
    settings_.instance_idle_timeout_ms = 60'000;
    paths_.runtimes_dir = std::string(TAMAYA_SOURCE_DIR) + "/runtimes";
    use(launcher_);
  }

  void TearDown() override {
    drain();
    dispatcher_.reset();
    fs::remove_all(dir_);
  }

  void drain() {
    bool drained = false;
    dispatcher_->drain([&] { drained = true; });
    run_until([&] { return drained; });
  }

  // A dispatcher on `launcher` for the rest of the test. The test ends with
  // use_default_launcher(): its launcher is gone before TearDown drains.
  void use(sandbox::Launcher& launcher) {
    dispatcher_ =
        std::make_unique<Dispatcher>(io_, settings_, paths_, launcher, clock_, &recorder_);
  }
  void use_default_launcher() {
    drain();
    use(launcher_);
  }

  // Runs revision r1 once, then returns the first invocation of r2, which
  // retires r1's instance.
  InvokeResult first_of_a_new_revision(int max_concurrency) {
    auto t = target(max_concurrency);
    EXPECT_FALSE(invoke(t, "{}").function_error);
    t.function.revision_id = "r2";
    return invoke(t, "{}");
  }

  Target target(int max_concurrency = 4, int timeout_s = 3) {
    Target t;
    t.function.name = "fn";
    t.function.version = "$LATEST";
    t.function.revision_id = "r1";
    t.function.config.runtime = "python3";
    t.function.config.handler = "app.handler";
    t.function.config.memory_mb = 128;
    t.function.config.timeout_s = timeout_s;
    t.function.config.max_concurrency = max_concurrency;
    t.code_dir = dir_.string();
    return t;
  }

  // Starts an invocation; its result lands in the returned slot.
  std::shared_ptr<std::optional<InvokeResult>> start(const Target& t, std::string payload) {
    auto slot = std::make_shared<std::optional<InvokeResult>>();
    InvokeRequest req;
    req.target = t;
    req.payload = std::move(payload);
    dispatcher_->invoke(std::move(req), [slot](InvokeResult r) { *slot = std::move(r); });
    return slot;
  }

  InvokeResult invoke(const Target& t, std::string payload) {
    auto slot = start(t, std::move(payload));
    run_until([&] { return slot->has_value(); });
    EXPECT_TRUE(slot->has_value()) << "invocation did not finish";
    return slot->value_or(InvokeResult{});
  }

  void run_until(const std::function<bool()>& done,
                 std::chrono::seconds limit = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
    }
  }

  boost::asio::io_context io_;
  Settings settings_;
  runtime::RuntimePaths paths_;
  sandbox::ProcessLauncher launcher_;
  SystemClock clock_;
  Recorder recorder_;
  std::unique_ptr<Dispatcher> dispatcher_;
  fs::path dir_;
};

TEST_F(DispatcherTest, ColdThenWarmOnTheSameInstance) {
  auto t = target();
  InvokeResult first = invoke(t, R"({"tag":"a"})");
  ASSERT_TRUE(first.status.ok()) << first.status.to_string();
  EXPECT_FALSE(first.function_error) << first.payload;
  EXPECT_TRUE(first.cold);
  EXPECT_GT(first.init_ms, 0);
  EXPECT_NE(first.payload.find("\"count\": 1"), std::string::npos) << first.payload;

  InvokeResult second = invoke(t, R"({"tag":"b"})");
  EXPECT_FALSE(second.cold);
  EXPECT_EQ(second.init_ms, 0);
  EXPECT_NE(second.payload.find("\"count\": 2"), std::string::npos) << second.payload;
  EXPECT_GE(second.billed_ms, 1);
  EXPECT_EQ(dispatcher_->stats().instances, 1);
}

TEST_F(DispatcherTest, LogIsFramedAndAttributed) {
  auto t = target();
  InvokeResult r = invoke(t, R"({"tag":"framed"})");
  const auto& log = recorder_.logs[r.request_id];
  ASSERT_GE(log.size(), 4u);
  EXPECT_EQ(log.front().text.rfind("START RequestId: " + r.request_id, 0), 0u);
  bool printed = false;
  for (const auto& l : log) printed |= l.text == "line from framed";
  EXPECT_TRUE(printed);
  EXPECT_EQ(log[log.size() - 2].text, "END RequestId: " + r.request_id);
  EXPECT_EQ(log.back().text.rfind("REPORT RequestId: " + r.request_id, 0), 0u);
  EXPECT_NE(log.back().text.find("Init Duration:"), std::string::npos);
  // The log store keeps whole microseconds; a finer duration would print
  // differently in the stored record than in this REPORT line.
  EXPECT_NEAR(r.duration_ms * 1000, std::round(r.duration_ms * 1000), 1e-6);
  EXPECT_NEAR(r.init_ms * 1000, std::round(r.init_ms * 1000), 1e-6);
  EXPECT_NE(log.back().text.find(fmt::format("Duration: {:.2f} ms", r.duration_ms)),
            std::string::npos);
}

TEST_F(DispatcherTest, ScalesToMaxThenQueuesThenThrottles) {
  auto t = target(/*max_concurrency=*/2);
  std::vector<std::shared_ptr<std::optional<InvokeResult>>> slots;
  for (int i = 0; i < 5; ++i) slots.push_back(start(t, R"({"sleep":1.0})"));
  run_until([&] {
    return std::all_of(slots.begin(), slots.end(), [](auto& s) { return s->has_value(); });
  });
  int ok = 0, throttled = 0;
  for (auto& s : slots) {
    ASSERT_TRUE(s->has_value());
    if ((*s)->status.ok()) ++ok;
    if ((*s)->status.code() == Code::kResourceExhausted) ++throttled;
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(throttled, 3);
  EXPECT_LE(dispatcher_->stats().instances, 2);
}

// A payload given as make_payload is built only for a request that is
// admitted: the overflow of a flooded function is refused without it.
TEST_F(DispatcherTest, LazyPayloadIsBuiltOnlyWhenAdmitted) {
  settings_.queue_max_per_function = 0;
  auto t = target(/*max_concurrency=*/1);
  int built = 0;
  auto lazy = [&](std::string body) {
    auto slot = std::make_shared<std::optional<InvokeResult>>();
    InvokeRequest req;
    req.target = t;
    req.make_payload = [&built, body] {
      ++built;
      return body;
    };
    dispatcher_->invoke(std::move(req), [slot](InvokeResult r) { *slot = std::move(r); });
    return slot;
  };
  auto admitted = lazy(R"({"sleep":0.3})");
  auto refused = lazy(R"({"tag":"overflow"})");
  ASSERT_TRUE(refused->has_value());  // refused at once, before any I/O
  EXPECT_EQ((*refused)->status.code(), Code::kResourceExhausted);
  EXPECT_EQ(built, 1);
  run_until([&] { return admitted->has_value(); });
  ASSERT_TRUE(admitted->has_value());
  EXPECT_TRUE((*admitted)->status.ok()) << (*admitted)->status.message();
  EXPECT_EQ(built, 1);
}

TEST_F(DispatcherTest, QueuedRequestRunsWhenAnInstanceFrees) {
  settings_.queue_timeout_ms = 10'000;
  auto t = target(/*max_concurrency=*/1);
  auto a = start(t, R"({"sleep":0.2})");
  auto b = start(t, R"({"tag":"queued"})");
  run_until([&] { return a->has_value() && b->has_value(); });
  ASSERT_TRUE(b->has_value());
  EXPECT_TRUE((*b)->status.ok());
  EXPECT_FALSE((*b)->cold);  // served by the same, now warm, instance
}

TEST_F(DispatcherTest, TimeoutKillsAndTheNextInvocationIsFresh) {
  auto t = target(4, /*timeout_s=*/1);
  InvokeResult r = invoke(t, R"({"sleep":5})");
  EXPECT_TRUE(r.function_error);
  EXPECT_EQ(r.error_type, "Sandbox.Timedout");
  EXPECT_NE(r.payload.find("Task timed out after 1.00 seconds"), std::string::npos) << r.payload;
  InvokeResult next = invoke(t, "{}");
  EXPECT_FALSE(next.function_error) << next.payload;
  EXPECT_TRUE(next.cold);
  EXPECT_NE(next.payload.find("\"count\": 1"), std::string::npos);
}

// An instance's deadlines share one timer that moves lazily: a warm
// invocation's timeout must still fire while the idle deadline is later.
TEST_F(DispatcherTest, WarmInvocationTimesOutAtItsOwnDeadline) {
  auto t = target(1, /*timeout_s=*/1);
  ASSERT_FALSE(invoke(t, "{}").function_error);
  InvokeResult r = invoke(t, R"({"sleep":5})");
  EXPECT_FALSE(r.cold);
  EXPECT_EQ(r.error_type, "Sandbox.Timedout") << r.payload;
}

// Each invocation moves the idle deadline later: an instance in steady use
// is never stopped by a deadline set before its last invocation.
TEST_F(DispatcherTest, IdleTimeoutCountsFromTheLastInvocation) {
  settings_.instance_idle_timeout_ms = 1'500;
  auto t = target(1);
  ASSERT_FALSE(invoke(t, "{}").function_error);
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(3'000);
  int n = 0;
  while (std::chrono::steady_clock::now() < until && n < 200) {
    InvokeResult r = invoke(t, "{}");
    ASSERT_FALSE(r.function_error) << r.payload;
    EXPECT_FALSE(r.cold) << "invocation " << n << " found no warm instance";
    ++n;
    io_.run_for(std::chrono::milliseconds(100));
    io_.restart();
  }
  run_until([&] { return dispatcher_->stats().instances == 0; }, std::chrono::seconds(10));
  EXPECT_EQ(dispatcher_->stats().instances, 0);
}

TEST_F(DispatcherTest, CrashIsRuntimeExitError) {
  auto t = target();
  InvokeResult r = invoke(t, R"({"crash":true})");
  EXPECT_TRUE(r.function_error);
  EXPECT_EQ(r.error_type, "Runtime.ExitError");
  EXPECT_NE(r.payload.find("exit status 3"), std::string::npos) << r.payload;
  EXPECT_FALSE(invoke(t, "{}").function_error);
}

TEST_F(DispatcherTest, HandlerExceptionKeepsTheInstance) {
  auto t = target();
  InvokeResult r = invoke(t, R"({"raise":true})");
  EXPECT_TRUE(r.function_error);
  EXPECT_EQ(r.error_type, "ValueError");
  EXPECT_NE(r.payload.find("boom"), std::string::npos);
  InvokeResult next = invoke(t, "{}");
  EXPECT_FALSE(next.cold);
}

TEST_F(DispatcherTest, IdleInstancesStopAfterTheIdleTimeout) {
  settings_.instance_idle_timeout_ms = 200;
  auto t = target();
  ASSERT_FALSE(invoke(t, "{}").function_error);
  run_until([&] { return dispatcher_->stats().instances == 0; }, std::chrono::seconds(5));
  EXPECT_EQ(dispatcher_->stats().instances, 0);
  EXPECT_TRUE(invoke(t, "{}").cold);
}

TEST_F(DispatcherTest, NewRevisionRetiresOldInstances) {
  auto t = target();
  ASSERT_FALSE(invoke(t, "{}").function_error);
  t.function.revision_id = "r2";
  InvokeResult r = invoke(t, "{}");
  EXPECT_TRUE(r.cold);
  run_until([&] { return dispatcher_->stats().instances == 1; }, std::chrono::seconds(5));
  EXPECT_EQ(dispatcher_->stats().instances, 1);
}

TEST_F(DispatcherTest, ProvidedWithoutBootstrapIsInvalidEntrypoint) {
  auto t = target();
  t.function.config.runtime = "provided";
  InvokeResult r = invoke(t, "{}");
  EXPECT_TRUE(r.function_error);
  EXPECT_EQ(r.error_type, "Runtime.InvalidEntrypoint");
}

TEST_F(DispatcherTest, DrainRefusesNewWorkAndWaitsForInFlight) {
  auto t = target();
  auto inflight = start(t, R"({"sleep":0.3})");
  bool drained = false;
  run_until([&] { return dispatcher_->stats().busy == 1; });
  dispatcher_->drain([&] { drained = true; });
  auto refused = start(t, "{}");
  run_until([&] { return drained; });
  ASSERT_TRUE(inflight->has_value());
  EXPECT_TRUE((*inflight)->status.ok());
  EXPECT_FALSE((*inflight)->function_error) << (*inflight)->payload;
  ASSERT_TRUE(refused->has_value());
  EXPECT_EQ((*refused)->status.code(), Code::kUnavailable);
}

// A launching thread slower than its instance: the process is running (and
// asks the Runtime API for work) before its launch is back on the loop, as
// a zygote's child can. The invocation must still get the instance's output.
class SlowLauncher final : public sandbox::Launcher {
 public:
  explicit SlowLauncher(sandbox::Launcher& inner) : inner_(inner) {}
  Result<sandbox::Process> launch(const sandbox::LaunchSpec& spec) override {
    auto p = inner_.launch(spec);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return p;
  }

 private:
  sandbox::Launcher& inner_;
};

TEST_F(DispatcherTest, AnInstanceFasterThanItsLaunchKeepsItsOutput) {
  ASSERT_GE(settings_.launch_threads, 1);
  SlowLauncher slow(launcher_);
  use(slow);
  InvokeResult r = invoke(target(), R"({"tag":"early"})");
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_FALSE(r.function_error) << r.payload;
  bool printed = false;
  for (const auto& l : recorder_.logs[r.request_id]) printed |= l.text == "line from early";
  EXPECT_TRUE(printed) << "the function's output was lost";
  use_default_launcher();
}

// A zygote's child is handed over at its "go" and may then say it could
// not wall itself in (sandbox::read_walled_in). The first launch here is such
// a child: a process that never reaches the Runtime API, handed over with a
// walled fd that says why. The request must not fail for it: it starts again
// on the next instance, which is an ordinary one.
class UnwalledOnceLauncher final : public sandbox::Launcher {
 public:
  explicit UnwalledOnceLauncher(sandbox::Launcher& inner) : inner_(inner) {}
  Result<sandbox::Process> launch(const sandbox::LaunchSpec& spec) override {
    if (launches_++ > 0) return inner_.launch(spec);
    EXPECT_TRUE(spec.hand_over_at_go);
    sandbox::LaunchSpec stuck = spec;
    stuck.argv = {"/bin/sleep", "30"};
    auto p = inner_.launch(stuck);
    if (!p.ok()) return p;
    int pair[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    const std::string why = "error: setrlimit failed";
    EXPECT_EQ(send(pair[1], why.data(), why.size(), 0), ssize_t(why.size()));
    close(pair[1]);
    p->walled_fd = pair[0];
    return p;
  }
  int launches() const { return launches_; }

 private:
  sandbox::Launcher& inner_;
  std::atomic<int> launches_{0};
};

TEST_F(DispatcherTest, ARequestWhoseInstanceCouldNotWallItselfInStartsAgain) {
  UnwalledOnceLauncher unwalled(launcher_);
  use(unwalled);
  InvokeResult r = invoke(target(), R"({"tag":"again"})");
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_FALSE(r.function_error) << r.payload;
  EXPECT_TRUE(r.cold);
  EXPECT_EQ(unwalled.launches(), 2);
  use_default_launcher();
}

// An instance stopped while nothing waits for its slot ends at the idle
// scheduling class (sandbox::set_cpu_idle writes its cgroup's cpu.idle); a
// start that waits for that slot puts it back. These instances are plain
// processes, so each gets a directory with a cpu.idle file standing in for
// its CPU cgroup (sandbox_isolation_test checks the write on real cgroups).
class CpuIdleFileLauncher final : public sandbox::Launcher {
 public:
  CpuIdleFileLauncher(sandbox::Launcher& inner, fs::path dir)
      : inner_(inner), dir_(std::move(dir)) {}
  Result<sandbox::Process> launch(const sandbox::LaunchSpec& spec) override {
    auto p = inner_.launch(spec);
    if (!p.ok()) return p;
    const fs::path cpu = dir_ / ("cpu-" + std::to_string(launches_++));
    fs::create_directories(cpu);
    std::ofstream(cpu / "cpu.idle") << "0";
    p->cgroups.cpu_dir = cpu.string();
    return p;
  }
  // What instance n's cpu.idle says now.
  std::string idle(int n) const {
    std::ifstream in(dir_ / ("cpu-" + std::to_string(n)) / "cpu.idle");
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

 private:
  sandbox::Launcher& inner_;
  fs::path dir_;
  std::atomic<int> launches_{0};
};

TEST_F(DispatcherTest, ARetiredInstanceEndsAtIdle) {
  CpuIdleFileLauncher files(launcher_, dir_);
  use(files);
  ASSERT_FALSE(first_of_a_new_revision(/*max_concurrency=*/4).function_error);
  run_until([&] { return dispatcher_->stats().instances == 1; }, std::chrono::seconds(5));
  EXPECT_EQ(files.idle(0), "1") << "the retired instance ended at its usual priority";
  EXPECT_EQ(files.idle(1), "0") << "the live instance was put at idle";
  drain();
  EXPECT_EQ(files.idle(1), "0") << "a drain's ends are waited for: not at idle";
  use(launcher_);
}

TEST_F(DispatcherTest, AStartWaitingForAnEndingInstancesSlotHurriesIt) {
  CpuIdleFileLauncher files(launcher_, dir_);
  use(files);
  // The new revision retires the old instance, which holds the function's
  // only slot until it is gone: the request waits for it.
  InvokeResult r = first_of_a_new_revision(/*max_concurrency=*/1);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_TRUE(r.cold);
  EXPECT_EQ(files.idle(0), "0") << "the end a start waited for stayed at idle";
  use_default_launcher();
}

}  // namespace
}  // namespace tamaya::dispatch
