// A uid/gid per function from a configured range: stable for a name (a hash
// picks the slot, so a function keeps its uid across restarts unless a
// collision moved it), never shared by two functions at once (collisions
// probe to the next free slot). Functions with different uids cannot signal
// or ptrace each other, nor read each other's private files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace tamaya::sandbox {

class UidMap {
 public:
  UidMap(uint32_t base, uint32_t count);
  // The function's uid (also its gid); an error when the range is full.
  Result<uint32_t> uid_for(const std::string& function);
  // The function is gone: its slot may be given to another.
  void forget(const std::string& function);

 private:
  uint32_t base_;
  uint32_t count_;
  std::map<std::string, uint32_t> assigned_;
  std::vector<bool> used_;
};

}  // namespace tamaya::sandbox
