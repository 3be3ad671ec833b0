#include "daemon/metering.h"

#include <cmath>
#include <memory>

namespace tamaya::daemon {

MeterObserver::MeterObserver(meter::LogStore& logs, meter::MetricsRegistry& metrics,
                             const Clock& clock)
    : logs_(logs), invocation_metrics_(metrics), clock_(clock) {}

meter::InvocationRecord record_of(const std::string& function, const dispatch::InvokeResult& r,
                                  int64_t end_wall_ms) {
  meter::InvocationRecord rec;
  rec.request_id = r.request_id;
  rec.function = function;
  rec.version = r.executed_version;
  rec.trigger = r.trigger.empty() ? "api" : r.trigger;
  rec.start_ms = end_wall_ms - int64_t(std::llround(r.duration_ms));
  rec.duration_ms = r.duration_ms;
  rec.billed_ms = r.billed_ms;
  rec.init_ms = r.init_ms;
  rec.memory_mb = r.memory_mb;
  rec.max_memory_used_mb = r.max_memory_used_mb;
  rec.status = r.function_error ? "error" : "success";
  rec.error_type = r.error_type;
  rec.cold = r.cold;
  return rec;
}

void MeterObserver::on_invocation(const std::string& function, const dispatch::InvokeResult& r,
                                  std::vector<dispatch::LogLine> log) {
  std::vector<meter::LogEvent> events;
  events.reserve(log.size());
  for (auto& line : log) {
    meter::LogEvent e;
    e.time_ms = line.time_ms;
    e.function = function;
    e.request_id = r.request_id;
    e.message = std::move(line.text);
    events.push_back(std::move(e));
  }
  invocation_metrics_.invocation(function, {r.function_error, r.cold, r.duration_ms, r.init_ms});
  logs_.record(record_of(function, r, clock_.wall_ms()), std::move(events));
}

void MeterObserver::on_refused(const std::string& function, const dispatch::InvokeResult& r) {
  invocation_metrics_.refused(function, r.status.code() == Code::kResourceExhausted);
}

void add_dispatcher_collector(meter::MetricsRegistry& metrics,
                              const dispatch::Dispatcher& dispatcher,
                              const registry::Registry& registry) {
  metrics.add_collector([&dispatcher, &registry](meter::Collection& c) {
    dispatch::Stats all = dispatcher.stats();
    c.gauge("tamaya_concurrent_executions", "Invocations running now, over all functions", {},
            all.busy);
    for (const auto& f : registry.list()) {
      dispatch::Stats s = dispatcher.stats(f.name);
      c.gauge("tamaya_function_concurrent_executions", "Invocations running now",
              {{"function", f.name}}, s.busy);
      c.gauge("tamaya_queued_requests",
              "Synchronous requests waiting for a free instance (max concurrency reached)",
              {{"function", f.name}}, s.queued);
      const std::pair<const char*, int> states[] = {
          {"starting", s.starting}, {"idle", s.idle}, {"busy", s.busy}};
      for (const auto& [state, n] : states) {
        c.gauge("tamaya_instances", "Function instances by state",
                {{"function", f.name}, {"state", state}}, n);
      }
    }
  });
}

void add_store_collector(meter::MetricsRegistry& metrics, const meter::LogStore& logs) {
  metrics.add_collector([&logs](meter::Collection& c) {
    c.counter("tamaya_log_events_dropped_total",
              "Log lines not stored: the writer's queue was full or a write failed", {},
              double(logs.dropped()));
    c.counter("tamaya_invocation_records_dropped_total",
              "Invocation records not stored: the writer's queue was full or a write failed", {},
              double(logs.dropped_records()));
    c.gauge("tamaya_log_streams", "Open live log streams (tamaya logs -f)", {},
            double(logs.followers()));
  });
}

void add_async_queue_collector(meter::MetricsRegistry& metrics,
                               std::function<AsyncQueueFigures()> figures) {
  metrics.add_collector([figures = std::move(figures)](meter::Collection& c) {
    AsyncQueueFigures f = figures();
    c.gauge("tamaya_async_queue_depth", "Async events accepted and not yet delivered", {},
            double(f.depth));
    c.gauge("tamaya_async_queue_oldest_age_seconds", "Age of the oldest undelivered async event",
            {}, f.oldest_age_s);
    c.gauge("tamaya_dead_letters", "Async events in the dead-letter table", {},
            double(f.dead_letters));
  });
}

std::function<void(const std::string&, int)> gateway_request_counter(
    meter::MetricsRegistry& metrics) {
  auto& family = metrics.counter("tamaya_gateway_requests_total",
                                 "Gateway requests by route key (\"-\": no route) and status",
                                 {"route", "status"});
  // Series cached per (route, status): after the first request of a pair an
  // update is one map lookup on the io_context and one atomic add.
  auto cache = std::make_shared<std::map<std::pair<std::string, int>, meter::Counter*>>();
  return [&family, cache](const std::string& route, int status) {
    auto key = std::make_pair(route, status);
    auto it = cache->find(key);
    if (it == cache->end()) {
      it = cache->emplace(key, &family.with({route, std::to_string(status)})).first;
    }
    it->second->inc();
  };
}

}  // namespace tamaya::daemon
