// Routes of the gateway and the matching rules of API Gateway HTTP APIs: a
// route key is "METHOD /path" (METHOD may be ANY) or "$default"; a path
// segment is a literal, a {param} (one segment) or a greedy {proxy+} (the
// rest, at least one segment, last only). The most specific route wins:
// exact before parameters before greedy, segment by segment from the left,
// then a named method before ANY, then $default.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tamaya::gateway {

inline constexpr const char* kDefaultRouteKey = "$default";

enum class AuthType { kNone, kApiKey, kJwt };

// How a JWT route checks its bearer token. One of secret (HS256),
// public_key_pem (RS256/ES256) or jwks_file (RS256/ES256 by "kid").
struct JwtConfig {
  std::string issuer;                 // must equal "iss" when set
  std::vector<std::string> audience;  // "aud" must hold one of them when set
  std::vector<std::string> scopes;    // the token must hold one of them when set (as AWS)
  std::string secret;
  std::string public_key_pem;
  std::string jwks_file;
};

struct RateLimit {
  double rate = 0;  // tokens per second; 0 = no limit
  int64_t burst = 0;
};

struct Route {
  std::string id;
  std::string method;  // upper case, or "ANY"; empty for $default
  std::string path;    // "/items/{id}"; empty for $default
  std::string target;  // "fn", "fn:3" or "fn:alias"
  bool async = false;
  std::string payload_format = "2.0";  // or "1.0"
  int64_t timeout_ms = 0;              // 0 = gateway_integration_timeout_ms
  AuthType auth = AuthType::kNone;
  JwtConfig jwt;
  RateLimit rate_limit;
  int64_t created_ms = 0;

  // "GET /items/{id}" or "$default".
  std::string route_key() const;
};

std::string_view auth_name(AuthType type);
std::optional<AuthType> parse_auth(std::string_view name);

// Checks a route key's method and path ("GET", "/items/{id}"): the method a
// token or ANY, the path absolute, params named [A-Za-z0-9_]+, unique, a
// greedy segment last. The error says what to fix.
Status validate_route_key(const std::string& method, const std::string& path);

struct Match {
  const Route* route = nullptr;
  std::map<std::string, std::string> path_parameters;  // percent-decoded
};

// Routes compiled for matching. Rebuilt whenever a route changes (rare);
// matching itself allocates only for the parameters it returns.
class RouteTable {
 public:
  RouteTable() = default;
  explicit RouteTable(std::vector<Route> routes);

  // raw_path: the request's path as sent (not decoded), without the query.
  std::optional<Match> match(std::string_view method, std::string_view raw_path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  struct Segment {
    enum Kind { kLiteral, kParam, kGreedy } kind;
    std::string text;  // literal text or parameter name
  };
  struct Compiled {
    size_t index;
    bool any_method;
    std::vector<Segment> segments;
  };
  std::vector<Route> routes_;
  std::vector<Compiled> compiled_;  // most specific first
  std::optional<size_t> default_;
};

std::string percent_decode_path(std::string_view text);

}  // namespace tamaya::gateway
