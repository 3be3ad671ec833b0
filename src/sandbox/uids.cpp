#include "sandbox/uids.h"

namespace tamaya::sandbox {

namespace {

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

UidMap::UidMap(uint32_t base, uint32_t count) : base_(base), count_(count), used_(count, false) {}

Result<uint32_t> UidMap::uid_for(const std::string& function) {
  if (auto it = assigned_.find(function); it != assigned_.end()) return it->second;
  if (count_ == 0 || assigned_.size() >= count_) {
    return Status::Exhausted("no free sandbox uid for function '" + function + "': all " +
                             std::to_string(count_) +
                             " uids of sandbox_uid_count are in use; raise sandbox_uid_count");
  }
  uint32_t slot = static_cast<uint32_t>(fnv1a(function) % count_);
  while (used_[slot]) slot = (slot + 1) % count_;
  used_[slot] = true;
  const uint32_t uid = base_ + slot;
  assigned_.emplace(function, uid);
  return uid;
}

void UidMap::forget(const std::string& function) {
  auto it = assigned_.find(function);
  if (it == assigned_.end()) return;
  used_[it->second - base_] = false;
  assigned_.erase(it);
}

}  // namespace tamaya::sandbox
