// The blocking client runs Beast's asynchronous operations on a private
// io_context, one operation at a time: beast::tcp_stream applies its timeouts
// only to asynchronous operations, and a plain synchronous read could hang on
// a daemon that accepted the connection but never answers.
#include "net/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

namespace tamaya::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;

// Largest response body http_request buffers. Big enough for any admin API
// answer (a listing, a function's zip is never returned whole) while a
// misbehaving server cannot exhaust the client's memory.
constexpr uint64_t kMaxResponseBodyBytes = 256ull << 20;
// Largest response header block accepted, as the server's default limit.
constexpr uint32_t kMaxResponseHeaderBytes = 16u << 10;
// Read buffer for streamed bodies: each on_chunk call gets at most this much.
constexpr size_t kStreamChunkBytes = 16u << 10;

// host:port, with an IPv6 literal in brackets as URLs and Host headers need.
std::string authority(const Url& url) {
  const bool ipv6 = url.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

std::string endpoint_text(const Url& url) { return "http://" + authority(url) + url.base_path; }

// Runs one asynchronous operation to completion on `io`.
template <typename Initiate>
error_code run_op(asio::io_context& io, Initiate&& initiate) {
  error_code result;
  initiate([&result](error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

Status transport_error(const Url& url, const ClientRequest& request, std::string_view stage,
                       const error_code& ec) {
  const std::string where = endpoint_text(url);
  if (ec == asio::error::connection_refused) {
    return Status::Unavailable("cannot reach tamaya at " + where +
                               ": connection refused (is `tamaya serve` running?)");
  }
  if (ec == beast::error::timeout) {
    return Status::Deadline("no answer from tamaya at " + where + " within " +
                            std::to_string(request.timeout.count()) + " ms while " +
                            std::string(stage) + "; check that the daemon is healthy");
  }
  if (ec == http::error::body_limit) {
    return Status::TooLarge("the response from " + where + " is over " +
                            std::to_string(kMaxResponseBodyBytes >> 20) +
                            " MiB; the client does not buffer more");
  }
  if (ec == http::error::header_limit) {
    return Status::TooLarge("the response headers from " + where + " are over " +
                            std::to_string(kMaxResponseHeaderBytes >> 10) + " KiB");
  }
  if (ec == asio::error::connection_reset || ec == http::error::end_of_stream ||
      ec == http::error::partial_message || ec == asio::error::eof) {
    return Status::Unavailable("tamaya at " + where + " closed the connection while " +
                               std::string(stage) + " (" + ec.message() +
                               "); the daemon may have stopped or restarted");
  }
  return Status::Unavailable("talking to tamaya at " + where + " failed while " +
                             std::string(stage) + ": " + ec.message());
}

// A connected stream with a deadline already set.
struct Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};
};

Status connect(Connection& conn, const Url& url, const ClientRequest& request) {
  tcp::resolver resolver(conn.io);
  error_code ec;
  // Resolution of loopback names and literal addresses is local and fast; a
  // name needing DNS is the user's choice and has no deadline here.
  auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) {
    return Status::Unavailable("cannot resolve host '" + url.host + "' of endpoint " +
                               endpoint_text(url) + ": " + ec.message() +
                               "; check --endpoint or TAMAYA_ENDPOINT");
  }
  conn.stream.expires_after(request.timeout);
  ec = run_op(conn.io, [&](auto handler) {
    conn.stream.async_connect(
        endpoints, [handler](error_code e, const tcp::endpoint&) mutable { handler(e); });
  });
  if (ec) return transport_error(url, request, "connecting", ec);
  return Status::Ok();
}

http::request<http::string_body> build_request(const Url& url, const ClientRequest& request,
                                               http::verb verb) {
  http::request<http::string_body> req;
  req.version(11);
  if (verb == http::verb::unknown) {
    req.method_string(request.method);
  } else {
    req.method(verb);
  }
  req.target(url.base_path + request.target);
  bool has_host = false;
  bool has_agent = false;
  for (const auto& [name, value] : request.headers) {
    if (beast::iequals(name, "host")) has_host = true;
    if (beast::iequals(name, "user-agent")) has_agent = true;
    req.insert(name, value);
  }
  if (!has_host) req.set(http::field::host, authority(url));
  if (!has_agent) req.set(http::field::user_agent, "tamaya-client");
  // One request per connection: the server need not keep it open for us.
  req.set(http::field::connection, "close");
  req.body() = request.body;
  req.prepare_payload();
  return req;
}

Status send(Connection& conn, const Url& url, const ClientRequest& request) {
  auto req = build_request(url, request, http::string_to_verb(request.method));
  error_code ec =
      run_op(conn.io, [&](auto handler) { http::async_write(conn.stream, req, handler); });
  if (ec) return transport_error(url, request, "sending the request", ec);
  return Status::Ok();
}

Headers copy_headers(const http::fields& fields) {
  Headers headers;
  for (const auto& field : fields) {
    headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  return headers;
}

void close(Connection& conn) {
  error_code ignored;
  conn.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  conn.stream.close();
}

}  // namespace

Result<Url> parse_url(const std::string& text) {
  constexpr std::string_view kScheme = "http://";
  const auto usage = [&text](std::string_view what) {
    return Status::Invalid("invalid endpoint '" + text + "': " + std::string(what) +
                           "; expected http://HOST[:PORT][/BASE], e.g. http://127.0.0.1:9000");
  };
  if (text.rfind("https://", 0) == 0) {
    return usage("https is not supported (the admin API is plain HTTP on a trusted network)");
  }
  if (text.rfind(kScheme, 0) != 0) return usage("it must start with http://");
  std::string_view rest = std::string_view(text).substr(kScheme.size());

  Url url;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    if (path.find_first_of("?#") != std::string_view::npos) {
      return usage("a query or fragment is not allowed");
    }
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    url.base_path = std::string(path);
  }
  if (authority.find('@') != std::string_view::npos) return usage("user info is not supported");

  std::string_view host;
  std::optional<std::string_view> port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close_bracket = authority.find(']');
    if (close_bracket == std::string_view::npos) return usage("unterminated IPv6 address");
    host = authority.substr(1, close_bracket - 1);
    std::string_view after = authority.substr(close_bracket + 1);
    if (!after.empty()) {
      if (after.front() != ':') return usage("unexpected text after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty()) return usage("the host is missing");
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
          c == ':')) {
      return usage("the host contains '" + std::string(1, c) + "'");
    }
  }
  url.host = std::string(host);
  if (port) {
    unsigned value = 0;
    const char* end = port->data() + port->size();
    auto [ptr, ec] = std::from_chars(port->data(), end, value);
    if (port->empty() || ec != std::errc() || ptr != end || value == 0 || value > 65535) {
      return usage("the port must be a number from 1 to 65535");
    }
    url.port = static_cast<uint16_t>(value);
  }
  return url;
}

