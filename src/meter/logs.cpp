#include "meter/logs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/strings.h"
#include "common/thread_step.h"

namespace tamaya::meter {

namespace {

// Age first, then the newest max_rows by id, through the indexes.
Status trim_records(store::Database& db, const StoreLimits& limits, int64_t now_ms) {
  return db.transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(store::Statement old,
                            db.prepare("DELETE FROM invocations WHERE start_ms < ?"));
    old.bind(1, now_ms - limits.record_max_age_ms);
    TAMAYA_RETURN_IF_ERROR(old.run());
    // Ids are rowids, each one more than the newest: the newest max_rows rows
    // are those within max_rows of the newest id, found without walking them
    // (an OFFSET walked up to max_rows index entries every second).
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement extra,
        db.prepare("DELETE FROM invocations WHERE id <= (SELECT MAX(id) FROM invocations) - ?"));
    extra.bind(1, limits.record_max_rows);
    return extra.run();
  });
}

// A row of several lines keeps them in `message` as "<ms after the row's
// time> <line>\n" each, with '\\' and '\n' in a line escaped; a row of one
// line keeps it as it is (rows written before migration 204 are such rows).
void encode_line(std::string& out, int64_t delta_ms, const std::string& line) {
  out += std::to_string(delta_ms);
  out += ' ';
  append_escaped_line(out, line);
  out += '\n';
}

// Appends the lines of one row to `out`, skipping those with an id <= since_id.
void decode_row(int64_t row_id, int64_t time_ms, const std::string& function,
                const std::string& request_id, const std::string& message, int64_t lines,
                int64_t since_id, std::vector<LogEvent>& out) {
  auto add = [&](int64_t index, int64_t at_ms, std::string text) {
    const int64_t id = row_id * kLogLinesPerRow + index;
    if (id <= since_id) return;
    out.push_back(LogEvent{id, at_ms, function, request_id, std::move(text)});
  };
  if (lines <= 1) {
    add(0, time_ms, message);
    return;
  }
  size_t pos = 0;
  for (int64_t index = 0; index < lines && pos < message.size(); ++index) {
    const size_t space = message.find(' ', pos);
    if (space == std::string::npos) break;
    const int64_t delta = std::strtoll(message.c_str() + pos, nullptr, 10);
    // Escaped lines hold no newline: the next one ends this line.
    size_t end = message.find('\n', space + 1);
    if (end == std::string::npos) end = message.size();
    add(index, time_ms + delta,
        unescape_line(std::string_view(message).substr(space + 1, end - space - 1)));
    pos = end + 1;
  }
}

constexpr const char* kRecordColumns =
    "SELECT id, request_id, function, version, trigger, start_ms, duration_us, billed_ms, "
    "init_us, memory_mb, max_memory_used_mb, status, error_type, cold FROM invocations ";

InvocationRecord read_record(const store::Statement& st) {
  InvocationRecord r;
  r.id = st.column_int(0);
  r.request_id = st.column_text(1);
  r.function = st.column_text(2);
  r.version = st.column_text(3);
  r.trigger = st.column_text(4);
  r.start_ms = st.column_int(5);
  r.duration_ms = double(st.column_int(6)) / 1000.0;
  r.billed_ms = st.column_int(7);
  r.init_ms = double(st.column_int(8)) / 1000.0;
  r.memory_mb = int(st.column_int(9));
  r.max_memory_used_mb = st.column_int(10);
  r.status = st.column_text(11);
  r.error_type = st.column_text(12);
  r.cold = st.column_int(13) != 0;
  return r;
}

}  // namespace

