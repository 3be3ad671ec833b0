#include "events/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/encoding.h"
#include "common/json_text.h"
#include "common/strings.h"
#include "events/backoff.h"

namespace tamaya::events {

namespace {

constexpr const char* kAccount = "000000000000";  // the Lambda API's default account

std::pair<std::string, std::string> split_qualifier(const std::string& target) {
  size_t colon = target.find(':');
  if (colon == std::string::npos) return {target, ""};
  return {target.substr(0, colon), target.substr(colon + 1)};
}

}  // namespace

struct Events::Impl : std::enable_shared_from_this<Events::Impl> {
  Impl(Services s, std::unique_ptr<QueueStore> store)
      : s(s), writer(std::move(store)), timer(s.io) {}

  struct FunctionState {
    int in_flight = 0;
    std::deque<std::string> parked;  // due, but the function is at its concurrency
  };

  // What the last attempt said, for the destination record.
  struct LastAttempt {
    int status_code = 0;
    std::string executed_version;
    std::string function_error;
    std::string response;
    std::string error;  // for people
  };

  Services s;
  QueueWriter writer;
  boost::asio::steady_timer timer;
  int64_t timer_due = INT64_MAX;

  std::unordered_map<std::string, Event> events;  // every queued event, in flight or not
  std::multimap<int64_t, std::string> ready;      // due_ms → id, not in flight
  std::unordered_map<std::string, FunctionState> functions;
  std::unordered_map<std::string, LastAttempt> last;  // by event id, after a failed attempt
  std::map<std::string, InvokeConfig> configs;
  int64_t pending_accepts = 0;  // submitted to the writer, not yet committed
  int64_t queued_bytes = 0;
  bool stopping = false;
  Stats counters;

  int64_t now_ms() const { return s.clock.wall_ms(); }

  InvokeConfig effective(const std::string& function) const {
    auto it = configs.find(function);
    if (it != configs.end()) return it->second;
    InvokeConfig c;
    c.function = function;
    return c;
  }

  std::string arn(const std::string& function, const std::string& version) const {
    std::string out =
        fmt::format("arn:aws:lambda:{}:{}:function:{}", s.settings.region, kAccount, function);
    if (!version.empty()) out += ":" + version;
    return out;
  }

  void index(Event e) {
    const std::string id = e.id;
    int64_t due = e.due_ms;
    queued_bytes += int64_t(e.payload.size());
    events.insert_or_assign(id, std::move(e));
    ready.emplace(due, id);
  }

  void forget(const std::string& id) {
    auto it = events.find(id);
    if (it == events.end()) return;
    queued_bytes -= int64_t(it->second.payload.size());
    events.erase(it);
    last.erase(id);
  }

