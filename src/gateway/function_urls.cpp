#include "gateway/function_urls.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "common/time_format.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

// Lambda's own bounds on a function URL's Cors object.
constexpr size_t kMaxCorsItems = 100;
constexpr int64_t kMaxCorsMaxAge = 86'400;

Status cors_list(const json& doc, const char* key, std::vector<std::string>* out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (!it->is_array() || it->size() > kMaxCorsItems) {
    return Status::Invalid(
        fmt::format("Cors.{} must be a list of at most {} strings", key, kMaxCorsItems));
  }
  for (const auto& v : *it) {
    if (!v.is_string() || v.get<std::string>().empty()) {
      return Status::Invalid(fmt::format("Cors.{} must be a list of non-empty strings", key));
    }
    out->push_back(v.get<std::string>());
  }
  return Status::Ok();
}

const char* auth_text(UrlAuth a) { return a == UrlAuth::kAwsIam ? "AWS_IAM" : "NONE"; }

bool url_id_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

Result<CorsConfig> function_url_cors_from_json(const json& doc) {
  if (!doc.is_object()) {
    return Status::Invalid(
        "Cors must be an object: {AllowCredentials, AllowHeaders, AllowMethods, AllowOrigins, "
        "ExposeHeaders, MaxAge}");
  }
  for (const auto& [k, v] : doc.items()) {
    if (k != "AllowCredentials" && k != "AllowHeaders" && k != "AllowMethods" &&
        k != "AllowOrigins" && k != "ExposeHeaders" && k != "MaxAge") {
      return Status::Invalid("unknown field Cors." + k +
                             "; known: AllowCredentials, AllowHeaders, AllowMethods, "
                             "AllowOrigins, ExposeHeaders, MaxAge");
    }
  }
  CorsConfig c;
  TAMAYA_RETURN_IF_ERROR(cors_list(doc, "AllowOrigins", &c.allow_origins));
  TAMAYA_RETURN_IF_ERROR(cors_list(doc, "AllowMethods", &c.allow_methods));
  TAMAYA_RETURN_IF_ERROR(cors_list(doc, "AllowHeaders", &c.allow_headers));
  TAMAYA_RETURN_IF_ERROR(cors_list(doc, "ExposeHeaders", &c.expose_headers));
  for (auto& m : c.allow_methods) {
    std::transform(m.begin(), m.end(), m.begin(),
                   [](unsigned char ch) { return char(std::toupper(ch)); });
  }
  if (auto it = doc.find("MaxAge"); it != doc.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > kMaxCorsMaxAge) {
      return Status::Invalid(fmt::format("Cors.MaxAge must be an integer 0..{}", kMaxCorsMaxAge));
    }
    c.max_age_s = it->get<int64_t>();
  }
  if (auto it = doc.find("AllowCredentials"); it != doc.end() && !it->is_null()) {
    if (!it->is_boolean()) return Status::Invalid("Cors.AllowCredentials must be true or false");
    c.allow_credentials = it->get<bool>();
  }
  return c;
}

json function_url_cors_to_json(const CorsConfig& c) {
  json j = {{"AllowCredentials", c.allow_credentials}, {"MaxAge", c.max_age_s}};
  if (!c.allow_headers.empty()) j["AllowHeaders"] = c.allow_headers;
  if (!c.allow_methods.empty()) j["AllowMethods"] = c.allow_methods;
  if (!c.allow_origins.empty()) j["AllowOrigins"] = c.allow_origins;
  if (!c.expose_headers.empty()) j["ExposeHeaders"] = c.expose_headers;
  return j;
}

