// Cost of creating an instance. Not a test: run it by hand, as root for the
// sandboxed rows.
//   cmake --build build/<you> --target bench_sandbox &&
//   build/<you>/bench/sandbox/bench_sandbox [N] [T (default: the CPU count)] [only]
// `only` = "rate" skips the serial rows (for profiling the rate rows alone).
//
// 1. Serial rows: median (and p90) of N launches of /bin/true, each to its
//    exit, as a plain process (sandbox_isolation "off") and fully sandboxed
//    (namespaces + prepared root + cgroups + uid + seccomp; also with a
//    network namespace for network "none").
// 2. Launch to exit: N sandboxed launches of /bin/true, each run to its exit,
//    reaped and its cgroups removed, spread over 1 and over T threads
//    launching at once. Each sandbox's whole life (creation, /bin/true,
//    teardown) is on the launching threads' clock.
// 3. Creation, then teardown: N sandboxes of a program that blocks
//    (/bin/sleep), spread over 1 and over T threads; a sandbox counts as
//    created when launch() has returned, i.e. its process has passed execve
//    inside all its walls (CLONE_VFORK returns then). All N stay alive; then
//    all are killed, reaped and their cgroups removed, timed on its own.
// Each rate row also says where the time went: CPU per sandbox of this
// process and its reaped children, of the kernel's own threads (kworkers,
// RCU: namespace and cgroup teardown run there), the launching threads'
// time blocked off-CPU (sleeping on a lock, an RCU grace period, or in
// clone while the child runs), and how busy the whole machine was.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/netns.h"

using namespace tamaya::sandbox;

namespace {

using Clock = std::chrono::steady_clock;

struct Row {
  double p50_ms = 0, p90_ms = 0;
  double cpu_ms = 0;  // CPU time per launch: this process and its reaped children
  int failures = 0;
};

// CPU seconds used so far by this process and its reaped children (the
// children's own system calls before execve and /bin/true itself): unlike
// wall time, hardly changed by other load on the machine.
double cpu_seconds() {
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage u{};
    getrusage(who, &u);
    total +=
        u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  return total;
}

// {time on CPU, time runnable but waiting for a CPU} of the calling thread, ns.
std::pair<double, double> thread_schedstat() {
  std::ifstream in("/proc/thread-self/schedstat");
  double run = 0, wait = 0;
  in >> run >> wait;
  return {run, wait};
}

// CPU time (ns) of each of the kernel's own threads (PF_KTHREAD) by pid:
// kworkers, RCU and softirq threads, where namespace and cgroup teardown is
// finished. Between two readings only threads seen in the second count
// (their time since the first, or all of it when new); a thread that exited
// in between loses its share (an undercount).
std::map<int, double> kernel_threads_ns() {
  std::map<int, double> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string base = std::string("/proc/") + e->d_name;
    std::ifstream stat(base + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(line.substr(paren + 2));
    std::string field;
    unsigned long flags = 0;
    // After "(comm) ": state ppid pgrp session tty tpgid flags.
    for (int i = 0; i < 7 && fields >> field; ++i) {
      if (i == 6) flags = std::stoul(field);
    }
    if ((flags & 0x00200000) == 0) continue;  // PF_KTHREAD
    std::ifstream sched(base + "/schedstat");
    double run = 0;
    if (sched >> run) out[std::atoi(e->d_name)] = run;
  }
  closedir(proc);
  return out;
}

double kernel_threads_since(const std::map<int, double>& before) {
  double total = 0;
  for (const auto& [pid, ns] : kernel_threads_ns()) {
    auto it = before.find(pid);
    total += it == before.end() ? ns : std::max(0.0, ns - it->second);
  }
  return total;
}

// /proc/stat's first line: {busy, all} in clock ticks over every CPU, and
// softirq ticks (RCU callbacks run there unless offloaded).
struct MachineTicks {
  double busy = 0, all = 0, softirq = 0;
};
MachineTicks machine_ticks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[10] = {};
  in >> cpu;
  for (double& x : v) in >> x;
  MachineTicks t;
  for (int i = 0; i < 10; ++i) {
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is already in user.
    if (i >= 8) continue;
    t.all += v[i];
    if (i != 3 && i != 4) t.busy += v[i];
  }
  t.softirq = v[6];
  return t;
}

