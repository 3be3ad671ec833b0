#include "net/request_parser.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <string>

namespace tamaya::net {

namespace beast = boost::beast;
namespace bhttp = beast::http;

RequestParser::RequestParser(const ServerLimits& limits) {
  header_limit(static_cast<uint32_t>(limits.max_header_bytes));
  body_limit(static_cast<uint64_t>(limits.max_body_bytes));
}

void RequestParser::on_request_impl(bhttp::verb, beast::string_view method,
                                    beast::string_view target, int v, beast::error_code&) {
  req.method.assign(method.data(), method.size());
  req.target.assign(target.data(), target.size());
  version = v;
}

void RequestParser::on_field_impl(bhttp::field name, beast::string_view name_string,
                                  beast::string_view value, beast::error_code&) {
  ++field_count;
  if (name == bhttp::field::content_length) has_content_length = true;
  if (name == bhttp::field::transfer_encoding) has_transfer_encoding = true;
  if (req.headers.empty()) req.headers.reserve(8);
  req.headers.emplace_back(std::string(name_string.data(), name_string.size()),
                           std::string(value.data(), value.size()));
}

void RequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& length,
                                      beast::error_code&) {
  // basic_parser has already held the length against body_limit.
  if (length) req.body.reserve(static_cast<size_t>(*length));
}

size_t RequestParser::on_body_impl(beast::string_view body, beast::error_code&) {
  req.body.append(body.data(), body.size());
  return body.size();
}

size_t RequestParser::on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                         beast::error_code& ec) {
  return on_body_impl(body, ec);  // chunks join into one body
}

namespace {

Response uri_too_long() {
  return Response::json(
      414, R"({"error":{"code":"UriTooLong","message":"the request target is over the limit"}})");
}

}  // namespace

std::optional<Response> refuse_head(const RequestParser& parser, const ServerLimits& limits) {
  // A request with both framings is a smuggling attempt.
  if (parser.has_content_length && parser.has_transfer_encoding) {
    return Response::error(
        Status::Invalid("request has both Content-Length and Transfer-Encoding"));
  }
  if (limits.max_request_line_bytes > 0 &&
      int64_t(parser.req.target.size()) > limits.max_request_line_bytes) {
    return uri_too_long();
  }
  if (limits.max_header_count > 0 && parser.field_count > size_t(limits.max_header_count)) {
    return Response::json(
        431, R"({"error":{"code":"HeadersTooLarge","message":"too many request header fields"}})");
  }
  if (auto len = parser.content_length(); len && *len > uint64_t(limits.max_body_bytes)) {
    return Response::error(Status::TooLarge("request body of " + std::to_string(*len) +
                                            " bytes is over the limit of " +
                                            std::to_string(limits.max_body_bytes) + " bytes"));
  }
  return std::nullopt;
}

Response refuse_parse_error(const beast::error_code& ec, const RequestParser& parser,
                            std::string_view unparsed, const ServerLimits& limits) {
  if (ec == bhttp::error::header_limit) {
    // A head over the limit whose first line alone is too long: 414. The
    // parser fills in the target only once the whole head is in.
    const int64_t line_limit = limits.max_request_line_bytes;
    if (line_limit > 0 && parser.req.target.empty() &&
        int64_t(unparsed.substr(0, unparsed.find('\n')).size()) > line_limit) {
      return uri_too_long();
    }
    return Response::json(
        431,
        R"({"error":{"code":"HeadersTooLarge","message":"request headers are over the limit"}})");
  }
  if (ec == bhttp::error::body_limit) {
    return Response::error(Status::TooLarge("request body is over the limit of " +
                                            std::to_string(limits.max_body_bytes) + " bytes"));
  }
  return Response::error(Status::Invalid("malformed HTTP request: " + ec.message()));
}

Request take_request(RequestParser& parser) {
  Request req = std::move(parser.req);
  std::string_view target = req.target;
  const size_t qm = target.find('?');
  req.path = percent_decode(target.substr(0, qm), false);
  if (qm != std::string_view::npos) req.query = std::string(target.substr(qm + 1));
  return req;
}

ParsedStream parse_stream(std::string_view bytes, const ServerLimits& limits, size_t piece) {
  ParsedStream out;
  std::string buffered;  // read and not yet parsed, as the connection's buffer
  size_t fed = 0;
  auto read_more = [&] {
    if (fed == bytes.size()) return false;
    const size_t n = piece == 0 ? bytes.size() - fed : std::min(piece, bytes.size() - fed);
    buffered.append(bytes.substr(fed, n));
    fed += n;
    return true;
  };
  // Parses until `done` holds, reading more as needed: false when the input
  // ended first or a parse error refused the request.
  auto parse_until = [&](RequestParser& parser, auto done) {
    while (!done()) {
      if (buffered.empty() && !read_more()) return false;
      beast::error_code ec;
      const size_t used = parser.put(boost::asio::buffer(buffered.data(), buffered.size()), ec);
      buffered.erase(0, used);
      if (ec == bhttp::error::need_more) {
        if (!read_more()) return false;
        continue;
      }
      if (ec) {
        out.refusal = refuse_parse_error(ec, parser, buffered, limits);
        return false;
      }
    }
    return true;
  };
  while (true) {
    RequestParser parser(limits);
    if (parse_until(parser, [&] { return parser.is_header_done(); })) {
      if ((out.refusal = refuse_head(parser, limits))) return out;
      // The server parses the rest of the body eagerly, as this does.
      parser.eager(true);
      if (parse_until(parser, [&] { return parser.is_done(); })) {
        const bool keep_alive = parser.keep_alive();
        out.requests.push_back(take_request(parser));
        if (keep_alive) continue;
        out.closed_by_request = true;
        return out;
      }
    }
    if (!out.refusal) out.incomplete = parser.got_some() || !buffered.empty();
    return out;
  }
}

}  // namespace tamaya::net
