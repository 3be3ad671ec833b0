#include "gateway/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "gateway/jwt.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

Status string_list(const json& doc, const char* key, std::vector<std::string>* out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (it->is_string()) {
    out->push_back(it->get<std::string>());
    return Status::Ok();
  }
  if (!it->is_array()) return Status::Invalid(fmt::format("'{}' must be a list of strings", key));
  for (const auto& v : *it) {
    if (!v.is_string()) return Status::Invalid(fmt::format("'{}' must be a list of strings", key));
    out->push_back(v.get<std::string>());
  }
  return Status::Ok();
}

Status string_field(const json& doc, const char* key, std::string* out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return Status::Invalid(fmt::format("'{}' must be a string", key));
  *out = it->get<std::string>();
  return Status::Ok();
}

Status unknown_fields(const json& doc, const std::set<std::string>& known, const char* what) {
  for (const auto& [k, v] : doc.items()) {
    if (!known.count(k)) {
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      return Status::Invalid(
          fmt::format("unknown field '{}' in {}; known fields: {}", k, what, list));
    }
  }
  return Status::Ok();
}

}  // namespace

json route_to_json(const Route& r, bool secrets) {
  json j = {{"id", r.id},
            {"route_key", r.route_key()},
            {"method", r.method.empty() ? json(nullptr) : json(r.method)},
            {"path", r.path.empty() ? json(nullptr) : json(r.path)},
            {"target", r.target},
            {"integration", r.async ? "async" : "sync"},
            {"payload_format", r.payload_format},
            {"timeout_ms", r.timeout_ms},
            {"auth", std::string(auth_name(r.auth))},
            {"rate_limit", {{"rate", r.rate_limit.rate}, {"burst", r.rate_limit.burst}}},
            {"created_ms", r.created_ms}};
  if (r.auth == AuthType::kJwt) {
    json jwt = {{"issuer", r.jwt.issuer}, {"audience", r.jwt.audience}, {"scopes", r.jwt.scopes}};
    if (!r.jwt.secret.empty()) jwt["secret"] = secrets ? r.jwt.secret : std::string("(hidden)");
    if (!r.jwt.public_key_pem.empty()) jwt["public_key_pem"] = r.jwt.public_key_pem;
    if (!r.jwt.jwks_file.empty()) jwt["jwks_file"] = r.jwt.jwks_file;
    j["jwt"] = std::move(jwt);
  }
  return j;
}

