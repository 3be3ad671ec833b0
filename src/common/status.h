// Status and Result<T>: every expected failure in tamaya is a value, never an
// exception. Exceptions are reserved for bugs and startup failures.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tamaya {

// The kinds a caller can branch on. Each maps to one HTTP status at the edge
// (see http_status()), so the kind is chosen for what the *user* must do.
enum class Code {
  kOk,
  kInvalidArgument,     // 400: the request is malformed; fix it
  kUnauthenticated,     // 401
  kPermissionDenied,    // 403
  kNotFound,            // 404: name the thing that was not found
  kAlreadyExists,       // 409
  kFailedPrecondition,  // 412: state does not allow this now
  kTooLarge,            // 413
  kResourceExhausted,   // 429: throttled, retry later
  kDeadlineExceeded,    // 504 on the API edge
  kUnavailable,         // 503: shutting down / not ready
  kInternal,            // 500: a bug or an I/O failure
};

std::string_view code_name(Code code);
int http_status(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status Invalid(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Exists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Precondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Status TooLarge(std::string m) { return {Code::kTooLarge, std::move(m)}; }
  static Status Exhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status Deadline(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

  // Prefixes context ("reading settings: ...") without changing the kind.
  Status with_context(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result built from an ok Status has no value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tamaya

// Early return of a non-ok Status (or a Result's status) from a function that
// returns Status or Result<...>.
#define TAMAYA_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::tamaya::Status tamaya_status_ = (expr);        \
    if (!tamaya_status_.ok()) return tamaya_status_; \
  } while (0)

#define TAMAYA_CONCAT_INNER(a, b) a##b
#define TAMAYA_CONCAT(a, b) TAMAYA_CONCAT_INNER(a, b)
// NOLINTBEGIN(bugprone-macro-parentheses): `tmp` is a generated name and `lhs`
// may be a declaration (`auto x`); neither can be parenthesised.
#define TAMAYA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
#define TAMAYA_ASSIGN_OR_RETURN(lhs, expr) \
  TAMAYA_ASSIGN_OR_RETURN_IMPL(TAMAYA_CONCAT(tamaya_result_, __LINE__), lhs, expr)
