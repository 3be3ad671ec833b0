// The daemon's side of runtimes/node/generic.js (see node_pool.h for the
// design and what the pool does not serve).
//
// Why a child for the mount: a bind mount can only be attached inside the
// mount namespace of the caller, and a multi-threaded daemon cannot setns()
// into another mount namespace. open_tree(OPEN_TREE_CLONE) makes a detached
// copy of the code directory in the daemon's namespace (made read-only with
// mount_setattr), and a child made with clone(CLONE_VM | CLONE_VFORK), which
// shares no fs struct with us, joins the instance's namespace and moves the
// copy onto /var/task. The child makes raw system calls only, like the
// launcher's.
#include "sandbox/node_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "common/fd.h"
#include "common/log.h"
#include "common/thread_step.h"
#include "sandbox/cgroup.h"

namespace tamaya::sandbox {

namespace {

constexpr size_t kMaxLineBytes = 4096;
constexpr size_t kChildStackBytes = 64 << 10;
constexpr size_t kKernelSigsetBytes = 8;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string errno_text(int err) { return std::strerror(err); }

// One line (without its newline) from a member's control socket.
Result<std::string> read_line(int fd, int64_t deadline_ms) {
  std::string line;
  while (true) {
    const int64_t left = deadline_ms - now_ms();
    if (left <= 0) return Status::Unavailable("no answer in time");
    pollfd pfd{fd, POLLIN, 0};
    int rc = poll(&pfd, 1, int(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Unavailable("it exited");
    if (c == '\n') return line;
    if (line.size() >= kMaxLineBytes) return Status::Unavailable("its answer is too long");
    line += c;
  }
}

// Whatever the member wrote to stdout/stderr (non-blocking pipes), for an error message.
std::string output_of(const Process& p) {
  std::string out;
  char buf[2048];
  for (int fd : {p.stdout_fd, p.stderr_fd}) {
    if (fd < 0) continue;
    ssize_t n;
    while (out.size() < 4096 && (n = read(fd, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  }
  return out.empty() ? "" : " (output: " + out.substr(0, 4096) + ")";
}

bool exited(const Process& p) {
  pollfd pfd{p.pidfd, POLLIN, 0};
  return p.pidfd < 0 || poll(&pfd, 1, 0) == 1;
}

// What a spec must share with the members for one of them to become its
// instance: everything fixed before execve that specialisation cannot change.
std::string key_of(const LaunchSpec& spec) {
  std::string key;
  for (const auto& part : spec.generic_argv) key += part + '\0';
  const Isolation& iso = spec.isolation;
  key += spec.cwd + '\0' + iso.runtimes_dir + '\0' + iso.hostname + '\0' +
         std::to_string(iso.pids_max) + '\0';
  for (const auto& [resource, value] : rlimit_values(spec.limits)) {
    key += std::to_string(resource) + '=' + std::to_string(value) + '\0';
  }
  for (const auto& path : iso.readonly_paths) key += path + '\0';
  for (const auto& entry : spec.env) {
    for (const char* fixed : {"PATH=", "LANG=", "TZ=", "NODE_PATH="}) {
      if (entry.rfind(fixed, 0) == 0) key += entry + '\0';
    }
  }
  return key;
}

// Runs in the mount child (CLONE_VM, own stack): raw system calls only.
struct MountArgs {
  int ns_fd;
  int tree_fd;
  const char* tmp_data;  // null: leave /tmp
  int failed_step;
  int failed_errno;
};

int mount_child(void* opaque) {
  auto* a = static_cast<MountArgs*>(opaque);
  if (setns(a->ns_fd, CLONE_NEWNS) < 0) {
    a->failed_errno = errno;
    a->failed_step = 1;
    _exit(1);
  }
  if (syscall(SYS_move_mount, a->tree_fd, "", AT_FDCWD, kTaskRoot, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    a->failed_errno = errno;
    a->failed_step = 2;
    _exit(1);
  }
  if (a->tmp_data != nullptr &&
      mount(nullptr, "/tmp", nullptr, MS_REMOUNT | MS_NOSUID | MS_NODEV, a->tmp_data) < 0) {
    a->failed_errno = errno;
    a->failed_step = 3;
    _exit(1);
  }
  _exit(0);
}

// "Uid:\t1\t1\t1\t1" of /proc/<pid>/status: every field equal to `id`.
bool ids_are(const std::string& status, const std::string& key, uint32_t id) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream fields(line.substr(key.size()));
    int count = 0;
    uint64_t value;
    while (fields >> value) {
      if (value != id) return false;
      ++count;
    }
    return count == 4;
  }
  return false;
}

}  // namespace

NodePoolLauncher::NodePoolLauncher(Launcher& fallback, ProcessLauncher& direct,
                                   NodePoolOptions options)
    : fallback_(fallback), direct_(direct), options_(options) {
  if (options_.size > 0 && !direct_.options().root_dir.empty()) {
    std::error_code ec;
    empty_dir_ =
        (std::filesystem::path(direct_.options().root_dir).parent_path() / "empty-task").string();
    std::filesystem::create_directories(empty_dir_, ec);
    chmod(empty_dir_.c_str(), 0755);
  }
  // Members are launched from this thread: their death signal follows it,
  // and it lives as long as the pool.
  refill_ = std::thread([this] { refill_loop(); });
}

NodePoolLauncher::~NodePoolLauncher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (refill_.joinable()) refill_.join();
  for (Member& m : ready_) discard(m);
  ready_.clear();
}

bool NodePoolLauncher::eligible(const LaunchSpec& spec) const {
  if (options_.size <= 0 || empty_dir_.empty() || spec.generic_argv.empty()) return false;
  const Isolation& iso = spec.isolation;
  if (!iso.enabled || !direct_.options().isolate || !direct_.layers().filesystem) return false;
  if (iso.network != Network::kHost || iso.zygote || spec.stdin_fd >= 0) return false;
  for (const auto& entry : spec.env) {
    if ((entry.rfind("NODE_", 0) == 0 && entry.rfind("NODE_PATH=", 0) != 0) ||
        entry.rfind("UV_", 0) == 0) {
      return false;
    }
  }
  return true;
}

Result<Process> NodePoolLauncher::launch(const LaunchSpec& spec) {
  if (!eligible(spec)) return fallback_.launch(spec);
  const std::string key = key_of(spec);
  std::optional<Member> member;
  std::vector<Member> dead;
  {
    std::lock_guard lock(mu_);
    if (!template_ || key != key_) {
      // The first Node start (or the fixed parts changed): this spec becomes
      // the members' template; this start is direct.
      dead.assign(std::make_move_iterator(ready_.begin()), std::make_move_iterator(ready_.end()));
      ready_.clear();
      LaunchSpec t;
      t.argv = spec.generic_argv;
      t.cwd = spec.cwd;
      t.limits = spec.limits;
      t.isolation = spec.isolation;
      t.isolation.code_dir = empty_dir_;
      t.isolation.uid = t.isolation.gid = 0;  // root until specialised
      t.isolation.network = Network::kHost;
      t.isolation.netns_fd = -1;
      for (const auto& entry : spec.env) {
        for (const char* fixed : {"PATH=", "LANG=", "TZ=", "NODE_PATH="}) {
          if (entry.rfind(fixed, 0) == 0) t.env.push_back(entry);
        }
      }
      template_ = std::move(t);
      key_ = key;
      failures_in_row_ = 0;
      retry_at_ms_ = 0;
    } else {
      while (!ready_.empty() && !member) {
        Member m = std::move(ready_.front());
        ready_.pop_front();
        if (exited(m.process)) {
          dead.push_back(std::move(m));
        } else {
          member = std::move(m);
        }
      }
      if (!member) ++counters_.empty;
    }
  }
  cv_.notify_all();
  for (Member& m : dead) discard(m);
  if (!member) return fallback_.launch(spec);

  auto process = specialise(*member, spec);
  if (process.ok()) {
    std::lock_guard lock(mu_);
    ++counters_.specialised;
    return process;
  }
  spdlog::warn("node pool: instance pid={} could not take function {}, starting it directly: {}",
               member->process.pid, spec.isolation.name, process.status().message());
  discard(*member);
  {
    std::lock_guard lock(mu_);
    ++counters_.failures;
  }
  return fallback_.launch(spec);
}

Result<NodePoolLauncher::Member> NodePoolLauncher::start_member(const LaunchSpec& tmpl,
                                                                uint64_t seq) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
    return Status::Exhausted("node pool: socketpair: " + errno_text(errno));
  }
  Fd ours(pair[0]), theirs(pair[1]);
  LaunchSpec spec = tmpl;
  spec.stdin_fd = theirs.get();
  spec.isolation.name = "nodepool-" + std::to_string(seq);
  TAMAYA_ASSIGN_OR_RETURN(Process process, direct_.launch(spec));
  theirs.reset();
  Member member{process, ours.release(), spec.isolation.tmp_bytes};
  auto line = read_line(member.control, now_ms() + options_.start_timeout_ms);
  if (!line.ok() || *line != "ready") {
    std::string why = line.ok() ? "it said '" + *line + "'" : line.status().message();
    why += output_of(member.process);
    discard(member);
    return Status::Unavailable("a generic Node.js instance did not become ready: " + why);
  }
  return member;
}

Status NodePoolLauncher::mount_code(const Member& member, const std::string& code_dir,
                                    int64_t tmp_bytes) {
  Fd ns(open(("/proc/" + std::to_string(member.process.pid) + "/ns/mnt").c_str(),
             O_RDONLY | O_CLOEXEC));
  if (ns.get() < 0) return Status::Unavailable("opening its mount namespace: " + errno_text(errno));
  Fd tree(int(syscall(SYS_open_tree, AT_FDCWD, code_dir.c_str(),
                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)));
  if (tree.get() < 0) {
    return Status::Internal("open_tree of " + code_dir + ": " + errno_text(errno));
  }
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  // Nothing mounted later on either side may show up on the other.
  attr.propagation = MS_PRIVATE;
  if (syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) <
      0) {
    return Status::Internal("making the code read-only: " + errno_text(errno));
  }
  std::string tmp_data;
  MountArgs args{ns.get(), tree.get(), nullptr, 0, 0};
  if (tmp_bytes != member.tmp_bytes) {
    tmp_data = "size=" + std::to_string(tmp_bytes);
    args.tmp_data = tmp_data.c_str();
  }

