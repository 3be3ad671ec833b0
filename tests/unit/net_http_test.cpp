// The HTTP server and router over real loopback sockets.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "net/client.h"
#include "net/http.h"
#include "net/router.h"

namespace tamaya::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.add("GET", "/hello/{name}", [](Request, Params p, Responder r) {
      r(Response::json(200, "{\"hello\":\"" + p["name"] + "\"}"));
    });
    router_.add("GET", "/hello/exact",
                [](Request, Params, Responder r) { r(Response::json(200, R"({"exact":true})")); });
    router_.add("POST", "/echo", [](Request req, Params, Responder r) {
      Response res{200, {}, req.body};
      res.set_header("X-Query", req.query_param("q").value_or("-"));
      r(std::move(res));
    });
    // Answers later, as the Runtime API's long poll does.
    router_.add("GET", "/later", [this](Request, Params, Responder r) {
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
      timer->async_wait([timer, r](boost::system::error_code) { r(Response::json(200, "{}")); });
    });
    router_.add("GET", "/forgotten", [](Request, Params, Responder) {});
    router_.add("GET", "/throws",
                [](Request, Params, Responder) { throw std::runtime_error("a bug in a handler"); });
    // What the parser handed over: method, target, every header in order.
    router_.add("POST", "/inspect", [](Request req, Params, Responder r) {
      std::string out = req.method + " " + req.target + " " + req.path + "?" + req.query + "\n";
      for (const auto& [k, v] : req.headers) out += k + "=" + v + "\n";
      r(Response{200, {}, out + "body=" + req.body});
    });
    ServerLimits limits;
    limits.max_body_bytes = 1024;
    limits.max_header_bytes = 2048;
    limits.header_timeout = std::chrono::milliseconds(300);
    server_ = std::make_unique<HttpServer>(io_, limits, [this](Request r, Responder respond) {
      router_.dispatch(std::move(r), std::move(respond));
    });
    ASSERT_TRUE(server_->listen("127.0.0.1", 0).ok());
    url_ = Url{"127.0.0.1", server_->port(), ""};
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    asio::post(io_, [this] {
      server_->stop_accepting();
      server_->close_all();
    });
    io_.stop();
    thread_.join();
    server_.reset();
  }

  Response call(const std::string& method, const std::string& target, std::string body = "") {
    ClientRequest req;
    req.method = method;
    req.target = target;
    req.body = std::move(body);
    req.timeout = std::chrono::seconds(5);
    auto res = http_request(url_, req);
    EXPECT_TRUE(res.ok()) << res.status().to_string();
    return res.ok() ? *res : Response{0, {}, {}};
  }

  // Sends raw bytes and reads until the server closes or the timeout.
  std::string raw(const std::string& bytes) {
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    asio::write(s, asio::buffer(bytes));
    std::string out;
    boost::system::error_code ec;
    char buf[4096];
    timeval tv{2, 0};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (true) {
      size_t n = s.read_some(asio::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }

  asio::io_context io_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  Url url_;
  std::thread thread_;
};

TEST_F(ServerTest, RoutesWithParamsAndPrefersExactSegments) {
  EXPECT_EQ(call("GET", "/hello/world").body, R"({"hello":"world"})");
  EXPECT_EQ(call("GET", "/hello/exact").body, R"({"exact":true})");
}

TEST_F(ServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Response r = call("GET", "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("\"NotFound\""), std::string::npos);
  Response m = call("DELETE", "/echo");
  EXPECT_EQ(m.status, 405);
  bool has_allow = false;
  for (auto& [k, v] : m.headers) has_allow |= (k == "Allow" && v == "POST");
  EXPECT_TRUE(has_allow);
}

TEST_F(ServerTest, EchoesBodyAndDecodesQuery) {
  Response r = call("POST", "/echo?q=a%20b+c", "payload");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "payload");
  bool found = false;
  for (auto& [k, v] : r.headers) found |= (k == "X-Query" && v == "a b c");
  EXPECT_TRUE(found);
}

TEST_F(ServerTest, HandlerMayAnswerLater) { EXPECT_EQ(call("GET", "/later").status, 200); }

TEST_F(ServerTest, DroppedResponderAnswers500) {
  Response r = call("GET", "/forgotten");
  EXPECT_EQ(r.status, 500);
}

TEST_F(ServerTest, AHandlerThatThrowsAnswers500AndTheServerGoesOn) {
  EXPECT_EQ(call("GET", "/throws").status, 500);
  EXPECT_EQ(call("GET", "/hello/exact").status, 200);
}

TEST_F(ServerTest, BodyOverLimitIs413) {
  Response r = call("POST", "/echo", std::string(2000, 'x'));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("TooLarge"), std::string::npos);
}

TEST_F(ServerTest, HeadersOverLimitAre431) {
  std::string out =
      raw("GET /hello/x HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 431"), std::string::npos) << out;
}

