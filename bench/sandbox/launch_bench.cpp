// Cost of creating an instance: median (and p90) of N launches of /bin/true,
// each to its exit, as a plain process (sandbox_isolation "off") and fully
// sandboxed (namespaces + prepared root + cgroups + uid + seccomp; also with
// a network namespace for network "none"); then the creation rate: N
// sandboxed launches (each to its exit, reaped, cgroups removed) spread over
// 1 and over T threads launching at once, as the daemon's launcher would be
// driven by concurrent cold starts. Not a test: run it by hand, as root for
// the sandboxed rows.
//   cmake --build build/<you> --target bench_sandbox &&
//   build/<you>/bench/sandbox/bench_sandbox [N] [T (default: the CPU count)]
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/netns.h"

using namespace tamaya::sandbox;

namespace {

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

// n launches to exit; the durations in ms, failures counted in `failures`.
std::vector<double> run(Launcher& launcher, int n, bool isolated, bool network_none,
                        const std::string& code, const std::string& prefix, int& failures) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    LaunchSpec spec;
    spec.argv = {"/bin/true"};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.cwd = isolated ? kTaskRoot : "/";
    int netns = -1;
    const auto start = std::chrono::steady_clock::now();
    if (isolated) {
      spec.isolation.enabled = true;
      spec.isolation.name = prefix + std::to_string(i);
      spec.isolation.uid = spec.isolation.gid = 299'999;
      spec.isolation.memory_bytes = 128 << 20;
      spec.isolation.pids_max = 1024;
      spec.isolation.cpu_shares = 74;
      spec.isolation.code_dir = code;
      if (network_none) {
        auto ns = create_network_namespace();
        if (!ns.ok()) {
          ++failures;
          continue;
        }
        netns = *ns;
        spec.isolation.network = Network::kNone;
        spec.isolation.netns_fd = netns;
      }
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
    const auto end = std::chrono::steady_clock::now();
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
};

// n sandboxed launches to exit over `threads` threads at once.
Rate rate(Launcher& launcher, int n, int threads, const std::string& code) {
  std::vector<int> failures(threads, 0);
  std::vector<size_t> done(threads, 0);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    const int share = n / threads + (t < n % threads ? 1 : 0);
    workers.emplace_back([&, t, share] {
      done[t] =
          run(launcher, share, true, false, code, "rate-" + std::to_string(t) + "-", failures[t])
              .size();
    });
  }
  for (auto& w : workers) w.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Rate r;
  for (int t = 0; t < threads; ++t) {
    r.done += static_cast<int>(done[t]);
    r.failures += failures[t];
  }
  r.per_second = s > 0 ? r.done / s : 0;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = std::clamp(argc > 1 ? std::atoi(argv[1]) : 200, 1, 100'000);
  const int threads = std::clamp(
      argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency()), 1, 64);
  const std::string dir =
      std::filesystem::temp_directory_path() / ("tamaya-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir + "/code");
  HostCapabilities caps = probe_host(dir + "/sandbox");
  std::printf("host: %s\nlaunches of /bin/true to exit, n=%d each\n\n", summary(caps).c_str(), n);
  std::printf(
      "| launch | p50 ms | p90 ms | CPU ms per launch | failures |\n| --- | --- | --- | --- | --- "
      "|\n");

  ProcessLauncher plain;
  Row r = measure(plain, n, false, false, "");
  std::printf("| plain process (isolation off) | %.3f | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
              r.cpu_ms, r.failures);

  SandboxOptions options{true, caps, dir + "/sandbox/root"};
  auto sandboxed = ProcessLauncher::create(options);
  if (sandboxed.ok() && caps.namespaces) {
    r = measure(**sandboxed, n, true, false, dir + "/code");
    std::printf("| sandboxed, network host | %.3f | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
                r.cpu_ms, r.failures);
    if (caps.net_namespace) {
      r = measure(**sandboxed, n, true, true, dir + "/code");
      std::printf("| sandboxed, network none | %.3f | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
                  r.cpu_ms, r.failures);
    }
    std::printf(
        "\nsandbox creation rate: %d sandboxed launches of /bin/true (network host), each to its "
        "exit, reaped and its cgroups removed\n\n| threads launching at once | sandboxes/s | "
        "done | failures |\n| --- | --- | --- | --- |\n",
        n);
    for (int t : {1, threads}) {
      Rate rt = rate(**sandboxed, n, t, dir + "/code");
      std::printf("| %d | %.0f | %d | %d |\n", t, rt.per_second, rt.done, rt.failures);
      if (threads == 1) break;
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
