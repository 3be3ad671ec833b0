#include "meter/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/strings.h"

namespace tamaya::meter {

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  // Bounds are few (under 20): a binary search is no faster than this.
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  // The +Inf bucket and the count must agree even while observe() runs
  // concurrently, so the count is the buckets' total.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

const std::vector<double>& duration_buckets() {
  static const std::vector<double> kBounds = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900};
  return kBounds;
}

template <typename T>
T& Family<T>::with(const std::vector<std::string>& label_values) {
  std::lock_guard lk(mu_);
  auto it = series_.find(label_values);
  if (it == series_.end()) {
    std::unique_ptr<T> s;
    if constexpr (std::is_same_v<T, Histogram>) {
      s = std::make_unique<T>(bounds_);
    } else {
      s = std::make_unique<T>();
    }
    it = series_.emplace(label_values, std::move(s)).first;
  }
  return *it->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

void Collection::add(MetricType type, const std::string& name, const std::string& help,
                     std::vector<std::pair<std::string, std::string>> labels, double value) {
  Group& g = groups_[name];
  if (g.samples.empty()) {
    g.type = type;
    g.help = help;
  }
  g.samples.push_back({std::move(labels), value});
}

void Collection::gauge(const std::string& name, const std::string& help,
                       std::vector<std::pair<std::string, std::string>> labels, double value) {
  add(MetricType::kGauge, name, help, std::move(labels), value);
}

void Collection::counter(const std::string& name, const std::string& help,
                         std::vector<std::pair<std::string, std::string>> labels, double value) {
  add(MetricType::kCounter, name, help, std::move(labels), value);
}

Family<Counter>& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names) {
  std::lock_guard lk(mu_);
  counters_.push_back(std::make_unique<Family<Counter>>(name, help, std::move(label_names)));
  return *counters_.back();
}

Family<Gauge>& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  std::lock_guard lk(mu_);
  gauges_.push_back(std::make_unique<Family<Gauge>>(name, help, std::move(label_names)));
  return *gauges_.back();
}

Family<Histogram>& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                              std::vector<std::string> label_names,
                                              std::vector<double> bounds) {
  std::sort(bounds.begin(), bounds.end());
  std::lock_guard lk(mu_);
  histograms_.push_back(
      std::make_unique<Family<Histogram>>(name, help, std::move(label_names), std::move(bounds)));
  return *histograms_.back();
}

void MetricsRegistry::add_collector(Collector collector) {
  std::lock_guard lk(mu_);
  collectors_.push_back(std::move(collector));
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", int64_t(v));
  return fmt::format("{}", v);
}

namespace {

// HELP text escapes backslash and newline only.
std::string escape_help(const std::string& h) {
  std::string out;
  append_escaped_line(out, h);
  return out;
}

const char* type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void header(std::string& out, const std::string& name, const std::string& help, MetricType t) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, type_name(t));
}

std::string label_text(const std::vector<std::string>& names,
                       const std::vector<std::string>& values, const std::string& extra = "") {
  std::string s;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!s.empty()) s += ',';
    s += names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!s.empty()) s += ',';
    s += extra;
  }
  return s.empty() ? s : "{" + s + "}";
}

template <typename T>
void render_simple(std::string& out, const Family<T>& f, MetricType type) {
  header(out, f.name(), f.help(), type);
  f.each([&](const std::vector<std::string>& labels, const T& s) {
    out += f.name() + label_text(f.label_names(), labels) + " " + format_value(s.value()) + "\n";
  });
}

}  // namespace

std::string MetricsRegistry::render() const {
  std::string out;
  std::vector<Collector> collectors;
  {
    std::lock_guard lk(mu_);
    for (const auto& f : counters_) render_simple(out, *f, MetricType::kCounter);
    for (const auto& f : gauges_) render_simple(out, *f, MetricType::kGauge);
    for (const auto& f : histograms_) {
      header(out, f->name(), f->help(), MetricType::kHistogram);
      f->each([&](const std::vector<std::string>& labels, const Histogram& h) {
        Histogram::Snapshot s = h.snapshot();
        const auto& bounds = h.bounds();
        for (size_t i = 0; i <= bounds.size(); ++i) {
          std::string le =
              "le=\"" + (i < bounds.size() ? format_value(bounds[i]) : std::string("+Inf")) + "\"";
          out += f->name() + "_bucket" + label_text(f->label_names(), labels, le) + " " +
                 std::to_string(s.cumulative[i]) + "\n";
        }
        out += f->name() + "_sum" + label_text(f->label_names(), labels) + " " +
               format_value(s.sum) + "\n";
        out += f->name() + "_count" + label_text(f->label_names(), labels) + " " +
               std::to_string(s.count) + "\n";
      });
    }
    collectors = collectors_;
  }
  Collection c;
  for (const auto& collect : collectors) collect(c);
  for (const auto& [name, g] : c.groups()) {
    header(out, name, g.help, g.type);
    for (const auto& sample : g.samples) {
      std::vector<std::string> names, values;
      for (const auto& [k, v] : sample.labels) {
        names.push_back(k);
        values.push_back(v);
      }
      out += name + label_text(names, values) + " " + format_value(sample.value) + "\n";
    }
  }
  return out;
}

InvocationMetrics::InvocationMetrics(MetricsRegistry& r)
    : invocations_(
          r.counter("tamaya_invocations_total",
                    "Invocations by function and outcome (success, error: the function "
                    "failed or timed out, throttled: 429, rejected: draining or too large)",
                    {"function", "outcome"})),
      throttles_(r.counter("tamaya_throttles_total",
                           "Invocations refused because the function was at its concurrency limit",
                           {"function"})),
      cold_starts_(r.counter("tamaya_cold_starts_total", "Invocations that started a new instance",
                             {"function"})),
      duration_(r.histogram("tamaya_invocation_duration_seconds",
                            "Invocation duration (the REPORT line's Duration)", {"function"},
                            duration_buckets())),
      init_(r.histogram("tamaya_invocation_init_duration_seconds",
                        "Init duration of cold starts (the REPORT line's Init Duration)",
                        {"function"}, duration_buckets())) {}

InvocationMetrics::Series& InvocationMetrics::series(const std::string& function) {
  auto it = by_function_.find(function);
  if (it != by_function_.end()) return it->second;
  Series s{&invocations_.with({function, "success"}),
           &invocations_.with({function, "error"}),
           &invocations_.with({function, "throttled"}),
           &invocations_.with({function, "rejected"}),
           &throttles_.with({function}),
           &cold_starts_.with({function}),
           &duration_.with({function}),
           &init_.with({function})};
  return by_function_.emplace(function, s).first->second;
}

void InvocationMetrics::invocation(const std::string& function, const Outcome& o) {
  Series& s = series(function);
  (o.error ? s.error : s.success)->inc();
  s.duration->observe(o.duration_ms / 1000.0);
  if (o.cold) {
    s.cold_starts->inc();
    s.init->observe(o.init_ms / 1000.0);
  }
}

void InvocationMetrics::refused(const std::string& function, bool throttled) {
  Series& s = series(function);
  if (throttled) {
    s.throttled->inc();
    s.throttles->inc();
  } else {
    s.rejected->inc();
  }
}

}  // namespace tamaya::meter
