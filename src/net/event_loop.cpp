#include "net/event_loop.h"

#include <fcntl.h>
#include <sched.h>

#include <algorithm>
#include <charconv>

#include "common/host.h"
#include "common/thread_step.h"

namespace tamaya::net {

using std::chrono::microseconds;

IdlePollWindow::IdlePollWindow(microseconds max) : max_(std::max(max, microseconds(0))) {
  window_ = max_ >= kGrowStart ? max_ : microseconds(0);
}

void IdlePollWindow::slept(std::chrono::nanoseconds how_long) {
  if (max_ < kGrowStart) return;
  if (how_long > max_) {
    // Nothing came within the largest window: polling was wasted.
    window_ /= 2;
    if (window_ < kGrowStart) window_ = microseconds(0);
  } else if (how_long > window_) {
    // The work came soon after the loop gave up: a longer poll would have
    // caught it.
    window_ = std::min(max_, std::max(window_ * 2, kGrowStart));
  }
}

SpareCpu::SpareCpu()
    : loadavg_(::open("/proc/loadavg", O_RDONLY | O_CLOEXEC)), cpus_(usable_cores()) {}

bool SpareCpu::now() const {
  const auto text = read_at_zero(loadavg_.get());
  if (!text) return false;
  const auto running = parse_loadavg_running(*text);
  // The loop itself is one of them.
  return running && *running - 1 < cpus_;
}

std::optional<int> parse_loadavg_running(std::string_view text) {
  size_t at = 0;
  for (int field = 0; field < 3; ++field) {
    at = text.find(' ', at);
    if (at == std::string_view::npos) return std::nullopt;
    ++at;
  }
  const size_t slash = text.find('/', at);
  if (slash == std::string_view::npos) return std::nullopt;
  int running = 0;
  auto [end, ec] = std::from_chars(text.data() + at, text.data() + slash, running);
  if (ec != std::errc() || end != text.data() + slash) return std::nullopt;
  return running;
}

bool BusyStretch::ran(clock::time_point now) {
  if (!on()) return false;
  if (!started_) {
    started_ = true;
    start_ = now;
    return false;
  }
  return now - start_ >= length_;
}

namespace {

// Runs the handlers ready now (and those they make ready); false if none was.
bool run_ready(boost::asio::io_context& io, BusyStretch& stretch) {
  if (!stretch.on()) return io.poll() > 0;
  bool any = false;
  while (io.poll_one() > 0) {
    any = true;
    if (stretch.ran(BusyStretch::clock::now())) {
      sched_yield();
      stretch.rested();
    }
  }
  stretch.rested();
  return any;
}

}  // namespace

namespace {

void run_until_stopped(boost::asio::io_context& io, EventLoopOptions options) {
  IdlePollWindow window(options.idle_poll);
  BusyStretch stretch(options.busy_yield);
  if (window.window() == microseconds(0) && !stretch.on()) {
    io.run();
    return;
  }
  using clock = std::chrono::steady_clock;
  const SpareCpu spare;
  while (!io.stopped()) {
    if (run_ready(io, stretch)) continue;
    if (window.window() > microseconds(0) && spare.now()) {
      const auto deadline = clock::now() + window.window();
      bool found = false;
      while (!found && clock::now() < deadline && !io.stopped()) {
        // Yield first: whatever is runnable here (often the very process
        // whose answer the loop waits for) runs before the next poll.
        sched_yield();
        found = run_ready(io, stretch);
      }
      if (found || io.stopped()) continue;
    }
    const auto before = clock::now();
    if (io.run_one() == 0) break;  // stopped, or out of work
    window.slept(clock::now() - before);
  }
}

}  // namespace

void run_event_loop(boost::asio::io_context& io, EventLoopOptions options) {
  // An exception is a bug. One that escapes a handler (a timer's, a pipe's,
  // a launch result's: HTTP handlers are caught by the server) would end
  // the daemon and every function with it; the handler it came from is
  // done, so the loop logs it and runs on (Asio's run may be called again
  // after a handler threw), as the background threads do with their steps.
  while (!run_step("a handler on the event loop", [&] { run_until_stopped(io, options); })) {
  }
}

}  // namespace tamaya::net
