// Token buckets (per route, per API key) and daily quotas (per API key).
// Owned by the event loop thread, like every piece of hot gateway state:
// no locks. Time comes from the caller so tests move it by hand.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/clock.h"

namespace tamaya::gateway {

class TokenBucket {
 public:
  // rate: tokens added per second; burst: the bucket's size (at least 1).
  TokenBucket(double rate, int64_t burst, SteadyTime now)
      : rate_(rate), burst_(double(std::max<int64_t>(burst, 1))), tokens_(burst_), last_(now) {}

  // Takes one token. When none is left, false and *retry_after_s set to the
  // whole seconds until one is (at least 1).
  bool take(SteadyTime now, int* retry_after_s) {
    double elapsed = std::chrono::duration<double>(now - last_).count();
    if (elapsed > 0) {
      tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
      last_ = now;
    }
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return true;
    }
    double wait = rate_ > 0 ? (1.0 - tokens_) / rate_ : 86'400;
    if (retry_after_s) *retry_after_s = std::max(1, int(std::ceil(wait)));
    return false;
  }

  double rate() const { return rate_; }
  double burst() const { return burst_; }

 private:
  double rate_;
  double burst_;
  double tokens_;
  SteadyTime last_;
};

// Requests per UTC day, reset at UTC midnight. Counted in memory; the
// gateway saves the counts in batches (gateway_quota_flush_ms) and restores
// today's at start, so a restart forgets at most the last batch.
class DailyQuota {
 public:
  static constexpr int64_t kDayMs = 86'400'000;

  explicit DailyQuota(int64_t limit) : limit_(limit) {}

  // The saved count of `day` (days since the epoch).
  void restore(int64_t day, int64_t used) {
    day_ = day;
    used_ = used;
  }

  bool take(int64_t wall_ms, int* retry_after_s) {
    if (limit_ <= 0) return true;
    int64_t day = wall_ms / kDayMs;
    if (day != day_) {
      day_ = day;
      used_ = 0;
    }
    if (used_ < limit_) {
      ++used_;
      return true;
    }
    if (retry_after_s) *retry_after_s = int(((day + 1) * kDayMs - wall_ms + 999) / 1000);
    return false;
  }
  int64_t used() const { return used_; }
  int64_t day() const { return day_; }
  int64_t limit() const { return limit_; }

 private:
  int64_t limit_;
  int64_t day_ = -1;
  int64_t used_ = 0;
};

}  // namespace tamaya::gateway
