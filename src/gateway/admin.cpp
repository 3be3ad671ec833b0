// The gateway's management endpoints, registered on the admin router by the
// gateway itself so the admin API module need not know about it.
#include <nlohmann/json.hpp>

#include "gateway/gateway.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

net::Response ok_json(int status, const json& body) {
  return net::Response::json(status, body.dump());
}

Result<json> parse_body(const std::string& body) {
  if (body.empty()) return Status::Invalid("the request body is empty; send a JSON object");
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::Invalid("the request body is not a JSON object; send one");
  }
  return doc;
}

}  // namespace

void add_gateway_admin_routes(net::Router& router, Gateway& g) {
  router.add("POST", "/v1/routes", [&g](net::Request req, net::Params, net::Responder respond) {
    auto doc = parse_body(req.body);
    if (!doc.ok()) return respond(net::Response::error(doc.status()));
    auto route = g.add_route(*doc);
    if (!route.ok()) return respond(net::Response::error(route.status()));
    respond(ok_json(201, route_to_json(*route, false)));
  });
  router.add("GET", "/v1/routes", [&g](net::Request, net::Params, net::Responder respond) {
    json arr = json::array();
    for (const auto& r : g.routes()) arr.push_back(route_to_json(r, false));
    respond(ok_json(200, {{"routes", arr}}));
  });
  router.add("GET", "/v1/routes/{id}", [&g](net::Request, net::Params p, net::Responder respond) {
    for (const auto& r : g.routes()) {
      if (r.id == p["id"]) return respond(ok_json(200, route_to_json(r, false)));
    }
    respond(net::Response::error(
        Status::NotFound("no route '" + p["id"] + "'; list them with GET /v1/routes")));
  });
  router.add("DELETE", "/v1/routes/{id}",
             [&g](net::Request, net::Params p, net::Responder respond) {
               Status s = g.remove_route(p["id"]);
               respond(s.ok() ? net::Response::no_content() : net::Response::error(s));
             });
  router.add("POST", "/v1/keys", [&g](net::Request req, net::Params, net::Responder respond) {
    auto doc = parse_body(req.body);
    if (!doc.ok()) return respond(net::Response::error(doc.status()));
    auto made = g.create_key(*doc);
    if (!made.ok()) return respond(net::Response::error(made.status()));
    json body = key_to_json(made->first);
    body["key"] = made->second;  // the only time the plain key is shown
    respond(ok_json(201, body));
  });
  router.add("GET", "/v1/keys", [&g](net::Request, net::Params, net::Responder respond) {
    json arr = json::array();
    for (const auto& k : g.keys()) arr.push_back(key_to_json(k));
    respond(ok_json(200, {{"keys", arr}}));
  });
  router.add("DELETE", "/v1/keys/{id}", [&g](net::Request, net::Params p, net::Responder respond) {
    Status s = g.revoke_key(p["id"]);
    respond(s.ok() ? net::Response::no_content() : net::Response::error(s));
  });
  router.add("GET", "/v1/gateway/cors", [&g](net::Request, net::Params, net::Responder respond) {
    respond(ok_json(200, cors_to_json(g.cors())));
  });
  router.add("PUT", "/v1/gateway/cors",
             [&g](net::Request req, net::Params, net::Responder respond) {
               auto doc = parse_body(req.body);
               if (!doc.ok()) return respond(net::Response::error(doc.status()));
               Status s = g.set_cors(*doc);
               if (!s.ok()) return respond(net::Response::error(s));
               respond(ok_json(200, cors_to_json(g.cors())));
             });
  router.add("GET", "/v1/openapi.json", [&g](net::Request, net::Params, net::Responder respond) {
    respond(ok_json(200, g.openapi()));
  });
}

}  // namespace tamaya::gateway
