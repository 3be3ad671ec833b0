// The daemon's side of runtimes/python/zygote.py: one zygote per function,
// forking instances that specialise themselves (see zygote.h for the walls).
//
// Why the handshake: the zygote lives in its own pid namespace, so the pid it
// reports is not one the daemon can use. The child says "hello" on a
// SOCK_SEQPACKET pair whose daemon end has SO_PASSCRED, and the kernel hands
// the daemon the child's pid as the daemon sees it; the daemon opens a pidfd
// for it and moves it into the instance's cgroups before it answers "go", so
// nothing the function runs is ever outside them. The child's "ok" comes
// after the seccomp filter is on: only then is the instance handed over.
#include "sandbox/zygote.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>

#include "common/fd.h"
#include "common/log.h"
#include "sandbox/cgroup.h"
#include "sandbox/child_socket.h"

namespace tamaya::sandbox {

namespace {

constexpr size_t kMaxMessageBytes = 64 << 10;
constexpr size_t kMaxOutputBytes = 8 << 10;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string errno_text() { return std::strerror(errno); }

// Waits until fd is readable or the deadline passes.
bool wait_readable(int fd, int64_t deadline_ms) {
  while (true) {
    const int64_t left = deadline_ms - now_ms();
    if (left <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    int rc = poll(&pfd, 1, int(left));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

Status make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    return Status::Exhausted("cannot create a pipe for instance output: " + errno_text());
  }
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  if (fcntl(read_end.get(), F_SETFL, O_NONBLOCK) < 0) {
    return Status::Internal("setting O_NONBLOCK on a pipe: " + errno_text());
  }
  return Status::Ok();
}

std::string hex(const SeccompProgram& program) {
  static const char* kDigits = "0123456789abcdef";
  const auto* bytes = reinterpret_cast<const unsigned char*>(program.code.data());
  const size_t n = program.code.size() * sizeof(sock_filter);
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

Status send_to_zygote(int sock, const std::string& body, const std::vector<int>& fds) {
  if (send_with_fds(sock, body, fds)) return Status::Ok();
  return Status::Unavailable("writing to the zygote: " + errno_text());
}

// The child's word once it has tried to wall itself in: "ok", or why not
// (an error text, or nothing when it died first). Does not block.
Status read_walled_word(int sock) {
  char buf[4096];
  ssize_t n;
  do {
    n = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return Status::Unavailable("the zygote child is still walling itself in");
  }
  if (n != 2 || std::memcmp(buf, "ok", 2) != 0) {
    std::string why = n > 0 ? std::string(buf, size_t(n)) : "it exited";
    return Status::Precondition("zygote child could not specialise: " + why);
  }
  return Status::Ok();
}

}  // namespace

Status read_walled_in(int walled_fd, ExitSource* source) {
  Status s = read_walled_word(walled_fd);
  if (!s.ok() && s.code() != Code::kUnavailable && source != nullptr) {
    source->child_not_walled_in();
  }
  return s;
}

// One running zygote. Also the ExitSource of the instances it forked: it is
// their parent, so it alone learns how they ended.
//
// Offers: with `prefork` = N, the zygote keeps N children forked ahead of
// need and hands us a socket to each ({"offer": pid} + SCM_RIGHTS): the
// first at its start, one more for each {"prefork": true} we send, as soon as
// fewer than N are here or coming. Such a child has its pid/mount/ipc/uts
// namespaces, /proc and /tmp and says "hello" (the socket has SO_PASSCRED, so
// we learn its pid) when it is ready. A cold start that finds a ready one
// talks to that child alone: cgroups, then the request (its "go"), then
// "ok" — one round trip, without the zygote on the path.
class Zygote final : public ExitSource, public std::enable_shared_from_this<Zygote> {
 public:
  ~Zygote() override { stop(); }

  static Result<std::shared_ptr<Zygote>> start(ProcessLauncher& direct, const LaunchSpec& spec,
                                               int timeout_ms, int prefork,
                                               int64_t burst_quiet_ms) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
      return Status::Exhausted("zygote: socketpair: " + errno_text());
    }
    Fd ours(pair[0]), theirs(pair[1]);
    LaunchSpec z = spec;
    z.argv = spec.zygote_argv;
    // The size of the offered children's /tmp; a spawn asking for another size resizes it.
    if (prefork > 0)
      z.argv.push_back("--prefork-tmp-bytes=" + std::to_string(spec.isolation.tmp_bytes));
    z.zygote_argv.clear();
    z.stdin_fd = theirs.get();
    z.isolation.zygote = true;
    z.isolation.uid = z.isolation.gid = 0;
    z.isolation.name = "z" + spec.isolation.name;
    // No memory limit of the function's size on the zygote's cgroup: a child
    // is in it until its "hello", and what the child writes there (its
    // copy-on-write pages, the hot pages an offered child copies) stays
    // charged to it after the child moves to its instance's cgroup (cgroup
    // v2 never moves charges, v1 only when asked). With the limit, the
    // 63rd live instance of a 128 MB function got the zygote's cgroup
    // OOM-killed, and every instance with it (they live in its pid
    // namespace). The zygote runs only the runtime's own code, and what its
    // cgroup holds grows with the live instances, which concurrency_limit
    // bounds.
    z.isolation.memory_bytes = 0;
    // The zygote needs no function settings: each child gets its own environment.
    z.env.clear();
    for (const auto& entry : spec.env) {
      if (entry.rfind("PATH=", 0) == 0 || entry.rfind("LANG=", 0) == 0 ||
          entry.rfind("TZ=", 0) == 0) {
        z.env.push_back(entry);
      }
    }
    // The seccomp filter, decoded once by the zygote (it takes the variable out
    // of its environment): a child only hands it to the kernel, and each spawn
    // request says "seccomp": true instead of carrying ~1.5 KB of hex.
    if (direct.layers().seccomp) z.env.push_back("TAMAYA_SECCOMP_BPF=" + hex(direct.seccomp()));
    // Network "none" children join their instance's namespace; the zygote
    // itself needs none of its own (it opens no socket but the daemon's pair).
    z.isolation.network = Network::kHost;
    z.isolation.netns_fd = -1;
    TAMAYA_ASSIGN_OR_RETURN(Process proc, direct.launch(z));
    theirs.reset();
    auto zygote = std::shared_ptr<Zygote>(new Zygote());
    zygote->proc_ = proc;
    zygote->ctl_ = ours.release();
    zygote->last_used_ms_ = now_ms();
    zygote->prefork_ = zygote->base_prefork_ = prefork;
    zygote->burst_quiet_ms_ = burst_quiet_ms;
    zygote->offers_asked_ = prefork > 0 ? 1 : 0;  // a zygote offers its first child unasked
    std::lock_guard lock(zygote->mu_);
    auto ready = zygote->next_message(now_ms() + timeout_ms);
    if (!ready.ok() || !ready->value("ready", false)) {
      std::string why = ready.ok() ? ready->dump() : ready.status().message();
      zygote->stop_locked();
      return Status::Unavailable("zygote did not become ready: " + why + zygote->output_note());
    }
    zygote->ask_prefork();
    return zygote;
  }

