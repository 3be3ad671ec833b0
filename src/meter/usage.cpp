#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string_view>
#include <tuple>

#include "meter/records.h"

namespace tamaya::meter {

namespace {

constexpr int64_t kHourMs = 3'600'000;

int64_t hour_of(int64_t ms) { return ms - (((ms % kHourMs) + kHourMs) % kHourMs); }

struct Edge {
  int64_t time_us;
  int delta;  // +1 start, -1 end
  int memory_mb;
  const InvocationRecord* record;
};

// Edges sorted by time with ends before starts at the same instant, so
// back-to-back invocations on one instance do not count as overlapping.
std::vector<Edge> edges_of(const std::vector<const InvocationRecord*>& records) {
  std::vector<Edge> edges;
  edges.reserve(records.size() * 2);
  for (const InvocationRecord* r : records) {
    int64_t start = r->start_ms * 1000;
    int64_t end = start + std::max<int64_t>(1, int64_t(std::llround(r->duration_ms * 1000)));
    edges.push_back({start, +1, r->memory_mb, r});
    edges.push_back({end, -1, r->memory_mb, r});
  }
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
    return std::tie(a.time_us, a.delta) < std::tie(b.time_us, b.delta);
  });
  return edges;
}

int instances_for(int64_t memory_mb, int instance_memory_mb) {
  if (memory_mb <= 0) return 0;
  int per = std::max(1, instance_memory_mb);
  return int((memory_mb + per - 1) / per);
}

}  // namespace

std::optional<int64_t> parse_time(const std::string& text, int64_t now_ms) {
  if (text.empty()) return std::nullopt;
  auto digits = [](std::string_view v) {
    return !v.empty() && v.size() <= 15 &&
           std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string_view v = text;
  if (digits(v)) return std::stoll(text);
  const char unit = v.back();
  if (digits(v.substr(0, v.size() - 1))) {
    int64_t n = std::stoll(std::string(v.substr(0, v.size() - 1)));
    int64_t per = unit == 's'   ? 1'000
                  : unit == 'm' ? 60'000
                  : unit == 'h' ? kHourMs
                  : unit == 'd' ? 24 * kHourMs
                                : 0;
    if (per == 0) return std::nullopt;
    return now_ms - n * per;
  }
  // ISO-8601 UTC: YYYY-MM-DDTHH:MM:SS[.fff]Z
  int y, mo, d, h, mi;
  double sec;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%lf%c", &y, &mo, &d, &h, &mi, &sec, &tail) !=
          7 ||
      tail != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 ||
      sec >= 61) {
    return std::nullopt;
  }
  // Days from the civil date (Howard Hinnant's algorithm), no time zone
  // database involved.
  y -= mo <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = era * 146097 + doe - 719468;
  return ((days * 24 + h) * 60 + mi) * 60'000 + int64_t(std::llround(sec * 1000));
}

double gb_seconds(int memory_mb, int64_t billed_ms) {
  return (double(memory_mb) / 1024.0) * (double(billed_ms) / 1000.0);
}

Usage compute_usage(const std::vector<InvocationRecord>& records, int64_t since_ms,
                    int64_t until_ms, const Prices& prices) {
  Usage u;
  u.since_ms = since_ms;
  u.until_ms = until_ms;
  u.hours = double(std::max<int64_t>(0, until_ms - since_ms)) / double(kHourMs);
  u.prices = prices;

  std::map<std::pair<int64_t, std::string>, HourUsage> hourly;
  std::map<std::string, FunctionUsage> functions;
  std::map<std::string, std::vector<const InvocationRecord*>> by_function;
  std::vector<const InvocationRecord*> all;
  for (const InvocationRecord& r : records) {
    if (r.start_ms < since_ms || r.start_ms >= until_ms) continue;
    const double gbs = gb_seconds(r.memory_mb, r.billed_ms);
    HourUsage& h = hourly[{hour_of(r.start_ms), r.function}];
    h.hour_ms = hour_of(r.start_ms);
    h.function = r.function;
    h.requests++;
    h.errors += r.status == "error";
    h.billed_ms += r.billed_ms;
    h.gb_seconds += gbs;
    FunctionUsage& f = functions[r.function];
    f.function = r.function;
    f.requests++;
    f.errors += r.status == "error";
    f.billed_ms += r.billed_ms;
    f.gb_seconds += gbs;
    f.memory_mb = std::max(f.memory_mb, r.memory_mb);
    by_function[r.function].push_back(&r);
    all.push_back(&r);
  }

  // Peak concurrency of each function, and of its hours (an hour's peak is
  // the most running when one of its invocations started).
  for (auto& [name, list] : by_function) {
    int running = 0;
    FunctionUsage& f = functions[name];
    for (const Edge& e : edges_of(list)) {
      running += e.delta;
      if (e.delta > 0) {
        f.peak_concurrency = std::max(f.peak_concurrency, running);
        HourUsage& h = hourly[{hour_of(e.record->start_ms), name}];
        h.peak_concurrency = std::max(h.peak_concurrency, running);
      }
    }
  }
  // The whole platform's peak, in invocations and in memory in use.
  int running = 0;
  int64_t running_mb = 0, peak_mb = 0;
  for (const Edge& e : edges_of(all)) {
    running += e.delta;
    running_mb += int64_t(e.delta) * e.memory_mb;
    if (e.delta > 0) {
      u.total.peak_concurrency = std::max(u.total.peak_concurrency, running);
      peak_mb = std::max(peak_mb, running_mb);
    }
  }

  auto price = [&](int64_t requests, double gbs, double* req_cost, double* compute_cost) {
    *req_cost = double(requests) * prices.request_usd_per_million / 1e6;
    *compute_cost = gbs * prices.gb_second_usd;
    return *req_cost + *compute_cost;
  };
  for (auto& [key, h] : hourly) {
    double rc, cc;
    h.cost_usd = price(h.requests, h.gb_seconds, &rc, &cc);
    u.hourly.push_back(h);
  }
  for (auto& [name, f] : functions) {
    f.cost_usd = price(f.requests, f.gb_seconds, &f.request_cost_usd, &f.compute_cost_usd);
    f.rented_instances =
        instances_for(int64_t(f.peak_concurrency) * f.memory_mb, prices.rented_instance_memory_mb);
    f.rented_cost_usd = f.rented_instances * prices.rented_instance_hourly_usd * u.hours;
    u.total.requests += f.requests;
    u.total.errors += f.errors;
    u.total.billed_ms += f.billed_ms;
    u.total.gb_seconds += f.gb_seconds;
    u.total.memory_mb = std::max(u.total.memory_mb, f.memory_mb);
    u.functions.push_back(f);
  }
  u.total.cost_usd = price(u.total.requests, u.total.gb_seconds, &u.total.request_cost_usd,
                           &u.total.compute_cost_usd);
  u.total.rented_instances = instances_for(peak_mb, prices.rented_instance_memory_mb);
  u.total.rented_cost_usd = u.total.rented_instances * prices.rented_instance_hourly_usd * u.hours;
  return u;
}

}  // namespace tamaya::meter