std::vector<store::Migration> migrations() {
  return {
      {200, "meter: log_events",
       R"sql(
CREATE TABLE log_events (
  id INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  function TEXT NOT NULL,
  request_id TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX log_events_function_id ON log_events(function, id);
CREATE INDEX log_events_request_id ON log_events(request_id);
)sql"},
      {201, "meter: invocations",
       R"sql(
CREATE TABLE invocations (
  id INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  function TEXT NOT NULL,
  version TEXT NOT NULL,
  trigger TEXT NOT NULL,
  start_ms INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  billed_ms INTEGER NOT NULL,
  init_us INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  max_memory_used_mb INTEGER NOT NULL,
  status TEXT NOT NULL,
  error_type TEXT NOT NULL,
  cold INTEGER NOT NULL
);
CREATE INDEX invocations_start ON invocations(start_ms);
CREATE INDEX invocations_function_start ON invocations(function, start_ms);
CREATE INDEX invocations_request_id ON invocations(request_id);
)sql"},
      // No query looks records up by request id, and an index of random keys
      // costs the writer a page write per record.
      {202, "meter: drop invocations_request_id", "DROP INDEX IF EXISTS invocations_request_id;"},
      // The same for log lines, three per invocation: the writer spent about
      // a third of its time on this index's random pages. A query by request
      // id walks (function, id), which retention bounds to
      // log_max_events_per_function rows.
      {203, "meter: drop log_events_request_id", "DROP INDEX IF EXISTS log_events_request_id;"},
      // One row per invocation's lines instead of one per line (logs.h,
      // kLogLinesPerRow): the writer's cost is per row and per index entry.
      // seq: the function's lines written so far, up to this row's last; in
      // the index, so retention finds where the newest lines begin without
      // reading rows (rows from before have 0 and go first).
      {204, "meter: log_events rows of several lines",
       R"sql(
ALTER TABLE log_events ADD COLUMN lines INTEGER NOT NULL DEFAULT 1;
ALTER TABLE log_events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS log_events_function_id;
CREATE INDEX log_events_function_id_seq ON log_events(function, id, seq);
)sql"},
  };
}

struct LogStore::Impl {
  Impl(std::unique_ptr<store::Database> w, std::unique_ptr<store::Database> r, StoreLimits l)
      : writer_db(std::move(w)),
        reader_db(std::move(r)),
        max_events_per_function(l.max_events_per_function),
        limits(l) {}

  void run();
  Result<int64_t> last_seq(const std::string& function);
  Status write(const std::vector<LogEvent>& batch, const std::vector<InvocationRecord>& records);
  void trim(const std::set<std::string>& functions);
  void publish(const std::vector<LogEvent>& events);
  size_t pending() const;
  int64_t enqueue(std::vector<LogEvent>& events);
  bool should_wake(size_t before) const;
  void note_rejected(int64_t rejected);

  std::unique_ptr<store::Database> writer_db;  // used by the writer thread only
  // Writer thread only: each function's seq (migration 204) as last written,
  // read from the table on its first write. After remove_function it runs
  // ahead of the table, which retention does not mind.
  std::unordered_map<std::string, int64_t> seqs;
  std::unique_ptr<store::Database> reader_db;  // guarded by reader_mu
  mutable std::mutex reader_mu;
  const int64_t max_events_per_function;
  const StoreLimits limits;

  std::mutex mu;                     // guards the fields below
  std::condition_variable wake;      // writer: work arrived, flush asked, or stop
  std::condition_variable progress;  // flush(): the writer finished a round
  std::deque<LogEvent> queue;
  std::deque<InvocationRecord> records;
  uint64_t flush_requests = 0;
  uint64_t flushes_done = 0;
  bool stop = false;

  std::atomic<int64_t> dropped{0};
  std::atomic<int64_t> dropped_records{0};
  std::thread thread;

  // Live followers: the count lets append() skip the lock when none.
  std::atomic<size_t> follower_count{0};
  mutable std::mutex followers_mu;
  std::map<int64_t, std::pair<std::string, LogFollower>> followers;
  int64_t next_follower = 1;
};

void LogStore::Impl::publish(const std::vector<LogEvent>& events) {
  if (follower_count.load(std::memory_order_relaxed) == 0 || events.empty()) return;
  std::lock_guard lk(followers_mu);
  for (const auto& [id, f] : followers) {
    if (f.first == events.front().function) f.second(events);
  }
}

void LogStore::Impl::run() {
  std::set<std::string> dirty;  // functions written since their last trim
  bool records_dirty = false;
  auto last_trim = std::chrono::steady_clock::now();
  auto last_age_check = last_trim;
  std::unique_lock lk(mu);
  auto has_work = [&] {
    return stop || !queue.empty() || !records.empty() || flush_requests > flushes_done;
  };
  while (true) {
    // The timeout lets record age retention run on an idle daemon too.
    wake.wait_for(lk, kRecordAgeCheckInterval, has_work);
    // A short window lets a burst of lines share one transaction.
    if (!stop && flush_requests == flushes_done &&
        queue.size() + records.size() < kLogBatchEvents) {
      wake.wait_for(lk, kLogBatchInterval, [&] {
        return stop || queue.size() + records.size() >= kLogBatchEvents ||
               flush_requests > flushes_done;
      });
    }
    // Everything appended before these flush requests is in the queue now or
    // was written in an earlier round (and is still in `dirty`).
    const uint64_t serving = flush_requests;
    std::vector<LogEvent> batch(std::make_move_iterator(queue.begin()),
                                std::make_move_iterator(queue.end()));
    queue.clear();
    std::vector<InvocationRecord> record_batch(std::make_move_iterator(records.begin()),
                                               std::make_move_iterator(records.end()));
    records.clear();
    const bool stopping = stop;
    lk.unlock();

    if (!batch.empty() || !record_batch.empty()) {
      // A bug that throws loses this batch only (counted as dropped), not
      // the writer: flush() waiters and later batches go on.
      Status s = step_result("a log store write", [&] { return write(batch, record_batch); });
      if (s.ok()) {
        for (const LogEvent& e : batch) {
          dirty.insert(e.function);
        }
        records_dirty = records_dirty || !record_batch.empty();
      } else {
        dropped += static_cast<int64_t>(batch.size());
        dropped_records += static_cast<int64_t>(record_batch.size());
        spdlog::error("log store write failed events={} records={} error={}", batch.size(),
                      record_batch.size(), s.message());
      }
    }
    const auto now = std::chrono::steady_clock::now();
    const bool trim_due =
        serving > flushes_done || stopping || now - last_trim >= kLogRetentionInterval;
    if (!dirty.empty() && trim_due) {
      run_step("a log retention trim", [&] { trim(dirty); });
      dirty.clear();
      last_trim = now;
    }
    const bool records_due =
        serving > flushes_done || stopping || now - last_age_check >= kLogRetentionInterval;
    if ((records_dirty && records_due) || now - last_age_check >= kRecordAgeCheckInterval) {
      const int64_t wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
      if (Status s = step_result("an invocation record trim",
                                 [&] { return trim_records(*writer_db, limits, wall_ms); });
          !s.ok()) {
        spdlog::warn("invocation record retention failed error={}", s.message());
      }
      records_dirty = false;
      last_age_check = now;
    }

    lk.lock();
    flushes_done = serving;
    progress.notify_all();
    if (stopping && queue.empty()) {
      return;
    }
  }
}

Result<int64_t> LogStore::Impl::last_seq(const std::string& function) {
  if (auto known = seqs.find(function); known != seqs.end()) return known->second;
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          writer_db->prepare("SELECT seq FROM log_events WHERE function = ? "
                                             "ORDER BY id DESC LIMIT 1"));
  st.bind(1, function);
  TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
  return row ? st.column_int(0) : int64_t{0};
}

