// The server's HTTP/1.1 request parsing, apart from its sockets, so that the
// fuzz target (tests/fuzz/http_fuzz.cpp) and unit tests drive the code a
// connection runs. Internal to net and those two: it includes Beast, which
// the rest of the tree does not.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "net/http.h"

namespace tamaya::net {

// Parses a request straight into a Request. Beast's message type would
// allocate an element per header field, and all of it would then be copied
// into a Request again: on the invoke path that was a fifth of the daemon's
// allocations. Limits, framing and keep-alive stay basic_parser's.
class RequestParser : public boost::beast::http::basic_parser<true> {
 public:
  // With the limits' header and body sizes applied.
  explicit RequestParser(const ServerLimits& limits);

  Request req;
  int version = 11;
  size_t field_count = 0;
  bool has_content_length = false;
  bool has_transfer_encoding = false;

 private:
  void on_request_impl(boost::beast::http::verb, boost::beast::string_view method,
                       boost::beast::string_view target, int v, boost::beast::error_code&) override;
  void on_response_impl(int, boost::beast::string_view, int, boost::beast::error_code&) override {}
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::beast::error_code&) override;
  void on_header_impl(boost::beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         boost::beast::error_code&) override;
  size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code&) override;
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                            boost::beast::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                            boost::beast::error_code&) override;
  void on_finish_impl(boost::beast::error_code&) override {}
};

// Once the head is parsed: the answer that refuses the request before its
// body is read (both Content-Length and Transfer-Encoding, a target over
// max_request_line_bytes, more fields than max_header_count, a declared body
// over max_body_bytes), or nullopt. The connection closes after a refusal.
std::optional<Response> refuse_head(const RequestParser& parser, const ServerLimits& limits);

// The answer to a parse error (a head or body over its limit, malformed
// input); `unparsed` is what the connection has read and not parsed yet.
// Not for the ends of a connection (EOF, reset, timeout), which the server
// handles itself.
Response refuse_parse_error(const boost::beast::error_code& ec, const RequestParser& parser,
                            std::string_view unparsed, const ServerLimits& limits);

// Moves the finished request out of the parser, with its path
// (percent-decoded) and query split from the target.
Request take_request(RequestParser& parser);

// What a connection that receives `bytes` and then nothing more makes of
// them: the requests it hands to its handler, in order, and the refusal that
// closed it, if any. `piece` > 0 feeds the bytes that many at a time, as
// reads of a slow client would; the outcome must not depend on it.
struct ParsedStream {
  std::vector<Request> requests;
  std::optional<Response> refusal;
  // A request was still incomplete at the end (the server would wait for
  // the rest, then answer 408).
  bool incomplete = false;
  // The last request asked to close the connection (or was HTTP/1.0
  // without keep-alive); bytes after it are never read.
  bool closed_by_request = false;
};
ParsedStream parse_stream(std::string_view bytes, const ServerLimits& limits, size_t piece = 0);

}  // namespace tamaya::net
