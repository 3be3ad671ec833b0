// The seccomp filter every sandboxed instance gets, built once with
// libseccomp in the daemon and handed to the child as a ready BPF program:
// the child only calls seccomp(2), last before execve.
#pragma once

#include <linux/filter.h>

#include <string_view>
#include <vector>

#include "common/status.h"

namespace tamaya::sandbox {

// System calls refused with EPERM (not a kill: runtimes get an error they
// can report). clone with a namespace flag is refused too, and clone3 answers
// ENOSYS so libc falls back to clone, whose flags the filter can see.
const std::vector<std::string_view>& refused_syscalls();

struct SeccompProgram {
  std::vector<sock_filter> code;
  sock_fprog program() const {
    return sock_fprog{static_cast<unsigned short>(code.size()),
                      const_cast<sock_filter*>(code.data())};
  }
};

// kTree sorts the comparisons as a binary tree (what instances get);
// kRow is libseccomp's default, one after another, kept for the bench.
enum class SeccompLayout { kTree, kRow };

Result<SeccompProgram> build_seccomp_program(SeccompLayout layout = SeccompLayout::kTree);

}  // namespace tamaya::sandbox
