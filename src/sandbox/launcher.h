// Starts instance processes. This is the one place where per-instance limits
// are applied; the dispatcher only says what to run and with which limits.
// Every instance gets: its own session and process group, rlimits, a clean
// environment, stdin from /dev/null, stdout/stderr to pipes, every other fd
// closed, and a pidfd to watch it. An isolated one (Isolation::enabled, on a
// launcher made with SandboxOptions::isolate) also gets the layers the host
// allows: mount/pid/ipc/uts namespaces with a minimal pivot_root, network
// "none", a cgroup, a uid of its own, no_new_privs and a seccomp filter.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "sandbox/cgroup.h"
#include "sandbox/host.h"
#include "sandbox/seccomp_filter.h"

namespace tamaya::sandbox {

struct ResourceLimits {
  int64_t open_files = 1024;              // RLIMIT_NOFILE
  int64_t file_size_bytes = 512ll << 20;  // RLIMIT_FSIZE
  int64_t processes = 0;                  // RLIMIT_NPROC, 0 = leave as is
  int64_t address_space_bytes = 0;        // RLIMIT_AS, 0 = unlimited
  bool core_dumps = false;                // RLIMIT_CORE 0 unless set
};

// Where the sandbox puts things inside an instance's root.
inline constexpr const char* kTaskRoot = "/var/task";
inline constexpr const char* kRuntimesRoot = "/opt/tamaya/runtimes";

enum class Network { kHost, kNone };

// What an isolated instance gets; ignored by a launcher whose layers are off
// (see Layers). Paths are host paths; argv[0] and cwd are then paths inside
// the instance's root.
struct Isolation {
  bool enabled = false;
  std::string name;  // unique per instance: names its cgroups
  uint32_t uid = 0;  // 0: keep the daemon's
  uint32_t gid = 0;
  std::string hostname = "tamaya";
  int64_t memory_bytes = 0;  // cgroup memory limit (swap off); 0: none
  int64_t pids_max = 0;      // cgroup pids limit; 0: none
  int64_t cpu_shares = 0;    // cgroup cpu share (v1 units); 0: default
  int64_t tmp_bytes = 512ll << 20;
  Network network = Network::kHost;
  int netns_fd = -1;         // network kNone: the namespace to join (see netns.h)
  std::string code_dir;      // mounted read-only at kTaskRoot
  std::string runtimes_dir;  // mounted read-only at kRuntimesRoot
  // Host paths bound read-only at the same place (files or directories);
  // empty: the launcher's default allowlist (default_readonly_paths()).
  std::vector<std::string> readonly_paths;
  // A zygote (zygote.h): it keeps root and gets no seccomp filter or
  // no_new_privs, because each child it forks drops those itself before
  // running function code. Nothing of the function runs in the zygote.
  bool zygote = false;
};

struct LaunchSpec {
  std::vector<std::string> argv;  // argv[0] is the program path (no PATH search)
  std::vector<std::string> env;   // "KEY=value"; nothing is inherited
  std::string cwd;
  ResourceLimits limits;
  Isolation isolation;
  // Non-empty: this instance may instead be forked from a zygote started with
  // this command line (a Python zygote, runtimes/python/zygote.py); a
  // launcher without zygotes ignores it.
  std::vector<std::string> zygote_argv;
  // Non-empty: this instance may instead be a pre-started generic instance
  // started with this command line and specialised for it (a Node.js pool
  // member, runtimes/node/generic.js, node_pool.h); other launchers ignore it.
  std::vector<std::string> generic_argv;
  // >= 0: the child's stdin instead of /dev/null (a zygote's control socket).
  int stdin_fd = -1;
  // A zygote's child is handed over as soon as it has its request ("go"),
  // while it walls itself in, instead of once it is: the caller then sets up
  // its side of the instance (pipes, exit watch, Runtime API) in the
  // meantime rather than after, and watches Process::walled_fd for the
  // outcome. The instance runs nothing of the function before it is walled
  // in either way. Other launches ignore it.
  bool hand_over_at_go = false;
};

// Where the exit status of an instance that is not the daemon's own child
// comes from (a zygote's child: the zygote is its parent and reaps it).
class ExitSource {
 public:
  virtual ~ExitSource() = default;
  // The wait status of `pid` (as the daemon sees it), which has exited; an
  // error when it is not known (yet).
  virtual Result<int> exit_status(pid_t pid) = 0;
  // A child handed over at its "go" (LaunchSpec::hand_over_at_go) could not
  // wall itself in: the source is not used for a while, as when a spawn
  // fails before the hand-over.
  virtual void child_not_walled_in() {}
};

// Owned fds of a started process; the caller closes them (close_fds) and
// releases its cgroups (release) once it has been reaped.
struct Process {
  pid_t pid = -1;
  int pidfd = -1;      // readable when the process has exited
  int stdout_fd = -1;  // non-blocking, close-on-exec, read end
  int stderr_fd = -1;
  // >= 0 for a zygote's child handed over at its "go": readable once the
  // child is walled in or could not be (read_walled_in).
  int walled_fd = -1;
  InstanceCgroups cgroups;
  std::shared_ptr<ExitSource> exit_source;  // set: not our child; ask it for the status
};

// What a child handed over at its "go" says on `walled_fd`, read without
// blocking: Ok once it is walled in; kUnavailable while it has said nothing
// yet; otherwise why it could not be (it exits), which `source` is told.
Status read_walled_in(int walled_fd, ExitSource* source);

// Which isolation layers a launcher applies to an instance that asks for them.
struct Layers {
  bool filesystem = false;  // mount/pid/ipc/uts namespaces + pivot_root
  bool network_none = false;
  bool uids = false;
  bool cgroups = false;
  bool seccomp = false;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual Result<Process> launch(const LaunchSpec& spec) = 0;
  virtual Layers layers() const { return {}; }
};

// The host paths an instance sees read-only when LaunchSpec does not say:
// the system's program and library dirs and the few /etc files runtimes read.
const std::vector<std::string>& default_readonly_paths();

struct SandboxOptions {
  bool isolate = false;   // false: a plain process (sandbox_isolation "off")
  HostCapabilities host;  // what the host allows (probe_host)
  std::string root_dir;   // an empty directory: mount point of each instance's root
  // Instance cgroup sets kept made ahead of need (CgroupStock); 0: each
  // launch makes its own.
  int cgroups_ahead = 0;
  // Sandboxes kept made ahead of need for direct launches (ReadySandboxes in
  // launcher.cpp); 0: each launch makes its own walls.
  int sandboxes_ahead = 0;
  // Every process launched (instances, zygotes and their children, pool
  // members) runs under SCHED_BATCH: one the event loop wakes does not
  // preempt it, so the loop finishes what it was doing (answering, handing
  // out the next event) instead of being switched out mid-turn.
  bool batch_cpu = false;
};

// How the sandboxes made ahead served launches (ProcessLauncher).
struct ReadyCounters {
  int ready = 0;         // members waiting now
  int64_t served = 0;    // launches that got one
  int64_t empty = 0;     // launches that fit but found none ready (made their own)
  int64_t failures = 0;  // members that died before being used
};

// fork/exec with the limits above. Safe to call from a multi-threaded
// process: everything the child needs is prepared before fork, and the child
// only makes async-signal-safe calls.
//
// The instance gets SIGKILL when the *thread* that launched it exits (that is
// how PR_SET_PDEATHSIG works), so launch from threads that live as long as
// the daemon (the io_context workers), never from a short-lived thread.
// A program that cannot be started (missing, not executable, bad cwd, limit
// refused) is an error Status naming the path and the cause; by then the
// failed child is already reaped and no fd is left open.
class RootTemplates;
class ReadySandboxes;

class ProcessLauncher final : public Launcher {
 public:
  ProcessLauncher();
  ~ProcessLauncher() override;
  ProcessLauncher(const ProcessLauncher&) = delete;
  ProcessLauncher& operator=(const ProcessLauncher&) = delete;
  // With isolation: builds the seccomp filter and the prepared root (see
  // RootTemplates in launcher.cpp) once; fails when it cannot.
  static Result<std::unique_ptr<ProcessLauncher>> create(SandboxOptions options);

