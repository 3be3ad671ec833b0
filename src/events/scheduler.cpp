#include "events/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "common/encoding.h"
#include "common/time_format.h"

namespace tamaya::events {

namespace {

using nlohmann::json;

// The real timer wakes at least this often, so a wall clock set forward (or
// a machine that slept) is noticed within this time.
constexpr std::chrono::milliseconds kMaxTimerWait{60'000};
// After a fire could not be recorded (database busy), try again this late
// instead of spinning.
constexpr std::chrono::milliseconds kRetryAfterFailure{1'000};
constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxDescriptionLength = 512;

// EventBridge's "time": seconds, no fraction.
std::string event_time(int64_t ms) {
  std::string s = format_iso8601(ms);
  if (size_t dot = s.find('.'); dot != std::string::npos) s = s.substr(0, dot) + "Z";
  return s;
}

json time_or_null(int64_t ms) { return ms > 0 ? json(format_iso8601(ms)) : json(nullptr); }

// The same schedule and time always get the same id, so a handler can tell
// a repeat from a new fire; the creation time keeps a re-created schedule of
// the same name apart.
std::string fire_id(const std::string& name, int64_t created_ms, int64_t scheduled_ms) {
  std::string h =
      sha256_hex(name + "\n" + std::to_string(created_ms) + "\n" + std::to_string(scheduled_ms));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

Status check_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return Status::Invalid("schedule name must be 1 to 64 characters");
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return Status::Invalid("schedule name '" + name +
                             "' may hold only letters, digits, '.', '-' and '_'");
    }
  }
  return Status::Ok();
}

Result<std::string> string_field(const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) return Status::Invalid(std::string("'") + key + "' is required");
    return std::string();
  }
  if (!it->is_string()) return Status::Invalid(std::string("'") + key + "' must be a string");
  return it->get<std::string>();
}

}  // namespace

Scheduler::Scheduler(boost::asio::io_context& io, store::Database& db, const Clock& clock,
                     ManualWallClock* manual, SchedulerOptions options, FireSink sink,
                     TargetCheck check)
    : store_(db),
      clock_(clock),
      manual_(manual),
      options_(std::move(options)),
      sink_(std::move(sink)),
      check_(std::move(check)),
      timer_(io) {}

Scheduler::~Scheduler() { stop(); }

Result<std::unique_ptr<Scheduler>> Scheduler::open(boost::asio::io_context& io, store::Database& db,
                                                   const Clock& clock, ManualWallClock* manual,
                                                   SchedulerOptions options, FireSink sink,
                                                   TargetCheck check) {
  std::unique_ptr<Scheduler> s(
      new Scheduler(io, db, clock, manual, std::move(options), std::move(sink), std::move(check)));
  TAMAYA_ASSIGN_OR_RETURN(auto rows, s->store_.load());
  for (auto& row : rows) {
    auto expr = parse_expression(row.expression);
    if (!expr.ok()) {
      return expr.status().with_context("stored schedule '" + row.name + "'");
    }
    std::string name = row.name;
    s->entries_.emplace(name, Entry{std::move(row), std::move(expr).value()});
  }
  return s;
}

void Scheduler::start() {
  stopped_ = false;
  if (Status st = apply_missed_policies(); !st.ok()) {
    spdlog::error("schedules: applying missed-fire policies failed error={}", st.message());
  }
  fire_due();
  arm();
  spdlog::info("schedules loaded count={} clock={}", entries_.size(),
               manual_ ? "manual (test only)" : "system");
}

void Scheduler::stop() {
  stopped_ = true;
  timer_.cancel();
}

int64_t Scheduler::compute_next(const Entry& e, int64_t after_ms) const {
  return next_fire(e.expression, e.schedule.anchor_ms, after_ms).value_or(0);
}

Status Scheduler::apply_missed_policies() {
  int64_t now = clock_.wall_ms();
  for (auto& [name, e] : entries_) {
    Schedule& s = e.schedule;
    if (!s.enabled || s.next_fire_ms == 0 || s.next_fire_ms > now) continue;
    if (s.missed == MissedPolicy::kFireOnce) {
      spdlog::info("schedule missed while down name={} first_missed={} policy=fire_once", name,
                   format_iso8601(s.next_fire_ms));
      TAMAYA_RETURN_IF_ERROR(fire(e, /*missed=*/true));
      continue;
    }
    Schedule updated = s;
    updated.next_fire_ms = compute_next(e, now);
    updated.updated_ms = now;
    spdlog::info("schedule missed while down name={} first_missed={} policy=skip next={}", name,
                 format_iso8601(s.next_fire_ms), format_iso8601(updated.next_fire_ms));
    TAMAYA_RETURN_IF_ERROR(store_.update(updated));
    s = std::move(updated);
  }
  return Status::Ok();
}