  // Hands the instance to the offered child when there is one, else forks
  // one on demand; either way returns once it is walled in.
  // `*offered_child` says which.
  Result<Process> spawn(const LaunchSpec& spec, const ProcessLauncher& direct, int timeout_ms,
                        bool* offered_child) {
    std::lock_guard lock(mu_);
    *offered_child = false;
    if (broken_) return Status::Unavailable("zygote is gone");
    last_used_ms_ = now_ms();
    const int64_t deadline = now_ms() + timeout_ms;
    drain_pending();
    if (broken_) return Status::Unavailable("zygote is gone" + output_note());
    // Only a child that is ready (its hello is here). Waiting for one still
    // preparing was measured slower than a fork on demand: back-to-back cold
    // starts are CPU-bound, and a fork on demand (no rehearsal) costs less
    // CPU, while the one preparing finishes for a later start.
    for (auto it = offers_.begin(); it != offers_.end();) {
      if (!readable_now(it->fd.get())) {
        ++it;
        continue;
      }
      Fd chan(std::move(it->fd));
      const pid_t ns_pid = it->ns_pid;
      offers_.erase(it);
      auto offered = spawn_offered(std::move(chan), ns_pid, spec, direct, deadline);
      if (offered.ok()) {
        *offered_child = true;
        end_quiet_burst();
        ask_prefork();
        return offered;
      }
      if (broken_) return offered.status();
      // A child that could not be walled in is an error like a forked one's;
      // one that is gone (it never said hello) is replaced by the next ready
      // one or a fork.
      if (offered.status().code() != Code::kUnavailable) return offered.status();
      spdlog::warn("offered zygote child unusable: {}", offered.status().message());
      it = offers_.begin();
    }
    // None ready: the starts come faster than children are prepared. Keep
    // one more ready for the rest of this burst (see burst_quiet_ms).
    if (base_prefork_ > 0) {
      prefork_ = std::min(prefork_ + 1, base_prefork_ + kZygoteBurstPrefork);
      last_unready_ms_ = now_ms();
    }
    auto forked = spawn_forked(spec, direct, deadline);
    if (forked.ok()) ask_prefork();
    return forked;
  }

