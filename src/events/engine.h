// Async invocations: accept (durable before the caller hears 202), deliver
// at least once through the dispatcher with Lambda's retry rules, then the
// on-success / on-failure destination or the dead-letter table. The queue's
// index lives in memory on the daemon's event loop; every change of state is
// written through the QueueWriter (group commit, its own SQLite file), so a
// restart — even after SIGKILL — finds every accepted, undelivered event.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/settings.h"
#include "common/status.h"
#include "dispatch/dispatcher.h"
#include "events/queue.h"

namespace tamaya::events {

// Figures for /metrics and `GET /v1/events/stats`. Counters count since the
// daemon started; the rest is the state now.
struct Stats {
  int64_t queue_depth = 0;         // accepted, not yet finished (includes in flight)
  int64_t oldest_age_ms = 0;       // age of the oldest of them, 0 when empty
  int64_t in_flight = 0;           // deliveries running now
  int64_t dead_letters = 0;        // rows in the dead-letter table
  int64_t accepted = 0;            // events made durable and answered 202
  int64_t deliveries = 0;          // times a function ran for an event
  int64_t succeeded = 0;           // events finished with success
  int64_t retries = 0;             // re-deliveries after a function error
  int64_t throttles = 0;           // deliveries refused (429 / system) and retried later
  int64_t failed = 0;              // events sent to on-failure or the dead-letter table
  int64_t redelivered = 0;         // leased at the last stop (crash): delivered again
  int64_t destination_events = 0;  // records sent to on-success / on-failure functions
  int64_t commits = 0;             // queue transactions (group commits)
};

// What the dispatcher runs for an event, and how many of the function's
// deliveries may run at once (its max concurrency, lowered by a reservation;
// 0 = every delivery is throttled).
struct Resolved {
  dispatch::Target target;
  int concurrency = 1;
};

// Finds it for a function name and qualifier ("" = $LATEST); the daemon
// wires it to the registry.
using Resolver =
    std::function<Result<Resolved>(const std::string& function, const std::string& qualifier)>;

struct Services {
  boost::asio::io_context& io;
  dispatch::Dispatcher& dispatcher;
  Resolver resolve;
  const Settings& settings;
  const Clock& clock;
};

struct EnqueueRequest {
  std::string function;
  std::string qualifier;
  std::string payload;     // JSON, already validated by the API
  std::string request_id;  // generated when empty
  std::string trace_id;
  // What the invocation record says started it: "async", or "schedule".
  std::string trigger = "async";
};

// Everything runs on the io_context's thread except the writer's commits.
class Events {
 public:
  // Opens (creating) the queue file and loads what a previous run left.
  static Result<std::unique_ptr<Events>> open(Services services, const std::string& path);
  ~Events();

  // Answers with the event's id once it is committed (fsynced); 429
  // (ResourceExhausted) when the queue is at its limits.
  void enqueue(EnqueueRequest request, std::function<void(Result<std::string>)> accepted);

  // Per-function settings (Lambda's EventInvokeConfig).
  Result<InvokeConfig> config(const std::string& function) const;  // NotFound when unset
  // Validates (ranges, destinations exist), stores, then answers.
  void put_config(InvokeConfig config, std::function<void(Result<InvokeConfig>)> done);
  void delete_config(const std::string& function, std::function<void(Status)> done);
  // Parses a destination as given to the APIs: a function name, name:qualifier
  // or a Lambda function ARN; "" stays "".
  static Result<std::string> parse_destination(const std::string& arn_or_name);

  void dead_letters(const std::string& function, int limit,
                    std::function<void(Result<std::vector<DeadLetter>>)> done);
  // Back into the queue: every dead letter of `function` ("" = all), or only `id`.
  void redrive(const std::string& function, const std::string& id,
               std::function<void(Result<int>)> done);

  Stats stats() const;

  // Drain: no new deliveries start; running ones finish and are recorded.
  void stop();
  // Blocks until every state change so far is committed (shutdown, tests).
  void flush();

 private:
  struct Impl;
  explicit Events(std::shared_ptr<Impl> impl);
  // Shared so that a dispatcher callback arriving after shutdown sees it gone.
  std::shared_ptr<Impl> impl_;
};

}  // namespace tamaya::events