Status LogStore::Impl::write(const std::vector<LogEvent>& batch,
                             const std::vector<InvocationRecord>& record_batch) {
  std::unordered_map<std::string, int64_t> written;
  Status s = writer_db->transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement insert,
        writer_db->prepare("INSERT INTO log_events(time_ms, function, request_id, message, lines, "
                           "seq) VALUES (?, ?, ?, ?, ?, ?)"));
    std::string chunk;
    for (size_t first = 0; first < batch.size();) {
      const LogEvent& head = batch[first];
      size_t end = first + 1;
      while (end < batch.size() && end - first < size_t(kLogLinesPerRow) &&
             batch[end].function == head.function && batch[end].request_id == head.request_id) {
        ++end;
      }
      const std::string* message = &head.message;
      if (end - first > 1) {
        chunk.clear();
        for (size_t i = first; i < end; ++i) {
          encode_line(chunk, batch[i].time_ms - head.time_ms, batch[i].message);
        }
        message = &chunk;
      }
      auto seq = written.find(head.function);
      if (seq == written.end()) {
        TAMAYA_ASSIGN_OR_RETURN(int64_t last, last_seq(head.function));
        seq = written.emplace(head.function, last).first;
      }
      seq->second += int64_t(end - first);
      insert.reset();
      insert.bind(1, head.time_ms)
          .bind(2, head.function)
          .bind(3, head.request_id)
          .bind(4, *message)
          .bind(5, int64_t(end - first))
          .bind(6, seq->second);
      TAMAYA_RETURN_IF_ERROR(insert.run());
      first = end;
    }
    if (record_batch.empty()) return Status::Ok();
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement rec,
        writer_db->prepare("INSERT INTO invocations(request_id, function, version, trigger, "
                           "start_ms, duration_us, billed_ms, init_us, memory_mb, "
                           "max_memory_used_mb, status, error_type, cold) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    for (const InvocationRecord& r : record_batch) {
      rec.reset();
      rec.bind(1, r.request_id)
          .bind(2, r.function)
          .bind(3, r.version)
          .bind(4, r.trigger)
          .bind(5, r.start_ms)
          .bind(6, int64_t(std::llround(r.duration_ms * 1000)))
          .bind(7, r.billed_ms)
          .bind(8, int64_t(std::llround(r.init_ms * 1000)))
          .bind(9, int64_t{r.memory_mb})
          .bind(10, r.max_memory_used_mb)
          .bind(11, r.status)
          .bind(12, r.error_type)
          .bind(13, int64_t{r.cold ? 1 : 0});
      TAMAYA_RETURN_IF_ERROR(rec.run());
    }
    return Status::Ok();
  });
  // Taken only when the transaction committed: a rolled-back batch wrote
  // none of its lines.
  if (s.ok()) {
    for (const auto& [function, seq] : written) seqs[function] = seq;
  }
  return s;
}