  Result<Process> launch(const LaunchSpec& spec) override;
  Layers layers() const override { return layers_; }
  const SeccompProgram& seccomp() const { return seccomp_; }
  const SandboxOptions& options() const { return options_; }
  // An instance's cgroups with these limits: a set made ahead when one is
  // ready, else made now (create_cgroups). Thread-safe.
  Result<InstanceCgroups> make_cgroups(const std::string& name, const CgroupLimits& limits) const;
  ReadyCounters ready_counters() const;

 private:
  friend class ReadySandboxes;
  Result<Process> launch_direct(const LaunchSpec& spec);

  SandboxOptions options_;
  Layers layers_;
  SeccompProgram seccomp_;
  std::shared_ptr<RootTemplates> roots_;  // with the filesystem layer
  int self_pidfd_ = -1;                   // the daemon's own pidfd, for children's liveness check
  std::unique_ptr<CgroupStock> cgroup_stock_;  // with the cgroup layer and cgroups_ahead > 0
  std::unique_ptr<ReadySandboxes> ready_;      // with the filesystem layer and sandboxes_ahead > 0
};

// The rlimits an instance with these limits gets, as (RLIMIT_*, value) with
// soft = hard; the same list the launcher applies.
std::vector<std::pair<int, uint64_t>> rlimit_values(const ResourceLimits& limits);

// Sends sig to the whole process group of an instance.
Status kill_group(pid_t pid, int sig);

// Reaps the exited process behind a pidfd: its wait status (as waitpid), or
// nullopt-like error when it has not exited.
Result<int> reap(const Process& process);

// Peak resident set of a live process in bytes (VmHWM), 0 when unknown.
int64_t peak_rss_bytes(pid_t pid);

// Closes whichever of the process's fds are open and sets them to -1.
void close_fds(Process& process);

// Peak memory of the instance: its cgroup's peak when it has one, else VmHWM.
int64_t peak_memory_bytes(const Process& process);

// Whether the instance (or a process in it) was killed by the OOM killer
// for going over its cgroup memory limit.
bool oom_killed(const Process& process);

// Removes the instance's cgroups (killing stragglers). Call after reaping.
void release(Process& process);

// Ends a process nobody will run: SIGKILL to its group, up to a second for
// it to go, then reap, release and close_fds; its pid becomes -1. Nothing
// when it has no pid.
void terminate(Process& process);

}  // namespace tamaya::sandbox
