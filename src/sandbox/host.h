// What this host lets the daemon do to isolate instances, found by trying
// (not guessing from the kernel version): each layer is probed once at start,
// the daemon logs one line with the result, and `tamaya doctor` prints the
// whole report. A layer that is missing is off and said to be off.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace tamaya::sandbox {

enum class CgroupVersion { kNone, kV1, kV2 };

struct HostCapabilities {
  bool root = false;           // euid 0: mounts, uid switching, cgroup writes
  bool namespaces = false;     // mount + pid + ipc + uts namespaces and a tmpfs root
  bool net_namespace = false;  // an empty network namespace (network "none")
  bool uid_switch = false;     // instances can run as a uid of their own
  bool seccomp = false;        // a seccomp filter can be built and loaded
  CgroupVersion cgroup = CgroupVersion::kNone;
  // The directories under which instance cgroups are made, one per
  // controller on v1 ("" when that controller is not usable); on v2 all three
  // are the same directory.
  std::string cgroup_memory;
  std::string cgroup_pids;
  std::string cgroup_cpu;
  bool memory_swap_control = false;  // v1 memsw / v2 memory.swap.max present
  std::vector<std::string> notes;    // why a layer is off, in words
};

// Probes the host. `sandbox_dir` is the daemon's own directory for sandbox
// state (the pivot root mount point lives there); it is created.
HostCapabilities probe_host(const std::string& sandbox_dir);

// "namespaces=on pivot_root=on cgroup=v1(memory,pids,cpu) seccomp=on uids=on netns=on"
std::string summary(const HostCapabilities& caps);

// A multi-line human report for `tamaya doctor`: each layer, on or off, and
// what to do about the ones that are off.
std::string doctor_report(const HostCapabilities& caps);

// Removes instance cgroups left behind by daemons that are gone
// (tamaya-<pid> directories whose pid no longer runs).
void remove_stale_cgroups(const HostCapabilities& caps);

// Each instance costs the daemon file descriptors (a pidfd, two pipes, its
// Runtime API socket and connection): raises the soft RLIMIT_NOFILE to the
// hard one (and, as root, the hard one up to `needed` within fs.nr_open).
// The limit now in force, or an error saying what to do when it is below
// `needed`.
Result<int64_t> raise_open_files_limit(int64_t needed);

}  // namespace tamaya::sandbox
