// Fires schedules at their times. Runs on the daemon's event loop (admin
// calls and its timer share that thread: no locks). Time comes from a Clock:
// the system clock, or — for tests only — a ManualWallClock that moves when
// told, through advance(). Firing hands the event to a sink given by the
// composition root (the durable async queue), so this module knows nothing
// of how an event is delivered.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "events/cron.h"
#include "events/schedules.h"
#include "store/database.h"

namespace tamaya::events {

// A Clock whose wall time starts where it is told and moves only by
// advance(). Test-only (the schedule_test_clock_ms setting).
class ManualWallClock final : public Clock {
 public:
  explicit ManualWallClock(int64_t start_wall_ms) : wall_ms_(start_wall_ms) {}
  SteadyTime now() const override { return SteadyTime(std::chrono::milliseconds(wall_ms_)); }
  int64_t wall_ms() const override { return wall_ms_; }
  void set_wall_ms(int64_t ms) { wall_ms_ = ms; }

 private:
  int64_t wall_ms_;
};

// One fire, as handed to the sink.
struct Fire {
  std::string schedule;
  std::string function;
  std::string qualifier;
  std::string payload;   // the scheduled event, or the schedule's input
  std::string event_id;  // also the event's "id"; the same for the same schedule and time
  int64_t scheduled_ms = 0;
};

using FireSink = std::function<void(Fire)>;
// Says whether function:qualifier exists (NotFound with a message if not).
using TargetCheck =
    std::function<Status(const std::string& function, const std::string& qualifier)>;

struct SchedulerOptions {
  std::string region = "us-east-1";
  std::string account = "000000000000";
  int max_schedules = 1'000;
  int64_t input_max_bytes = 8'192;
  int history_max = 100;
  // advance() fires at most this many times in one call, so a test clock
  // moved by years over rate(1 minute) cannot stall the event loop.
  int max_fires_per_advance = 10'000;
};

class Scheduler {
 public:
  // Loads the schedules and applies each one's missed-fire policy to the
  // times that passed while the daemon was down; the timer starts with
  // start(). `manual` is the clock itself when it is a test clock, else null.
  static Result<std::unique_ptr<Scheduler>> open(boost::asio::io_context& io, store::Database& db,
                                                 const Clock& clock, ManualWallClock* manual,
                                                 SchedulerOptions options, FireSink sink,
                                                 TargetCheck check);
  ~Scheduler();

  // Fires what is due (missed times included) and arms the timer.
  void start();
  void stop();

  // The admin API's operations. Bodies are the JSON documents of docs/api.md.
  Result<Schedule> create(const nlohmann::json& body);
  Result<Schedule> get(const std::string& name) const;
  std::vector<Schedule> list() const;
  Status remove(const std::string& name);
  Result<Schedule> set_enabled(const std::string& name, bool enabled);
  Result<std::vector<FireRecord>> fires(const std::string& name, int limit);

  // Test clock only (Precondition otherwise): moves the clock forward by
  // `ms`, firing every time passed on the way in order. Returns the fires.
  Result<int> advance(int64_t ms);
  bool manual_clock() const { return manual_ != nullptr; }
  int64_t now_ms() const { return clock_.wall_ms(); }

  nlohmann::json to_json(const Schedule& s) const;
  static nlohmann::json fire_to_json(const FireRecord& f);
  // The EventBridge scheduled event for one fire.
  std::string scheduled_event(const Schedule& s, int64_t scheduled_ms,
                              const std::string& event_id) const;
  std::string rule_arn(const std::string& name) const;

 private:
  struct Entry {
    Schedule schedule;
    Expression expression;
  };

  Scheduler(boost::asio::io_context& io, store::Database& db, const Clock& clock,
            ManualWallClock* manual, SchedulerOptions options, FireSink sink, TargetCheck check);
  Status apply_missed_policies();
  // Fires every enabled schedule whose time has come; at most one fire per
  // schedule per call.
  int fire_due();
  Status fire(Entry& e, bool missed);
  void arm();
  int64_t compute_next(const Entry& e, int64_t after_ms) const;

  ScheduleStore store_;
  const Clock& clock_;
  ManualWallClock* manual_;
  SchedulerOptions options_;
  FireSink sink_;
  TargetCheck check_;
  std::map<std::string, Entry> entries_;
  boost::asio::steady_timer timer_;
  bool stopped_ = true;
};

}  // namespace tamaya::events
