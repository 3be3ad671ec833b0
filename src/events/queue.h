// The durable part of async invocations: events waiting for delivery, the
// dead-letter table and per-function event-invoke configs, in their own
// SQLite file (WAL, synchronous=FULL). QueueStore is the synchronous SQL;
// QueueWriter runs it on one thread and commits many operations in one
// transaction (group commit), so an accepted event costs a share of one fsync.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "store/database.h"

namespace tamaya::events {

// One accepted async invocation. Times are wall-clock milliseconds so they
// survive a restart.
struct Event {
  std::string id;  // the request id the function sees; kept across retries
  std::string function;
  std::string qualifier;  // "" = $LATEST; resolved at each delivery
  std::string payload;    // JSON bytes as accepted
  std::string trace_id;
  std::string trigger = "async";  // "schedule" for a schedule's fires
  int64_t enqueued_ms = 0;        // the maximum event age counts from here
  int64_t due_ms = 0;             // not delivered before this
  int invokes = 0;                // times the function ran (approximateInvokeCount)
  int throttles = 0;              // deliveries refused (429, system errors) in a row
  int64_t leased_ms = 0;          // > 0: a delivery started and has not finished
};

// An event that failed for good with no on-failure function to take it.
struct DeadLetter {
  std::string id;
  std::string function;
  std::string qualifier;
  std::string payload;
  std::string trace_id;
  std::string condition;  // RetriesExhausted, EventAgeExceeded, ...
  std::string error;      // the last error, for people
  int invokes = 0;
  int64_t enqueued_ms = 0;
  int64_t failed_ms = 0;
  std::string record;  // Lambda's destination invocation record (JSON)
};

// Lambda's PutFunctionEventInvokeConfig, per function.
struct InvokeConfig {
  std::string function;
  int max_retry_attempts = 2;    // 0..2
  int max_event_age_s = 21'600;  // 60 s .. 6 h (the floor is a setting)
  std::string on_success;        // function name[:qualifier], "" = none
  std::string on_failure;        // "" = the dead-letter table
  int64_t last_modified_ms = 0;
};

inline constexpr int kDefaultMaxRetryAttempts = 2;
inline constexpr int kMaxMaxRetryAttempts = 2;
inline constexpr int kMaxEventAgeS = 21'600;

// Versions 300..349 of the queue's own database file.
std::vector<store::Migration> migrations();

// Synchronous SQL over one connection; one thread at a time.
class QueueStore {
 public:
  // Opens (creating) the queue file with WAL and synchronous=FULL: a commit
  // returns only after fsync, so an acknowledged event survives a power loss.
  static Result<std::unique_ptr<QueueStore>> open(const std::string& path);

  store::Database& db() { return *db_; }

  Status insert(const Event& e);
  // A delivery started: recorded so a restart can count redeliveries.
  Status lease(const std::string& id, int64_t now_ms);
  Status unlease(const std::string& id);
  Status remove(const std::string& id);
  // Another attempt later (function error or throttle).
  Status reschedule(const Event& e);
  // Moves the event out of the queue into the dead-letter table.
  Status dead_letter(const DeadLetter& d);

  // Everything queued, oldest first (recovery at start).
  Result<std::vector<Event>> load();
  // Dead letters of `function` ("" = all), oldest first.
  Result<std::vector<DeadLetter>> dead_letters(const std::string& function, int limit);
  Result<int64_t> dead_letter_count();
  // Moves dead letters (all of `function`, or the one with `id`) back into the
  // queue, due at now_ms with a fresh age and invoke count; returns them.
  Result<std::vector<Event>> redrive(const std::string& function, const std::string& id,
                                     int64_t now_ms);

  Status put_config(const InvokeConfig& c);
  Status delete_config(const std::string& function);
  Result<std::vector<InvokeConfig>> configs();

 private:
  explicit QueueStore(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::Statement> insert_;  // declared after db_: destroyed before it
};

// Runs operations on the store from its own thread. Everything waiting when
// the thread wakes is committed in one transaction (each operation in its
// own savepoint, so one failing undoes only itself); `done` is called on the
// writer thread after the commit, i.e. after fsync.
class QueueWriter {
 public:
  using Op = std::function<Status(QueueStore&)>;
  using Done = std::function<void(Status)>;

  explicit QueueWriter(std::unique_ptr<QueueStore> store);
  ~QueueWriter();  // commits what is queued, then joins
  QueueWriter(const QueueWriter&) = delete;
  QueueWriter& operator=(const QueueWriter&) = delete;

  void submit(Op op, Done done = nullptr);
  // Waits until everything submitted so far is committed.
  void flush();

  // Figures of the group commit, for the README and the bench.
  int64_t commits() const;
  int64_t ops() const;

 private:
  void run();
  Status run_op(const Op& op);

  std::unique_ptr<QueueStore> store_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable progress_;
  std::deque<std::pair<Op, Done>> queue_;
  uint64_t submitted_ = 0;
  uint64_t committed_ = 0;
  int64_t commits_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tamaya::events
