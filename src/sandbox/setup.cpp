#include "sandbox/setup.h"

#include <unistd.h>

#include <filesystem>

#include "sandbox/cgroup.h"

namespace tamaya::sandbox {

namespace {

constexpr int kMaxCgroupsAhead = 64;
constexpr int kMaxSandboxesAhead = 16;  // each holds a thread while it waits

Status check_mode(const std::string& mode) {
  if (mode == "auto" || mode == "off") return Status::Ok();
  return Status::Invalid("sandbox_isolation '" + mode +
                         "' is not known; use auto (every layer the host supports) or off "
                         "(plain processes, e.g. without root)");
}

std::string sandbox_dir(const std::string& data_dir) {
  std::error_code ec;
  auto dir = std::filesystem::absolute(data_dir, ec) / "sandbox";
  return dir.lexically_normal().string();
}

}  // namespace

Result<std::unique_ptr<Sandbox>> Sandbox::open(const std::string& mode, const std::string& data_dir,
                                               const std::string& python_zygote,
                                               ZygoteOptions zygote_options,
                                               NodePoolOptions node_pool,
                                               const LaunchTuning& tuning) {
  const std::string& cgroup_favor_dynmods = tuning.favor_dynmods;
  TAMAYA_RETURN_IF_ERROR(check_mode(mode));
  if (tuning.ahead < 0 || tuning.ahead > kMaxCgroupsAhead) {
    return Status::Invalid("sandbox_cgroups_ahead " + std::to_string(tuning.ahead) +
                           " is out of range; use 0 (each start makes its own) to " +
                           std::to_string(kMaxCgroupsAhead));
  }
  if (tuning.sandboxes_ahead < 0 || tuning.sandboxes_ahead > kMaxSandboxesAhead) {
    return Status::Invalid("sandbox_ready_ahead " + std::to_string(tuning.sandboxes_ahead) +
                           " is out of range; use 0 (each start makes its own walls) to " +
                           std::to_string(kMaxSandboxesAhead));
  }
  if (cgroup_favor_dynmods != "on" && cgroup_favor_dynmods != "off") {
    return Status::Invalid("sandbox_cgroup_favor_dynmods '" + cgroup_favor_dynmods +
                           "' is not known; use on (fast joins of instance cgroups) or off "
                           "(leave the host's cgroup mode as it is)");
  }
  if (zygote_options.prefork < 0 || zygote_options.prefork > kMaxZygotePrefork) {
    return Status::Invalid("python_zygote_prefork " + std::to_string(zygote_options.prefork) +
                           " is out of range; use 0 to " + std::to_string(kMaxZygotePrefork) +
                           " (children each zygote keeps forked ahead of need)");
  }
  if (tuning.cpu_policy != "batch" && tuning.cpu_policy != "normal") {
    return Status::Invalid("instance_cpu_policy '" + tuning.cpu_policy +
                           "' is not known; use batch (instances do not preempt the daemon's "
                           "event loop) or normal");
  }
  if (python_zygote != "on" && python_zygote != "off") {
    return Status::Invalid("python_zygote '" + python_zygote +
                           "' is not known; use on (fork Python instances from a zygote) or off");
  }
  std::unique_ptr<Sandbox> out(new Sandbox());
  out->isolate_ = mode == "auto";
  SandboxOptions options;
  options.isolate = out->isolate_;
  options.batch_cpu = tuning.cpu_policy == "batch";
  if (out->isolate_) {
    const std::string dir = sandbox_dir(data_dir);
    out->host_ = probe_host(dir);
    remove_stale_cgroups(out->host_);
    if (out->host_.cgroup != CgroupVersion::kNone && cgroup_favor_dynmods == "on") {
      auto held = favor_cgroup_migrations();
      if (held.ok()) {
        out->favor_dynmods_ = std::move(*held);
      } else {
        out->host_.notes.push_back(
            "cgroup favordynmods is refused (" + held.status().message() +
            "): a cold start after a quiet spell may wait ~10 ms to join its cgroups; on a "
            "cgroup v2 host, remount it with favordynmods (mount -o remount,favordynmods "
            "/sys/fs/cgroup) to avoid that");
      }
    }
    options.host = out->host_;
    options.root_dir = dir + "/root";
    options.cgroups_ahead = tuning.ahead;
    options.sandboxes_ahead = tuning.sandboxes_ahead;
  }
  TAMAYA_ASSIGN_OR_RETURN(out->launcher_, ProcessLauncher::create(std::move(options)));
  if (python_zygote == "off") {
    out->zygote_note_ = "python_zygote=off";
  } else if (!out->launcher_->layers().filesystem) {
    // The zygote's walls are the sandbox's: without namespaces it would be a
    // plain shared parent, so Python starts directly there.
    out->zygote_note_ = "python_zygote=off (needs the sandbox's namespaces)";
  } else {
    out->zygote_note_ = "python_zygote=on";
    out->zygotes_ = std::make_unique<ZygoteLauncher>(*out->launcher_, zygote_options);
  }
  if (node_pool.size < 0) {
    return Status::Invalid("node_pool_size must be 0 (off) or more, got " +
                           std::to_string(node_pool.size));
  }
  if (node_pool.size > 0 && out->launcher_->layers().filesystem) {
    // Members are walled in by the sandbox's namespaces: no pool without them.
    Launcher& inner = out->zygotes_ ? static_cast<Launcher&>(*out->zygotes_) : *out->launcher_;
    out->node_pool_ = std::make_unique<NodePoolLauncher>(inner, *out->launcher_, node_pool);
    out->zygote_note_ += " node_pool_size=" + std::to_string(node_pool.size);
  } else {
    out->zygote_note_ +=
        node_pool.size > 0 ? " node_pool=off (needs the sandbox's namespaces)" : " node_pool=off";
  }
  return out;
}

Sandbox::~Sandbox() {
  node_pool_.reset();  // pool members and their cgroups go before the bases below
  zygotes_.reset();    // so do zygotes
  launcher_.reset();   // and the cgroups it made ahead of need
  // Instances are gone by now (the dispatcher removed their cgroups): this
  // daemon's own tamaya-<pid> directories go too.
  for (const std::string& base : {host_.cgroup_memory, host_.cgroup_pids, host_.cgroup_cpu}) {
    if (!base.empty()) rmdir(base.c_str());
  }
}

std::string Sandbox::startup_line() const {
  if (!isolate_) {
    return "sandbox isolation=off (sandbox_isolation=off: plain processes with rlimits) " +
           zygote_note_ + " cpu_policy=" + cpu_policy();
  }
  std::string cgroups;
  if (host_.cgroup != CgroupVersion::kNone) {
    cgroups = favor_dynmods_.valid() ? "cgroup_favordynmods=on " : "cgroup_favordynmods=off ";
  }
  return "sandbox isolation=auto " + summary(host_) + " " + cgroups + zygote_note_ +
         " cpu_policy=" + cpu_policy();
}

// instance_cpu_policy, as the launcher applies it.
std::string Sandbox::cpu_policy() const {
  return launcher_->options().batch_cpu ? "batch" : "normal";
}

std::string Sandbox::missing() const {
  if (!isolate_) return "";
  std::string out;
  for (const auto& note : host_.notes) {
    if (!out.empty()) out += "; ";
    out += note;
  }
  return out;
}

Result<std::string> doctor(const std::string& mode, const std::string& data_dir) {
  TAMAYA_RETURN_IF_ERROR(check_mode(mode));
  HostCapabilities caps = probe_host(sandbox_dir(data_dir));
  std::string report = doctor_report(caps);
  for (const std::string& base : {caps.cgroup_memory, caps.cgroup_pids, caps.cgroup_cpu}) {
    if (!base.empty()) rmdir(base.c_str());
  }
  if (mode == "off") {
    report +=
        "sandbox_isolation is 'off': the daemon uses none of these layers; set it to 'auto'.\n";
  }
  return report;
}

}  // namespace tamaya::sandbox
