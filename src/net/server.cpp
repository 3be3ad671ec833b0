// The HTTP/1.1 server. One Session per connection reads one request at a
// time (pipelined requests wait in the read buffer), hands it to the handler,
// and writes the response when the handler's Responder is called, which may
// be much later (Runtime API long polls). All of it runs on one io_context;
// Responders must be called from that context.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "common/log.h"
#include "net/http.h"

namespace tamaya::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += char(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && c == '+') ? ' ' : c;
  }
  return out;
}

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key = percent_decode(pair.substr(0, eq), true);
    if (key == name) {
      return eq == std::string_view::npos ? std::string()
                                          : percent_decode(pair.substr(eq + 1), true);
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

Response Response::json(int status, std::string body) {
  Response r{status, {}, std::move(body)};
  r.set_header("Content-Type", "application/json");
  return r;
}

Response Response::error(const Status& status) {
  nlohmann::json body = {
      {"error", {{"code", std::string(code_name(status.code()))}, {"message", status.message()}}}};
  Response r = json(http_status(status.code()), body.dump());
  if (status.code() == Code::kResourceExhausted) r.set_header("Retry-After", "1");
  return r;
}

class Session;

struct Responder::State {
  // Strong: while a handler holds the request (a long poll), nothing else
  // keeps the connection alive.
  std::shared_ptr<Session> session;
  bool done = false;
  ~State();
};

struct ResponseStream::State {
  // Strong while open, like Responder's; dropped when the stream ends, which
  // lets the connection go.
  std::shared_ptr<Session> session;
  size_t max_buffered = 0;
  size_t buffered = 0;
  std::deque<std::string> pending;
  bool writing = false;
  bool closed = false;
  std::function<void()> on_close;
};

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& io, ServerLimits l, Handler h)
      : io(io), acceptor(io), limits(l), handler(std::move(h)) {}

  void accept();

  asio::io_context& io;
  tcp::acceptor acceptor;
  ServerLimits limits;
  Handler handler;
  bool accepting = false;
  std::unordered_set<Session*> sessions;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::Impl> server)
      : stream_(std::move(socket)),
        server_(std::move(server)),
        read_deadline_(stream_.get_executor()) {
    server_->sessions.insert(this);
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
  }
  ~Session() { server_->sessions.erase(this); }

  void start() { read_request(server_->limits.header_timeout); }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  void respond(Response response) {
    if (closed_) return;
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(response.status));
    res->set(bhttp::field::server, "tamaya");
    for (auto& [k, v] : response.headers) res->insert(k, v);
    res->body() = std::move(response.body);
    bool keep = keep_alive_ && server_->accepting;
    res->keep_alive(keep);
    res->prepare_payload();
    stream_.expires_after(std::chrono::seconds(60));
    bhttp::async_write(stream_, *res,
                       [self = shared_from_this(), res, keep](beast::error_code ec, size_t) {
                         if (ec || !keep) {
                           self->close_after_write();
                           return;
                         }
                         self->read_request(self->server_->limits.idle_timeout);
                       });
  }

  bool closed() const { return closed_; }

  // --- streamed responses (ResponseStream) ---

  void start_stream(Response head, const std::shared_ptr<ResponseStream::State>& st) {
    std::string text = "HTTP/1.1 " + std::to_string(head.status) + " " +
                       std::string(bhttp::obsolete_reason(bhttp::int_to_status(
                           static_cast<unsigned>(head.status)))) +
                       "\r\nServer: tamaya\r\n";
    for (const auto& [k, v] : head.headers) {
      // A header value with a line break would let a handler forge headers.
      if (k.find_first_of("\r\n:") != std::string::npos ||
          v.find_first_of("\r\n") != std::string::npos) {
        continue;
      }
      text += k + ": " + v + "\r\n";
    }
    text += "Connection: close\r\n\r\n";
    text += head.body;
    st->buffered = text.size();
    st->pending.push_back(std::move(text));
    stream_.expires_never();
    watch_stream_peer(st);
    flush_stream(st);
  }

  void flush_stream(const std::shared_ptr<ResponseStream::State>& st) {
    if (st->closed || st->writing || st->pending.empty()) return;
    st->writing = true;
    asio::async_write(stream_.socket(), asio::buffer(st->pending.front()),
                      [self = shared_from_this(), st](beast::error_code ec, size_t) {
                        st->writing = false;
                        if (st->closed) return;
                        st->buffered -= st->pending.front().size();
                        st->pending.pop_front();
                        if (ec) return self->end_stream(st);
                        self->flush_stream(st);
                      });
  }

  // The client sends nothing more on a stream; a read ending (EOF, reset,
  // the server closing the socket) is how its departure is noticed.
  void watch_stream_peer(const std::shared_ptr<ResponseStream::State>& st) {
    stream_.socket().async_read_some(
        asio::buffer(discard_), [self = shared_from_this(), st](beast::error_code ec, size_t) {
          if (st->closed) return;
          if (ec) return self->end_stream(st);
          self->watch_stream_peer(st);
        });
  }

  // By value: the callback may drop the last outside reference to st.
  void end_stream(std::shared_ptr<ResponseStream::State> st) {
    if (st->closed) return;
    st->closed = true;
    st->pending.clear();
    st->buffered = 0;
    close_after_write();
    auto keep = std::move(st->session);  // alive until this returns
    if (auto cb = std::move(st->on_close)) cb();
  }

 private:
  void close_after_write() {
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  void read_request(std::chrono::milliseconds header_wait) {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->limits.max_header_bytes));
    parser_->body_limit(static_cast<uint64_t>(server_->limits.max_body_bytes));
    stream_.expires_never();  // the write's expiry must not cut this read
    arm_read_deadline(header_wait);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec || timed_out_) return fail_read(ec);
    const auto& h = parser_->get();
    // A request with both framings is a smuggling attempt; refuse and close.
    if (h.count(bhttp::field::content_length) && h.count(bhttp::field::transfer_encoding)) {
      keep_alive_ = false;
      return respond(Response::error(
          Status::Invalid("request has both Content-Length and Transfer-Encoding")));
    }
    const auto& limits = server_->limits;
    if (limits.max_request_line_bytes > 0 &&
        int64_t(h.target().size()) > limits.max_request_line_bytes) {
      keep_alive_ = false;
      return respond(Response::json(
          414,
          R"({"error":{"code":"UriTooLong","message":"the request target is over the limit"}})"));
    }
    if (limits.max_header_count > 0 &&
        std::distance(h.begin(), h.end()) > std::ptrdiff_t(limits.max_header_count)) {
      keep_alive_ = false;
      return respond(Response::json(
          431,
          R"({"error":{"code":"HeadersTooLarge","message":"too many request header fields"}})"));
    }
    if (h.has_content_length() || h.chunked()) {
      auto len = parser_->content_length();
      if (len && *len > uint64_t(server_->limits.max_body_bytes)) {
        keep_alive_ = false;
        return respond(Response::error(Status::TooLarge(
            "request body of " + std::to_string(*len) + " bytes is over the limit of " +
            std::to_string(server_->limits.max_body_bytes) + " bytes")));
      }
    }
    arm_read_deadline(server_->limits.body_timeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  // Reads use their own timer rather than the stream's expiry, which would
  // close the socket before a 408 could be sent.
  void arm_read_deadline(std::chrono::milliseconds d) {
    timed_out_ = false;
    read_deadline_.expires_after(d);
    read_deadline_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
  }

  void fail_read(beast::error_code ec) {
    read_deadline_.cancel();
    if (timed_out_) ec = beast::error::timeout;
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return close_after_write();
    }
    keep_alive_ = false;
    if (ec == beast::error::timeout) {
      // An idle keep-alive connection just closes; a half-sent request gets 408.
      if (buffer_.size() == 0 && !parser_->got_some()) return close_after_write();
      return respond(Response::json(
          408,
          R"({"error":{"code":"RequestTimeout","message":"the request was not received in time"}})"));
    }
    if (ec == bhttp::error::header_limit) {
      // A head over the limit whose first line alone is too long: 414.
      std::string_view head(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      int64_t line_limit = server_->limits.max_request_line_bytes;
      // (The parser fills in the target once the request line is in.)
      if (line_limit > 0 && parser_->get().target().empty() &&
          int64_t(head.substr(0, head.find('\n')).size()) > line_limit) {
        return respond(Response::json(
            414,
            R"({"error":{"code":"UriTooLong","message":"the request target is over the limit"}})"));
      }
      return respond(Response::json(
          431,
          R"({"error":{"code":"HeadersTooLarge","message":"request headers are over the limit"}})"));
    }
    if (ec == bhttp::error::body_limit) {
      return respond(Response::error(
          Status::TooLarge("request body is over the limit of " +
                           std::to_string(server_->limits.max_body_bytes) + " bytes")));
    }
    respond(Response::error(Status::Invalid("malformed HTTP request: " + ec.message())));
  }

  void on_body(beast::error_code ec) {
    if (ec) return fail_read(ec);
    read_deadline_.cancel();  // the handler may hold the request (long poll)
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    std::string_view target = req.target;
    size_t qm = target.find('?');
    req.path = percent_decode(target.substr(0, qm), false);
    if (qm != std::string_view::npos) req.query = std::string(target.substr(qm + 1));
    req.headers.reserve(8);
    for (const auto& f : msg)
      req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    req.body = std::move(msg.body());
    req.remote_addr = remote_;
    // The owner may have gone (an instance's endpoint closed) while this
    // request was in flight: nobody is left to answer it.
    if (!server_->handler) return close_after_write();
    auto state = std::make_shared<Responder::State>();
    state->session = shared_from_this();
    server_->handler(std::move(req), Responder(std::move(state)));
  }

  beast::tcp_stream stream_;
  std::shared_ptr<HttpServer::Impl> server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string remote_;
  asio::steady_timer read_deadline_;
  bool timed_out_ = false;
  bool keep_alive_ = true;
  bool closed_ = false;
  char discard_[256];
};