Status Scheduler::fire(Entry& e, bool missed) {
  const Schedule& s = e.schedule;
  int64_t now = clock_.wall_ms();
  int64_t scheduled = s.next_fire_ms;
  std::string id = fire_id(s.name, s.created_ms, scheduled);
  Schedule updated = s;
  updated.last_fired_ms = scheduled;
  updated.fires += 1;
  updated.updated_ms = now;
  updated.next_fire_ms = compute_next(e, std::max(now, scheduled));
  FireRecord record{s.name, scheduled, now, id, missed};
  // Durable before the sink sees it: a crash after this commit loses at most
  // this one fire, and never repeats it.
  Status st = store_.record_fire(updated, scheduled, record, options_.history_max);
  if (!st.ok()) {
    spdlog::error("schedule fire not recorded name={} time={} error={}", s.name,
                  format_iso8601(scheduled), st.message());
    return st;
  }
  e.schedule = std::move(updated);
  const Schedule& now_s = e.schedule;
  Fire f;
  f.schedule = now_s.name;
  f.function = now_s.function;
  f.qualifier = now_s.qualifier;
  f.payload = now_s.input ? *now_s.input : scheduled_event(now_s, scheduled, id);
  f.event_id = id;
  f.scheduled_ms = scheduled;
  spdlog::debug("schedule fired name={} time={} event_id={} next={}", now_s.name,
                format_iso8601(scheduled), id, time_or_null(now_s.next_fire_ms).dump());
  if (sink_) sink_(std::move(f));
  return Status::Ok();
}

int Scheduler::fire_due() {
  int64_t now = clock_.wall_ms();
  std::vector<std::pair<int64_t, std::string>> due;
  for (const auto& [name, e] : entries_) {
    const Schedule& s = e.schedule;
    if (s.enabled && s.next_fire_ms > 0 && s.next_fire_ms <= now) {
      due.emplace_back(s.next_fire_ms, name);
    }
  }
  std::sort(due.begin(), due.end());
  int fired = 0;
  for (const auto& [when, name] : due) {
    auto it = entries_.find(name);
    if (it == entries_.end()) continue;
    if (fire(it->second, /*missed=*/false).ok()) ++fired;
  }
  return fired;
}

void Scheduler::arm() {
  if (stopped_ || manual_ != nullptr) return;  // a test clock moves only through advance()
  int64_t earliest = 0;
  bool failed_due = false;
  int64_t now = clock_.wall_ms();
  for (const auto& [name, e] : entries_) {
    const Schedule& s = e.schedule;
    if (!s.enabled || s.next_fire_ms == 0) continue;
    if (earliest == 0 || s.next_fire_ms < earliest) earliest = s.next_fire_ms;
    if (s.next_fire_ms <= now) failed_due = true;  // still due after fire_due(): it failed
  }
  if (earliest == 0) {
    timer_.cancel();
    return;
  }
  auto wait = std::chrono::milliseconds(std::max<int64_t>(0, earliest - now));
  wait = std::min(wait, kMaxTimerWait);
  if (failed_due) wait = std::max(wait, kRetryAfterFailure);
  timer_.expires_after(wait);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    fire_due();
    arm();
  });
}

