// Holding a CPU-bound function's scale-out while the host's CPUs are
// saturated. One instance per concurrent request (Lambda's model) serves a
// function that waits (I/O, sleep) best; but when the host has no idle CPU
// and the function's own instances are what keeps it busy, every extra
// instance adds one more process to wake per request and no throughput:
// measured on 2 cores (docs/performance.md), 8 instances and a short queue
// served a CPU-bound echo 1.4-1.8x faster, with a 7x shorter p99, than 64.
// So such a function is "held": its busy instances are kept to a few per
// core, the rest of its requests wait briefly in its queue, and a request
// that waited scale_hold_max_wait_ms starts an instance as before. The
// decision is pure (HoldState); the readers below take its inputs from
// /proc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/fd.h"
#include "common/host.h"

namespace tamaya::dispatch {

struct HoldPolicy {
  int cores = 1;
  int busy_per_core = 4;          // 0: never hold
  int pressure_percent = 50;      // host CPU pressure (PSI "some") at or above which to hold
  int function_cpu_percent = 25;  // share of the host's CPUs the function's instances use
};

// One sampling window's figures.
struct HoldSample {
  double pressure = 0;        // fraction of the window some task waited for a CPU
  double function_cores = 0;  // CPUs the function's instances used on average
  int held_waits = 0;         // requests that waited because of the hold
};

// One function's hold, updated once per sampling window. Holding starts when
// both figures reach their thresholds. Holding itself lowers the pressure
// (fewer runnable processes: 53-100% before, 2-25% after on 2 cores), so the
// pressure alone cannot end it: a hold ends when, for kReleaseWindows
// windows in a row, the function's CPU use stayed below a quarter of its
// threshold (its load went away) or no request had to wait for it while the
// pressure stayed below a quarter of its threshold (it no longer binds).
class HoldState {
 public:
  static constexpr int kReleaseWindows = 10;
  // Returns whether the function is held after this window.
  bool update(const HoldSample& sample, const HoldPolicy& policy);
  bool held() const { return held_; }

 private:
  bool held_ = false;
  int low_windows_ = 0;
};

// The number of busy instances a held function keeps.
inline int held_busy_cap(const HoldPolicy& policy) { return policy.busy_per_core * policy.cores; }

// Host CPU pressure from /proc/pressure/cpu ("some" total, µs). Without PSI
// (an old kernel, psi=0) available() is false and nothing is ever held.
class HostPressure {
 public:
  HostPressure();
  bool available() const { return fd_.valid(); }
  // Microseconds some task waited, since boot; nullopt when unreadable.
  std::optional<int64_t> stalled_us() const;

 private:
  Fd fd_;
};

// A process's CPU time (its main thread's, from /proc/<pid>/schedstat)
// through a kept file descriptor: one pread per sample.
class RunTimeReader {
 public:
  explicit RunTimeReader(int pid);
  // Nanoseconds on a CPU; nullopt when the process is gone or unreadable.
  std::optional<int64_t> ns() const;

 private:
  Fd fd_;
};

// Parsers, exposed for tests.
std::optional<int64_t> parse_psi_some_total(const std::string& text);
std::optional<int64_t> parse_schedstat_run_ns(const std::string& text);

}  // namespace tamaya::dispatch