Responder::State::~State() {
  if (done) return;
  if (session)
    session->respond(Response::error(Status::Internal("the request handler gave no response")));
}

void Responder::operator()(Response response) const {
  if (state_->done) return;
  state_->done = true;
  auto s = std::move(state_->session);
  if (s) s->respond(std::move(response));
}

bool Responder::closed() const { return !state_->session || state_->session->closed(); }

std::shared_ptr<ResponseStream> Responder::stream(Response head, size_t max_buffered_bytes) const {
  auto st = std::make_shared<ResponseStream::State>();
  st->max_buffered = max_buffered_bytes;
  auto out = std::make_shared<ResponseStream>(st);
  if (state_->done || !state_->session || state_->session->closed()) {
    st->closed = true;
    return out;
  }
  state_->done = true;
  st->session = std::move(state_->session);
  st->session->start_stream(std::move(head), st);
  return out;
}

ResponseStream::~ResponseStream() { close(); }

bool ResponseStream::write(std::string data) {
  State& st = *state_;
  if (st.closed || !st.session) return false;
  if (st.buffered + data.size() > st.max_buffered) {
    close();
    return false;
  }
  st.buffered += data.size();
  st.pending.push_back(std::move(data));
  st.session->flush_stream(state_);
  return true;
}

void ResponseStream::close() {
  if (state_->closed) return;
  if (!state_->session) {
    state_->closed = true;
    return;
  }
  auto st = state_;
  auto session = st->session;
  session->end_stream(st);
}

