#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/thread_step.h"

namespace tamaya::sandbox {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

Status write_file(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::Internal("opening " + path + ": " + errno_text(errno));
  ssize_t n = write(fd, value.data(), value.size());
  int err = errno;
  close(fd);
  if (n != ssize_t(value.size())) {
    return Status::Internal("writing '" + value + "' to " + path + ": " + errno_text(err));
  }
  return Status::Ok();
}

Status make_dir(const std::string& dir, std::vector<std::string>& made) {
  if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
    return Status::Internal("creating cgroup " + dir + ": " + errno_text(errno) +
                            " (is the controller mounted and writable?)");
  }
  made.push_back(dir);
  return Status::Ok();
}

// Cgroups whose rmdir failed (still busy): retried on later removals.
std::mutex g_pending_mutex;
std::vector<std::string> g_pending;

void kill_members(const std::string& dir) {
  std::ifstream procs(dir + "/cgroup.procs");
  pid_t pid;
  while (procs >> pid) {
    if (pid > 1) ::kill(pid, SIGKILL);
  }
}

bool try_rmdir(const std::string& dir) { return rmdir(dir.c_str()) == 0 || errno == ENOENT; }

// remove_cgroups on the calling thread.
void remove_now(InstanceCgroups& cgroups) {
  cgroups.procs_opened.reset();
  std::lock_guard lock(g_pending_mutex);
  std::vector<std::string> still;
  for (const auto& dir : g_pending) {
    kill_members(dir);
    if (!try_rmdir(dir)) still.push_back(dir);
  }
  for (const auto& dir : cgroups.dirs) {
    if (try_rmdir(dir)) continue;
    kill_members(dir);
    if (!try_rmdir(dir)) still.push_back(dir);
  }
  g_pending = std::move(still);
  cgroups = InstanceCgroups{};
}

}  // namespace

int64_t cpu_shares_for_memory(int64_t memory_mb) {
  return std::max<int64_t>(2, memory_mb * 1024 / kMemoryMbPerVcpu);
}

int64_t cpu_weight_from_shares(int64_t shares) {
  // The kernel's own conversion (cgroup v1 shares ↔ v2 weight).
  return std::clamp<int64_t>(1 + ((shares - 2) * 9999) / 262142, 1, 10000);
}

namespace {

// The directories of one set: one (v2) or one per controller the limits ask
// for (v1). No limit written yet.
Status make_set(const HostCapabilities& caps, const std::string& name, const CgroupLimits& limits,
                InstanceCgroups& out) {
  out.version = caps.cgroup;
  if (caps.cgroup == CgroupVersion::kV2) {
    const std::string dir = caps.cgroup_memory + "/" + name;
    TAMAYA_RETURN_IF_ERROR(make_dir(dir, out.dirs));
    out.memory_dir = out.pids_dir = out.cpu_dir = dir;
    return Status::Ok();
  }
  if (caps.cgroup != CgroupVersion::kV1) return Status::Ok();
  if (!caps.cgroup_memory.empty() && limits.memory_bytes > 0) {
    out.memory_dir = caps.cgroup_memory + "/" + name;
    TAMAYA_RETURN_IF_ERROR(make_dir(out.memory_dir, out.dirs));
  }
  if (!caps.cgroup_pids.empty() && limits.pids_max > 0) {
    out.pids_dir = caps.cgroup_pids + "/" + name;
    TAMAYA_RETURN_IF_ERROR(make_dir(out.pids_dir, out.dirs));
  }
  if (!caps.cgroup_cpu.empty() && limits.cpu_shares > 0) {
    out.cpu_dir = caps.cgroup_cpu + "/" + name;
    TAMAYA_RETURN_IF_ERROR(make_dir(out.cpu_dir, out.dirs));
  }
  return Status::Ok();
}

// The limits of a set just made (nothing in it yet, every limit at its
// default).
Status write_new_limits(const HostCapabilities& caps, const InstanceCgroups& set,
                        const CgroupLimits& limits) {
  if (set.version == CgroupVersion::kV2) {
    const std::string& dir = set.memory_dir;
    if (limits.memory_bytes > 0) {
      TAMAYA_RETURN_IF_ERROR(write_file(dir + "/memory.max", std::to_string(limits.memory_bytes)));
      if (caps.memory_swap_control)
        TAMAYA_RETURN_IF_ERROR(write_file(dir + "/memory.swap.max", "0"));
    }
    if (limits.pids_max > 0) {
      TAMAYA_RETURN_IF_ERROR(write_file(dir + "/pids.max", std::to_string(limits.pids_max)));
    }
    if (limits.cpu_shares > 0) {
      TAMAYA_RETURN_IF_ERROR(write_file(dir + "/cpu.weight",
                                        std::to_string(cpu_weight_from_shares(limits.cpu_shares))));
    }
    return Status::Ok();
  }
  // v1: the memory limit goes first, memsw second (memsw may never be below
  // the memory limit): equal means no swap.
  if (!set.memory_dir.empty() && limits.memory_bytes > 0) {
    const std::string bytes = std::to_string(limits.memory_bytes);
    TAMAYA_RETURN_IF_ERROR(write_file(set.memory_dir + "/memory.limit_in_bytes", bytes));
    TAMAYA_RETURN_IF_ERROR(caps.memory_swap_control
                               ? write_file(set.memory_dir + "/memory.memsw.limit_in_bytes", bytes)
                               : write_file(set.memory_dir + "/memory.swappiness", "0"));
  }
  if (!set.pids_dir.empty() && limits.pids_max > 0) {
    TAMAYA_RETURN_IF_ERROR(write_file(set.pids_dir + "/pids.max", std::to_string(limits.pids_max)));
  }
  if (!set.cpu_dir.empty() && limits.cpu_shares > 0) {
    TAMAYA_RETURN_IF_ERROR(
        write_file(set.cpu_dir + "/cpu.shares", std::to_string(limits.cpu_shares)));
  }
  return Status::Ok();
}

}  // namespace

