// Schedule expressions in Amazon EventBridge's syntax: `rate(5 minutes)` and
// `cron(minutes hours day-of-month month day-of-week year)`, and the next
// time one fires. UTC only: g++ 12's libstdc++ has no time zone database
// (std::chrono::tzdb arrived in GCC 13) and the TZ-environment trick of libc
// is process-global, so a per-schedule zone is refused rather than guessed.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tamaya::events {

// The years a cron expression may name (EventBridge's range).
inline constexpr int kMinYear = 1970;
inline constexpr int kMaxYear = 2199;

struct CronSpec {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<13> months;  // 1..12
  std::bitset<kMaxYear - kMinYear + 1> years;

  // Day of month, used when day-of-week is '?'.
  bool dom_any = false;              // day-of-month is '?'
  std::bitset<32> days;              // 1..31
  bool last_day = false;             // L
  int last_day_offset = 0;           // L-n: n days before the last day
  bool last_weekday = false;         // LW
  std::vector<int> nearest_weekday;  // nW

  // Day of week (1 = SUN .. 7 = SAT), used when day-of-month is '?'.
  bool dow_any = false;                  // day-of-week is '?'
  std::bitset<8> weekdays;               // 1..7
  std::vector<int> last_of_month;        // nL: the last such weekday of the month
  std::vector<std::pair<int, int>> nth;  // n#k: the k-th such weekday of the month
};

struct Expression {
  enum class Kind { kRate, kCron };
  Kind kind = Kind::kRate;
  std::string text;       // as given (trimmed)
  int64_t period_ms = 0;  // rate only
  CronSpec cron;          // cron only
};

// Parses `rate(…)` or `cron(…)`; Invalid with a message naming the field and
// what is wrong.
Result<Expression> parse_expression(std::string_view text);

// The first minute strictly after `after_ms` that a cron expression matches,
// or nullopt when there is none up to the end of kMaxYear.
std::optional<int64_t> next_cron_fire(const CronSpec& spec, int64_t after_ms);

// The next fire strictly after `after_ms`: cron as above; a rate fires at
// anchor + k·period for k ≥ 1.
std::optional<int64_t> next_fire(const Expression& e, int64_t anchor_ms, int64_t after_ms);

}  // namespace tamaya::events