Result<Schedule> Scheduler::create(const json& body) {
  static const char* kKnown[] = {"name",   "expression", "function",    "qualifier", "input",
                                 "missed", "enabled",    "description", "timezone"};
  for (const auto& [key, value] : body.items()) {
    if (std::find_if(std::begin(kKnown), std::end(kKnown),
                     [&key = key](const char* k) { return key == k; }) == std::end(kKnown)) {
      return Status::Invalid("unknown field '" + key +
                             "'; a schedule has name, expression, function, qualifier, input, "
                             "missed, enabled, description and timezone");
    }
  }
  Schedule s;
  TAMAYA_ASSIGN_OR_RETURN(s.name, string_field(body, "name", true));
  TAMAYA_RETURN_IF_ERROR(check_name(s.name));
  if (entries_.count(s.name)) {
    return Status::Exists("schedule '" + s.name +
                          "' already exists; delete it first (DELETE /v1/schedules/" + s.name +
                          ") or pick another name");
  }
  if (int(entries_.size()) >= options_.max_schedules) {
    return Status::Exhausted("there are already " + std::to_string(entries_.size()) +
                             " schedules, the limit (setting schedules_max); delete one first");
  }
  TAMAYA_ASSIGN_OR_RETURN(std::string expression, string_field(body, "expression", true));
  auto expr = parse_expression(expression);
  if (!expr.ok()) return expr.status();
  s.expression = expr->text;
  TAMAYA_ASSIGN_OR_RETURN(s.function, string_field(body, "function", true));
  TAMAYA_ASSIGN_OR_RETURN(s.qualifier, string_field(body, "qualifier", false));
  if (size_t colon = s.function.find(':'); colon != std::string::npos && s.qualifier.empty()) {
    s.qualifier = s.function.substr(colon + 1);
    s.function.resize(colon);
  }
  if (s.function.empty()) return Status::Invalid("'function' must name a function");
  if (check_) TAMAYA_RETURN_IF_ERROR(check_(s.function, s.qualifier));
  TAMAYA_ASSIGN_OR_RETURN(s.description, string_field(body, "description", false));
  if (s.description.size() > kMaxDescriptionLength) {
    return Status::Invalid("'description' is longer than 512 characters");
  }
  TAMAYA_ASSIGN_OR_RETURN(std::string tz, string_field(body, "timezone", false));
  if (!tz.empty() && tz != "UTC" && tz != "Etc/UTC") {
    return Status::Invalid("timezone '" + tz +
                           "' is not supported: schedules run in UTC only (this build has no "
                           "time zone database); give the times in UTC or leave timezone out");
  }
  if (auto it = body.find("input"); it != body.end() && !it->is_null()) {
    std::string text;
    if (it->is_string()) {
      // EventBridge's Input: JSON text in a string.
      text = it->get<std::string>();
      if (!json::accept(text)) {
        return Status::Invalid(
            "'input' is a string but not JSON text; give a JSON value (e.g. "
            "{\"k\":1}) or a string holding JSON");
      }
    } else {
      text = it->dump();
    }
    if (int64_t(text.size()) > options_.input_max_bytes) {
      return Status::TooLarge(
          "'input' is " + std::to_string(text.size()) + " bytes, over the limit of " +
          std::to_string(options_.input_max_bytes) + " (setting schedule_input_max_bytes)");
    }
    s.input = std::move(text);
  }
  TAMAYA_ASSIGN_OR_RETURN(std::string missed, string_field(body, "missed", false));
  if (!missed.empty()) {
    auto p = parse_missed_policy(missed);
    if (!p) {
      return Status::Invalid("'missed' is '" + missed + "'; use fire_once (the default) or skip");
    }
    s.missed = *p;
  }
  if (auto it = body.find("enabled"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return Status::Invalid("'enabled' must be true or false");
    s.enabled = it->get<bool>();
  }
  int64_t now = clock_.wall_ms();
  s.created_ms = s.updated_ms = now;
  // Rates count whole seconds from creation; cron times are whole minutes.
  s.anchor_ms = now - now % 1000;
  Entry e{s, std::move(expr).value()};
  e.schedule.next_fire_ms = e.schedule.enabled ? compute_next(e, now) : 0;
  TAMAYA_RETURN_IF_ERROR(store_.insert(e.schedule));
  Schedule out = e.schedule;
  entries_.emplace(out.name, std::move(e));
  spdlog::info("schedule created name={} expression=\"{}\" function={} next={}", out.name,
               out.expression, out.function, time_or_null(out.next_fire_ms).dump());
  arm();
  return out;
}

Result<Schedule> Scheduler::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return Status::NotFound("no schedule '" + name + "'; list them with GET /v1/schedules");
  }
  return it->second.schedule;
}

std::vector<Schedule> Scheduler::list() const {
  std::vector<Schedule> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(e.schedule);
  return out;
}

Status Scheduler::remove(const std::string& name) {
  if (!entries_.count(name)) {
    return Status::NotFound("no schedule '" + name + "'; list them with GET /v1/schedules");
  }
  TAMAYA_RETURN_IF_ERROR(store_.remove(name));
  entries_.erase(name);
  spdlog::info("schedule deleted name={}", name);
  arm();
  return Status::Ok();
}