void LogStore::Impl::trim(const std::set<std::string>& functions) {
  // Keeps the newest max_events_per_function lines: the rows whose last line
  // (seq) is among them. The first such row is found through the (function,
  // id, seq) index from the oldest row up, so a trim reads about as many
  // index entries as it deletes rows.
  Status s = writer_db->transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement del,
        writer_db->prepare("DELETE FROM log_events WHERE function = ?1 AND id < "
                           "(SELECT id FROM log_events WHERE function = ?1 AND seq > "
                           "(SELECT seq FROM log_events WHERE function = ?1 ORDER BY id DESC "
                           "LIMIT 1) - ?2 ORDER BY id LIMIT 1)"));
    for (const std::string& fn : functions) {
      del.reset();
      del.bind(1, fn).bind(2, max_events_per_function);
      TAMAYA_RETURN_IF_ERROR(del.run());
    }
    return Status::Ok();
  });
  if (!s.ok()) {
    spdlog::warn("log retention failed error={}", s.message());
  }
}

LogStore::LogStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<LogStore>> LogStore::open(const std::string& db_path,
                                                 int64_t max_events_per_function) {
  StoreLimits limits;
  limits.max_events_per_function = max_events_per_function;
  return open(db_path, limits);
}

Result<std::unique_ptr<LogStore>> LogStore::open(const std::string& db_path, StoreLimits limits) {
  if (limits.max_events_per_function < 1) {
    return Status::Invalid("max log events per function is " +
                           std::to_string(limits.max_events_per_function) + "; use 1 or more");
  }
  if (limits.record_max_age_ms < 1 || limits.record_max_rows < 1) {
    return Status::Invalid("invocation record retention must keep at least 1 row for 1 second");
  }
  TAMAYA_ASSIGN_OR_RETURN(auto writer, store::Database::open(db_path, {}));
  // The writer's pages (the tables' tails and their indexes) stay in its
  // cache instead of being read back from the database for every batch.
  TAMAYA_RETURN_IF_ERROR(writer->exec("PRAGMA cache_size=-8192"));
  TAMAYA_ASSIGN_OR_RETURN(auto reader, store::Database::open(db_path, {}));
  {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement check,
        reader->prepare(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_events'"));
    TAMAYA_ASSIGN_OR_RETURN(bool exists, check.step());
    if (!exists) {
      return Status::Precondition("table log_events is missing in '" + db_path +
                                  "'; open the database with meter::migrations() first");
    }
  }
  auto impl = std::make_unique<Impl>(std::move(writer), std::move(reader), limits);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<LogStore>(new LogStore(std::move(impl)));
}

LogStore::~LogStore() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stop = true;
  }
  impl_->wake.notify_one();
  impl_->thread.join();
}