  // Called on the event loop, so no mu_: a launch thread may hold it for a
  // spawn's whole wait.
  void child_not_walled_in() override { not_walled_in_ = true; }
  // Whether a child handed over at its "go" failed to wall itself in since
  // the last call.
  bool take_not_walled_in() { return not_walled_in_.exchange(false); }

  Result<int> exit_status(pid_t pid) override {
    std::lock_guard lock(mu_);
    // The zygote reports an exit right after its SIGCHLD; a dead zygote took
    // its children with it (they were in its pid namespace): SIGKILL.
    drain_pending();
    // Not reported yet: the zygote may be busy forking the next child, and
    // this runs on the daemon's event loop. Our pidfd said the child ended,
    // so it is a zombie until the zygote reaps it, and the kernel shows its
    // wait status in /proc (the report that comes later is ignored).
    if (exits_.count(pid) == 0 && !broken_) {
      if (int status = zombie_status(pid); status >= 0) return ended(pid, status);
    }
    const int64_t deadline = now_ms() + 1'000;
    while (true) {
      if (auto it = exits_.find(pid); it != exits_.end()) {
        const int status = it->second;
        exits_.erase(it);
        return ended(pid, status);
      }
      if (broken_) return ended(pid, SIGKILL);
      auto msg = next_message(deadline, /*notices_too=*/true);
      if (!msg.ok() && now_ms() >= deadline && !broken_) {
        return ended(pid, SIGKILL);  // never answered: say killed rather than wait forever
      }
    }
  }

  // How many children forked ahead of need are ready to be handed an instance.
  int offers_ready() {
    std::lock_guard lock(mu_);
    if (broken_) return 0;
    drain_pending();
    int n = 0;
    for (const Offer& offer : offers_) n += readable_now(offer.fd.get()) ? 1 : 0;
    return n;
  }

  bool usable() {
    std::lock_guard lock(mu_);
    if (broken_) {
      stop_locked();  // reaps it, if it only just went
      return false;
    }
    pollfd pfd{proc_.pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) == 1) {
      stop_locked();
      return false;
    }
    return true;
  }
  bool idle_since(int64_t ms) {
    std::lock_guard lock(mu_);
    return live_ <= 0 && last_used_ms_ < ms;
  }
  pid_t pid() const { return proc_.pid; }
  void stop() {
    std::lock_guard lock(mu_);
    stop_locked();
  }

 private:
  Zygote() = default;

  // What a spawn needs before the child is told anything: the instance's
  // cgroups (with their cgroup.procs open) and its output pipes.
  struct Prepared {
    InstanceCgroups cgroups;
    std::vector<Fd> procs;
    Fd out_r, out_w, err_r, err_w;
  };

  Result<Prepared> prepare(const LaunchSpec& spec, const ProcessLauncher& direct) {
    const Isolation& iso = spec.isolation;
    Prepared p;
    if (direct.layers().cgroups &&
        (iso.memory_bytes > 0 || iso.pids_max > 0 || iso.cpu_shares > 0)) {
      TAMAYA_ASSIGN_OR_RETURN(
          p.cgroups,
          direct.make_cgroups(iso.name, {iso.memory_bytes, iso.pids_max, iso.cpu_shares}));
      auto fds = open_procs_files(p.cgroups);
      if (!fds.ok()) {
        remove_cgroups(p.cgroups);
        return fds.status();
      }
      for (int fd : *fds) p.procs.emplace_back(fd);
    }
    Status s = make_pipe(p.out_r, p.out_w);
    if (s.ok()) s = make_pipe(p.err_r, p.err_w);
    if (!s.ok()) {
      remove_cgroups(p.cgroups);
      return s;
    }
    return p;
  }