  void arm(int64_t due_ms) {
    if (due_ms >= timer_due) return;
    timer_due = due_ms;
    int64_t wait = std::max<int64_t>(0, due_ms - now_ms());
    timer.expires_after(std::chrono::milliseconds(wait));
    timer.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      timer_due = INT64_MAX;
      pump();
    });
  }

  void pump() {
    if (stopping) return;
    const int limit = s.settings.events_delivery_concurrency;
    if (limit <= 0) return;  // paused by setting: events stay queued
    int64_t now = now_ms();
    while (counters.in_flight < limit && !ready.empty() && ready.begin()->first <= now) {
      std::string id = std::move(ready.begin()->second);
      ready.erase(ready.begin());
      if (events.count(id)) deliver(id, now);
    }
    if (!ready.empty() && counters.in_flight < limit) arm(ready.begin()->first);
  }

  void deliver(const std::string& id, int64_t now) {
    Event& e = events.at(id);
    InvokeConfig cfg = effective(e.function);
    if (now - e.enqueued_ms >= int64_t(cfg.max_event_age_s) * 1000) {
      return fail(id, "EventAgeExceeded");
    }
    auto target = s.resolve(e.function, e.qualifier);
    if (!target.ok()) {
      LastAttempt& l = last[id];
      l.status_code = target.status().code() == Code::kNotFound ? 404 : 500;
      l.error = target.status().message();
      l.response =
          json_text({{"errorMessage", l.error}, {"errorType", "ResourceNotFoundException"}});
      if (target.status().code() == Code::kNotFound) return fail(id, "RetriesExhausted");
      return retry_throttled(id, now);
    }
    int cap = target->concurrency;
    if (cap <= 0) {
      LastAttempt& l = last[id];
      l.status_code = 429;
      l.error = "the function's reserved concurrency is 0";
      l.response =
          nlohmann::json{{"errorMessage", l.error}, {"errorType", "TooManyRequestsException"}}
              .dump();
      return retry_throttled(id, now);
    }
    FunctionState& fs = functions[e.function];
    if (fs.in_flight >= cap) {
      // Never more deliveries than the function may run at once: the rest wait
      // here, off the dispatcher's queue, and go when one finishes.
      fs.parked.push_back(id);
      return;
    }
    ++fs.in_flight;
    ++counters.in_flight;
    e.leased_ms = now;
    writer.submit([id, now](QueueStore& q) { return q.lease(id, now); });

    dispatch::InvokeRequest ir;
    ir.target = std::move(target->target);
    ir.trigger = e.trigger;
    ir.payload = e.payload;
    ir.request_id = e.id;  // the id the function sees, the same on every retry
    ir.trace_id = e.trace_id;
    std::string function = e.function;
    s.dispatcher.invoke(std::move(ir),
                        [weak = weak_from_this(), id, function](dispatch::InvokeResult r) {
                          if (auto self = weak.lock()) self->finished(id, function, std::move(r));
                        });
  }

  void release(const std::string& function) {
    --counters.in_flight;
    FunctionState& fs = functions[function];
    --fs.in_flight;
    if (!fs.parked.empty()) {
      ready.emplace(now_ms(), std::move(fs.parked.front()));
      fs.parked.pop_front();
    }
    if (fs.in_flight == 0 && fs.parked.empty()) functions.erase(function);
  }

  void finished(const std::string& id, const std::string& function, dispatch::InvokeResult r) {
    release(function);
    auto it = events.find(id);
    if (it == events.end()) return pump();
    Event& e = it->second;
    e.leased_ms = 0;
    int64_t now = now_ms();
    if (!r.status.ok()) {
      Code code = r.status.code();
      LastAttempt& l = last[id];
      l.error = r.status.message();
      l.function_error.clear();
      if (code == Code::kUnavailable && stopping) {
        // Refused by the drain: left in the queue for the next start.
        writer.submit([id](QueueStore& q) { return q.unlease(id); });
        return;
      }
      if (code == Code::kTooLarge || code == Code::kInvalidArgument || code == Code::kNotFound) {
        l.status_code = code == Code::kTooLarge ? 413 : code == Code::kNotFound ? 404 : 400;
        l.response = json_text({{"errorMessage", l.error}});
        fail(id, "RetriesExhausted");
      } else {
        l.status_code = code == Code::kResourceExhausted ? 429 : 500;
        l.response =
            json_text({{"errorMessage", l.error},
                       {"errorType", code == Code::kResourceExhausted ? "TooManyRequestsException"
                                                                      : "ServiceException"}});
        retry_throttled(id, now);
      }
      return pump();
    }
    ++counters.deliveries;
    ++e.invokes;
    e.throttles = 0;
    InvokeConfig cfg = effective(e.function);
    if (r.function_error) {
      LastAttempt& l = last[id];
      l.status_code = 200;
      l.executed_version = r.executed_version;
      l.function_error = "Unhandled";
      l.response = std::move(r.payload);
      l.error = r.error_type;
      if (e.invokes <= cfg.max_retry_attempts) {
        ++counters.retries;
        schedule(id, now + function_error_delay_ms(s.settings, e.invokes), cfg);
      } else {
        fail(id, "RetriesExhausted");
      }
      return pump();
    }
    ++counters.succeeded;
    if (!cfg.on_success.empty()) {
      RecordFields f = record_of(e, "Success");
      f.status_code = 200;
      f.executed_version = r.executed_version;
      f.response_payload = r.payload;
      send_to_destination(id, cfg.on_success, invocation_record(f));
    } else {
      writer.submit([id](QueueStore& q) { return q.remove(id); });
    }
    forget(id);
    pump();
  }

  // Next attempt at `due`, but never past the event's maximum age: at that
  // point it is due once more, and deliver() sends it to failure.
  void schedule(const std::string& id, int64_t due, const InvokeConfig& cfg) {
    Event& e = events.at(id);
    e.due_ms = std::min(due, e.enqueued_ms + int64_t(cfg.max_event_age_s) * 1000);
    writer.submit([copy = Event{e.id,
                                e.function,
                                e.qualifier,
                                {},
                                {},
                                e.trigger,
                                e.enqueued_ms,
                                e.due_ms,
                                e.invokes,
                                e.throttles,
                                0}](QueueStore& q) { return q.reschedule(copy); });
    ready.emplace(e.due_ms, id);
  }

  void retry_throttled(const std::string& id, int64_t now) {
    Event& e = events.at(id);
    ++e.throttles;
    ++counters.throttles;
    schedule(id, now + throttle_delay_ms(s.settings, e.throttles), effective(e.function));
  }

  RecordFields record_of(const Event& e, const std::string& condition) const {
    RecordFields f;
    f.timestamp_ms = now_ms();
    f.request_id = e.id;
    f.function_arn = arn(e.function, e.qualifier.empty() ? "$LATEST" : e.qualifier);
    f.condition = condition;
    f.approximate_invoke_count = e.invokes;
    f.request_payload = e.payload;
    return f;
  }

  // The record goes to `destination` as a new async event; the original
  // leaves the queue in the same transaction.
  void send_to_destination(const std::string& id, const std::string& destination,
                           std::string record) {
    auto [fn, qualifier] = split_qualifier(destination);
    Event d;
    d.id = new_request_id();
    d.function = fn;
    d.qualifier = qualifier;
    d.payload = std::move(record);
    d.trace_id = events.at(id).trace_id;
    d.enqueued_ms = d.due_ms = now_ms();
    ++counters.destination_events;
    ++pending_accepts;
    auto copy = std::make_shared<Event>(std::move(d));
    writer.submit(
        [copy, id](QueueStore& q) -> Status {
          TAMAYA_RETURN_IF_ERROR(q.insert(*copy));
          return q.remove(id);
        },
        [this, copy](Status st) {
          boost::asio::post(s.io, [this, copy, st = std::move(st)] {
            --pending_accepts;
            if (!st.ok()) {
              spdlog::error("event destination not queued function={} error={}", copy->function,
                            st.message());
              return;
            }
            index(std::move(*copy));
            pump();
          });
        });
  }

  void fail(const std::string& id, const std::string& condition) {
    Event& e = events.at(id);
    ++counters.failed;
    InvokeConfig cfg = effective(e.function);
    LastAttempt l = last.count(id) ? last[id] : LastAttempt{};
    RecordFields f = record_of(e, condition);
    f.status_code = l.status_code;
    f.executed_version = l.executed_version;
    f.function_error = l.function_error;
    f.response_payload = l.response;
    std::string record = invocation_record(f);
    spdlog::info("async event failed request_id={} function={} condition={} invokes={}", id,
                 e.function, condition, e.invokes);
    if (!cfg.on_failure.empty()) {
      send_to_destination(id, cfg.on_failure, std::move(record));
    } else {
      DeadLetter d;
      d.id = e.id;
      d.function = e.function;
      d.qualifier = e.qualifier;
      d.payload = e.payload;
      d.trace_id = e.trace_id;
      d.condition = condition;
      d.error = l.error;
      d.invokes = e.invokes;
      d.enqueued_ms = e.enqueued_ms;
      d.failed_ms = f.timestamp_ms;
      d.record = std::move(record);
      ++counters.dead_letters;
      writer.submit([d = std::move(d)](QueueStore& q) { return q.dead_letter(d); });
    }
    forget(id);
  }
};

