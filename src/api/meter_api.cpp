#include "api/meter_api.h"

#include <fmt/format.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "common/json_text.h"
#include "common/time_format.h"
#include "meter/records.h"
#include "net/json_body.h"

namespace tamaya::api {

namespace {

using nlohmann::json;
namespace asio = boost::asio;

json record_json(const meter::InvocationRecord& r) {
  return {{"id", r.id},
          {"request_id", r.request_id},
          {"function", r.function},
          {"version", r.version},
          {"trigger", r.trigger},
          {"start", format_iso8601(r.start_ms)},
          {"start_ms", r.start_ms},
          {"duration_ms", r.duration_ms},
          {"billed_duration_ms", r.billed_ms},
          {"init_duration_ms", r.init_ms},
          {"memory_size_mb", r.memory_mb},
          {"max_memory_used_mb", r.max_memory_used_mb},
          {"status", r.status},
          {"error_type", r.error_type},
          {"cold", r.cold}};
}

json usage_row(const meter::FunctionUsage& f) {
  return {{"function", f.function},
          {"requests", f.requests},
          {"errors", f.errors},
          {"billed_ms", f.billed_ms},
          {"gb_seconds", f.gb_seconds},
          {"request_cost_usd", f.request_cost_usd},
          {"compute_cost_usd", f.compute_cost_usd},
          {"cost_usd", f.cost_usd},
          {"peak_concurrency", f.peak_concurrency},
          {"memory_mb", f.memory_mb},
          {"rented_instances", f.rented_instances},
          {"rented_cost_usd", f.rented_cost_usd}};
}

// since/until query parameters: see meter::parse_time.
Result<std::optional<int64_t>> time_param(const net::Request& req, const char* name,
                                          int64_t now_ms) {
  auto v = req.query_param(name);
  if (!v || v->empty()) return std::optional<int64_t>();
  auto t = meter::parse_time(*v, now_ms);
  if (!t) {
    return Status::Invalid(
        fmt::format("'{}={}' is not a time; use a duration back from now (90s, 15m, 1h, 7d), epoch "
                    "milliseconds or ISO-8601 UTC (2026-11-25T10:00:00Z)",
                    name, *v));
  }
  return std::optional<int64_t>(*t);
}

class Handlers : public std::enable_shared_from_this<Handlers> {
 public:
  explicit Handlers(MeterServices s) : s_(s) {}

  void metrics(const net::Request&, const net::Params&, const net::Responder& respond) {
    net::Response r{200, {}, s_.metrics.render()};
    r.set_header("Content-Type", meter::kMetricsContentType);
    respond(std::move(r));
  }

  void invocations(const net::Request& req, const net::Params&, const net::Responder& respond) {
    static const std::set<std::string> kStatuses = {"success", "error"};
    static const std::set<std::string> kTriggers = {"api", "gateway", "async", "schedule"};
    meter::RecordQuery q;
    q.function = req.query_param("function").value_or("");
    q.status = req.query_param("status").value_or("");
    q.trigger = req.query_param("trigger").value_or("");
    if (!q.status.empty() && !kStatuses.count(q.status)) {
      return respond(net::Response::error(
          Status::Invalid("status '" + q.status + "' is unknown; use success or error")));
    }
    if (!q.trigger.empty() && !kTriggers.count(q.trigger)) {
      return respond(net::Response::error(Status::Invalid(
          "trigger '" + q.trigger + "' is unknown; use api, gateway, async or schedule")));
    }
    const int64_t now = s_.clock.wall_ms();
    auto since = time_param(req, "since", now);
    if (!since.ok()) return respond(net::Response::error(since.status()));
    auto until = time_param(req, "until", now);
    if (!until.ok()) return respond(net::Response::error(until.status()));
    q.since_ms = *since;
    q.until_ms = *until;
    if (auto v = req.query_param("limit")) {
      try {
        size_t used = 0;
        q.limit = std::stoi(*v, &used);
        if (used != v->size()) throw std::invalid_argument(*v);
      } catch (const std::exception&) {
        return respond(net::Response::error(Status::Invalid(
            fmt::format("limit must be an integer from 1 to {}", meter::kMaxRecordQueryLimit))));
      }
    }
    auto records = s_.logs.invocations(q);
    if (!records.ok()) return respond(net::Response::error(records.status()));
    json arr = json::array();
    for (const auto& r : *records) arr.push_back(record_json(r));
    respond(net::json_response(200, {{"invocations", arr}}));
  }

