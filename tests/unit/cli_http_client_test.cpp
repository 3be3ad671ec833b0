// The blocking client (src/net/client.cpp, used by the CLI) against a real
// HTTP server: python3's http.server on a loopback port it picks itself.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "net/client.h"

namespace tamaya::net {
namespace {

namespace fs = std::filesystem;

TEST(ParseUrl, HostPortAndBase) {
  auto url = parse_url("http://127.0.0.1:9000");
  ASSERT_TRUE(url.ok()) << url.status().to_string();
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 9000);
  EXPECT_EQ(url->base_path, "");

  url = parse_url("http://tamaya.local/admin/");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "tamaya.local");
  EXPECT_EQ(url->port, 80);
  EXPECT_EQ(url->base_path, "/admin");

  url = parse_url("http://localhost:8080/");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->base_path, "");

  url = parse_url("http://[::1]:9000/x");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 9000);
  EXPECT_EQ(url->base_path, "/x");
}

TEST(ParseUrl, RejectsWhatItCannotServe) {
  for (const char* bad :
       {"https://127.0.0.1:9000", "127.0.0.1:9000", "ftp://x", "", "http://", "http://:9000",
        "http://host:0", "http://host:65536", "http://host:90a", "http://host:", "http://u@host",
        "http://host/a?b=c", "http://ho st", "http://[::1"}) {
    auto url = parse_url(bad);
    EXPECT_FALSE(url.ok()) << bad;
    if (!url.ok()) {
      EXPECT_EQ(url.status().code(), Code::kInvalidArgument) << bad;
      EXPECT_NE(url.status().message().find("expected http://HOST[:PORT][/BASE]"),
                std::string::npos)
          << url.status().message();
    }
  }
  auto https = parse_url("https://x");
  ASSERT_FALSE(https.ok());
  EXPECT_NE(https.status().message().find("https is not supported"), std::string::npos);
}

constexpr const char* kServerScript = R"PY(
import functools, http.server, json, sys, time

class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                          "type": self.headers.get("Content-Type"),
                          "host": self.headers.get("Host")}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Test", "yes")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_PATCH = do_POST

    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"a", b"bb", b"ccc"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return
        super().do_GET()

server = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
)PY";

class HttpClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("tamaya_cli_http_test_" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    std::ofstream(*dir_ / "server.py") << kServerScript;
    std::ofstream(*dir_ / "hello.txt") << "hello, tamaya\n";
    std::string big;
    for (int i = 0; i < 100'000; ++i) big += "line " + std::to_string(i) + "\n";
    std::ofstream(*dir_ / "big.txt") << big;

    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      const std::string script = (*dir_ / "server.py").string();
      const std::string root = dir_->string();
      ::execl("/usr/bin/python3", "python3", script.c_str(), root.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    // The server prints its port once it is listening.
    FILE* from_child = ::fdopen(out[0], "r");
    int port = 0;
    ASSERT_EQ(std::fscanf(from_child, "%d", &port), 1) << "python3 http.server did not start";
    std::fclose(from_child);
    port_ = static_cast<uint16_t>(port);
  }

  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(*dir_);
    delete dir_;
  }

  static Url url() { return Url{"127.0.0.1", port_, ""}; }

  static std::string file(const std::string& name) {
    std::ifstream in(*dir_ / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  static inline pid_t pid_ = -1;
  static inline uint16_t port_ = 0;
  static inline fs::path* dir_ = nullptr;
};

const std::string* find(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return &value;
    }
  }
  return nullptr;
}

TEST_F(HttpClientTest, GetReturnsStatusHeadersAndBody) {
  ClientRequest request;
  request.target = "/hello.txt";
  auto response = http_request(url(), request);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello, tamaya\n");
  ASSERT_NE(find(response->headers, "content-length"), nullptr);
  EXPECT_EQ(*find(response->headers, "content-length"), "14");
}

TEST_F(HttpClientTest, HttpErrorsAreResponsesNotStatuses) {
  ClientRequest request;
  request.target = "/missing.txt";
  auto response = http_request(url(), request);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  EXPECT_EQ(response->status, 404);
}

