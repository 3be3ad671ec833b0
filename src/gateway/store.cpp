#include "gateway/store.h"

namespace tamaya::gateway {

std::vector<store::Migration> migrations() {
  return {
      {400, "gateway: routes, api keys, config",
       R"sql(
CREATE TABLE gateway_routes (
  id TEXT PRIMARY KEY,
  route_key TEXT NOT NULL UNIQUE,   -- "GET /items/{id}" or "$default"
  spec TEXT NOT NULL,               -- the route as JSON (gateway/model.h)
  created_ms INTEGER NOT NULL
);
CREATE TABLE gateway_api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,    -- sha256 hex; the plain key is never stored
  prefix TEXT NOT NULL,
  rate REAL NOT NULL,
  burst INTEGER NOT NULL,
  daily_quota INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE gateway_config (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql"},
      {401, "gateway: API-key usage per UTC day, function URLs",
       R"sql(
CREATE TABLE gateway_key_usage (
  key_id TEXT NOT NULL,
  day INTEGER NOT NULL,             -- days since the epoch, UTC
  used INTEGER NOT NULL,
  PRIMARY KEY (key_id, day)
);
CREATE TABLE gateway_function_urls (
  url_id TEXT PRIMARY KEY,
  function TEXT NOT NULL,
  qualifier TEXT NOT NULL,          -- "" for the unqualified function
  spec TEXT NOT NULL,               -- the config as JSON (gateway/function_urls.h)
  UNIQUE (function, qualifier)
);
)sql"},
  };
}

Result<std::vector<Route>> GatewayStore::load_routes() {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st,
      db_.prepare("SELECT id, spec, created_ms FROM gateway_routes ORDER BY created_ms, id"));
  std::vector<Route> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    auto doc = nlohmann::json::parse(st.column_text(1), nullptr, false);
    auto route = route_from_json(doc);
    if (!route.ok()) {
      return route.status().with_context("stored route " + st.column_text(0));
    }
    route->id = st.column_text(0);
    route->created_ms = st.column_int(2);
    out.push_back(std::move(*route));
  }
  return out;
}

Status GatewayStore::insert_route(const Route& r) {
  {
    TAMAYA_ASSIGN_OR_RETURN(auto check,
                            db_.prepare("SELECT id FROM gateway_routes WHERE route_key = ?"));
    check.bind(1, r.route_key());
    TAMAYA_ASSIGN_OR_RETURN(bool exists, check.step());
    if (exists) {
      return Status::Exists("route '" + r.route_key() + "' already exists as " +
                            check.column_text(0) + "; delete it first (DELETE /v1/routes/" +
                            check.column_text(0) + ")");
    }
  }
  nlohmann::json spec = route_to_json(r, /*secrets=*/true);
  spec.erase("id");
  spec.erase("created_ms");
  TAMAYA_ASSIGN_OR_RETURN(
      auto st,
      db_.prepare(
          "INSERT INTO gateway_routes(id, route_key, spec, created_ms) VALUES (?, ?, ?, ?)"));
  st.bind(1, r.id).bind(2, r.route_key()).bind(3, spec.dump()).bind(4, r.created_ms);
  return st.run();
}

Status GatewayStore::delete_route(const std::string& id) {
  TAMAYA_ASSIGN_OR_RETURN(auto st,
                          db_.prepare("DELETE FROM gateway_routes WHERE id = ? OR route_key = ?"));
  st.bind(1, id).bind(2, id);
  TAMAYA_RETURN_IF_ERROR(st.run());
  return Status::Ok();
}

Result<std::vector<ApiKey>> GatewayStore::load_keys() {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st,
      db_.prepare("SELECT id, name, key_hash, prefix, rate, burst, daily_quota, created_ms, "
                  "revoked_ms FROM gateway_api_keys ORDER BY created_ms, id"));
  std::vector<ApiKey> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    ApiKey k;
    k.id = st.column_text(0);
    k.name = st.column_text(1);
    k.key_hash = st.column_text(2);
    k.prefix = st.column_text(3);
    k.rate = std::stod(st.column_text(4));
    k.burst = st.column_int(5);
    k.daily_quota = st.column_int(6);
    k.created_ms = st.column_int(7);
    k.revoked_ms = st.column_int(8);
    out.push_back(std::move(k));
  }
  return out;
}

