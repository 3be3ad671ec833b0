// The gateway's management endpoints, registered on the admin router by the
// gateway itself so the admin API module need not know about it.
#include <nlohmann/json.hpp>

#include "gateway/gateway.h"
#include "net/json_body.h"

namespace tamaya::gateway {

using nlohmann::json;

void add_gateway_admin_routes(net::Router& router, Gateway& g) {
  router.add("POST", "/v1/routes",
             [&g](const net::Request& req, const net::Params&, const net::Responder& respond) {
               auto doc = net::parse_json_object(req.body);
               if (!doc.ok()) return respond(net::Response::error(doc.status()));
               auto route = g.add_route(*doc);
               if (!route.ok()) return respond(net::Response::error(route.status()));
               respond(net::json_response(201, route_to_json(*route, false)));
             });
  router.add("GET", "/v1/routes",
             [&g](const net::Request&, const net::Params&, const net::Responder& respond) {
               json arr = json::array();
               for (const auto& r : g.routes()) arr.push_back(route_to_json(r, false));
               respond(net::json_response(200, {{"routes", arr}}));
             });
  router.add("GET", "/v1/routes/{id}",
             [&g](const net::Request&, net::Params p, const net::Responder& respond) {
               for (const auto& r : g.routes()) {
                 if (r.id == p["id"])
                   return respond(net::json_response(200, route_to_json(r, false)));
               }
               respond(net::Response::error(
                   Status::NotFound("no route '" + p["id"] + "'; list them with GET /v1/routes")));
             });
  router.add("DELETE", "/v1/routes/{id}",
             [&g](const net::Request&, net::Params p, const net::Responder& respond) {
               Status s = g.remove_route(p["id"]);
               respond(s.ok() ? net::Response::no_content() : net::Response::error(s));
             });
  router.add("POST", "/v1/keys",
             [&g](const net::Request& req, const net::Params&, const net::Responder& respond) {
               auto doc = net::parse_json_object(req.body);
               if (!doc.ok()) return respond(net::Response::error(doc.status()));
               auto made = g.create_key(*doc);
               if (!made.ok()) return respond(net::Response::error(made.status()));
               json body = key_to_json(made->first);
               body["key"] = made->second;  // the only time the plain key is shown
               respond(net::json_response(201, body));
             });
  router.add("GET", "/v1/keys",
             [&g](const net::Request&, const net::Params&, const net::Responder& respond) {
               json arr = json::array();
               for (const auto& k : g.keys()) arr.push_back(key_to_json(k));
               respond(net::json_response(200, {{"keys", arr}}));
             });
  router.add("DELETE", "/v1/keys/{id}",
             [&g](const net::Request&, net::Params p, const net::Responder& respond) {
               Status s = g.revoke_key(p["id"]);
               respond(s.ok() ? net::Response::no_content() : net::Response::error(s));
             });
  router.add("GET", "/v1/gateway/cors",
             [&g](const net::Request&, const net::Params&, const net::Responder& respond) {
               respond(net::json_response(200, cors_to_json(g.cors())));
             });
  router.add("PUT", "/v1/gateway/cors",
             [&g](const net::Request& req, const net::Params&, const net::Responder& respond) {
               auto doc = net::parse_json_object(req.body);
               if (!doc.ok()) return respond(net::Response::error(doc.status()));
               Status s = g.set_cors(*doc);
               if (!s.ok()) return respond(net::Response::error(s));
               respond(net::json_response(200, cors_to_json(g.cors())));
             });
  router.add("GET", "/v1/openapi.json",
             [&g](const net::Request&, const net::Params&, const net::Responder& respond) {
               respond(net::json_response(200, g.openapi()));
             });
}

}  // namespace tamaya::gateway