  // The spawn request: the instance's environment and what walls it in.
  std::string request_for(const LaunchSpec& spec, const ProcessLauncher& direct) const {
    const Isolation& iso = spec.isolation;
    const Layers layers = direct.layers();
    nlohmann::json env = nlohmann::json::object();
    for (const auto& entry : spec.env) {
      const size_t eq = entry.find('=');
      env[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
    nlohmann::json rlimits = nlohmann::json::array();
    for (const auto& [resource, value] : rlimit_values(spec.limits)) {
      // Python's resource module spells "unlimited" as -1.
      rlimits.push_back({resource, value == RLIM_INFINITY ? int64_t(-1) : int64_t(value)});
    }
    nlohmann::json special = {
        {"tmp_bytes", iso.tmp_bytes},
        {"rlimits", rlimits},
        {"uid", layers.uids ? iso.uid : 0},
        {"gid", layers.uids ? (iso.gid != 0 ? iso.gid : iso.uid) : 0},
        {"seccomp", layers.seccomp},
        {"netns", uses_netns(spec)},
    };
    return nlohmann::json{{"env", env}, {"specialise", special}}.dump();
  }
  static bool uses_netns(const LaunchSpec& spec) {
    return spec.isolation.network == Network::kNone && spec.isolation.netns_fd >= 0;
  }

  static bool readable_now(int fd) {
    pollfd pfd{fd, POLLIN, 0};
    return poll(&pfd, 1, 0) == 1;
  }

  // Reads a child's "hello": its pid as we see it (the kernel's credentials).
  static Result<pid_t> read_hello(int sock, int64_t deadline) {
    if (!wait_readable(sock, deadline)) {
      return Status::Unavailable("zygote child did not say hello in time");
    }
    char buf[4096];
    pid_t host_pid = -1;
    ssize_t n = recv_with_peer_pid(sock, buf, sizeof buf, 0, host_pid);
    if (n > 0 && std::string_view(buf, size_t(n)).substr(0, 6) == "error:") {
      return Status::Unavailable("zygote child could not prepare: " + std::string(buf, size_t(n)));
    }
    if (n != 5 || std::memcmp(buf, "hello", 5) != 0 || host_pid <= 0) {
      std::string got = n < 0    ? "recvmsg: " + errno_text()
                        : n == 0 ? "nothing: the child closed its end"
                                 : "'" + std::string(buf, size_t(std::min<ssize_t>(n, 64))) + "'";
      return Status::Unavailable(fmt::format(
          "zygote child's handshake was not understood: got {}, pid {}", got, host_pid));
    }
    return host_pid;
  }

  // Waits for the child's "ok" (it is walled in) on `sock`.
  static Status read_ok(int sock, int64_t deadline) {
    if (!wait_readable(sock, deadline)) {
      return Status::Unavailable("zygote child did not specialise in time");
    }
    return read_walled_word(sock);
  }

  // `walled`: the child's end of the hand-over when it is handed over at its
  // "go" (it says there whether it walled itself in); else it has said so.
  Process handed_over(Prepared& p, pid_t host_pid, Fd& pidfd, Fd walled = Fd()) {
    ++live_;
    if (auto stat = proc_stat(host_pid); stat) started_[host_pid] = stat->start_ticks;
    Process out;
    out.pid = host_pid;
    out.pidfd = pidfd.release();
    out.stdout_fd = p.out_r.release();
    out.stderr_fd = p.err_r.release();
    out.walled_fd = walled.release();
    out.cgroups = std::move(p.cgroups);
    out.exit_source = shared_from_this();
    return out;
  }

  Result<Process> spawn_offered(Fd chan, pid_t ns_pid, const LaunchSpec& spec,
                                const ProcessLauncher& direct, int64_t deadline) {
    TAMAYA_ASSIGN_OR_RETURN(pid_t host_pid, read_hello(chan.get(), deadline));
    Fd pidfd(int(syscall(SYS_pidfd_open, host_pid, 0)));
    // The child keeps its end until it is an instance: no hang-up means the
    // pidfd is of that child, not of a process that got its pid since.
    pollfd hup{chan.get(), POLLIN, 0};
    if (pidfd.get() < 0 || poll(&hup, 1, 0) != 0) {
      return Status::Unavailable("offered zygote child is gone");
    }
    TAMAYA_ASSIGN_OR_RETURN(Prepared p, prepare(spec, direct));
    auto fail = [&](Status status) -> Status {
      syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      host_of_ns_.erase(ns_pid);
      remove_cgroups(p.cgroups);
      // Not kUnavailable: the caller must not fork another for this spec.
      return status.code() == Code::kUnavailable ? Status::Internal(status.message())
                                                 : std::move(status);
    };
    const std::string pid_text = std::to_string(host_pid);
    for (const Fd& fd : p.procs) {
      if (write(fd.get(), pid_text.data(), pid_text.size()) != ssize_t(pid_text.size())) {
        return fail(Status::Internal("moving zygote child into its cgroup: " + errno_text()));
      }
    }
    p.procs.clear();
    host_of_ns_[ns_pid] = host_pid;
    std::vector<int> fds{p.out_w.get(), p.err_w.get()};
    if (uses_netns(spec)) fds.push_back(spec.isolation.netns_fd);
    if (Status s = send_to_zygote(chan.get(), request_for(spec, direct), fds); !s.ok()) {
      return fail(s);
    }
    p.out_w.reset();
    p.err_w.reset();
    if (spec.hand_over_at_go) return handed_over(p, host_pid, pidfd, std::move(chan));
    if (Status s = read_ok(chan.get(), deadline); !s.ok()) return fail(s);
    return handed_over(p, host_pid, pidfd);
  }

  Result<Process> spawn_forked(const LaunchSpec& spec, const ProcessLauncher& direct,
                               int64_t deadline) {
    TAMAYA_ASSIGN_OR_RETURN(Prepared p, prepare(spec, direct));
    // From here on every failure kills what was forked and frees the cgroups.
    Fd pidfd;
    auto fail = [&](Status status, bool zygote_broken) -> Status {
      if (pidfd.get() >= 0) syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      remove_cgroups(p.cgroups);
      if (zygote_broken) stop_locked();
      return status;
    };
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
      return fail(Status::Exhausted("zygote: socketpair: " + errno_text()), false);
    }
    Fd hs(pair[0]), hs_child(pair[1]);
    const int one = 1;
    setsockopt(hs.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one);

    std::vector<int> fds{p.out_w.get(), p.err_w.get(), hs_child.get()};
    if (uses_netns(spec)) fds.push_back(spec.isolation.netns_fd);
    if (Status s = send_to_zygote(ctl_, request_for(spec, direct), fds); !s.ok()) {
      return fail(s, true);
    }
    p.out_w.reset();
    p.err_w.reset();
    hs_child.reset();

    auto reply = next_message(deadline);
    if (!reply.ok()) return fail(reply.status(), true);
    if (!reply->contains("pid")) {
      return fail(Status::Unavailable("zygote refused the spawn: " + reply->dump()), false);
    }
    const pid_t ns_pid = (*reply)["pid"].get<pid_t>();

    auto hello = read_hello(hs.get(), deadline);
    // A child that died before its hello (killed, out of memory) is that
    // child's failure; only a zygote that is gone too is broken, and
    // stopping it would take every live instance with it.
    if (!hello.ok()) return fail(hello.status(), !alive());
    const pid_t host_pid = *hello;
    pidfd.reset(int(syscall(SYS_pidfd_open, host_pid, 0)));
    if (pidfd.get() < 0) {
      return fail(Status::Unavailable("pidfd_open of zygote child " + std::to_string(host_pid) +
                                      ": " + errno_text()),
                  false);
    }
    const std::string pid_text = std::to_string(host_pid);
    for (const Fd& fd : p.procs) {
      if (write(fd.get(), pid_text.data(), pid_text.size()) != ssize_t(pid_text.size())) {
        return fail(Status::Internal("moving zygote child into its cgroup: " + errno_text()),
                    false);
      }
    }
    p.procs.clear();
    host_of_ns_[ns_pid] = host_pid;
    if (send(hs.get(), "go", 2, MSG_NOSIGNAL) != 2) {
      host_of_ns_.erase(ns_pid);
      return fail(Status::Unavailable("zygote child vanished before specialising"), false);
    }
    if (spec.hand_over_at_go) return handed_over(p, host_pid, pidfd, std::move(hs));
    if (Status s = read_ok(hs.get(), deadline); !s.ok()) {
      host_of_ns_.erase(ns_pid);
      return fail(s, s.code() == Code::kUnavailable);
    }
    return handed_over(p, host_pid, pidfd);
  }

  // The fields of /proc/<pid>/stat that tell an ended child's wait status.
  struct ProcStat {
    char state = '?';
    uint64_t start_ticks = 0;  // field 22: tells this process from a later one with its pid
    int exit_code = -1;        // field 52: the wait status, as waitpid gives it
  };
  static std::optional<ProcStat> proc_stat(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return std::nullopt;
    char buf[1024];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) return std::nullopt;
    buf[n] = '\0';
    // The name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    const char* p = std::strrchr(buf, ')');
    if (p == nullptr) return std::nullopt;
    ProcStat out;
    int field = 2;
    for (const char* f = p + 1; *f != '\0';) {
      while (*f == ' ') ++f;
      if (*f == '\0' || *f == '\n') break;
      ++field;
      if (field == 3) out.state = *f;
      if (field == 22) out.start_ticks = std::strtoull(f, nullptr, 10);
      if (field == 52) out.exit_code = int(std::strtol(f, nullptr, 10));
      while (*f != ' ' && *f != '\0') ++f;
    }
    return out;
  }

