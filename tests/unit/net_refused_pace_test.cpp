// The pace at which a server reads refused connections' next requests: a
// token bucket of a millisecond's worth, then one read per 1/rate.
#include <gtest/gtest.h>

#include <chrono>

#include "net/refused_pace.h"

namespace tamaya::net {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(RefusedReadPace, ZeroIsUnpaced) {
  RefusedReadPace pace(0);
  EXPECT_FALSE(pace.on());
  const auto t = RefusedReadPace::clock::now();
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(pace.wait(t), nanoseconds(0));
}

TEST(RefusedReadPace, AMillisecondsWorthGoesAtOnceThenOnePerInterval) {
  RefusedReadPace pace(20'000);  // 20 per ms, one per 50 µs
  ASSERT_TRUE(pace.on());
  const auto t = RefusedReadPace::clock::now();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(pace.wait(t), nanoseconds(0)) << i;
  const nanoseconds wait = pace.wait(t);
  EXPECT_GT(wait, microseconds(49));
  EXPECT_LE(wait, microseconds(50));
  // Nothing was taken while waiting: the read goes once its time has come.
  EXPECT_EQ(pace.wait(t + wait), nanoseconds(0));
  EXPECT_GT(pace.wait(t + wait), nanoseconds(0));
}

TEST(RefusedReadPace, OverASecondTheRateHoldsForACallerThatComesBackLate) {
  RefusedReadPace pace(20'000);
  auto t = RefusedReadPace::clock::now();
  const auto end = t + std::chrono::seconds(1);
  int reads = 0;
  // A timer fires up to the kernel's timer slack (50 µs) after its time: the
  // reads missed meanwhile wait in the bucket, so the rate is kept on average.
  while (t < end) {
    const nanoseconds wait = pace.wait(t);
    if (wait.count() == 0) {
      ++reads;
    } else {
      t += wait + microseconds(60);
    }
  }
  EXPECT_GE(reads, 20'000 - 2);
  EXPECT_LE(reads, 20'000 + 20);  // and the full bucket it started with
}

TEST(RefusedReadPace, AQuietSpellRefillsOnlyUpToTheBucket) {
  RefusedReadPace pace(5'000);  // 5 per ms
  auto t = RefusedReadPace::clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(pace.wait(t), nanoseconds(0));
  t += std::chrono::seconds(10);
  int at_once = 0;
  while (pace.wait(t).count() == 0) ++at_once;
  EXPECT_EQ(at_once, 5);
}

TEST(RefusedReadPace, ALowRateStillLetsOneReadThrough) {
  RefusedReadPace pace(1);  // a bucket of one
  const auto t = RefusedReadPace::clock::now();
  EXPECT_EQ(pace.wait(t), nanoseconds(0));
  const nanoseconds wait = pace.wait(t);
  EXPECT_GT(wait, milliseconds(999));
  EXPECT_LE(wait, milliseconds(1000));
}

}  // namespace
}  // namespace tamaya::net
