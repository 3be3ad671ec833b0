// Invocation records (one row per invocation that ran, with the figures of
// its REPORT line) and the usage and cost computed from them. Records are
// written by LogStore's writer thread together with the invocation's log
// lines; see logs.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tamaya::meter {

struct InvocationRecord {
  int64_t id = 0;  // assigned by the store
  std::string request_id;
  std::string function;
  std::string version;
  std::string trigger;   // api, gateway, async, schedule
  int64_t start_ms = 0;  // wall clock, when the event was handed to the function
  double duration_ms = 0;
  int64_t billed_ms = 0;
  double init_ms = 0;  // > 0 only on a cold start
  int memory_mb = 0;
  int64_t max_memory_used_mb = 0;
  std::string status;  // "success" or "error"
  std::string error_type;
  bool cold = false;
};

struct RecordQuery {
  std::string function;             // all when empty
  std::string status;               // all when empty
  std::string trigger;              // all when empty
  std::optional<int64_t> since_ms;  // start_ms >= since
  std::optional<int64_t> until_ms;  // start_ms < until
  int limit = 100;                  // newest first
};
inline constexpr int kMaxRecordQueryLimit = 10'000;

// Prices of the usage report (settings meter_*; defaults are AWS Lambda's
// public x86 prices and a small always-on VM).
struct Prices {
  double request_usd_per_million = 0.20;
  double gb_second_usd = 0.0000166667;
  double rented_instance_hourly_usd = 0.0416;  // a 2 vCPU / 4 GiB on-demand VM
  int rented_instance_memory_mb = 4096;
};

// GB-seconds of one invocation as Lambda bills them: memory in GB (MB/1024)
// times the billed duration in seconds.
double gb_seconds(int memory_mb, int64_t billed_ms);

struct HourUsage {
  int64_t hour_ms = 0;  // start of the hour (UTC)
  std::string function;
  int64_t requests = 0;
  int64_t errors = 0;
  int64_t billed_ms = 0;
  double gb_seconds = 0;
  double cost_usd = 0;
  int peak_concurrency = 0;
};

struct FunctionUsage {
  std::string function;
  int64_t requests = 0;
  int64_t errors = 0;
  int64_t billed_ms = 0;
  double gb_seconds = 0;
  double request_cost_usd = 0;
  double compute_cost_usd = 0;
  double cost_usd = 0;
  int peak_concurrency = 0;    // most invocations running at once
  int memory_mb = 0;           // largest memory size seen
  int rented_instances = 0;    // VMs needed to hold the peak
  double rented_cost_usd = 0;  // those VMs, always on for the whole window
};

struct Usage {
  int64_t since_ms = 0;
  int64_t until_ms = 0;
  double hours = 0;
  Prices prices;
  std::vector<HourUsage> hourly;         // by hour, then function
  std::vector<FunctionUsage> functions;  // by function
  FunctionUsage total;  // function "" ; peak_concurrency over all functions at once,
                        // rented sized for the peak total memory in use
};

// A point in time given to --since/--until and the APIs: a duration back
// from now ("90s", "15m", "1h", "7d"), epoch milliseconds, or ISO-8601 UTC
// ("2026-11-25T10:00:00Z", fraction optional). nullopt when none of these.
std::optional<int64_t> parse_time(const std::string& text, int64_t now_ms);

// The usage of [since_ms, until_ms) from the records that started in it.
// An invocation is running from start_ms for duration_ms; peaks count
// overlaps of those intervals.
Usage compute_usage(const std::vector<InvocationRecord>& records, int64_t since_ms,
                    int64_t until_ms, const Prices& prices);

}  // namespace tamaya::meter