  // The wait status of `pid`, a child of ours that ended but is not reaped
  // yet; -1 when that cannot be told: reaped already, not the same process
  // (its start time differs), or 0, which is also what the kernel shows a
  // reader without CAP_SYS_PTRACE (a clean exit then waits for the report).
  int zombie_status(pid_t pid) const {
    auto started = started_.find(pid);
    if (started == started_.end()) return -1;
    auto stat = proc_stat(pid);
    if (!stat || stat->state != 'Z' || stat->start_ticks != started->second) return -1;
    return stat->exit_code > 0 ? stat->exit_code : -1;
  }

  // A burst's extra children go once starts have found one ready for
  // burst_quiet_ms: closing our end tells a waiting child it is not wanted
  // (it exits); the newest go first.
  void end_quiet_burst() {
    if (prefork_ <= base_prefork_ || now_ms() - last_unready_ms_ < burst_quiet_ms_) return;
    prefork_ = base_prefork_;
    while (!offers_.empty() && int(offers_.size()) + offers_asked_ > prefork_) {
      offers_.pop_back();
    }
  }

  // Asks the zygote for offered children until `prefork_` are here or coming.
  void ask_prefork() {
    static const std::string kPrefork = R"({"prefork":true})";
    while (!broken_ && int(offers_.size()) + offers_asked_ < prefork_) {
      if (send(ctl_, kPrefork.data(), kPrefork.size(), MSG_NOSIGNAL) != ssize_t(kPrefork.size())) {
        return;
      }
      ++offers_asked_;
    }
  }

