#include "events/queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "common/thread_step.h"

namespace tamaya::events {

std::vector<store::Migration> migrations() {
  return {
      {300, "events: queue, dead letters, invoke configs",
       R"sql(
CREATE TABLE event_queue (
  id TEXT PRIMARY KEY,
  function TEXT NOT NULL,
  qualifier TEXT NOT NULL,
  payload BLOB NOT NULL,
  trace_id TEXT NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  due_ms INTEGER NOT NULL,
  invokes INTEGER NOT NULL DEFAULT 0,
  throttles INTEGER NOT NULL DEFAULT 0,
  leased_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE event_dead_letters (
  id TEXT PRIMARY KEY,
  function TEXT NOT NULL,
  qualifier TEXT NOT NULL,
  payload BLOB NOT NULL,
  trace_id TEXT NOT NULL,
  condition TEXT NOT NULL,
  error TEXT NOT NULL,
  invokes INTEGER NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  failed_ms INTEGER NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX event_dead_letters_function ON event_dead_letters(function, failed_ms);
CREATE TABLE event_invoke_configs (
  function TEXT PRIMARY KEY,
  max_retry_attempts INTEGER NOT NULL,
  max_event_age_s INTEGER NOT NULL,
  on_success TEXT NOT NULL,
  on_failure TEXT NOT NULL,
  last_modified_ms INTEGER NOT NULL
);
)sql"},
      {301, "events: the trigger an event's invocation is recorded with",
       "ALTER TABLE event_queue ADD COLUMN trigger TEXT NOT NULL DEFAULT 'async';"},
  };
}

Result<std::unique_ptr<QueueStore>> QueueStore::open(const std::string& path) {
  TAMAYA_ASSIGN_OR_RETURN(auto db, store::Database::open(path, migrations()));
  // FULL: the WAL is fsynced at every commit, which is what "durable before
  // 202" means; group commit keeps the cost per event small.
  TAMAYA_RETURN_IF_ERROR(db->exec("PRAGMA synchronous=FULL"));
  return std::unique_ptr<QueueStore>(new QueueStore(std::move(db)));
}

Status QueueStore::insert(const Event& e) {
  // The statement of the hot path is prepared once.
  if (!insert_) {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement st,
        db_->prepare("INSERT INTO event_queue(id, function, qualifier, payload, trace_id, "
                     "enqueued_ms, due_ms, invokes, throttles, leased_ms, trigger) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    insert_ = std::make_unique<store::Statement>(std::move(st));
  }
  store::Statement& st = *insert_;
  st.reset();
  st.bind(1, e.id)
      .bind(2, e.function)
      .bind(3, e.qualifier)
      .bind_blob(4, e.payload)
      .bind(5, e.trace_id)
      .bind(6, e.enqueued_ms)
      .bind(7, e.due_ms)
      .bind(8, int64_t(e.invokes))
      .bind(9, int64_t(e.throttles))
      .bind(10, e.leased_ms)
      .bind(11, e.trigger);
  return st.run();
}

Status QueueStore::lease(const std::string& id, int64_t now_ms) {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          db_->prepare("UPDATE event_queue SET leased_ms = ? WHERE id = ?"));
  st.bind(1, now_ms).bind(2, id);
  return st.run();
}

Status QueueStore::unlease(const std::string& id) { return lease(id, 0); }

Status QueueStore::remove(const std::string& id) {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          db_->prepare("DELETE FROM event_queue WHERE id = ?"));
  st.bind(1, id);
  return st.run();
}

Status QueueStore::reschedule(const Event& e) {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          db_->prepare("UPDATE event_queue SET due_ms = ?, invokes = ?, "
                                       "throttles = ?, leased_ms = 0 WHERE id = ?"));
  st.bind(1, e.due_ms).bind(2, int64_t(e.invokes)).bind(3, int64_t(e.throttles)).bind(4, e.id);
  return st.run();
}

Status QueueStore::dead_letter(const DeadLetter& d) {
  return db_->transaction([&]() -> Status {
    TAMAYA_RETURN_IF_ERROR(remove(d.id));
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement st,
        db_->prepare("INSERT OR REPLACE INTO event_dead_letters(id, function, qualifier, payload, "
                     "trace_id, condition, error, invokes, enqueued_ms, failed_ms, record) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    st.bind(1, d.id)
        .bind(2, d.function)
        .bind(3, d.qualifier)
        .bind_blob(4, d.payload)
        .bind(5, d.trace_id)
        .bind(6, d.condition)
        .bind(7, d.error)
        .bind(8, int64_t(d.invokes))
        .bind(9, d.enqueued_ms)
        .bind(10, d.failed_ms)
        .bind(11, d.record);
    return st.run();
  });
}

Result<std::vector<Event>> QueueStore::load() {
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement st,
      db_->prepare(
          "SELECT id, function, qualifier, payload, trace_id, enqueued_ms, due_ms, "
          "invokes, throttles, leased_ms, trigger FROM event_queue ORDER BY enqueued_ms, rowid"));
  std::vector<Event> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    Event e;
    e.id = st.column_text(0);
    e.function = st.column_text(1);
    e.qualifier = st.column_text(2);
    e.payload = st.column_blob(3);
    e.trace_id = st.column_text(4);
    e.enqueued_ms = st.column_int(5);
    e.due_ms = st.column_int(6);
    e.invokes = int(st.column_int(7));
    e.throttles = int(st.column_int(8));
    e.leased_ms = st.column_int(9);
    e.trigger = st.column_text(10);
    out.push_back(std::move(e));
  }
  return out;
}