  void usage(const net::Request& req, const net::Params&, const net::Responder& respond) {
    const int64_t now = s_.clock.wall_ms();
    auto since = time_param(req, "since", now);
    if (!since.ok()) return respond(net::Response::error(since.status()));
    auto until = time_param(req, "until", now);
    if (!until.ok()) return respond(net::Response::error(until.status()));
    const int64_t from = since->value_or(now - 24 * 3'600'000ll);
    const int64_t to = until->value_or(now);
    if (to <= from) {
      return respond(net::Response::error(
          Status::Invalid("'until' must be after 'since'; the window is empty")));
    }
    auto records = s_.logs.records_between(from, to);
    if (!records.ok()) return respond(net::Response::error(records.status()));
    meter::Prices prices;
    prices.request_usd_per_million = s_.settings.price_request_usd_per_million;
    prices.gb_second_usd = s_.settings.price_gb_second_usd;
    prices.rented_instance_hourly_usd = s_.settings.rented_instance_hourly_usd;
    prices.rented_instance_memory_mb = s_.settings.rented_instance_memory_mb;
    meter::Usage u = meter::compute_usage(*records, from, to, prices);
    json hourly = json::array();
    for (const auto& h : u.hourly) {
      hourly.push_back({{"hour", format_iso8601(h.hour_ms)},
                        {"function", h.function},
                        {"requests", h.requests},
                        {"errors", h.errors},
                        {"billed_ms", h.billed_ms},
                        {"gb_seconds", h.gb_seconds},
                        {"cost_usd", h.cost_usd},
                        {"peak_concurrency", h.peak_concurrency}});
    }
    json functions = json::array();
    for (const auto& f : u.functions) functions.push_back(usage_row(f));
    json total = usage_row(u.total);
    total.erase("function");
    total["savings_usd"] = u.total.rented_cost_usd - u.total.cost_usd;
    respond(net::json_response(200,
                               {{"since", format_iso8601(u.since_ms)},
                                {"until", format_iso8601(u.until_ms)},
                                {"hours", u.hours},
                                {"prices",
                                 {{"request_usd_per_million", prices.request_usd_per_million},
                                  {"gb_second_usd", prices.gb_second_usd},
                                  {"rented_instance_hourly_usd", prices.rented_instance_hourly_usd},
                                  {"rented_instance_memory_mb", prices.rented_instance_memory_mb}}},
                                {"hourly", hourly},
                                {"functions", functions},
                                {"total", total}}));
  }

  static std::string sse_events(const std::vector<meter::LogEvent>& events) {
    std::string text;
    for (const auto& e : events) {
      text += "data: ";
      text +=
          json_text({{"time_ms", e.time_ms}, {"request_id", e.request_id}, {"message", e.message}});
      text += "\n\n";
    }
    return text;
  }

  // One follower: the stream, its registration in the log store and its
  // heartbeat timer. Lives while the stream is open.
  struct Follow {
    std::shared_ptr<net::ResponseStream> stream;
    int64_t id = 0;
    std::unique_ptr<asio::steady_timer> heartbeat;
  };