// Where a rate row's time went, per sandbox.
struct Breakdown {
  double cpu_ms = 0;      // this process + reaped children
  double kthread_ms = 0;  // kernel threads
  double blocked_ms = 0;  // launching threads asleep (not on CPU, not runnable)
  double softirq_ms = 0;
  double machine_busy = 0;  // share of all CPUs busy (any process)
};

class Meter {
 public:
  Meter() : cpu_(cpu_seconds()), kthreads_(kernel_threads_ns()), ticks_(machine_ticks()) {}
  Breakdown per(int count, double blocked_ns_total) const {
    Breakdown b;
    if (count <= 0) return b;
    const MachineTicks now = machine_ticks();
    const double tick_ms = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
    b.cpu_ms = (cpu_seconds() - cpu_) * 1000 / count;
    b.kthread_ms = kernel_threads_since(kthreads_) / 1e6 / count;
    b.blocked_ms = blocked_ns_total / 1e6 / count;
    b.softirq_ms = (now.softirq - ticks_.softirq) * tick_ms / count;
    const double all = now.all - ticks_.all;
    b.machine_busy = all > 0 ? (now.busy - ticks_.busy) / all : 0;
    return b;
  }

 private:
  double cpu_;
  std::map<int, double> kthreads_;
  MachineTicks ticks_;
};

// Blocked time of the calling thread since `start`: wall minus on-CPU minus
// waiting for a CPU.
struct BlockedClock {
  BlockedClock() : wall(Clock::now()), sched(thread_schedstat()) {}
  double ns() const {
    const auto now = thread_schedstat();
    const double wall_ns = std::chrono::duration<double, std::nano>(Clock::now() - wall).count();
    return std::max(0.0, wall_ns - (now.first - sched.first) - (now.second - sched.second));
  }
  Clock::time_point wall;
  std::pair<double, double> sched;
};

LaunchSpec sandbox_spec(const std::vector<std::string>& argv, const std::string& code,
                        const std::string& name) {
  LaunchSpec spec;
  spec.argv = argv;
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.cwd = kTaskRoot;
  spec.isolation.enabled = true;
  spec.isolation.name = name;
  spec.isolation.uid = spec.isolation.gid = 299'999;
  spec.isolation.memory_bytes = 128 << 20;
  spec.isolation.pids_max = 1024;
  spec.isolation.cpu_shares = 74;
  spec.isolation.code_dir = code;
  return spec;
}

void finish(Process& p) {
  pollfd pfd{p.pidfd, POLLIN, 0};
  poll(&pfd, 1, 5000);
  reap(p).ok();
  close_fds(p);
  release(p);
}

// n launches to exit; the durations in ms, failures counted in `failures`.
std::vector<double> run(Launcher& launcher, int n, bool isolated, bool network_none,
                        const std::string& code, const std::string& prefix, int& failures) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    LaunchSpec spec;
    if (isolated) {
      spec = sandbox_spec({"/bin/true"}, code, prefix + std::to_string(i));
    } else {
      spec.argv = {"/bin/true"};
      spec.env = {"PATH=/usr/bin:/bin"};
      spec.cwd = "/";
    }
    int netns = -1;
    const auto start = Clock::now();
    if (isolated && network_none) {
      auto ns = create_network_namespace();
      if (!ns.ok()) {
        ++failures;
        continue;
      }
      netns = *ns;
      spec.isolation.network = Network::kNone;
      spec.isolation.netns_fd = netns;
    }
    auto p = launcher.launch(spec);
    if (!p.ok()) {
      std::fprintf(stderr, "launch: %s\n", p.status().message().c_str());
      ++failures;
      if (netns >= 0) close(netns);
      continue;
    }
    pollfd pfd{p->pidfd, POLLIN, 0};
    poll(&pfd, 1, 5000);
    const auto end = Clock::now();
    reap(*p).ok();
    close_fds(*p);
    release(*p);
    if (netns >= 0) close(netns);
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  return ms;
}

Row measure(Launcher& launcher, int n, bool isolated, bool network_none, const std::string& code) {
  Row row;
  const double cpu_before = cpu_seconds();
  std::vector<double> ms = run(launcher, n, isolated, network_none, code, "bench-", row.failures);
  if (!ms.empty()) row.cpu_ms = (cpu_seconds() - cpu_before) * 1000 / ms.size();
  std::sort(ms.begin(), ms.end());
  if (!ms.empty()) {
    row.p50_ms = ms[ms.size() / 2];
    row.p90_ms = ms[ms.size() * 9 / 10];
  }
  return row;
}