Result<InstanceCgroups> create_cgroups(const HostCapabilities& caps, const std::string& name,
                                       const CgroupLimits& limits) {
  InstanceCgroups out;
  out.version = caps.cgroup;
  if (caps.cgroup == CgroupVersion::kNone) return out;
  Status s = make_set(caps, name, limits, out);
  if (s.ok()) s = write_new_limits(caps, out, limits);
  if (!s.ok()) {
    remove_cgroups(out);
    return s;
  }
  return out;
}

// Opens the set's cgroup.procs files for open_procs_files to hand over; on
// a failure opens none, and the launch opens them (and reports why).
void open_procs_ahead(InstanceCgroups& set) {
  auto opened = std::make_shared<std::vector<Fd>>();
  for (const auto& dir : set.dirs) {
    Fd fd(open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return;
    opened->push_back(std::move(fd));
  }
  set.procs_opened = std::move(opened);
}

struct CgroupStockState {
  HostCapabilities caps;
  int depth = 0;
  std::mutex mu;
  std::condition_variable wake;
  // A set made ahead, and the limits written into it, if any.
  struct Ready {
    InstanceCgroups set;
    std::optional<CgroupLimits> written;
  };
  std::deque<Ready> ready;
  std::deque<InstanceCgroups> given_back;  // to remove, before making more
  std::optional<CgroupLimits> last_taken;  // what new sets get written
  bool stop = false;
  std::thread thread;

  // Every controller the host has: instances ask for all three.
  static CgroupLimits all() { return {1, 1, 1}; }

  // False once the thread has stopped: the caller removes the set itself.
  bool give_back(InstanceCgroups& set) {
    {
      std::lock_guard lock(mu);
      if (stop) return false;
      given_back.push_back(std::move(set));
    }
    wake.notify_one();
    return true;
  }

  void run() {
    std::unique_lock lock(mu);
    while (!stop) {
      if (!given_back.empty()) {
        InstanceCgroups set = std::move(given_back.front());
        given_back.pop_front();
        lock.unlock();
        run_step("removing a cgroup set", [&] { remove_now(set); });
        lock.lock();
        continue;
      }
      if (int(ready.size()) >= depth) {
        wake.wait(lock);
        continue;
      }
      // Unique in the process: two stocks under one base (two launchers)
      // must never hand out the same directory.
      static std::atomic<uint64_t> made{0};
      const std::string name = "ahead-" + std::to_string(++made);
      const std::optional<CgroupLimits> limits = last_taken;
      lock.unlock();
      InstanceCgroups set;
      Status s = step_result("making a cgroup set ahead", [&] {
        Status made = make_set(caps, name, all(), set);
        if (made.ok() && limits) made = write_new_limits(caps, set, *limits);
        if (made.ok()) open_procs_ahead(set);
        return made;
      });
      if (!s.ok()) remove_cgroups(set);
      lock.lock();
      if (s.ok()) {
        ready.push_back({std::move(set), limits});
      } else {
        // The host refuses more cgroups for now: launches make their own
        // (and report why); try again later rather than spin.
        wake.wait_for(lock, std::chrono::seconds(1), [&] { return stop; });
      }
    }
  }
};

CgroupStock::CgroupStock(HostCapabilities caps, int depth)
    : state_(std::make_shared<CgroupStockState>()) {
  state_->caps = std::move(caps);
  state_->depth = depth;
  if (state_->caps.cgroup != CgroupVersion::kNone && depth > 0) {
    state_->thread = std::thread([st = state_.get()] { st->run(); });
  }
}

CgroupStock::~CgroupStock() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
  }
  state_->wake.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
  // Nothing is given back once stop is set (give_back refuses).
  for (auto& set : state_->given_back) remove_now(set);
  for (auto& r : state_->ready) remove_now(r.set);
}

