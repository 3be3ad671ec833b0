// libFuzzer target for the front door from raw bytes: the server's request
// parsing (net/request_parser.h, the code each connection runs) on a stream
// of pipelined requests, then route matching and 2.0/1.0 event building for
// every request it hands on. Input: one byte that picks how the stream is
// split into reads, then the bytes a client sends.
//
// Beyond "no crash, no sanitizer report", it traps when:
// - the same bytes hand on other requests, or are refused or not, when
//   split into other reads (see same());
// - a request handed on breaks a limit, or carries both framings;
// - a refusal is not one of 400, 413, 414, 431 with a JSON error body.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/strings.h"
#include "net/request_parser.h"
#include "route_and_build.h"

using namespace tamaya;

namespace {

net::ServerLimits limits() {
  net::ServerLimits l;
  l.max_body_bytes = 1024;
  l.max_header_bytes = 1024;
  l.max_header_count = 16;
  l.max_request_line_bytes = 256;
  return l;
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// The requests handed on never depend on how the bytes were split, nor does
// whether the stream ends in a refusal. The verdict on the last request may:
// Beast parses the first line and fields as soon as it has them when the
// whole head may be there, and otherwise waits for the head's end. So a
// head that is both malformed and over the limit gets 400 or 431, and a bad
// first line that arrives with everything after it is refused at once, while
// the same line read in pieces waits for the rest (408, or 400 once it is in).
bool same(const net::ParsedStream& a, const net::ParsedStream& b) {
  if (a.requests.size() != b.requests.size() || a.closed_by_request != b.closed_by_request) {
    return false;
  }
  for (size_t i = 0; i < a.requests.size(); ++i) {
    const net::Request& x = a.requests[i];
    const net::Request& y = b.requests[i];
    if (x.method != y.method || x.target != y.target || x.path != y.path || x.query != y.query ||
        x.headers != y.headers || x.body != y.body) {
      return false;
    }
  }
  // One waited for the rest of a request that the other refused already.
  if (a.incomplete != b.incomplete) return (a.incomplete ? b : a).refusal.has_value();
  return a.refusal.has_value() == b.refusal.has_value();
}

void check_request(const net::Request& r, const net::ServerLimits& l) {
  check(!r.method.empty());
  check(int64_t(r.body.size()) <= l.max_body_bytes);
  check(int64_t(r.target.size()) <= l.max_request_line_bytes);
  check(int64_t(r.headers.size()) <= l.max_header_count);
  bool length = false;
  bool coding = false;
  for (const auto& [name, value] : r.headers) {
    length = length || iequals(name, "content-length");
    coding = coding || iequals(name, "transfer-encoding");
  }
  check(!(length && coding));
}

void check_refusal(const net::Response& r) {
  check(r.status == 400 || r.status == 413 || r.status == 414 || r.status == 431);
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  check(body.is_object() && body.contains("error") && body["error"].contains("code") &&
        body["error"].contains("message"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Reads of 1 to 32 bytes, or the whole stream at once.
  const size_t piece = data[0] % 33;
  std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  const net::ServerLimits l = limits();
  const net::ParsedStream whole = net::parse_stream(stream, l);
  check(same(whole, net::parse_stream(stream, l, piece)));
  for (const net::Request& r : whole.requests) {
    check_request(r, l);
    fuzz::route_and_build(r);
  }
  if (whole.refusal) check_refusal(*whole.refusal);
  return 0;
}