struct Rate {
  double per_second = 0;
  int done = 0, failures = 0;
  Breakdown where;
};

void print_rate(const char* what, int threads, const Rate& r) {
  std::printf("| %s | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %.0f%% | %d | %d |\n", what, threads,
              r.per_second, r.where.cpu_ms, r.where.kthread_ms, r.where.softirq_ms,
              r.where.blocked_ms, r.where.machine_busy * 100, r.done, r.failures);
}

// `share` of n over `threads` for thread t.
int share_of(int n, int threads, int t) { return n / threads + (t < n % threads ? 1 : 0); }

// n sandboxed launches to exit over `threads` threads at once.
Rate launch_to_exit(ProcessLauncher& launcher, int n, int threads, const std::string& code,
                    bool isolated) {
  std::vector<int> failures(threads, 0);
  std::vector<size_t> done(threads, 0);
  std::vector<double> blocked(threads, 0);
  std::vector<std::thread> workers;
  const Meter meter;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const BlockedClock clock;
      done[t] = run(launcher, share_of(n, threads, t), isolated, false, code,
                    "rate-" + std::to_string(t) + "-", failures[t])
                    .size();
      blocked[t] = clock.ns();
    });
  }
  for (auto& w : workers) w.join();
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  Rate r;
  double blocked_total = 0;
  for (int t = 0; t < threads; ++t) {
    r.done += static_cast<int>(done[t]);
    r.failures += failures[t];
    blocked_total += blocked[t];
  }
  r.per_second = s > 0 ? r.done / s : 0;
  r.where = meter.per(r.done, blocked_total);
  return r;
}

