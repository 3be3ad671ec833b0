// The per-invocation log store: lines captured from instances, kept in
// SQLite and read back by `tamaya logs` / the logs API. Writes happen on a
// background thread in batched transactions, so the invoke path never waits
// for disk; reads go to a connection of their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/database.h"

namespace tamaya::meter {

struct LogEvent {
  int64_t id = 0;  // assigned by the store; ignored by append()
  int64_t time_ms = 0;
  std::string function;
  std::string request_id;
  std::string message;
};

// Versions 200..299: table log_events with indexes (function, id) and
// (request_id). Pass them to store::Database::open before LogStore::open.
std::vector<store::Migration> migrations();

// Events waiting for the writer; beyond this append() drops and counts them,
// because blocking the event loop on a slow disk would be worse.
inline constexpr size_t kMaxQueuedLogEvents = 100'000;
// The writer commits when this many events wait, or after kLogBatchInterval.
inline constexpr size_t kLogBatchEvents = 1'000;
inline constexpr std::chrono::milliseconds kLogBatchInterval{50};
// How often functions written to are trimmed to max_events_per_function
// (also on every flush()): between trims a function may hold a bit more.
inline constexpr std::chrono::milliseconds kLogRetentionInterval{1'000};
inline constexpr int kMaxLogQueryLimit = 10'000;

// Thread-safe: any thread may append, query, flush or remove.
class LogStore {
 public:
  // Opens two connections to db_path (the writer thread's and the readers');
  // the caller's Database::open must already have applied migrations().
  static Result<std::unique_ptr<LogStore>> open(const std::string& db_path,
                                                int64_t max_events_per_function);
  ~LogStore();  // writes what is queued, then joins the writer thread
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // Never blocks on disk: queues for the writer thread.
  void append(std::vector<LogEvent> events);
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

 private:
  struct Impl;
  explicit LogStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tamaya::meter
