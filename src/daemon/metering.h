// The daemon's glue between the invoke path and the meter module: an
// Observer that turns each invocation into a record, log lines and metric
// updates, and the scrape-time collectors that pull other modules' numbers
// into GET /metrics (meter links none of those modules).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>

#include "common/clock.h"
#include "dispatch/dispatcher.h"
#include "meter/logs.h"
#include "meter/metrics.h"
#include "registry/registry.h"

namespace tamaya::daemon {

// Runs on the dispatcher's io_context: updates take no lock (cached series,
// atomics) and the store only queues for its writer thread.
class MeterObserver final : public dispatch::Observer {
 public:
  MeterObserver(meter::LogStore& logs, meter::MetricsRegistry& metrics, const Clock& clock);
  void on_invocation(const std::string& function, const dispatch::InvokeResult& result,
                     std::vector<dispatch::LogLine> log) override;
  void on_refused(const std::string& function, const dispatch::InvokeResult& result) override;

 private:
  meter::LogStore& logs_;
  meter::InvocationMetrics invocation_metrics_;
  const Clock& clock_;
};

// The record of one invocation as the dispatcher reported it; start is the
// end (now) minus the duration.
meter::InvocationRecord record_of(const std::string& function, const dispatch::InvokeResult& r,
                                  int64_t end_wall_ms);

// Instances by state, concurrent executions and queued requests per
// function, from Dispatcher::stats at scrape time; the log store's own
// figures. Both run on the io_context (the admin API's thread).
void add_dispatcher_collector(meter::MetricsRegistry& metrics,
                              const dispatch::Dispatcher& dispatcher,
                              const registry::Registry& registry);
void add_store_collector(meter::MetricsRegistry& metrics, const meter::LogStore& logs);

// The async queue's figures, for whoever owns the queue (src/events) to hand
// in through add_async_queue_collector.
struct AsyncQueueFigures {
  int64_t depth = 0;         // events accepted and not yet delivered
  double oldest_age_s = 0;   // age of the oldest of them
  int64_t dead_letters = 0;  // events in the dead-letter table
};
void add_async_queue_collector(meter::MetricsRegistry& metrics,
                               std::function<AsyncQueueFigures()> figures);

// Counts gateway requests by route key and status; give it to
// Gateway::set_request_observer. Use on the io_context only.
std::function<void(const std::string&, int)> gateway_request_counter(
    meter::MetricsRegistry& metrics);

}  // namespace tamaya::daemon
