#include "events/cron.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>

#include "common/strings.h"

namespace tamaya::events {

namespace {

using namespace std::chrono;

constexpr int64_t kMinuteMs = 60'000;
constexpr int64_t kHourMs = 60 * kMinuteMs;
constexpr int64_t kDayMs = 24 * kHourMs;
// Large enough for any sane schedule (about 190 years in minutes), small
// enough that period arithmetic in milliseconds cannot overflow.
constexpr int64_t kMaxRateValue = 100'000'000;

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDayNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::optional<int64_t> parse_uint(std::string_view s) {
  if (s.empty() || s.size() > 12) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// One field's rules: its name for messages, its range, and the names it
// accepts (months, days) in place of numbers.
struct FieldDef {
  const char* name;
  int min;
  int max;
  const char* const* names = nullptr;  // names[i] stands for min + i
  int name_count = 0;
};

constexpr FieldDef kMinutes{"minutes", 0, 59};
constexpr FieldDef kHours{"hours", 0, 23};
constexpr FieldDef kDayOfMonth{"day-of-month", 1, 31};
constexpr FieldDef kMonth{"month", 1, 12, kMonthNames, 12};
constexpr FieldDef kDayOfWeek{"day-of-week", 1, 7, kDayNames, 7};
constexpr FieldDef kYear{"year", kMinYear, kMaxYear};

std::string range_text(const FieldDef& f) {
  std::string s = std::to_string(f.min) + "-" + std::to_string(f.max);
  if (f.names) s += std::string(" or ") + f.names[0] + "-" + f.names[f.name_count - 1];
  return s;
}

Status field_error(const FieldDef& f, std::string_view item, const std::string& why) {
  return Status::Invalid("cron " + std::string(f.name) + " field: '" + std::string(item) + "' " +
                         why);
}

Result<int> parse_value(const FieldDef& f, std::string_view item, std::string_view v) {
  if (auto n = parse_uint(v)) {
    if (*n < f.min || *n > f.max) {
      return field_error(f, item, "is out of range; use " + range_text(f));
    }
    return int(*n);
  }
  if (f.names) {
    std::string upper(v);
    for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
    for (int i = 0; i < f.name_count; ++i) {
      if (upper == f.names[i]) return f.min + i;
    }
  }
  return field_error(f, item, "is not a valid value; use " + range_text(f));
}

// Sets the bits of one plain item: *, */s, a, a-b, a/s, a-b/s.
template <size_t N>
Status parse_plain(const FieldDef& f, std::string_view item, std::bitset<N>& bits, int offset) {
  std::string_view body = item;
  int step = 1;
  if (size_t slash = item.find('/'); slash != std::string_view::npos) {
    body = item.substr(0, slash);
    auto s = parse_uint(item.substr(slash + 1));
    if (!s || *s < 1 || *s > f.max - f.min + 1) {
      return field_error(f, item,
                         "has a bad increment after '/'; use a number from 1 to " +
                             std::to_string(f.max - f.min + 1));
    }
    step = int(*s);
  }
  int lo = f.min, hi = f.max;
  if (body == "*") {
    // all of the range
  } else if (size_t dash = body.find('-'); dash != std::string_view::npos) {
    TAMAYA_ASSIGN_OR_RETURN(lo, parse_value(f, item, body.substr(0, dash)));
    TAMAYA_ASSIGN_OR_RETURN(hi, parse_value(f, item, body.substr(dash + 1)));
    if (lo > hi) {
      return field_error(f, item, "is a range that ends before it starts; write it low-high");
    }
  } else {
    if (body.empty()) return field_error(f, item, "is empty; give a value, a range or *");
    TAMAYA_ASSIGN_OR_RETURN(lo, parse_value(f, item, body));
    // "a/s" runs from a to the end of the range; a lone "a" is just a.
    if (item.find('/') == std::string_view::npos) hi = lo;
  }
  for (int v = lo; v <= hi; v += step) bits.set(size_t(v - offset));
  return Status::Ok();
}

template <size_t N>
Status parse_simple_field(const FieldDef& f, std::string_view field, std::bitset<N>& bits,
                          int offset) {
  if (field == "?") {
    return field_error(f, field, "is only allowed in day-of-month or day-of-week");
  }
  for (std::string_view item : split(field, ',')) {
    TAMAYA_RETURN_IF_ERROR(parse_plain(f, item, bits, offset));
  }
  return Status::Ok();
}

Status parse_day_of_month(std::string_view field, CronSpec& spec) {
  const FieldDef& f = kDayOfMonth;
  if (field == "?") {
    spec.dom_any = true;
    return Status::Ok();
  }
  for (std::string_view item : split(field, ',')) {
    if (item == "L") {
      spec.last_day = true;
    } else if (item == "LW") {
      spec.last_weekday = true;
    } else if (item.starts_with("L-")) {
      auto n = parse_uint(item.substr(2));
      if (!n || *n < 1 || *n > 30) {
        return field_error(f, item, "needs a number of days from 1 to 30 after 'L-'");
      }
      spec.last_day = true;
      spec.last_day_offset = int(*n);
    } else if (item.size() > 1 && item.back() == 'W') {
      TAMAYA_ASSIGN_OR_RETURN(int d, parse_value(f, item, item.substr(0, item.size() - 1)));
      spec.nearest_weekday.push_back(d);
    } else if (item.find_first_of("LW#?") != std::string_view::npos) {
      return field_error(f, item,
                         "is not valid; day-of-month takes 1-31, ranges, lists, */n, L, L-n, "
                         "LW, nW or ?");
    } else {
      TAMAYA_RETURN_IF_ERROR(parse_plain(f, item, spec.days, 0));
    }
  }
  return Status::Ok();
}

Status parse_day_of_week(std::string_view field, CronSpec& spec) {
  const FieldDef& f = kDayOfWeek;
  if (field == "?") {
    spec.dow_any = true;
    return Status::Ok();
  }
  for (std::string_view item : split(field, ',')) {
    if (item == "L") {
      spec.weekdays.set(7);  // the last day of the week: Saturday
    } else if (size_t hash = item.find('#'); hash != std::string_view::npos) {
      TAMAYA_ASSIGN_OR_RETURN(int d, parse_value(f, item, item.substr(0, hash)));
      auto k = parse_uint(item.substr(hash + 1));
      if (!k || *k < 1 || *k > 5) {
        return field_error(f, item, "needs a week of the month from 1 to 5 after '#'");
      }
      spec.nth.emplace_back(d, int(*k));
    } else if (item.size() > 1 && item.back() == 'L') {
      TAMAYA_ASSIGN_OR_RETURN(int d, parse_value(f, item, item.substr(0, item.size() - 1)));
      spec.last_of_month.push_back(d);
    } else if (item.find_first_of("LW?") != std::string_view::npos) {
      return field_error(f, item,
                         "is not valid; day-of-week takes 1-7 or SUN-SAT, ranges, lists, "
                         "*/n, L, nL, n#k or ?");
    } else {
      TAMAYA_RETURN_IF_ERROR(parse_plain(f, item, spec.weekdays, 0));
    }
  }
  return Status::Ok();
}

Result<int64_t> parse_rate(std::string_view inner, std::string_view text) {
  auto parts = split_spaces(inner);
  auto bad = [&](const std::string& why) {
    return Status::Invalid("invalid rate expression '" + std::string(text) + "': " + why);
  };
  if (parts.size() != 2) {
    return bad("write rate(value unit), e.g. rate(5 minutes) or rate(1 hour)");
  }
  auto value = parse_uint(parts[0]);
  if (!value || *value < 1) return bad("the value must be a whole number of at least 1");
  if (*value > kMaxRateValue) {
    return bad("the value is too large; the limit is " + std::to_string(kMaxRateValue));
  }
  struct Unit {
    std::string_view singular, plural;
    int64_t ms;
  };
  static constexpr Unit kUnits[] = {
      {"minute", "minutes", kMinuteMs}, {"hour", "hours", kHourMs}, {"day", "days", kDayMs}};
  for (const Unit& u : kUnits) {
    if (parts[1] != u.singular && parts[1] != u.plural) continue;
    if (*value == 1 && parts[1] != u.singular) {
      return bad("a value of 1 takes the singular unit: rate(1 " + std::string(u.singular) + ")");
    }
    if (*value > 1 && parts[1] != u.plural) {
      return bad("a value above 1 takes the plural unit: rate(" + std::to_string(*value) + " " +
                 std::string(u.plural) + ")");
    }
    return *value * u.ms;
  }
  return bad("the unit must be minute(s), hour(s) or day(s), not '" + std::string(parts[1]) + "'");
}

Result<CronSpec> parse_cron(std::string_view inner) {
  auto fields = split_spaces(inner);
  if (fields.size() != 6) {
    return Status::Invalid(
        "a cron expression has 6 fields (minutes hours day-of-month month day-of-week year), "
        "got " +
        std::to_string(fields.size()) + "; e.g. cron(0 12 * * ? *)");
  }
  CronSpec spec;
  TAMAYA_RETURN_IF_ERROR(parse_simple_field(kMinutes, fields[0], spec.minutes, 0));
  TAMAYA_RETURN_IF_ERROR(parse_simple_field(kHours, fields[1], spec.hours, 0));
  TAMAYA_RETURN_IF_ERROR(parse_day_of_month(fields[2], spec));
  TAMAYA_RETURN_IF_ERROR(parse_simple_field(kMonth, fields[3], spec.months, 0));
  TAMAYA_RETURN_IF_ERROR(parse_day_of_week(fields[4], spec));
  TAMAYA_RETURN_IF_ERROR(parse_simple_field(kYear, fields[5], spec.years, kMinYear));
  if (spec.dom_any == spec.dow_any) {
    return Status::Invalid(
        "cron day-of-month '" + std::string(fields[2]) + "' and day-of-week '" +
        std::string(fields[4]) +
        "': exactly one of them must be '?' (e.g. cron(0 12 * * ? *) or cron(0 12 ? * MON *))");
  }
  return spec;
}

// Civil-date helpers on std::chrono's proleptic Gregorian calendar.
int days_in_month(int y, int m) {
  return int(unsigned(year_month_day_last(year(y), month_day_last(month(unsigned(m)))).day()));
}

// 1 = SUN .. 7 = SAT, as EventBridge counts.
int weekday_of(int y, int m, int d) {
  return int(weekday(sys_days(year(y) / month(unsigned(m)) / day(unsigned(d)))).c_encoding()) + 1;
}

int nearest_weekday(int y, int m, int n) {
  int last = days_in_month(y, m);
  if (n > last) return 0;
  int wd = weekday_of(y, m, n);
  // Never crosses into another month: the 1st on a Saturday moves to Monday
  // the 3rd, the last day on a Sunday back to Friday.
  if (wd == 7) return n == 1 ? 3 : n - 1;
  if (wd == 1) return n == last ? n - 2 : n + 1;
  return n;
}

bool day_matches(const CronSpec& s, int y, int m, int d) {
  int last = days_in_month(y, m);
  if (s.dow_any) {
    if (s.days.test(size_t(d))) return true;
    if (s.last_day && d == last - s.last_day_offset) return true;
    if (s.last_weekday) {
      int wd = weekday_of(y, m, last);
      int lw = wd == 7 ? last - 1 : wd == 1 ? last - 2 : last;
      if (d == lw) return true;
    }
    for (int n : s.nearest_weekday) {
      if (nearest_weekday(y, m, n) == d) return true;
    }
    return false;
  }
  int wd = weekday_of(y, m, d);
  if (s.weekdays.test(size_t(wd))) return true;
  for (int n : s.last_of_month) {
    if (wd == n && d + 7 > last) return true;
  }
  for (auto [n, k] : s.nth) {
    if (wd == n && (d - 1) / 7 + 1 == k) return true;
  }
  return false;
}

int64_t to_ms(int y, int m, int d, int hh = 0, int mm = 0) {
  auto n = sys_days(year(y) / month(unsigned(m)) / day(unsigned(d))).time_since_epoch().count();
  return int64_t(n) * kDayMs + hh * kHourMs + mm * kMinuteMs;
}

}  // namespace

Result<Expression> parse_expression(std::string_view raw) {
  std::string_view text = trim(raw);
  Expression e;
  e.text = std::string(text);
  auto inner_of = [&](std::string_view prefix) -> std::optional<std::string_view> {
    if (text.size() < prefix.size() + 1 || !text.starts_with(prefix) || text.back() != ')') {
      return std::nullopt;
    }
    return text.substr(prefix.size(), text.size() - prefix.size() - 1);
  };
  if (text.empty()) {
    return Status::Invalid(
        "the schedule expression is empty; use rate(5 minutes) or cron(0 12 * * ? *)");
  }
  if (auto inner = inner_of("rate(")) {
    e.kind = Expression::Kind::kRate;
    TAMAYA_ASSIGN_OR_RETURN(e.period_ms, parse_rate(*inner, text));
    return e;
  }
  if (auto inner = inner_of("cron(")) {
    e.kind = Expression::Kind::kCron;
    auto spec = parse_cron(*inner);
    if (!spec.ok()) {
      return Status::Invalid("invalid cron expression '" + e.text +
                             "': " + spec.status().message());
    }
    e.cron = std::move(spec).value();
    if (!next_cron_fire(e.cron, to_ms(kMinYear, 1, 1) - 1)) {
      return Status::Invalid("cron expression '" + e.text + "' matches no date up to " +
                             std::to_string(kMaxYear) + "; check day-of-month against month");
    }
    return e;
  }
  return Status::Invalid("schedule expression '" + e.text +
                         "' is neither rate(…) nor cron(…); e.g. rate(5 minutes) or "
                         "cron(0 12 * * ? *)");
}

std::optional<int64_t> next_cron_fire(const CronSpec& s, int64_t after_ms) {
  // The first whole minute strictly after `after_ms` (floor for negatives).
  int64_t start = after_ms >= 0 ? after_ms / kMinuteMs : -((-after_ms + kMinuteMs - 1) / kMinuteMs);
  start = (start + 1) * kMinuteMs;
  if (start < to_ms(kMinYear, 1, 1)) start = to_ms(kMinYear, 1, 1);

  int64_t day_index = start >= 0 ? start / kDayMs : -((-start + kDayMs - 1) / kDayMs);
  int64_t in_day = start - day_index * kDayMs;
  int hh = int(in_day / kHourMs), mm = int(in_day % kHourMs / kMinuteMs);
  year_month_day ymd{sys_days(days(day_index))};
  int y = int(ymd.year()), m = int(unsigned(ymd.month())), d = int(unsigned(ymd.day()));

  while (y <= kMaxYear) {
    if (!s.years.test(size_t(y - kMinYear))) {
      ++y, m = 1, d = 1, hh = 0, mm = 0;
      continue;
    }
    if (!s.months.test(size_t(m))) {
      if (++m > 12) m = 1, ++y;
      d = 1, hh = 0, mm = 0;
      continue;
    }
    if (day_matches(s, y, m, d)) {
      for (int h = hh; h < 24; ++h) {
        if (!s.hours.test(size_t(h))) continue;
        for (int mi = (h == hh ? mm : 0); mi < 60; ++mi) {
          if (s.minutes.test(size_t(mi))) return to_ms(y, m, d, h, mi);
        }
      }
    }
    hh = 0, mm = 0;
    if (++d > days_in_month(y, m)) {
      d = 1;
      if (++m > 12) m = 1, ++y;
    }
  }
  return std::nullopt;
}

std::optional<int64_t> next_fire(const Expression& e, int64_t anchor_ms, int64_t after_ms) {
  if (e.kind == Expression::Kind::kCron) return next_cron_fire(e.cron, after_ms);
  int64_t k = after_ms < anchor_ms ? 1 : (after_ms - anchor_ms) / e.period_ms + 1;
  return anchor_ms + k * e.period_ms;
}

}  // namespace tamaya::events
