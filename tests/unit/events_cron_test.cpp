#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "common/time_format.h"
#include "events/cron.h"

namespace tamaya::events {
namespace {

int64_t at(int y, int m, int d, int hh = 0, int mm = 0, int ss = 0) {
  using namespace std::chrono;
  auto days = sys_days(year(y) / month(unsigned(m)) / day(unsigned(d))).time_since_epoch().count();
  return int64_t(days) * 86'400'000 + hh * 3'600'000LL + mm * 60'000LL + ss * 1000LL;
}

TEST(Cron, AcceptsEventBridgeExamples) {
  for (const char* text : {"rate(1 minute)",
                           "rate(5 minutes)",
                           "rate(1 hour)",
                           "rate(12 hours)",
                           "rate(1 day)",
                           "rate(2 days)",
                           "cron(0 10 * * ? *)",
                           "cron(15 12 * * ? *)",
                           "cron(0 18 ? * MON-FRI *)",
                           "cron(0 8 1 * ? *)",
                           "cron(0/15 * * * ? *)",
                           "cron(0/10 * ? * MON-FRI *)",
                           "cron(0/5 8-17 ? * MON-FRI *)",
                           "cron(0 9 ? * 2#1 *)",
                           "cron(15 10 ? * 6L 2019-2022)",
                           "cron(0 0 L * ? *)",
                           "cron(0 0 LW * ? *)",
                           "cron(0 0 15W * ? *)",
                           "cron(0 0 1 JAN,jul ? *)",
                           "cron(5,35 14 * * ? *)",
                           "  rate(5 minutes) ",
                           "cron(0 0 L-3 * ? *)",
                           "cron(0 0 ? * L *)",
                           "cron(0 0 ? * * *)"}) {
    auto e = parse_expression(text);
    EXPECT_TRUE(e.ok()) << text << ": " << e.status().message();
  }
}

TEST(Cron, RatePeriods) {
  struct Case {
    const char* text;
    int64_t period_ms;
  } cases[] = {{"rate(1 minute)", 60'000},
               {"rate(5 minutes)", 300'000},
               {"rate(1 hour)", 3'600'000},
               {"rate(2 days)", 172'800'000}};
  for (const auto& c : cases) {
    auto e = parse_expression(c.text);
    ASSERT_TRUE(e.ok()) << c.text;
    EXPECT_EQ(e->kind, Expression::Kind::kRate);
    EXPECT_EQ(e->period_ms, c.period_ms) << c.text;
  }
}

TEST(Cron, RejectsWithAMessageThatSaysWhat) {
  struct Case {
    const char* text;
    const char* says;
  } cases[] = {
      {"rate(1 minutes)", "singular unit: rate(1 minute)"},
      {"rate(5 minute)", "plural unit: rate(5 minutes)"},
      {"rate(0 minutes)", "at least 1"},
      {"rate(-1 minutes)", "at least 1"},
      {"rate(5 seconds)", "minute(s), hour(s) or day(s)"},
      {"rate(5)", "rate(value unit)"},
      {"rate(five minutes)", "whole number"},
      {"rate(5 minutes", "neither rate"},
      {"cron(0 12 * * *)", "6 fields"},
      {"cron(0 12 * * ? * *)", "6 fields"},
      {"cron(0 12 * * * *)", "exactly one of them must be '?'"},
      {"cron(0 12 ? * ? *)", "exactly one of them must be '?'"},
      {"cron(60 12 * * ? *)", "minutes field: '60' is out of range"},
      {"cron(0 24 * * ? *)", "hours field: '24' is out of range"},
      {"cron(0 0 32 * ? *)", "day-of-month field: '32'"},
      {"cron(0 0 0 * ? *)", "day-of-month field: '0'"},
      {"cron(0 0 * 13 ? *)", "month field: '13'"},
      {"cron(0 0 * FOO ? *)", "month field: 'FOO' is not a valid value"},
      {"cron(0 0 ? * 8 *)", "day-of-week field: '8'"},
      {"cron(0 0 ? * 0 *)", "day-of-week field: '0'"},
      {"cron(0 0 ? * MON#6 *)", "week of the month from 1 to 5"},
      {"cron(0 0 * * ? 1969)", "year field: '1969'"},
      {"cron(0 0 * * ? 2200)", "year field: '2200'"},
      {"cron(0 0 30 2 ? *)", "matches no date"},
      {"cron(5-1 0 * * ? *)", "ends before it starts"},
      {"cron(*/0 0 * * ? *)", "bad increment"},
      {"cron(0 0 ? * 2W *)", "day-of-week field"},
      {"cron(0 0 5#1 * ? *)", "day-of-month field"},
      {"cron(? 0 * * ? *)", "only allowed in day-of-month or day-of-week"},
      {"cron(0,,5 0 * * ? *)", "is empty"},
      {"every 5 minutes", "neither rate"},
      {"", "empty"},
  };
  for (const auto& c : cases) {
    auto e = parse_expression(c.text);
    ASSERT_FALSE(e.ok()) << c.text << " was accepted";
    EXPECT_EQ(e.status().code(), Code::kInvalidArgument) << c.text;
    EXPECT_NE(e.status().message().find(c.says), std::string::npos)
        << c.text << " -> " << e.status().message() << " (expected: " << c.says << ")";
  }
}

TEST(Cron, NextFire) {
  struct Case {
    const char* text;
    int64_t after;
    std::optional<int64_t> expected;
  } cases[] = {
      {"cron(0 12 * * ? *)", at(2024, 1, 1), at(2024, 1, 1, 12)},
      // Strictly after: a fire time is never returned twice.
      {"cron(0 12 * * ? *)", at(2024, 1, 1, 12), at(2024, 1, 2, 12)},
      {"cron(0 12 * * ? *)", at(2024, 1, 1, 11, 59, 59), at(2024, 1, 1, 12)},
      {"cron(0/15 * * * ? *)", at(2024, 1, 1, 10, 7, 30), at(2024, 1, 1, 10, 15)},
      {"cron(0/15 * * * ? *)", at(2024, 12, 31, 23, 45), at(2025, 1, 1, 0, 0)},
      {"cron(5,35 14 * * ? *)", at(2024, 3, 3, 14, 5), at(2024, 3, 3, 14, 35)},
      {"cron(5-40/10 * * * ? *)", at(2024, 3, 3, 14, 36), at(2024, 3, 3, 15, 5)},
      // Month ends and leap years.
      {"cron(0 0 L * ? *)", at(2024, 2, 1), at(2024, 2, 29)},
      {"cron(0 0 L * ? *)", at(2023, 2, 1), at(2023, 2, 28)},
      {"cron(0 0 L * ? *)", at(2100, 2, 1), at(2100, 2, 28)},  // not a leap year
      {"cron(0 0 L * ? *)", at(2000, 2, 1), at(2000, 2, 29)},  // a leap year
      {"cron(0 0 L * ? *)", at(2024, 4, 15), at(2024, 4, 30)},
      {"cron(0 0 L-2 * ? *)", at(2024, 2, 1), at(2024, 2, 27)},
      {"cron(0 0 29 2 ? *)", at(2024, 3, 1), at(2028, 2, 29)},
      {"cron(0 0 31 * ? *)", at(2024, 4, 1), at(2024, 5, 31)},
      {"cron(59 23 31 12 ? *)", at(2024, 12, 31, 23, 59), at(2025, 12, 31, 23, 59)},
      // W: nearest weekday, never leaving the month.
      {"cron(0 8 15W * ? *)", at(2024, 6, 1), at(2024, 6, 14, 8)},  // Sat 15th -> Fri 14th
      {"cron(0 8 15W * ? *)", at(2024, 9, 1), at(2024, 9, 16, 8)},  // Sun 15th -> Mon 16th
      {"cron(0 8 15W * ? *)", at(2024, 5, 1), at(2024, 5, 15, 8)},  // Wed stays
      {"cron(0 8 1W * ? *)", at(2024, 5, 31), at(2024, 6, 3, 8)},   // Sat 1st -> Mon 3rd
      {"cron(0 8 31W * ? *)", at(2024, 3, 1), at(2024, 3, 29, 8)},  // Sun 31st -> Fri 29th
      {"cron(0 0 LW * ? *)", at(2024, 8, 1), at(2024, 8, 30)},      // Sat 31st -> Fri 30th
      {"cron(0 0 LW * ? *)", at(2024, 3, 1), at(2024, 3, 29)},      // Sun 31st -> Fri 29th
      // Day of week: 1 = SUN .. 7 = SAT.
      {"cron(0 0 ? * 1 *)", at(2024, 1, 1), at(2024, 1, 7)},
      {"cron(0 0 ? * SUN *)", at(2024, 1, 1), at(2024, 1, 7)},
      {"cron(0 0 ? * L *)", at(2024, 1, 1), at(2024, 1, 6)},  // L alone: Saturday
      {"cron(30 10 ? * MON-FRI *)", at(2024, 1, 5, 10, 30), at(2024, 1, 8, 10, 30)},
      {"cron(0 9 ? * 6L *)", at(2024, 5, 1), at(2024, 5, 31, 9)},    // last Friday
      {"cron(0 9 ? * FRIL *)", at(2024, 6, 1), at(2024, 6, 28, 9)},  // last Friday
      {"cron(0 9 ? * MON#1 *)", at(2024, 1, 1, 9), at(2024, 2, 5, 9)},
      {"cron(0 9 ? * 2#5 *)", at(2024, 1, 2), at(2024, 1, 29, 9)},
      {"cron(0 9 ? * 2#5 *)", at(2024, 1, 30), at(2024, 4, 29, 9)},  // Feb, Mar have 4 Mondays
      // Month names and the year field.
      {"cron(0 0 1 JAN,JUL ? *)", at(2024, 2, 1), at(2024, 7, 1)},
      {"cron(0 0 1 1 ? 2030)", at(2024, 5, 5), at(2030, 1, 1)},
      {"cron(0 0 1 1 ? 2030-2032/2)", at(2030, 1, 1), at(2032, 1, 1)},
      {"cron(0 0 ? * MON 2026)", at(2026, 12, 28), std::nullopt},  // next Monday is in 2027
      {"cron(0 0 1 1 ? 2030)", at(2030, 1, 1), std::nullopt},
  };
  for (const auto& c : cases) {
    auto e = parse_expression(c.text);
    ASSERT_TRUE(e.ok()) << c.text << ": " << e.status().message();
    auto next = next_fire(*e, 0, c.after);
    if (!c.expected) {
      EXPECT_FALSE(next.has_value()) << c.text << " fired at " << format_iso8601(*next);
      continue;
    }
    ASSERT_TRUE(next.has_value()) << c.text << " after " << format_iso8601(c.after);
    EXPECT_EQ(*next, c.expected) << c.text << " after " << format_iso8601(c.after) << ": got "
                                 << format_iso8601(*next) << ", expected "
                                 << format_iso8601(*c.expected);
  }
}

TEST(Cron, RateFiresAtWholePeriodsFromItsAnchor) {
  auto e = parse_expression("rate(5 minutes)");
  ASSERT_TRUE(e.ok());
  int64_t anchor = at(2024, 1, 1);
  EXPECT_EQ(next_fire(*e, anchor, anchor), at(2024, 1, 1, 0, 5));
  EXPECT_EQ(next_fire(*e, anchor, anchor - 1), at(2024, 1, 1, 0, 5));
  EXPECT_EQ(next_fire(*e, anchor, at(2024, 1, 1, 0, 7)), at(2024, 1, 1, 0, 10));
  EXPECT_EQ(next_fire(*e, anchor, at(2024, 1, 1, 0, 10)), at(2024, 1, 1, 0, 15));
  auto days = parse_expression("rate(2 days)");
  ASSERT_TRUE(days.ok());
  EXPECT_EQ(next_fire(*days, anchor, at(2024, 2, 28, 12)), at(2024, 3, 1));
}

}  // namespace
}  // namespace tamaya::events
