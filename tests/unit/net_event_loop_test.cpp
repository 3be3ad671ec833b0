// The daemon's event loop: the idle poll window's adaptation, the busy
// stretches, and the loop running real handlers, timers and sockets until it
// is stopped.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "net/event_loop.h"

namespace tamaya::net {
namespace {

namespace asio = boost::asio;
using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(IdlePollWindow, StartsAtItsLargestWindow) {
  EXPECT_EQ(IdlePollWindow(microseconds(100)).window(), microseconds(100));
}

TEST(IdlePollWindow, ZeroOrTinyMaximumNeverPolls) {
  for (auto max : {microseconds(0), microseconds(5)}) {
    IdlePollWindow w(max);
    EXPECT_EQ(w.window(), microseconds(0));
    w.slept(microseconds(1));
    EXPECT_EQ(w.window(), microseconds(0));
  }
}

TEST(IdlePollWindow, LongSleepsShrinkItToNothing) {
  IdlePollWindow w(microseconds(100));
  w.slept(milliseconds(5));
  EXPECT_EQ(w.window(), microseconds(50));
  w.slept(milliseconds(5));
  EXPECT_EQ(w.window(), microseconds(25));
  w.slept(milliseconds(5));
  EXPECT_EQ(w.window(), microseconds(12));
  w.slept(milliseconds(5));
  EXPECT_EQ(w.window(), microseconds(0)) << "below the grow start, polling is not worth it";
  w.slept(milliseconds(5));
  EXPECT_EQ(w.window(), microseconds(0));
}

TEST(IdlePollWindow, WorkSoonAfterGivingUpGrowsItBackToTheMaximum) {
  IdlePollWindow w(microseconds(100));
  for (int i = 0; i < 10; ++i) w.slept(milliseconds(5));
  ASSERT_EQ(w.window(), microseconds(0));
  w.slept(microseconds(40));
  EXPECT_EQ(w.window(), IdlePollWindow::kGrowStart);
  w.slept(microseconds(40));
  EXPECT_EQ(w.window(), microseconds(20));
  w.slept(microseconds(40));
  EXPECT_EQ(w.window(), microseconds(40));
  w.slept(microseconds(90));
  EXPECT_EQ(w.window(), microseconds(80));
  w.slept(microseconds(90));
  EXPECT_EQ(w.window(), microseconds(100)) << "capped at the maximum";
  w.slept(microseconds(100));
  EXPECT_EQ(w.window(), microseconds(100));
}

TEST(IdlePollWindow, ASleepWithinTheWindowLeavesIt) {
  IdlePollWindow w(microseconds(100));
  w.slept(milliseconds(1));
  ASSERT_EQ(w.window(), microseconds(50));
  w.slept(microseconds(30));
  EXPECT_EQ(w.window(), microseconds(50));
}

TEST(SpareCpu, ParsesTheRunningTasksOfLoadavg) {
  EXPECT_EQ(parse_loadavg_running("0.20 0.31 0.40 3/412 9021\n"), 3);
  EXPECT_EQ(parse_loadavg_running("12.00 9.50 8.25 17/1200 4"), 17);
  EXPECT_EQ(parse_loadavg_running(""), std::nullopt);
  EXPECT_EQ(parse_loadavg_running("0.20 0.31 0.40"), std::nullopt);
  EXPECT_EQ(parse_loadavg_running("0.20 0.31 0.40 x/412 9021"), std::nullopt);
  EXPECT_EQ(parse_loadavg_running("0.20 0.31 0.40 3412 9021"), std::nullopt);
}

TEST(SpareCpu, ABusyHostHasNoCpuToSpare) {
  const SpareCpu spare;
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  // Keep every CPU busy with a spinning thread each: the host has none to
  // spare while they run.
  std::atomic<bool> stop{false};
  std::vector<std::thread> spinners;
  for (unsigned i = 0; i < cpus; ++i) {
    spinners.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(20));
  const bool while_busy = spare.now();
  stop = true;
  for (auto& t : spinners) t.join();
  EXPECT_FALSE(while_busy);
}

TEST(BusyStretch, YieldsOncePerStretchOfContinuousWork) {
  using clock = BusyStretch::clock;
  BusyStretch s(microseconds(100));
  const clock::time_point t0{};
  EXPECT_FALSE(s.ran(t0)) << "the first handler starts the stretch";
  EXPECT_FALSE(s.ran(t0 + microseconds(60)));
  EXPECT_TRUE(s.ran(t0 + microseconds(100)));
  s.rested();  // the loop yielded
  // However long the yield took, the next handler starts a new stretch
  // rather than yielding again at once.
  EXPECT_FALSE(s.ran(t0 + milliseconds(5)));
  EXPECT_FALSE(s.ran(t0 + milliseconds(5) + microseconds(99)));
  EXPECT_TRUE(s.ran(t0 + milliseconds(5) + microseconds(100)));
}

TEST(BusyStretch, RunningOutOfWorkEndsTheStretch) {
  using clock = BusyStretch::clock;
  BusyStretch s(microseconds(100));
  const clock::time_point t0{};
  EXPECT_FALSE(s.ran(t0));
  EXPECT_FALSE(s.ran(t0 + microseconds(90)));
  s.rested();  // out of work: the loop polled or slept
  EXPECT_FALSE(s.ran(t0 + microseconds(150)));
  EXPECT_FALSE(s.ran(t0 + microseconds(200)));
}

TEST(BusyStretch, ZeroNeverYields) {
  BusyStretch s(microseconds(0));
  EXPECT_FALSE(s.on());
  EXPECT_TRUE(BusyStretch(microseconds(1)).on());
  const BusyStretch::clock::time_point t0{};
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(s.ran(t0 + milliseconds(i)));
}

// The loop with polling and stretches on and off: handlers posted from
// another thread, timers and a socket exchange all run, and stop() ends it.
// The parameter is (idle poll, busy yield), in microseconds.
class EventLoopTest : public ::testing::TestWithParam<std::pair<int, int>> {
 protected:
  EventLoopOptions options() const {
    return {.idle_poll = microseconds(GetParam().first),
            .busy_yield = microseconds(GetParam().second)};
  }
};

TEST_P(EventLoopTest, RunsHandlersTimersAndSocketsUntilStopped) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  int posted = 0;
  int timers = 0;
  std::string echoed;

