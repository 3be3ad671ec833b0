#include "gateway/event.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/encoding.h"
#include "common/json_text.h"
#include "common/strings.h"
#include "gateway/routes.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

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

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlongs,
// surrogates or code points past U+10FFFF) at the start of s, 0 if none.
size_t utf8_sequence_length(std::string_view s) {
  auto byte = [&](size_t i) -> unsigned {
    return i < s.size() ? static_cast<unsigned char>(s[i]) : 0u;
  };
  auto cont = [&](size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return byte(i) >= lo && byte(i) <= hi;
  };
  unsigned c = byte(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

// Appends `s` as a JSON string: escaped as nlohmann::json dumps it, with
// invalid UTF-8 replaced by U+FFFD (paths and headers are bytes on the wire,
// and a JSON event must be text: found by the fuzzer).
void append_json_string(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    // A run of characters that stand for themselves goes in at once.
    size_t run = i;
    while (run < s.size()) {
      unsigned char r = static_cast<unsigned char>(s[run]);
      if (r < 0x20 || r >= 0x80 || r == '"' || r == '\\') break;
      ++run;
    }
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = utf8_sequence_length(s.substr(i));
      if (n > 0) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += "\xEF\xBF\xBD";
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += char(c);
        }
    }
    ++i;
  }
  out += '"';
}

// A JSON object written straight into a string: the 2.0 event is built on
// every request, and a document tree costs an allocation per node.
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_ += '{'; }
  ObjectWriter& key(std::string_view k) {
    if (!first_) out_ += ',';
    first_ = false;
    append_json_string(out_, k);
    out_ += ':';
    return *this;
  }
  ObjectWriter& str(std::string_view k, std::string_view v) {
    key(k);
    append_json_string(out_, v);
    return *this;
  }
  ObjectWriter& raw(std::string_view k, std::string_view v) {
    key(k);
    out_ += v;
    return *this;
  }
  ObjectWriter& num(std::string_view k, int64_t v) { return raw(k, std::to_string(v)); }
  ObjectWriter& boolean(std::string_view k, bool v) { return raw(k, v ? "true" : "false"); }
  void close() { out_ += '}'; }
  // The string a value for the last key() goes to.
  std::string& out() { return out_; }

 private:
  std::string& out_;
  bool first_ = true;
};

template <typename Strings>
void append_string_array(std::string& out, const Strings& values) {
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    append_json_string(out, values[i]);
  }
  out += ']';
}

void append_string_map(std::string& out, const std::map<std::string, std::string>& m) {
  ObjectWriter o(out);
  for (const auto& [k, v] : m) o.str(k, v);
  o.close();
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
  // Compared without case rather than lower-cased into a copy: this runs on
  // every request with a body.
  std::string_view ct = trim(content_type.substr(0, content_type.find(';')));
  if (ct.empty()) return valid_utf8(body);
  if (iequals_prefix(ct, "text/")) return true;
  static const char* kText[] = {"application/json",    "application/javascript",
                                "application/xml",     "application/x-www-form-urlencoded",
                                "application/graphql", "application/x-ndjson",
                                "application/ld+json"};
  for (const char* t : kText) {
    if (iequals(ct, t)) return true;
  }
  auto ends = [&](std::string_view suffix) {
    return ct.size() >= suffix.size() && iequals(ct.substr(ct.size() - suffix.size()), suffix);
  };
  return ends("+json") || ends("+xml");
}

const std::string& clf_time(int64_t time_ms) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t secs = time_ms / 1000;
  // Every event carries one; the requests of a second share it.
  thread_local time_t cached_secs = 0;
  thread_local std::string cached;
  if (secs == cached_secs && !cached.empty()) return cached;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  cached = fmt::format("{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000", tm.tm_mday, kMonths[tm.tm_mon],
                       tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  cached_secs = secs;
  return cached;
}

