#include "dispatch/dispatcher.h"

#include <fcntl.h>
#include <fmt/compile.h>
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>

#include "common/encoding.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/time_format.h"
#include "dispatch/concurrency.h"
#include "dispatch/cpu_hold.h"
#include "dispatch/launch_queue.h"
#include "runtime/endpoint.h"
#include "sandbox/cgroup.h"
#include "sandbox/exit_status.h"
#include "sandbox/netns.h"
#include "sandbox/uids.h"

namespace tamaya::dispatch {

namespace asio = boost::asio;
using std::chrono::milliseconds;

std::string timeout_message(const std::string& request_id, int timeout_s) {
  return fmt::format("RequestId: {} Error: Task timed out after {}.00 seconds", request_id,
                     timeout_s);
}

namespace {

constexpr size_t kLogTailBytes = 4096;
constexpr size_t kPipeReadChunk = size_t{64} * 1024;

// Whole microseconds, because the log store keeps durations in µs: the REPORT
// line and the stored record then print the same two decimals.
double ms_between(SteadyTime a, SteadyTime b) {
  return double(std::chrono::duration_cast<std::chrono::microseconds>(b - a).count()) / 1000.0;
}

std::string error_document(const std::string& type, const std::string& message) {
  return json_text({{"errorMessage", message}, {"errorType", type}});
}

// An instance's peak memory (as sandbox::peak_memory_bytes: its cgroup's
// peak, else VmHWM) through a file kept open: one pread per REPORT instead of
// an open, read and close of a kernfs or /proc file on the invoke path.
class PeakMemoryReader {
 public:
  explicit PeakMemoryReader(const sandbox::Process& p) : pid_(p.pid) {
    if (!p.cgroups.memory_dir.empty()) {
      std::string path = p.cgroups.memory_dir + (p.cgroups.version == sandbox::CgroupVersion::kV2
                                                     ? "/memory.peak"
                                                     : "/memory.max_usage_in_bytes");
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      cgroup_ = fd_ >= 0;
    }
    if (fd_ < 0 && pid_ > 0) {
      fd_ = ::open(("/proc/" + std::to_string(pid_) + "/status").c_str(), O_RDONLY | O_CLOEXEC);
    }
  }
  PeakMemoryReader(const PeakMemoryReader&) = delete;
  PeakMemoryReader& operator=(const PeakMemoryReader&) = delete;
  ~PeakMemoryReader() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Bytes, 0 when unknown. Both files are generated afresh on each read
  // from offset 0 (seq_file), so pread sees the current figure.
  int64_t read() const {
    if (fd_ < 0) return 0;
    char buf[4096];
    ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    if (n <= 0) return cgroup_ ? sandbox::peak_rss_bytes(pid_) : 0;
    std::string_view text(buf, size_t(n));
    const char* last = text.data() + text.size();
    if (cgroup_) {
      int64_t value = 0;
      auto [end, ec] = std::from_chars(text.data(), last, value);
      if (ec == std::errc() && end != text.data() && value > 0) return value;
      return sandbox::peak_rss_bytes(pid_);
    }
    constexpr std::string_view kKey = "\nVmHWM:";
    size_t at = text.find(kKey);
    if (at == std::string_view::npos) return 0;
    const char* p = text.data() + at + kKey.size();
    while (p < last && (*p == ' ' || *p == '\t')) ++p;
    int64_t kib = 0;
    auto [end, ec] = std::from_chars(p, last, kib);
    return ec == std::errc() && end != p ? kib * 1024 : 0;
  }

 private:
  int fd_ = -1;
  bool cgroup_ = false;  // else /proc/<pid>/status
  pid_t pid_ = -1;
};

struct Waiter {
  InvokeRequest request;
  std::function<void(InvokeResult)> done;
  std::unique_ptr<asio::steady_timer> timer;
  // Waiting because its function is held (dispatch/cpu_hold.h), not full:
  // the timer first ends that wait.
  bool held = false;
};

struct Active {
  InvokeRequest request;
  std::function<void(InvokeResult)> done;
  SteadyTime started{};  // when the payload was handed to the runtime
  bool cold = false;
  bool begun = false;
  std::vector<LogLine> log;
  int64_t log_bytes = 0;
  bool truncated = false;
};

enum class State { kStarting, kIdle, kBusy, kDying };
enum class Due { kNone, kStart, kInvoke, kIdle };

struct Instance {
  Instance(asio::io_context& io) : timer(io) {}
  uint64_t id = 0;
  std::string pool_key;
  std::string function;
  sandbox::Process process;
  std::unique_ptr<runtime::Endpoint> endpoint;
  std::unique_ptr<asio::posix::stream_descriptor> pidfd;
  std::unique_ptr<asio::posix::stream_descriptor> out;
  std::unique_ptr<asio::posix::stream_descriptor> err;
  // A zygote's child is handed over at its "go" (LaunchSpec::hand_over_at_go)
  // and says here whether it walled itself in; closed once it has.
  std::unique_ptr<asio::posix::stream_descriptor> walled;
  // It could not: killed, and the request it was started for starts again
  // (on_exit), as a spawn that failed before the hand-over did.
  std::string not_walled_in;
  std::string partial[2];
  State state = State::kStarting;
  SteadyTime spawned{};
  double init_ms = 0;
  bool ready = false;
  std::optional<Active> active;
  std::vector<LogLine> pending_log;  // output between invocations (init)
  int64_t pending_bytes = 0;
  // One timer for every deadline of the instance (start, invocation, idle),
  // moved lazily: a later deadline only updates `due_at`, and the timer, when
  // it fires early, waits again for the rest. An invocation therefore costs
  // no timer operation (no re-arm, no cancelled handler) under steady load.
  asio::steady_timer timer;
  Due due = Due::kNone;
  std::chrono::steady_clock::time_point due_at{};
  bool timer_waiting = false;
  std::chrono::steady_clock::time_point timer_at{};
  uint64_t timer_gen = 0;
  std::string init_error_type;
  std::string init_error_body;
  int netns_fd = -1;         // network "none": the instance's own namespace
  bool provisioned = false;  // kept warm: no idle timeout, replaced when it dies
  // Opened at the first REPORT, while the instance (and its cgroup) lives.
  std::unique_ptr<PeakMemoryReader> peak;
  std::string function_arn;  // made at the first invocation
  // CPU time at the last sample (-1: none yet), for holding (cpu_hold.h).
  std::unique_ptr<RunTimeReader> cpu;
  int64_t cpu_ns = -1;

  // Its process is being started on a LaunchQueue thread: no pid, no pipes
  // yet. Such an instance stays in the map until the launch comes back (a
  // failed launch removes it at once).
  bool launching() const { return process.pid <= 0; }
  // Its runtime asked for work before the launch came back to the loop (the
  // launching thread was slower than the instance): on_launched takes it up.
  bool next_before_launched = false;
};

struct Pool {
  std::string key;
  std::string function;
  Target target;
  std::vector<uint64_t> idle;  // most recently used last
  int instances = 0;
  std::deque<std::unique_ptr<Waiter>> queue;
  bool retired = false;
  // Provisioned concurrency of this pool's qualifier.
  int provisioned = 0;
  std::string qualifier;
  int provision_failures = 0;  // in a row: sets the retry back-off
  std::string provision_error;
  bool provision_waiting = false;
  std::unique_ptr<asio::steady_timer> provision_timer;
  int active = 0;  // instances with an invocation (running or waiting for their start)
  HoldState hold;
  int64_t cpu_window_ns = 0;  // its instances' CPU time in the current sample
  int held_waits = 0;         // requests that waited because of the hold, this sample
};

}  // namespace

struct Dispatcher::Impl {
  Impl(asio::io_context& io, const Settings& s, runtime::RuntimePaths p, sandbox::Launcher& l,
       const Clock& c, Observer* o)
      : io(io),
        settings(s),
        paths(std::move(p)),
        launcher(l),
        clock(c),
        observer(o),
        drain_timer(io),
        layers(l.layers()),
        uids(uint32_t(s.sandbox_uid_base), uint32_t(s.sandbox_uid_count)),
        book(s.concurrency_limit),
        launches(io, l, s.launch_threads),
        sample_timer(io) {
    hold_policy.cores = usable_cores();
    hold_policy.busy_per_core = s.scale_sample_ms > 0 ? s.scale_hold_busy_per_core : 0;
    hold_policy.pressure_percent = s.scale_hold_cpu_pressure_percent;
    hold_policy.function_cpu_percent = s.scale_hold_function_cpu_percent;
    if (hold_policy.busy_per_core > 0 && !pressure.available()) {
      spdlog::info(
          "this host has no CPU pressure figures (/proc/pressure/cpu): CPU-bound functions are "
          "never held (scale_hold_busy_per_core)");
      hold_policy.busy_per_core = 0;
    }
  }

