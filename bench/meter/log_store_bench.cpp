// bench_log_store: CPU time the log store's writer spends per invocation,
// fed as the daemon feeds it under load (a record and its START, END and
// REPORT lines per invocation, a few functions). The figure is the CPU time
// of every thread but the feeding one, divided by the invocations written;
// it moves far less with a shared machine's load than wall time does.
//
//   bench_log_store [invocations=200000] [rate_per_s=12000] [functions=2]
//
// Invocations are appended at the given rate (as a gateway under load
// would), then flushed; the run's CPU time includes retention, which runs
// every second as in the daemon.
#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "meter/logs.h"
#include "store/database.h"

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tamaya;
  const long n = argc > 1 ? std::atol(argv[1]) : 200'000;
  const long rate = argc > 2 ? std::atol(argv[2]) : 12'000;
  const int functions = argc > 3 ? std::atoi(argv[3]) : 2;
  if (n < 1 || rate < 1 || functions < 1) {
    std::fprintf(stderr, "usage: bench_log_store [invocations>0] [rate_per_s>0] [functions>0]\n");
    return 2;
  }
  char dir_template[] = "/tmp/tamaya-bench-logs.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string db_path = dir + "/tamaya.db";
  {
    auto db = store::Database::open(db_path, meter::migrations());
    if (!db.ok()) {
      std::fprintf(stderr, "open: %s\n", db.status().message().c_str());
      return 1;
    }
    auto logs = meter::LogStore::open(db_path, meter::StoreLimits{});
    if (!logs.ok()) {
      std::fprintf(stderr, "log store: %s\n", logs.status().message().c_str());
      return 1;
    }
    const double cpu0 = cpu_seconds();
    const double feed0 = thread_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    const auto wall_ms = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
    // Batches of 1 ms worth of invocations, paced to the rate.
    const long per_ms = std::max(1L, rate / 1000);
    for (long i = 0; i < n;) {
      for (long k = 0; k < per_ms && i < n; ++k, ++i) {
        const std::string fn = fmt::format("fn-{}", i % functions);
        const std::string id = fmt::format("{:08x}-5e1d-4c0a-9b7e-{:012x}", i, i * 7919);
        const int64_t now = wall_ms();
        meter::InvocationRecord r;
        r.request_id = id;
        r.function = fn;
        r.version = "$LATEST";
        r.trigger = "gateway";
        r.start_ms = now;
        r.duration_ms = 0.42;
        r.billed_ms = 1;
        r.memory_mb = 128;
        r.max_memory_used_mb = 12;
        r.status = "success";
        std::vector<meter::LogEvent> lines(3);
        lines[0].message = "START RequestId: " + id + " Version: $LATEST";
        lines[1].message = "END RequestId: " + id;
        lines[2].message = "REPORT RequestId: " + id +
                           "\tDuration: 0.42 ms\tBilled Duration: 1 ms\tMemory Size: 128 "
                           "MB\tMax Memory Used: 12 MB\t";
        for (auto& l : lines) {
          l.time_ms = now;
          l.function = fn;
          l.request_id = id;
        }
        (*logs)->record(std::move(r), std::move(lines));
      }
      std::this_thread::sleep_until(t0 + std::chrono::microseconds(i * 1'000'000 / rate));
    }
    const double feed = thread_cpu_seconds() - feed0;
    (*logs)->flush();
    const double cpu = cpu_seconds() - cpu0 - feed;
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "invocations=%ld rate=%ld/s functions=%d wall=%.2fs writer_cpu=%.3fs per_invocation=%.2fus "
        "(feeding %.2fus) dropped=%lld/%lld\n",
        n, rate, functions, wall, cpu, cpu * 1e6 / double(n), feed * 1e6 / double(n),
        static_cast<long long>((*logs)->dropped()),
        static_cast<long long>((*logs)->dropped_records()));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
