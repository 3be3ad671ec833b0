#include "net/router.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/json_text.h"

namespace tamaya::net {

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool is_param(const std::string& seg) {
  return seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
}

// Lower is more specific: count parameter segments.
int specificity(const std::vector<std::string>& segments) {
  return static_cast<int>(std::count_if(segments.begin(), segments.end(), is_param));
}

bool match(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
           Params* params) {
  if (pattern.size() != path.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (is_param(pattern[i])) {
      if (path[i].empty()) return false;
      (*params)[pattern[i].substr(1, pattern[i].size() - 2)] = path[i];
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void Router::add(std::string method, const std::string& pattern, RouteHandler handler) {
  routes_.push_back(Route{std::move(method), split_path(pattern), std::move(handler)});
  std::stable_sort(routes_.begin(), routes_.end(), [](const Route& a, const Route& b) {
    return specificity(a.segments) < specificity(b.segments);
  });
}

void Router::dispatch(Request request, Responder respond) const {
  auto segments = split_path(request.path);
  std::string allow;
  for (const auto& route : routes_) {
    Params params;
    if (!match(route.segments, segments, &params)) continue;
    if (route.method == request.method) {
      route.handler(std::move(request), std::move(params), std::move(respond));
      return;
    }
    if (allow.find(route.method) == std::string::npos) {
      allow += (allow.empty() ? "" : ", ") + route.method;
    }
  }
  if (!allow.empty()) {
    nlohmann::json body = {{"error",
                            {{"code", "MethodNotAllowed"},
                             {"message", request.method + " is not allowed on " + request.path +
                                             "; allowed: " + allow}}}};
    Response r = Response::json(405, json_text(body));
    r.set_header("Allow", allow);
    respond(std::move(r));
    return;
  }
  respond(Response::error(Status::NotFound("no such endpoint: " + request.method + " " +
                                           request.path + " (see docs/api.md)")));
}

}  // namespace tamaya::net