  asio::io_context& io;
  const Settings& settings;
  runtime::RuntimePaths paths;
  sandbox::Launcher& launcher;
  const Clock& clock;
  Observer* observer;

  std::unordered_map<std::string, std::unique_ptr<Pool>> pools;
  std::unordered_map<uint64_t, std::unique_ptr<Instance>> instances;
  uint64_t next_id = 1;
  // Dying instances whose end kill() put at idle, until hurry_dying or
  // their removal.
  std::vector<uint64_t> ending_at_idle;

  bool draining = false;
  std::function<void()> drain_done;
  asio::steady_timer drain_timer;
  SteadyTime drain_deadline{};

  sandbox::Layers layers;  // what the launcher isolates
  sandbox::UidMap uids;
  ConcurrencyBook book;
  std::unordered_map<std::string, int> idle_timeout_ms;  // per function, when not the setting

  // Declared after everything its completions touch, so it goes first.
  LaunchQueue launches;

  // Holding (cpu_hold.h): sampled on a timer while instances exist.
  HoldPolicy hold_policy;
  HostPressure pressure;
  asio::steady_timer sample_timer;
  bool sampling = false;
  int64_t last_stall_us = -1;
  SteadyTime last_sample{};

  // --- pools -------------------------------------------------------------

  static std::string pool_key(const Target& t) {
    return t.function.name + "\n" + t.function.version + "\n" + t.function.revision_id;
  }

  Pool& pool_for(const Target& target) {
    std::string key = pool_key(target);
    auto it = pools.find(key);
    std::deque<std::unique_ptr<Waiter>> waiting;
    if (it != pools.end()) {
      if (!it->second->retired) return *it->second;
      // Retired without a new revision (a version deleted, a scaling change):
      // its instances finish under another key; new work gets a fresh pool,
      // and the waiting requests move with it (their timers look them up by key).
      auto old = std::move(it->second);
      pools.erase(it);
      std::string old_key = key + "\n~" + std::to_string(next_id++);
      for (auto& [id, inst] : instances) {
        if (inst->pool_key == key) inst->pool_key = old_key;
      }
      old->key = old_key;
      waiting = std::move(old->queue);
      old->queue.clear();
      pools.emplace(old_key, std::move(old));
      maybe_erase_pool(old_key);
    }
    // A newer revision of the same version replaces the older pool.
    for (auto& [k, p] : pools) {
      if (!p->retired && p->function == target.function.name &&
          p->target.function.version == target.function.version) {
        retire_pool(*p);
      }
    }
    auto pool = std::make_unique<Pool>();
    pool->key = key;
    pool->function = target.function.name;
    pool->target = target;
    pool->queue = std::move(waiting);
    Pool& ref = *pool;
    pools.emplace(key, std::move(pool));
    return ref;
  }

  void retire_pool(Pool& pool) {
    pool.retired = true;
    auto idle = pool.idle;
    for (uint64_t id : idle) kill(id);
  }

  void maybe_erase_pool(const std::string& key) {
    auto it = pools.find(key);
    if (it == pools.end()) return;
    Pool& p = *it->second;
    if (p.instances == 0 && p.queue.empty() && (p.retired || draining)) pools.erase(it);
  }

  int max_concurrency(const Pool& pool) const {
    return book.cap(pool.function, pool.target.function.config.max_concurrency);
  }

  // Whether the pool's function may start one more instance now. When the
  // unreserved pool is what stands in the way, an idle instance of another
  // unreserved function is stopped to make room (it would otherwise hold its
  // slot until its idle timeout); the caller waits for that slot.
  bool can_start(Pool& pool) {
    auto v = book.may_start(pool.function, pool.target.function.config.max_concurrency);
    if (v == ConcurrencyBook::Verdict::kOk) return true;
    if (v == ConcurrencyBook::Verdict::kUnreservedPool) evict_idle_unreserved(pool.function);
    hurry_dying();
    return false;
  }

  // A dying instance holds its slot until it is gone (concurrency.h). Ends
  // put at idle (kill) go back to full speed once something waits for a
  // slot: on busy CPUs an idle-class end gets almost no CPU time.
  void hurry_dying() {
    for (uint64_t id : ending_at_idle) {
      if (Instance* inst = find(id)) sandbox::set_cpu_idle(inst->process.cgroups, false).ok();
    }
    ending_at_idle.clear();
  }

  // Whether a request waits in any queue, maybe for the slot an ending
  // instance holds: then that end is not background work.
  bool anyone_waits() const {
    return std::any_of(pools.begin(), pools.end(),
                       [](const auto& kv) { return !kv.second->queue.empty(); });
  }

  void evict_idle_unreserved(const std::string& except) {
    for (auto& [k, p] : pools) {
      if (p->function == except || book.reserved(p->function)) continue;
      for (uint64_t id : p->idle) {
        Instance* inst = find(id);
        if (inst && !inst->provisioned) {
          spdlog::debug("instance evicted for unreserved capacity function={} instance={}",
                        inst->function, id);
          return kill(id);
        }
      }
    }
  }

  std::string throttle_message(const Pool& pool) const {
    auto v = book.may_start(pool.function, pool.target.function.config.max_concurrency);
    if (v == ConcurrencyBook::Verdict::kUnreservedPool) {
      return fmt::format(
          "the unreserved concurrency is in use: {} instances of functions without a reservation "
          "(concurrency_limit {} less {} reserved); retry later, or reserve concurrency for "
          "function '{}'",
          book.unreserved_in_use(), book.limit(), book.reserved_total(), pool.function);
    }
    return fmt::format("function '{}' is at its max concurrency of {}", pool.function,
                       max_concurrency(pool));
  }

  int idle_timeout_for(const std::string& function) const {
    auto it = idle_timeout_ms.find(function);
    return it == idle_timeout_ms.end() ? settings.instance_idle_timeout_ms : it->second;
  }

  // --- provisioned concurrency ------------------------------------------

  void configure(const std::string& function, const FunctionScaling& s) {
    book.set_reserved(function, s.reserved);
    if (s.idle_timeout_ms > 0) {
      idle_timeout_ms[function] = s.idle_timeout_ms;
    } else {
      idle_timeout_ms.erase(function);
    }
    std::set<std::string> keep;
    for (auto& p : s.provisioned) {
      if (p.instances <= 0 || draining) continue;
      Pool& pool = pool_for(p.target);
      // Two qualifiers may resolve to one version (an alias and its version).
      if (keep.count(pool.key)) {
        pool.provisioned += p.instances;
      } else {
        pool.provisioned = p.instances;
        pool.qualifier = p.qualifier;
      }
      keep.insert(pool.key);
    }
    for (auto& [k, p] : pools) {
      if (p->function == function && p->provisioned > 0 && !keep.count(k)) unprovision(*p);
    }
    for (const auto& k : keep) top_up(*pools.at(k));
    // A changed reservation may make room for waiting requests.
    std::vector<std::string> keys;
    for (auto& [k, p] : pools) {
      if (!p->queue.empty()) keys.push_back(k);
    }
    for (const auto& k : keys) {
      if (auto it = pools.find(k); it != pools.end()) serve_queue(*it->second);
    }
  }

