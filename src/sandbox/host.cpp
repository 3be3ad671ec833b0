#include "sandbox/host.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sandbox/seccomp_filter.h"

namespace tamaya::sandbox {

namespace {

namespace fs = std::filesystem;

std::string errno_text(int err) { return std::strerror(err); }

// Runs `probe` in a forked child and says whether it exited 0. Probing in a
// child leaves the daemon's own namespaces untouched.
template <typename F>
bool in_child(F probe) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) _exit(probe() ? 0 : 1);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct MountEntry {
  std::string point;
  std::string fstype;
  std::string super_options;
};

std::vector<MountEntry> cgroup_mounts() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root point options [optional...] - fstype source super
    std::istringstream s(line);
    std::string id, parent, dev, root, point, options, field;
    s >> id >> parent >> dev >> root >> point >> options;
    while (s >> field && field != "-") {
    }
    MountEntry e;
    std::string source;
    s >> e.fstype >> source >> e.super_options;
    if (e.fstype == "cgroup" || e.fstype == "cgroup2") {
      e.point = point;
      out.push_back(std::move(e));
    }
  }
  return out;
}

// "4:memory:/a/b" lines of /proc/self/cgroup: controller list → path.
std::vector<std::pair<std::string, std::string>> own_cgroups() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    out.emplace_back(line.substr(a + 1, b - a - 1), line.substr(b + 1));
  }
  return out;
}

bool has_word(const std::string& list, const std::string& word, char sep) {
  std::stringstream s(list);
  std::string item;
  while (std::getline(s, item, sep)) {
    if (item == word) return true;
  }
  return false;
}

std::string own_base_name() { return "tamaya-" + std::to_string(getpid()); }

bool write_text(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, value.data(), value.size()) == ssize_t(value.size());
  close(fd);
  return ok;
}

// v1: the daemon's own cgroup in the hierarchy that has `controller`, plus a
// tamaya-<pid> directory under it for this daemon's instances.
std::string v1_base(const std::vector<MountEntry>& mounts,
                    const std::vector<std::pair<std::string, std::string>>& own,
                    const std::string& controller, std::vector<std::string>& notes) {
  for (const auto& m : mounts) {
    if (m.fstype != "cgroup" || !has_word(m.super_options, controller, ',')) continue;
    for (const auto& [controllers, path] : own) {
      if (!has_word(controllers, controller, ',')) continue;
      std::string base = m.point + (path == "/" ? "" : path) + "/" + own_base_name();
      if (mkdir(base.c_str(), 0755) < 0 && errno != EEXIST) {
        notes.push_back(
            fmt::format("cgroup v1 {}: cannot create {}: {}", controller, base, errno_text(errno)));
        return "";
      }
      return base;
    }
  }
  notes.push_back("cgroup v1 controller '" + controller + "' is not mounted");
  return "";
}

void probe_cgroups(HostCapabilities& caps, std::vector<std::string>& v2_notes);

// v2 notes matter only when v1 cannot stand in.
void probe_cgroups(HostCapabilities& caps) {
  std::vector<std::string> v2_notes;
  probe_cgroups(caps, v2_notes);
  if (caps.cgroup == CgroupVersion::kNone) {
    caps.notes.insert(caps.notes.end(), v2_notes.begin(), v2_notes.end());
  }
}

