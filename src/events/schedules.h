// Schedules: a rate(…) or cron(…) expression that invokes a function. The
// model and its tables (migrations 350..399 of the daemon's main database):
// one row per schedule holding its next fire time, and one row per fire, so
// a fire and the move of the schedule past it commit together and a restart
// never fires the same time twice.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/database.h"

namespace tamaya::events {

// What to do, at start, with fire times that passed while the daemon was down.
enum class MissedPolicy {
  kFireOnce,  // fire once (for the earliest missed time), then resume
  kSkip,      // fire nothing, resume at the next time after now
};

std::string_view missed_policy_name(MissedPolicy p);
std::optional<MissedPolicy> parse_missed_policy(std::string_view s);

struct Schedule {
  std::string name;
  std::string description;
  std::string expression;  // as given, e.g. "rate(5 minutes)"
  std::string function;
  std::string qualifier;             // "" = $LATEST
  std::optional<std::string> input;  // custom event (JSON text); none = the scheduled event
  MissedPolicy missed = MissedPolicy::kFireOnce;
  bool enabled = true;
  int64_t anchor_ms = 0;      // a rate counts whole periods from here
  int64_t next_fire_ms = 0;   // 0: none (disabled, or a cron with no time left)
  int64_t last_fired_ms = 0;  // the scheduled time of the last fire, 0 = never
  int64_t fires = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct FireRecord {
  std::string schedule;
  int64_t scheduled_ms = 0;  // the time the expression named
  int64_t fired_ms = 0;      // when the daemon fired it (later after a restart)
  std::string event_id;
  bool missed = false;  // fired at start for a time that passed while down
};

std::vector<store::Migration> schedule_migrations();

class ScheduleStore {
 public:
  explicit ScheduleStore(store::Database& db) : db_(db) {}

  Result<std::vector<Schedule>> load();
  // AlreadyExists when the name is taken.
  Status insert(const Schedule& s);
  // Writes every mutable column of an existing schedule.
  Status update(const Schedule& s);
  Status remove(const std::string& name);  // NotFound when absent

  // In one transaction: records the fire and moves the schedule to
  // `s.next_fire_ms` — only if its stored next fire is still
  // `expected_next_ms`, so a fire can never be recorded twice. Keeps the
  // last `history_max` fires of the schedule.
  Status record_fire(const Schedule& s, int64_t expected_next_ms, const FireRecord& fire,
                     int history_max);

  // Newest first.
  Result<std::vector<FireRecord>> fires(const std::string& name, int limit);

 private:
  store::Database& db_;
};

}  // namespace tamaya::events
