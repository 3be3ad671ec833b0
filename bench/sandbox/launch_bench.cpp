// Cost of creating an instance: median (and p90) of N launches of /bin/true,
// each to its exit, as a plain process (sandbox_isolation "off") and fully
// sandboxed (namespaces + pivot_root + cgroups + uid + seccomp; also with a
// network namespace for network "none"). Not a test: run it by hand, as root
// for the sandboxed rows.
//   cmake --build build/<you> --target bench_sandbox && build/<you>/bench/sandbox/bench_sandbox [N]
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "sandbox/host.h"
#include "sandbox/launcher.h"
#include "sandbox/netns.h"

using namespace tamaya::sandbox;

namespace {

struct Row {
  double p50_ms = 0, p90_ms = 0;
  int failures = 0;
};

Row measure(Launcher& launcher, int n, bool isolated, bool network_none, const std::string& code) {
  std::vector<double> ms;
  Row row;
  for (int i = 0; i < n; ++i) {
    LaunchSpec spec;
    spec.argv = {"/bin/true"};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.cwd = isolated ? kTaskRoot : "/";
    int netns = -1;
    const auto start = std::chrono::steady_clock::now();
    if (isolated) {
      spec.isolation.enabled = true;
      spec.isolation.name = "bench-" + std::to_string(i);
      spec.isolation.uid = spec.isolation.gid = 299'999;
      spec.isolation.memory_bytes = 128 << 20;
      spec.isolation.pids_max = 1024;
      spec.isolation.cpu_shares = 74;
      spec.isolation.code_dir = code;
      if (network_none) {
        auto ns = create_network_namespace();
        if (!ns.ok()) {
          ++row.failures;
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
      ++row.failures;
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
  std::sort(ms.begin(), ms.end());
  if (!ms.empty()) {
    row.p50_ms = ms[ms.size() / 2];
    row.p90_ms = ms[ms.size() * 9 / 10];
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200;
  const std::string dir =
      std::filesystem::temp_directory_path() / ("tamaya-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir + "/code");
  HostCapabilities caps = probe_host(dir + "/sandbox");
  std::printf("host: %s\nlaunches of /bin/true to exit, n=%d each\n\n", summary(caps).c_str(), n);
  std::printf("| launch | p50 ms | p90 ms | failures |\n| --- | --- | --- | --- |\n");

  ProcessLauncher plain;
  Row r = measure(plain, n, false, false, "");
  std::printf("| plain process (isolation off) | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
              r.failures);

  SandboxOptions options{true, caps, dir + "/sandbox/root"};
  auto sandboxed = ProcessLauncher::create(options);
  if (sandboxed.ok() && caps.namespaces) {
    r = measure(**sandboxed, n, true, false, dir + "/code");
    std::printf("| sandboxed, network host | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms, r.failures);
    if (caps.net_namespace) {
      r = measure(**sandboxed, n, true, true, dir + "/code");
      std::printf("| sandboxed, network none | %.3f | %.3f | %d |\n", r.p50_ms, r.p90_ms,
                  r.failures);
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