void probe_cgroups(HostCapabilities& caps, std::vector<std::string>& v2_notes) {
  const auto mounts = cgroup_mounts();
  const auto own = own_cgroups();
  // v2 first, when it carries all three controllers.
  for (const auto& m : mounts) {
    if (m.fstype != "cgroup2") continue;
    std::string path;
    for (const auto& [controllers, p] : own) {
      if (controllers.empty()) path = p;
    }
    const std::string mine = m.point + (path == "/" ? "" : path);
    std::ifstream in(mine + "/cgroup.controllers");
    std::string available((std::istreambuf_iterator<char>(in)), {});
    if (!available.empty() && available.back() == '\n') available.pop_back();
    bool all = has_word(available, "memory", ' ') && has_word(available, "pids", ' ') &&
               has_word(available, "cpu", ' ');
    if (!all) {
      v2_notes.push_back("cgroup v2 at " + m.point + " offers only '" + available +
                         "' (needs memory, pids, cpu)");
      continue;
    }
    // No process may sit in a cgroup that hands controllers down, so the
    // daemon moves into a leaf of its own first when it must.
    const std::string enable = "+memory +pids +cpu";
    if (!write_text(mine + "/cgroup.subtree_control", enable)) {
      const std::string leaf = mine + "/" + own_base_name() + "-daemon";
      mkdir(leaf.c_str(), 0755);
      if (!write_text(leaf + "/cgroup.procs", "0") ||
          !write_text(mine + "/cgroup.subtree_control", enable)) {
        v2_notes.push_back("cgroup v2: cannot delegate controllers in " + mine + ": " +
                           errno_text(errno));
        continue;
      }
    }
    const std::string base = mine + "/" + own_base_name();
    if ((mkdir(base.c_str(), 0755) < 0 && errno != EEXIST) ||
        !write_text(base + "/cgroup.subtree_control", enable)) {
      v2_notes.push_back("cgroup v2: cannot create " + base + ": " + errno_text(errno));
      continue;
    }
    caps.cgroup = CgroupVersion::kV2;
    caps.cgroup_memory = caps.cgroup_pids = caps.cgroup_cpu = base;
    // memory.swap.max only appears in children, and only with swap accounting.
    const std::string probe = base + "/probe";
    mkdir(probe.c_str(), 0755);
    caps.memory_swap_control = access((probe + "/memory.swap.max").c_str(), F_OK) == 0;
    rmdir(probe.c_str());
    return;
  }
  bool any_v1 = false;
  for (const auto& m : mounts) any_v1 = any_v1 || m.fstype == "cgroup";
  if (!any_v1) {
    caps.notes.push_back("no usable cgroup controllers: instances have no memory/pids/cpu limits");
    return;
  }
  caps.cgroup_memory = v1_base(mounts, own, "memory", caps.notes);
  caps.cgroup_pids = v1_base(mounts, own, "pids", caps.notes);
  caps.cgroup_cpu = v1_base(mounts, own, "cpu", caps.notes);
  if (!caps.cgroup_memory.empty() || !caps.cgroup_pids.empty() || !caps.cgroup_cpu.empty()) {
    caps.cgroup = CgroupVersion::kV1;
  }
  caps.memory_swap_control =
      !caps.cgroup_memory.empty() &&
      access((caps.cgroup_memory + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0;
}

}  // namespace

HostCapabilities probe_host(const std::string& sandbox_dir) {
  HostCapabilities caps;
  caps.root = geteuid() == 0;
  std::error_code ec;
  const std::string root_dir = sandbox_dir + "/root";
  fs::create_directories(root_dir, ec);

  if (!caps.root) {
    caps.notes.push_back("not running as root: no namespaces, pivot_root, uids or cgroups");
  }
  caps.namespaces = in_child([&] {
    if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) < 0) return false;
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) return false;
    return mount("tamaya", root_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") == 0;
  });
  if (caps.root && !caps.namespaces) {
    caps.notes.push_back("mount/pid/ipc/uts namespaces or a tmpfs root at " + root_dir +
                         " are refused here (a container without CAP_SYS_ADMIN?)");
  }
  caps.net_namespace = in_child([] { return unshare(CLONE_NEWNET) == 0; });
  if (caps.root && !caps.net_namespace) {
    caps.notes.push_back("network namespaces are refused: network 'none' is unavailable");
  }
  caps.uid_switch = caps.root && in_child([] {
                      return setgroups(0, nullptr) == 0 && setresgid(65534, 65534, 65534) == 0 &&
                             setresuid(65534, 65534, 65534) == 0;
                    });
  auto program = build_seccomp_program();
  if (!program.ok()) {
    caps.notes.push_back("seccomp: " + program.status().message());
  } else {
    const SeccompProgram& p = *program;
    caps.seccomp = in_child([&] {
      sock_fprog prog = p.program();
      return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
             prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
    });
    if (!caps.seccomp) caps.notes.push_back("the kernel refuses seccomp filters");
  }
  if (caps.root) probe_cgroups(caps);
  return caps;
}

std::string summary(const HostCapabilities& caps) {
  auto on = [](bool b) { return b ? "on" : "off"; };
  std::string cg = "off";
  if (caps.cgroup != CgroupVersion::kNone) {
    std::string list;
    auto add = [&](const std::string& base, const char* name) {
      if (base.empty()) return;
      if (!list.empty()) list += ",";
      list += name;
    };
    add(caps.cgroup_memory, "memory");
    add(caps.cgroup_pids, "pids");
    add(caps.cgroup_cpu, "cpu");
    cg = std::string(caps.cgroup == CgroupVersion::kV2 ? "v2" : "v1") + "(" + list + ")";
  }
  return std::string("namespaces=") + on(caps.namespaces) + " pivot_root=" + on(caps.namespaces) +
         " netns=" + on(caps.net_namespace) + " cgroup=" + cg + " uids=" + on(caps.uid_switch) +
         " seccomp=" + on(caps.seccomp);
}

