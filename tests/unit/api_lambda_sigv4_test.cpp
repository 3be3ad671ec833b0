#include <gtest/gtest.h>

#include "api/lambda_sigv4.h"

namespace tamaya::api {
namespace {

// A request signed by botocore 1.29 (SigV4Auth, fixed clock 2015-08-30T12:36:00Z): a full ARN
// in the path, percent-encoded, a query string and a JSON body.
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kAuthorization =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/lambda/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type, "
    "Signature=8937b74c537c50803023c3291297b5be098123696a5ff1ff64d080205f3ce4f9";

net::Request signed_request() {
  net::Request r;
  r.method = "POST";
  r.target =
      "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello/"
      "invocations?Qualifier=%24LATEST";
  r.path = "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:hello/invocations";
  r.query = "Qualifier=%24LATEST";
  r.headers = {{"Host", "127.0.0.1:9000"},
               {"Content-Type", "application/json"},
               {"X-Amz-Invocation-Type", "RequestResponse"},
               {"X-Amz-Date", "20150830T123600Z"},
               {"Authorization", kAuthorization}};
  r.body = R"({"a": 1})";
  return r;
}

TEST(LambdaSigV4, ParsesTheAuthorizationHeader) {
  auto c = parse_authorization(kAuthorization);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->access_key, "AKIDEXAMPLE");
  EXPECT_EQ(c->date, "20150830");
  EXPECT_EQ(c->region, "us-east-1");
  EXPECT_EQ(c->service, "lambda");
  EXPECT_EQ(c->signed_headers, "content-type;host;x-amz-date;x-amz-invocation-type");
  EXPECT_FALSE(parse_authorization("Basic dXNlcjpwYXNz").has_value());
  EXPECT_FALSE(parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/2015, Signature=ab"));
}

TEST(LambdaSigV4, ComputesTheSignatureBotocoreComputes) {
  net::Request r = signed_request();
  auto c = parse_authorization(kAuthorization);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(sigv4_signature(r, *c, kSecret), c->signature);
}

TEST(LambdaSigV4, VerifiesAgainstConfiguredKeys) {
  net::Request r = signed_request();
  EXPECT_TRUE(verify_sigv4(r, {{"AKIDEXAMPLE", kSecret}}).ok());
  Status wrong = verify_sigv4(r, {{"AKIDEXAMPLE", "another-secret"}});
  EXPECT_EQ(wrong.code(), Code::kPermissionDenied);
  EXPECT_NE(wrong.message().find("signature"), std::string::npos);
  EXPECT_EQ(verify_sigv4(r, {{"AKIDOTHER", kSecret}}).code(), Code::kPermissionDenied);
  r.body = R"({"a": 2})";  // the body is signed
  EXPECT_EQ(verify_sigv4(r, {{"AKIDEXAMPLE", kSecret}}).code(), Code::kPermissionDenied);
  net::Request unsigned_request = signed_request();
  unsigned_request.headers.pop_back();
  EXPECT_EQ(verify_sigv4(unsigned_request, {{"AKIDEXAMPLE", kSecret}}).code(),
            Code::kPermissionDenied);
}

TEST(LambdaSigV4, AccountsAreTwelveDigitsAndStablePerKey) {
  std::string a = account_for("AKIDEXAMPLE");
  EXPECT_EQ(a.size(), 12u);
  EXPECT_EQ(a.find_first_not_of("0123456789"), std::string::npos);
  EXPECT_EQ(account_for("AKIDEXAMPLE"), a);
  EXPECT_NE(account_for("AKIDOTHER"), a);
  EXPECT_EQ(account_for(""), kDefaultAccount);
}

TEST(LambdaSigV4, ParsesTheKeysSetting) {
  auto keys = parse_keys("AKID1:s1, AKID2:s:2");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->at("AKID1"), "s1");
  EXPECT_EQ(keys->at("AKID2"), "s:2");
  EXPECT_FALSE(parse_keys("AKID1").ok());
  EXPECT_TRUE(parse_keys("")->empty());
}

}  // namespace
}  // namespace tamaya::api
