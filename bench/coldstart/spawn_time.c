/* The reference rows of bench/coldstart: wall time of fork + execve + waitpid
 * of a command, N times, one line per run in milliseconds. C so that the
 * reference is not inflated by the driver's own interpreter.
 *   spawn_time N program [args...]
 * SPAWN_GAP_MS (environment): idle this long before each run, as the driver
 * does before the cold starts of its "apart" rows, so both sides of those
 * ratios start from an idle host. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: spawn_time N program [args...]\n");
    return 2;
  }
  int n = atoi(argv[1]);
  const char* gap_env = getenv("SPAWN_GAP_MS");
  const long gap_ms = gap_env ? atol(gap_env) : 0;
  for (int i = 0; i < n; ++i) {
    if (gap_ms > 0) usleep((useconds_t)(gap_ms * 1000));
    double start = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      execv(argv[2], argv + 2);
      _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "spawn_time: %s failed (status %d)\n", argv[2], status);
      return 1;
    }
    printf("%.3f\n", now_ms() - start);
  }
  return 0;
}
