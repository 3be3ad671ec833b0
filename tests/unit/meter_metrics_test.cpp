#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "meter/metrics.h"
#include "meter/records.h"

namespace tamaya::meter {
namespace {

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST(Metrics, CounterRendersHelpTypeAndLabels) {
  MetricsRegistry r;
  auto& c = r.counter("tamaya_x_total", "Things that happened", {"function", "outcome"});
  c.with({"hello", "success"}).inc();
  c.with({"hello", "success"}).inc(2);
  c.with({"we\"ird\\\n", "error"}).inc();
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# HELP tamaya_x_total Things that happened\n"));
  EXPECT_TRUE(contains(text, "# TYPE tamaya_x_total counter\n"));
  EXPECT_TRUE(contains(text, "tamaya_x_total{function=\"hello\",outcome=\"success\"} 3\n"));
  EXPECT_TRUE(contains(text, "tamaya_x_total{function=\"we\\\"ird\\\\\\n\",outcome=\"error\"} 1\n"))
      << text;
}

TEST(Metrics, GaugeWithoutLabels) {
  MetricsRegistry r;
  auto& g = r.gauge("tamaya_g", "A level", {});
  g.with({}).set(2.5);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# TYPE tamaya_g gauge\ntamaya_g 2.5\n")) << text;
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInf) {
  MetricsRegistry r;
  auto& h = r.histogram("tamaya_d_seconds", "Durations", {"function"}, {0.1, 1, 10});
  Histogram& s = h.with({"f"});
  s.observe(0.05);  // <= 0.1
  s.observe(0.1);   // <= 0.1 (bounds are inclusive)
  s.observe(0.5);   // <= 1
  s.observe(100);   // +Inf only
  Histogram::Snapshot snap = s.snapshot();
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{2, 3, 3, 4}));
  EXPECT_EQ(snap.count, 4u);
  EXPECT_DOUBLE_EQ(snap.sum, 100.65);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# TYPE tamaya_d_seconds histogram\n"));
  EXPECT_TRUE(contains(text, "tamaya_d_seconds_bucket{function=\"f\",le=\"0.1\"} 2\n")) << text;
  EXPECT_TRUE(contains(text, "tamaya_d_seconds_bucket{function=\"f\",le=\"1\"} 3\n"));
  EXPECT_TRUE(contains(text, "tamaya_d_seconds_bucket{function=\"f\",le=\"10\"} 3\n"));
  EXPECT_TRUE(contains(text, "tamaya_d_seconds_bucket{function=\"f\",le=\"+Inf\"} 4\n"));
  EXPECT_TRUE(contains(text, "tamaya_d_seconds_sum{function=\"f\"} 100.65\n"));
  EXPECT_TRUE(contains(text, "tamaya_d_seconds_count{function=\"f\"} 4\n"));
}

TEST(Metrics, DurationBucketsAreSortedAndCoverLambdaTimeouts) {
  const auto& b = duration_buckets();
  ASSERT_FALSE(b.empty());
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
  EXPECT_DOUBLE_EQ(b.front(), 0.001);
  EXPECT_DOUBLE_EQ(b.back(), 900);
}