namespace {

constexpr const char* kDeadColumns =
    "id, function, qualifier, payload, trace_id, condition, error, invokes, enqueued_ms, "
    "failed_ms, record";

DeadLetter read_dead(const store::Statement& st) {
  DeadLetter d;
  d.id = st.column_text(0);
  d.function = st.column_text(1);
  d.qualifier = st.column_text(2);
  d.payload = st.column_blob(3);
  d.trace_id = st.column_text(4);
  d.condition = st.column_text(5);
  d.error = st.column_text(6);
  d.invokes = int(st.column_int(7));
  d.enqueued_ms = st.column_int(8);
  d.failed_ms = st.column_int(9);
  d.record = st.column_text(10);
  return d;
}

}  // namespace

Result<std::vector<DeadLetter>> QueueStore::dead_letters(const std::string& function, int limit) {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          db_->prepare(std::string("SELECT ") + kDeadColumns +
                                       " FROM event_dead_letters WHERE (?1 = '' OR function = ?1) "
                                       "ORDER BY failed_ms, rowid LIMIT ?2"));
  st.bind(1, function).bind(2, int64_t(limit));
  return st.collect(read_dead);
}

Result<int64_t> QueueStore::dead_letter_count() {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          db_->prepare("SELECT COUNT(*) FROM event_dead_letters"));
  TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
  return row ? st.column_int(0) : 0;
}

Result<std::vector<Event>> QueueStore::redrive(const std::string& function, const std::string& id,
                                               int64_t now_ms) {
  std::vector<Event> out;
  Status s = db_->transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement sel,
        db_->prepare(std::string("SELECT ") + kDeadColumns +
                     " FROM event_dead_letters WHERE (?1 != '' AND id = ?1) OR "
                     "(?1 = '' AND (?2 = '' OR function = ?2)) ORDER BY failed_ms, rowid"));
    sel.bind(1, id).bind(2, function);
    std::vector<DeadLetter> dead;
    while (true) {
      TAMAYA_ASSIGN_OR_RETURN(bool row, sel.step());
      if (!row) break;
      dead.push_back(read_dead(sel));
    }
    TAMAYA_ASSIGN_OR_RETURN(store::Statement del,
                            db_->prepare("DELETE FROM event_dead_letters WHERE id = ?"));
    for (DeadLetter& d : dead) {
      Event e;
      e.id = d.id;
      e.function = d.function;
      e.qualifier = d.qualifier;
      e.payload = std::move(d.payload);
      e.trace_id = d.trace_id;
      e.enqueued_ms = now_ms;
      e.due_ms = now_ms;
      // The same id may still be queued (a redelivery after an ambiguous
      // failure); the queued one wins and the dead letter just goes.
      Status ins = insert(e);
      if (!ins.ok() && ins.code() != Code::kAlreadyExists) return ins;
      del.reset();
      del.bind(1, d.id);
      TAMAYA_RETURN_IF_ERROR(del.run());
      if (ins.ok()) out.push_back(std::move(e));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status QueueStore::put_config(const InvokeConfig& c) {
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement st,
      db_->prepare("INSERT OR REPLACE INTO event_invoke_configs(function, max_retry_attempts, "
                   "max_event_age_s, on_success, on_failure, last_modified_ms) "
                   "VALUES (?, ?, ?, ?, ?, ?)"));
  st.bind(1, c.function)
      .bind(2, int64_t(c.max_retry_attempts))
      .bind(3, int64_t(c.max_event_age_s))
      .bind(4, c.on_success)
      .bind(5, c.on_failure)
      .bind(6, c.last_modified_ms);
  return st.run();
}

