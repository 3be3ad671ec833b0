#include "gateway/event.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/encoding.h"
#include "gateway/routes.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string query_decode(std::string_view s) {
  std::string plus(s);
  for (char& c : plus) {
    if (c == '+') c = ' ';
  }
  return percent_decode_path(plus);
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0) return false;
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n + 1;
  }
  return true;
}

// Query parameters in order of first appearance, repeated values in order.
std::vector<std::pair<std::string, std::vector<std::string>>> parse_query(std::string_view q) {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string key = query_decode(pair.substr(0, eq));
      std::string value = eq == std::string_view::npos ? "" : query_decode(pair.substr(eq + 1));
      if (!key.empty()) {
        auto it = std::find_if(out.begin(), out.end(), [&](auto& p) { return p.first == key; });
        if (it == out.end()) {
          out.push_back({key, {value}});
        } else {
          it->second.push_back(value);
        }
      }
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

// Header names lower-cased, repeated values in order.
std::vector<std::pair<std::string, std::vector<std::string>>> group_headers(
    const net::Headers& headers) {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& [k, v] : headers) {
    std::string name = lower(k);
    auto it = std::find_if(out.begin(), out.end(), [&](auto& p) { return p.first == name; });
    if (it == out.end()) {
      out.push_back({name, {v}});
    } else {
      it->second.push_back(v);
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& values, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += sep;
    out += values[i];
  }
  return out;
}

std::string raw_path(const net::Request& r) {
  std::string_view t = r.target;
  size_t q = t.find('?');
  std::string_view p = t.substr(0, q);
  // An absolute-form target ("http://host/path") still has a path.
  if (!p.empty() && p.front() != '/') {
    size_t scheme = p.find("://");
    size_t slash =
        scheme == std::string_view::npos ? std::string_view::npos : p.find('/', scheme + 3);
    p = slash == std::string_view::npos ? std::string_view("/") : p.substr(slash);
  }
  return std::string(p.empty() ? "/" : p);
}

std::string header_value(const net::Request& r, std::string_view name) {
  return std::string(r.header(name).value_or(""));
}

void add_body(const net::Request& r, json& event) {
  bool text = is_text_body(header_value(r, "content-type"), r.body);
  if (!r.body.empty()) event["body"] = text ? r.body : base64_encode(r.body);
  event["isBase64Encoded"] = !r.body.empty() && !text;
}

std::string domain_prefix(const std::string& host) { return host.substr(0, host.find('.')); }

std::string header_string(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

Result<std::string> response_body(const json& doc) {
  auto it = doc.find("body");
  if (it == doc.end() || it->is_null()) return std::string();
  std::string body = it->is_string() ? it->get<std::string>() : it->dump();
  auto b64 = doc.find("isBase64Encoded");
  if (b64 != doc.end() && b64->is_boolean() && b64->get<bool>()) {
    auto bytes = base64_decode(body);
    if (!bytes) return Status::Invalid("the response says isBase64Encoded but body is not base64");
    return std::move(*bytes);
  }
  return body;
}

Result<int> status_code(const json& doc) {
  const json& s = doc["statusCode"];
  int64_t code = 0;
  if (s.is_number_integer()) {
    code = s.get<int64_t>();
  } else if (s.is_string()) {
    // Lambda functions commonly send "200"; API Gateway accepts it.
    try {
      code = std::stoll(s.get<std::string>());
    } catch (const std::exception&) {
      return Status::Invalid("statusCode is not a number");
    }
  } else {
    return Status::Invalid("statusCode is not a number");
  }
  if (code < 100 || code > 599) return Status::Invalid("statusCode is not 100..599");
  return int(code);
}

}  // namespace

bool is_text_body(std::string_view content_type, std::string_view body) {
  std::string ct = lower(trim(content_type.substr(0, content_type.find(';'))));
  if (ct.empty()) return valid_utf8(body);
  if (ct.rfind("text/", 0) == 0) return true;
  static const char* kText[] = {"application/json",    "application/javascript",
                                "application/xml",     "application/x-www-form-urlencoded",
                                "application/graphql", "application/x-ndjson",
                                "application/ld+json"};
  for (const char* t : kText) {
    if (ct == t) return true;
  }
  auto ends = [&](std::string_view suffix) {
    return ct.size() >= suffix.size() &&
           ct.compare(ct.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends("+json") || ends("+xml");
}

std::string clf_time(int64_t time_ms) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t secs = time_ms / 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000", tm.tm_mday, kMonths[tm.tm_mon],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// Events are dumped with invalid UTF-8 replaced (U+FFFD): paths and headers
// are bytes on the wire, and a JSON event must be text (found by the fuzzer).
std::string build_event_v2(const net::Request& r, const EventContext& c) {
  json event = json::object();
  event["version"] = "2.0";
  event["routeKey"] = c.route_key;
  event["rawPath"] = raw_path(r);
  event["rawQueryString"] = r.query;
  json headers = json::object();
  std::vector<std::string> cookies;
  for (const auto& [name, values] : group_headers(r.headers)) {
    if (name == "cookie") {
      // 2.0 moves cookies out of the headers into their own list.
      for (const auto& v : values) {
        std::string_view rest = v;
        while (!rest.empty()) {
          size_t semi = rest.find(';');
          std::string_view one = trim(rest.substr(0, semi));
          if (!one.empty()) cookies.emplace_back(one);
          if (semi == std::string_view::npos) break;
          rest.remove_prefix(semi + 1);
        }
      }
      continue;
    }
    headers[name] = join(values, ",");
  }
  if (!cookies.empty()) event["cookies"] = cookies;
  event["headers"] = std::move(headers);
  auto query = parse_query(r.query);
  if (!query.empty()) {
    json q = json::object();
    for (const auto& [k, vs] : query) q[k] = join(vs, ",");
    event["queryStringParameters"] = std::move(q);
  }
  std::string host = header_value(r, "host");
  std::string path = raw_path(r);
  json http = {{"method", r.method},
               {"path", path},
               {"protocol", "HTTP/1.1"},
               {"sourceIp", r.remote_addr},
               {"userAgent", header_value(r, "user-agent")}};
  json ctx = {{"accountId", kAccountId},     {"apiId", kApiId},
              {"domainName", host},          {"domainPrefix", domain_prefix(host)},
              {"http", std::move(http)},     {"requestId", c.request_id},
              {"routeKey", c.route_key},     {"stage", kStage},
              {"time", clf_time(c.time_ms)}, {"timeEpoch", c.time_ms}};
  if (c.jwt) {
    ctx["authorizer"] = {{"jwt", {{"claims", c.jwt_claims}, {"scopes", c.jwt_scopes}}}};
  }
  event["requestContext"] = std::move(ctx);
  if (!c.path_parameters.empty()) event["pathParameters"] = c.path_parameters;
  add_body(r, event);
  return event.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string build_event_v1(const net::Request& r, const EventContext& c) {
  json event = json::object();
  event["version"] = "1.0";
  event["resource"] = c.resource_path.empty() ? std::string("/") + "{proxy+}" : c.resource_path;
  std::string path = raw_path(r);
  event["path"] = path;
  event["httpMethod"] = r.method;
  json headers = json::object(), multi = json::object();
  for (const auto& [name, values] : group_headers(r.headers)) {
    headers[name] = values.back();
    multi[name] = values;
  }
  event["headers"] = std::move(headers);
  event["multiValueHeaders"] = std::move(multi);
  auto query = parse_query(r.query);
  if (query.empty()) {
    event["queryStringParameters"] = nullptr;
    event["multiValueQueryStringParameters"] = nullptr;
  } else {
    json q = json::object(), mq = json::object();
    for (const auto& [k, vs] : query) {
      q[k] = vs.back();
      mq[k] = vs;
    }
    event["queryStringParameters"] = std::move(q);
    event["multiValueQueryStringParameters"] = std::move(mq);
  }
  std::string host = header_value(r, "host");
  json authorizer = {{"claims", nullptr}, {"scopes", nullptr}};
  if (c.jwt) authorizer = {{"claims", c.jwt_claims}, {"scopes", c.jwt_scopes}};
  json identity = {{"accessKey", nullptr},
                   {"accountId", nullptr},
                   {"caller", nullptr},
                   {"cognitoAuthenticationProvider", nullptr},
                   {"cognitoAuthenticationType", nullptr},
                   {"cognitoIdentityId", nullptr},
                   {"cognitoIdentityPoolId", nullptr},
                   {"principalOrgId", nullptr},
                   {"sourceIp", r.remote_addr},
                   {"user", nullptr},
                   {"userAgent", header_value(r, "user-agent")},
                   {"userArn", nullptr}};
  event["requestContext"] = {{"accountId", kAccountId},
                             {"apiId", kApiId},
                             {"authorizer", std::move(authorizer)},
                             {"domainName", host},
                             {"domainPrefix", domain_prefix(host)},
                             {"extendedRequestId", c.request_id},
                             {"httpMethod", r.method},
                             {"identity", std::move(identity)},
                             {"path", path},
                             {"protocol", "HTTP/1.1"},
                             {"requestId", c.request_id},
                             {"requestTime", clf_time(c.time_ms)},
                             {"requestTimeEpoch", c.time_ms},
                             {"resourceId", c.route_key},
                             {"resourcePath", event["resource"]},
                             {"stage", kStage}};
  event["pathParameters"] = c.path_parameters.empty() ? json(nullptr) : json(c.path_parameters);
  event["stageVariables"] = nullptr;
  bool text = is_text_body(header_value(r, "content-type"), r.body);
  event["body"] = r.body.empty() ? json(nullptr) : json(text ? r.body : base64_encode(r.body));
  event["isBase64Encoded"] = !r.body.empty() && !text;
  return event.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<net::Response> map_response_v2(std::string_view payload) {
  json doc = json::parse(payload, nullptr, false);
  if (doc.is_discarded()) return Status::Invalid("the function's response is not JSON");
  if (!doc.is_object() || !doc.contains("statusCode")) {
    // Any other JSON is the body of a 200; a JSON string is the body itself.
    net::Response res{200, {}, doc.is_string() ? doc.get<std::string>() : std::string(payload)};
    res.set_header("Content-Type", "application/json");
    return res;
  }
  TAMAYA_ASSIGN_OR_RETURN(int code, status_code(doc));
  TAMAYA_ASSIGN_OR_RETURN(std::string body, response_body(doc));
  net::Response res{code, {}, std::move(body)};
  if (auto h = doc.find("headers"); h != doc.end() && h->is_object()) {
    for (const auto& [k, v] : h->items()) res.set_header(k, header_string(v));
  }
  if (auto ck = doc.find("cookies"); ck != doc.end() && ck->is_array()) {
    for (const auto& v : *ck) {
      if (v.is_string()) res.set_header("Set-Cookie", v.get<std::string>());
    }
  }
  return res;
}

Result<net::Response> map_response_v1(std::string_view payload) {
  json doc = json::parse(payload, nullptr, false);
  if (doc.is_discarded()) return Status::Invalid("the function's response is not JSON");
  if (!doc.is_object() || !doc.contains("statusCode")) {
    return Status::Invalid("a 1.0 response must be an object with statusCode");
  }
  TAMAYA_ASSIGN_OR_RETURN(int code, status_code(doc));
  TAMAYA_ASSIGN_OR_RETURN(std::string body, response_body(doc));
  net::Response res{code, {}, std::move(body)};
  std::vector<std::string> seen;
  if (auto m = doc.find("multiValueHeaders"); m != doc.end() && m->is_object()) {
    for (const auto& [k, vs] : m->items()) {
      if (!vs.is_array()) continue;
      for (const auto& v : vs) res.set_header(k, header_string(v));
      seen.push_back(lower(k));
    }
  }
  if (auto h = doc.find("headers"); h != doc.end() && h->is_object()) {
    for (const auto& [k, v] : h->items()) {
      // multiValueHeaders win over headers for the same name, as in AWS.
      if (std::find(seen.begin(), seen.end(), lower(k)) == seen.end()) {
        res.set_header(k, header_string(v));
      }
    }
  }
  return res;
}

net::Response gateway_error(int status) {
  const char* message = "Internal Server Error";
  switch (status) {
    case 401:
      message = "Unauthorized";
      break;
    case 403:
      message = "Forbidden";
      break;
    case 404:
      message = "Not Found";
      break;
    case 413:
      message = "Request Entity Too Large";
      break;
    case 429:
      message = "Too Many Requests";
      break;
    case 502:
      message = "Internal Server Error";
      break;
    case 503:
      message = "Service Unavailable";
      break;
    case 504:
      message = "Service Unavailable";
      break;
  }
  return net::Response::json(status, fmt::format(R"({{"message":"{}"}})", message));
}

}  // namespace tamaya::gateway
