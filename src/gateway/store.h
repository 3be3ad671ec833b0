// The gateway's tables (migrations 400..499): routes, API keys (hashes
// only) and gateway-wide settings such as CORS. Written on the event loop by
// admin calls (rare); read once at start into the Gateway's memory.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "gateway/model.h"
#include "store/database.h"

namespace tamaya::gateway {

std::vector<store::Migration> migrations();

class GatewayStore {
 public:
  explicit GatewayStore(store::Database& db) : db_(db) {}

  Result<std::vector<Route>> load_routes();
  // AlreadyExists when a route with the same route key exists.
  Status insert_route(const Route& route);
  Status delete_route(const std::string& id);  // NotFound when absent

  Result<std::vector<ApiKey>> load_keys();
  Status insert_key(const ApiKey& key);
  Status revoke_key(const std::string& id, int64_t when_ms);  // NotFound when absent

  Result<std::optional<std::string>> get_config(const std::string& key);
  Status put_config(const std::string& key, const std::string& value);

 private:
  store::Database& db_;
};

}  // namespace tamaya::gateway