  void stream_logs(const net::Request& req, net::Params p, const net::Responder& respond) {
    const std::string name = p["name"];
    if (auto f = s_.registry.get(name); !f.ok()) return respond(net::Response::error(f.status()));
    // ?since_id=N: the stream starts with the stored lines after N, so a
    // client that read the history up to N misses nothing and sees nothing
    // twice (the lines still in the writer's queue are flushed first, and
    // appends happen on this thread, so none slips in between).
    std::optional<int64_t> since_id;
    if (auto v = req.query_param("since_id")) {
      try {
        since_id = std::stoll(*v);
      } catch (const std::exception&) {
        return respond(net::Response::error(
            Status::Invalid("since_id must be an integer (next_since_id of GET /logs)")));
      }
    }
    std::vector<meter::LogEvent> backlog;
    if (since_id) {
      s_.logs.flush();
      auto events = s_.logs.query(name, *since_id, meter::kMaxLogQueryLimit, "");
      if (!events.ok()) return respond(net::Response::error(events.status()));
      backlog = std::move(*events);
    }
    if (open_streams_ >= s_.settings.logs_follow_max_streams) {
      return respond(net::Response::error(Status::Exhausted(fmt::format(
          "{} log streams are open, the most allowed (setting logs_follow_max_streams); close "
          "one or poll GET /v1/functions/{}/logs",
          open_streams_, name))));
    }
    net::Response head{200, {}, ": following " + name + "\n\n"};
    head.set_header("Content-Type", "text/event-stream");
    head.set_header("Cache-Control", "no-cache");
    head.set_header("X-Accel-Buffering", "no");
    auto follow = std::make_shared<Follow>();
    follow->stream = respond.stream(head, size_t(s_.settings.logs_follow_max_buffer_bytes));
    if (follow->stream->closed()) return;
    open_streams_++;
    if (!backlog.empty()) follow->stream->write(sse_events(backlog));
    std::weak_ptr<Follow> weak = follow;
    asio::io_context& io = s_.io;
    follow->id = s_.logs.follow(name, [weak, &io](const std::vector<meter::LogEvent>& events) {
      std::string text = sse_events(events);
      // Usually already on the io_context (the dispatcher's observer).
      asio::dispatch(io, [weak, text = std::move(text)]() mutable {
        if (auto f = weak.lock()) f->stream->write(std::move(text));
      });
    });
    follow->heartbeat = std::make_unique<asio::steady_timer>(s_.io);
    arm_heartbeat(follow);
    // The stream owns nothing; this callback (held by the stream's state)
    // keeps the follow alive until the stream ends.
    auto self = shared_from_this();
    follow->stream->on_close([self, follow]() mutable {
      self->open_streams_--;
      follow->heartbeat->cancel();
      // Not inline: a write from inside the store's follower callback may be
      // what closed the stream, and unfollow takes the same lock.
      asio::post(self->s_.io, [self, id = follow->id] { self->s_.logs.unfollow(id); });
      follow.reset();
    });
  }

 private:
  void arm_heartbeat(const std::shared_ptr<Follow>& follow) {
    follow->heartbeat->expires_after(kLogStreamHeartbeat);
    std::weak_ptr<Follow> weak = follow;
    follow->heartbeat->async_wait([this, weak](boost::system::error_code ec) {
      auto f = weak.lock();
      if (ec || !f || f->stream->closed()) return;
      if (f->stream->write(": keep-alive\n\n")) arm_heartbeat(f);
    });
  }

  MeterServices s_;
  int open_streams_ = 0;
};

}  // namespace

void add_meter_routes(net::Router& router, MeterServices services) {
  auto h = std::make_shared<Handlers>(services);
  // Each handler takes what it keeps by value and what it only reads by
  // const reference.
  auto bind = [h](auto fn) {
    return [h, fn](net::Request r, net::Params p, net::Responder respond) {
      ((*h).*fn)(std::move(r), std::move(p), std::move(respond));
    };
  };
  router.add("GET", "/metrics", bind(&Handlers::metrics));
  router.add("GET", "/v1/invocations", bind(&Handlers::invocations));
  router.add("GET", "/v1/usage", bind(&Handlers::usage));
  router.add("GET", "/v1/functions/{name}/logs/stream", bind(&Handlers::stream_logs));
}

}  // namespace tamaya::api
