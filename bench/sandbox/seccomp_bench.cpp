// Cost of loading the instances' seccomp filter. Not a test: run it by hand.
//   cmake --build build/<you> --target bench_seccomp &&
//   build/<you>/bench/sandbox/bench_seccomp [N (default 300)]
//
// Each of N forked children sets no_new_privs and times one
// prctl(PR_SET_SECCOMP) of a filter, as an instance does last before execve.
// Rows: a one-instruction filter that allows everything (the reference:
// what any filter costs), tamaya's filter as instances get it (binary tree)
// and the same rules one comparison after another (libseccomp's default).
// The kernel runs a new filter once per system call number to cache the
// calls it always allows, so the cost follows how many instructions each
// number walks, not the filter's length.
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "sandbox/seccomp_filter.h"

using namespace tamaya::sandbox;

namespace {

// Microseconds of the prctl in a fresh child, or a negative value if it failed.
double time_one_load(const sock_fprog& program) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    auto start = std::chrono::steady_clock::now();
    int rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
    double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (rc != 0) us = -1;
    (void)!write(fds[1], &us, sizeof us);
    _exit(0);
  }
  double us = -1;
  if (pid > 0 && read(fds[0], &us, sizeof us) != sizeof us) us = -1;
  close(fds[0]);
  close(fds[1]);
  if (pid > 0) waitpid(pid, nullptr, 0);
  return us;
}

void row(const char* name, const sock_fprog& program, int n) {
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    double t = time_one_load(program);
    if (t < 0) {
      std::fprintf(stderr, "%s: loading the filter failed\n", name);
      std::exit(1);
    }
    us.push_back(t);
  }
  std::sort(us.begin(), us.end());
  std::printf("%-28s %4u insns  p50 %7.1f us  p90 %7.1f us\n", name, program.len, us[us.size() / 2],
              us[us.size() * 9 / 10]);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(1, std::atoi(argv[1])) : 300;
  auto tree = build_seccomp_program(SeccompLayout::kTree);
  auto flat = build_seccomp_program(SeccompLayout::kRow);
  if (!tree.ok() || !flat.ok()) {
    std::fprintf(stderr, "building the filter failed\n");
    return 1;
  }
  sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  const sock_fprog reference{1, &allow};
  // Alternate so that a noisy spell of the host hits every row alike.
  for (int round = 0; round < 2; ++round) {
    row("allow-all (reference)", reference, n);
    row("tamaya's filter (tree)", tree->program(), n);
    row("same rules in a row", flat->program(), n);
  }
  return 0;
}