Result<Route> route_from_json(const json& doc) {
  if (!doc.is_object()) return Status::Invalid("a route must be a JSON object");
  TAMAYA_RETURN_IF_ERROR(
      unknown_fields(doc,
                     {"id", "route_key", "method", "path", "target", "integration",
                      "payload_format", "timeout_ms", "auth", "jwt", "rate_limit", "created_ms"},
                     "the route"));
  Route r;
  std::string key;
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "route_key", &key));
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "method", &r.method));
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "path", &r.path));
  if (!key.empty()) {
    if (key == kDefaultRouteKey) {
      r.method.clear();
      r.path.clear();
    } else {
      size_t sp = key.find(' ');
      if (sp == std::string::npos) {
        return Status::Invalid(
            "'route_key' must be \"METHOD /path\" (e.g. \"GET /items/{id}\") or \"$default\"");
      }
      r.method = key.substr(0, sp);
      r.path = key.substr(sp + 1);
    }
  } else if (r.method.empty() && r.path.empty()) {
    return Status::Invalid(
        "give 'route_key' (\"GET /items/{id}\" or \"$default\"), or 'method' and 'path'");
  }
  if (!r.method.empty() || !r.path.empty()) {
    std::transform(r.method.begin(), r.method.end(), r.method.begin(),
                   [](unsigned char c) { return char(std::toupper(c)); });
    TAMAYA_RETURN_IF_ERROR(validate_route_key(r.method, r.path));
  }
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "target", &r.target));
  if (r.target.empty()) {
    return Status::Invalid("'target' is required: a function name, 'name:version' or 'name:alias'");
  }
  std::string integration = "sync";
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "integration", &integration));
  if (integration != "sync" && integration != "async") {
    return Status::Invalid("'integration' must be 'sync' (default) or 'async'");
  }
  r.async = integration == "async";
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "payload_format", &r.payload_format));
  if (r.payload_format != "2.0" && r.payload_format != "1.0") {
    return Status::Invalid("'payload_format' must be \"2.0\" (default) or \"1.0\"");
  }
  if (auto it = doc.find("timeout_ms"); it != doc.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 900'000) {
      return Status::Invalid(
          "'timeout_ms' must be an integer 0..900000 (0 = the gateway's default)");
    }
    r.timeout_ms = it->get<int64_t>();
  }
  std::string auth = "none";
  TAMAYA_RETURN_IF_ERROR(string_field(doc, "auth", &auth));
  auto type = parse_auth(auth);
  if (!type) return Status::Invalid("'auth' must be 'none', 'api_key' or 'jwt'");
  r.auth = *type;
  if (r.auth == AuthType::kJwt) {
    auto it = doc.find("jwt");
    if (it == doc.end() || !it->is_object()) {
      return Status::Invalid(
          "auth 'jwt' needs 'jwt': {\"issuer\", \"audience\", \"scopes\", and one "
          "of \"secret\", \"public_key_pem\", \"jwks_file\"}");
    }
    const json& j = *it;
    TAMAYA_RETURN_IF_ERROR(unknown_fields(
        j, {"issuer", "audience", "scopes", "secret", "public_key_pem", "jwks_file"}, "'jwt'"));
    TAMAYA_RETURN_IF_ERROR(string_field(j, "issuer", &r.jwt.issuer));
    TAMAYA_RETURN_IF_ERROR(string_list(j, "audience", &r.jwt.audience));
    TAMAYA_RETURN_IF_ERROR(string_list(j, "scopes", &r.jwt.scopes));
    TAMAYA_RETURN_IF_ERROR(string_field(j, "secret", &r.jwt.secret));
    TAMAYA_RETURN_IF_ERROR(string_field(j, "public_key_pem", &r.jwt.public_key_pem));
    TAMAYA_RETURN_IF_ERROR(string_field(j, "jwks_file", &r.jwt.jwks_file));
    auto verifier = JwtVerifier::create(r.jwt);
    if (!verifier.ok()) return verifier.status();
  }
  if (auto it = doc.find("rate_limit"); it != doc.end() && !it->is_null()) {
    if (!it->is_object())
      return Status::Invalid("'rate_limit' must be {\"rate\": N, \"burst\": M}");
    auto rate = it->find("rate");
    auto burst = it->find("burst");
    if (rate != it->end() && (!rate->is_number() || rate->get<double>() < 0)) {
      return Status::Invalid("'rate_limit.rate' must be a number >= 0 (requests per second)");
    }
    if (burst != it->end() && (!burst->is_number_integer() || burst->get<int64_t>() < 0)) {
      return Status::Invalid("'rate_limit.burst' must be an integer >= 0");
    }
    if (rate != it->end()) r.rate_limit.rate = rate->get<double>();
    if (burst != it->end()) r.rate_limit.burst = burst->get<int64_t>();
    if (r.rate_limit.rate > 0 && r.rate_limit.burst == 0) {
      r.rate_limit.burst = std::max<int64_t>(1, int64_t(r.rate_limit.rate));
    }
  }
  return r;
}

json key_to_json(const ApiKey& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"prefix", k.prefix},
          {"usage_plan", {{"rate", k.rate}, {"burst", k.burst}, {"daily_quota", k.daily_quota}}},
          {"created_ms", k.created_ms},
          {"revoked", k.revoked_ms != 0},
          {"revoked_ms", k.revoked_ms}};
}

json cors_to_json(const CorsConfig& c) {
  return {{"allow_origins", c.allow_origins}, {"allow_methods", c.allow_methods},
          {"allow_headers", c.allow_headers}, {"expose_headers", c.expose_headers},
          {"max_age_s", c.max_age_s},         {"allow_credentials", c.allow_credentials}};
}

Result<CorsConfig> cors_from_json(const json& doc) {
  if (!doc.is_object()) return Status::Invalid("the CORS configuration must be a JSON object");
  TAMAYA_RETURN_IF_ERROR(unknown_fields(doc,
                                        {"allow_origins", "allow_methods", "allow_headers",
                                         "expose_headers", "max_age_s", "allow_credentials"},
                                        "the CORS configuration"));
  CorsConfig c;
  TAMAYA_RETURN_IF_ERROR(string_list(doc, "allow_origins", &c.allow_origins));
  TAMAYA_RETURN_IF_ERROR(string_list(doc, "allow_methods", &c.allow_methods));
  TAMAYA_RETURN_IF_ERROR(string_list(doc, "allow_headers", &c.allow_headers));
  TAMAYA_RETURN_IF_ERROR(string_list(doc, "expose_headers", &c.expose_headers));
  if (auto it = doc.find("max_age_s"); it != doc.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 86'400) {
      return Status::Invalid("'max_age_s' must be an integer 0..86400");
    }
    c.max_age_s = it->get<int64_t>();
  }
  if (auto it = doc.find("allow_credentials"); it != doc.end() && !it->is_null()) {
    if (!it->is_boolean()) return Status::Invalid("'allow_credentials' must be true or false");
    c.allow_credentials = it->get<bool>();
  }
  bool wildcard =
      std::find(c.allow_origins.begin(), c.allow_origins.end(), "*") != c.allow_origins.end();
  if (wildcard && c.allow_credentials) {
    return Status::Invalid(
        "allow_credentials cannot be combined with allow_origins '*'; list the origins");
  }
  return c;
}

}  // namespace tamaya::gateway