  void unprovision(Pool& pool) {
    pool.provisioned = 0;
    pool.provision_error.clear();
    pool.provision_failures = 0;
    pool.provision_waiting = false;
    if (pool.provision_timer) pool.provision_timer->cancel();
    for (auto& [id, inst] : instances) {
      if (inst->pool_key != pool.key || !inst->provisioned) continue;
      inst->provisioned = false;
      if (inst->state == State::kIdle) arm_idle_timer(*inst);
    }
  }

  // Brings the pool's warm instances to what is asked: live on-demand
  // instances are adopted first, then new ones start (as capacity allows).
  void top_up(Pool& pool) {
    if (pool.retired || draining || pool.provision_waiting) return;
    int have = 0;
    std::vector<Instance*> spare;
    for (auto& [id, inst] : instances) {
      if (inst->pool_key != pool.key || inst->state == State::kDying) continue;
      if (inst->provisioned) {
        if (have < pool.provisioned) {
          have++;
        } else {  // asked for fewer: the rest become on-demand instances
          inst->provisioned = false;
          if (inst->state == State::kIdle) arm_idle_timer(*inst);
        }
      } else {
        spare.push_back(inst.get());
      }
    }
    for (Instance* inst : spare) {
      if (have >= pool.provisioned) break;
      inst->provisioned = true;
      if (inst->state == State::kIdle) clear_due(*inst);
      have++;
    }
    while (have < pool.provisioned && !pool.provision_waiting && can_start(pool)) {
      InvokeRequest r;
      r.target = pool.target;
      start_instance(pool, std::move(r), nullptr, /*provisioned=*/true);
      have++;
    }
  }

  void provision_failed(const std::string& key, const std::string& why) {
    auto it = pools.find(key);
    if (it == pools.end() || it->second->provisioned == 0) return;
    Pool& p = *it->second;
    p.provision_error = why.substr(0, 512);
    p.provision_failures++;
    int delay = int(std::min<int64_t>(settings.provision_retry_max_ms,
                                      int64_t(100) << std::min(p.provision_failures - 1, 20)));
    spdlog::warn(
        "provisioned instance failed to start function={} qualifier={} retry_ms={} "
        "error={}",
        p.function, p.qualifier, delay, p.provision_error);
    if (!p.provision_timer) p.provision_timer = std::make_unique<asio::steady_timer>(io);
    p.provision_waiting = true;
    p.provision_timer->expires_after(milliseconds(delay));
    p.provision_timer->async_wait([this, key](boost::system::error_code ec) {
      if (ec) return;
      auto pit = pools.find(key);
      if (pit == pools.end()) return;
      pit->second->provision_waiting = false;
      top_up(*pit->second);
    });
  }

  // --- invoke ------------------------------------------------------------

  void invoke(InvokeRequest req, std::function<void(InvokeResult)> done) {
    if (req.request_id.empty()) req.request_id = new_request_id();
    if (draining) {
      return reject(req, done,
                    Status::Unavailable("tamaya is shutting down; retry on another node or later"));
    }
    if (int64_t(req.payload.size()) > settings.invoke_max_payload_bytes) {
      return reject_too_large(req, done);
    }
    if (auto r = book.reserved(req.target.function.name); r && *r == 0) {
      return reject(req, done,
                    Status::Exhausted(fmt::format(
                        "function '{}' has a reserved concurrency of 0, so every invocation is "
                        "refused; raise it or delete the function's concurrency setting",
                        req.target.function.name)));
    }
    Pool& pool = pool_for(req.target);
    bool idle = !pool.idle.empty();
    bool start = !idle && can_start(pool);
    // A held function's request waits for a busy instance even with an idle
    // one at hand, unless its queue is full: then running it beats refusing.
    const bool wait_held = (idle || start) && held_full(pool) &&
                           int(pool.queue.size()) < settings.queue_max_per_function;
    if (wait_held) idle = start = false;
    if (!idle && !start && int(pool.queue.size()) >= settings.queue_max_per_function) {
      return reject(req, done,
                    Status::Exhausted(
                        fmt::format("{} and {} requests are already waiting; retry later or raise "
                                    "max_concurrency",
                                    throttle_message(pool), pool.queue.size())));
    }
    // Admitted: now the payload is worth building.
    if (req.make_payload) {
      req.payload = req.make_payload();
      req.make_payload = nullptr;
      if (int64_t(req.payload.size()) > settings.invoke_max_payload_bytes) {
        return reject_too_large(req, done);
      }
    }
    if (idle) return assign(take_idle(pool), std::move(req), std::move(done));
    if (start) {
      return start_instance(pool, std::move(req), std::move(done));
    }
    enqueue(pool, std::move(req), std::move(done), wait_held);
  }

  void reject_too_large(const InvokeRequest& req, const std::function<void(InvokeResult)>& done) {
    reject(req, done,
           Status::TooLarge(fmt::format("request payload of {} bytes is over the limit of {} bytes",
                                        req.payload.size(), settings.invoke_max_payload_bytes)));
  }

  void reject(const InvokeRequest& req, const std::function<void(InvokeResult)>& done,
              Status status) {
    InvokeResult r;
    r.request_id = req.request_id;
    r.status = std::move(status);
    r.executed_version = req.target.function.version;
    r.trigger = req.trigger;
    if (observer) observer->on_refused(req.target.function.name, r);
    done(std::move(r));
  }

  void enqueue(Pool& pool, InvokeRequest req, std::function<void(InvokeResult)> done,
               bool by_hold = false) {
    auto w = std::make_unique<Waiter>();
    w->request = std::move(req);
    w->done = std::move(done);
    w->held = by_hold;
    if (by_hold) pool.held_waits++;
    w->timer = std::make_unique<asio::steady_timer>(
        io, milliseconds(by_hold ? hold_wait_ms() : settings.queue_timeout_ms));
    arm_waiter(pool.key, *w);
    pool.queue.push_back(std::move(w));
  }

  void arm_waiter(const std::string& key, Waiter& w) {
    Waiter* raw = &w;
    w.timer->async_wait([this, key, raw](boost::system::error_code ec) {
      if (!ec) on_waiter_due(key, raw);
    });
  }

  // A waiter's deadline: the end of a held wait (run it now if there is
  // room, else keep waiting for the rest of queue_timeout_ms), or 429.
  void on_waiter_due(const std::string& key, Waiter* raw) {
    auto it = pools.find(key);
    if (it == pools.end()) return;
    Pool& pool = *it->second;
    auto& q = pool.queue;
    auto qi = std::find_if(q.begin(), q.end(), [raw](const auto& w) { return w.get() == raw; });
    if (qi == q.end()) return;
    if (raw->held) {
      raw->held = false;
      if (!pool.idle.empty() || can_start(pool)) {
        auto waiter = std::move(*qi);
        q.erase(qi);
        if (!pool.idle.empty()) {
          return assign(take_idle(pool), std::move(waiter->request), std::move(waiter->done));
        }
        return start_instance(pool, std::move(waiter->request), std::move(waiter->done));
      }
      raw->timer->expires_after(milliseconds(settings.queue_timeout_ms - hold_wait_ms()));
      return arm_waiter(key, *raw);
    }
    auto waiter = std::move(*qi);
    q.erase(qi);
    reject(waiter->request, waiter->done,
           Status::Exhausted(
               fmt::format("{}; the request waited {} ms for a free instance. Retry later or raise "
                           "max_concurrency",
                           throttle_message(pool), settings.queue_timeout_ms)));
    maybe_erase_pool(key);
    check_drain();
  }

