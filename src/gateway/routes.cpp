#include "gateway/routes.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "net/http.h"

namespace tamaya::gateway {

namespace {

// Splits "/a/b" into {"a","b"}; "/" into {}. Empty segments are kept
// ("/a//b", "/a/"), and only literals equal to "" can match them.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path == "/") return out;
  if (path.front() == '/') path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

}  // namespace

std::string percent_decode_path(std::string_view in) { return net::percent_decode(in, false); }

std::string Route::route_key() const {
  if (method.empty()) return kDefaultRouteKey;
  return method + " " + path;
}

std::string_view auth_name(AuthType type) {
  switch (type) {
    case AuthType::kNone:
      return "none";
    case AuthType::kApiKey:
      return "api_key";
    case AuthType::kJwt:
      return "jwt";
  }
  return "none";
}

std::optional<AuthType> parse_auth(std::string_view name) {
  if (name == "none" || name.empty()) return AuthType::kNone;
  if (name == "api_key") return AuthType::kApiKey;
  if (name == "jwt") return AuthType::kJwt;
  return std::nullopt;
}

Status validate_route_key(const std::string& method, const std::string& path) {
  if (method.empty() || method.size() > 16 ||
      !std::all_of(method.begin(), method.end(),
                   [](char c) { return std::isupper(static_cast<unsigned char>(c)); })) {
    return Status::Invalid("route method '" + method +
                           "' is not valid; use an upper-case HTTP method (GET, POST, ...) or ANY");
  }
  if (path.empty() || path.front() != '/') {
    return Status::Invalid("route path '" + path + "' must start with '/', e.g. /items/{id}");
  }
  if (path.size() > 1024) return Status::Invalid("route path is over 1024 characters; shorten it");
  auto segments = split_path(path);
  std::set<std::string> names;
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view s = segments[i];
    bool open = s.find('{') != std::string_view::npos;
    bool close = s.find('}') != std::string_view::npos;
    if (!open && !close) {
      if (s.empty() && i + 1 != segments.size()) {
        return Status::Invalid("route path '" + path + "' has an empty segment ('//'); remove it");
      }
      continue;
    }
    if (s.size() < 3 || s.front() != '{' || s.back() != '}') {
      return Status::Invalid("route path '" + path +
                             "': a parameter must be a whole segment, "
                             "like /items/{id} (not '" +
                             std::string(s) + "')");
    }
    std::string_view name = s.substr(1, s.size() - 2);
    bool greedy = name.back() == '+';
    if (greedy) name.remove_suffix(1);
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char)) {
      return Status::Invalid("route path '" + path + "': parameter name '" + std::string(name) +
                             "' must be letters, digits, '-' or '_'");
    }
    if (greedy && i + 1 != segments.size()) {
      return Status::Invalid("route path '" + path + "': a greedy parameter {" + std::string(name) +
                             "+} must be the last segment");
    }
    if (!names.insert(std::string(name)).second) {
      return Status::Invalid("route path '" + path + "' uses parameter '" + std::string(name) +
                             "' twice; give each a distinct name");
    }
  }
  return Status::Ok();
}

RouteTable::RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {
  for (size_t i = 0; i < routes_.size(); ++i) {
    const Route& r = routes_[i];
    if (r.method.empty()) {
      default_ = i;
      continue;
    }
    Compiled c{i, r.method == "ANY", {}};
    for (std::string_view s : split_path(r.path)) {
      if (s.size() >= 3 && s.front() == '{' && s.back() == '}') {
        bool greedy = s[s.size() - 2] == '+';
        std::string_view name = s.substr(1, s.size() - (greedy ? 3 : 2));
        c.segments.push_back({greedy ? Segment::kGreedy : Segment::kParam, std::string(name)});
      } else {
        c.segments.push_back({Segment::kLiteral, percent_decode_path(s)});
      }
    }
    compiled_.push_back(std::move(c));
  }
  // Most specific first: segment kinds compared from the left (literal <
  // param < greedy), then more segments, then a named method before ANY.
  std::stable_sort(compiled_.begin(), compiled_.end(), [](const Compiled& a, const Compiled& b) {
    size_t n = std::min(a.segments.size(), b.segments.size());
    for (size_t i = 0; i < n; ++i) {
      if (a.segments[i].kind != b.segments[i].kind) return a.segments[i].kind < b.segments[i].kind;
    }
    if (a.segments.size() != b.segments.size()) return a.segments.size() > b.segments.size();
    return !a.any_method && b.any_method;
  });
}

std::optional<Match> RouteTable::match(std::string_view method, std::string_view raw_path) const {
  auto segments = split_path(raw_path);
  std::vector<std::string> decoded;
  decoded.reserve(segments.size());
  for (auto s : segments) decoded.push_back(percent_decode_path(s));
  for (const Compiled& c : compiled_) {
    if (!c.any_method && routes_[c.index].method != method) continue;
    size_t i = 0;
    bool ok = true;
    bool greedy = false;
    for (; i < c.segments.size(); ++i) {
      const Segment& seg = c.segments[i];
      if (seg.kind == Segment::kGreedy) {
        greedy = i < decoded.size() && !decoded[i].empty();
        ok = greedy;
        break;
      }
      if (i >= decoded.size()) {
        ok = false;
        break;
      }
      if (seg.kind == Segment::kLiteral ? decoded[i] != seg.text : decoded[i].empty()) {
        ok = false;
        break;
      }
    }
    if (!ok || (!greedy && decoded.size() != c.segments.size())) continue;
    Match m;
    m.route = &routes_[c.index];
    for (size_t j = 0; j < c.segments.size(); ++j) {
      const Segment& seg = c.segments[j];
      if (seg.kind == Segment::kParam) {
        m.path_parameters[seg.text] = decoded[j];
      } else if (seg.kind == Segment::kGreedy) {
        std::string rest;
        for (size_t k = j; k < decoded.size(); ++k) {
          if (k > j) rest += '/';
          rest += decoded[k];
        }
        m.path_parameters[seg.text] = std::move(rest);
      }
    }
    return m;
  }
  if (default_) return Match{&routes_[*default_], {}};
  return std::nullopt;
}

}  // namespace tamaya::gateway
