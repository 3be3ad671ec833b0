// What the gateway does with a parsed request before it invokes anything,
// shared by the fuzz targets: match it against a fixed route table (a
// parameter, a greedy proxy, an exact path, three parameters, $default) and
// build its 2.0 and 1.0 events.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "gateway/event.h"
#include "gateway/routes.h"
#include "net/http.h"

namespace tamaya::fuzz {

inline const gateway::RouteTable& route_table() {
  static const gateway::RouteTable t = [] {
    std::vector<gateway::Route> routes;
    auto add = [&](std::string id, std::string m, std::string p) {
      gateway::Route r;
      r.id = std::move(id);
      r.method = std::move(m);
      r.path = std::move(p);
      routes.push_back(r);
    };
    add("a", "GET", "/items/{id}");
    add("b", "ANY", "/files/{proxy+}");
    add("c", "POST", "/a/b/c");
    add("d", "GET", "/{x}/{y}/{z}");
    add("e", "", "");
    return gateway::RouteTable(routes);
  }();
  return t;
}

inline void route_and_build(const net::Request& r) {
  auto m = route_table().match(r.method, r.path);
  gateway::EventContext c;
  c.route_key = m ? m->route->route_key() : "$default";
  if (m) c.path_parameters = m->path_parameters;
  c.request_id = "fuzz";
  c.time_ms = 1'700'000'000'000;
  (void)gateway::build_event_v2(r, c);
  (void)gateway::build_event_v1(r, c);
  (void)gateway::validate_route_key(r.method, r.path);
}

}  // namespace tamaya::fuzz