  // Hands queued work to capacity that became free.
  void serve_queue(Pool& pool) {
    while (!pool.queue.empty() && !held_full(pool)) {
      if (!pool.idle.empty()) {
        auto w = pop_waiter(pool);
        assign(take_idle(pool), std::move(w->request), std::move(w->done));
      } else if (can_start(pool)) {
        auto w = pop_waiter(pool);
        start_instance(pool, std::move(w->request), std::move(w->done));
      } else {
        return;
      }
    }
  }

  // The most recently used idle instance (the pool has one).
  Instance& take_idle(Pool& pool) {
    uint64_t id = pool.idle.back();
    pool.idle.pop_back();
    return *instances.at(id);
  }

  std::unique_ptr<Waiter> pop_waiter(Pool& pool) {
    auto w = std::move(pool.queue.front());
    pool.queue.pop_front();
    w->timer->cancel();
    return w;
  }

  // --- instance lifecycle ------------------------------------------------

  // With no `done`, the instance starts for provisioned concurrency: it
  // initialises and waits idle.
  void start_instance(Pool& pool, InvokeRequest req, std::function<void(InvokeResult)> done,
                      bool provisioned = false) {
    auto inst = std::make_unique<Instance>(io);
    inst->id = next_id++;
    inst->provisioned = provisioned;
    inst->pool_key = pool.key;
    inst->function = pool.function;
    uint64_t id = inst->id;

    runtime::EndpointLimits limits;
    limits.max_response_bytes = settings.runtime_max_response_bytes;
    limits.max_header_bytes = settings.max_header_bytes;
    runtime::EndpointCallbacks cb;
    cb.on_next = [this, id] { on_next(id); };
    cb.on_response = [this, id](const std::string& rid, std::string body) {
      on_result(id, rid, false, "", std::move(body));
    };
    cb.on_error = [this, id](const std::string& rid, std::string type, std::string body) {
      on_result(id, rid, true, std::move(type), std::move(body));
    };
    cb.on_init_error = [this, id](std::string type, std::string body) {
      on_init_error(id, std::move(type), std::move(body));
    };
    inst->endpoint = std::make_unique<runtime::Endpoint>(io, limits, std::move(cb));
    // Network "none": the endpoint listens inside the instance's own empty
    // namespace, the only place the instance can reach (see sandbox/netns.h).
    const bool network_none = pool.target.function.config.network == "none";
    if (network_none) {
      if (!layers.network_none) {
        return fail_start(req, done, "Runtime.Unknown",
                          "the function asks for network 'none', which needs network namespaces; "
                          "this host or sandbox_isolation does not offer them (see tamaya doctor): "
                          "set the function's network to 'host' or run tamaya as root");
      }
      auto ns = sandbox::create_network_namespace();
      if (!ns.ok()) return fail_start(req, done, "Runtime.Unknown", ns.status().message());
      inst->netns_fd = *ns;
    }
    Status listening = network_none ? sandbox::run_in_network_namespace(
                                          inst->netns_fd, [&] { return inst->endpoint->listen(); })
                                    : inst->endpoint->listen();
    if (!listening.ok()) {
      if (inst->netns_fd >= 0) ::close(inst->netns_fd);
      return fail_start(req, done, "Runtime.Unknown", listening.message());
    }

    const auto& fn = pool.target.function;
    runtime::InstanceSpec spec;
    spec.function_name = fn.name;
    spec.version = fn.version;
    spec.runtime = fn.config.runtime;
    spec.handler = fn.config.handler;
    spec.code_dir = pool.target.code_dir;
    spec.region = settings.region;
    spec.memory_mb = fn.config.memory_mb;
    spec.environment = fn.config.environment;
    spec.runtime_api_port = inst->endpoint->port();
    spec.log_stream = fmt::format("{}/[{}]{}", clock.wall_ms() / 1000, fn.version, id);
    spec.isolated =
        layers.filesystem || layers.cgroups || layers.uids || layers.seccomp || layers.network_none;
    spec.own_root = layers.filesystem;
    spec.network_none = network_none;
    spec.tmp_mb = fn.config.tmp_mb;
    auto launch_spec = runtime::make_launch_spec(spec, paths);
    if (launch_spec.ok() && spec.isolated) {
      sandbox::Isolation& iso = launch_spec->isolation;
      iso.name = fmt::format("{}-{}", id, fn.name);
      iso.netns_fd = inst->netns_fd;
      iso.pids_max = settings.sandbox_pids_max;
      if (layers.uids) {
        auto uid = uids.uid_for(fn.name);
        if (!uid.ok()) {
          if (inst->netns_fd >= 0) ::close(inst->netns_fd);
          return fail_start(req, done, "Runtime.Unknown", uid.status().message());
        }
        iso.uid = iso.gid = *uid;
      }
    }
    if (!launch_spec.ok()) {
      if (inst->netns_fd >= 0) ::close(inst->netns_fd);
      std::string msg = launch_spec.status().message();
      std::string type = "Runtime.InvalidEntrypoint";
      if (msg.rfind(type + ": ", 0) == 0) msg = msg.substr(type.size() + 2);
      return fail_start(req, done, type, msg);
    }
    launch_spec->limits.file_size_bytes = 512ll << 20;
    // The instance's pipes, exit watch and first exchange are set up here
    // while a zygote's child walls itself in, not after (watch_walled).
    launch_spec->hand_over_at_go = true;
    launch_spec->limits.open_files = settings.sandbox_open_files;
    // The instance counts (capacity, stats, drain) from now on; its process
    // comes back from a launch thread (on_launched).
    inst->spawned = clock.now();
    inst->state = State::kStarting;
    if (done) {
      Active a;
      a.request = std::move(req);
      a.done = std::move(done);
      a.cold = true;
      inst->active = std::move(a);
      pool.active++;
    }

    pool.instances++;
    book.add(pool.function);
    Instance& ref = *inst;
    instances.emplace(id, std::move(inst));
    set_due(ref, Due::kStart, milliseconds(settings.instance_start_timeout_ms));
    launches.submit(std::move(*launch_spec), [this, id](Result<sandbox::Process> process) {
      on_launched(id, std::move(process));
    });
    start_sampling();
  }

  void on_launched(uint64_t id, Result<sandbox::Process> process) {
    Instance* inst = find(id);
    if (!inst) {  // cannot happen: a launching instance is never removed
      if (process.ok()) sandbox::terminate(*process);
      return;
    }
    if (!process.ok()) return launch_failed(*inst, process.status().message());
    inst->process = *process;
    inst->spawned = clock.now();
    inst->pidfd = std::make_unique<asio::posix::stream_descriptor>(io, process->pidfd);
    inst->out = std::make_unique<asio::posix::stream_descriptor>(io, process->stdout_fd);
    inst->err = std::make_unique<asio::posix::stream_descriptor>(io, process->stderr_fd);
    if (process->walled_fd >= 0) {
      inst->walled = std::make_unique<asio::posix::stream_descriptor>(
          io, std::exchange(inst->process.walled_fd, -1));
      watch_walled(*inst);
    }
    watch_exit(*inst);
    watch_pipe(*inst, 0);
    watch_pipe(*inst, 1);
    spdlog::debug("instance started function={} instance={} pid={}", inst->function, id,
                  inst->process.pid);
    // Stopped while it was launching (start timeout, retire, drain): now
    // that it has a pid, it goes the usual way (its exit removes it).
    if (inst->state == State::kDying) {
      sandbox::kill_group(inst->process.pid, SIGKILL).ok();
    } else if (inst->next_before_launched) {
      on_next(id);
    }
  }

