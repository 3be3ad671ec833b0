// The per-invocation store: log lines captured from instances and
// invocation records (records.h), kept in SQLite and read back by `tamaya
// logs`, `tamaya invocations`, `tamaya usage` and their APIs. Writes happen
// on a background thread in batched transactions, so the invoke path never
// waits for disk; reads go to a connection of their own. Live followers
// (`tamaya logs -f`) get lines as they are appended, before they are written.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "meter/records.h"
#include "store/database.h"

namespace tamaya::meter {

struct LogEvent {
  int64_t id = 0;  // assigned by the store; ignored by append()
  int64_t time_ms = 0;
  std::string function;
  std::string request_id;
  std::string message;
};

// Versions 200..299: table log_events (index (function, id, seq)) and table
// invocations (records). Pass them to store::Database::open before
// LogStore::open.
std::vector<store::Migration> migrations();

// Consecutive lines of one function and request (an invocation's START,
// output, END and REPORT) are stored as one row of at most this many lines:
// a row costs the writer about as much as a line did. A line's id is its
// row's id times this plus its place in the row, so ids still grow line by
// line and a query can start inside a row.
inline constexpr int64_t kLogLinesPerRow = 1'024;

// Events waiting for the writer; beyond this append() drops and counts them,
// because blocking the event loop on a slow disk would be worse.
inline constexpr size_t kMaxQueuedLogEvents = 100'000;
// The writer commits when this many events wait, or after kLogBatchInterval.
// Every commit writes each page it touched to the WAL (index pages of random
// keys are many), so fewer, larger batches cost the writer less per line.
inline constexpr size_t kLogBatchEvents = 4'096;
inline constexpr std::chrono::milliseconds kLogBatchInterval{100};
// How often functions written to are trimmed to max_events_per_function
// (also on every flush()): between trims a function may hold a bit more.
// Rows go whole: the row holding the oldest line kept stays with all its
// lines, so a function keeps up to kLogLinesPerRow - 1 lines more.
inline constexpr std::chrono::milliseconds kLogRetentionInterval{1'000};
inline constexpr int kMaxLogQueryLimit = 10'000;
// Records waiting for the writer; beyond this they are dropped and counted.
inline constexpr size_t kMaxQueuedRecords = 100'000;
// Record retention by age also runs this often when nothing is written.
inline constexpr std::chrono::milliseconds kRecordAgeCheckInterval{60'000};

// Retention (settings log_max_events_per_function, invocation_max_age_s,
// invocation_max_rows).
struct StoreLimits {
  int64_t max_events_per_function = 10'000;
  int64_t record_max_age_ms = 30ll * 24 * 3600 * 1000;
  int64_t record_max_rows = 1'000'000;
};

// Gets a function's new log lines as they are appended, on the appending
// thread (the daemon's io_context). Must not call back into the store.
using LogFollower = std::function<void(const std::vector<LogEvent>&)>;

// Thread-safe: any thread may append, query, flush or remove.
class LogStore {
 public:
  // Opens two connections to db_path (the writer thread's and the readers');
  // the caller's Database::open must already have applied migrations().
  static Result<std::unique_ptr<LogStore>> open(const std::string& db_path,
                                                int64_t max_events_per_function);
  static Result<std::unique_ptr<LogStore>> open(const std::string& db_path, StoreLimits limits);
  ~LogStore();  // writes what is queued, then joins the writer thread
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // Never blocks on disk: queues for the writer thread.
  void append(std::vector<LogEvent> events);
  // An invocation's record and its log lines, written in one transaction.
  void record(InvocationRecord record, std::vector<LogEvent> events);
  // Waits until everything appended so far is written and retention has run
  // over it (tests, shutdown).
  void flush();
  // Events of `function` with id > since_id, oldest first, at most `limit`
  // (1..kMaxLogQueryLimit); only those of `request_id` when it is not empty.
  Result<std::vector<LogEvent>> query(const std::string& function, int64_t since_id, int limit,
                                      const std::string& request_id) const;
  // Deletes every stored and queued event of `function`.
  Status remove_function(const std::string& function);
  // Events dropped because the queue was full or a batch failed to write.
  int64_t dropped() const;
  int64_t dropped_records() const;

  // Records matching q, newest first.
  Result<std::vector<InvocationRecord>> invocations(const RecordQuery& q) const;
  // Every record that started in [since_ms, until_ms), for usage reports.
  Result<std::vector<InvocationRecord>> records_between(int64_t since_ms, int64_t until_ms) const;
  // Deletes records older than the max age (relative to now_ms) and beyond
  // the max rows. The writer runs it by itself; public for tests.
  Status apply_record_retention(int64_t now_ms);

  // Live tail: `follower` gets every later append of `function` until
  // unfollow(id). Cheap when nobody follows (one atomic load per append).
  int64_t follow(const std::string& function, LogFollower follower);
  void unfollow(int64_t id);
  size_t followers() const;

 private:
  struct Impl;
  explicit LogStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tamaya::meter
