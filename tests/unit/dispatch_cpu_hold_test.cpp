#include <gtest/gtest.h>
#include <unistd.h>

#include "dispatch/cpu_hold.h"

namespace tamaya::dispatch {
namespace {

HoldPolicy two_cores() {
  HoldPolicy p;
  p.cores = 2;
  p.busy_per_core = 4;
  p.pressure_percent = 50;
  p.function_cpu_percent = 25;  // 0.5 of the 2 CPUs
  return p;
}

TEST(HoldState, HoldsOnlyWhenTheHostIsSaturatedAndTheFunctionUsesIt) {
  const HoldPolicy p = two_cores();
  EXPECT_FALSE(HoldState{}.update({0.9, 0.2, 0}, p));  // saturated by someone else
  EXPECT_FALSE(HoldState{}.update({0.3, 1.5, 0}, p));  // busy, but the host has room
  EXPECT_TRUE(HoldState{}.update({0.5, 0.5, 0}, p));   // both at their thresholds
  EXPECT_EQ(held_busy_cap(p), 8);
}

TEST(HoldState, NeverHoldsWhenOff) {
  HoldPolicy p = two_cores();
  p.busy_per_core = 0;
  EXPECT_FALSE(HoldState{}.update({1.0, 2.0, 5}, p));
}

TEST(HoldState, ReleasesOnlyAfterTenLowWindowsInARow) {
  const HoldPolicy p = two_cores();
  HoldState h;
  ASSERT_TRUE(h.update({0.8, 1.0, 0}, p));
  // Holding lowered the pressure, but requests still wait for the function: stays held.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(h.update({0.05, 0.9, 12}, p)) << i;
  // Nobody waits and the pressure is low: released on the tenth such window, and a busy
  // window in between starts the count again.
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(h.update({0.05, 0.9, 0}, p)) << i;
  ASSERT_TRUE(h.update({0.9, 0.9, 3}, p));
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(h.update({0.05, 0.9, 0}, p)) << i;
  EXPECT_FALSE(h.update({0.05, 0.9, 0}, p));
}

TEST(HoldState, ReleasesWhenTheFunctionsLoadGoesAway) {
  const HoldPolicy p = two_cores();
  HoldState h;
  ASSERT_TRUE(h.update({0.8, 1.0, 0}, p));
  // The host stays saturated (another tenant), but the function uses < 1/4 of its threshold.
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(h.update({0.9, 0.1, 4}, p)) << i;
  EXPECT_FALSE(h.update({0.9, 0.1, 4}, p));
}

TEST(CpuHoldParsers, PsiSomeTotal) {
  EXPECT_EQ(parse_psi_some_total("some avg10=17.21 avg60=16.48 avg300=11.99 total=30157290953\n"
                                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            30157290953);
  EXPECT_FALSE(parse_psi_some_total("full avg10=0.00 total=5\n"));
  EXPECT_FALSE(parse_psi_some_total("some avg10=1.00\nfull total=5\n"));  // not from "full"
  EXPECT_FALSE(parse_psi_some_total(""));
}

TEST(CpuHoldParsers, SchedstatRunTime) {
  EXPECT_EQ(parse_schedstat_run_ns("5006921 0 1\n"), 5006921);
  EXPECT_FALSE(parse_schedstat_run_ns("x 0 1\n"));
  EXPECT_FALSE(parse_schedstat_run_ns(""));
}

TEST(RunTimeReader, ReadsThisProcessAndGrows) {
  RunTimeReader reader(getpid());
  auto first = reader.ns();
  ASSERT_TRUE(first.has_value());
  volatile uint64_t spin = 0;
  for (int i = 0; i < 20'000'000; ++i) spin = spin + uint64_t(i);
  auto second = reader.ns();
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(*second, *first);
  EXPECT_FALSE(RunTimeReader(-1).ns().has_value());
}

TEST(HostPressure, ReadsWhenTheKernelHasPsi) {
  HostPressure pressure;
  if (!pressure.available()) GTEST_SKIP() << "no /proc/pressure/cpu on this host";
  EXPECT_TRUE(pressure.stalled_us().has_value());
}

}  // namespace
}  // namespace tamaya::dispatch