  // No process: the request it was started for (if any, and not answered
  // yet) gets the start error, as a failed synchronous start did.
  void launch_failed(Instance& inst, const std::string& message) {
    const std::string type = "Runtime.InvalidEntrypoint";
    if (auto active = remove_unstarted(inst, type, message)) {
      fail_start(active->request, active->done, type, message);
    }
  }

  // Removes an instance whose start failed and hands back the request it was
  // started for, if any; without one (provisioned), remove() reports
  // `type`: `message` as the pool's start failure.
  std::optional<Active> remove_unstarted(Instance& inst, const std::string& type,
                                         const std::string& message) {
    std::optional<Active> active = std::move(inst.active);
    inst.active.reset();
    if (Pool* pool = pool_of(inst); active && pool) pool->active--;
    if (!active) {
      inst.init_error_type = type;
      inst.init_error_body = message;
    }
    remove(inst.id);
    return active;
  }

  void fail_start(const InvokeRequest& req, const std::function<void(InvokeResult)>& done,
                  const std::string& type, const std::string& message) {
    if (!done) return provision_failed(pool_key(req.target), type + ": " + message);
    InvokeResult r;
    r.request_id = req.request_id;
    r.function_error = true;
    r.error_type = type;
    r.payload = error_document(type, message);
    r.executed_version = req.target.function.version;
    r.trigger = req.trigger;
    r.memory_mb = req.target.function.config.memory_mb;
    std::vector<LogLine> log{
        {clock.wall_ms(),
         fmt::format("INIT_REPORT Status: error\tError Type: {}\t{}", type, message)}};
    if (req.want_log_tail) r.log_tail = log.back().text + "\n";
    if (observer) observer->on_invocation(req.target.function.name, r, log);
    done(std::move(r));
  }

  Instance* find(uint64_t id) {
    auto it = instances.find(id);
    return it == instances.end() ? nullptr : it->second.get();
  }

  void on_next(uint64_t id) {
    Instance* inst = find(id);
    if (!inst || inst->state == State::kDying) return;
    if (inst->launching()) {
      // Not before its process is ours: an invocation needs its pipes (the
      // function's output) and its cgroups (Max Memory Used), and a zygote's
      // child can reach the Runtime API before its launch is back here.
      inst->next_before_launched = true;
      return;
    }
    if (!inst->ready) {
      inst->ready = true;
      inst->init_ms = ms_between(inst->spawned, clock.now());
      clear_due(*inst);
      if (inst->provisioned) {
        if (auto pit = pools.find(inst->pool_key); pit != pools.end()) {
          pit->second->provision_failures = 0;
          pit->second->provision_error.clear();
        }
        spdlog::debug("provisioned instance ready function={} instance={} init_ms={:.2f}",
                      inst->function, id, inst->init_ms);
      }
      if (inst->active) {
        inst->state = State::kBusy;
        begin(*inst);
      } else {
        make_idle(*inst);
      }
    }
  }

  void assign(Instance& inst, InvokeRequest req, std::function<void(InvokeResult)> done) {
    clear_due(inst);
    inst.state = State::kBusy;
    Active a;
    a.request = std::move(req);
    a.done = std::move(done);
    inst.active = std::move(a);
    if (Pool* pool = pool_of(inst)) pool->active++;
    begin(inst);
  }

  Pool* pool_of(const Instance& inst) {
    auto it = pools.find(inst.pool_key);
    return it == pools.end() ? nullptr : it->second.get();
  }

  void begin(Instance& inst) {
    Active& a = *inst.active;
    a.begun = true;
    a.started = clock.now();
    const auto& fn = a.request.target.function;
    // Output the runtime wrote before this invocation (init) comes first.
    a.log = std::move(inst.pending_log);
    a.log_bytes = inst.pending_bytes;
    inst.pending_log.clear();
    inst.pending_bytes = 0;
    append_log(a, "START RequestId: " + a.request.request_id + " Version: " + fn.version);

    runtime::Invocation inv;
    inv.request_id = a.request.request_id;
    // Nothing reads the payload once the runtime has it.
    inv.payload = std::move(a.request.payload);
    inv.deadline_ms = clock.wall_ms() + int64_t(fn.config.timeout_s) * 1000;
    // An instance serves one version of one function: its ARN is made once.
    if (inst.function_arn.empty()) {
      inst.function_arn =
          fmt::format("arn:aws:lambda:{}:000000000000:function:{}{}", settings.region, fn.name,
                      fn.version == registry::kLatest ? "" : ":" + fn.version);
    }
    inv.function_arn = inst.function_arn;
    inv.trace_id = a.request.trace_id;
    inv.client_context = a.request.client_context;
    inst.endpoint->deliver(std::move(inv));

    set_due(inst, Due::kInvoke, std::chrono::seconds(fn.config.timeout_s));
  }

  void on_result(uint64_t id, const std::string& rid, bool is_error, std::string type,
                 std::string body) {
    Instance* inst = find(id);
    if (!inst || !inst->active || inst->active->request.request_id != rid) return;
    if (!is_error) return finish(*inst, false, "", std::move(body), true);
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_object()) {
      if (type.empty() && doc.contains("errorType") && doc["errorType"].is_string()) {
        type = doc["errorType"].get<std::string>();
      }
    } else {
      // Lambda wraps an error body that is not a JSON document.
      body = error_document(type.empty() ? "Unhandled" : type, body);
    }
    if (type.empty()) type = "Unhandled";
    // An oversized response leaves the runtime in an unknown state: replace it.
    bool reuse = type != "Function.ResponseSizeTooLarge";
    finish(*inst, true, type, std::move(body), reuse);
  }

  void on_init_error(uint64_t id, std::string type, std::string body) {
    Instance* inst = find(id);
    if (!inst) return;
    if (type.empty()) type = "Runtime.Unknown";
    inst->init_error_type = type;
    inst->init_error_body = body;
    // Lambda stops an environment whose init failed; the invocation that
    // started it gets the init error.
    if (inst->active) {
      if (!inst->active->begun) begin_for_error(*inst);
      auto doc = nlohmann::json::parse(body, nullptr, false);
      if (!doc.is_object()) body = error_document(type, body);
      finish(*inst, true, type, std::move(body), false);
    } else {
      kill(id);
    }
  }

  // An invocation that fails before the runtime took it still gets its
  // START line and timing, as Lambda logs it.
  void begin_for_error(Instance& inst) {
    Active& a = *inst.active;
    a.begun = true;
    a.started = clock.now();
    a.log = std::move(inst.pending_log);
    a.log_bytes = inst.pending_bytes;
    inst.pending_log.clear();
    inst.pending_bytes = 0;
    append_log(a, fmt::format("START RequestId: {} Version: {}", a.request.request_id,
                              a.request.target.function.version));
    if (!inst.ready) inst.init_ms = ms_between(inst.spawned, clock.now());
  }

  void on_timeout(uint64_t id) {
    Instance* inst = find(id);
    if (!inst || !inst->active) return;
    sandbox::kill_group(inst->process.pid, SIGKILL).ok();
    const auto& fn = inst->active->request.target.function;
    std::string msg = timeout_message(inst->active->request.request_id, fn.config.timeout_s);
    finish(*inst, true, "Sandbox.Timedout", error_document("Sandbox.Timedout", msg), false, msg);
  }