Result<Schedule> Scheduler::set_enabled(const std::string& name, bool enabled) {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return Status::NotFound("no schedule '" + name + "'; list them with GET /v1/schedules");
  }
  Entry& e = it->second;
  if (e.schedule.enabled == enabled) return e.schedule;
  int64_t now = clock_.wall_ms();
  Entry updated = e;
  updated.schedule.enabled = enabled;
  updated.schedule.updated_ms = now;
  if (enabled) {
    // Times that passed while disabled are not fired; a rate starts over.
    updated.schedule.anchor_ms = now - now % 1000;
    updated.schedule.next_fire_ms = compute_next(updated, now);
  } else {
    updated.schedule.next_fire_ms = 0;
  }
  TAMAYA_RETURN_IF_ERROR(store_.update(updated.schedule));
  e = std::move(updated);
  spdlog::info("schedule {} name={}", enabled ? "enabled" : "disabled", name);
  arm();
  return e.schedule;
}

Result<std::vector<FireRecord>> Scheduler::fires(const std::string& name, int limit) {
  if (!entries_.count(name)) {
    return Status::NotFound("no schedule '" + name + "'; list them with GET /v1/schedules");
  }
  return store_.fires(name, limit);
}

Result<int> Scheduler::advance(int64_t ms) {
  if (!manual_) {
    return Status::Precondition(
        "the schedule clock is the system clock; the test clock needs the setting "
        "schedule_test_clock_ms");
  }
  if (ms < 0) return Status::Invalid("the test clock only moves forward; give advance_ms >= 0");
  int64_t target = manual_->wall_ms() + ms;
  int fired = 0;
  while (true) {
    int64_t earliest = 0;
    for (const auto& [name, e] : entries_) {
      const Schedule& s = e.schedule;
      if (s.enabled && s.next_fire_ms > 0 && s.next_fire_ms <= target &&
          (earliest == 0 || s.next_fire_ms < earliest)) {
        earliest = s.next_fire_ms;
      }
    }
    if (earliest == 0) break;
    if (fired >= options_.max_fires_per_advance) {
      return Status::Exhausted("advance stopped after " + std::to_string(fired) + " fires at " +
                               format_iso8601(manual_->wall_ms()) + "; advance in smaller steps");
    }
    manual_->set_wall_ms(std::max(manual_->wall_ms(), earliest));
    int n = fire_due();
    if (n == 0) return Status::Internal("a due schedule could not be fired; see the daemon's log");
    fired += n;
  }
  manual_->set_wall_ms(target);
  return fired;
}

std::string Scheduler::rule_arn(const std::string& name) const {
  return "arn:aws:events:" + options_.region + ":" + options_.account + ":rule/" + name;
}

std::string Scheduler::scheduled_event(const Schedule& s, int64_t scheduled_ms,
                                       const std::string& event_id) const {
  json ev = {{"version", "0"},
             {"id", event_id},
             {"detail-type", "Scheduled Event"},
             {"source", "aws.events"},
             {"account", options_.account},
             {"time", event_time(scheduled_ms)},
             {"region", options_.region},
             {"resources", json::array({rule_arn(s.name)})},
             {"detail", json::object()}};
  return ev.dump();
}

json Scheduler::to_json(const Schedule& s) const {
  json input = nullptr;
  if (s.input) input = json::parse(*s.input, nullptr, false);
  return {{"name", s.name},
          {"arn", rule_arn(s.name)},
          {"description", s.description},
          {"expression", s.expression},
          {"timezone", "UTC"},
          {"function", s.function},
          {"qualifier", s.qualifier},
          {"input", input},
          {"missed", std::string(missed_policy_name(s.missed))},
          {"enabled", s.enabled},
          {"next_fire", time_or_null(s.next_fire_ms)},
          {"last_fired", time_or_null(s.last_fired_ms)},
          {"fires", s.fires},
          {"created", format_iso8601(s.created_ms)},
          {"updated", format_iso8601(s.updated_ms)}};
}

json Scheduler::fire_to_json(const FireRecord& f) {
  return {{"scheduled", format_iso8601(f.scheduled_ms)},
          {"fired", format_iso8601(f.fired_ms)},
          {"event_id", f.event_id},
          {"missed", f.missed}};
}

}  // namespace tamaya::events