Status QueueStore::delete_config(const std::string& function) {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          db_->prepare("DELETE FROM event_invoke_configs WHERE function = ?"));
  st.bind(1, function);
  return st.run();
}

Result<std::vector<InvokeConfig>> QueueStore::configs() {
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement st,
      db_->prepare("SELECT function, max_retry_attempts, max_event_age_s, on_success, on_failure, "
                   "last_modified_ms FROM event_invoke_configs ORDER BY function"));
  std::vector<InvokeConfig> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    InvokeConfig c;
    c.function = st.column_text(0);
    c.max_retry_attempts = int(st.column_int(1));
    c.max_event_age_s = int(st.column_int(2));
    c.on_success = st.column_text(3);
    c.on_failure = st.column_text(4);
    c.last_modified_ms = st.column_int(5);
    out.push_back(std::move(c));
  }
  return out;
}

// --- QueueWriter ---

QueueWriter::QueueWriter(std::unique_ptr<QueueStore> store) : store_(std::move(store)) {
  thread_ = std::thread([this] { run(); });
}

QueueWriter::~QueueWriter() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void QueueWriter::submit(Op op, Done done) {
  {
    std::lock_guard lk(mu_);
    queue_.emplace_back(std::move(op), std::move(done));
    ++submitted_;
  }
  wake_.notify_one();
}

void QueueWriter::flush() {
  std::unique_lock lk(mu_);
  uint64_t target = submitted_;
  progress_.wait(lk, [&] { return committed_ >= target; });
}

int64_t QueueWriter::commits() const {
  std::lock_guard lk(mu_);
  return commits_;
}

int64_t QueueWriter::ops() const {
  std::lock_guard lk(mu_);
  return int64_t(committed_);
}

// An op that throws (a bug) fails on its own: the writer serves every
// async invocation, and the ops batched with it still commit.
Status QueueWriter::run_op(const Op& op) {
  return step_result("an async queue operation", [&] { return op(*store_); });
}

void QueueWriter::run() {
  std::unique_lock lk(mu_);
  while (true) {
    wake_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty() && stop_) return;
    // No waiting window: while one commit (fsync) runs, new operations pile
    // up and the next commit takes them all — the batch grows with the load
    // and an idle queue adds no latency.
    std::deque<std::pair<Op, Done>> batch;
    batch.swap(queue_);
    lk.unlock();

    std::vector<Status> results(batch.size(), Status::Ok());
    store::Database& db = store_->db();
    // Fast path: the whole batch in one transaction. Only when an operation
    // fails is the batch run again with a savepoint per operation, so that a
    // failing one (a duplicate id) undoes only itself.
    bool op_failed = false;
    Status commit = db.transaction([&]() -> Status {
      for (size_t i = 0; i < batch.size(); ++i) {
        results[i] = run_op(batch[i].first);
        if (!results[i].ok()) {
          op_failed = true;
          return results[i];
        }
      }
      return Status::Ok();
    });
    if (!commit.ok() && op_failed) {
      std::fill(results.begin(), results.end(), Status::Ok());
      commit = db.transaction([&]() -> Status {
        for (size_t i = 0; i < batch.size(); ++i) {
          results[i] = db.transaction([&] { return run_op(batch[i].first); });
        }
        return Status::Ok();
      });
    }
    if (!commit.ok()) {
      spdlog::error("event queue commit failed ops={} error={}", batch.size(), commit.message());
      for (Status& r : results) {
        if (r.ok()) r = commit;
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].second) {
        run_step("an async queue completion", [&] { batch[i].second(results[i]); });
      }
    }

    lk.lock();
    committed_ += batch.size();
    ++commits_;
    progress_.notify_all();
  }
}

}  // namespace tamaya::events
