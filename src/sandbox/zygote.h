// Instances forked from a zygote instead of started from scratch (issue 3,
// cold start). A zygote is a Python process with the runtime client already
// imported (runtimes/python/zygote.py), started once per function through the
// ordinary launcher, so it sits in the function's mount/ipc/uts namespaces
// with /var/task; it keeps root and runs no function code. Each instance is a
// fork of it that walls itself in before the handler is imported: pid 1 of a
// new pid namespace, new mount/ipc/uts namespaces with a fresh /proc and a
// private /tmp, the instance's network namespace for network "none", its own
// cgroups (the daemon writes the child's pid into them before the child goes
// on), the function's environment, rlimits, uid/gid, no_new_privs and the
// same seccomp filter as a direct start. The child reports "ok" only once all
// of that is done; any failure, a zygote that died or does not answer in
// time, falls back to a direct start, so an invoke never hangs on a zygote.
// With LaunchSpec::hand_over_at_go the child is returned at its "go" and
// reports on Process::walled_fd instead (read_walled_in); a child that
// could not wall itself in keeps its zygote from being used for a while.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "sandbox/launcher.h"

namespace tamaya::sandbox {

struct ZygoteOptions {
  int start_timeout_ms = 2'000;  // a new zygote says it is ready
  int spawn_timeout_ms = 1'000;  // a forked child says it is specialised
  // A zygote with no live instance for this long is stopped (checked on the
  // next launch).
  int64_t idle_ms = int64_t{10} * 60'000;
  // After a zygote failed, its function starts directly for this long
  // before a new zygote is tried, so a broken zygote cannot slow every start.
  int64_t retry_after_failure_ms = 10'000;
  // Each zygote keeps this many children forked ahead of need, already in
  // their own pid/mount/ipc/uts namespaces with /proc and /tmp mounted, so a
  // spawn only hands one over (runtimes/python/zygote.py). More than one
  // lets cold starts that follow each other closely find one ready while
  // the one just taken is replaced. 0: every instance is forked on demand.
  int prefork = 2;
  // A start that found none ready (cold starts following each other faster
  // than children are prepared) raises the zygote's count by one, up to
  // prefork + kZygoteBurstPrefork; it drops back to `prefork` at the first
  // start after this long without such a start. So only a function whose
  // cold starts come in bursts holds the extra children (~4 MiB each).
  int64_t burst_quiet_ms = 10'000;
};

// How many children a zygote may keep beyond ZygoteOptions::prefork while its
// cold starts come in a burst. Measured back to back on 2 vCPUs (python_zygote_prefork
// 2 against 3 and 4): the p50 of the start fell by about a fifth with 3 or 4.
constexpr int kZygoteBurstPrefork = 2;

// Each offered child holds a few MiB while it waits; more than a handful per
// function buys nothing a burst of cold starts could use before they refill.
constexpr int kMaxZygotePrefork = 8;

class Zygote;

// A Launcher that forks instances whose spec has zygote_argv from that
// function's zygote and starts everything else (and every fallback) with the
// direct launcher. Thread-safe; launch may block for up to start_timeout_ms
// when it has to start a zygote first.
class ZygoteLauncher final : public Launcher {
 public:
  ZygoteLauncher(ProcessLauncher& direct, ZygoteOptions options);
  ~ZygoteLauncher() override;

  Result<Process> launch(const LaunchSpec& spec) override;
  Layers layers() const override { return direct_.layers(); }

  struct Counters {
    int zygotes = 0;        // running now
    int64_t forked = 0;     // instances forked from a zygote
    int64_t offered = 0;    // of those, handed to a child forked ahead of need
    int64_t fallbacks = 0;  // instances started directly: their zygote failed, is gone or
                            // did not start (for retry_after_failure_ms after that)
  };
  // Lock-free: /metrics reads them on the event loop while a launch may hold
  // the launcher for a zygote's start.
  Counters counters() const;
  // How many children forked ahead of need the zygote of instances like
  // `spec` has ready (said hello) for the next ones.
  int offers_ready(const LaunchSpec& spec);
  // The host pid of the zygote that serves instances like `spec`, -1 when none.
  pid_t zygote_pid(const LaunchSpec& spec) const;

 private:
  struct Entry {
    std::shared_ptr<Zygote> zygote;
    int64_t failed_at_ms = -1;  // >= 0: do not start another before retry_after_failure_ms
  };
  static std::string key_of(const LaunchSpec& spec);
  bool eligible(const LaunchSpec& spec) const;
  Result<std::shared_ptr<Zygote>> zygote_for(const std::string& key, const LaunchSpec& spec);
  void stop_idle();
  void count_running();  // running_ from zygotes_, after launch() changed it; holds mu_

  ProcessLauncher& direct_;
  ZygoteOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> zygotes_;
  // zygotes_ entries with a zygote; zygotes_ changes only in launch(), which recounts.
  std::atomic<int> running_{0};
  std::atomic<int64_t> forked_{0};
  std::atomic<int64_t> offered_{0};
  std::atomic<int64_t> fallbacks_{0};
};

}  // namespace tamaya::sandbox
