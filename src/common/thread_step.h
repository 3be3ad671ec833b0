// One step of a background thread's work, with an escaping exception
// contained. The daemon's threads (launches, the log writer, the async
// queue's writer, the stocks made ahead of need) each serve every function:
// an exception escaping one of them would end the daemon, and with it every
// instance and every request in flight. Exceptions are for bugs here, so a
// step that throws is logged as a critical bug, fails on its own, and the
// thread goes on with the next. The event loop runs its handlers the same
// way (net::run_event_loop).
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace tamaya {

// Logs a bug caught at `where` (critical) and returns the status a caller
// hands on: Internal, saying where and what, and that it is a bug.
Status contained_bug(std::string_view where, std::string_view what) noexcept;

// Runs `step`; returns false (after logging) when it threw.
template <class F>
bool run_step(std::string_view where, F&& step) noexcept {
  try {
    std::forward<F>(step)();
    return true;
  } catch (const std::exception& e) {
    contained_bug(where, e.what()).ok();
  } catch (...) {
    contained_bug(where, "an exception of an unknown type").ok();
  }
  return false;
}

// Runs a step that returns a Status or a Result: one that threw returns
// contained_bug's Internal status instead.
template <class F>
auto step_result(std::string_view where, F&& step) noexcept -> decltype(std::forward<F>(step)()) {
  try {
    return std::forward<F>(step)();
  } catch (const std::exception& e) {
    return contained_bug(where, e.what());
  } catch (...) {
    return contained_bug(where, "an exception of an unknown type");
  }
}

}  // namespace tamaya