Events::Events(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Events::~Events() = default;

Result<std::unique_ptr<Events>> Events::open(Services services, const std::string& path) {
  TAMAYA_ASSIGN_OR_RETURN(auto store, QueueStore::open(path));
  TAMAYA_ASSIGN_OR_RETURN(std::vector<Event> queued, store->load());
  TAMAYA_ASSIGN_OR_RETURN(std::vector<InvokeConfig> configs, store->configs());
  TAMAYA_ASSIGN_OR_RETURN(int64_t dead, store->dead_letter_count());
  auto impl = std::make_shared<Impl>(services, std::move(store));
  for (InvokeConfig& c : configs) impl->configs[c.function] = std::move(c);
  impl->counters.dead_letters = dead;
  int64_t leased = 0;
  for (Event& e : queued) {
    // A lease left by the previous run means it stopped (or died) during the
    // delivery: the function may have run, and runs again — at least once.
    if (e.leased_ms > 0) ++leased;
    e.leased_ms = 0;
    impl->index(std::move(e));
  }
  impl->counters.redelivered = leased;
  if (!queued.empty() || dead > 0) {
    spdlog::info("event queue recovered path={} queued={} leased={} dead_letters={}", path,
                 queued.size(), leased, dead);
  }
  boost::asio::post(services.io, [weak = std::weak_ptr<Impl>(impl)] {
    if (auto self = weak.lock()) self->pump();
  });
  return std::unique_ptr<Events>(new Events(std::move(impl)));
}

void Events::enqueue(EnqueueRequest request, std::function<void(Result<std::string>)> accepted) {
  Impl& m = *impl_;
  int64_t depth = int64_t(m.events.size()) + m.pending_accepts;
  if (depth >= m.s.settings.events_max_queue_depth) {
    return accepted(Status::Exhausted(fmt::format(
        "the async queue holds {} events, its limit (events_max_queue_depth); retry later",
        depth)));
  }
  if (m.queued_bytes + int64_t(request.payload.size()) > m.s.settings.events_max_queued_bytes) {
    return accepted(Status::Exhausted(
        "the async queue holds events_max_queued_bytes of payloads; retry later"));
  }
  auto e = std::make_shared<Event>();
  e->id = request.request_id.empty() ? new_request_id() : std::move(request.request_id);
  e->function = std::move(request.function);
  e->qualifier = std::move(request.qualifier);
  e->payload = std::move(request.payload);
  e->trace_id = std::move(request.trace_id);
  e->trigger = std::move(request.trigger);
  e->enqueued_ms = e->due_ms = m.now_ms();
  ++m.pending_accepts;
  m.queued_bytes += int64_t(e->payload.size());  // reserved until committed
  Impl* raw = impl_.get();
  m.writer.submit([e](QueueStore& q) { return q.insert(*e); },
                  [raw, e, accepted = std::move(accepted)](Status st) mutable {
                    boost::asio::post(
                        raw->s.io, [raw, e, st = std::move(st), accepted = std::move(accepted)] {
                          --raw->pending_accepts;
                          raw->queued_bytes -= int64_t(e->payload.size());
                          if (!st.ok())
                            return accepted(st.with_context("async event not accepted"));
                          ++raw->counters.accepted;
                          std::string id = e->id;
                          raw->index(std::move(*e));
                          accepted(id);
                          raw->pump();
                        });
                  });
}

Result<InvokeConfig> Events::config(const std::string& function) const {
  auto it = impl_->configs.find(function);
  if (it == impl_->configs.end()) {
    return Status::NotFound(
        fmt::format("The function {} doesn't have an EventInvokeConfig; put one first", function));
  }
  return it->second;
}

Result<std::string> Events::parse_destination(const std::string& raw) {
  if (raw.empty()) return std::string();
  if (raw.rfind("arn:", 0) != 0) return raw;
  // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
  std::vector<std::string_view> parts = split(raw, ':');
  if (parts.size() < 7 || parts[2] != "lambda" || parts[5] != "function") {
    return Status::Invalid(fmt::format(
        "destination '{}' is not a Lambda function ARN; tamaya sends destinations to functions "
        "only (arn:aws:lambda:<region>:<account>:function:<name>, or the name)",
        raw));
  }
  std::string out(parts[6]);
  if (parts.size() > 7 && !parts[7].empty()) out.append(":").append(parts[7]);
  return out;
}

void Events::put_config(InvokeConfig config, std::function<void(Result<InvokeConfig>)> done) {
  Impl& m = *impl_;
  if (config.max_retry_attempts < 0 || config.max_retry_attempts > kMaxMaxRetryAttempts) {
    return done(Status::Invalid(fmt::format("MaximumRetryAttempts must be between 0 and {}, got {}",
                                            kMaxMaxRetryAttempts, config.max_retry_attempts)));
  }
  if (config.max_event_age_s < m.s.settings.events_min_event_age_s ||
      config.max_event_age_s > kMaxEventAgeS) {
    return done(Status::Invalid(
        fmt::format("MaximumEventAgeInSeconds must be between {} and {}, got {}",
                    m.s.settings.events_min_event_age_s, kMaxEventAgeS, config.max_event_age_s)));
  }
  for (std::string* dest : {&config.on_success, &config.on_failure}) {
    auto parsed = parse_destination(*dest);
    if (!parsed.ok()) return done(parsed.status());
    *dest = *parsed;
    if (dest->empty()) continue;
    auto [fn, qualifier] = split_qualifier(*dest);
    if (auto t = m.s.resolve(fn, qualifier); !t.ok()) {
      return done(Status::Invalid(fmt::format("destination function '{}' does not exist: {}", *dest,
                                              t.status().message())));
    }
  }
  config.last_modified_ms = m.now_ms();
  Impl* raw = impl_.get();
  auto copy = std::make_shared<InvokeConfig>(std::move(config));
  m.writer.submit([copy](QueueStore& q) { return q.put_config(*copy); },
                  [raw, copy, done = std::move(done)](Status st) mutable {
                    boost::asio::post(raw->s.io,
                                      [raw, copy, st = std::move(st), done = std::move(done)] {
                                        if (!st.ok()) return done(st);
                                        raw->configs[copy->function] = *copy;
                                        done(*copy);
                                      });
                  });
}

void Events::delete_config(const std::string& function, std::function<void(Status)> done) {
  if (!impl_->configs.count(function)) {
    return done(config(function).status());
  }
  Impl* raw = impl_.get();
  impl_->writer.submit(
      [function](QueueStore& q) { return q.delete_config(function); },
      [raw, function, done = std::move(done)](Status st) mutable {
        boost::asio::post(raw->s.io, [raw, function, st = std::move(st), done = std::move(done)] {
          if (st.ok()) raw->configs.erase(function);
          done(st);
        });
      });
}

void Events::dead_letters(const std::string& function, int limit,
                          std::function<void(Result<std::vector<DeadLetter>>)> done) {
  Impl* raw = impl_.get();
  auto out = std::make_shared<Result<std::vector<DeadLetter>>>(std::vector<DeadLetter>{});
  raw->writer.submit(
      [function, limit, out](QueueStore& q) -> Status {
        *out = q.dead_letters(function, limit);
        return out->ok() ? Status::Ok() : out->status();
      },
      [raw, out, done = std::move(done)](const Status&) mutable {
        boost::asio::post(raw->s.io, [out, done = std::move(done)] { done(std::move(*out)); });
      });
}

void Events::redrive(const std::string& function, const std::string& id,
                     std::function<void(Result<int>)> done) {
  Impl* raw = impl_.get();
  auto out = std::make_shared<Result<std::vector<Event>>>(std::vector<Event>{});
  int64_t now = raw->now_ms();
  raw->writer.submit(
      [function, id, now, out](QueueStore& q) -> Status {
        *out = q.redrive(function, id, now);
        return out->ok() ? Status::Ok() : out->status();
      },
      [raw, out, id, done = std::move(done)](Status st) mutable {
        boost::asio::post(raw->s.io, [raw, out, id, st = std::move(st), done = std::move(done)] {
          if (!st.ok()) return done(st);
          int n = 0;
          for (Event& e : **out) {
            if (raw->events.count(e.id)) continue;
            raw->index(std::move(e));
            ++n;
            --raw->counters.dead_letters;
          }
          if (n == 0 && !id.empty()) {
            return done(Status::NotFound(
                fmt::format("no dead letter with id {}; list them with tamaya dlq ls", id)));
          }
          done(n);
          raw->pump();
        });
      });
}

Stats Events::stats() const {
  const Impl& m = *impl_;
  Stats out = m.counters;
  out.queue_depth = int64_t(m.events.size());
  int64_t oldest = INT64_MAX;
  for (const auto& [id, e] : m.events) oldest = std::min(oldest, e.enqueued_ms);
  out.oldest_age_ms = m.events.empty() ? 0 : std::max<int64_t>(0, m.now_ms() - oldest);
  out.commits = m.writer.commits();
  return out;
}

void Events::stop() {
  impl_->stopping = true;
  impl_->timer.cancel();
}

void Events::flush() { impl_->writer.flush(); }

}  // namespace tamaya::events
