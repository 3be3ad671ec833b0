// The events a gateway route sends its function, in API Gateway HTTP API
// payload formats 2.0 and 1.0, and the mapping of the function's answer back
// to HTTP by AWS's documented rules. Pure functions: no I/O, fuzzed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "net/http.h"

namespace tamaya::gateway {

// API Gateway reports an account and an API id; a single-host gateway has
// neither, so these fixed values stand in (documented in docs/api.md).
inline constexpr const char* kAccountId = "000000000000";
inline constexpr const char* kApiId = "tamaya";
inline constexpr const char* kStage = "$default";

struct EventContext {
  std::string route_key;      // "GET /items/{id}" or "$default"
  std::string resource_path;  // the route's path ("/items/{id}"), 1.0's resource
  std::map<std::string, std::string> path_parameters;
  std::string request_id;
  int64_t time_ms = 0;  // wall clock, ms since the epoch
  bool jwt = false;     // requestContext.authorizer.jwt present
  std::map<std::string, std::string> jwt_claims;
  std::vector<std::string> jwt_scopes;
  // Function URLs (empty: the gateway's own values): requestContext's
  // accountId, apiId and domainName, and rawPath/http.path when the URL was
  // reached by the /lambda-url/<id>/ path prefix.
  std::string account_id;
  std::string api_id;
  std::string domain_name;
  std::string raw_path;
  bool iam = false;  // requestContext.authorizer.iam present (AWS_IAM URL)
  std::string iam_access_key;
};

// True for bodies passed as text (isBase64Encoded false): text/*, JSON, XML,
// JavaScript, form data and +json/+xml types; a missing Content-Type counts
// as text when the body is valid UTF-8.
bool is_text_body(std::string_view content_type, std::string_view body);

// "25/Nov/2026:10:00:00 +0000", API Gateway's requestContext.time.
// Valid until the calling thread's next call (a per-thread cache: the
// requests of one second share it).
const std::string& clf_time(int64_t time_ms);

std::string build_event_v2(const net::Request& request, const EventContext& context);
std::string build_event_v1(const net::Request& request, const EventContext& context);

// The HTTP answer for a function's response payload. Not ok (→ 502) when
// the payload does not follow the format's rules: not JSON, a statusCode
// that is not an integer 100..599, a body that is not valid base64 when
// isBase64Encoded, and for 1.0 anything but an object with statusCode.
Result<net::Response> map_response_v2(std::string_view payload);
Result<net::Response> map_response_v1(std::string_view payload);

// {"message": "..."} with the status, as API Gateway words its own errors.
net::Response gateway_error(int status);

}  // namespace tamaya::gateway