Result<Response> http_request(const Url& url, const ClientRequest& request) {
  Connection conn;
  TAMAYA_RETURN_IF_ERROR(connect(conn, url, request));
  TAMAYA_RETURN_IF_ERROR(send(conn, url, request));

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponseBodyBytes);
  parser.header_limit(kMaxResponseHeaderBytes);
  // A HEAD answer carries Content-Length but no body.
  parser.skip(beast::iequals(request.method, "HEAD"));
  error_code ec = run_op(
      conn.io, [&](auto handler) { http::async_read(conn.stream, buffer, parser, handler); });
  if (ec) return transport_error(url, request, "reading the response", ec);
  close(conn);

  auto message = parser.release();
  Response response;
  response.status = static_cast<int>(message.result_int());
  response.headers = copy_headers(message.base());
  response.body = std::move(message.body());
  return response;
}

// The timeout bounds connecting and the response headers, then each wait for
// more body: a stream may legitimately last forever while data keeps coming.
// on_chunk is called at least once, with an empty chunk when the body is
// empty, so the caller always learns the status.
Status http_stream(const Url& url, const ClientRequest& request,
                   const std::function<bool(int status, std::string_view chunk)>& on_chunk) {
  Connection conn;
  TAMAYA_RETURN_IF_ERROR(connect(conn, url, request));
  TAMAYA_RETURN_IF_ERROR(send(conn, url, request));

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  // No limit: a stream may run forever. (Beast 1.74 compares the length with
  // an empty optional as "over the limit", so boost::none cannot be used.)
  parser.body_limit(std::numeric_limits<uint64_t>::max());
  parser.header_limit(kMaxResponseHeaderBytes);
  parser.skip(beast::iequals(request.method, "HEAD"));
  conn.stream.expires_after(request.timeout);
  error_code ec = run_op(conn.io, [&](auto handler) {
    http::async_read_header(conn.stream, buffer, parser, handler);
  });
  if (ec) return transport_error(url, request, "reading the response headers", ec);
  const int status = static_cast<int>(parser.get().result_int());

  bool delivered = false;
  std::string chunk(kStreamChunkBytes, '\0');
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    conn.stream.expires_after(request.timeout);
    // read_some: deliver what arrived; a full read would wait for the
    // chunk buffer to fill, holding back a slow stream's lines.
    ec = run_op(conn.io,
                [&](auto handler) { http::async_read_some(conn.stream, buffer, parser, handler); });
    // need_buffer only says our chunk buffer is full: deliver it and go on.
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return transport_error(url, request, "reading the response body", ec);
    const size_t filled = chunk.size() - parser.get().body().size;
    if (filled == 0) continue;
    delivered = true;
    if (!on_chunk(status, std::string_view(chunk.data(), filled))) {
      close(conn);
      return Status::Ok();
    }
  }
  close(conn);
  if (!delivered) on_chunk(status, std::string_view());
  return Status::Ok();
}

}  // namespace tamaya::net
