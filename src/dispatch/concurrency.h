// Concurrency accounting across functions, as Lambda's account limit works:
// a global limit, reservations carved out of it (each a guarantee and a cap
// for its function), and the rest shared by the functions without one. Every
// instance counts, whatever its state (starting, idle, busy, dying): each
// holds a process and memory, and that is what the limit protects.
// Pure bookkeeping, no I/O: the dispatcher asks before it starts an instance.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>

namespace tamaya::dispatch {

class ConcurrencyBook {
 public:
  explicit ConcurrencyBook(int limit) : limit_(limit) {}

  enum class Verdict {
    kOk,
    kFunctionCap,     // the function holds as many instances as its cap allows
    kUnreservedPool,  // the functions without a reservation have used up their share
  };

  // nullopt: the function draws from the unreserved pool.
  void set_reserved(const std::string& function, std::optional<int> reserved);
  std::optional<int> reserved(const std::string& function) const;

  // A function's cap: its max concurrency, lowered by its reservation.
  int cap(const std::string& function, int max_concurrency) const;

  // May `function` hold one more instance? A reserved function only answers
  // to its cap (its share cannot be taken by anyone); an unreserved one also
  // needs room in the unreserved pool.
  Verdict may_start(const std::string& function, int max_concurrency) const;

  void add(const std::string& function);
  void remove(const std::string& function);

  int in_use(const std::string& function) const;
  int in_use() const { return total_in_use_; }
  int unreserved_in_use() const { return unreserved_in_use_; }
  int reserved_total() const { return reserved_total_; }
  // The global limit less every reservation (never below 0).
  int unreserved_capacity() const;
  int limit() const { return limit_; }

 private:
  struct Entry {
    int in_use = 0;
    std::optional<int> reserved;
  };
  int limit_;
  int reserved_total_ = 0;
  int unreserved_in_use_ = 0;
  int total_in_use_ = 0;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace tamaya::dispatch