TEST(Metrics, CollectorsAddSamplesAtRenderTime) {
  MetricsRegistry r;
  int level = 1;
  r.add_collector([&](Collection& c) {
    c.gauge("tamaya_queue_depth", "Waiting events", {}, level);
    c.gauge("tamaya_instances", "By state", {{"function", "a"}, {"state", "idle"}}, 2);
    c.gauge("tamaya_instances", "By state", {{"function", "a"}, {"state", "busy"}}, 1);
  });
  EXPECT_TRUE(contains(r.render(), "tamaya_queue_depth 1\n"));
  level = 7;
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "tamaya_queue_depth 7\n"));
  // One HELP/TYPE header for both samples of a name.
  EXPECT_EQ(text.find("# TYPE tamaya_instances gauge"),
            text.rfind("# TYPE tamaya_instances gauge"));
  EXPECT_TRUE(contains(text, "tamaya_instances{function=\"a\",state=\"busy\"} 1\n"));
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry r;
  auto& c = r.counter("tamaya_c_total", "c", {"function"});
  auto& h = r.histogram("tamaya_h", "h", {"function"}, duration_buckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      Counter& mine = c.with({"f"});
      Histogram& hist = h.with({"f"});
      for (int i = 0; i < 10'000; ++i) {
        mine.inc();
        hist.observe(0.002);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.with({"f"}).value(), 40'000);
  EXPECT_EQ(h.with({"f"}).snapshot().count, 40'000u);
}

TEST(Metrics, InvocationMetricsByOutcome) {
  MetricsRegistry r;
  InvocationMetrics m(r);
  m.invocation("f", {false, true, 12.0, 80.0});
  m.invocation("f", {true, false, 3000.0, 0});
  m.refused("f", true);
  m.refused("f", false);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "tamaya_invocations_total{function=\"f\",outcome=\"success\"} 1\n"));
  EXPECT_TRUE(contains(text, "tamaya_invocations_total{function=\"f\",outcome=\"error\"} 1\n"));
  EXPECT_TRUE(contains(text, "tamaya_invocations_total{function=\"f\",outcome=\"throttled\"} 1\n"));
  EXPECT_TRUE(contains(text, "tamaya_invocations_total{function=\"f\",outcome=\"rejected\"} 1\n"));
  EXPECT_TRUE(contains(text, "tamaya_throttles_total{function=\"f\"} 1\n"));
  EXPECT_TRUE(contains(text, "tamaya_cold_starts_total{function=\"f\"} 1\n"));
  EXPECT_TRUE(contains(text, "tamaya_invocation_duration_seconds_count{function=\"f\"} 2\n"));
  EXPECT_TRUE(contains(text, "tamaya_invocation_init_duration_seconds_count{function=\"f\"} 1\n"));
  EXPECT_TRUE(
      contains(text, "tamaya_invocation_duration_seconds_bucket{function=\"f\",le=\"0.025\"} 1\n"));
}

TEST(Metrics, FormatValue) {
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
}

// --- usage arithmetic -------------------------------------------------------

InvocationRecord rec(const std::string& fn, int64_t start_ms, double duration_ms, int64_t billed,
                     int memory_mb, const std::string& status = "success") {
  InvocationRecord r;
  r.function = fn;
  r.start_ms = start_ms;
  r.duration_ms = duration_ms;
  r.billed_ms = billed;
  r.memory_mb = memory_mb;
  r.status = status;
  return r;
}

TEST(Usage, GbSecondsAsLambdaBillsThem) {
  EXPECT_DOUBLE_EQ(gb_seconds(1024, 1000), 1.0);
  EXPECT_DOUBLE_EQ(gb_seconds(128, 100), 0.0125);
}

