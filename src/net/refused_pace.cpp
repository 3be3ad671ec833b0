#include "net/refused_pace.h"

#include <algorithm>
#include <cmath>

namespace tamaya::net {

RefusedReadPace::RefusedReadPace(int64_t per_s) {
  if (per_s <= 0) return;
  per_ns_ = double(per_s) / 1e9;
  burst_ = std::max(1.0, double(per_s) / 1000.0);
  tokens_ = burst_;
}

std::chrono::nanoseconds RefusedReadPace::wait(clock::time_point now) {
  if (!on()) return std::chrono::nanoseconds(0);
  // The bucket starts full, so the first call's refill from the clock's
  // epoch is capped at it like any other.
  if (now > last_) {
    tokens_ = std::min(burst_, tokens_ + double((now - last_).count()) * per_ns_);
    last_ = now;
  }
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return std::chrono::nanoseconds(0);
  }
  return std::chrono::nanoseconds(
      std::max<int64_t>(1, int64_t(std::ceil((1 - tokens_) / per_ns_))));
}

}  // namespace tamaya::net