std::optional<InstanceCgroups> CgroupStock::take(const CgroupLimits& limits) {
  const HostCapabilities& caps = state_->caps;
  // A set has every controller; limits without one of them get their own.
  if ((!caps.cgroup_memory.empty() && limits.memory_bytes <= 0) ||
      (!caps.cgroup_pids.empty() && limits.pids_max <= 0) ||
      (!caps.cgroup_cpu.empty() && limits.cpu_shares <= 0)) {
    return std::nullopt;
  }
  CgroupStockState::Ready r;
  {
    std::lock_guard lock(state_->mu);
    state_->last_taken = limits;
    if (state_->ready.empty()) return std::nullopt;
    r = std::move(state_->ready.front());
    state_->ready.pop_front();
  }
  state_->wake.notify_one();
  InstanceCgroups& set = r.set;
  Status s = !r.written             ? write_new_limits(caps, set, limits)
             : *r.written != limits ? set_cgroup_limits(caps, set, limits)
                                    : Status::Ok();
  if (!s.ok()) {
    remove_cgroups(set);
    return std::nullopt;
  }
  set.stock = state_;
  return std::move(set);
}

Status set_cgroup_limits(const HostCapabilities& caps, const InstanceCgroups& cgroups,
                         const CgroupLimits& limits) {
  if (cgroups.version == CgroupVersion::kV2) {
    if (limits.memory_bytes > 0 && !cgroups.memory_dir.empty()) {
      TAMAYA_RETURN_IF_ERROR(
          write_file(cgroups.memory_dir + "/memory.max", std::to_string(limits.memory_bytes)));
    }
    if (limits.pids_max > 0 && !cgroups.pids_dir.empty()) {
      TAMAYA_RETURN_IF_ERROR(
          write_file(cgroups.pids_dir + "/pids.max", std::to_string(limits.pids_max)));
    }
    if (limits.cpu_shares > 0 && !cgroups.cpu_dir.empty()) {
      TAMAYA_RETURN_IF_ERROR(write_file(cgroups.cpu_dir + "/cpu.weight",
                                        std::to_string(cpu_weight_from_shares(limits.cpu_shares))));
    }
    return Status::Ok();
  }
  if (cgroups.version != CgroupVersion::kV1) return Status::Ok();
  if (limits.memory_bytes > 0 && !cgroups.memory_dir.empty()) {
    // memsw may never be below the memory limit: lowering writes the memory
    // limit first, raising memsw first.
    const std::string bytes = std::to_string(limits.memory_bytes);
    const std::string mem = cgroups.memory_dir + "/memory.limit_in_bytes";
    const std::string memsw = cgroups.memory_dir + "/memory.memsw.limit_in_bytes";
    const int64_t current = read_cgroup_number(mem);
    if (!caps.memory_swap_control) {
      TAMAYA_RETURN_IF_ERROR(write_file(mem, bytes));
    } else if (current >= 0 && limits.memory_bytes < current) {
      TAMAYA_RETURN_IF_ERROR(write_file(mem, bytes));
      TAMAYA_RETURN_IF_ERROR(write_file(memsw, bytes));
    } else {
      TAMAYA_RETURN_IF_ERROR(write_file(memsw, bytes));
      TAMAYA_RETURN_IF_ERROR(write_file(mem, bytes));
    }
  }
  if (limits.pids_max > 0 && !cgroups.pids_dir.empty()) {
    TAMAYA_RETURN_IF_ERROR(
        write_file(cgroups.pids_dir + "/pids.max", std::to_string(limits.pids_max)));
  }
  if (limits.cpu_shares > 0 && !cgroups.cpu_dir.empty()) {
    TAMAYA_RETURN_IF_ERROR(
        write_file(cgroups.cpu_dir + "/cpu.shares", std::to_string(limits.cpu_shares)));
  }
  return Status::Ok();
}