TEST_F(HttpClientTest, SendsMethodBodyHeadersAndBasePath) {
  ClientRequest request;
  request.method = "PATCH";
  request.target = "/v1/functions/hello";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = R"({"memory_mb":256})";
  Url base = url();
  base.base_path = "/admin";
  auto response = http_request(base, request);
  ASSERT_TRUE(response.ok()) << response.status().to_string();
  EXPECT_EQ(response->status, 201);
  ASSERT_NE(find(response->headers, "X-Test"), nullptr);
  const auto echo = nlohmann::json::parse(response->body);
  EXPECT_EQ(echo["method"], "PATCH");
  EXPECT_EQ(echo["path"], "/admin/v1/functions/hello");
  EXPECT_EQ(echo["body"], R"({"memory_mb":256})");
  EXPECT_EQ(echo["type"], "application/json");
  EXPECT_EQ(echo["host"], "127.0.0.1:" + std::to_string(port_));
}

TEST_F(HttpClientTest, StreamDeliversTheWholeBodyInPieces) {
  ClientRequest request;
  request.target = "/big.txt";
  std::string received;
  int calls = 0;
  Status status = http_stream(url(), request, [&](int code, std::string_view chunk) {
    EXPECT_EQ(code, 200);
    received.append(chunk);
    ++calls;
    return true;
  });
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(received, file("big.txt"));
  EXPECT_GT(calls, 1);
}

TEST_F(HttpClientTest, StreamReadsChunkedBodiesAsTheyArrive) {
  ClientRequest request;
  request.target = "/chunked";
  std::string received;
  Status status = http_stream(url(), request, [&](int, std::string_view chunk) {
    received.append(chunk);
    return true;
  });
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(received, "abbccc");
}

TEST_F(HttpClientTest, StreamStopsWhenTold) {
  ClientRequest request;
  request.target = "/big.txt";
  int calls = 0;
  Status status = http_stream(url(), request, [&](int, std::string_view) {
    ++calls;
    return false;
  });
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(calls, 1);
}

TEST_F(HttpClientTest, StreamReportsStatusOfAnEmptyBody) {
  ClientRequest request;
  request.method = "HEAD";
  request.target = "/hello.txt";
  int calls = 0;
  int seen = 0;
  Status status = http_stream(url(), request, [&](int code, std::string_view chunk) {
    ++calls;
    seen = code;
    EXPECT_TRUE(chunk.empty());
    return true;
  });
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, 200);
}

// A port with nothing listening: bound, then closed.
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(HttpClientErrors, RefusedConnectionSaysToStartTheDaemon) {
  const uint16_t port = closed_port();
  auto response = http_request(Url{"127.0.0.1", port, ""}, ClientRequest{});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), Code::kUnavailable);
  EXPECT_EQ(response.status().message(),
            "cannot reach tamaya at http://127.0.0.1:" + std::to_string(port) +
                ": connection refused (is `tamaya serve` running?)");
}

TEST(HttpClientErrors, SilentServerIsADeadline) {
  // Listening but never answering: connect succeeds from the backlog, the
  // response never comes.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);

  ClientRequest request;
  request.timeout = std::chrono::milliseconds(200);
  const auto start = std::chrono::steady_clock::now();
  auto response = http_request(Url{"127.0.0.1", ntohs(addr.sin_port), ""}, request);
  const auto waited = std::chrono::steady_clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), Code::kDeadlineExceeded);
  EXPECT_NE(response.status().message().find("within 200 ms"), std::string::npos)
      << response.status().message();
  EXPECT_LT(waited, std::chrono::seconds(5));
}

TEST(HttpClientErrors, UnknownHostSaysWhichEndpoint) {
  auto response = http_request(Url{"no-such-host.invalid", 9000, ""}, ClientRequest{});
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), Code::kUnavailable);
  EXPECT_NE(response.status().message().find("cannot resolve host 'no-such-host.invalid'"),
            std::string::npos);
}

}  // namespace
}  // namespace tamaya::net
