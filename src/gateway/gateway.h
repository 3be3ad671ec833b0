// The API gateway: the public port's request handler. For each request, in
// order: x-request-id, CORS preflight, route match (404), body limits,
// auth (401/403), rate limits and usage plans (429), event (2.0 or 1.0),
// invoke through the dispatcher (sync with the route's timeout → 504, or
// async → 202), response mapping (502 for a function error or a malformed
// answer), CORS headers, one access-log line. Everything runs on the
// daemon's event loop; the hot state (routes, keys, buckets) is owned by it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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

// Who signed an AWS_IAM function URL request.
struct IamCaller {
  std::string access_key;
  std::string account;
};

// An async route's invocation, handed to Services::enqueue_async.
struct AsyncEvent {
  std::string function;
  std::string qualifier;  // as the route's target names it ("" = $LATEST)
  std::string payload;
  std::string request_id;
  std::string trace_id;
};

struct Services {
  boost::asio::io_context& io;
  registry::Registry& registry;
  registry::ArtifactStore& artifacts;
  dispatch::Dispatcher& dispatcher;
  store::Database& db;
  const Settings& settings;
  const Clock& clock;
  // Checks an AWS_IAM function URL request's SigV4 signature. The daemon
  // wires it to the Lambda API's verifier (api links SigV4; gateway must not
  // link api). Unset: AWS_IAM URLs refuse every request.
  std::function<Result<IamCaller>(const net::Request&)> verify_iam;
  // Makes an async route's event durable (the events module; gateway must
  // not link it, so the daemon wires it) and calls back once it is, with
  // the status. Unset: async routes invoke fire-and-forget.
  std::function<void(AsyncEvent, std::function<void(Status)>)> enqueue_async;
};

// The public server's limits, from the gateway_* settings.
net::ServerLimits server_limits(const Settings& settings);

class Gateway {
 public:
  // Loads routes, keys and CORS from the database; opens the access log.
  static Result<std::unique_ptr<Gateway>> open(const Services& services);
  ~Gateway();

  // The public port's handler.
  void handle(const net::Request& request, net::Responder respond);

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

  // Function URLs, in Lambda's shapes without FunctionArn (api/lambda_urls.h
  // is the HTTP side). qualifier: "" or an alias name.
  Result<nlohmann::json> create_function_url(const std::string& function,
                                             const std::string& qualifier,
                                             const nlohmann::json& body);
  Result<nlohmann::json> update_function_url(const std::string& function,
                                             const std::string& qualifier,
                                             const nlohmann::json& body);
  Result<nlohmann::json> get_function_url(const std::string& function,
                                          const std::string& qualifier) const;
  Status delete_function_url(const std::string& function, const std::string& qualifier);
  std::vector<std::pair<std::string, nlohmann::json>> list_function_urls(
      const std::string& function) const;

  // The public port, for the FunctionUrl addresses (known after listen).
  void set_public_port(int port);
  // Writes the buffered access log and API-key usage now (at shutdown; the
  // destructor does it too).
  void flush();

  // Told about every answered request (its route key, "-" when no route
  // matched, and HTTP status), on the io_context: how the daemon counts
  // gateway traffic in its metrics without the gateway knowing about them.
  void set_request_observer(std::function<void(const std::string& route_key, int status)> f);

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
