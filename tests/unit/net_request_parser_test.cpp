// The server's request parsing without sockets (net/request_parser.h): what
// a connection hands its handler, and what it refuses, for bytes fed at once
// and in pieces. net_http_test.cpp checks the same through a real socket.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "net/request_parser.h"

namespace tamaya::net {
namespace {

ServerLimits small_limits() {
  ServerLimits l;
  l.max_body_bytes = 64;
  l.max_header_bytes = 256;
  l.max_header_count = 4;
  l.max_request_line_bytes = 64;
  return l;
}

// Every piece size from 1 byte to all at once gives the same outcome.
ParsedStream parse_all_ways(std::string_view bytes, const ServerLimits& limits) {
  ParsedStream whole = parse_stream(bytes, limits);
  for (size_t piece = 1; piece <= bytes.size(); ++piece) {
    ParsedStream split = parse_stream(bytes, limits, piece);
    EXPECT_EQ(split.requests.size(), whole.requests.size()) << "piece " << piece;
    for (size_t i = 0; i < std::min(split.requests.size(), whole.requests.size()); ++i) {
      EXPECT_EQ(split.requests[i].target, whole.requests[i].target) << "piece " << piece;
      EXPECT_EQ(split.requests[i].headers, whole.requests[i].headers) << "piece " << piece;
      EXPECT_EQ(split.requests[i].body, whole.requests[i].body) << "piece " << piece;
    }
    EXPECT_EQ(split.refusal.has_value(), whole.refusal.has_value()) << "piece " << piece;
    if (split.refusal && whole.refusal) {
      EXPECT_EQ(split.refusal->status, whole.refusal->status) << "piece " << piece;
    }
    EXPECT_EQ(split.incomplete, whole.incomplete) << "piece " << piece;
  }
  return whole;
}

std::string error_code(const Response& r) {
  return nlohmann::json::parse(r.body).at("error").at("code").get<std::string>();
}

TEST(RequestParser, PipelinedRequestsComeOutInOrderWithPathAndQuery) {
  auto out = parse_all_ways(
      "GET /a%20b?x=1&y=%41 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /c HTTP/1.1\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
      "PUT /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
      small_limits());
  ASSERT_EQ(out.requests.size(), 3U);
  EXPECT_FALSE(out.refusal);
  EXPECT_FALSE(out.incomplete);
  EXPECT_EQ(out.requests[0].method, "GET");
  EXPECT_EQ(out.requests[0].path, "/a b");
  EXPECT_EQ(out.requests[0].query, "x=1&y=%41");
  EXPECT_EQ(out.requests[1].body, "hello");
  EXPECT_EQ(out.requests[1].headers,
            (Headers{{"Content-Length", "5"}, {"X-A", "1"}, {"x-a", "2"}}));
  EXPECT_EQ(out.requests[2].method, "PUT");
  EXPECT_EQ(out.requests[2].body, "abcde");
}

TEST(RequestParser, ALastChunkMayArriveInPieces) {
  // "0\r\n", then "\r", then "\n": Boost 1.74's parser asserted it had 5
  // bytes once the size line was in (common/boost_assert.cpp), which aborted builds
  // without NDEBUG; every read size must give the same request.
  auto out = parse_all_ways(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", small_limits());
  ASSERT_EQ(out.requests.size(), 1U);
  EXPECT_EQ(out.requests[0].body, "ok");
  auto empty = parse_all_ways("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                              small_limits());
  ASSERT_EQ(empty.requests.size(), 1U);
  EXPECT_EQ(empty.requests[0].body, "");
}

TEST(RequestParser, BothFramingsAreRefusedBeforeTheBody) {
  // Beast refuses chunked beside a length itself, in either order; any
  // other coding beside a length is refused by refuse_head.
  for (std::string framing : {"Content-Length: 4\r\nTransfer-Encoding: chunked",
                              "Transfer-Encoding: chunked\r\nContent-Length: 4",
                              "Transfer-Encoding: identity\r\nContent-Length: 4"}) {
    auto out = parse_all_ways(
        "POST /a HTTP/1.1\r\n" + framing + "\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        small_limits());
    EXPECT_TRUE(out.requests.empty()) << framing;
    ASSERT_TRUE(out.refusal) << framing;
    EXPECT_EQ(out.refusal->status, 400) << framing;
  }
  auto ours = parse_stream(
      "POST /a HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nabcd",
      small_limits());
  ASSERT_TRUE(ours.refusal);
  EXPECT_NE(ours.refusal->body.find("both Content-Length and Transfer-Encoding"),
            std::string::npos);
}

TEST(RequestParser, EachLimitHasItsStatus) {
  const ServerLimits limits = small_limits();
  auto line = parse_all_ways("GET /" + std::string(80, 'a') + " HTTP/1.1\r\n\r\n", limits);
  ASSERT_TRUE(line.refusal);
  EXPECT_EQ(line.refusal->status, 414);
  EXPECT_EQ(error_code(*line.refusal), "UriTooLong");

  // A first line longer than the whole head's limit is still a long target.
  auto huge_line = parse_all_ways("GET /" + std::string(300, 'a') + " HTTP/1.1\r\n\r\n", limits);
  ASSERT_TRUE(huge_line.refusal);
  EXPECT_EQ(huge_line.refusal->status, 414);

  auto count =
      parse_all_ways("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", limits);
  ASSERT_TRUE(count.refusal);
  EXPECT_EQ(count.refusal->status, 431);

  auto head = parse_all_ways("GET / HTTP/1.1\r\nA: " + std::string(300, 'v') + "\r\n\r\n", limits);
  ASSERT_TRUE(head.refusal);
  EXPECT_EQ(head.refusal->status, 431);
  EXPECT_EQ(error_code(*head.refusal), "HeadersTooLarge");

  auto declared = parse_all_ways("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", limits);
  ASSERT_TRUE(declared.refusal);
  EXPECT_EQ(declared.refusal->status, 413);

  std::string chunks = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) chunks += "10\r\n" + std::string(16, 'x') + "\r\n";
  auto chunked = parse_all_ways(chunks + "0\r\n\r\n", limits);
  ASSERT_TRUE(chunked.refusal);
  EXPECT_EQ(chunked.refusal->status, 413);
}

TEST(RequestParser, MalformedInputIs400AndNothingIsHandedOn) {
  for (std::string bad : {"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
                          "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                          "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    auto out = parse_all_ways(bad, small_limits());
    EXPECT_TRUE(out.requests.empty()) << bad;
    ASSERT_TRUE(out.refusal) << bad;
    EXPECT_EQ(out.refusal->status, 400) << bad;
    EXPECT_EQ(error_code(*out.refusal), "InvalidArgument") << bad;
  }
}

TEST(RequestParser, ARequestCutShortIsIncompleteNotHandedOn) {
  auto head = parse_all_ways("GET / HTTP/1.1\r\nHost: h\r\n", small_limits());
  EXPECT_TRUE(head.requests.empty());
  EXPECT_FALSE(head.refusal);
  EXPECT_TRUE(head.incomplete);

  auto body = parse_all_ways(
      "GET /one HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", small_limits());
  ASSERT_EQ(body.requests.size(), 1U);
  EXPECT_EQ(body.requests[0].target, "/one");
  EXPECT_TRUE(body.incomplete);

  auto none = parse_all_ways("GET / HTTP/1.1\r\n\r\n", small_limits());
  EXPECT_FALSE(none.incomplete);
}

TEST(RequestParser, AClosingRequestEndsTheConnection) {
  auto out = parse_all_ways("GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                            small_limits());
  ASSERT_EQ(out.requests.size(), 1U);
  EXPECT_TRUE(out.closed_by_request);

  auto http10 = parse_all_ways("GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", small_limits());
  ASSERT_EQ(http10.requests.size(), 1U);
  EXPECT_TRUE(http10.closed_by_request);
}

}  // namespace
}  // namespace tamaya::net
