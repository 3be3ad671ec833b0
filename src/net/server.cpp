// The HTTP/1.1 server. One Session per connection reads one request at a
// time (pipelined requests wait in the read buffer), hands it to the handler,
// and writes the response when the handler's Responder is called, which may
// be much later (Runtime API long polls). All of it runs on one io_context;
// Responders must be called from that context.
#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

#include "common/json_text.h"
#include "common/log.h"
#include "common/strings.h"
#include "net/http.h"
#include "net/refused_pace.h"
#include "net/request_parser.h"

namespace tamaya::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

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
  Response r = json(http_status(status.code()), json_text(body));
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
      : io(io),
        acceptor(io),
        limits(l),
        handler(std::move(h)),
        refused_pace(l.refused_reads_per_s),
        refused_timer(io) {}

  void accept();
  void yield_read(std::shared_ptr<Session> session);
  void drain_yielded();

  asio::io_context& io;
  tcp::acceptor acceptor;
  ServerLimits limits;
  Handler handler;
  bool accepting = false;
  std::unordered_set<Session*> sessions;
  // Connections whose last answer was 429 read their next request from
  // here, one per turn of the event loop, instead of all at once: a client
  // flooding a throttled function then cannot push other clients' requests
  // behind a batch of its own refusals (bench/spike). Its requests are still
  // answered as fast as the loop has nothing else to do, and no faster than
  // limits.refused_reads_per_s (refused_pace.h).
  std::deque<std::shared_ptr<Session>> yielded;
  bool draining = false;
  RefusedReadPace refused_pace;
  asio::steady_timer refused_timer;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)), deadline_timer_(server_->io) {
    server_->sessions.insert(this);
    beast::error_code ec;
    // For respond()'s direct write; asynchronous operations are unaffected.
    stream_.socket().non_blocking(true, ec);
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
  }
  ~Session() { server_->sessions.erase(this); }

  void start() {
    // Beast reads what the buffer can take without growing it, at least 512
    // bytes: from an empty buffer a request over 512 bytes (a runtime's POST
    // of a response) took two reads, and a full read leaves Asio without the
    // "socket exhausted" hint, so the next read is tried speculatively.
    buffer_.reserve(kReadBufferBytes);
    read_request(server_->limits.header_timeout);
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  // The whole response goes out in one gathered write (head, body): no
  // Beast serializer or per-field allocations on the hot path.
  void respond(Response response) {
    if (closed_) return;
    bool keep = keep_alive_ && server_->accepting;
    const unsigned status = static_cast<unsigned>(response.status);
    refused_ = status == 429;
    std::string& head = out_head_;
    head.clear();
    head.reserve(128 + response.headers.size() * 48);
    head += http10_ ? "HTTP/1.0 " : "HTTP/1.1 ";
    head += std::to_string(status);
    head += ' ';
    auto reason = bhttp::obsolete_reason(bhttp::int_to_status(status));
    head.append(reason.data(), reason.size());
    head += "\r\nServer: tamaya\r\n";
    for (const auto& [k, v] : response.headers) {
      // Framing is the server's: a handler's Content-Length, Transfer-Encoding
      // or Connection would contradict it. A line break would forge headers.
      if (k.empty() || iequals(k, "content-length") || iequals(k, "transfer-encoding") ||
          iequals(k, "connection") || k.find_first_of("\r\n: ") != std::string::npos ||
          v.find_first_of("\r\n") != std::string::npos) {
        continue;
      }
      head += k;
      head += ": ";
      head += v;
      head += "\r\n";
    }
    // 1xx, 204 and 304 have no body and no Content-Length (RFC 9110 8.6).
    const bool bodiless = status < 200 || status == 204 || status == 304;
    if (bodiless) {
      response.body.clear();
    } else {
      head += "Content-Length: ";
      head += std::to_string(response.body.size());
      head += "\r\n";
    }
    if (!keep) {
      head += "Connection: close\r\n";
    } else if (http10_) {
      head += "Connection: keep-alive\r\n";
    }
    head += "\r\n";
    if (keep && server_->limits.hold_answers_to_pipelining_clients &&
        held_.size() + head.size() + response.body.size() <= kMaxHeldBytes &&
        next_head_buffered()) {
      held_ += head;
      held_ += response.body;
      return after_write(keep);
    }
    out_body_ = std::move(response.body);
    std::array<asio::const_buffer, 3> bufs{asio::buffer(held_), asio::buffer(out_head_),
                                           asio::buffer(out_body_)};
    // Most responses fit in the socket's buffer: write now (the socket is
    // non-blocking) instead of paying the event loop's round for an
    // asynchronous write's completion; only what is left goes async.
    beast::error_code wec;
    size_t sent = stream_.socket().write_some(bufs, wec);
    if (wec && wec != asio::error::would_block && wec != asio::error::try_again) {
      return close_after_write();
    }
    if (!wec && sent == held_.size() + out_head_.size() + out_body_.size()) {
      held_.clear();
      return after_write(keep);
    }
    if (wec) sent = 0;
    set_deadline(kWriteTimeout, Deadline::kWrite);
    auto rest = beast::buffers_suffix<std::array<asio::const_buffer, 3>>(bufs);
    rest.consume(sent);
    asio::async_write(stream_.socket(), rest,
                      [self = shared_from_this(), keep](beast::error_code ec, size_t) {
                        self->clear_deadline();
                        self->held_.clear();
                        if (ec) return self->close_after_write();
                        self->after_write(keep);
                      });
  }

  // The head of the client's next request is already here (pipelined).
  bool next_head_buffered() const {
    std::string_view in(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    return in.find("\r\n\r\n") != std::string_view::npos;
  }

  void after_write(bool keep) {
    if (!keep) return close_after_write();
    // Large bodies should not stay with an idle connection.
    if (out_body_.capacity() > kKeepBodyCapacity) std::string().swap(out_body_);
    if (refused_) return server_->yield_read(shared_from_this());
    read_request(server_->limits.idle_timeout);
  }

  // The turn of a connection that waited in HttpServer::Impl::yielded.
  void resume_read() {
    if (closed_) return;
    read_request(server_->limits.idle_timeout);
  }

  bool closed() const { return closed_; }

  // --- streamed responses (ResponseStream) ---

  void start_stream(const Response& head, const std::shared_ptr<ResponseStream::State>& st) {
    std::string text = "HTTP/1.1 " + std::to_string(head.status) + " " +
                       std::string(bhttp::obsolete_reason(
                           bhttp::int_to_status(static_cast<unsigned>(head.status)))) +
                       "\r\nServer: tamaya\r\n";
    for (const auto& [k, v] : head.headers) {
      // A header value with a line break would let a handler forge headers.
      if (k.find_first_of("\r\n:") != std::string::npos ||
          v.find_first_of("\r\n") != std::string::npos) {
        continue;
      }
      text.append(k).append(": ").append(v).append("\r\n");
    }
    text += "Connection: close\r\n\r\n";
    text += head.body;
    if (!held_.empty()) text.insert(0, std::exchange(held_, {}));
    st->buffered = text.size();
    st->pending.push_back(std::move(text));
    clear_deadline();
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
    stream_.socket().async_read_some(asio::buffer(discard_),
                                     [self = shared_from_this(), st](beast::error_code ec, size_t) {
                                       if (st->closed) return;
                                       if (ec) return self->end_stream(st);
                                       self->watch_stream_peer(st);
                                     });
  }

  // By value: the callback may drop the last outside reference to st.
  // NOLINTNEXTLINE(performance-unnecessary-value-param): the copy keeps st alive
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
    clear_deadline();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  void read_request(std::chrono::milliseconds header_wait) {
    parser_.emplace(server_->limits);
    set_deadline(header_wait, Deadline::kRead);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec || timed_out_) return fail_read(ec);
    http10_ = parser_->version == 10;
    if (auto refusal = refuse_head(*parser_, server_->limits)) {
      keep_alive_ = false;
      return respond(std::move(*refusal));
    }
    // The body mostly arrives with the head: parse what is buffered now and
    // skip a second asynchronous read (and its deadline) when it is complete.
    if (!parser_->is_done() && buffer_.size() > 0) {
      parser_->eager(true);
      beast::error_code pec;
      size_t used = parser_->put(buffer_.data(), pec);
      buffer_.consume(used);
      if (pec && pec != bhttp::error::need_more) return fail_read(pec);
    }
    if (parser_->is_done()) return on_body({});
    set_deadline(server_->limits.body_timeout, Deadline::kRead);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  // One timer per connection for every deadline (header, body, idle, write),
  // moved lazily: a later deadline only updates deadline_, and the timer,
  // when it fires early, waits again for the rest. A request therefore
  // costs no timer operation of its own (no re-arm, no cancelled handler,
  // no timerfd update). Reads use it rather than the stream's expiry, which
  // would close the socket before a 408 could be sent.
  enum class Deadline { kNone, kRead, kWrite };
  static constexpr std::chrono::seconds kWriteTimeout{60};
  static constexpr size_t kKeepBodyCapacity = 64 << 10;
  static constexpr size_t kReadBufferBytes = 4096;
  static constexpr size_t kMaxHeldBytes = 4096;

  void set_deadline(std::chrono::milliseconds d, Deadline kind) {
    timed_out_ = false;
    deadline_kind_ = kind;
    deadline_ = std::chrono::steady_clock::now() + d;
    if (timer_waiting_ && timer_expiry_ <= deadline_) return;
    arm_timer();
  }

  void clear_deadline() { deadline_kind_ = Deadline::kNone; }

  void arm_timer() {
    timer_waiting_ = true;
    timer_expiry_ = deadline_;
    const uint64_t gen = ++timer_gen_;
    deadline_timer_.expires_at(deadline_);
    deadline_timer_.async_wait([weak = weak_from_this(), gen](beast::error_code) {
      auto self = weak.lock();
      if (!self || gen != self->timer_gen_) return;  // superseded by a re-arm
      self->timer_waiting_ = false;
      self->on_deadline();
    });
  }

  void on_deadline() {
    if (deadline_kind_ == Deadline::kNone || closed_) return;
    if (std::chrono::steady_clock::now() < deadline_) return arm_timer();
    beast::error_code ignored;
    if (deadline_kind_ == Deadline::kRead) {
      timed_out_ = true;
      stream_.socket().cancel(ignored);
    } else {
      // A client that does not read its response: give up on it.
      deadline_kind_ = Deadline::kNone;
      stream_.socket().close(ignored);
    }
  }

  void fail_read(beast::error_code ec) {
    clear_deadline();
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
    std::string_view unparsed(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    respond(refuse_parse_error(ec, *parser_, unparsed, server_->limits));
  }

  void on_body(beast::error_code ec) {
    if (ec) return fail_read(ec);
    clear_deadline();  // the handler may hold the request (long poll)
    keep_alive_ = parser_->keep_alive();
    http10_ = parser_->version == 10;
    Request req = take_request(*parser_);
    req.remote_addr = remote_;
    // The owner may have gone (an instance's endpoint closed) while this
    // request was in flight: nobody is left to answer it.
    if (!server_->handler) return close_after_write();
    auto state = std::make_shared<Responder::State>();
    state->session = shared_from_this();
    try {
      server_->handler(std::move(req), Responder(std::move(state)));
    } catch (const std::exception& e) {
      // A bug in one handler costs its request (answered 500 when its
      // Responder is dropped), not every function and route the daemon
      // serves, as an exception out of the event loop would.
      spdlog::error("bug: an HTTP handler threw; its request was answered 500 error={}", e.what());
    }
  }

  beast::tcp_stream stream_;
  std::shared_ptr<HttpServer::Impl> server_;
  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  std::string remote_;
  asio::steady_timer deadline_timer_;
  std::chrono::steady_clock::time_point deadline_{};
  std::chrono::steady_clock::time_point timer_expiry_{};
  Deadline deadline_kind_ = Deadline::kNone;
  bool timer_waiting_ = false;
  uint64_t timer_gen_ = 0;
  std::string out_head_;
  std::string out_body_;
  // Answers held for the next write (ServerLimits::hold_answers_to_pipelining_clients).
  std::string held_;
  bool http10_ = false;
  bool timed_out_ = false;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool refused_ = false;  // the last response was a 429
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

std::shared_ptr<ResponseStream> Responder::stream(const Response& head,
                                                  size_t max_buffered_bytes) const {
  auto st = std::make_shared<ResponseStream::State>();
  st->max_buffered = max_buffered_bytes;
  auto out = std::make_shared<ResponseStream>(st);
  if (state_->done || !state_->session || state_->session->closed()) {
    st->closed = true;
    return out;
  }
  state_->done = true;
  st->session = std::move(state_->session);
  st->session->start_stream(head, st);
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

void HttpServer::Impl::yield_read(std::shared_ptr<Session> session) {
  yielded.push_back(std::move(session));
  if (draining) return;
  draining = true;
  asio::post(io, [self = shared_from_this()] { self->drain_yielded(); });
}

// A posted handler runs after the event loop has polled the sockets once
// more, so what became readable meanwhile goes first.
void HttpServer::Impl::drain_yielded() {
  if (yielded.empty()) {
    draining = false;
    return;
  }
  if (auto wait = refused_pace.wait(RefusedReadPace::clock::now()); wait.count() > 0) {
    refused_timer.expires_after(wait);
    refused_timer.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        self->draining = false;  // cancelled by close_all
        return;
      }
      self->drain_yielded();
    });
    return;
  }
  auto session = std::move(yielded.front());
  yielded.pop_front();
  session->resume_read();
  asio::post(io, [self = shared_from_this()] { self->drain_yielded(); });
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
  // Waiting sessions hold the server; let them go with their sockets.
  impl_->yielded.clear();
  impl_->refused_timer.cancel();
}

size_t HttpServer::open_connections() const { return impl_->sessions.size(); }

}  // namespace tamaya::net