  const size_t guard = size_t(sysconf(_SC_PAGESIZE));
  const size_t mapped = kChildStackBytes + guard;
  void* stack =
      mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return Status::Exhausted("no memory for the mount child's stack");
  mprotect(stack, guard, PROT_NONE);
  // No handler of the daemon may run in a child that shares our memory.
  const uint64_t all_signals = ~uint64_t{0};
  uint64_t saved = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all_signals, &saved, kKernelSigsetBytes);
  const pid_t child = clone(mount_child, static_cast<char*>(stack) + mapped,
                            CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  const int clone_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved, nullptr, kKernelSigsetBytes);
  munmap(stack, mapped);
  if (child < 0) return Status::Exhausted("clone of the mount child: " + errno_text(clone_errno));
  int status = 0;
  while (waitpid(child, &status, __WALL) < 0 && errno == EINTR) {
  }
  if (args.failed_step != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    static const char* kSteps[] = {"?", "joining its mount namespace",
                                   "mounting the code at /var/task", "resizing /tmp"};
    return Status::Internal(std::string(kSteps[std::clamp(args.failed_step, 0, 3)]) + ": " +
                            errno_text(args.failed_errno));
  }
  return Status::Ok();
}

Result<Process> NodePoolLauncher::specialise(Member& member, const LaunchSpec& spec) {
  const Isolation& iso = spec.isolation;
  const Layers layers = direct_.layers();
  const pid_t pid = member.process.pid;
  const int64_t deadline = now_ms() + options_.specialise_timeout_ms;
  if (layers.cgroups) {
    TAMAYA_RETURN_IF_ERROR(set_cgroup_limits(direct_.options().host, member.process.cgroups,
                                             {iso.memory_bytes, iso.pids_max, iso.cpu_shares}));
  }
  TAMAYA_RETURN_IF_ERROR(mount_code(member, iso.code_dir, iso.tmp_bytes));

  const uint32_t uid = layers.uids ? iso.uid : 0;
  const uint32_t gid = layers.uids ? (iso.gid != 0 ? iso.gid : iso.uid) : 0;
  nlohmann::json env = nlohmann::json::object();
  for (const auto& entry : spec.env) {
    const size_t eq = entry.find('=');
    env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  const std::string line =
      nlohmann::json{{"uid", uid}, {"gid", gid}, {"env", env}, {"cwd", spec.cwd}}.dump() + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = send(member.control, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Unavailable("sending its function: " + errno_text(errno));
    sent += size_t(n);
  }
  auto answer = read_line(member.control, deadline);
  if (!answer.ok())
    return Status::Unavailable(answer.status().message() + output_of(member.process));
  if (*answer != "ok") return Status::Unavailable("it answered '" + *answer + "'");
  if (uid != 0) {
    // Trust, but verify: the instance is handed over only without root.
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::stringstream text;
    text << in.rdbuf();
    if (!ids_are(text.str(), "Uid:", uid) || !ids_are(text.str(), "Gid:", gid)) {
      return Status::Internal("it still has other ids than uid/gid " + std::to_string(uid));
    }
  }
  ::close(member.control);
  member.control = -1;
  return member.process;
}

void NodePoolLauncher::discard(Member& m) {
  if (m.control >= 0) ::close(m.control);
  m.control = -1;
  terminate(m.process);
}

void NodePoolLauncher::refill_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Members that died while waiting go (reaped here, not left as zombies).
    std::vector<Member> dead;
    for (auto it = ready_.begin(); it != ready_.end();) {
      if (exited(it->process)) {
        dead.push_back(std::move(*it));
        it = ready_.erase(it);
      } else {
        ++it;
      }
    }
    if (!dead.empty()) {
      lock.unlock();
      for (Member& m : dead) discard(m);
      lock.lock();
      continue;
    }
    const int64_t now = now_ms();
    if (!template_ || int(ready_.size()) >= options_.size || now < retry_at_ms_) {
      const int64_t wait = now < retry_at_ms_ ? retry_at_ms_ - now : 5'000;
      cv_.wait_for(lock, std::chrono::milliseconds(wait));
      continue;
    }
    LaunchSpec spec = *template_;
    const std::string key = key_;
    const uint64_t seq = ++seq_;
    lock.unlock();
    auto member =
        step_result("starting a Node.js pool member", [&] { return start_member(spec, seq); });
    lock.lock();
    if (member.ok() && key == key_ && !stopping_) {
      ready_.push_back(std::move(*member));
      ++counters_.started;
      failures_in_row_ = 0;
      continue;
    }
    if (member.ok()) {
      lock.unlock();
      discard(*member);
      lock.lock();
      continue;
    }
    ++counters_.failures;
    ++failures_in_row_;
    const int64_t backoff =
        std::min<int64_t>(options_.retry_max_ms, int64_t(100) << std::min(failures_in_row_, 10));
    retry_at_ms_ = now_ms() + backoff;
    spdlog::warn("node pool: {}; next try in {} ms", member.status().message(), backoff);
  }
}

NodePoolLauncher::Counters NodePoolLauncher::counters() const {
  std::lock_guard lock(mu_);
  Counters out = counters_;
  out.ready = int(ready_.size());
  return out;
}

std::vector<pid_t> NodePoolLauncher::ready_pids() const {
  std::lock_guard lock(mu_);
  std::vector<pid_t> out;
  for (const Member& m : ready_) out.push_back(m.process.pid);
  return out;
}

}  // namespace tamaya::sandbox
