// The gateway's tables (migrations 400..499): routes, API keys (hashes
// only), the keys' daily usage, function URLs and gateway-wide settings such
// as CORS. Written on the event loop by admin calls (rare) and by the usage
// flush (one transaction per gateway_quota_flush_ms at most); read once at
// start into the Gateway's memory.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "gateway/function_urls.h"
#include "gateway/model.h"
#include "store/database.h"

namespace tamaya::gateway {

std::vector<store::Migration> migrations();

// An API key's request count on one UTC day.
struct KeyUsage {
  std::string key_id;
  int64_t day = 0;  // days since the epoch
  int64_t used = 0;
};

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

  // The day's counts by key id; older days are deleted when a newer one is saved.
  Result<std::map<std::string, int64_t>> load_key_usage(int64_t day);
  // One transaction for the whole batch.
  Status save_key_usage(const std::vector<KeyUsage>& usage);

  Result<std::vector<FunctionUrl>> load_function_urls();
  Status put_function_url(const FunctionUrl& url);  // insert or replace by url id
  Status delete_function_url(const std::string& url_id);

  Result<std::optional<std::string>> get_config(const std::string& key);
  Status put_config(const std::string& key, const std::string& value);

 private:
  store::Database& db_;
};

}  // namespace tamaya::gateway
