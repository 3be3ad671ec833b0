// Function URL configs (Lambda's request shapes), their addressing by Host
// and by path prefix, the function URL event, and the persisted daily quota.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "gateway/event.h"
#include "gateway/function_urls.h"
#include "gateway/limiter.h"

namespace tamaya::gateway {
namespace {

using nlohmann::json;

TEST(GatewayFunctionUrl, CreateNeedsAuthType) {
  FunctionUrl u;
  EXPECT_EQ(apply_function_url_request(json::object(), true, &u).code(), Code::kInvalidArgument);
  EXPECT_TRUE(apply_function_url_request(json::object(), false, &u).ok());
  EXPECT_TRUE(apply_function_url_request({{"AuthType", "AWS_IAM"}}, true, &u).ok());
  EXPECT_EQ(u.auth, UrlAuth::kAwsIam);
  EXPECT_EQ(u.invoke_mode, "BUFFERED");
  EXPECT_FALSE(u.cors.has_value());
}

TEST(GatewayFunctionUrl, RejectsWhatLambdaRejectsOrTamayaLacks) {
  FunctionUrl u;
  for (const json& body :
       {json{{"AuthType", "OPEN"}}, json{{"AuthType", "NONE"}, {"X", 1}},
        json{{"AuthType", "NONE"}, {"InvokeMode", "RESPONSE_STREAM"}},
        json{{"AuthType", "NONE"}, {"InvokeMode", "FAST"}},
        json{{"AuthType", "NONE"}, {"Cors", {{"MaxAge", 86'401}}}},
        json{{"AuthType", "NONE"}, {"Cors", {{"AllowOrigins", "*"}}}},
        json{{"AuthType", "NONE"}, {"Cors", {{"Allow", true}}}}, json::array()}) {
    EXPECT_EQ(apply_function_url_request(body, true, &u).code(), Code::kInvalidArgument)
        << body.dump();
  }
}

TEST(GatewayFunctionUrl, UpdateKeepsWhatItDoesNotName) {
  FunctionUrl u;
  ASSERT_TRUE(apply_function_url_request({{"AuthType", "NONE"},
                                          {"Cors",
                                           {{"AllowOrigins", {"https://a.example"}},
                                            {"AllowMethods", {"get"}},
                                            {"MaxAge", 60},
                                            {"AllowCredentials", true}}}},
                                         true, &u)
                  .ok());
  ASSERT_TRUE(u.cors);
  EXPECT_EQ(u.cors->allow_methods, std::vector<std::string>{"GET"});
  ASSERT_TRUE(apply_function_url_request({{"AuthType", "AWS_IAM"}}, false, &u).ok());
  EXPECT_EQ(u.auth, UrlAuth::kAwsIam);
  ASSERT_TRUE(u.cors);
  EXPECT_EQ(u.cors->max_age_s, 60);
  ASSERT_TRUE(apply_function_url_request({{"Cors", nullptr}}, false, &u).ok());
  EXPECT_FALSE(u.cors);
}

TEST(GatewayFunctionUrl, StorageRoundTripAndAnswer) {
  FunctionUrl u;
  ASSERT_TRUE(
      apply_function_url_request(
          {{"AuthType", "NONE"}, {"Cors", {{"AllowOrigins", {"*"}}, {"MaxAge", 5}}}}, true, &u)
          .ok());
  u.url_id = "0123456789abcdef0123456789abcdef";
  u.function = "fn";
  u.qualifier = "live";
  u.region = "us-east-1";
  u.created_ms = 1'700'000'000'000;
  u.modified_ms = 1'700'000'001'000;
  auto back = function_url_from_storage(function_url_to_storage(u));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(function_url_to_storage(*back), function_url_to_storage(u));

  json a = function_url_answer(u, 8080);
  EXPECT_EQ(a["FunctionUrl"],
            "http://0123456789abcdef0123456789abcdef.lambda-url.us-east-1.localhost:8080/");
  EXPECT_EQ(a["AuthType"], "NONE");
  EXPECT_EQ(a["InvokeMode"], "BUFFERED");
  EXPECT_EQ(a["Cors"]["AllowOrigins"], json({"*"}));
  EXPECT_EQ(a["Cors"]["MaxAge"], 5);
  EXPECT_EQ(a["Cors"]["AllowCredentials"], false);
  EXPECT_TRUE(a["CreationTime"].is_string());
  EXPECT_TRUE(a["LastModifiedTime"].is_string());
}

TEST(GatewayFunctionUrl, AddressedByHost) {
  EXPECT_EQ(url_id_from_host("abc123.lambda-url.us-east-1.localhost:8080"), "abc123");
  EXPECT_EQ(url_id_from_host("ABC123.lambda-url.eu-west-1.on.aws"), "abc123");
  EXPECT_FALSE(url_id_from_host("127.0.0.1:8080"));
  EXPECT_FALSE(url_id_from_host(".lambda-url.us-east-1.localhost"));
  EXPECT_FALSE(url_id_from_host("a_b.lambda-url.x"));
  EXPECT_FALSE(url_id_from_host("api.example.com"));
}

TEST(GatewayFunctionUrl, AddressedByPathPrefix) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(url_id_from_path("/lambda-url/abc123"), (P{"abc123", "/"}));
  EXPECT_EQ(url_id_from_path("/lambda-url/abc123/"), (P{"abc123", "/"}));
  EXPECT_EQ(url_id_from_path("/lambda-url/abc123/my/path"), (P{"abc123", "/my/path"}));
  EXPECT_FALSE(url_id_from_path("/lambda-url/"));
  EXPECT_FALSE(url_id_from_path("/lambda-url//x"));
  EXPECT_FALSE(url_id_from_path("/lambda-url/AB%2F/x"));
  EXPECT_FALSE(url_id_from_path("/items/1"));
}

TEST(GatewayFunctionUrl, EventAsLambdaSendsIt) {
  net::Request r;
  r.method = "POST";
  r.target = "/lambda-url/abc123/my/path?a=1";
  r.path = "/lambda-url/abc123/my/path";
  r.query = "a=1";
  r.headers = {{"Host", "127.0.0.1:8080"}, {"Content-Type", "application/json"}};
  r.body = "{}";
  r.remote_addr = "127.0.0.1";
  EventContext c;
  c.route_key = "$default";
  c.request_id = "rid";
  c.time_ms = 1'700'000'000'000;
  c.account_id = "123456789012";
  c.api_id = "abc123";
  c.domain_name = "abc123.lambda-url.us-east-1.localhost";
  c.raw_path = "/my/path";
  c.iam = true;
  c.iam_access_key = "AKIDEXAMPLE";
  json e = json::parse(build_event_v2(r, c));
  EXPECT_EQ(e["version"], "2.0");
  EXPECT_EQ(e["routeKey"], "$default");
  EXPECT_EQ(e["rawPath"], "/my/path");
  EXPECT_EQ(e["rawQueryString"], "a=1");
  const json& ctx = e["requestContext"];
  EXPECT_EQ(ctx["http"]["path"], "/my/path");
  EXPECT_EQ(ctx["accountId"], "123456789012");
  EXPECT_EQ(ctx["apiId"], "abc123");
  EXPECT_EQ(ctx["domainName"], "abc123.lambda-url.us-east-1.localhost");
  EXPECT_EQ(ctx["domainPrefix"], "abc123");
  EXPECT_EQ(ctx["authorizer"]["iam"]["accessKey"], "AKIDEXAMPLE");
  EXPECT_EQ(ctx["authorizer"]["iam"]["accountId"], "123456789012");
  EXPECT_EQ(e["body"], "{}");
  EXPECT_EQ(e["isBase64Encoded"], false);
}

TEST(GatewayDailyQuota, RestoredCountCountsTodayOnly) {
  constexpr int64_t kDay = 20'000;
  DailyQuota q(3);
  q.restore(kDay, 2);
  int retry = 0;
  int64_t noon = kDay * DailyQuota::kDayMs + DailyQuota::kDayMs / 2;
  EXPECT_TRUE(q.take(noon, &retry));
  EXPECT_FALSE(q.take(noon + 1, &retry));
  EXPECT_EQ(retry, 12 * 3600);  // until UTC midnight
  EXPECT_EQ(q.used(), 3);
  // A count restored from yesterday does not limit today.
  DailyQuota old(3);
  old.restore(kDay - 1, 3);
  EXPECT_TRUE(old.take(noon, &retry));
  EXPECT_EQ(old.used(), 1);
  EXPECT_EQ(old.day(), kDay);
}

}  // namespace
}  // namespace tamaya::gateway
