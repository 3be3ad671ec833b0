// OpenAPI 3.0 export of the gateway's routes, in the shape API Gateway
// exports HTTP APIs (x-amazon-apigateway-* extensions), so one document shows
// a newcomer the whole public surface.
#include <set>

#include "gateway/gateway.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

std::vector<std::string> path_params(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = path.find('{', i)) != std::string::npos) {
    size_t end = path.find('}', i);
    if (end == std::string::npos) break;
    out.push_back(path.substr(i + 1, end - i - 1));
    i = end;
  }
  return out;
}

}  // namespace

json openapi_document(const std::vector<Route>& routes, const CorsConfig& cors) {
  json paths = json::object();
  json schemes = json::object();
  for (const Route& r : routes) {
    bool is_default = r.method.empty();
    std::string path = is_default ? "/$default" : r.path;
    std::string method =
        is_default || r.method == "ANY" ? "x-amazon-apigateway-any-method" : r.method;
    for (char& c : method) c = char(std::tolower(static_cast<unsigned char>(c)));
    json op = {{"operationId", r.id},
               {"summary", r.route_key() + " → " + r.target},
               {"responses", {{"default", {{"description", "the function's response"}}}}},
               {"x-amazon-apigateway-integration",
                {{"type", "aws_proxy"},
                 {"httpMethod", "POST"},
                 {"uri", r.target},
                 {"payloadFormatVersion", r.payload_format},
                 {"timeoutInMillis", r.timeout_ms}}},
               {"x-tamaya-integration", r.async ? "async" : "sync"}};
    json params = json::array();
    for (const auto& p : path_params(r.path)) {
      params.push_back(
          {{"name", p}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}});
    }
    if (!params.empty()) op["parameters"] = params;
    if (r.auth == AuthType::kApiKey) {
      schemes["api_key"] = {{"type", "apiKey"}, {"in", "header"}, {"name", "x-api-key"}};
      op["security"] = json::array({{{"api_key", json::array()}}});
    } else if (r.auth == AuthType::kJwt) {
      std::string name = "jwt_" + r.id;
      schemes[name] = {
          {"type", "http"},
          {"scheme", "bearer"},
          {"bearerFormat", "JWT"},
          {"x-amazon-apigateway-authorizer",
           {{"type", "jwt"},
            {"identitySource", "$request.header.Authorization"},
            {"jwtConfiguration", {{"issuer", r.jwt.issuer}, {"audience", r.jwt.audience}}}}}};
      op["security"] = json::array({{{name, r.jwt.scopes}}});
    }
    if (r.rate_limit.rate > 0) {
      op["x-tamaya-rate-limit"] = {{"rate", r.rate_limit.rate}, {"burst", r.rate_limit.burst}};
    }
    paths[path][method] = std::move(op);
  }
  json doc = {{"openapi", "3.0.1"},
              {"info", {{"title", "tamaya gateway"}, {"version", "1.0"}}},
              {"paths", std::move(paths)}};
  if (!schemes.empty()) doc["components"] = {{"securitySchemes", std::move(schemes)}};
  if (!cors.allow_origins.empty()) {
    doc["x-amazon-apigateway-cors"] = {
        {"allowOrigins", cors.allow_origins}, {"allowMethods", cors.allow_methods},
        {"allowHeaders", cors.allow_headers}, {"exposeHeaders", cors.expose_headers},
        {"maxAge", cors.max_age_s},           {"allowCredentials", cors.allow_credentials}};
  }
  return doc;
}

}  // namespace tamaya::gateway