void LogStore::append(std::vector<LogEvent> events) {
  if (events.empty()) {
    return;
  }
  impl_->publish(events);
  int64_t rejected = 0;
  bool wake = false;
  {
    std::lock_guard lk(impl_->mu);
    const size_t before = impl_->pending();
    rejected = impl_->enqueue(events);
    wake = impl_->should_wake(before);
  }
  if (wake) impl_->wake.notify_one();
  impl_->note_rejected(rejected);
}

size_t LogStore::Impl::pending() const { return queue.size() + records.size(); }

// Under mu. Returns how many did not fit.
int64_t LogStore::Impl::enqueue(std::vector<LogEvent>& events) {
  const size_t room = kMaxQueuedLogEvents - std::min(queue.size(), kMaxQueuedLogEvents);
  const size_t take = std::min(room, events.size());
  std::move(events.begin(), events.begin() + static_cast<std::ptrdiff_t>(take),
            std::back_inserter(queue));
  return static_cast<int64_t>(events.size() - take);
}

// Under mu, after adding to a queue that held `before` items. The writer
// sleeps until something is queued, then gathers a batch until it is full
// or its window ends; waking it for anything else costs a futex call and a
// context switch per invocation at thousands of invocations a second.
bool LogStore::Impl::should_wake(size_t before) const {
  const size_t after = pending();
  return before == 0 || flush_requests > flushes_done ||
         (before < kLogBatchEvents && after >= kLogBatchEvents);
}

void LogStore::Impl::note_rejected(int64_t rejected) {
  if (rejected > 0) {
    int64_t before = dropped.fetch_add(rejected);
    // Once, then every 10k: enough to notice without flooding the log.
    if (before == 0 || before / 10'000 != (before + rejected) / 10'000) {
      spdlog::warn("log queue full, dropping events dropped_total={} queue_max={}",
                   before + rejected, kMaxQueuedLogEvents);
    }
  }
}

void LogStore::flush() {
  std::unique_lock lk(impl_->mu);
  const uint64_t mine = ++impl_->flush_requests;
  impl_->wake.notify_one();
  impl_->progress.wait(lk, [&] { return impl_->flushes_done >= mine; });
}

Result<std::vector<LogEvent>> LogStore::query(const std::string& function, int64_t since_id,
                                              int limit, const std::string& request_id) const {
  if (limit < 1 || limit > kMaxLogQueryLimit) {
    return Status::Invalid("limit " + std::to_string(limit) + " is out of range; use 1 to " +
                           std::to_string(kMaxLogQueryLimit));
  }
  if (since_id < 0) {
    return Status::Invalid("since_id " + std::to_string(since_id) +
                           " is negative; use 0 to start from the oldest event");
  }
  std::lock_guard lk(impl_->reader_mu);
  store::Database& db = *impl_->reader_db;
  // Every row holds at least one line, so limit + 1 rows (the first may hold
  // only lines up to since_id) give the page.
  auto stmt = request_id.empty()
                  ? db.prepare(
                        "SELECT id, time_ms, request_id, message, lines FROM log_events "
                        "WHERE function = ? AND id >= ? ORDER BY id LIMIT ?")
                  : db.prepare(
                        "SELECT id, time_ms, request_id, message, lines FROM log_events "
                        "WHERE function = ? AND id >= ? AND request_id = ? "
                        "ORDER BY id LIMIT ?");
  if (!stmt.ok()) {
    return stmt.status();
  }
  stmt->bind(1, function).bind(2, since_id / kLogLinesPerRow);
  if (request_id.empty()) {
    stmt->bind(3, int64_t{limit} + 1);
  } else {
    stmt->bind(3, request_id).bind(4, int64_t{limit} + 1);
  }
  std::vector<LogEvent> out;
  while (out.size() < size_t(limit)) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, stmt->step());
    if (!row) {
      break;
    }
    decode_row(stmt->column_int(0), stmt->column_int(1), function, stmt->column_text(2),
               stmt->column_text(3), stmt->column_int(4), since_id, out);
  }
  if (out.size() > size_t(limit)) out.resize(size_t(limit));
  return out;
}