Status GatewayStore::insert_key(const ApiKey& k) {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st,
      db_.prepare("INSERT INTO gateway_api_keys(id, name, key_hash, prefix, rate, burst, "
                  "daily_quota, created_ms, revoked_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"));
  st.bind(1, k.id)
      .bind(2, k.name)
      .bind(3, k.key_hash)
      .bind(4, k.prefix)
      .bind(5, std::to_string(k.rate))
      .bind(6, k.burst)
      .bind(7, k.daily_quota)
      .bind(8, k.created_ms);
  return st.run();
}

Status GatewayStore::revoke_key(const std::string& id, int64_t when_ms) {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st,
      db_.prepare("UPDATE gateway_api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms = 0"));
  st.bind(1, when_ms).bind(2, id);
  return st.run();
}

Result<std::optional<std::string>> GatewayStore::get_config(const std::string& key) {
  TAMAYA_ASSIGN_OR_RETURN(auto st, db_.prepare("SELECT value FROM gateway_config WHERE key = ?"));
  st.bind(1, key);
  TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(st.column_text(0));
}

Status GatewayStore::put_config(const std::string& key, const std::string& value) {
  TAMAYA_ASSIGN_OR_RETURN(auto st,
                          db_.prepare("INSERT INTO gateway_config(key, value) VALUES (?, ?) "
                                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  st.bind(1, key).bind(2, value);
  return st.run();
}

Result<std::map<std::string, int64_t>> GatewayStore::load_key_usage(int64_t day) {
  TAMAYA_ASSIGN_OR_RETURN(auto st,
                          db_.prepare("SELECT key_id, used FROM gateway_key_usage WHERE day = ?"));
  st.bind(1, day);
  std::map<std::string, int64_t> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    out[st.column_text(0)] = st.column_int(1);
  }
  return out;
}

Status GatewayStore::save_key_usage(const std::vector<KeyUsage>& usage) {
  return db_.transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(
        auto st, db_.prepare("INSERT INTO gateway_key_usage(key_id, day, used) VALUES (?, ?, ?) "
                             "ON CONFLICT(key_id, day) DO UPDATE SET used = excluded.used"));
    for (const auto& u : usage) {
      st.bind(1, u.key_id).bind(2, u.day).bind(3, u.used);
      TAMAYA_RETURN_IF_ERROR(st.run());
      st.reset();
    }
    // Older days are never read again.
    int64_t today = usage.empty() ? 0 : usage.front().day;
    for (const auto& u : usage) today = std::max(today, u.day);
    TAMAYA_ASSIGN_OR_RETURN(auto old, db_.prepare("DELETE FROM gateway_key_usage WHERE day < ?"));
    old.bind(1, today);
    return old.run();
  });
}

Result<std::vector<FunctionUrl>> GatewayStore::load_function_urls() {
  TAMAYA_ASSIGN_OR_RETURN(auto st, db_.prepare("SELECT url_id, spec FROM gateway_function_urls"));
  std::vector<FunctionUrl> out;
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, st.step());
    if (!row) break;
    auto url = function_url_from_storage(nlohmann::json::parse(st.column_text(1), nullptr, false));
    if (!url.ok()) return url.status().with_context("stored function URL " + st.column_text(0));
    out.push_back(std::move(*url));
  }
  return out;
}

Status GatewayStore::put_function_url(const FunctionUrl& u) {
  TAMAYA_ASSIGN_OR_RETURN(
      auto st, db_.prepare("INSERT INTO gateway_function_urls(url_id, function, qualifier, spec) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT(url_id) DO UPDATE SET "
                           "spec = excluded.spec"));
  st.bind(1, u.url_id)
      .bind(2, u.function)
      .bind(3, u.qualifier)
      .bind(4, function_url_to_storage(u).dump());
  return st.run();
}

Status GatewayStore::delete_function_url(const std::string& url_id) {
  TAMAYA_ASSIGN_OR_RETURN(auto st,
                          db_.prepare("DELETE FROM gateway_function_urls WHERE url_id = ?"));
  st.bind(1, url_id);
  return st.run();
}

}  // namespace tamaya::gateway
