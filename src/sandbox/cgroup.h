// One cgroup per instance: memory (swap off), pids and CPU share. v1 makes
// one directory per controller hierarchy, v2 one directory. The child joins
// its cgroups itself before execve (it writes "0" into cgroup.procs through
// fds the parent opened), so nothing the function runs is ever outside them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "sandbox/host.h"

namespace tamaya::sandbox {

struct CgroupLimits {
  int64_t memory_bytes = 0;  // 0: no memory cgroup
  int64_t pids_max = 0;      // 0: no pids limit
  int64_t cpu_shares = 0;    // v1 cpu.shares (1024 = one full CPU's share); 0: default
  bool operator==(const CgroupLimits&) const = default;
};

// Lambda gives one vCPU at 1,769 MB and CPU in proportion below and above.
constexpr int64_t kMemoryMbPerVcpu = 1769;
// cpu.shares for a function of memory_mb (at least 2, the kernel's minimum).
int64_t cpu_shares_for_memory(int64_t memory_mb);
// The v2 cpu.weight (1..10000, 100 = 1024 shares) for the same share.
int64_t cpu_weight_from_shares(int64_t shares);

struct CgroupStockState;  // CgroupStock's, shared with the sets it hands out

// The cgroup directories of one instance, made and removed as a unit.
struct InstanceCgroups {
  CgroupVersion version = CgroupVersion::kNone;
  std::vector<std::string> dirs;  // every directory made (v1: one per controller)
  std::string memory_dir;         // "" without a memory cgroup
  std::string pids_dir;
  std::string cpu_dir;
  // Set by CgroupStock::take: remove_cgroups hands the set back to the
  // stock's thread instead of removing it on the caller's.
  std::weak_ptr<CgroupStockState> stock;
  // cgroup.procs of each of `dirs`, in order, opened by the stock's thread
  // with the set; open_procs_files hands them over instead of opening.
  std::shared_ptr<std::vector<Fd>> procs_opened;
};

// Makes the instance's cgroups named `name` under the host's bases and writes
// the limits. Controllers the host lacks are skipped (the summary said so).
Result<InstanceCgroups> create_cgroups(const HostCapabilities& caps, const std::string& name,
                                       const CgroupLimits& limits);

// Instance cgroup sets made ahead of need, off the request path: a thread
// keeps `depth` empty sets made under the host's bases ("ahead-<n>"), and
// take() writes a set's limits, the only per-function part, and hands it
// out. Three mkdirs (~0.1 ms on the CI host, under the kernel's
// cgroup_mutex) then no longer come between a request and its instance.
// The thread also writes into each new set the limits the last take()
// asked for: a burst of one function's starts (the same limits each time)
// then writes none on the request path either; other limits are rewritten
// by take().
// The same thread removes the sets it handed out once remove_cgroups gives
// them back (three rmdirs, 0.1-0.4 ms here), so an instance's end does not
// hold its caller's event loop either. Thread-safe. The destructor stops
// the thread and removes the sets left, ready or given back.
class CgroupStock {
 public:
  CgroupStock(HostCapabilities caps, int depth);
  ~CgroupStock();
  CgroupStock(const CgroupStock&) = delete;
  CgroupStock& operator=(const CgroupStock&) = delete;
  // A set with `limits` written; nullopt when none is ready or the limits
  // leave out a controller the sets have (the caller makes its own, as
  // create_cgroups does).
  std::optional<InstanceCgroups> take(const CgroupLimits& limits);

 private:
  std::shared_ptr<CgroupStockState> state_;
};

// Writes new limits into an instance's existing cgroups (a pre-started pool
// member taking its function's limits, node_pool.h). Only the controllers the
// instance has are written; a zero limit leaves that one as it is.
Status set_cgroup_limits(const HostCapabilities& caps, const InstanceCgroups& cgroups,
                         const CgroupLimits& limits);

// cgroup.procs of each directory, for the child to join (O_CLOEXEC): the
// ones the stock opened ahead (taken out of `cgroups`), else opened now.
// Three opens of kernfs files were 30-40 µs of a launch's path.
Result<std::vector<int>> open_procs_files(InstanceCgroups& cgroups);

// Peak memory of the instance's cgroup in bytes (memory.max_usage_in_bytes /
// memory.peak), 0 when unknown.
int64_t cgroup_peak_memory_bytes(const InstanceCgroups& cgroups);

// Whether the kernel's OOM killer killed something in the instance's cgroup
// (memory.oom_control / memory.events "oom_kill").
bool cgroup_oom_killed(const InstanceCgroups& cgroups);

// Puts the instance's CPU cgroup in the idle scheduling class (`cpu.idle`,
// v1 and v2, Linux 5.15+) or takes it out. An instance being stopped tears
// down its address space, namespaces and mounts in its own context (about
// half a millisecond of CPU for a Python instance here); at idle that work
// takes only CPU time nothing else wants, instead of competing with the
// start that so often comes right after (a new version's first request).
// kUnavailable when the instance has no CPU cgroup or the kernel no such
// file: the instance then ends at its usual priority.
Status set_cpu_idle(const InstanceCgroups& cgroups, bool idle);

// Kills whatever is left in the cgroups and removes them; directories still
// busy are retried on later calls. A set from a CgroupStock that still runs
// is removed by the stock's thread, soon after. Always clears `cgroups`.
void remove_cgroups(InstanceCgroups& cgroups);

// Joining a cgroup (the child's write to cgroup.procs) takes the kernel's
// cgroup_threadgroup_rwsem for writing. In that lock's default mode, which
// favours fork and exit, the first such write after a quiet spell waits for
// an RCU grace period: 8-15 ms per cold start on the CI's kernel (6.18,
// HZ=250), where back-to-back starts paid nothing and a whole `provided`
// start takes about 2 ms. Any cgroup hierarchy mounted with `favordynmods`
// switches the lock to the mode that favours migrations (what the kernel's
// CONFIG_CGROUP_FAVOR_DYNMODS makes the default), at a small cost to fork
// and exit host-wide. This mounts a named v1 hierarchy without controllers
// ("name=tamaya", shared by every daemon on the host) with that option,
// detached (fsmount: no mount point, nothing in the host's mount table), and
// returns the fd that keeps it. On recent kernels (6.18 here) the switch
// lasts until reboot even after the fd is closed. Not cgroup v2: a new
// cgroup2 mount re-applies its options to the host's one hierarchy and
// would clear the host's own (nsdelegate, memory_recursiveprot); where v1
// is disabled the owner can remount cgroup2 with favordynmods.
Result<Fd> favor_cgroup_migrations();

// Reads a single-number cgroup file ("max" reads as -1); -2 when unreadable.
int64_t read_cgroup_number(const std::string& path);

}  // namespace tamaya::sandbox