  // A sparse timer (longer than any window) and a burst of short ones.
  asio::steady_timer slow(io, milliseconds(30));
  slow.async_wait([&](auto) { ++timers; });
  std::vector<std::unique_ptr<asio::steady_timer>> quick;
  for (int i = 1; i <= 20; ++i) {
    quick.push_back(std::make_unique<asio::steady_timer>(io, microseconds(20 * i)));
    quick.back()->async_wait([&](auto) { ++timers; });
  }

  // A loopback echo: the loop accepts, reads and writes back.
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
  asio::ip::tcp::socket server(io);
  std::array<char, 5> buf{};
  acceptor.async_accept(server, [&](auto ec) {
    ASSERT_FALSE(ec);
    asio::async_read(server, asio::buffer(buf), [&](auto ec2, size_t) {
      ASSERT_FALSE(ec2);
      asio::async_write(server, asio::buffer(buf), [](auto, size_t) {});
    });
  });
  const auto port = acceptor.local_endpoint().port();
  std::thread client([&] {
    asio::io_context cio;
    asio::ip::tcp::socket s(cio);
    s.connect({asio::ip::address_v4::loopback(), port});
    asio::write(s, asio::buffer(std::string("hello")));
    std::array<char, 5> back{};
    asio::read(s, asio::buffer(back));
    for (int i = 0; i < 100; ++i) {
      asio::post(io, [&] { ++posted; });
      if (i % 10 == 0) std::this_thread::sleep_for(microseconds(200));
    }
    asio::post(io, [&, back] {
      echoed.assign(back.begin(), back.end());
      guard.reset();
      slow.async_wait([&](auto) { io.stop(); });
    });
  });

  run_event_loop(io, options());
  client.join();

  EXPECT_TRUE(io.stopped());
  EXPECT_EQ(posted, 100);
  EXPECT_EQ(timers, 21);
  EXPECT_EQ(echoed, "hello");
}

TEST_P(EventLoopTest, ReturnsWhenOutOfWork) {
  asio::io_context io;
  int ran = 0;
  asio::steady_timer t(io, milliseconds(2));
  t.async_wait([&](auto) { ++ran; });
  asio::post(io, [&] { ++ran; });
  run_event_loop(io, options());
  EXPECT_EQ(ran, 2);
}

// A loop flooded with work (each handler posts the next, for longer than
// many stretches) still runs everything else it is given, in order. The
// flood lasts until the timer has fired and a count is reached, not for a
// fixed time: on a loaded machine a yield may give the CPU away for a whole
// slice, and a time-bound flood then proved too short (28 handlers in
// 20 ms).
TEST_P(EventLoopTest, AFloodOfHandlersLetsTheRestRun) {
  asio::io_context io;
  int flood = 0;
  int others = 0;
  bool timer_fired = false;
  bool gave_up = false;
  // Only a bound against a hang, far above what the flood needs.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::function<void()> next = [&] {
    ++flood;
    if (flood >= 200 && timer_fired) return;
    gave_up = std::chrono::steady_clock::now() >= give_up;
    if (!gave_up) asio::post(io, next);
  };
  asio::post(io, next);
  for (int i = 0; i < 50; ++i) asio::post(io, [&] { ++others; });
  asio::steady_timer t(io, milliseconds(5));
  t.async_wait([&](auto) {
    ++others;
    timer_fired = true;
  });
  run_event_loop(io, options());
  EXPECT_EQ(others, 51);
  EXPECT_FALSE(gave_up) << "the timer did not run while the loop was flooded";
  EXPECT_GE(flood, 200);
}

// An exception that escapes a handler is a bug, logged; the handlers after
// it still run and the loop ends as usual when stopped.
TEST_P(EventLoopTest, AHandlerThatThrowsDoesNotEndTheLoop) {
  asio::io_context io;
  int ran_after = 0;
  asio::post(io, [] { throw std::runtime_error("a bug"); });
  asio::post(io, [&] { ++ran_after; });
  asio::steady_timer t(io, milliseconds(2));
  t.async_wait([&](auto) {
    ++ran_after;
    throw std::logic_error("another bug");
  });
  asio::steady_timer last(io, milliseconds(10));
  last.async_wait([&](auto) {
    ++ran_after;
    io.stop();
  });
  run_event_loop(io, options());
  EXPECT_EQ(ran_after, 3);
  EXPECT_TRUE(io.stopped());
}

INSTANTIATE_TEST_SUITE_P(Options, EventLoopTest,
                         ::testing::Values(std::pair{0, 0}, std::pair{100, 0}, std::pair{5000, 0},
                                           std::pair{0, 100}, std::pair{100, 100},
                                           std::pair{100, 1}),
                         [](const auto& info) {
                           return "poll_us_" + std::to_string(info.param.first) + "_yield_us_" +
                                  std::to_string(info.param.second);
                         });

}  // namespace
}  // namespace tamaya::net
