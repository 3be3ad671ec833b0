// The API gateway: the public port's request handler. For each request, in
// order: x-request-id, CORS preflight, route match (404), body limits,
// auth (401/403), rate limits and usage plans (429), event (2.0 or 1.0),
// invoke through the dispatcher (sync with the route's timeout → 504, or
// async → 202), response mapping (502 for a function error or a malformed
// answer), CORS headers, one access-log line. Everything runs on the
// daemon's event loop; the hot state (routes, keys, buckets) is owned by it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/settings.h"
#include "common/status.h"
#include "dispatch/dispatcher.h"
#include "gateway/model.h"
#include "net/http.h"
#include "net/router.h"
#include "registry/artifacts.h"
#include "registry/registry.h"
#include "store/database.h"

namespace tamaya::gateway {

struct Services {
  boost::asio::io_context& io;
  registry::Registry& registry;
  registry::ArtifactStore& artifacts;
  dispatch::Dispatcher& dispatcher;
  store::Database& db;
  const Settings& settings;
  const Clock& clock;
};

// The public server's limits, from the gateway_* settings.
net::ServerLimits server_limits(const Settings& settings);

class Gateway {
 public:
  // Loads routes, keys and CORS from the database; opens the access log.
  static Result<std::unique_ptr<Gateway>> open(Services services);
  ~Gateway();

  // The public port's handler.
  void handle(net::Request request, net::Responder respond);

  // Admin operations (add_gateway_admin_routes exposes them over HTTP).
  Result<Route> add_route(const nlohmann::json& spec);
  Status remove_route(const std::string& id_or_key);
  std::vector<Route> routes() const;
  // Returns the key record and the plain key (shown once).
  Result<std::pair<ApiKey, std::string>> create_key(const nlohmann::json& spec);
  Status revoke_key(const std::string& id);
  std::vector<ApiKey> keys() const;
  CorsConfig cors() const;
  Status set_cors(const nlohmann::json& spec);
  nlohmann::json openapi() const;

 private:
  struct Impl;
  explicit Gateway(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// OpenAPI 3.0 document of the routes (pure; used by Gateway::openapi).
nlohmann::json openapi_document(const std::vector<Route>& routes, const CorsConfig& cors);

// POST/GET /v1/routes, GET/DELETE /v1/routes/{id}, POST/GET /v1/keys,
// DELETE /v1/keys/{id}, GET/PUT /v1/gateway/cors, GET /v1/openapi.json.
void add_gateway_admin_routes(net::Router& router, Gateway& gateway);

}  // namespace tamaya::gateway
