// The daemon's event loop: Asio's run(), except that when the loop runs out
// of ready work it keeps polling its sockets for a short window before it
// sleeps in epoll_wait, and that while it has work without a break it gives
// the CPU away once per short stretch.
//
// Why: an invocation is a chain of hops between processes (client → daemon
// → instance → daemon → client), and on a virtual machine a CPU that went
// idle halts at once, so every hop that finds the daemon asleep also pays
// the wake-up of a halted vCPU (an IPI and a VM entry). While answers arrive
// within tens of microseconds of each other, polling through the gap is
// cheaper than sleeping across it. The window adapts as the kernel's
// haltpoll governor does: it grows when a wake-up came just after the loop
// gave up polling, and shrinks when the loop slept longer than the largest
// window, so an idle or sparsely used daemon does not poll at all. Polling
// yields the CPU (sched_yield) between polls, so a runnable task on the same
// CPU (an instance, a client) is never kept waiting by it, and the loop
// polls only while the host has a CPU to spare (SpareCpu).
//
// Why the stretches (BusyStretch): a loop flooded with work (a client
// hammering a throttled function, bench/spike) keeps its CPU until the
// kernel's time slice ends, a millisecond or more. An instance the loop has
// just handed an event to, or a client it has just answered, may be queued
// behind it on that CPU, and the request they serve waits that long. So
// after each stretch of continuous work the loop calls sched_yield once:
// whatever is runnable on its CPU goes first, and when nothing is, the call
// returns at once. A loop that runs out of work between requests (the usual
// case) never yields this way.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <string_view>

#include "common/fd.h"

namespace tamaya::net {

// The adaptation alone, apart from any clock, so tests can drive it.
class IdlePollWindow {
 public:
  // Windows below this are not worth a poll; growing starts here.
  static constexpr std::chrono::microseconds kGrowStart{10};

  // max 0: never poll.
  explicit IdlePollWindow(std::chrono::microseconds max);

  // How long to poll for the next gap; 0: sleep at once.
  std::chrono::microseconds window() const { return window_; }

  // The loop found nothing while polling for window() and then slept this
  // long before its next work arrived.
  void slept(std::chrono::nanoseconds how_long);

 private:
  std::chrono::microseconds max_;
  std::chrono::microseconds window_;
};

// Whether the host has a CPU to spare for polling. A polling thread hides
// its CPU from the scheduler (it is busy, not idle), so a task woken
// meanwhile may queue behind another task on a busy CPU instead of taking
// this one; polling pays only while every other runnable task has a CPU of
// its own. Reads the host's count of running tasks from /proc/loadavg
// through a kept fd (one pread, a few microseconds, once per idle gap).
class SpareCpu {
 public:
  SpareCpu();
  // False when the count cannot be read: then the loop does not poll.
  bool now() const;

 private:
  Fd loadavg_;
  int cpus_;  // that this process may run on
};

// When a loop that has had work without a break should give the CPU away.
class BusyStretch {
 public:
  using clock = std::chrono::steady_clock;

  // length 0: never.
  explicit BusyStretch(std::chrono::microseconds length) : length_(length) {}

  // Whether the loop ever yields this way (length above 0).
  bool on() const { return length_ > std::chrono::microseconds(0); }

  // A handler ran, and the clock says `now`: true when the stretch of work
  // is over and the loop should yield before its next handler.
  bool ran(clock::time_point now);
  // The loop yielded, or ran out of work: the next handler starts a stretch.
  void rested() { started_ = false; }

 private:
  std::chrono::microseconds length_;
  bool started_ = false;
  clock::time_point start_{};
};

// The running tasks in /proc/loadavg's text ("0.20 0.31 0.40 3/412 9021":
// 3), the caller included.
std::optional<int> parse_loadavg_running(std::string_view text);

struct EventLoopOptions {
  // Longest poll between bursts of work (0: sleep at once).
  std::chrono::microseconds idle_poll{0};
  // Continuous work after which the loop yields once (0: never).
  std::chrono::microseconds busy_yield{0};
};

// Runs io until it is stopped or out of work, as above; with both options 0
// it is plain io.run().
void run_event_loop(boost::asio::io_context& io, EventLoopOptions options);

}  // namespace tamaya::net
