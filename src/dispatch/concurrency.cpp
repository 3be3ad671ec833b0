#include "dispatch/concurrency.h"

#include <algorithm>

namespace tamaya::dispatch {

void ConcurrencyBook::set_reserved(const std::string& function, std::optional<int> reserved) {
  auto it = entries_.find(function);
  if (it == entries_.end()) {
    if (!reserved) return;
    it = entries_.emplace(function, Entry{}).first;
  }
  Entry& e = it->second;
  if (e.reserved) {
    reserved_total_ -= *e.reserved;
  } else {
    unreserved_in_use_ -= e.in_use;
  }
  e.reserved = reserved;
  if (e.reserved) {
    reserved_total_ += *e.reserved;
  } else {
    unreserved_in_use_ += e.in_use;
  }
  if (!e.reserved && e.in_use == 0) entries_.erase(it);
}

std::optional<int> ConcurrencyBook::reserved(const std::string& function) const {
  auto it = entries_.find(function);
  return it == entries_.end() ? std::nullopt : it->second.reserved;
}

int ConcurrencyBook::cap(const std::string& function, int max_concurrency) const {
  int c = std::max(1, max_concurrency);
  if (auto r = reserved(function)) c = std::min(c, *r);
  return c;
}

ConcurrencyBook::Verdict ConcurrencyBook::may_start(const std::string& function,
                                                    int max_concurrency) const {
  if (in_use(function) >= cap(function, max_concurrency)) return Verdict::kFunctionCap;
  if (reserved(function)) return Verdict::kOk;
  if (unreserved_in_use_ >= unreserved_capacity()) return Verdict::kUnreservedPool;
  return Verdict::kOk;
}

void ConcurrencyBook::add(const std::string& function) {
  Entry& e = entries_[function];
  e.in_use++;
  total_in_use_++;
  if (!e.reserved) unreserved_in_use_++;
}

void ConcurrencyBook::remove(const std::string& function) {
  auto it = entries_.find(function);
  if (it == entries_.end() || it->second.in_use == 0) return;
  Entry& e = it->second;
  e.in_use--;
  total_in_use_--;
  if (!e.reserved) unreserved_in_use_--;
  if (!e.reserved && e.in_use == 0) entries_.erase(it);
}

int ConcurrencyBook::in_use(const std::string& function) const {
  auto it = entries_.find(function);
  return it == entries_.end() ? 0 : it->second.in_use;
}

int ConcurrencyBook::unreserved_capacity() const { return std::max(0, limit_ - reserved_total_); }

}  // namespace tamaya::dispatch