TEST_F(ServerTest, ContentLengthWithTransferEncodingIsRefusedAndClosed) {
  std::string out = raw(
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /hello/smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 400"), std::string::npos) << out;
  EXPECT_EQ(out.find("smuggled"), std::string::npos) << "a second request was served: " << out;
}

TEST_F(ServerTest, PipelinedRequestsAnswerInOrderOnOneConnection) {
  std::string out =
      raw("GET /hello/one HTTP/1.1\r\nHost: a\r\n\r\n"
          "GET /hello/two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  size_t one = out.find(R"({"hello":"one"})");
  size_t two = out.find(R"({"hello":"two"})");
  ASSERT_NE(one, std::string::npos) << out;
  ASSERT_NE(two, std::string::npos) << out;
  EXPECT_LT(one, two);
}

TEST_F(ServerTest, HandlerGetsTheRequestAsSent) {
  std::string out =
      raw("POST /insp%65ct?a=1&b=%20 HTTP/1.1\r\nHost: a\r\nX-Twice: one\r\n"
          "x-twice: two\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  EXPECT_NE(out.find("POST /insp%65ct?a=1&b=%20 /inspect?a=1&b=%20\n"), std::string::npos) << out;
  // Names in their own case, repeated ones kept apart and in order.
  EXPECT_NE(out.find("Host=a\nX-Twice=one\nx-twice=two\nContent-Length=5\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("body=hello"), std::string::npos) << out;
}

TEST_F(ServerTest, ChunkedBodyIsJoined) {
  std::string out = raw(
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 200"), std::string::npos) << out;
  EXPECT_NE(out.find("\r\n\r\nabcdefg"), std::string::npos) << out;
}

TEST_F(ServerTest, Http10ClosesUnlessAskedToKeepAlive) {
  std::string closed = raw("GET /hello/old HTTP/1.0\r\n\r\n");
  EXPECT_NE(closed.find("HTTP/1.0 200"), std::string::npos) << closed;
  EXPECT_NE(closed.find("Connection: close"), std::string::npos) << closed;
  // Kept alive: the second request on the connection is answered too.
  std::string kept =
      raw("GET /hello/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
          "GET /hello/b HTTP/1.0\r\n\r\n");
  EXPECT_NE(kept.find("Connection: keep-alive"), std::string::npos) << kept;
  EXPECT_NE(kept.find(R"({"hello":"b"})"), std::string::npos) << kept;
}

TEST_F(ServerTest, SlowHeadersGet408) {
  std::string out = raw("GET /hello/x HTTP/1.1\r\nHost: a\r\n");  // never finished
  EXPECT_NE(out.find("HTTP/1.1 408"), std::string::npos) << out;
}

TEST_F(ServerTest, MalformedRequestIs400) {
  std::string out = raw("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 400"), std::string::npos) << out;
}

// A server that refuses GET /a with 429 and answers anything else 200,
// flooded by `flooders` kept-alive connections, each with `pipelined`
// requests sent at once, while one more connection (the shop) waits.
class RefusedFlood {
 public:
  RefusedFlood(ServerLimits limits, int flooders, int pipelined)
      : server_(io_, limits,
                [this](Request req, Responder respond) {
                  seen_.push_back(req.path);
                  respond(Response::json(req.path == "/a" ? 429 : 200, "{}"));
                }),
        flooders_count_(flooders),
        pipelined_(pipelined) {}

  // Connects everyone; returns once each flooder's first request is refused.
  void start() {
    ASSERT_TRUE(server_.listen("127.0.0.1", 0).ok());
    const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), server_.port());
    for (int i = 0; i < flooders_count_; ++i) flooders_.emplace_back(client_io_).connect(at);
    shop_.connect(at);
    run_until([&] { return server_.open_connections() == size_t(flooders_count_) + 1; });
    std::string burst;
    for (int i = 0; i < pipelined_; ++i) burst += "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    for (auto& s : flooders_) asio::write(s, asio::buffer(burst));
    run_until([&] { return count("/a") == flooders_count_; });
  }

  void run_until(const std::function<bool()>& done) {
    for (int i = 0; i < 100'000 && !done(); ++i) io_.run_one_for(std::chrono::seconds(1));
    ASSERT_TRUE(done());
  }
  int count(const std::string& path) const {
    return int(std::count(seen_.begin(), seen_.end(), path));
  }
  int total() const { return flooders_count_ * pipelined_; }

  // The shop's one request, read while the flood's wait.
  void shop_sends() {
    asio::write(shop_, asio::buffer(std::string("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")));
  }
  std::string shop_answer() {
    std::string answer(4096, '\0');
    answer.resize(shop_.read_some(asio::buffer(answer)));
    return answer;
  }

  // Every flooder got a 429 for each of its requests.
  void expect_every_request_refused() {
    for (auto& s : flooders_) {
      std::string got;
      char buf[4096];
      while (std::count(got.begin(), got.end(), '{') < pipelined_)
        got.append(buf, s.read_some(asio::buffer(buf)));
      size_t at429 = 0;
      for (int i = 0; i < pipelined_; ++i, ++at429) {
        at429 = got.find("HTTP/1.1 429", at429);
        ASSERT_NE(at429, std::string::npos) << got;
      }
    }
    server_.close_all();
  }

 private:
  asio::io_context io_;
  std::vector<std::string> seen_;
  HttpServer server_;
  int flooders_count_;
  int pipelined_;
  asio::io_context client_io_;
  std::vector<tcp::socket> flooders_;
  tcp::socket shop_{client_io_};
};

// The spike story at the connection level: clients refused with 429 keep
// sending, yet another client's request is read before their next batch.
TEST(ServerYield, RefusedConnectionsReadTheirNextRequestAfterOthers) {
  constexpr int kFlooders = 20;
  RefusedFlood flood({}, kFlooders, 3);
  ASSERT_NO_FATAL_FAILURE(flood.start());
  // Every flooder has its next requests buffered and was just refused.
  flood.shop_sends();
  flood.run_until([&] { return flood.count("/b") == 1; });
  EXPECT_LE(flood.count("/a") - kFlooders, 2) << "the shop's request waited behind the flood's";

  // The flood is still served in full, in order, on every connection.
  flood.run_until([&] { return flood.count("/a") == flood.total(); });
  const std::string answer = flood.shop_answer();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  flood.expect_every_request_refused();
}

// With refused_reads_per_s the refused connections' next requests are read
// no faster than that rate, in all: a flood of refusals costs a bounded share
// of the loop. A connection that was not refused is not paced, and every
// refused request is still answered, in order.
TEST(ServerYield, RefusedReadsKeepToTheirRate) {
  constexpr int kFlooders = 10;
  constexpr int kPipelined = 4;
  ServerLimits limits;
  limits.refused_reads_per_s = 1'000;  // a bucket of one, then one per ms
  RefusedFlood flood(limits, kFlooders, kPipelined);
  ASSERT_NO_FATAL_FAILURE(flood.start());
  const auto refused_at = std::chrono::steady_clock::now();
  flood.shop_sends();
  flood.run_until([&] { return flood.count("/b") == 1; });
  EXPECT_LT(flood.count("/a"), flood.total()) << "the shop waited for the whole flood";

  flood.run_until([&] { return flood.count("/a") == flood.total(); });
  // 30 reads after the refusals: the first from the bucket, then one per ms.
  const auto took = std::chrono::steady_clock::now() - refused_at;
  EXPECT_GE(took, std::chrono::milliseconds(kFlooders * (kPipelined - 1) - 2));
  flood.expect_every_request_refused();
}

// The Runtime API's runtime clients send an invocation's result and their
// next long poll together: the answer to the first then waits for the
// second's, and both go out in one write. A request sent alone is answered
// at once.
TEST(ServerHold, AnswersToAPipeliningClientGoOutWithItsNextAnswer) {
  asio::io_context io;
  std::optional<Responder> parked;
  ServerLimits limits;
  limits.hold_answers_to_pipelining_clients = true;
  HttpServer server(io, limits, [&](Request req, Responder respond) {
    if (req.path == "/next") {
      parked = std::move(respond);  // answered later, as a long poll
    } else {
      respond(Response::json(202, R"({"status":"OK"})"));
    }
  });
  ASSERT_TRUE(server.listen("127.0.0.1", 0).ok());
  asio::io_context client_io;
  tcp::socket s(client_io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  auto run_until = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 1'000 && !done(); ++i) io.run_one_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(done());
  };
  auto available = [&] {
    boost::system::error_code ec;
    size_t n = s.available(ec);
    return ec ? 0 : n;
  };

  // Alone: answered at once.
  asio::write(s, asio::buffer(std::string("POST /r HTTP/1.1\r\nHost: x\r\n\r\n")));
  run_until([&] { return available() > 0; });
  std::string first(4096, '\0');
  first.resize(s.read_some(asio::buffer(first)));
  EXPECT_EQ(first.rfind("HTTP/1.1 202", 0), 0u) << first;

  // Pipelined with a long poll: nothing until the long poll is answered.
  asio::write(s,
              asio::buffer(std::string("POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                                       "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")));
  run_until([&] { return parked.has_value(); });
  for (int i = 0; i < 20; ++i) io.poll();
  EXPECT_EQ(available(), 0u) << "the 202 went out on its own";
  (*parked)(Response::json(200, R"({"event":1})"));
  run_until([&] { return available() > 0; });
  std::string both;
  char buf[4096];
  while (both.find(R"({"event":1})") == std::string::npos) {
    both.append(buf, s.read_some(asio::buffer(buf)));
  }
  const size_t accepted = both.find("HTTP/1.1 202");
  const size_t event = both.find("HTTP/1.1 200");
  ASSERT_NE(accepted, std::string::npos) << both;
  ASSERT_NE(event, std::string::npos) << both;
  EXPECT_LT(accepted, event);
  server.close_all();
}

TEST(ServerListen, PortInUseIsAClearError) {
  asio::io_context io;
  HttpServer a(io, {}, [](Request, Responder r) { r(Response::no_content()); });
  ASSERT_TRUE(a.listen("127.0.0.1", 0).ok());
  HttpServer b(io, {}, [](Request, Responder r) { r(Response::no_content()); });
  Status s = b.listen("127.0.0.1", a.port());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot listen"), std::string::npos);
  EXPECT_FALSE(b.listen("not-an-ip", 0).ok());
}

}  // namespace
}  // namespace tamaya::net
