// Method + path routing with {param} segments for the admin and runtime APIs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "net/http.h"

namespace tamaya::net {

using Params = std::map<std::string, std::string>;
using RouteHandler = std::function<void(Request, Params, Responder)>;

class Router {
 public:
  // pattern: "/v1/functions/{name}/invoke"; a {name} matches one non-empty
  // segment. Exact segments win over parameters when both match.
  void add(std::string method, const std::string& pattern, RouteHandler handler);
  // 404 for an unknown path, 405 (with Allow) for a known path and wrong method.
  void dispatch(Request request, Responder respond) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    RouteHandler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace tamaya::net
