// Time behind an interface so that timeouts, idle reaping and (later) retries
// and schedules can be tested without sleeping.
#pragma once

#include <chrono>
#include <cstdint>

namespace tamaya {

using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime now() const = 0;
  // Wall-clock milliseconds since the epoch, for records and log lines.
  virtual int64_t wall_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  SteadyTime now() const override { return std::chrono::steady_clock::now(); }
  int64_t wall_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// Deterministic clock for tests: moves only when told.
class ManualClock final : public Clock {
 public:
  SteadyTime now() const override { return now_; }
  int64_t wall_ms() const override {
    return 1'700'000'000'000 +
           std::chrono::duration_cast<std::chrono::milliseconds>(now_.time_since_epoch()).count();
  }
  void advance(std::chrono::nanoseconds d) { now_ += d; }

 private:
  SteadyTime now_{};
};

}  // namespace tamaya