Status apply_function_url_request(const json& body, bool create, FunctionUrl* url) {
  if (!body.is_object()) return Status::Invalid("the request body must be a JSON object");
  for (const auto& [k, v] : body.items()) {
    if (k != "AuthType" && k != "Cors" && k != "InvokeMode") {
      return Status::Invalid("unknown field '" + k + "'; known: AuthType, Cors, InvokeMode");
    }
  }
  auto auth = body.find("AuthType");
  if (auth == body.end() || auth->is_null()) {
    if (create) return Status::Invalid("AuthType is required: NONE or AWS_IAM");
  } else if (*auth == "NONE") {
    url->auth = UrlAuth::kNone;
  } else if (*auth == "AWS_IAM") {
    url->auth = UrlAuth::kAwsIam;
  } else {
    return Status::Invalid("AuthType must be NONE or AWS_IAM");
  }
  if (auto mode = body.find("InvokeMode"); mode != body.end() && !mode->is_null()) {
    if (*mode == "RESPONSE_STREAM") {
      return Status::Invalid(
          "InvokeMode RESPONSE_STREAM is not supported by tamaya; use BUFFERED (the default)");
    }
    if (*mode != "BUFFERED") return Status::Invalid("InvokeMode must be BUFFERED");
    url->invoke_mode = "BUFFERED";
  }
  if (auto cors = body.find("Cors"); cors != body.end()) {
    if (cors->is_null()) {
      url->cors.reset();
    } else {
      TAMAYA_ASSIGN_OR_RETURN(CorsConfig c, function_url_cors_from_json(*cors));
      url->cors = std::move(c);
    }
  }
  return Status::Ok();
}

json function_url_to_storage(const FunctionUrl& u) {
  json j = {{"url_id", u.url_id},           {"function", u.function},
            {"qualifier", u.qualifier},     {"auth", auth_text(u.auth)},
            {"invoke_mode", u.invoke_mode}, {"region", u.region},
            {"created_ms", u.created_ms},   {"modified_ms", u.modified_ms}};
  if (u.cors) j["cors"] = function_url_cors_to_json(*u.cors);
  return j;
}

Result<FunctionUrl> function_url_from_storage(const json& doc) {
  if (!doc.is_object()) return Status::Invalid("a stored function URL must be an object");
  FunctionUrl u;
  try {
    u.url_id = doc.at("url_id").get<std::string>();
    u.function = doc.at("function").get<std::string>();
    u.qualifier = doc.at("qualifier").get<std::string>();
    u.auth = doc.at("auth") == "AWS_IAM" ? UrlAuth::kAwsIam : UrlAuth::kNone;
    u.invoke_mode = doc.at("invoke_mode").get<std::string>();
    u.region = doc.at("region").get<std::string>();
    u.created_ms = doc.at("created_ms").get<int64_t>();
    u.modified_ms = doc.at("modified_ms").get<int64_t>();
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("a stored function URL is malformed: ") + e.what());
  }
  if (auto c = doc.find("cors"); c != doc.end()) {
    TAMAYA_ASSIGN_OR_RETURN(CorsConfig cors, function_url_cors_from_json(*c));
    u.cors = std::move(cors);
  }
  return u;
}

std::string function_url_address(const FunctionUrl& u, int gateway_port) {
  return fmt::format("http://{}{}{}.localhost:{}/", u.url_id, kFunctionUrlHostLabel, u.region,
                     gateway_port);
}

json function_url_answer(const FunctionUrl& u, int gateway_port) {
  json j = {{"FunctionUrl", function_url_address(u, gateway_port)},
            {"AuthType", auth_text(u.auth)},
            {"CreationTime", format_iso8601(u.created_ms)},
            {"LastModifiedTime", format_iso8601(u.modified_ms)},
            {"InvokeMode", u.invoke_mode}};
  if (u.cors) j["Cors"] = function_url_cors_to_json(*u.cors);
  return j;
}

std::optional<std::string> url_id_from_host(std::string_view host) {
  size_t label = host.find(kFunctionUrlHostLabel);
  if (label == std::string_view::npos || label == 0 || label > 64) return std::nullopt;
  std::string id;
  for (char c : host.substr(0, label)) {
    c = char(std::tolower(static_cast<unsigned char>(c)));
    if (!url_id_char(c)) return std::nullopt;
    id += c;
  }
  return id;
}

std::optional<std::pair<std::string, std::string>> url_id_from_path(std::string_view path) {
  if (path.substr(0, kFunctionUrlPathPrefix.size()) != kFunctionUrlPathPrefix) {
    return std::nullopt;
  }
  path.remove_prefix(kFunctionUrlPathPrefix.size());
  size_t slash = path.find('/');
  std::string_view id = path.substr(0, slash);
  if (id.empty() || id.size() > 64 || !std::all_of(id.begin(), id.end(), url_id_char)) {
    return std::nullopt;
  }
  std::string rest = slash == std::string_view::npos ? "/" : std::string(path.substr(slash));
  return std::pair{std::string(id), rest};
}

}  // namespace tamaya::gateway
