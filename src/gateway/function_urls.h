// Lambda function URLs served by the gateway (docs/api.md, "Function URLs").
// A function URL config belongs to a function (unqualified = $LATEST, or an
// alias) and gets a random url id; requests reach it by Host
// (`<url-id>.lambda-url.<region>.localhost`) or, without DNS, by the path
// prefix `/lambda-url/<url-id>/`. The Lambda API (api/lambda_urls.h) manages
// the configs through callbacks wired in daemon/serve.cpp, so neither module
// links the other; the shapes here are Lambda's (AuthType, Cors, InvokeMode).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"
#include "gateway/model.h"

namespace tamaya::gateway {

// The path prefix of the DNS-free form: /lambda-url/<url-id>/rest/of/path.
inline constexpr std::string_view kFunctionUrlPathPrefix = "/lambda-url/";
// The label after the url id in the Host form.
inline constexpr std::string_view kFunctionUrlHostLabel = ".lambda-url.";

enum class UrlAuth { kNone, kAwsIam };

struct FunctionUrl {
  std::string url_id;     // 32 lower-case hex characters, as Lambda's
  std::string function;   // the function's name
  std::string qualifier;  // "" (unqualified: $LATEST) or an alias name
  UrlAuth auth = UrlAuth::kNone;
  std::string invoke_mode = "BUFFERED";
  std::optional<CorsConfig> cors;  // absent: no CORS headers at all
  std::string region;              // of the URL's host name, fixed at creation
  int64_t created_ms = 0;
  int64_t modified_ms = 0;
};

// Applies a CreateFunctionUrlConfig (create = true: AuthType required) or
// UpdateFunctionUrlConfig body to `url`. InvalidArgument names the field.
Status apply_function_url_request(const nlohmann::json& body, bool create, FunctionUrl* url);

// Lambda's Cors object ({AllowCredentials, AllowHeaders, AllowMethods,
// AllowOrigins, ExposeHeaders, MaxAge}) and back.
Result<CorsConfig> function_url_cors_from_json(const nlohmann::json& doc);
nlohmann::json function_url_cors_to_json(const CorsConfig& cors);

// The stored form (all fields) and back.
nlohmann::json function_url_to_storage(const FunctionUrl& url);
Result<FunctionUrl> function_url_from_storage(const nlohmann::json& doc);

// The answer of Create/Get/Update/ListFunctionUrlConfigs without FunctionArn
// (the Lambda API adds it, knowing the caller's account).
nlohmann::json function_url_answer(const FunctionUrl& url, int gateway_port);

// "http://<url-id>.lambda-url.<region>.localhost:<port>/".
std::string function_url_address(const FunctionUrl& url, int gateway_port);

// The url id of a Host header "<url-id>.lambda-url.<anything>[:port]", if
// it has that shape (lower-cased; the caller looks it up).
std::optional<std::string> url_id_from_host(std::string_view host);

// For a raw path "/lambda-url/<url-id>[/rest]": the url id and the path the
// function sees ("/rest", or "/" when empty).
std::optional<std::pair<std::string, std::string>> url_id_from_path(std::string_view raw_path);

}  // namespace tamaya::gateway
