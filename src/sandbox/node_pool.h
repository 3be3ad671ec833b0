// Node.js instances from a pool of pre-started generic instances (issue 3,
// cold start). Node cannot fork, so there is no zygote; a V8 startup
// snapshot was slower and refuses `http` (docs/performance.md). Instead the
// pool keeps `size` generic Node processes started ahead of need, off the
// request path, through the ordinary direct launcher, so each is walled in
// like any instance: its own mount/pid/ipc/uts namespaces, the minimal root
// with an empty /var/task, rlimits, no_new_privs, the seccomp filter and its
// own cgroups. Each runs runtimes/node/generic.js, which has loaded the
// runtime client's modules and waits, as root, to be told what it is.
//
// A cold start of an eligible spec takes one and specialises it:
//   1. its cgroups take the function's memory, pids and CPU limits;
//   2. a short-lived child of the daemon joins the instance's mount namespace
//      and mounts the function's code read-only over /var/task (a detached
//      clone made by open_tree, moved in with move_mount) and gives /tmp the
//      function's size;
//   3. the instance gets the function's uid/gid, environment and Runtime API
//      endpoint on its control socket, drops root (groups, gid, uid), says
//      "ok", and only then loads the handler; the daemon checks the uid and
//      gid in /proc/<pid>/status before handing the Process over.
// Any failure kills that member and starts the instance directly in the same
// call. A member is used for one function only and never returns to the pool.
//
// Not served by the pool (they start directly): network "none" (the
// namespace is joined before execve), environments with NODE_* or UV_*
// variables other than NODE_PATH (node reads them at start), specs whose
// fixed parts (node, runtimes dir, rlimits, pids limit, hostname, read-only
// paths) differ from the ones the pool was filled for. The pool fills after
// the first eligible start since the daemon started (that one is direct and
// gives the template). Differences from a direct start: /proc/<pid>/cmdline
// names generic.js and /proc/<pid>/environ the generic environment
// (process.env is the function's); once the uid changes the kernel clears
// the death signal, so a specialised instance ends at the daemon's death
// when its Runtime API connection fails, not at once.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/launcher.h"

namespace tamaya::sandbox {

struct NodePoolOptions {
  int size = 0;                       // generic instances kept ready; 0: no pool
  int start_timeout_ms = 10'000;      // a new member says "ready"
  int specialise_timeout_ms = 2'000;  // a member says "ok" to its function
  int64_t retry_max_ms = 10'000;      // failed member starts back off up to this
};

class NodePoolLauncher final : public Launcher {
 public:
  // `fallback` starts every spec the pool does not serve (the daemon's
  // launcher, e.g. the zygote launcher); `direct` starts the members.
  NodePoolLauncher(Launcher& fallback, ProcessLauncher& direct, NodePoolOptions options);
  ~NodePoolLauncher() override;

  Result<Process> launch(const LaunchSpec& spec) override;
  Layers layers() const override { return fallback_.layers(); }

  struct Counters {
    int ready = 0;            // generic instances waiting now
    int64_t started = 0;      // generic instances that became ready
    int64_t specialised = 0;  // instances handed over from the pool
    int64_t empty = 0;        // eligible starts that found no ready member (direct)
    int64_t failures = 0;     // members that failed to start or to specialise
  };
  Counters counters() const;
  // Host pids of the members waiting now.
  std::vector<pid_t> ready_pids() const;
  // Whether an instance like `spec` may come from the pool.
  bool eligible(const LaunchSpec& spec) const;

 private:
  struct Member {
    Process process;
    int control = -1;       // our end of its stdin socket
    int64_t tmp_bytes = 0;  // size of its /tmp
  };

  Result<Member> start_member(const LaunchSpec& spec, uint64_t seq);
  Result<Process> specialise(Member& member, const LaunchSpec& spec);
  Status mount_code(const Member& member, const std::string& code_dir, int64_t tmp_bytes);
  void discard(Member& member);
  void refill_loop();

  Launcher& fallback_;
  ProcessLauncher& direct_;
  NodePoolOptions options_;
  std::string empty_dir_;  // what members see at /var/task until specialised

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::optional<LaunchSpec> template_;  // a member's spec; set by the first eligible start
  std::string key_;                     // what a spec must match to take a member
  std::deque<Member> ready_;
  uint64_t seq_ = 0;
  int failures_in_row_ = 0;
  int64_t retry_at_ms_ = 0;
  Counters counters_;
  std::thread refill_;
};

}  // namespace tamaya::sandbox