Result<std::vector<int>> open_procs_files(InstanceCgroups& cgroups) {
  std::vector<int> fds;
  if (auto opened = std::move(cgroups.procs_opened);
      opened && opened->size() == cgroups.dirs.size()) {
    for (Fd& fd : *opened) fds.push_back(fd.release());
    return fds;
  }
  for (const auto& dir : cgroups.dirs) {
    int fd = open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      for (int f : fds) close(f);
      return Status::Internal("opening " + dir + "/cgroup.procs: " + errno_text(err));
    }
    fds.push_back(fd);
  }
  return fds;
}

int64_t read_cgroup_number(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return -2;
  if (text == "max") return -1;
  int64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() ? value : -2;
}

int64_t cgroup_peak_memory_bytes(const InstanceCgroups& cgroups) {
  if (cgroups.memory_dir.empty()) return 0;
  const char* file =
      cgroups.version == CgroupVersion::kV2 ? "/memory.peak" : "/memory.max_usage_in_bytes";
  return std::max<int64_t>(0, read_cgroup_number(cgroups.memory_dir + file));
}

bool cgroup_oom_killed(const InstanceCgroups& cgroups) {
  if (cgroups.memory_dir.empty()) return false;
  const char* file =
      cgroups.version == CgroupVersion::kV2 ? "/memory.events" : "/memory.oom_control";
  std::ifstream in(cgroups.memory_dir + file);
  std::string key;
  int64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill" && value > 0) return true;
  }
  return false;
}

Status set_cpu_idle(const InstanceCgroups& cgroups, bool idle) {
  if (cgroups.cpu_dir.empty()) return Status::Unavailable("the instance has no CPU cgroup");
  const std::string path = cgroups.cpu_dir + "/cpu.idle";
  Status written = write_file(path, idle ? "1" : "0");
  // Only a failure asks why, so an instance's end looks the path up once.
  if (!written.ok() && access(path.c_str(), F_OK) != 0) {
    return Status::Unavailable(path + ": " + errno_text(errno) + " (cpu.idle needs Linux 5.15)");
  }
  return written;
}

void remove_cgroups(InstanceCgroups& cgroups) {
  if (auto stock = cgroups.stock.lock(); stock && stock->give_back(cgroups)) {
    cgroups = InstanceCgroups{};
    return;
  }
  remove_now(cgroups);
}

// favor_cgroup_migrations: up to 50 more tries 20 ms apart (1 s) on EBUSY.
constexpr int kFavorBusyRetries = 50;
constexpr useconds_t kFavorBusyRetryUs = 20'000;

Result<Fd> favor_cgroup_migrations() {
  auto refused = [](const char* step) {
    return Status::Unavailable(std::string("a cgroup v1 hierarchy name=tamaya with "
                                           "favordynmods: ") +
                               step + ": " + errno_text(errno));
  };
  Fd ctx;
  // The hierarchy is shared: while another daemon (or `tamaya doctor`) that
  // held it is letting it go, creating it again can fail with EBUSY (seen in
  // CI, a test's daemon started right after another ended). That passes
  // within milliseconds, so retry for a bounded while before giving up.
  for (int attempt = 0;; ++attempt) {
    ctx = Fd(fsopen("cgroup", FSOPEN_CLOEXEC));
    if (!ctx.valid()) return refused("fsopen");
    if (fsconfig(ctx.get(), FSCONFIG_SET_STRING, "name", "tamaya", 0) < 0) return refused("name");
    if (fsconfig(ctx.get(), FSCONFIG_SET_FLAG, "none", nullptr, 0) < 0) return refused("none");
    if (fsconfig(ctx.get(), FSCONFIG_SET_FLAG, "favordynmods", nullptr, 0) < 0) {
      return refused("favordynmods");
    }
    if (fsconfig(ctx.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) == 0) break;
    if (errno != EBUSY || attempt >= kFavorBusyRetries) return refused("create");
    usleep(kFavorBusyRetryUs);
  }
  Fd mnt(fsmount(ctx.get(), FSMOUNT_CLOEXEC,
                 MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!mnt.valid()) return refused("fsmount");
  return mnt;
}

}  // namespace tamaya::sandbox
