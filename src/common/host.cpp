#include "common/host.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>

namespace tamaya {

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

std::optional<std::string> read_at_zero(int fd) {
  if (fd < 0) return std::nullopt;
  char buf[256];
  ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  if (n <= 0) return std::nullopt;
  return std::string(buf, size_t(n));
}

}  // namespace tamaya
