#include "events/schedules.h"

namespace tamaya::events {

std::string_view missed_policy_name(MissedPolicy p) {
  return p == MissedPolicy::kSkip ? "skip" : "fire_once";
}

std::optional<MissedPolicy> parse_missed_policy(std::string_view s) {
  if (s == "fire_once") return MissedPolicy::kFireOnce;
  if (s == "skip") return MissedPolicy::kSkip;
  return std::nullopt;
}

std::vector<store::Migration> schedule_migrations() {
  return {
      {350, "events: schedules and their fires",
       R"sql(
CREATE TABLE schedules (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  expression TEXT NOT NULL,
  function TEXT NOT NULL,
  qualifier TEXT NOT NULL DEFAULT '',
  input TEXT,                        -- NULL: the scheduled event
  missed TEXT NOT NULL,              -- fire_once | skip
  enabled INTEGER NOT NULL,
  anchor_ms INTEGER NOT NULL,
  next_fire_ms INTEGER NOT NULL,     -- 0: none
  last_fired_ms INTEGER NOT NULL,
  fires INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE schedule_fires (
  schedule TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
  scheduled_ms INTEGER NOT NULL,
  fired_ms INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  missed INTEGER NOT NULL,
  PRIMARY KEY (schedule, scheduled_ms)
);
)sql"},
  };
}

namespace {

constexpr const char* kColumns =
    "name, description, expression, function, qualifier, input, missed, enabled, anchor_ms, "
    "next_fire_ms, last_fired_ms, fires, created_ms, updated_ms";

Schedule row_to_schedule(const store::Statement& st) {
  Schedule s;
  s.name = st.column_text(0);
  s.description = st.column_text(1);
  s.expression = st.column_text(2);
  s.function = st.column_text(3);
  s.qualifier = st.column_text(4);
  if (!st.column_is_null(5)) s.input = st.column_text(5);
  s.missed = parse_missed_policy(st.column_text(6)).value_or(MissedPolicy::kFireOnce);
  s.enabled = st.column_int(7) != 0;
  s.anchor_ms = st.column_int(8);
  s.next_fire_ms = st.column_int(9);
  s.last_fired_ms = st.column_int(10);
  s.fires = st.column_int(11);
  s.created_ms = st.column_int(12);
  s.updated_ms = st.column_int(13);
  return s;
}

// Binds the columns after `name` (2..14) in kColumns order.
void bind_fields(store::Statement& st, const Schedule& s) {
  st.bind(2, s.description).bind(3, s.expression).bind(4, s.function).bind(5, s.qualifier);
  if (s.input) {
    st.bind(6, *s.input);
  } else {
    st.bind_null(6);
  }
  st.bind(7, missed_policy_name(s.missed))
      .bind(8, int64_t{s.enabled ? 1 : 0})
      .bind(9, s.anchor_ms)
      .bind(10, s.next_fire_ms)
      .bind(11, s.last_fired_ms)
      .bind(12, s.fires)
      .bind(13, s.created_ms)
      .bind(14, s.updated_ms);
}

}  // namespace

Result<std::vector<Schedule>> ScheduleStore::load() {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st, db_.prepare(std::string("SELECT ") + kColumns + " FROM schedules ORDER BY name"));
  return st.collect(row_to_schedule);
}

Status ScheduleStore::insert(const Schedule& s) {
  TAMAYA_ASSIGN_OR_RETURN(auto st,
                          db_.prepare(std::string("INSERT INTO schedules(") + kColumns +
                                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  st.bind(1, s.name);
  bind_fields(st, s);
  return st.run();
}

Status ScheduleStore::update(const Schedule& s) {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st,
      db_.prepare("UPDATE schedules SET description = ?2, expression = ?3, function = ?4, "
                  "qualifier = ?5, input = ?6, missed = ?7, enabled = ?8, anchor_ms = ?9, "
                  "next_fire_ms = ?10, last_fired_ms = ?11, fires = ?12, created_ms = ?13, "
                  "updated_ms = ?14 WHERE name = ?1"));
  st.bind(1, s.name);
  bind_fields(st, s);
  TAMAYA_RETURN_IF_ERROR(st.run());
  return Status::Ok();
}

Status ScheduleStore::remove(const std::string& name) {
  return db_.transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(auto fires,
                            db_.prepare("DELETE FROM schedule_fires WHERE schedule = ?"));
    fires.bind(1, name);
    TAMAYA_RETURN_IF_ERROR(fires.run());
    TAMAYA_ASSIGN_OR_RETURN(auto st, db_.prepare("DELETE FROM schedules WHERE name = ?"));
    st.bind(1, name);
    return st.run();
  });
}

Status ScheduleStore::record_fire(const Schedule& s, int64_t expected_next_ms,
                                  const FireRecord& fire, int history_max) {
  return db_.transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        auto move, db_.prepare("UPDATE schedules SET next_fire_ms = ?, last_fired_ms = ?, "
                               "fires = ?, updated_ms = ? WHERE name = ? AND next_fire_ms = ?"));
    move.bind(1, s.next_fire_ms)
        .bind(2, s.last_fired_ms)
        .bind(3, s.fires)
        .bind(4, s.updated_ms)
        .bind(5, s.name)
        .bind(6, expected_next_ms);
    TAMAYA_RETURN_IF_ERROR(move.run());
    TAMAYA_ASSIGN_OR_RETURN(auto changed, db_.prepare("SELECT changes()"));
    TAMAYA_ASSIGN_OR_RETURN(bool row, changed.step());
    if (!row || changed.column_int(0) != 1) {
      return Status::Precondition("schedule '" + s.name + "' no longer waits for " +
                                  std::to_string(expected_next_ms) + "; not fired twice");
    }
    // The primary key (schedule, scheduled_ms) refuses a second fire of
    // the same time even if the compare above were bypassed.
    TAMAYA_ASSIGN_OR_RETURN(
        auto ins, db_.prepare("INSERT INTO schedule_fires(schedule, scheduled_ms, fired_ms, "
                              "event_id, missed) VALUES (?, ?, ?, ?, ?)"));
    ins.bind(1, fire.schedule)
        .bind(2, fire.scheduled_ms)
        .bind(3, fire.fired_ms)
        .bind(4, fire.event_id)
        .bind(5, int64_t{fire.missed ? 1 : 0});
    TAMAYA_RETURN_IF_ERROR(ins.run());
    TAMAYA_ASSIGN_OR_RETURN(
        auto prune,
        db_.prepare("DELETE FROM schedule_fires WHERE schedule = ?1 AND scheduled_ms NOT IN "
                    "(SELECT scheduled_ms FROM schedule_fires WHERE schedule = ?1 "
                    "ORDER BY scheduled_ms DESC LIMIT ?2)"));
    prune.bind(1, fire.schedule).bind(2, int64_t{history_max});
    return prune.run();
  });
}

Result<std::vector<FireRecord>> ScheduleStore::fires(const std::string& name, int limit) {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st, db_.prepare("SELECT schedule, scheduled_ms, fired_ms, event_id, missed FROM "
                           "schedule_fires WHERE schedule = ? ORDER BY scheduled_ms DESC LIMIT ?"));
  st.bind(1, name).bind(2, int64_t{limit});
  return st.collect([](const store::Statement& r) {
    return FireRecord{r.column_text(0), r.column_int(1), r.column_int(2), r.column_text(3),
                      r.column_int(4) != 0};
  });
}

}  // namespace tamaya::events
