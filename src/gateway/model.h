// The gateway's configuration objects as JSON: the admin API's request and
// answer shapes and the form they are stored in (docs/api.md, "API gateway").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "gateway/routes.h"

namespace tamaya::gateway {

struct ApiKey {
  std::string id;  // "key_<hex>", shown and used to revoke
  std::string name;
  std::string key_hash;  // sha256 hex of the plain key; the plain key is never stored
  std::string prefix;    // the plain key's first characters, to recognise it
  double rate = 0;       // requests per second; 0 = no rate limit
  int64_t burst = 0;
  int64_t daily_quota = 0;  // requests per UTC day; 0 = unlimited
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;  // 0 while valid
};

// Gateway-wide CORS (API Gateway configures CORS per API; tamaya has one).
// Disabled while allow_origins is empty.
struct CorsConfig {
  std::vector<std::string> allow_origins;  // "*" or exact origins
  std::vector<std::string> allow_methods;  // empty = the preflight's requested method
  std::vector<std::string> allow_headers;  // empty = the preflight's requested headers
  std::vector<std::string> expose_headers;
  int64_t max_age_s = 0;
  bool allow_credentials = false;
};

// secrets: include the JWT secret (storage) rather than hiding it (answers).
nlohmann::json route_to_json(const Route& route, bool secrets);
// Reads and validates a route from the admin API's body (or storage); id and
// created_ms are left to the caller.
Result<Route> route_from_json(const nlohmann::json& doc);

nlohmann::json key_to_json(const ApiKey& key);

nlohmann::json cors_to_json(const CorsConfig& cors);
Result<CorsConfig> cors_from_json(const nlohmann::json& doc);

}  // namespace tamaya::gateway