// n sandboxes of /bin/sleep created over `threads` threads and left running;
// then all torn down. {creation, teardown}.
std::pair<Rate, Rate> create_then_teardown(ProcessLauncher& launcher, int n, int threads,
                                           const std::string& code, bool isolated) {
  std::vector<std::vector<Process>> made(threads);
  std::vector<int> failures(threads, 0);
  std::vector<double> blocked(threads, 0);
  std::vector<std::thread> workers;
  std::pair<Rate, Rate> out;
  double children_ns = 0;  // the live children's CPU when creation ends
  {
    const Meter meter;
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const BlockedClock clock;
        const int share = share_of(n, threads, t);
        made[t].reserve(share);
        for (int i = 0; i < share; ++i) {
          LaunchSpec spec = sandbox_spec({"/bin/sleep", "600"}, code,
                                         "create-" + std::to_string(t) + "-" + std::to_string(i));
          if (!isolated) {
            spec.isolation = Isolation{};
            spec.cwd = "/";
          }
          auto p = launcher.launch(spec);
          if (!p.ok()) {
            std::fprintf(stderr, "launch: %s\n", p.status().message().c_str());
            ++failures[t];
            continue;
          }
          made[t].push_back(*std::move(p));
        }
        blocked[t] = clock.ns();
      });
    }
    for (auto& w : workers) w.join();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    Rate& r = out.first;
    double blocked_total = 0;
    for (int t = 0; t < threads; ++t) {
      r.done += static_cast<int>(made[t].size());
      r.failures += failures[t];
      blocked_total += blocked[t];
    }
    r.per_second = s > 0 ? r.done / s : 0;
    r.where = meter.per(r.done, blocked_total);
    // The children are not reaped yet, so their CPU (the walls they raised
    // before execve, and sleep's own start) is read from each one.
    for (const auto& list : made) {
      for (const Process& p : list) {
        std::ifstream in("/proc/" + std::to_string(p.pid) + "/schedstat");
        double run = 0;
        if (in >> run) children_ns += run;
      }
    }
    if (r.done > 0) r.where.cpu_ms += children_ns / 1e6 / r.done;
  }
  workers.clear();
  {
    // Teardown is measured on its own: kill, wait, reap, remove cgroups, on
    // the same number of threads.
    const Meter meter;
    const double children_before = [] {
      rusage u{};
      getrusage(RUSAGE_CHILDREN, &u);
      return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
             (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    }();
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const BlockedClock clock;
        for (Process& p : made[t]) kill_group(p.pid, SIGKILL).ok();
        for (Process& p : made[t]) finish(p);
        blocked[t] = clock.ns();
      });
    }
    for (auto& w : workers) w.join();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    Rate& r = out.second;
    double blocked_total = 0;
    for (int t = 0; t < threads; ++t) {
      r.done += static_cast<int>(made[t].size());
      blocked_total += blocked[t];
    }
    r.per_second = s > 0 ? r.done / s : 0;
    r.where = meter.per(r.done, blocked_total);
    // The reaped children's CPU includes their creation (counted above):
    // only their exit stays in the teardown's share.
    rusage u{};
    getrusage(RUSAGE_CHILDREN, &u);
    const double children_after =
        u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    const double reaped_ms = (children_after - children_before) * 1000;
    if (r.done > 0) r.where.cpu_ms -= std::min(reaped_ms, children_ns / 1e6) / r.done;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = std::clamp(argc > 1 ? std::atoi(argv[1]) : 200, 1, 100'000);
  const int threads = std::clamp(
      argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency()), 1, 64);
  const bool rate_only = argc > 3 && std::strcmp(argv[3], "rate") == 0;
  const std::string dir =
      std::filesystem::temp_directory_path() / ("tamaya-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir + "/code");
  HostCapabilities caps = probe_host(dir + "/sandbox");
  std::printf("host: %s\n\n", summary(caps).c_str());

  ProcessLauncher plain;
  if (!rate_only) {
    std::printf(
        "serial launches of /bin/true to exit, n=%d each\n\n"
        "| launch | p50 ms | p90 ms | CPU ms per launch | failures |\n| --- | --- | --- | --- | "
        "--- |\n",
        n);
    Row r = measure(plain, n, false, false, "");
    std::printf("| plain process (isolation off) | %.3f | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
                r.cpu_ms, r.failures);
  }

  auto sandboxed = ProcessLauncher::create({true, caps, dir + "/sandbox/root"});
  if (sandboxed.ok() && caps.namespaces) {
    if (!rate_only) {
      Row r = measure(**sandboxed, n, true, false, dir + "/code");
      std::printf("| sandboxed, network host | %.3f | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
                  r.cpu_ms, r.failures);
      if (caps.net_namespace) {
        r = measure(**sandboxed, n, true, true, dir + "/code");
        std::printf("| sandboxed, network none | %.3f | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
                    r.cpu_ms, r.failures);
      }
    }
    std::printf(
        "\nsandbox rates, n=%d sandboxes (network host) per row; \", plain process\": the same "
        "without isolation. launch to exit: /bin/true, "
        "each run to its exit, reaped and its cgroups removed by the thread that launched it. "
        "created: /bin/sleep, counted when its launch returned (execve done inside all its "
        "walls), all left running. teardown: those killed, reaped and their cgroups removed. "
        "Per sandbox: CPU of this process and its children; of kernel threads; softirq; the "
        "launching threads' time blocked off-CPU; machine busy = all CPUs, any process.\n\n"
        "| what | threads | per second | CPU ms | kthread CPU ms | softirq ms | blocked ms | "
        "machine busy | done | failures |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |\n",
        n);
    // The same rows for plain processes (isolation off) first: what
    // fork+exec+exit of the same programs costs here, in the same run.
    for (bool isolated : {false, true}) {
      ProcessLauncher& launcher = isolated ? **sandboxed : plain;
      const std::string tag = isolated ? "" : ", plain process";
      for (int t : {1, threads}) {
        print_rate(("launch to exit" + tag).c_str(), t,
                   launch_to_exit(launcher, n, t, dir + "/code", isolated));
        if (threads == 1) break;
      }
      for (int t : {1, threads}) {
        auto [created, torn] = create_then_teardown(launcher, n, t, dir + "/code", isolated);
        print_rate(("created" + tag).c_str(), t, created);
        print_rate(("teardown" + tag).c_str(), t, torn);
        if (threads == 1) break;
      }
    }
  } else {
    std::printf("(sandboxed rows skipped: %s)\n", summary(caps).c_str());
  }
  for (const std::string& base : {caps.cgroup_memory, caps.cgroup_pids, caps.cgroup_cpu}) {
    if (!base.empty()) rmdir(base.c_str());
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