  void on_start_timeout(uint64_t id) {
    Instance* inst = find(id);
    if (!inst || inst->ready) return;
    sandbox::kill_group(inst->process.pid, SIGKILL).ok();
    std::string msg = fmt::format("the runtime did not ask for work within {} ms of starting",
                                  settings.instance_start_timeout_ms);
    if (inst->active) {
      begin_for_error(*inst);
      finish(*inst, true, "Runtime.InitTimeout", error_document("Runtime.InitTimeout", msg), false);
    } else {
      kill(id);
    }
  }

  void on_exit(uint64_t id) {
    Instance* inst = find(id);
    if (!inst) return;
    auto status = sandbox::reap(inst->process);
    if (!status.ok()) {  // spurious wake-up: keep watching
      watch_exit(*inst);
      return;
    }
    if (inst->walled) read_walled(*inst, /*alive=*/false);  // it may have said why first
    if (!inst->not_walled_in.empty()) return restart_not_walled_in(*inst);
    std::string how = sandbox::describe_exit(*status);
    if (inst->active) {
      if (!inst->active->begun) begin_for_error(*inst);
      std::string rid = inst->active->request.request_id;
      if (!inst->init_error_type.empty()) {
        finish(*inst, true, inst->init_error_type, inst->init_error_body, false);
      } else if (sandbox::oom_killed(inst->process)) {
        // Lambda's words for an instance killed at its memory limit.
        std::string msg = fmt::format("RequestId: {} Error: Runtime exited with error: {}", rid,
                                      sandbox::describe_exit(SIGKILL));
        finish(*inst, true, "Runtime.OutOfMemory", error_document("Runtime.OutOfMemory", msg),
               false, msg);
      } else {
        std::string msg =
            fmt::format("RequestId: {} Error: Runtime exited with error: {}", rid, how);
        finish(*inst, true, "Runtime.ExitError", error_document("Runtime.ExitError", msg), false,
               msg);
      }
    }
    spdlog::debug("instance exited function={} instance={} how={}", inst->function, id, how);
    remove(id);
  }

  void make_idle(Instance& inst) {
    Pool* pool = pools.count(inst.pool_key) ? pools[inst.pool_key].get() : nullptr;
    if (!pool || pool->retired || draining) {
      if (pool && !pool->queue.empty()) {
        auto w = pop_waiter(*pool);
        return assign(inst, std::move(w->request), std::move(w->done));
      }
      return kill(inst.id);
    }
    if (!pool->queue.empty() && !held_full(*pool)) {
      auto w = pop_waiter(*pool);
      return assign(inst, std::move(w->request), std::move(w->done));
    }
    inst.state = State::kIdle;
    pool->idle.push_back(inst.id);
    if (!inst.provisioned) arm_idle_timer(inst);
  }

  void arm_idle_timer(Instance& inst) {
    set_due(inst, Due::kIdle, milliseconds(idle_timeout_for(inst.function)));
  }

  // --- the instance's deadline (see Instance::timer) -----------------------

  void set_due(Instance& inst, Due kind, std::chrono::steady_clock::duration after) {
    inst.due = kind;
    inst.due_at = std::chrono::steady_clock::now() + after;
    if (inst.timer_waiting && inst.timer_at <= inst.due_at) return;
    arm_due(inst);
  }

  static void clear_due(Instance& inst) { inst.due = Due::kNone; }

  void arm_due(Instance& inst) {
    inst.timer_waiting = true;
    inst.timer_at = inst.due_at;
    const uint64_t id = inst.id;
    const uint64_t gen = ++inst.timer_gen;
    inst.timer.expires_at(inst.due_at);  // ends an earlier wait (superseded below)
    inst.timer.async_wait([this, id, gen](boost::system::error_code ec) {
      Instance* i = find(id);
      if (!i || gen != i->timer_gen) return;
      i->timer_waiting = false;
      if (!ec) on_due(*i);
    });
  }

  void on_due(Instance& inst) {
    if (inst.due == Due::kNone) return;
    if (std::chrono::steady_clock::now() < inst.due_at) return arm_due(inst);
    const Due kind = inst.due;
    inst.due = Due::kNone;
    const uint64_t id = inst.id;
    switch (kind) {
      case Due::kStart:
        return on_start_timeout(id);
      case Due::kInvoke:
        return on_timeout(id);
      case Due::kIdle:
        spdlog::debug("instance idle timeout instance={}", id);
        return kill(id);
      case Due::kNone:
        return;
    }
  }

  void finish(Instance& inst, bool is_error, std::string type, std::string payload, bool reuse,
              const std::string& log_message = "") {
    clear_due(inst);
    drain_pipes(inst);
    Active a = std::move(*inst.active);
    inst.active.reset();
    if (Pool* pool = pool_of(inst)) pool->active--;
    SteadyTime now = clock.now();
    const auto& fn = a.request.target.function;

    InvokeResult r;
    r.request_id = a.request.request_id;
    r.function_error = is_error;
    r.error_type = std::move(type);
    r.payload = std::move(payload);
    r.executed_version = fn.version;
    r.trigger = a.request.trigger;
    r.duration_ms = ms_between(a.started, now);
    r.billed_ms = std::max<int64_t>(1, int64_t(std::ceil(r.duration_ms)));
    r.cold = a.cold;
    r.init_ms = a.cold ? inst.init_ms : 0;
    r.memory_mb = fn.config.memory_mb;
    if (!inst.peak) inst.peak = std::make_unique<PeakMemoryReader>(inst.process);
    r.max_memory_used_mb = (inst.peak->read() + (1 << 20) - 1) >> 20;

    if (!log_message.empty()) {
      append_log(a, fmt::format("{} {}", format_iso8601(clock.wall_ms()), log_message));
    }
    append_log(a, "END RequestId: " + r.request_id);
    // Compiled format: parsed at build time, not on every invocation.
    std::string report = fmt::format(
        FMT_COMPILE("REPORT RequestId: {}\tDuration: {:.2f} ms\tBilled Duration: {} ms\tMemory "
                    "Size: {} MB\tMax Memory Used: {} MB"),
        r.request_id, r.duration_ms, r.billed_ms, r.memory_mb, r.max_memory_used_mb);
    if (r.cold) report += fmt::format("\tInit Duration: {:.2f} ms", r.init_ms);
    if (is_error && !reuse) report += fmt::format("\tStatus: error\tError Type: {}", r.error_type);
    append_log(a, std::move(report), /*force=*/true);

    if (a.request.want_log_tail) r.log_tail = tail(a.log);
    auto done = std::move(a.done);
    if (observer) observer->on_invocation(fn.name, r, std::move(a.log));

    if (reuse && inst.state != State::kDying) {
      make_idle(inst);
    } else {
      kill(inst.id);
    }
    done(std::move(r));
  }

  static std::string tail(const std::vector<LogLine>& log) {
    std::string all;
    for (const auto& l : log) {
      all += l.text;
      all += '\n';
    }
    if (all.size() > kLogTailBytes) all = all.substr(all.size() - kLogTailBytes);
    return all;
  }

  void kill(uint64_t id) {
    Instance* inst = find(id);
    if (!inst || inst->state == State::kDying) return;
    auto pit = pools.find(inst->pool_key);
    if (pit != pools.end()) std::erase(pit->second->idle, id);
    inst->state = State::kDying;
    clear_due(*inst);
    // Nothing waits for this end (a retired version, an idle timeout), so it
    // need not compete with the starts and requests running meanwhile.
    if (!draining && !anyone_waits() && sandbox::set_cpu_idle(inst->process.cgroups, true).ok()) {
      ending_at_idle.push_back(id);
    }
    sandbox::kill_group(inst->process.pid, SIGKILL).ok();
    // The pidfd watcher removes the instance once the kernel says it is gone.
  }

