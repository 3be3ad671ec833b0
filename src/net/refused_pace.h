// How fast a server reads the next request of connections it has just
// refused with 429 (ServerLimits::refused_reads_per_s).
//
// Why: a client flooding a throttled function is answered in microseconds,
// so in a closed loop it sends again at once, and the server's event loop,
// the kernel's loopback work and the flood's own client then take whole
// CPUs refusing it. On a host of two cores that left the other functions'
// instances and clients waiting for a CPU: a steady function's p99 rose by
// 1.3-2.0x during a flood in bench/spike (docs/performance.md). Reading a
// refused connection's next request no faster than a set rate bounds what
// a flood of refusals costs, however many connections it uses; each refused
// client waits a little longer for its next 429 instead, in turn with the
// others (the server's queue of refused connections).
//
// A token bucket: up to a millisecond's worth of reads may go back to back
// after a quiet spell; beyond that they are spread at the rate.
#pragma once

#include <chrono>
#include <cstdint>

namespace tamaya::net {

class RefusedReadPace {
 public:
  using clock = std::chrono::steady_clock;

  // per_s 0 or less: no pacing (every wait() is 0).
  explicit RefusedReadPace(int64_t per_s);

  bool on() const { return per_ns_ > 0; }

  // 0: a read is due at `now` and has been taken. Otherwise how long until
  // the next one is due; nothing is taken.
  std::chrono::nanoseconds wait(clock::time_point now);

 private:
  double per_ns_ = 0;  // reads per nanosecond
  double burst_ = 1;   // most reads the bucket holds
  double tokens_ = 1;
  clock::time_point last_{};  // of the last refill
};

}  // namespace tamaya::net
