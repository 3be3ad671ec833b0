// Instance pools and the invoke path. One pool per function version (and
// revision of $LATEST): an idle warm instance takes the next invocation, one
// at a time per instance as in Lambda; with none idle and the function under
// its max concurrency a new instance starts; otherwise the request waits in a
// bounded queue with a deadline and then gets 429. Idle instances stop after
// the idle timeout (scale to zero). Runs entirely on one io_context: no locks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/settings.h"
#include "common/status.h"
#include "registry/registry.h"
#include "runtime/launch.h"
#include "sandbox/launcher.h"

namespace tamaya::dispatch {

// What to run: one version of a function, resolved by the caller.
struct Target {
  registry::FunctionVersion function;
  std::string code_dir;
};

// Instances of one qualifier of a function kept warm (provisioned
// concurrency): started ahead, off the request path, never stopped by the
// idle timeout, replaced when they die or their code changes.
struct Provisioned {
  std::string qualifier;  // as configured: $LATEST, a version or an alias
  Target target;          // what it resolves to now
  int instances = 0;
};

// How one function scales (see dispatch/concurrency.h for the accounting).
struct FunctionScaling {
  // Reserved concurrency: a share of concurrency_limit no other function can
  // take, and a cap (with max_concurrency); 0 refuses every invocation.
  // nullopt: the function shares what is not reserved.
  std::optional<int> reserved;
  int idle_timeout_ms = 0;  // 0: the instance_idle_timeout_ms setting
  std::vector<Provisioned> provisioned;
};

struct ProvisionedStatus {
  std::string qualifier;
  std::string version;  // what the qualifier resolved to
  int requested = 0;
  int ready = 0;      // started, initialised and not dying
  std::string error;  // why the last start failed, until one succeeds
};

struct InvokeRequest {
  Target target;
  std::string payload;
  // Set instead of `payload`: builds it. Called at most once, inside
  // Dispatcher::invoke and only once the request is admitted (run or
  // queued), so a refused one (throttled) never pays for building its event;
  // it may refer to what lives as long as that call.
  std::function<std::string()> make_payload;
  std::string request_id;  // generated when empty
  std::string trace_id;
  std::string client_context;
  bool want_log_tail = false;
  // What caused the invocation, for records and metrics: "api", "gateway",
  // "async" or "schedule". Copied to the result.
  std::string trigger = "api";
};

struct InvokeResult {
  std::string request_id;
  // Not ok when the request never ran: throttled (429), draining (503),
  // payload too large (413).
  Status status;
  bool function_error = false;
  std::string error_type;
  std::string payload;  // the function's response, or its error document
  std::string executed_version;
  std::string trigger;   // the request's
  std::string log_tail;  // last 4 KB of the log, when asked for
  // Figures of the REPORT line.
  double duration_ms = 0;
  int64_t billed_ms = 0;
  double init_ms = 0;  // > 0 only on a cold start
  bool cold = false;
  int memory_mb = 0;
  int64_t max_memory_used_mb = 0;
};

struct LogLine {
  int64_t time_ms;
  std::string text;
};

// Told about every invocation that ran, with its framed log, so logs and
// records are stored by someone else, off the hot path.
class Observer {
 public:
  virtual ~Observer() = default;
  virtual void on_invocation(const std::string& function, const InvokeResult& result,
                             std::vector<LogLine> log) = 0;
  // A request that never ran (result.status says why: throttled, draining,
  // too large). Called on the dispatcher's io_context.
  virtual void on_refused(const std::string& /*function*/, const InvokeResult& /*result*/) {}
};

struct Stats {
  int instances = 0;
  int busy = 0;
  int idle = 0;
  int starting = 0;
  int queued = 0;
  int provisioned = 0;        // instances asked to be kept warm
  int provisioned_ready = 0;  // of those, initialised and serving
  // Its scale-out is held: the host's CPUs are saturated and its instances
  // use them (dispatch/cpu_hold.h).
  bool held = false;
};

class Dispatcher {
 public:
  Dispatcher(boost::asio::io_context& io, const Settings& settings, runtime::RuntimePaths paths,
             sandbox::Launcher& launcher, const Clock& clock, Observer* observer);
  ~Dispatcher();

  void invoke(InvokeRequest request, std::function<void(InvokeResult)> done);

  // The function changed or is gone: its idle instances stop now, busy ones
  // after their current invocation; queued requests keep waiting for
  // instances of the new code.
  void retire(const std::string& function);

  // Replaces a function's scaling: its reservation, idle timeout and
  // provisioned instances (started now, off the request path). An empty
  // FunctionScaling forgets the function.
  void configure(const std::string& function, const FunctionScaling& scaling);
  std::vector<ProvisionedStatus> provisioned(const std::string& function) const;

  // Stops taking new invocations, lets in-flight and queued ones finish up to
  // the drain deadline, then stops every instance and calls done.
  void drain(std::function<void()> done);

  Stats stats() const;
  Stats stats(const std::string& function) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "Task timed out after 3.00 seconds" and friends, as Lambda words them.
std::string timeout_message(const std::string& request_id, int timeout_s);

}  // namespace tamaya::dispatch