  void remove(uint64_t id) {
    auto it = instances.find(id);
    if (it == instances.end()) return;
    Instance& inst = *it->second;
    clear_due(inst);
    std::erase(ending_at_idle, id);
    if (inst.endpoint) inst.endpoint->close();
    // Kill stragglers the runtime may have left in its group.
    sandbox::kill_group(inst.process.pid, SIGKILL).ok();
    std::string key = inst.pool_key;
    std::string function = inst.function;
    const bool failed_provision = inst.provisioned && !inst.ready;
    std::string why = inst.init_error_type.empty()
                          ? "the instance exited before it asked for work"
                          : inst.init_error_type + ": " + inst.init_error_body;
    auto pit = pools.find(key);
    if (pit != pools.end()) {
      std::erase(pit->second->idle, id);
      pit->second->instances--;
      if (inst.active) pit->second->active--;
    }
    book.remove(function);
    const bool unreserved = !book.reserved(function);
    for (auto* sd : {inst.pidfd.get(), inst.out.get(), inst.err.get(), inst.walled.get()}) {
      if (sd) sd->close();
    }
    sandbox::release(inst.process);
    if (inst.netns_fd >= 0) ::close(inst.netns_fd);
    instances.erase(it);
    if (failed_provision) provision_failed(key, why);
    if (pit != pools.end()) serve_queue(*pit->second);
    // Capacity freed for the function (or, for an unreserved one, in the
    // shared pool) may serve another pool's queue, then warm instances that
    // are missing.
    for (auto& [k, p] : pools) {
      if ((p->function == function || unreserved) && !p->queue.empty()) serve_queue(*p);
    }
    for (auto& [k, p] : pools) {
      if ((p->function == function || unreserved) && p->provisioned > 0) top_up(*p);
    }
    maybe_erase_pool(key);
    check_drain();
  }

  // --- process watching --------------------------------------------------

