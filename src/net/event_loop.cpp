#include "net/event_loop.h"

#include <sched.h>

#include <algorithm>

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

void run_event_loop(boost::asio::io_context& io, microseconds max_idle_poll,
                    const std::function<bool()>& may_poll) {
  IdlePollWindow window(max_idle_poll);
  if (window.window() == microseconds(0)) {
    io.run();
    return;
  }
  using clock = std::chrono::steady_clock;
  while (!io.stopped()) {
    if (io.poll() > 0) continue;
    if (window.window() > microseconds(0) && (!may_poll || may_poll())) {
      const auto deadline = clock::now() + window.window();
      bool found = false;
      while (!found && clock::now() < deadline && !io.stopped()) {
        // Yield first: whatever is runnable here (often the very process
        // whose answer the loop waits for) runs before the next poll.
        sched_yield();
        found = io.poll() > 0;
      }
      if (found || io.stopped()) continue;
    }
    const auto before = clock::now();
    if (io.run_one() == 0) break;  // stopped, or out of work
    window.slept(clock::now() - before);
  }
}

}  // namespace tamaya::net
