#include <gtest/gtest.h>

#include "gateway/limiter.h"

namespace tamaya::gateway {
namespace {

using namespace std::chrono_literals;

TEST(GatewayTokenBucket, BurstThenRate) {
  ManualClock clock;
  TokenBucket b(2.0, 3, clock.now());
  int retry = 0;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(clock.now(), &retry)) << i;
  EXPECT_FALSE(b.take(clock.now(), &retry));
  EXPECT_EQ(retry, 1);
  clock.advance(499ms);
  EXPECT_FALSE(b.take(clock.now(), &retry));
  clock.advance(1ms);  // 0.5 s at 2/s is one token
  EXPECT_TRUE(b.take(clock.now(), &retry));
  EXPECT_FALSE(b.take(clock.now(), &retry));
  clock.advance(10s);  // refills only up to the burst
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(clock.now(), &retry)) << i;
  EXPECT_FALSE(b.take(clock.now(), &retry));
}

TEST(GatewayTokenBucket, SlowRateGivesLongerRetryAfter) {
  ManualClock clock;
  TokenBucket b(0.2, 1, clock.now());  // one every 5 s
  int retry = 0;
  EXPECT_TRUE(b.take(clock.now(), &retry));
  EXPECT_FALSE(b.take(clock.now(), &retry));
  EXPECT_EQ(retry, 5);
}

TEST(GatewayDailyQuota, ResetsAtUtcMidnight) {
  DailyQuota q(2);
  int retry = 0;
  int64_t day = 20'000LL * 86'400'000;
  EXPECT_TRUE(q.take(day + 1000, &retry));
  EXPECT_TRUE(q.take(day + 2000, &retry));
  EXPECT_FALSE(q.take(day + 86'400'000 - 10'000, &retry));
  EXPECT_EQ(retry, 10);
  EXPECT_TRUE(q.take(day + 86'400'000, &retry));
  DailyQuota unlimited(0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(unlimited.take(day, &retry));
}

}  // namespace
}  // namespace tamaya::gateway
