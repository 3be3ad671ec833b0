// Facts of the host that the daemon reads on its hot paths: the CPUs it may
// run on, and the figures the kernel generates in /proc files, read through
// file descriptors kept open so each reading costs one pread.
#pragma once

#include <optional>
#include <string>

namespace tamaya {

// The CPUs this process may run on (its affinity), at least 1.
int usable_cores();

// The current text of a generated file (/proc, cgroup files: made afresh on
// every read from offset 0), up to 256 bytes; nullopt when fd is -1 or the
// read fails.
std::optional<std::string> read_at_zero(int fd);

}  // namespace tamaya