Status LogStore::remove_function(const std::string& function) {
  {
    std::lock_guard lk(impl_->mu);
    auto& q = impl_->queue;
    q.erase(std::remove_if(q.begin(), q.end(),
                           [&](const LogEvent& e) { return e.function == function; }),
            q.end());
  }
  // A batch the writer already took may hold some of its events.
  flush();
  std::lock_guard lk(impl_->reader_mu);
  TAMAYA_ASSIGN_OR_RETURN(store::Statement del,
                          impl_->reader_db->prepare("DELETE FROM log_events WHERE function = ?"));
  del.bind(1, function);
  Status s = del.run();
  if (!s.ok()) {
    return s.with_context("deleting the logs of function '" + function + "'");
  }
  return Status::Ok();
}

int64_t LogStore::dropped() const { return impl_->dropped.load(); }

int64_t LogStore::dropped_records() const { return impl_->dropped_records.load(); }

void LogStore::record(InvocationRecord record, std::vector<LogEvent> events) {
  if (!events.empty()) impl_->publish(events);
  bool kept = false;
  bool wake = false;
  int64_t rejected = 0;
  {
    // One lock for the record and its lines.
    std::lock_guard lk(impl_->mu);
    const size_t before = impl_->pending();
    if (impl_->records.size() < kMaxQueuedRecords) {
      impl_->records.push_back(std::move(record));
      kept = true;
    }
    if (!events.empty()) rejected = impl_->enqueue(events);
    wake = impl_->should_wake(before);
  }
  if (!kept) impl_->dropped_records.fetch_add(1);
  if (wake) impl_->wake.notify_one();
  impl_->note_rejected(rejected);
}

Result<std::vector<InvocationRecord>> LogStore::invocations(const RecordQuery& q) const {
  if (q.limit < 1 || q.limit > kMaxRecordQueryLimit) {
    return Status::Invalid("limit " + std::to_string(q.limit) + " is out of range; use 1 to " +
                           std::to_string(kMaxRecordQueryLimit));
  }
  std::string sql = kRecordColumns;
  std::vector<std::string> where;
  if (!q.function.empty()) where.push_back("function = :function");
  if (!q.status.empty()) where.push_back("status = :status");
  if (!q.trigger.empty()) where.push_back("trigger = :trigger");
  if (q.since_ms) where.push_back("start_ms >= :since");
  if (q.until_ms) where.push_back("start_ms < :until");
  for (size_t i = 0; i < where.size(); ++i) sql += (i == 0 ? "WHERE " : " AND ") + where[i];
  sql += " ORDER BY start_ms DESC, id DESC LIMIT :limit";
  std::lock_guard lk(impl_->reader_mu);
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st, impl_->reader_db->prepare(sql));
  // Positional binds in the order the conditions were added.
  int i = 1;
  if (!q.function.empty()) st.bind(i++, q.function);
  if (!q.status.empty()) st.bind(i++, q.status);
  if (!q.trigger.empty()) st.bind(i++, q.trigger);
  if (q.since_ms) st.bind(i++, *q.since_ms);
  if (q.until_ms) st.bind(i++, *q.until_ms);
  st.bind(i, int64_t{q.limit});
  return st.collect(read_record);
}

Result<std::vector<InvocationRecord>> LogStore::records_between(int64_t since_ms,
                                                                int64_t until_ms) const {
  std::lock_guard lk(impl_->reader_mu);
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement st,
      impl_->reader_db->prepare(std::string(kRecordColumns) +
                                "WHERE start_ms >= ? AND start_ms < ? ORDER BY start_ms, id"));
  st.bind(1, since_ms).bind(2, until_ms);
  return st.collect(read_record);
}

Status LogStore::apply_record_retention(int64_t now_ms) {
  std::lock_guard lk(impl_->reader_mu);
  return trim_records(*impl_->reader_db, impl_->limits, now_ms);
}

int64_t LogStore::follow(const std::string& function, LogFollower follower) {
  std::lock_guard lk(impl_->followers_mu);
  int64_t id = impl_->next_follower++;
  impl_->followers.emplace(id, std::make_pair(function, std::move(follower)));
  impl_->follower_count.store(impl_->followers.size());
  return id;
}

void LogStore::unfollow(int64_t id) {
  std::lock_guard lk(impl_->followers_mu);
  impl_->followers.erase(id);
  impl_->follower_count.store(impl_->followers.size());
}

size_t LogStore::followers() const { return impl_->follower_count.load(); }

}  // namespace tamaya::meter
