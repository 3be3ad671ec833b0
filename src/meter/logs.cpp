#include "meter/logs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace tamaya::meter {

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
  };
}

struct LogStore::Impl {
  Impl(std::unique_ptr<store::Database> w, std::unique_ptr<store::Database> r, int64_t max)
      : writer_db(std::move(w)), reader_db(std::move(r)), max_events_per_function(max) {}

  void run();
  Status write(const std::vector<LogEvent>& batch);
  void trim(const std::set<std::string>& functions);

  std::unique_ptr<store::Database> writer_db;  // used by the writer thread only
  std::unique_ptr<store::Database> reader_db;  // guarded by reader_mu
  mutable std::mutex reader_mu;
  const int64_t max_events_per_function;

  std::mutex mu;                     // guards the fields below
  std::condition_variable wake;      // writer: work arrived, flush asked, or stop
  std::condition_variable progress;  // flush(): the writer finished a round
  std::deque<LogEvent> queue;
  uint64_t flush_requests = 0;
  uint64_t flushes_done = 0;
  bool stop = false;

  std::atomic<int64_t> dropped{0};
  std::thread thread;
};

void LogStore::Impl::run() {
  std::set<std::string> dirty;  // functions written since their last trim
  auto last_trim = std::chrono::steady_clock::now();
  std::unique_lock lk(mu);
  while (true) {
    wake.wait(lk, [&] { return stop || !queue.empty() || flush_requests > flushes_done; });
    // A short window lets a burst of lines share one transaction.
    if (!stop && flush_requests == flushes_done && queue.size() < kLogBatchEvents) {
      wake.wait_for(lk, kLogBatchInterval, [&] {
        return stop || queue.size() >= kLogBatchEvents || flush_requests > flushes_done;
      });
    }
    // Everything appended before these flush requests is in the queue now or
    // was written in an earlier round (and is still in `dirty`).
    const uint64_t serving = flush_requests;
    std::vector<LogEvent> batch(std::make_move_iterator(queue.begin()),
                                std::make_move_iterator(queue.end()));
    queue.clear();
    const bool stopping = stop;
    lk.unlock();

    if (!batch.empty()) {
      Status s = write(batch);
      if (s.ok()) {
        for (const LogEvent& e : batch) {
          dirty.insert(e.function);
        }
      } else {
        dropped += static_cast<int64_t>(batch.size());
        spdlog::error("log store write failed events={} error={}", batch.size(), s.message());
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (!dirty.empty() &&
        (serving > flushes_done || stopping || now - last_trim >= kLogRetentionInterval)) {
      trim(dirty);
      dirty.clear();
      last_trim = now;
    }

    lk.lock();
    flushes_done = serving;
    progress.notify_all();
    if (stopping && queue.empty()) {
      return;
    }
  }
}

Status LogStore::Impl::write(const std::vector<LogEvent>& batch) {
  return writer_db->transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement insert,
        writer_db->prepare(
            "INSERT INTO log_events(time_ms, function, request_id, message) VALUES (?, ?, ?, ?)"));
    for (const LogEvent& e : batch) {
      insert.reset();
      insert.bind(1, e.time_ms).bind(2, e.function).bind(3, e.request_id).bind(4, e.message);
      TAMAYA_RETURN_IF_ERROR(insert.run());
    }
    return Status::Ok();
  });
}

void LogStore::Impl::trim(const std::set<std::string>& functions) {
  // Keeps the newest max_events_per_function: finds the id just below them
  // through the (function, id) index and deletes from there down.
  Status s = writer_db->transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement del,
        writer_db->prepare("DELETE FROM log_events WHERE function = ?1 AND id <= "
                           "(SELECT id FROM log_events WHERE function = ?1 "
                           " ORDER BY id DESC LIMIT 1 OFFSET ?2)"));
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
  if (max_events_per_function < 1) {
    return Status::Invalid("max log events per function is " +
                           std::to_string(max_events_per_function) + "; use 1 or more");
  }
  TAMAYA_ASSIGN_OR_RETURN(auto writer, store::Database::open(db_path, {}));
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
  auto impl = std::make_unique<Impl>(std::move(writer), std::move(reader), max_events_per_function);
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
  int64_t rejected = 0;
  {
    std::lock_guard lk(impl_->mu);
    const size_t room = kMaxQueuedLogEvents - std::min(impl_->queue.size(), kMaxQueuedLogEvents);
    const size_t take = std::min(room, events.size());
    std::move(events.begin(), events.begin() + static_cast<std::ptrdiff_t>(take),
              std::back_inserter(impl_->queue));
    rejected = static_cast<int64_t>(events.size() - take);
  }
  impl_->wake.notify_one();
  if (rejected > 0) {
    int64_t before = impl_->dropped.fetch_add(rejected);
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
  auto stmt = request_id.empty()
                  ? db.prepare(
                        "SELECT id, time_ms, function, request_id, message FROM log_events "
                        "WHERE function = ? AND id > ? ORDER BY id LIMIT ?")
                  : db.prepare(
                        "SELECT id, time_ms, function, request_id, message FROM log_events "
                        "WHERE function = ? AND id > ? AND request_id = ? "
                        "ORDER BY id LIMIT ?");
  if (!stmt.ok()) {
    return stmt.status();
  }
  stmt->bind(1, function).bind(2, since_id);
  if (request_id.empty()) {
    stmt->bind(3, int64_t{limit});
  } else {
    stmt->bind(3, request_id).bind(4, int64_t{limit});
  }
  std::vector<LogEvent> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, stmt->step());
    if (!row) {
      break;
    }
    LogEvent e;
    e.id = stmt->column_int(0);
    e.time_ms = stmt->column_int(1);
    e.function = stmt->column_text(2);
    e.request_id = stmt->column_text(3);
    e.message = stmt->column_text(4);
    out.push_back(std::move(e));
  }
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

}  // namespace tamaya::meter