std::string doctor_report(const HostCapabilities& caps) {
  std::ostringstream out;
  auto line = [&](const char* layer, bool on, const std::string& detail) {
    out << "  " << (on ? "[on]  " : "[off] ") << layer;
    if (!detail.empty()) out << ": " << detail;
    out << "\n";
  };
  out << "tamaya sandbox: what this host lets each instance have\n";
  line("running as root", caps.root, caps.root ? "" : "most layers need root");
  line("mount/pid/ipc/uts namespaces, pivot_root to a minimal root", caps.namespaces, "");
  line("network namespace (network 'none')", caps.net_namespace, "");
  line("a uid/gid per function", caps.uid_switch, "");
  line("seccomp filter", caps.seccomp, "");
  std::string cg;
  if (caps.cgroup == CgroupVersion::kV1) cg = "v1";
  if (caps.cgroup == CgroupVersion::kV2) cg = "v2";
  line("cgroup memory limit", !caps.cgroup_memory.empty(),
       caps.cgroup_memory.empty()
           ? ""
           : cg + " under " + caps.cgroup_memory + (caps.memory_swap_control ? ", swap off" : ""));
  line("cgroup pids limit", !caps.cgroup_pids.empty(),
       caps.cgroup_pids.empty() ? "" : cg + " under " + caps.cgroup_pids);
  line("cgroup cpu share", !caps.cgroup_cpu.empty(),
       caps.cgroup_cpu.empty() ? "" : cg + " under " + caps.cgroup_cpu);
  line("rlimits, no_new_privs, new session, closed fds, clean environment", true, "always");
  if (!caps.notes.empty()) {
    out << "notes:\n";
    for (const auto& n : caps.notes) out << "  - " << n << "\n";
  }
  out << "summary: " << summary(caps) << "\n";
  return out.str();
}

void remove_stale_cgroups(const HostCapabilities& caps) {
  for (const std::string& base : {caps.cgroup_memory, caps.cgroup_pids, caps.cgroup_cpu}) {
    if (base.empty()) continue;
    const fs::path parent = fs::path(base).parent_path();
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(parent, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("tamaya-", 0) != 0 || !entry.is_directory()) continue;
      const std::string pid_text = name.substr(7, name.find('-', 7) - 7);
      pid_t pid = static_cast<pid_t>(std::atol(pid_text.c_str()));
      if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
      for (const auto& child : fs::directory_iterator(entry.path(), ec)) {
        if (child.is_directory()) rmdir(child.path().c_str());
      }
      rmdir(entry.path().c_str());
    }
  }
}

Result<int64_t> raise_open_files_limit(int64_t needed) {
  rlimit now{};
  if (getrlimit(RLIMIT_NOFILE, &now) < 0) {
    return Status::Internal("reading the open files limit: " + std::string(std::strerror(errno)));
  }
  rlimit want = now;
  want.rlim_cur = now.rlim_max;
  if (want.rlim_max != RLIM_INFINITY && static_cast<int64_t>(want.rlim_max) < needed) {
    // Root may raise the hard limit too, up to the kernel's fs.nr_open.
    int64_t nr_open = 0;
    std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
    if (nr_open > static_cast<int64_t>(want.rlim_max)) {
      rlimit raised{static_cast<rlim_t>(std::min(needed, nr_open)),
                    static_cast<rlim_t>(std::min(needed, nr_open))};
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) want = raised;
    }
  }
  if (want.rlim_cur != now.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) < 0) want = now;
  const int64_t soft = want.rlim_cur == RLIM_INFINITY ? INT64_MAX : int64_t(want.rlim_cur);
  if (soft < needed) {
    return Status::Exhausted(
        "the daemon may open only " + std::to_string(soft) + " files, and concurrency_limit " +
        "instances need about " + std::to_string(needed) +
        " (each holds a pidfd, two pipes and its Runtime API sockets): raise the hard limit "
        "(ulimit -Hn, systemd LimitNOFILE=) or lower concurrency_limit; starts beyond it fail "
        "with 'too many open files'");
  }
  return soft;
}

}  // namespace tamaya::sandbox