  int ended(pid_t host_pid, int status) {
    started_.erase(host_pid);
    forget(host_pid);
    --live_;
    return status;
  }

  void forget(pid_t host_pid) {
    for (auto it = host_of_ns_.begin(); it != host_of_ns_.end(); ++it) {
      if (it->second == host_pid) {
        host_of_ns_.erase(it);
        return;
      }
    }
  }

  // Files the messages that arrived unasked (exits, offers) without waiting.
  void drain_pending() {
    while (!broken_) {
      pollfd pfd{ctl_, POLLIN, 0};
      if (poll(&pfd, 1, 0) != 1) return;
      if (!next_message(now_ms() + 1'000, /*notices_too=*/true).ok()) return;
    }
  }

  // The next message that is not a notice (exit reports and offers are
  // filed, and end the wait when `notices_too`).
  Result<nlohmann::json> next_message(int64_t deadline, bool notices_too = false) {
    while (true) {
      drain_output();
      if (broken_) return Status::Unavailable("zygote is gone" + output_note());
      if (!wait_readable(ctl_, deadline)) {
        return Status::Unavailable("zygote did not answer in time" + output_note());
      }
      std::string buf(kMaxMessageBytes, '\0');
      iovec iov{buf.data(), buf.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = recvmsg(ctl_, &msg, MSG_CMSG_CLOEXEC);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        drain_output();
        broken_ = true;
        return Status::Unavailable("zygote is gone" + output_note());
      }
      std::vector<Fd> fds;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
          const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
          }
        }
      }
      buf.resize(size_t(n));
      auto doc = nlohmann::json::parse(buf, nullptr, false);
      if (!doc.is_object()) continue;
      if (doc.contains("exit")) {
        auto it = host_of_ns_.find(doc["exit"].get<pid_t>());
        if (it != host_of_ns_.end()) {
          exits_[it->second] = doc.value("status", 0);
          host_of_ns_.erase(it);
        }
        if (notices_too) return doc;
        continue;
      }
      if (doc.contains("offer") || doc.contains("offer_error")) {
        if (offers_asked_ > 0) --offers_asked_;
        if (doc.contains("offer") && doc["offer"].is_number_integer() && fds.size() == 1) {
          offers_.push_back({std::move(fds[0]), doc["offer"].get<pid_t>()});
        } else {
          spdlog::debug("python zygote pid={} offered no child: {}", proc_.pid, doc.dump());
        }
        if (notices_too) return doc;
        continue;
      }
      return doc;
    }
  }

  void drain_output() {
    char buf[4096];
    for (int fd : {proc_.stdout_fd, proc_.stderr_fd}) {
      if (fd < 0) continue;
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) output_.append(buf, size_t(n));
    }
    if (output_.size() > kMaxOutputBytes) output_.erase(0, output_.size() - kMaxOutputBytes);
  }
  std::string output_note() const {
    return output_.empty() ? "" : " (zygote output: " + output_ + ")";
  }

  bool alive() const {
    pollfd pfd{proc_.pidfd, POLLIN, 0};
    return proc_.pidfd >= 0 && poll(&pfd, 1, 0) == 0;
  }

  void stop_locked() {
    broken_ = true;
    if (ctl_ >= 0) ::close(ctl_);
    ctl_ = -1;
    // The offered children exit (and die with the zygote).
    offers_.clear();
    // Its children go with it: they live in its pid namespace.
    terminate(proc_);
  }

  std::mutex mu_;
  Process proc_;
  int ctl_ = -1;
  bool broken_ = false;
  std::atomic<bool> not_walled_in_{false};  // see take_not_walled_in
  // A child forked ahead of need: our socket to it and its pid in the
  // zygote's namespace.
  struct Offer {
    Fd fd;
    pid_t ns_pid;
  };
  int prefork_ = 0;       // offered children to keep now
  int base_prefork_ = 0;  // ... outside a burst of starts (ZygoteOptions::prefork)
  int64_t burst_quiet_ms_ = 0;
  int64_t last_unready_ms_ = 0;  // the last start that found no child ready
  int offers_asked_ = 0;         // {"prefork"}s out (and the first offer, which comes unasked)
  std::deque<Offer> offers_;     // oldest first
  std::map<pid_t, pid_t> host_of_ns_;  // live children: the zygote's pid -> ours
  std::map<pid_t, int> exits_;         // ended children (our pid) -> wait status
  std::map<pid_t, uint64_t> started_;  // live children (our pid) -> start time (/proc stat)
  int live_ = 0;
  int64_t last_used_ms_ = 0;
  std::string output_;
};

