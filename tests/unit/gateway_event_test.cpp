// Event shapes field by field against the example events of the API Gateway
// developer guide ("Working with AWS Lambda proxy integrations for HTTP
// APIs"), and the response mapping rules documented there.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/encoding.h"
#include "gateway/event.h"

namespace tamaya::gateway {
namespace {

using nlohmann::json;

// The request behind AWS's documented 2.0 example event.
net::Request example_request() {
  net::Request r;
  r.method = "POST";
  r.target = "/my/path?parameter1=value1&parameter1=value2&parameter2=value";
  r.path = "/my/path";
  r.query = "parameter1=value1&parameter1=value2&parameter2=value";
  r.headers = {{"Header1", "value1"},
               {"Header2", "value1"},
               {"header2", "value2"},
               {"Cookie", "cookie1; cookie2"},
               {"Host", "id.execute-api.us-east-1.amazonaws.com"},
               {"User-Agent", "agent"},
               {"Content-Type", "text/plain"}};
  r.body = "Hello from Lambda";
  r.remote_addr = "192.0.2.1";
  return r;
}

EventContext example_context() {
  EventContext c;
  c.route_key = "$default";
  c.path_parameters = {{"parameter1", "value1"}};
  c.request_id = "id";
  c.time_ms = 1583348638390;
  return c;
}

TEST(GatewayEvent, V2MatchesTheDocumentedExample) {
  json e = json::parse(build_event_v2(example_request(), example_context()));
  EXPECT_EQ(e["version"], "2.0");
  EXPECT_EQ(e["routeKey"], "$default");
  EXPECT_EQ(e["rawPath"], "/my/path");
  EXPECT_EQ(e["rawQueryString"], "parameter1=value1&parameter1=value2&parameter2=value");
  EXPECT_EQ(e["cookies"], json::array({"cookie1", "cookie2"}));
  EXPECT_EQ(e["headers"]["header1"], "value1");
  EXPECT_EQ(e["headers"]["header2"], "value1,value2");
  EXPECT_FALSE(e["headers"].contains("cookie"));  // moved to "cookies"
  EXPECT_EQ(e["queryStringParameters"],
            json({{"parameter1", "value1,value2"}, {"parameter2", "value"}}));
  const json& rc = e["requestContext"];
  EXPECT_EQ(rc["accountId"], kAccountId);
  EXPECT_EQ(rc["apiId"], kApiId);
  EXPECT_EQ(rc["domainName"], "id.execute-api.us-east-1.amazonaws.com");
  EXPECT_EQ(rc["domainPrefix"], "id");
  EXPECT_EQ(rc["http"], json({{"method", "POST"},
                              {"path", "/my/path"},
                              {"protocol", "HTTP/1.1"},
                              {"sourceIp", "192.0.2.1"},
                              {"userAgent", "agent"}}));
  EXPECT_EQ(rc["requestId"], "id");
  EXPECT_EQ(rc["routeKey"], "$default");
  EXPECT_EQ(rc["stage"], "$default");
  EXPECT_EQ(rc["time"], "04/Mar/2020:19:03:58 +0000");
  EXPECT_EQ(rc["timeEpoch"], 1583348638390);
  EXPECT_FALSE(rc.contains("authorizer"));
  EXPECT_EQ(e["body"], "Hello from Lambda");
  EXPECT_EQ(e["pathParameters"], json({{"parameter1", "value1"}}));
  EXPECT_EQ(e["isBase64Encoded"], false);
  EXPECT_FALSE(e.contains("stageVariables"));
}

TEST(GatewayEvent, V2OmitsAbsentPartsAndCarriesJwt) {
  net::Request r;
  r.method = "GET";
  r.target = "/";
  r.path = "/";
  r.remote_addr = "127.0.0.1";
  EventContext c = example_context();
  c.path_parameters.clear();
  c.jwt = true;
  c.jwt_claims = {{"sub", "u1"}, {"exp", "1583352178"}};
  c.jwt_scopes = {"read"};
  json e = json::parse(build_event_v2(r, c));
  EXPECT_FALSE(e.contains("cookies"));
  EXPECT_FALSE(e.contains("queryStringParameters"));
  EXPECT_FALSE(e.contains("pathParameters"));
  EXPECT_FALSE(e.contains("body"));
  EXPECT_EQ(e["isBase64Encoded"], false);
  EXPECT_EQ(e["rawQueryString"], "");
  EXPECT_EQ(e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"], "u1");
  EXPECT_EQ(e["requestContext"]["authorizer"]["jwt"]["claims"]["exp"], "1583352178");
  EXPECT_EQ(e["requestContext"]["authorizer"]["jwt"]["scopes"], json::array({"read"}));
}

// Paths and headers are bytes on the wire; the event must still be JSON that
// a strict parser (Python's, in the runtime) accepts: escapes as JSON wants
// them, well-formed UTF-8 kept, anything else replaced by U+FFFD.
TEST(GatewayEvent, V2IsValidJsonForAnyBytes) {
  net::Request r;
  r.method = "GET";
  r.target = "/a\"b\\c";
  r.path = r.target;
  r.remote_addr = "127.0.0.1";
  const std::string good = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
  r.headers = {{"X-Ctl", std::string("tab\there\x01\x1f nl\n", 15)},
               {"X-Good", good},
               {"X-Bad",
                "a\xC0\x80"
                "b\xED\xA0\x80"
                "c\xF5\x80"
                "d\xE2\x82"},
               {"User-Agent", "ua"}};
  std::string text = build_event_v2(r, example_context());
  json e = json::parse(text);  // throws on invalid UTF-8 or bad escapes
  EXPECT_EQ(e["rawPath"], "/a\"b\\c");
  EXPECT_EQ(e["headers"]["x-ctl"], std::string("tab\there\x01\x1f nl\n", 15));
  EXPECT_EQ(e["headers"]["x-good"], good);
  std::string bad = e["headers"]["x-bad"];
  EXPECT_EQ(bad.find('\xC0'), std::string::npos);
  EXPECT_EQ(bad.find("\xED\xA0"), std::string::npos);
  EXPECT_NE(bad.find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_EQ(bad.front(), 'a');
  EXPECT_EQ(e["requestContext"]["http"]["userAgent"], "ua");
}

TEST(GatewayEvent, BinaryBodiesAreBase64) {
  net::Request r = example_request();
  r.headers = {{"Content-Type", "image/png"}};
  r.body = std::string("\x89PNG\0\x01", 6);
  json e = json::parse(build_event_v2(r, example_context()));
  EXPECT_EQ(e["isBase64Encoded"], true);
  EXPECT_EQ(base64_decode(e["body"].get<std::string>()), r.body);
  EXPECT_TRUE(is_text_body("application/json; charset=utf-8", "{}"));
  EXPECT_TRUE(is_text_body("application/vnd.api+json", "{}"));
  EXPECT_TRUE(is_text_body("", "plain"));
  EXPECT_FALSE(is_text_body("", std::string("\xff\xfe", 2)));
  EXPECT_FALSE(is_text_body("application/octet-stream", "abc"));
}

TEST(GatewayEvent, V1MatchesTheDocumentedExample) {
  EventContext c = example_context();
  c.route_key = "POST /my/path";
  c.resource_path = "/my/path";
  json e = json::parse(build_event_v1(example_request(), c));
  EXPECT_EQ(e["version"], "1.0");
  EXPECT_EQ(e["resource"], "/my/path");
  EXPECT_EQ(e["path"], "/my/path");
  EXPECT_EQ(e["httpMethod"], "POST");
  EXPECT_EQ(e["headers"]["header2"], "value2");
  EXPECT_EQ(e["multiValueHeaders"]["header2"], json::array({"value1", "value2"}));
  EXPECT_EQ(e["queryStringParameters"]["parameter1"], "value2");
  EXPECT_EQ(e["multiValueQueryStringParameters"]["parameter1"], json::array({"value1", "value2"}));
  EXPECT_EQ(e["requestContext"]["identity"]["sourceIp"], "192.0.2.1");
  EXPECT_EQ(e["requestContext"]["httpMethod"], "POST");
  EXPECT_EQ(e["requestContext"]["requestTimeEpoch"], 1583348638390);
  EXPECT_EQ(e["requestContext"]["authorizer"]["claims"], nullptr);
  EXPECT_EQ(e["pathParameters"], json({{"parameter1", "value1"}}));
  EXPECT_EQ(e["stageVariables"], nullptr);
  EXPECT_EQ(e["body"], "Hello from Lambda");
  EXPECT_EQ(e["isBase64Encoded"], false);
}

std::string header(const net::Response& r, const std::string& name) {
  std::string out;
  for (const auto& [k, v] : r.headers) {
    if (k == name) out += (out.empty() ? "" : "|") + v;
  }
  return out;
}

TEST(GatewayResponse, V2ObjectWithStatusCode) {
  auto r = map_response_v2(
      R"({"statusCode":201,"headers":{"x-a":"1","x-n":5},"cookies":["a=1","b=2"],"body":"hi"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "hi");
  EXPECT_EQ(header(*r, "x-a"), "1");
  EXPECT_EQ(header(*r, "x-n"), "5");
  EXPECT_EQ(header(*r, "Set-Cookie"), "a=1|b=2");
}

TEST(GatewayResponse, V2Base64Body) {
  auto r = map_response_v2(R"({"statusCode":200,"body":"AAEC","isBase64Encoded":true})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, std::string("\0\1\2", 3));
  EXPECT_FALSE(map_response_v2(R"({"statusCode":200,"body":"@@","isBase64Encoded":true})").ok());
}

TEST(GatewayResponse, V2OtherJsonIsA200JsonBody) {
  for (const char* payload : {R"({"a":1})", "[1,2]", "42", "true", "null"}) {
    auto r = map_response_v2(payload);
    ASSERT_TRUE(r.ok()) << payload;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, payload);
    EXPECT_EQ(header(*r, "Content-Type"), "application/json");
  }
  auto s = map_response_v2(R"("Hello from Lambda!")");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->body, "Hello from Lambda!");
}

// map_response_v2 answers most payloads without nlohmann (a quick check of
// a strict subset of JSON): whatever it says must be what nlohmann's parse
// implies, for tricky texts and for many mutations of them.
TEST(GatewayResponse, V2QuickPathAgreesWithNlohmann) {
  std::vector<std::string> seeds = {R"({"a":1})",
                                    "[1,2]",
                                    "{}",
                                    "[]",
                                    " {\"a\" : [ 1 , -2.5 , 0 , true , false , null ] }\n",
                                    R"({"k":"v\"\\\/\b\f\n\r\t"})",
                                    R"({"k":"\u0041"})",
                                    R"({"k":"\ud83d\ude00"})",
                                    R"({"k":"\ud83d"})",
                                    "{\"k\":\"\xc3\xa9\"}",
                                    "{\"k\":\"\xc3\"}",
                                    "{\"k\":\"\xed\xa0\x80\"}",
                                    "{\"k\":\"\xf4\x90\x80\x80\"}",
                                    "{\"k\":\"\xf0\x9f\x98\x80\"}",
                                    "\xef\xbb\xbf{\"a\":1}",
                                    R"({"a":01})",
                                    R"({"a":1.})",
                                    R"({"a":.5})",
                                    R"({"a":-})",
                                    R"({"a":1e5})",
                                    R"({"a":1e999})",
                                    R"({"a":123456789012345678901234567890})",
                                    R"({"a":-0.000000000000000000000000001})",
                                    R"({"statusCode":200,"body":"x"})",
                                    R"({"a":{"statusCode":1}})",
                                    R"([{"statusCode":1}])",
                                    R"({"statusCod":1})",
                                    R"({"a":1,})",
                                    R"([1,])",
                                    R"({"a" 1})",
                                    R"({"a":1}x)",
                                    R"({"a":1}{})",
                                    "{\"a\":\"\t\"}",
                                    "{\"a\":\"\x7f\"}",
                                    R"({"a":tru})",
                                    R"({"a":truex})",
                                    R"({"a":nul})",
                                    R"({"a":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]})",
                                    "[",
                                    "{",
                                    "",
                                    " ",
                                    "\"s\"",
                                    "42",
                                    R"({"a":"x\q"})",
                                    R"({1:2})",
                                    R"({"a":[1 2]})"};
  std::string deep(100, '[');
  deep += std::string(100, ']');
  seeds.push_back(deep);
  auto check = [](const std::string& payload) {
    json doc = json::parse(payload, nullptr, false);
    if (!doc.is_discarded() && doc.is_object() && doc.contains("statusCode")) return;
    auto r = map_response_v2(payload);
    ASSERT_EQ(r.ok(), !doc.is_discarded()) << payload;
    if (!r.ok()) return;
    EXPECT_EQ(r->status, 200) << payload;
    EXPECT_EQ(r->body, doc.is_string() ? doc.get<std::string>() : payload) << payload;
  };
  for (const auto& s : seeds) check(s);
  // Mutations: one byte replaced, dropped or doubled, from a fixed seed.
  uint32_t rng = 12345;
  auto next = [&] { return rng = rng * 1103515245u + 12345u, rng >> 8; };
  const char alphabet[] = "{}[]\",:\\ 0123456789.-+eEtrufalsn\x80\xc3\xa9\xff\x01u/";
  for (int round = 0; round < 20000; ++round) {
    std::string s = seeds[next() % seeds.size()];
    if (s.empty()) continue;
    size_t at = next() % s.size();
    switch (next() % 3) {
      case 0:
        s[at] = alphabet[next() % (sizeof alphabet - 1)];
        break;
      case 1:
        s.erase(at, 1);
        break;
      default:
        s.insert(at, 1, s[at]);
    }
    check(s);
    if (HasFatalFailure()) return;
  }
}

TEST(GatewayResponse, MalformedAnswersAreErrors) {
  EXPECT_FALSE(map_response_v2("not json").ok());
  EXPECT_FALSE(map_response_v2(R"({"statusCode":"abc"})").ok());
  EXPECT_FALSE(map_response_v2(R"({"statusCode":99})").ok());
  EXPECT_FALSE(map_response_v1(R"({"a":1})").ok());
  EXPECT_FALSE(map_response_v1("\"text\"").ok());
}

TEST(GatewayResponse, V1MultiValueHeaders) {
  auto r = map_response_v1(
      R"({"statusCode":"404","headers":{"x-a":"h","x-b":"b"},"multiValueHeaders":{"x-a":["m1","m2"]},"body":"no"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(header(*r, "x-a"), "m1|m2");
  EXPECT_EQ(header(*r, "x-b"), "b");
}

TEST(GatewayResponse, ErrorBodies) {
  EXPECT_EQ(gateway_error(502).body, R"({"message":"Internal Server Error"})");
  EXPECT_EQ(gateway_error(504).body, R"({"message":"Service Unavailable"})");
  EXPECT_EQ(gateway_error(429).body, R"({"message":"Too Many Requests"})");
  EXPECT_EQ(gateway_error(404).body, R"({"message":"Not Found"})");
  EXPECT_EQ(gateway_error(401).body, R"({"message":"Unauthorized"})");
  EXPECT_EQ(gateway_error(403).body, R"({"message":"Forbidden"})");
}

}  // namespace
}  // namespace tamaya::gateway