bool ResponseStream::closed() const { return state_->closed; }

void ResponseStream::on_close(std::function<void()> callback) {
  if (state_->closed) {
    if (callback) callback();
    return;
  }
  state_->on_close = std::move(callback);
}

void HttpServer::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (!self->accepting) return;
    if (!ec && self->limits.max_connections > 0 &&
        int64_t(self->sessions.size()) >= self->limits.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
    } else if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), self)->start();
    } else if (ec == asio::error::operation_aborted) {
      return;
    } else {
      spdlog::warn("accept failed error={}", ec.message());
    }
    self->accept();
  });
}

HttpServer::HttpServer(asio::io_context& io, ServerLimits limits, Handler handler)
    : impl_(std::make_shared<Impl>(io, limits, std::move(handler))) {}

HttpServer::~HttpServer() {
  stop_accepting();
  close_all();
}

Status HttpServer::listen(const std::string& host, uint16_t port) {
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return Status::Invalid("'" + host + "' is not an IP address to listen on");
  tcp::endpoint ep(addr, port);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                               ec.message() + " (is another process using the port?)");
  }
  impl_->accepting = true;
  impl_->accept();
  return Status::Ok();
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void HttpServer::stop_accepting() {
  impl_->accepting = false;
  beast::error_code ec;
  impl_->acceptor.close(ec);
}

void HttpServer::close_all() {
  impl_->handler = nullptr;
  std::vector<Session*> all(impl_->sessions.begin(), impl_->sessions.end());
  for (Session* s : all) s->close();
}

size_t HttpServer::open_connections() const { return impl_->sessions.size(); }

}  // namespace tamaya::net