TEST(Usage, CostsPeaksAndRentedComparison) {
  const int64_t h0 = 1'700'000'000'000 - (1'700'000'000'000 % 3'600'000);
  std::vector<InvocationRecord> records = {
      rec("a", h0 + 1'000, 150, 150, 1024),
      rec("a", h0 + 1'050, 100, 100, 1024, "error"),  // overlaps the first
      rec("a", h0 + 1'100, 10, 10, 1024),             // 3 running at once
      rec("a", h0 + 3'600'000 + 5, 1, 1, 1024),       // next hour
      rec("b", h0 + 1'060, 2'000, 2'000, 2048),
      rec("b", h0 - 10, 5, 5, 2048),  // before the window: ignored
  };
  Prices p;
  p.request_usd_per_million = 0.20;
  p.gb_second_usd = 0.0000166667;
  p.rented_instance_hourly_usd = 0.05;
  p.rented_instance_memory_mb = 2048;
  Usage u = compute_usage(records, h0, h0 + 2 * 3'600'000, p);
  EXPECT_DOUBLE_EQ(u.hours, 2.0);
  ASSERT_EQ(u.functions.size(), 2u);
  const FunctionUsage& a = u.functions[0];
  EXPECT_EQ(a.function, "a");
  EXPECT_EQ(a.requests, 4);
  EXPECT_EQ(a.errors, 1);
  EXPECT_EQ(a.billed_ms, 261);
  EXPECT_DOUBLE_EQ(a.gb_seconds, 0.261);
  EXPECT_EQ(a.peak_concurrency, 3);
  EXPECT_NEAR(a.cost_usd, 4 * 0.20 / 1e6 + 0.261 * 0.0000166667, 1e-15);
  // 3 × 1024 MB at peak in 2048 MB VMs: 2 VMs for 2 hours.
  EXPECT_EQ(a.rented_instances, 2);
  EXPECT_DOUBLE_EQ(a.rented_cost_usd, 2 * 0.05 * 2);
  const FunctionUsage& b = u.functions[1];
  EXPECT_EQ(b.requests, 1);
  EXPECT_DOUBLE_EQ(b.gb_seconds, 4.0);
  EXPECT_EQ(b.peak_concurrency, 1);
  EXPECT_EQ(b.rented_instances, 1);
  // Platform-wide: a's three (3 GB) and b's one (2 GB) overlap at h0+1100.
  EXPECT_EQ(u.total.requests, 5);
  EXPECT_EQ(u.total.peak_concurrency, 4);
  EXPECT_EQ(u.total.rented_instances, 3);  // 5120 MB / 2048
  EXPECT_DOUBLE_EQ(u.total.rented_cost_usd, 3 * 0.05 * 2);
  EXPECT_NEAR(u.total.cost_usd, a.cost_usd + b.cost_usd, 1e-15);
  // Hours: a in two hours, b in one.
  ASSERT_EQ(u.hourly.size(), 3u);
  EXPECT_EQ(u.hourly[0].hour_ms, h0);
  EXPECT_EQ(u.hourly[0].function, "a");
  EXPECT_EQ(u.hourly[0].requests, 3);
  EXPECT_EQ(u.hourly[0].peak_concurrency, 3);
  EXPECT_EQ(u.hourly[1].function, "b");
  EXPECT_EQ(u.hourly[2].hour_ms, h0 + 3'600'000);
  EXPECT_EQ(u.hourly[2].requests, 1);
}

TEST(Usage, BackToBackInvocationsDoNotOverlap) {
  std::vector<InvocationRecord> records = {rec("a", 1'000, 10, 10, 128),
                                           rec("a", 1'010, 10, 10, 128)};
  Usage u = compute_usage(records, 0, 3'600'000, Prices{});
  EXPECT_EQ(u.functions.at(0).peak_concurrency, 1);
}

TEST(Usage, EmptyWindowCostsNothing) {
  Usage u = compute_usage({}, 0, 3'600'000, Prices{});
  EXPECT_TRUE(u.functions.empty());
  EXPECT_EQ(u.total.rented_instances, 0);
  EXPECT_EQ(u.total.cost_usd, 0);
}

TEST(Usage, ParseTime) {
  const int64_t now = 1'800'000'000'000;
  EXPECT_EQ(parse_time("1h", now), now - 3'600'000);
  EXPECT_EQ(parse_time("90s", now), now - 90'000);
  EXPECT_EQ(parse_time("15m", now), now - 900'000);
  EXPECT_EQ(parse_time("7d", now), now - 7 * 86'400'000ll);
  EXPECT_EQ(parse_time("1700000000000", now), 1'700'000'000'000);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20Z", now), 1'700'000'000'000);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20.250Z", now), 1'700'000'000'250);
  EXPECT_FALSE(parse_time("yesterday", now));
  EXPECT_FALSE(parse_time("5w", now));
  EXPECT_FALSE(parse_time("", now));
  EXPECT_FALSE(parse_time("2023-11-14 22:13:20", now));
}

}  // namespace
}  // namespace tamaya::meter
