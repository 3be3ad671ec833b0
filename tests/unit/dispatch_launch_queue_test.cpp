#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "dispatch/launch_queue.h"

namespace tamaya::dispatch {
namespace {

sandbox::LaunchSpec spec_of(std::vector<std::string> argv) {
  sandbox::LaunchSpec spec;
  spec.argv = std::move(argv);
  spec.cwd = "/";
  spec.env = {"PATH=/usr/bin:/bin"};
  return spec;
}

// Runs the loop until `n` completions came back (bounded in time).
void run_until(boost::asio::io_context& io, const std::atomic<int>& done, int n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (done.load() < n && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(20));
    io.restart();
  }
}

class LaunchQueueTest : public ::testing::TestWithParam<int> {};

TEST_P(LaunchQueueTest, LaunchesComeBackOnTheLoopThread) {
  boost::asio::io_context io;
  sandbox::ProcessLauncher launcher;
  LaunchQueue queue(io, launcher, GetParam());
  const auto loop_thread = std::this_thread::get_id();
  std::atomic<int> done{0};
  int ok = 0;
  for (int i = 0; i < 6; ++i) {
    queue.submit(spec_of({"/bin/true"}), [&](Result<sandbox::Process> p) {
      EXPECT_EQ(std::this_thread::get_id(), loop_thread);
      if (p.ok()) {
        ++ok;
        pollfd pfd{p->pidfd, POLLIN, 0};
        poll(&pfd, 1, 5000);
        auto status = sandbox::reap(*p);
        EXPECT_TRUE(status.ok() && *status == 0);
        sandbox::release(*p);
        sandbox::close_fds(*p);
      }
      ++done;
    });
  }
  // Never from inside submit(), also without threads.
  EXPECT_EQ(done.load(), 0);
  run_until(io, done, 6);
  EXPECT_EQ(done.load(), 6);
  EXPECT_EQ(ok, 6);
}

TEST_P(LaunchQueueTest, AFailedLaunchIsAStatus) {
  boost::asio::io_context io;
  sandbox::ProcessLauncher launcher;
  LaunchQueue queue(io, launcher, GetParam());
  std::atomic<int> done{0};
  Status status;
  queue.submit(spec_of({"/no/such/program"}), [&](const Result<sandbox::Process>& p) {
    status = p.status();
    ++done;
  });
  run_until(io, done, 1);
  ASSERT_EQ(done.load(), 1);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("/no/such/program"), std::string::npos) << status.message();
}

// A launcher with a bug: its first launch throws, the others work.
class ThrowsOnceLauncher : public sandbox::Launcher {
 public:
  Result<sandbox::Process> launch(const sandbox::LaunchSpec& spec) override {
    if (!thrown_.exchange(true)) throw std::logic_error("launcher bug");
    return real_.launch(spec);
  }

 private:
  std::atomic<bool> thrown_{false};
  sandbox::ProcessLauncher real_;
};

// An exception from the launcher fails that launch with a status; the thread
// (or, without threads, the loop) that serves every launch goes on.
TEST_P(LaunchQueueTest, ALauncherThatThrowsFailsThatLaunchOnly) {
  boost::asio::io_context io;
  ThrowsOnceLauncher launcher;
  LaunchQueue queue(io, launcher, GetParam() == 0 ? 0 : 1);
  std::atomic<int> done{0};
  std::vector<Status> statuses;
  for (int i = 0; i < 2; ++i) {
    queue.submit(spec_of({"/bin/true"}), [&](Result<sandbox::Process> p) {
      statuses.push_back(p.status());
      if (p.ok()) {
        pollfd pfd{p->pidfd, POLLIN, 0};
        poll(&pfd, 1, 5000);
        sandbox::reap(*p).ok();
        sandbox::release(*p);
        sandbox::close_fds(*p);
      }
      ++done;
    });
  }
  run_until(io, done, 2);
  ASSERT_EQ(statuses.size(), 2U);
  EXPECT_EQ(statuses[0].code(), Code::kInternal);
  EXPECT_NE(statuses[0].message().find("launcher bug"), std::string::npos) << statuses[0].message();
  EXPECT_TRUE(statuses[1].ok()) << statuses[1].message();
}

INSTANTIATE_TEST_SUITE_P(Threads, LaunchQueueTest, ::testing::Values(0, 2));

TEST(LaunchQueue, GoingAwayWithLaunchesOutNeitherCallsBackNorLeaks) {
  boost::asio::io_context io;
  sandbox::ProcessLauncher launcher;
  bool called = false;
  {
    LaunchQueue queue(io, launcher, 2);
    for (int i = 0; i < 8; ++i) {
      queue.submit(spec_of({"/bin/sleep", "30"}),
                   [&](const Result<sandbox::Process>&) { called = true; });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Completions posted before the queue went are dropped: their processes are killed.
  io.run_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace tamaya::dispatch
