// The daemon's one call to set up isolation from its settings: validates
// sandbox_isolation, probes the host once, builds the launcher, and cleans up
// this daemon's cgroup directories when it goes away.
#pragma once

#include <memory>
#include <string>

#include "common/fd.h"
#include "common/status.h"
#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/node_pool.h"
#include "sandbox/zygote.h"

namespace tamaya::sandbox {

// How launches are tuned: instances' cgroups (where the host has cgroups),
// what is made ahead of need, and the CPU policy instances run under.
struct LaunchTuning {
  // "on" switches the host's cgroups to fast joins (favor_cgroup_migrations
  // in cgroup.h); "off" leaves the host as it is.
  std::string favor_dynmods = "off";
  // Sets kept made ahead of need, off the request path (CgroupStock).
  int ahead = 0;
  // Whole sandboxes kept made ahead for direct starts (ReadySandboxes in
  // launcher.cpp), each holding one of those sets.
  int sandboxes_ahead = 0;
  // "batch" (SandboxOptions::batch_cpu) or "normal".
  std::string cpu_policy = "normal";
};

class Sandbox {
 public:
  // mode: "auto" (every layer the host supports) or "off" (a plain process).
  // State (the pivot root's mount point) lives under <data_dir>/sandbox.
  // python_zygote: "on" forks Python instances from a zygote per function
  // (zygote.h) where the sandbox is on; "off" starts every instance directly.
  static Result<std::unique_ptr<Sandbox>> open(const std::string& mode, const std::string& data_dir,
                                               const std::string& python_zygote = "off",
                                               ZygoteOptions zygote_options = {},
                                               NodePoolOptions node_pool = {},
                                               const LaunchTuning& tuning = {});
  ~Sandbox();

  Launcher& launcher() {
    if (node_pool_) return *node_pool_;
    return zygotes_ ? static_cast<Launcher&>(*zygotes_) : *launcher_;
  }
  // The Node.js pool (node_pool.h), null when node_pool_size is 0 or the
  // sandbox's namespaces are off.
  const NodePoolLauncher* node_pool() const { return node_pool_.get(); }
  // The Python zygotes (zygote.h), null when python_zygote is off or the
  // sandbox's namespaces are off.
  const ZygoteLauncher* zygotes() const { return zygotes_.get(); }
  // How the sandboxes made ahead served direct starts (zero when off).
  ReadyCounters ready_sandboxes() const {
    return launcher_ ? launcher_->ready_counters() : ReadyCounters{};
  }
  const HostCapabilities& host() const { return host_; }
  // The one line the daemon logs at start: which layers are on.
  std::string startup_line() const;
  // Why layers are off, "" when all are on (logged once as a warning).
  std::string missing() const;

 private:
  std::string cpu_policy() const;  // "batch" or "normal", from the launcher's options

  bool isolate_ = false;
  HostCapabilities host_;
  Fd favor_dynmods_;  // keeps the favordynmods mount (cgroup.h)
  std::unique_ptr<ProcessLauncher> launcher_;
  std::unique_ptr<ZygoteLauncher> zygotes_;      // null: python_zygote off or no sandbox
  std::unique_ptr<NodePoolLauncher> node_pool_;  // wraps the launcher above; null: off
  std::string zygote_note_;
};

// `tamaya doctor`: the host report for these settings.
Result<std::string> doctor(const std::string& mode, const std::string& data_dir);

}  // namespace tamaya::sandbox