std::string build_event_v2(const net::Request& r, const EventContext& c) {
  // Sized close to what it will take: the fixed fields are about 550 bytes,
  // and glibc serves blocks up to 1 KiB from its per-thread cache, so an
  // ordinary event's buffer no longer goes to the slower bins.
  size_t estimate = 640 + 2 * c.route_key.size() + 3 * r.target.size() + c.domain_name.size() +
                    r.body.size() + r.body.size() / 3;
  for (const auto& [k, v] : r.headers) estimate += k.size() + v.size() + 6;
  std::string out;
  out.reserve(estimate);
  ObjectWriter event(out);
  event.str("version", "2.0").str("routeKey", c.route_key);
  std::string path = c.raw_path.empty() ? raw_path(r) : c.raw_path;
  event.str("rawPath", path).str("rawQueryString", r.query);
  // Grouped as group_headers() does, but written in place: this runs on
  // every request, and the grouped copy cost ~8 allocations for a handful of
  // headers. Cookies first: 2.0 moves them into a list of their own.
  const net::Headers& hs = r.headers;
  std::vector<std::string_view> cookies;
  for (const auto& [k, v] : hs) {
    if (!iequals(k, "cookie")) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view one = trim(rest.substr(0, semi));
      if (!one.empty()) cookies.push_back(one);
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  if (!cookies.empty()) {
    event.key("cookies");
    append_string_array(out, cookies);
  }
  {
    ObjectWriter h(event.key("headers").out());
    std::string name, joined;
    for (size_t i = 0; i < hs.size(); ++i) {
      const std::string& k = hs[i].first;
      if (iequals(k, "cookie")) continue;
      bool seen = false;
      for (size_t j = 0; j < i && !seen; ++j) seen = iequals(hs[j].first, k);
      if (seen) continue;  // joined into the first one's value
      name.assign(k);
      for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      std::string_view value = hs[i].second;
      bool repeated = false;
      for (size_t j = i + 1; j < hs.size(); ++j) {
        if (!iequals(hs[j].first, k)) continue;
        if (!repeated) joined.assign(value);
        repeated = true;
        joined += ',';
        joined += hs[j].second;
      }
      h.str(name, repeated ? std::string_view(joined) : value);
    }
    h.close();
  }
  auto query = parse_query(r.query);
  if (!query.empty()) {
    ObjectWriter q(event.key("queryStringParameters").out());
    for (const auto& [k, vs] : query) q.str(k, join(vs, ","));
    q.close();
  }
  std::string host = c.domain_name.empty() ? header_value(r, "host") : c.domain_name;
  {
    ObjectWriter ctx(event.key("requestContext").out());
    ctx.str("accountId", c.account_id.empty() ? kAccountId : c.account_id)
        .str("apiId", c.api_id.empty() ? kApiId : c.api_id);
    if (c.jwt) {
      ObjectWriter auth(ctx.key("authorizer").out());
      ObjectWriter jwt(auth.key("jwt").out());
      append_string_map(jwt.key("claims").out(), c.jwt_claims);
      append_string_array(jwt.key("scopes").out(), c.jwt_scopes);
      jwt.close();
      auth.close();
    } else if (c.iam) {
      ObjectWriter auth(ctx.key("authorizer").out());
      ObjectWriter iam(auth.key("iam").out());
      iam.str("accessKey", c.iam_access_key)
          .str("accountId", c.account_id)
          .str("callerId", c.iam_access_key)
          .raw("cognitoIdentity", "null")
          .raw("principalOrgId", "null")
          .str("userArn", "arn:aws:iam::" + c.account_id + ":user/" + c.iam_access_key)
          .str("userId", c.iam_access_key);
      iam.close();
      auth.close();
    }
    ctx.str("domainName", host).str("domainPrefix", domain_prefix(host));
    {
      ObjectWriter http(ctx.key("http").out());
      http.str("method", r.method)
          .str("path", path)
          .str("protocol", "HTTP/1.1")
          .str("sourceIp", r.remote_addr)
          .str("userAgent", header_value(r, "user-agent"));
      http.close();
    }
    ctx.str("requestId", c.request_id)
        .str("routeKey", c.route_key)
        .str("stage", kStage)
        .str("time", clf_time(c.time_ms))
        .num("timeEpoch", c.time_ms);
    ctx.close();
  }
  if (!c.path_parameters.empty())
    append_string_map(event.key("pathParameters").out(), c.path_parameters);
  bool text = is_text_body(header_value(r, "content-type"), r.body);
  if (!r.body.empty()) {
    if (text) {
      event.str("body", r.body);
    } else {
      event.str("body", base64_encode(r.body));
    }
  }
  event.boolean("isBase64Encoded", !r.body.empty() && !text);
  event.close();
  return out;
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
  return json_text(event);
}

// The common answer (a JSON object or array without a top-level
// statusCode: the body of a 200 as it is) recognised in one pass that copies
// nothing: nlohmann's SAX lexer builds a string per key and value. A strict
// subset of JSON: true only for text nlohmann accepts too. Whatever is
// unusual (a \u escape, an exponent, a long number, deep nesting, a
// top-level scalar) answers false and goes the full way, which decides.
class PlainContainer {
 public:
  explicit PlainContainer(std::string_view s) : s_(s) {}

  bool check() {
    skip_ws();
    if (end() || (s_[i_] != '{' && s_[i_] != '[')) return false;
    if (!value(0)) return false;
    skip_ws();
    return end();
  }

 private:
  static constexpr int kMaxDepth = 64;
  static constexpr size_t kMaxNumberChars = 32;  // no overflow without an exponent

  bool end() const { return i_ >= s_.size(); }
  void skip_ws() {
    while (!end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool digit() const { return !end() && s_[i_] >= '0' && s_[i_] <= '9'; }

  bool value(int depth) {
    if (end()) return false;
    switch (s_[i_]) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  // `{…}` or `[…]`: `item` reads one member or element; a comma goes on to
  // the next, `close` ends it.
  template <typename Item>
  bool container(int depth, char close, Item item) {
    if (depth > kMaxDepth) return false;
    ++i_;
    skip_ws();
    if (!end() && s_[i_] == close) {
      ++i_;
      return true;
    }
    while (true) {
      skip_ws();
      if (!item()) return false;
      skip_ws();
      if (end()) return false;
      if (s_[i_] == close) {
        ++i_;
        return true;
      }
      if (s_[i_] != ',') return false;
      ++i_;
    }
  }

  bool object(int depth) {
    return container(depth, '}', [&] {
      if (end() || s_[i_] != '"') return false;
      const size_t key = i_ + 1;
      if (!string()) return false;
      // A top-level statusCode makes it an API Gateway answer to map.
      if (depth == 1 && s_.substr(key, i_ - 1 - key) == "statusCode") return false;
      skip_ws();
      if (end() || s_[i_] != ':') return false;
      ++i_;
      skip_ws();
      return value(depth);
    });
  }

  bool array(int depth) {
    return container(depth, ']', [&] { return value(depth); });
  }

  bool string() {
    ++i_;  // the opening quote
    while (!end()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) return false;
        switch (s_[i_ + 1]) {
          case '"':
          case '\\':
          case '/':
          case 'b':
          case 'f':
          case 'n':
          case 'r':
          case 't':
            i_ += 2;
            continue;
          default:
            return false;  // \u (surrogates) or not an escape
        }
      }
      if (c < 0x20) return false;
      if (c >= 0x80) {
        // The same rule as nlohmann's (RFC 3629).
        const size_t n = utf8_sequence_length(s_.substr(i_));
        if (n == 0) return false;
        i_ += n;
        continue;
      }
      ++i_;
    }
    return false;
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  bool number() {
    const size_t start = i_;
    if (!end() && s_[i_] == '-') ++i_;
    if (end()) return false;
    if (s_[i_] == '0') {
      ++i_;
    } else if (s_[i_] >= '1' && s_[i_] <= '9') {
      while (digit()) ++i_;
    } else {
      return false;
    }
    if (!end() && s_[i_] == '.') {
      ++i_;
      if (!digit()) return false;
      while (digit()) ++i_;
    }
    if (!end() && (s_[i_] == 'e' || s_[i_] == 'E')) return false;
    return i_ - start <= kMaxNumberChars;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// Whether a response is valid JSON and, without building a document, whether
// it is an object with a top-level statusCode (or a JSON string): only those
// need the document. Most plain-JSON answers then cost one validating pass.
class ResponseShape : public nlohmann::json_sax<json> {
 public:
  bool needs_document = false;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override {
    if (depth_ == 0) return stop();  // a JSON string's body is the string itself
    return true;
  }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override {
    ++depth_;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 1 && k == "statusCode") return stop();
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool value() { return true; }
  bool stop() {
    needs_document = true;
    return false;
  }
  int depth_ = 0;
};

Result<net::Response> map_response_v2(std::string_view payload) {
  if (PlainContainer(payload).check()) return net::Response::json(200, std::string(payload));
  ResponseShape shape;
  bool valid = json::sax_parse(payload, &shape);
  if (!shape.needs_document) {
    if (!valid) return Status::Invalid("the function's response is not JSON");
    // Any other JSON is the body of a 200.
    return net::Response::json(200, std::string(payload));
  }
  json doc = json::parse(payload, nullptr, false);
  if (doc.is_discarded()) return Status::Invalid("the function's response is not JSON");
  if (!doc.is_object() || !doc.contains("statusCode")) {
    // Any other JSON is the body of a 200; a JSON string is the body itself.
    return net::Response::json(200,
                               doc.is_string() ? doc.get<std::string>() : std::string(payload));
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
    case 504:  // API Gateway answers an integration timeout the same way
      message = "Service Unavailable";
      break;
  }
  return net::Response::json(status, fmt::format(R"({{"message":"{}"}})", message));
}

}  // namespace tamaya::gateway
