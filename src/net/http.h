// HTTP/1.1 server on Boost.Beast, kept out of this header so modules that
// serve HTTP do not pay Beast's compile cost. Handlers are asynchronous: they
// get the request and a Responder they may call later (the Runtime API's
// long poll holds it until an invocation arrives).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace tamaya::net {

using Headers = std::vector<std::pair<std::string, std::string>>;

// %XX escapes decoded (malformed ones kept as they are); '+' becomes a space
// only in query strings.
std::string percent_decode(std::string_view in, bool plus_is_space);

struct Request {
  std::string method;  // upper case: GET, POST, ...
  std::string target;  // raw request target: path?query
  std::string path;    // percent-decoded path without the query
  std::string query;   // raw query string without '?'
  Headers headers;     // as received (names in their original case)
  std::string body;
  std::string remote_addr;

  // Case-insensitive header lookup; the first value when repeated.
  std::optional<std::string_view> header(std::string_view name) const;
  // Percent-decoded query parameter.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;

  Response& set_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  static Response json(int status, std::string body);
  // {"error":{"code":...,"message":...}} with the status that fits the code.
  static Response error(const Status& status);
  static Response no_content() { return Response{204, {}, {}}; }
};

// A response body sent piece by piece after its head (server-sent events).
// The body runs until either side closes the connection; nothing is framed
// (no Content-Length, Connection: close). Use on the server's io_context.
class ResponseStream {
 public:
  struct State;
  explicit ResponseStream(std::shared_ptr<State> state) : state_(std::move(state)) {}
  ~ResponseStream();
  // Queues bytes for the client. False once the stream is closed; closes it
  // when more than the stream's buffer limit would wait unsent, so a reader
  // that stalls costs bounded memory.
  bool write(std::string data);
  void close();
  bool closed() const;
  // Called once when the stream ends for any reason: client gone, close(),
  // the server closing its connections. Called at once when already closed.
  void on_close(std::function<void()> callback);

 private:
  std::shared_ptr<State> state_;
};

// Sends the response for one request, exactly once. Copyable (shared state)
// so it can be stored in std::function; calls after the first are ignored.
// When the last copy is dropped without a call, a 500 is sent, so a handler
// bug never hangs a client.
class Responder {
 public:
  struct State;
  explicit Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void operator()(Response response) const;
  // Answers with `head` (status and headers; its body is sent first) and
  // keeps the connection for a body written through the returned stream.
  // Counts as the one response.
  std::shared_ptr<ResponseStream> stream(const Response& head, size_t max_buffered_bytes) const;
  // True when the client connection is gone (nothing will be delivered).
  bool closed() const;

 private:
  std::shared_ptr<State> state_;
};

using Handler = std::function<void(Request, Responder)>;

struct ServerLimits {
  int64_t max_body_bytes = 6 << 20;
  int64_t max_header_bytes = 16 << 10;
  // 0 = no limit of its own. Header fields beyond the count get 431; a
  // request target longer than max_request_line_bytes gets 414.
  int max_header_count = 0;
  int64_t max_request_line_bytes = 0;
  // Open connections at most (0 = no limit); beyond it new ones are closed
  // at once, so slow or idle clients cannot use up the process's fds.
  int64_t max_connections = 0;
  std::chrono::milliseconds header_timeout{10'000};
  // To receive a body once its headers are in.
  std::chrono::milliseconds body_timeout{60'000};
  // Between requests on a keep-alive connection. Not applied while a handler
  // is working on a request (long polls may legitimately take minutes).
  std::chrono::milliseconds idle_timeout{60'000};
  // A small answer whose client has already sent the head of its next
  // request waits and goes out with the next answer, in one write. Only for
  // clients that never wait on an answer once they have pipelined their next
  // request: the Runtime API, whose runtime clients send an invocation's
  // result and their next long poll together. It saves a send (and on TCP
  // its segment and acknowledgement) per invocation.
  bool hold_answers_to_pipelining_clients = false;
  // Connections answered 429 get their next request read at most this many
  // times per second in all, in turn (RefusedReadPace); 0: one per turn of
  // the event loop, as fast as it goes.
  int64_t refused_reads_per_s = 0;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, ServerLimits limits, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. Port 0 picks a free port (see port()).
  Status listen(const std::string& host, uint16_t port);
  uint16_t port() const;
  // Stops accepting new connections; open connections finish their current
  // request and are closed.
  void stop_accepting();
  // Closes every connection now.
  void close_all();
  size_t open_connections() const;

  struct Impl;  // public so the connection type in server.cpp can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tamaya::net