ZygoteLauncher::ZygoteLauncher(ProcessLauncher& direct, ZygoteOptions options)
    : direct_(direct), options_(options) {}

ZygoteLauncher::~ZygoteLauncher() {
  std::lock_guard lock(mu_);
  for (auto& [key, entry] : zygotes_) {
    if (entry.zygote) entry.zygote->stop();
  }
}

std::string ZygoteLauncher::key_of(const LaunchSpec& spec) {
  const Isolation& iso = spec.isolation;
  std::string key;
  for (const auto& part : spec.zygote_argv) key += part + '\0';
  key += std::to_string(iso.uid) + '\0' + iso.code_dir + '\0' + iso.runtimes_dir + '\0' +
         iso.hostname + '\0' + spec.cwd + '\0';
  for (const auto& path : iso.readonly_paths) key += path + '\0';
  return key;
}

bool ZygoteLauncher::eligible(const LaunchSpec& spec) const {
  // Only sandboxed instances: the zygote's walls are the sandbox's. A plain
  // process (isolation off) keeps the direct path.
  return !spec.zygote_argv.empty() && spec.isolation.enabled && direct_.options().isolate &&
         direct_.layers().filesystem;
}

Result<std::shared_ptr<Zygote>> ZygoteLauncher::zygote_for(const std::string& key,
                                                           const LaunchSpec& spec) {
  Entry& entry = zygotes_[key];
  if (entry.zygote && !entry.zygote->usable()) {
    spdlog::warn("python zygote pid={} is gone; starting instances directly for {} ms",
                 entry.zygote->pid(), options_.retry_after_failure_ms);
    entry.zygote.reset();
    entry.failed_at_ms = now_ms();
  }
  if (entry.failed_at_ms >= 0 && now_ms() - entry.failed_at_ms < options_.retry_after_failure_ms) {
    return Status::Unavailable("zygote failed recently");
  }
  if (entry.zygote) return entry.zygote;
  auto started = Zygote::start(direct_, spec, options_.start_timeout_ms, options_.prefork,
                               options_.burst_quiet_ms);
  if (!started.ok()) {
    entry.failed_at_ms = now_ms();
    spdlog::warn("python zygote did not start, instances start directly: {}",
                 started.status().message());
    return started.status();
  }
  entry.zygote = *started;
  entry.failed_at_ms = -1;
  return entry.zygote;
}

