// A small Prometheus metrics registry: counters, gauges and histograms with
// labels, rendered in the text exposition format (version 0.0.4) with HELP
// and TYPE lines. Numbers owned by other modules (dispatcher instances, the
// async queue, gateway traffic) are pulled at scrape time by collector
// callbacks, so those modules need not link meter.
//
// Cost model: a series (one label combination) is created once under its
// family's mutex and then updated with relaxed atomics only. Hot paths keep
// the reference `with()` returns (series never move or die) so an update is
// one or two atomic adds and takes no lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tamaya::meter {

class Counter {
 public:
  void inc(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Cumulative buckets as Prometheus wants them: bucket i counts observations
// <= bounds[i]; +Inf is the total count.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // non-cumulative, bounds+1
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Bucket bounds in seconds for invocation and init durations: 1 ms to
// Lambda's 900 s maximum timeout.
const std::vector<double>& duration_buckets();

enum class MetricType { kCounter, kGauge, kHistogram };

// All series of one metric name. T is Counter, Gauge or Histogram.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}

  // The series of these label values (as many as label names), created on
  // first use. The reference stays valid for the family's lifetime.
  T& with(const std::vector<std::string>& label_values);

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Calls f(label_values, series) for each series, in label order.
  template <typename F>
  void each(F&& f) const {
    std::lock_guard lk(mu_);
    for (const auto& [labels, series] : series_) f(labels, *series);
  }

 private:
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;
  mutable std::mutex mu_;  // series creation and rendering only
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
};

// Samples handed over by a collector at scrape time.
class Collection {
 public:
  void gauge(const std::string& name, const std::string& help,
             std::vector<std::pair<std::string, std::string>> labels, double value);
  void counter(const std::string& name, const std::string& help,
               std::vector<std::pair<std::string, std::string>> labels, double value);

  struct Sample {
    std::vector<std::pair<std::string, std::string>> labels;
    double value;
  };
  struct Group {
    MetricType type;
    std::string help;
    std::vector<Sample> samples;
  };
  const std::map<std::string, Group>& groups() const { return groups_; }

 private:
  void add(MetricType type, const std::string& name, const std::string& help,
           std::vector<std::pair<std::string, std::string>> labels, double value);
  std::map<std::string, Group> groups_;
};

using Collector = std::function<void(Collection&)>;

// Owns the families; render() is what GET /metrics serves. Families and
// collectors are registered at startup; rendering is thread-safe.
class MetricsRegistry {
 public:
  Family<Counter>& counter(const std::string& name, const std::string& help,
                           std::vector<std::string> label_names);
  Family<Gauge>& gauge(const std::string& name, const std::string& help,
                       std::vector<std::string> label_names);
  Family<Histogram>& histogram(const std::string& name, const std::string& help,
                               std::vector<std::string> label_names, std::vector<double> bounds);
  // Called on every render, on the rendering thread.
  void add_collector(Collector collector);

  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
  std::vector<Collector> collectors_;
};

// "text/plain; version=0.0.4; charset=utf-8"
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Label value escaping of the text format: backslash, double quote, newline.
std::string escape_label_value(const std::string& v);
// Numbers as the text format writes them: integers without a fraction,
// +Inf/-Inf/NaN spelled out.
std::string format_value(double v);

// The metrics the invoke path updates, with their series cached per
// function so an update takes no lock once a function has been seen.
// Use from one thread (the daemon's io_context).
class InvocationMetrics {
 public:
  explicit InvocationMetrics(MetricsRegistry& registry);

  struct Outcome {
    bool error = false;
    bool cold = false;
    double duration_ms = 0;
    double init_ms = 0;
  };
  void invocation(const std::string& function, const Outcome& outcome);
  // The request never ran: reason "throttled" (429) or "rejected" (draining,
  // too large).
  void refused(const std::string& function, bool throttled);

 private:
  struct Series {
    Counter* success;
    Counter* error;
    Counter* throttled;
    Counter* rejected;
    Counter* throttles;
    Counter* cold_starts;
    Histogram* duration;
    Histogram* init;
  };
  Series& series(const std::string& function);

  Family<Counter>& invocations_;
  Family<Counter>& throttles_;
  Family<Counter>& cold_starts_;
  Family<Histogram>& duration_;
  Family<Histogram>& init_;
  std::map<std::string, Series, std::less<>> by_function_;
};

}  // namespace tamaya::meter