  void watch_exit(Instance& inst) {
    uint64_t id = inst.id;
    inst.pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                           [this, id](boost::system::error_code ec) {
                             if (!ec) on_exit(id);
                           });
  }

  void watch_walled(Instance& inst) {
    uint64_t id = inst.id;
    inst.walled->async_wait(asio::posix::stream_descriptor::wait_read,
                            [this, id](boost::system::error_code ec) {
                              Instance* i = find(id);
                              if (ec || !i || !i->walled) return;
                              if (!read_walled(*i, /*alive=*/true)) watch_walled(*i);
                            });
  }

  // Reads what the child said on its walled fd; false when it has said
  // nothing yet. Not walled in: an `alive` one is killed (on_exit goes on).
  bool read_walled(Instance& inst, bool alive) {
    Status s =
        sandbox::read_walled_in(inst.walled->native_handle(), inst.process.exit_source.get());
    if (s.code() == Code::kUnavailable) return false;
    inst.walled->close();
    inst.walled.reset();
    if (s.ok()) return true;
    spdlog::warn("instance not walled in function={} instance={}: {}", inst.function, inst.id,
                 s.message());
    inst.not_walled_in = s.message();
    if (alive && inst.state != State::kDying) {
      inst.state = State::kDying;
      clear_due(inst);
      sandbox::kill_group(inst.process.pid, SIGKILL).ok();
    }
    return true;
  }

  // An instance that could not wall itself in ran nothing of the function:
  // the request it was started for is admitted again (the launcher now
  // starts instances directly for a while). Without one (provisioned), the
  // pool's usual retry replaces it.
  void restart_not_walled_in(Instance& inst) {
    const std::string why = inst.not_walled_in;  // remove() destroys inst
    if (auto active = remove_unstarted(inst, "Runtime.InvalidEntrypoint", why)) {
      invoke(std::move(active->request), std::move(active->done));
    }
  }

  void watch_pipe(Instance& inst, int which) {
    auto& sd = which == 0 ? inst.out : inst.err;
    uint64_t id = inst.id;
    sd->async_wait(asio::posix::stream_descriptor::wait_read,
                   [this, id, which](boost::system::error_code ec) {
                     if (ec) return;
                     Instance* i = find(id);
                     if (!i) return;
                     if (drain_pipe(*i, which)) watch_pipe(*i, which);
                   });
  }

  // Output the runtime wrote before it answered belongs to this invocation,
  // though the event loop may not have seen it yet. One poll for both pipes:
  // the common case (nothing written) costs a single syscall.
  void drain_pipes(Instance& inst) {
    pollfd fds[2];
    int n = 0;
    int which_of[2];
    for (int which : {0, 1}) {
      auto& sd = which == 0 ? inst.out : inst.err;
      if (!sd || !sd->is_open()) continue;
      fds[n] = pollfd{sd->native_handle(), POLLIN, 0};
      which_of[n++] = which;
    }
    if (n == 0 || ::poll(fds, nfds_t(n), 0) <= 0) return;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents != 0) drain_pipe(inst, which_of[i]);
    }
  }

  // Reads everything available now; false at end of file.
  bool drain_pipe(Instance& inst, int which) {
    auto& sd = which == 0 ? inst.out : inst.err;
    if (!sd || !sd->is_open()) return false;
    char buf[kPipeReadChunk];
    while (true) {
      ssize_t n = ::read(sd->native_handle(), buf, sizeof buf);
      if (n > 0) {
        take_output(inst, which, std::string_view(buf, size_t(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      // EOF or error: flush what is left of a line without its newline.
      if (!inst.partial[which].empty()) {
        add_line(inst, std::move(inst.partial[which]));
        inst.partial[which].clear();
      }
      return false;
    }
  }

  void take_output(Instance& inst, int which, std::string_view data) {
    std::string& partial = inst.partial[which];
    size_t start = 0;
    while (start < data.size()) {
      size_t nl = data.find('\n', start);
      if (nl == std::string_view::npos) {
        partial.append(data.substr(start));
        // A line with no end in sight is cut so one print cannot grow memory.
        if (int64_t(partial.size()) > settings.log_max_bytes_per_invocation) {
          add_line(inst, std::move(partial));
          partial.clear();
        }
        return;
      }
      partial.append(data.substr(start, nl - start));
      add_line(inst, std::move(partial));
      partial.clear();
      start = nl + 1;
    }
  }

  void add_line(Instance& inst, std::string text) {
    if (inst.active && inst.active->begun) {
      append_log(*inst.active, std::move(text));
      return;
    }
    if (inst.pending_bytes > settings.log_max_bytes_per_invocation) return;
    inst.pending_bytes += int64_t(text.size()) + 1;
    inst.pending_log.push_back({clock.wall_ms(), std::move(text)});
  }

  void append_log(Active& a, std::string text, bool force = false) {
    int64_t cap = settings.log_max_bytes_per_invocation;
    if (!force && a.log_bytes + int64_t(text.size()) > cap) {
      if (!a.truncated) {
        a.truncated = true;
        a.log.push_back(
            {clock.wall_ms(), fmt::format("[tamaya] log truncated: this invocation wrote "
                                          "more than {} bytes",
                                          cap)});
      }
      return;
    }
    a.log_bytes += int64_t(text.size()) + 1;
    a.log.push_back({clock.wall_ms(), std::move(text)});
  }

  // --- holding (cpu_hold.h) ------------------------------------------------

  // A retired pool's queue has moved to its successor: it holds nothing.
  static bool held(const Pool& pool) { return pool.hold.held() && !pool.retired; }

  bool held_full(const Pool& pool) const {
    return held(pool) && pool.active >= held_busy_cap(hold_policy);
  }

  int hold_wait_ms() const {
    return std::min(settings.scale_hold_max_wait_ms, settings.queue_timeout_ms);
  }

  void start_sampling() {
    if (sampling || hold_policy.busy_per_core <= 0 || draining) return;
    sampling = true;
    last_stall_us = -1;
    arm_sample();
  }

  void arm_sample() {
    sample_timer.expires_after(milliseconds(settings.scale_sample_ms));
    sample_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) on_sample();
    });
  }

  // Host pressure and each sizeable pool's CPU use over the last window,
  // then each pool's hold decided. Stops when no instance is left.
  void on_sample() {
    if (instances.empty() || draining) {
      sampling = false;
      for (auto& [k, p] : pools) p->hold = HoldState{};
      return;
    }
    const SteadyTime now = clock.now();
    const auto stall = pressure.stalled_us();
    const double window_us =
        double(std::chrono::duration_cast<std::chrono::microseconds>(now - last_sample).count());
    const bool have_window = last_stall_us >= 0 && stall && window_us > 0;
    const double host_pressure = have_window ? double(*stall - last_stall_us) / window_us : 0;
    last_stall_us = stall.value_or(-1);
    last_sample = now;

    const int cap = held_busy_cap(hold_policy);
    for (auto& [id, inst] : instances) {
      Pool* pool = pool_of(*inst);
      if (!pool || inst->state == State::kDying || (pool->instances <= cap && !held(*pool))) {
        inst->cpu_ns = -1;  // a baseline taken now would span this gap later
        continue;
      }
      if (inst->launching()) continue;
      if (!inst->cpu) inst->cpu = std::make_unique<RunTimeReader>(inst->process.pid);
      auto ns = inst->cpu->ns();
      if (!ns) continue;
      if (inst->cpu_ns >= 0) pool->cpu_window_ns += *ns - inst->cpu_ns;
      inst->cpu_ns = *ns;
    }
    std::vector<Pool*> released;
    for (auto& [k, p] : pools) {
      HoldSample s{host_pressure, have_window ? double(p->cpu_window_ns) / (window_us * 1000) : 0,
                   p->held_waits};
      p->cpu_window_ns = 0;
      p->held_waits = 0;
      if (!have_window) continue;
      const bool was_held = held(*p);
      p->hold.update(s, hold_policy);
      if (held(*p) == was_held) continue;
      if (!was_held) {
        spdlog::info(
            "function held function={} version={} busy_max={} host_cpu_pressure={:.0f}% "
            "function_cpus={:.2f} instances={}: the host's CPUs are saturated and this "
            "function's instances use them; its other requests wait for a busy instance",
            p->function, p->target.function.version, cap, host_pressure * 100, s.function_cores,
            p->instances);
      } else {
        spdlog::info("function released function={} version={} host_cpu_pressure={:.0f}%",
                     p->function, p->target.function.version, host_pressure * 100);
        released.push_back(p.get());
      }
    }
    for (Pool* p : released) serve_queue(*p);
    arm_sample();
  }

  // --- drain -------------------------------------------------------------

  int in_flight() const {
    int n = 0;
    // A launch still out counts too: its process must not outlive the drain.
    for (const auto& [id, inst] : instances) n += inst->active || inst->launching() ? 1 : 0;
    for (const auto& [k, p] : pools) n += int(p->queue.size());
    return n;
  }

  void drain(std::function<void()> done) {
    draining = true;
    drain_done = std::move(done);
    drain_deadline = clock.now() + milliseconds(settings.drain_timeout_ms);
    // Idle instances have nothing to finish.
    std::vector<uint64_t> idle;
    for (auto& [k, p] : pools) idle.insert(idle.end(), p->idle.begin(), p->idle.end());
    for (uint64_t id : idle) kill(id);
    drain_timer.expires_at(drain_deadline);
    drain_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) force_drain();
    });
    check_drain();
  }

  void check_drain() {
    if (!draining || !drain_done) return;
    if (in_flight() > 0) return;
    finish_drain();
  }

  void force_drain() {
    if (!drain_done) return;
    spdlog::warn("drain deadline reached in_flight={}", in_flight());
    for (auto& [k, p] : pools) {
      while (!p->queue.empty()) {
        auto w = pop_waiter(*p);
        reject(w->request, w->done,
               Status::Unavailable("tamaya shut down before this request ran"));
      }
    }
    finish_drain();
  }

  void finish_drain() {
    drain_timer.cancel();
    sample_timer.cancel();
    for (auto& [id, inst] : instances) {
      clear_due(*inst);
      inst->timer.cancel();
      sandbox::kill_group(inst->process.pid, SIGKILL).ok();
      if (inst->endpoint) inst->endpoint->close();
    }
    auto done = std::move(drain_done);
    drain_done = nullptr;
    if (done) done();
  }

  Stats stats_of(const std::string* function) const {
    Stats s;
    for (const auto& [id, inst] : instances) {
      if (function && inst->function != *function) continue;
      s.instances++;
      if (inst->provisioned && inst->ready && inst->state != State::kDying) s.provisioned_ready++;
      switch (inst->state) {
        case State::kStarting:
          s.starting++;
          break;
        case State::kIdle:
          s.idle++;
          break;
        case State::kBusy:
          s.busy++;
          break;
        case State::kDying:
          break;
      }
    }
    for (const auto& [k, p] : pools) {
      if (function && p->function != *function) continue;
      s.queued += int(p->queue.size());
      if (held(*p)) s.held = true;
      if (!p->retired) s.provisioned += p->provisioned;
    }
    return s;
  }

  std::vector<ProvisionedStatus> provisioned_of(const std::string& function) const {
    std::vector<ProvisionedStatus> out;
    for (const auto& [k, p] : pools) {
      if (p->function != function || p->retired || p->provisioned == 0) continue;
      ProvisionedStatus st;
      st.qualifier = p->qualifier;
      st.version = p->target.function.version;
      st.requested = p->provisioned;
      st.error = p->provision_error;
      for (const auto& [id, inst] : instances) {
        if (inst->pool_key == k && inst->provisioned && inst->ready &&
            inst->state != State::kDying) {
          st.ready++;
        }
      }
      out.push_back(std::move(st));
    }
    return out;
  }
};

Dispatcher::Dispatcher(asio::io_context& io, const Settings& settings, runtime::RuntimePaths paths,
                       sandbox::Launcher& launcher, const Clock& clock, Observer* observer)
    : impl_(std::make_unique<Impl>(io, settings, std::move(paths), launcher, clock, observer)) {}

Dispatcher::~Dispatcher() {
  for (auto& [id, inst] : impl_->instances) {
    sandbox::kill_group(inst->process.pid, SIGKILL).ok();
    // Cgroups can only go once their processes are gone: wait a little.
    pollfd pfd{inst->process.pidfd, POLLIN, 0};
    if (inst->process.pidfd >= 0) poll(&pfd, 1, 1000);
    sandbox::reap(inst->process).ok();
    sandbox::release(inst->process);
    if (inst->netns_fd >= 0) ::close(inst->netns_fd);
  }
}

void Dispatcher::invoke(InvokeRequest request, std::function<void(InvokeResult)> done) {
  impl_->invoke(std::move(request), std::move(done));
}

void Dispatcher::retire(const std::string& function) {
  for (auto& [k, p] : impl_->pools) {
    if (p->function == function && !p->retired) impl_->retire_pool(*p);
  }
}

void Dispatcher::configure(const std::string& function, const FunctionScaling& scaling) {
  impl_->configure(function, scaling);
}

std::vector<ProvisionedStatus> Dispatcher::provisioned(const std::string& function) const {
  return impl_->provisioned_of(function);
}

void Dispatcher::drain(std::function<void()> done) { impl_->drain(std::move(done)); }

Stats Dispatcher::stats() const { return impl_->stats_of(nullptr); }
Stats Dispatcher::stats(const std::string& function) const { return impl_->stats_of(&function); }

}  // namespace tamaya::dispatch