void ZygoteLauncher::stop_idle() {
  const int64_t cutoff = now_ms() - options_.idle_ms;
  for (auto it = zygotes_.begin(); it != zygotes_.end();) {
    Entry& e = it->second;
    const bool idle = !e.zygote || e.zygote->idle_since(cutoff);
    const bool retry_over =
        e.failed_at_ms < 0 || now_ms() - e.failed_at_ms >= options_.retry_after_failure_ms;
    if (idle && retry_over) {
      if (e.zygote) e.zygote->stop();
      it = zygotes_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<Process> ZygoteLauncher::launch(const LaunchSpec& spec) {
  if (!eligible(spec)) return direct_.launch(spec);
  std::lock_guard lock(mu_);
  stop_idle();
  const std::string key = key_of(spec);
  auto zygote = zygote_for(key, spec);
  count_running();
  if (zygote.ok()) {
    bool offered = false;
    // A child it handed over at its "go" that could not wall itself in
    // counts as a failed spawn, found late.
    auto process = (*zygote)->take_not_walled_in()
                       ? Result<Process>(Status::Precondition(
                             "a child it handed over could not wall itself in"))
                       : (*zygote)->spawn(spec, direct_, options_.spawn_timeout_ms, &offered);
    if (process.ok()) {
      ++forked_;
      if (offered) ++offered_;
      return process;
    }
    spdlog::warn("python zygote spawn failed, starting the instance directly: {}",
                 process.status().message());
    // A zygote that broke goes; one whose child could not be walled in stays
    // for the instances it already serves, but is not asked again for a while.
    Entry& entry = zygotes_[key];
    if (entry.zygote && !entry.zygote->usable()) entry.zygote.reset();
    entry.failed_at_ms = now_ms();
    count_running();
  }
  ++fallbacks_;
  return direct_.launch(spec);
}

void ZygoteLauncher::count_running() {
  int n = 0;
  for (const auto& [key, entry] : zygotes_) n += entry.zygote ? 1 : 0;
  running_ = n;
}

ZygoteLauncher::Counters ZygoteLauncher::counters() const {
  return Counters{running_.load(), forked_.load(), offered_.load(), fallbacks_.load()};
}

int ZygoteLauncher::offers_ready(const LaunchSpec& spec) {
  std::lock_guard lock(mu_);
  auto it = zygotes_.find(key_of(spec));
  return it != zygotes_.end() && it->second.zygote ? it->second.zygote->offers_ready() : 0;
}

pid_t ZygoteLauncher::zygote_pid(const LaunchSpec& spec) const {
  std::lock_guard lock(mu_);
  auto it = zygotes_.find(key_of(spec));
  return it == zygotes_.end() || !it->second.zygote ? -1 : it->second.zygote->pid();
}

}  // namespace tamaya::sandbox
