#include "gateway/gateway.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <list>
#include <optional>
#include <unordered_map>

#include "common/encoding.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_format.h"
#include "gateway/event.h"
#include "gateway/function_urls.h"
#include "gateway/jwt.h"
#include "gateway/limiter.h"
#include "gateway/store.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;

// An x-request-id from the client is kept when it is this short and
// printable, so it can be followed through logs; otherwise a new one is made.
constexpr size_t kMaxClientRequestIdChars = 128;

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), int(bytes)) != 1) {
    // RAND_bytes fails only without an entropy source: a broken host.
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

bool usable_request_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxClientRequestIdChars) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return c > 32 && c < 127 && c != '"' && c != '\\'; });
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

// Over the function's own timeout, so the dispatcher's timeout error (with
// its log) arrives before the gateway gives up.
constexpr int64_t kUrlTimeoutMarginMs = 2'000;

// Lambda function URLs word their own refusals {"Message": ...}.
net::Response url_error(int status) {
  return net::Response::json(
      status, status == 403 ? R"({"Message":"Forbidden"})" : R"({"Message":"Not Found"})");
}

Status no_function_url(const std::string& function, const std::string& qualifier) {
  return Status::NotFound("The resource you requested does not exist: function " + function +
                          (qualifier.empty() ? "" : ":" + qualifier) +
                          " has no function URL; create one with CreateFunctionUrlConfig");
}

net::Response too_many(int retry_after_s) {
  net::Response r = gateway_error(429);
  r.set_header("Retry-After", std::to_string(retry_after_s));
  return r;
}

}  // namespace

net::ServerLimits server_limits(const Settings& s) {
  net::ServerLimits l;
  l.max_body_bytes = s.gateway_max_body_bytes;
  l.max_header_bytes = s.gateway_max_header_bytes;
  l.max_header_count = s.gateway_max_header_count;
  l.max_request_line_bytes = s.gateway_max_request_line_bytes;
  l.max_connections = s.gateway_max_connections;
  l.header_timeout = std::chrono::milliseconds(s.gateway_header_timeout_ms);
  l.body_timeout = std::chrono::milliseconds(s.gateway_body_timeout_ms);
  l.idle_timeout = std::chrono::milliseconds(s.gateway_idle_timeout_ms);
  l.refused_reads_per_s = s.gateway_refused_reads_per_s;
  return l;
}

// One request on its way through the gateway.
struct Exchange : std::enable_shared_from_this<Exchange> {
  explicit Exchange(net::Responder r) : respond(std::move(r)) {}
  ~Exchange() { unlink_timeout(); }
  void unlink_timeout() {
    if (timeout_list) timeout_list->erase(timeout_it);
    timeout_list = nullptr;
  }
  net::Responder respond;
  std::string request_id;
  SteadyTime start;
  int64_t wall_ms = 0;
  std::string method;
  std::string path;
  std::string source_ip;
  std::string origin;
  int64_t request_bytes = 0;
  std::string route_key = "-";
  std::string target;
  bool cold = false;
  bool done = false;
  // The CORS rules of whatever answers: the gateway's, a function URL's, or
  // none (a function URL without Cors: its own headers pass unchanged).
  const CorsConfig* cors = nullptr;
  std::shared_ptr<const FunctionUrl> url;  // keeps a function URL's CORS alive
  // In Gateway::Impl::in_flight while a sync invoke may still time out.
  std::chrono::steady_clock::time_point deadline{};
  std::list<Exchange*>* timeout_list = nullptr;
  std::list<Exchange*>::iterator timeout_it;
};

// Appends a JSON string: as is when plain printable ASCII (the usual case),
// else through nlohmann (escapes, invalid UTF-8 replaced).
static void append_json_string(std::string& out, std::string_view v) {
  bool plain = std::all_of(v.begin(), v.end(),
                           [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {
    out += '"';
    out += v;
    out += '"';
    return;
  }
  out += json_text(std::string(v));
}

// Appends format_iso8601(ms) as a JSON string; the date and time to the
// second are formatted once per second, as the requests of a second share them.
static void append_iso8601(std::string& out, int64_t ms) {
  if (ms < 0) return append_json_string(out, format_iso8601(ms));
  thread_local int64_t cached_secs = -1;
  thread_local std::string cached;  // "2026-11-25T22:30:00." of cached_secs
  const int64_t secs = ms / 1000;
  if (secs != cached_secs) {
    cached = format_iso8601(secs * 1000);
    cached.resize(cached.size() - 4);  // "000Z"
    cached_secs = secs;
  }
  const int frac = int(ms % 1000);
  out += '"';
  out += cached;
  out += char('0' + frac / 100);
  out += char('0' + frac / 10 % 10);
  out += char('0' + frac % 10);
  out += "Z\"";
}

struct KeyState {
  ApiKey key;
  std::optional<TokenBucket> bucket;
  DailyQuota quota{0};
  bool quota_dirty = false;  // used() changed since it was last saved
};

struct Gateway::Impl : std::enable_shared_from_this<Gateway::Impl> {
  explicit Impl(Services s) : s(s), store(s.db), flush_timer(s.io), timeout_timer(s.io) {}
  ~Impl() {
    flush();
    if (access_file) std::fclose(access_file);
  }

  Services s;
  GatewayStore store;
  RouteTable table;
  std::map<std::string, JwtVerifier> verifiers;      // by route id
  std::map<std::string, TokenBucket> route_buckets;  // by route id
  std::unordered_map<std::string, KeyState> keys;    // by key hash
  CorsConfig cors;
  std::FILE* access_file = nullptr;
  // Access-log lines wait here and go to the file in one write per
  // gateway_access_log_flush_ms (or when the buffer is full), so a request
  // costs no syscall of its own.
  std::string access_buffer;
  // By url id; replaced (not changed) on update, so a request in flight
  // keeps the config it started with.
  std::unordered_map<std::string, std::shared_ptr<const FunctionUrl>> urls;
  int public_port = 0;
  boost::asio::steady_timer flush_timer;
  bool flush_armed = false;
  // Integration timeouts (504): sync requests in flight, one FIFO per
  // timeout value (so each list is in deadline order), and one timer for
  // all of them set to the earliest deadline. A request costs a list node,
  // not a timer of its own.
  std::map<int64_t, std::list<Exchange*>> in_flight;
  boost::asio::steady_timer timeout_timer;
  bool timeout_armed = false;
  std::chrono::steady_clock::time_point timeout_at{};

  void watch_timeout(const std::shared_ptr<Exchange>& ex, int64_t timeout_ms) {
    ex->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto& list = in_flight[timeout_ms];
    ex->timeout_it = list.insert(list.end(), ex.get());
    ex->timeout_list = &list;
    if (!timeout_armed || ex->deadline < timeout_at) arm_timeout(ex->deadline);
  }

  void arm_timeout(std::chrono::steady_clock::time_point at) {
    timeout_armed = true;
    timeout_at = at;
    timeout_timer.expires_at(at);  // cancels an earlier wait
    timeout_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->timeout_armed = false;
      self->expire_timeouts();
    });
  }

  void expire_timeouts() {
    auto now = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::time_point> next;
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      auto& list = it->second;
      while (!list.empty() && list.front()->deadline <= now) {
        auto ex = list.front()->shared_from_this();
        ex->unlink_timeout();
        spdlog::warn("gateway integration timeout request_id={} route={}", ex->request_id,
                     ex->route_key);
        finish(ex, gateway_error(504));
      }
      if (list.empty()) {
        it = in_flight.erase(it);
        continue;
      }
      if (!next || list.front()->deadline < *next) next = list.front()->deadline;
      ++it;
    }
    if (next) arm_timeout(*next);
  }
  bool usage_dirty = false;
  SteadyTime last_usage_flush{};

  // Writes what waits: the access log's buffer, and the keys' daily usage
  // when gateway_quota_flush_ms has passed (or `all`).
  void flush(bool all = true) {
    if (!access_buffer.empty()) {
      if (access_file) {
        std::fwrite(access_buffer.data(), 1, access_buffer.size(), access_file);
        std::fflush(access_file);
      }
      access_buffer.clear();
    }
    SteadyTime now = s.clock.now();
    if (usage_dirty && (all || now - last_usage_flush >=
                                   std::chrono::milliseconds(s.settings.gateway_quota_flush_ms))) {
      std::vector<KeyUsage> usage;
      for (auto& [hash, st] : keys) {
        if (!st.quota_dirty) continue;
        usage.push_back({st.key.id, st.quota.day(), st.quota.used()});
        st.quota_dirty = false;
      }
      if (Status w = store.save_key_usage(usage); !w.ok()) {
        // Kept in memory and retried on the next flush; a crash before then
        // forgets at most this batch.
        spdlog::error("gateway: cannot save API-key usage: {}", w.message());
        for (auto& [hash, st] : keys) {
          for (const auto& u : usage) {
            if (u.key_id == st.key.id) st.quota_dirty = true;
          }
        }
      } else {
        usage_dirty = false;
      }
      last_usage_flush = now;
    }
  }

  // Arms the flush timer once; it re-arms itself while something waits.
  void schedule_flush() {
    if (flush_armed) return;
    flush_armed = true;
    int64_t ms = std::max<int64_t>(
        1, std::min<int64_t>(s.settings.gateway_access_log_flush_ms,
                             usage_dirty ? s.settings.gateway_quota_flush_ms : INT64_MAX));
    flush_timer.expires_after(std::chrono::milliseconds(ms));
    flush_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->flush_armed = false;
      self->flush(/*all=*/false);
      if (!self->access_buffer.empty() || self->usage_dirty) self->schedule_flush();
    });
  }
  std::function<void(const std::string&, int)> request_observer;

  void rebuild(std::vector<Route> routes) {
    std::map<std::string, JwtVerifier> v;
    std::map<std::string, TokenBucket> buckets;
    for (const auto& r : routes) {
      if (r.auth == AuthType::kJwt) {
        auto verifier = JwtVerifier::create(r.jwt);
        if (verifier.ok()) {
          v.emplace(r.id, std::move(*verifier));
        } else {
          // Kept in the table so requests get 401 rather than a wrong route.
          spdlog::error("gateway route {} has unusable JWT keys: {}", r.route_key(),
                        verifier.status().message());
        }
      }
      if (r.rate_limit.rate > 0) {
        auto old = route_buckets.find(r.id);
        buckets.emplace(r.id,
                        old != route_buckets.end()
                            ? old->second
                            : TokenBucket(r.rate_limit.rate, r.rate_limit.burst, s.clock.now()));
      }
    }
    verifiers = std::move(v);
    route_buckets = std::move(buckets);
    table = RouteTable(std::move(routes));
  }

  void add_key_state(const ApiKey& k) {
    KeyState st{k, std::nullopt, DailyQuota(k.daily_quota)};
    if (k.rate > 0) st.bucket.emplace(k.rate, k.burst, s.clock.now());
    keys[k.key_hash] = std::move(st);
  }

  static bool origin_allowed(const CorsConfig& cors, const std::string& origin) {
    for (const auto& o : cors.allow_origins) {
      if (o == "*" || o == origin) return true;
    }
    return false;
  }

  static void add_cors_headers(const CorsConfig& cors, const Exchange& ex, net::Response& r) {
    if (cors.allow_origins.empty() || ex.origin.empty() || !origin_allowed(cors, ex.origin)) {
      return;
    }
    bool wildcard = !cors.allow_credentials &&
                    std::find(cors.allow_origins.begin(), cors.allow_origins.end(), "*") !=
                        cors.allow_origins.end();
    r.set_header("Access-Control-Allow-Origin", wildcard ? "*" : ex.origin);
    if (!wildcard) r.set_header("Vary", "Origin");
    if (cors.allow_credentials) r.set_header("Access-Control-Allow-Credentials", "true");
    if (!cors.expose_headers.empty()) {
      r.set_header("Access-Control-Expose-Headers", join(cors.expose_headers, ","));
    }
  }

  static net::Response preflight(const CorsConfig& cors, const net::Request& req,
                                 const Exchange& ex) {
    net::Response r = net::Response::no_content();
    if (!origin_allowed(cors, ex.origin)) return r;
    add_cors_headers(cors, ex, r);
    std::string methods =
        cors.allow_methods.empty()
            ? std::string(req.header("access-control-request-method").value_or(""))
            : join(cors.allow_methods, ",");
    r.set_header("Access-Control-Allow-Methods", methods);
    std::string headers =
        cors.allow_headers.empty()
            ? std::string(req.header("access-control-request-headers").value_or(""))
            : join(cors.allow_headers, ",");
    if (!headers.empty()) r.set_header("Access-Control-Allow-Headers", headers);
    if (cors.max_age_s > 0) r.set_header("Access-Control-Max-Age", std::to_string(cors.max_age_s));
    return r;
  }

  void access_log(const Exchange& ex, int status, size_t bytes) {
    double latency_ms = std::chrono::duration<double, std::milli>(s.clock.now() - ex.start).count();
    // Written by hand, keys in the order nlohmann would sort them: one line
    // per request should not cost a JSON document's worth of allocations.
    std::string text;
    text.reserve(256 + ex.path.size());
    text += "{\"bytes\":";
    text += std::to_string(bytes);
    text += ",\"cold_start\":";
    text += ex.cold ? "true" : "false";
    text += ",\"ip\":";
    append_json_string(text, ex.source_ip);
    text += ",\"latency_ms\":";
    std::string latency = fmt::format("{}", std::round(latency_ms * 1000) / 1000);
    if (latency.find_first_of(".en") == std::string::npos) latency += ".0";
    text += latency;
    text += ",\"method\":";
    append_json_string(text, ex.method);
    text += ",\"path\":";
    append_json_string(text, ex.path);
    text += ",\"requestId\":";
    append_json_string(text, ex.request_id);
    text += ",\"request_bytes\":";
    text += std::to_string(ex.request_bytes);
    text += ",\"routeKey\":";
    append_json_string(text, ex.route_key);
    text += ",\"status\":";
    text += std::to_string(status);
    text += ",\"target\":";
    append_json_string(text, ex.target);
    text += ",\"time\":";
    append_iso8601(text, ex.wall_ms);
    text += '}';
    if (access_file) {
      access_buffer += text;
      access_buffer += '\n';
      if (int64_t(access_buffer.size()) >= s.settings.gateway_access_log_buffer_bytes) {
        flush(/*all=*/false);
      } else {
        schedule_flush();
      }
    } else {
      spdlog::info("gateway access {}", text);
    }
  }

  // preflight: the answer already carries its CORS headers.
  void finish(const std::shared_ptr<Exchange>& ex, net::Response r, bool preflight = false) {
    if (ex->done) return;
    ex->done = true;
    ex->unlink_timeout();
    r.set_header("x-request-id", ex->request_id);
    if (ex->cors && !ex->cors->allow_origins.empty() && !preflight) {
      // As API Gateway: with CORS configured, the function's own CORS headers are ignored.
      std::erase_if(r.headers,
                    [](const auto& h) { return iequals_prefix(h.first, "access-control-"); });
      add_cors_headers(*ex->cors, *ex, r);
    }
    access_log(*ex, r.status, r.body.size());
    if (request_observer) request_observer(ex->route_key, r.status);
    ex->respond(std::move(r));
  }

  void handle(const net::Request& req, net::Responder respond) {
    auto ex = std::make_shared<Exchange>(std::move(respond));
    ex->start = s.clock.now();
    ex->wall_ms = s.clock.wall_ms();
    auto rid = req.header("x-request-id");
    ex->request_id = rid && usable_request_id(*rid) ? std::string(*rid) : new_request_id();
    ex->method = req.method;
    std::string_view target = req.target;
    std::string raw_path(target.substr(0, target.find('?')));
    ex->path = raw_path;
    ex->source_ip = req.remote_addr;
    ex->origin = std::string(req.header("origin").value_or(""));
    ex->request_bytes = int64_t(req.body.size());

    if (auto host = req.header("host")) {
      if (auto id = url_id_from_host(*host)) {
        auto url = urls.find(*id);
        // As Lambda: an unknown function URL host is refused, not routed.
        if (url == urls.end()) return finish(ex, url_error(403));
        return serve_url(ex, req, url->second, raw_path, std::string(*host));
      }
    }
    if (auto by_path = url_id_from_path(raw_path)) {
      if (auto url = urls.find(by_path->first); url != urls.end()) {
        return serve_url(ex, req, url->second, by_path->second, function_url_host(*url->second));
      }
    }

    ex->cors = &cors;
    if (!cors.allow_origins.empty() && req.method == "OPTIONS" && !ex->origin.empty() &&
        req.header("access-control-request-method")) {
      return finish(ex, preflight(cors, req, *ex), /*preflight=*/true);
    }
    auto match = table.match(req.method, raw_path);
    if (!match) return finish(ex, gateway_error(404));
    const Route& route = *match->route;
    ex->route_key = route.route_key();
    ex->target = route.target;
    if (route.async && int64_t(req.body.size()) > s.settings.gateway_async_max_body_bytes) {
      return finish(ex, gateway_error(413));
    }

    EventContext ctx;
    KeyState* key = nullptr;
    if (route.auth == AuthType::kApiKey) {
      auto presented = req.header("x-api-key");
      if (!presented) return finish(ex, gateway_error(403));
      auto it = keys.find(sha256_hex(*presented));
      if (it == keys.end() || it->second.key.revoked_ms != 0) return finish(ex, gateway_error(403));
      key = &it->second;
    } else if (route.auth == AuthType::kJwt) {
      std::string_view token = req.header("authorization").value_or("");
      if (iequals_prefix(token, "bearer ")) token.remove_prefix(7);
      auto v = verifiers.find(route.id);
      if (v == verifiers.end()) return finish(ex, gateway_error(401));
      auto id = v->second.verify(token, ex->wall_ms / 1000);
      if (!id.ok()) {
        spdlog::debug("gateway jwt refused request_id={} reason={}", ex->request_id,
                      id.status().message());
        return finish(ex, gateway_error(id.status().code() == Code::kPermissionDenied ? 403 : 401));
      }
      ctx.jwt = true;
      ctx.jwt_claims = std::move(id->claims);
      ctx.jwt_scopes = std::move(id->scopes);
    }

    int retry = 1;
    SteadyTime now = s.clock.now();
    if (auto b = route_buckets.find(route.id);
        b != route_buckets.end() && !b->second.take(now, &retry)) {
      return finish(ex, too_many(retry));
    }
    if (key) {
      if (key->bucket && !key->bucket->take(now, &retry)) return finish(ex, too_many(retry));
      if (key->quota.limit() > 0) {
        if (!key->quota.take(ex->wall_ms, &retry)) {
          // API Gateway's QUOTA_EXCEEDED answer, distinct from throttling.
          net::Response r = net::Response::json(429, R"({"message":"Limit Exceeded"})");
          r.set_header("Retry-After", std::to_string(retry));
          return finish(ex, std::move(r));
        }
        key->quota_dirty = true;
        usage_dirty = true;
        schedule_flush();
      }
    }

    std::string name = route.target, qualifier;
    if (size_t colon = name.find(':'); colon != std::string::npos) {
      qualifier = name.substr(colon + 1);
      name.resize(colon);
    }
    auto fn = s.registry.get(name, qualifier);
    if (!fn.ok()) {
      spdlog::error("gateway route {} targets {}: {}", ex->route_key, route.target,
                    fn.status().message());
      return finish(ex, gateway_error(500));
    }

    ctx.route_key = ex->route_key;
    ctx.resource_path = route.path;
    ctx.path_parameters = std::move(match->path_parameters);
    ctx.request_id = ex->request_id;
    ctx.time_ms = ex->wall_ms;
    bool v1 = route.payload_format == "1.0";
    int64_t timeout_ms =
        route.timeout_ms > 0 ? route.timeout_ms : s.settings.gateway_integration_timeout_ms;
    invoke(ex, req, std::move(*fn), ctx, v1, route.async, timeout_ms);
  }

  // A function URL request: Lambda's payload 2.0 with routeKey $default,
  // the URL's auth and CORS, the function's own timeout.
  void serve_url(const std::shared_ptr<Exchange>& ex, const net::Request& req,
                 std::shared_ptr<const FunctionUrl> url_ptr, const std::string& raw_path,
                 const std::string& domain) {
    ex->url = std::move(url_ptr);
    const FunctionUrl& url = *ex->url;
    ex->route_key = "$default";
    ex->target = url.qualifier.empty() ? url.function : url.function + ":" + url.qualifier;
    if (url.cors) {
      ex->cors = &*url.cors;
      if (req.method == "OPTIONS" && !ex->origin.empty() &&
          req.header("access-control-request-method")) {
        return finish(ex, preflight(*url.cors, req, *ex), /*preflight=*/true);
      }
    }
    EventContext ctx;
    ctx.account_id = "anonymous";
    if (url.auth == UrlAuth::kAwsIam) {
      auto caller =
          s.verify_iam ? s.verify_iam(req)
                       : Result<IamCaller>(Status(Code::kPermissionDenied,
                                                  "AWS_IAM function URLs need SigV4 verification"));
      if (!caller.ok()) {
        spdlog::debug("gateway function URL refused request_id={} reason={}", ex->request_id,
                      caller.status().message());
        return finish(ex, url_error(403));
      }
      ctx.account_id = caller->account;
      ctx.iam_access_key = caller->access_key;
      ctx.iam = true;
    }
    auto fn = s.registry.get(url.function, url.qualifier);
    if (!fn.ok()) {
      // The function (or alias) went away after its URL was made.
      return finish(ex, url_error(403));
    }
    ctx.route_key = "$default";
    ctx.request_id = ex->request_id;
    ctx.time_ms = ex->wall_ms;
    ctx.api_id = url.url_id;
    ctx.domain_name = domain;
    ctx.raw_path = raw_path;
    // The dispatcher ends the invocation at the function's timeout with
    // its own error; this bound only catches a lost answer.
    int64_t timeout_ms = int64_t(fn->config.timeout_s) * 1000 + kUrlTimeoutMarginMs;
    invoke(ex, req, std::move(*fn), ctx, /*v1=*/false, /*async=*/false, timeout_ms);
  }

  std::shared_ptr<const FunctionUrl> find_url(const std::string& function,
                                              const std::string& qualifier) const;

  std::string function_url_host(const FunctionUrl& url) const {
    return url.url_id + std::string(kFunctionUrlHostLabel) + url.region + ".localhost";
  }

  void invoke(const std::shared_ptr<Exchange>& ex, const net::Request& req,
              registry::FunctionVersion fn, const EventContext& ctx, bool v1, bool async,
              int64_t timeout_ms) {
    dispatch::InvokeRequest ir;
    ir.target.code_dir = s.artifacts.code_dir(fn.code_sha256);
    ir.target.function = std::move(fn);
    // Built by the dispatcher only if it admits the request: a throttled one
    // (the overflow of a flooded function) is refused without its event.
    ir.make_payload = [&req, &ctx, v1] {
      return v1 ? build_event_v1(req, ctx) : build_event_v2(req, ctx);
    };
    ir.request_id = ex->request_id;
    ir.trace_id =
        std::string(req.header("traceparent").value_or(req.header("x-amzn-trace-id").value_or("")));
    ir.trigger = async ? "async" : "gateway";

    if (async && s.enqueue_async) {
      // 202 only once the event is durable (the daemon's events queue).
      AsyncEvent e;
      size_t colon = ex->target.find(':');
      e.function = ex->target.substr(0, colon);
      if (colon != std::string::npos) e.qualifier = ex->target.substr(colon + 1);
      e.payload = ir.make_payload();
      e.request_id = ex->request_id;
      e.trace_id = std::move(ir.trace_id);
      s.enqueue_async(std::move(e), [self = shared_from_this(), ex](const Status& st) {
        if (ex->done) return;
        if (!st.ok()) {
          spdlog::warn("gateway async event not accepted request_id={} error={}", ex->request_id,
                       st.message());
          return self->finish(ex, gateway_error(st.code() == Code::kResourceExhausted ? 429 : 500));
        }
        self->finish(ex, net::Response::json(202, json{{"requestId", ex->request_id}}.dump()));
      });
      return;
    }
    if (async) {
      // Without a queue wired (tests of the gateway alone): fire and forget.
      ir.payload = ir.make_payload();  // before the answer lets the request go
      ir.make_payload = nullptr;
      finish(ex, net::Response::json(202, json{{"requestId", ex->request_id}}.dump()));
      s.dispatcher.invoke(std::move(ir), [rid = ex->request_id](const dispatch::InvokeResult& r) {
        if (!r.status.ok() || r.function_error) {
          spdlog::warn("gateway async invocation failed request_id={} error={}", rid,
                       r.status.ok() ? r.error_type : r.status.message());
        }
      });
      return;
    }

    watch_timeout(ex, timeout_ms);
    s.dispatcher.invoke(
        std::move(ir), [self = shared_from_this(), ex, v1](const dispatch::InvokeResult& r) {
          ex->cold = r.cold;
          if (!r.status.ok()) {
            switch (r.status.code()) {
              case Code::kResourceExhausted:
                return self->finish(ex, too_many(1));
              case Code::kUnavailable:
                return self->finish(ex, gateway_error(503));
              case Code::kTooLarge:
                return self->finish(ex, gateway_error(413));
              default:
                spdlog::error("gateway invoke failed request_id={} error={}", ex->request_id,
                              r.status.message());
                return self->finish(ex, gateway_error(500));
            }
          }
          if (r.function_error) return self->finish(ex, gateway_error(502));
          auto mapped = v1 ? map_response_v1(r.payload) : map_response_v2(r.payload);
          if (!mapped.ok()) {
            spdlog::warn("gateway malformed function response request_id={} route={}: {}",
                         ex->request_id, ex->route_key, mapped.status().message());
            return self->finish(ex, gateway_error(502));
          }
          self->finish(ex, std::move(*mapped));
        });
  }
};

Gateway::Gateway(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gateway::~Gateway() { impl_->flush(); }

void Gateway::flush() { impl_->flush(); }

void Gateway::set_public_port(int port) { impl_->public_port = port; }

Result<std::unique_ptr<Gateway>> Gateway::open(const Services& s) {
  auto impl = std::make_shared<Impl>(s);
  TAMAYA_ASSIGN_OR_RETURN(auto routes, impl->store.load_routes());
  impl->rebuild(std::move(routes));
  TAMAYA_ASSIGN_OR_RETURN(auto keys, impl->store.load_keys());
  for (const auto& k : keys) impl->add_key_state(k);
  // Today's use survives a restart; an older day's count would be reset by
  // the quota anyway.
  int64_t today = s.clock.wall_ms() / DailyQuota::kDayMs;
  TAMAYA_ASSIGN_OR_RETURN(auto usage, impl->store.load_key_usage(today));
  for (auto& [hash, st] : impl->keys) {
    if (auto u = usage.find(st.key.id); u != usage.end()) st.quota.restore(today, u->second);
  }
  TAMAYA_ASSIGN_OR_RETURN(auto urls, impl->store.load_function_urls());
  for (auto& u : urls) {
    std::string id = u.url_id;
    impl->urls[id] = std::make_shared<const FunctionUrl>(std::move(u));
  }
  TAMAYA_ASSIGN_OR_RETURN(auto cors, impl->store.get_config("cors"));
  if (cors) {
    auto parsed = cors_from_json(json::parse(*cors, nullptr, false));
    if (!parsed.ok()) return parsed.status().with_context("stored CORS configuration");
    impl->cors = std::move(*parsed);
  }
  if (!s.settings.gateway_access_log.empty()) {
    std::filesystem::path p = s.settings.gateway_access_log;
    if (p.is_relative()) p = std::filesystem::path(s.settings.data_dir) / p;
    impl->access_file = std::fopen(p.c_str(), "ae");
    if (!impl->access_file) {
      return Status::Invalid("cannot open gateway_access_log '" + p.string() +
                             "': " + std::strerror(errno));
    }
  }
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

void Gateway::handle(const net::Request& request, net::Responder respond) {
  impl_->handle(request, std::move(respond));
}

Result<Route> Gateway::add_route(const json& spec) {
  TAMAYA_ASSIGN_OR_RETURN(Route r, route_from_json(spec));
  std::string name = r.target.substr(0, r.target.find(':'));
  std::string qualifier =
      r.target.find(':') == std::string::npos ? "" : r.target.substr(r.target.find(':') + 1);
  if (auto fn = impl_->s.registry.get(name, qualifier); !fn.ok()) {
    return Status::NotFound("the route's target '" + r.target +
                            "' does not resolve: " + fn.status().message());
  }
  r.id = random_hex(4).substr(0, 7);
  r.created_ms = impl_->s.clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->store.insert_route(r));
  auto routes = impl_->table.routes();
  routes.push_back(r);
  impl_->rebuild(std::move(routes));
  return r;
}

Status Gateway::remove_route(const std::string& id_or_key) {
  auto routes = impl_->table.routes();
  auto it = std::find_if(routes.begin(), routes.end(), [&](const Route& r) {
    return r.id == id_or_key || r.route_key() == id_or_key;
  });
  if (it == routes.end()) {
    return Status::NotFound("no route '" + id_or_key + "'; list them with GET /v1/routes");
  }
  TAMAYA_RETURN_IF_ERROR(impl_->store.delete_route(it->id));
  routes.erase(it);
  impl_->rebuild(std::move(routes));
  return Status::Ok();
}

std::vector<Route> Gateway::routes() const { return impl_->table.routes(); }

Result<std::pair<ApiKey, std::string>> Gateway::create_key(const json& spec) {
  if (!spec.is_object()) {
    return Status::Invalid(
        "the body must be a JSON object: {\"name\", \"rate\"?, \"burst\"?, \"daily_quota\"?}");
  }
  for (const auto& [k, v] : spec.items()) {
    if (k != "name" && k != "rate" && k != "burst" && k != "daily_quota") {
      return Status::Invalid("unknown field '" + k +
                             "'; known fields: name, rate, burst, daily_quota");
    }
  }
  ApiKey k;
  if (!spec.contains("name") || !spec["name"].is_string() ||
      spec["name"].get<std::string>().empty() || spec["name"].get<std::string>().size() > 128) {
    return Status::Invalid(
        "'name' is required: a string of 1..128 characters naming the key's holder");
  }
  k.name = spec["name"];
  if (spec.contains("rate")) {
    if (!spec["rate"].is_number() || spec["rate"].get<double>() < 0)
      return Status::Invalid("'rate' must be a number >= 0 (requests per second)");
    k.rate = spec["rate"];
  }
  for (auto [field, out] :
       {std::pair{"burst", &k.burst}, std::pair{"daily_quota", &k.daily_quota}}) {
    if (!spec.contains(field)) continue;
    if (!spec[field].is_number_integer() || spec[field].get<int64_t>() < 0) {
      return Status::Invalid(std::string("'") + field + "' must be an integer >= 0");
    }
    *out = spec[field];
  }
  if (k.rate > 0 && k.burst == 0) k.burst = std::max<int64_t>(1, int64_t(k.rate));
  std::string plain = "tmy_" + random_hex(20);
  k.id = "key_" + random_hex(6);
  k.key_hash = sha256_hex(plain);
  k.prefix = plain.substr(0, 8);
  k.created_ms = impl_->s.clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->store.insert_key(k));
  impl_->add_key_state(k);
  return std::pair{k, plain};
}

Status Gateway::revoke_key(const std::string& id) {
  for (auto& [hash, st] : impl_->keys) {
    if (st.key.id != id) continue;
    if (st.key.revoked_ms != 0) return Status::Ok();
    int64_t now = impl_->s.clock.wall_ms();
    TAMAYA_RETURN_IF_ERROR(impl_->store.revoke_key(id, now));
    st.key.revoked_ms = now;
    return Status::Ok();
  }
  return Status::NotFound("no API key '" + id + "'; list them with GET /v1/keys");
}

std::vector<ApiKey> Gateway::keys() const {
  std::vector<ApiKey> out;
  for (const auto& [hash, st] : impl_->keys) out.push_back(st.key);
  std::sort(out.begin(), out.end(), [](const ApiKey& a, const ApiKey& b) {
    return std::tie(a.created_ms, a.id) < std::tie(b.created_ms, b.id);
  });
  return out;
}

CorsConfig Gateway::cors() const { return impl_->cors; }

void Gateway::set_request_observer(std::function<void(const std::string&, int)> f) {
  impl_->request_observer = std::move(f);
}

Status Gateway::set_cors(const json& spec) {
  TAMAYA_ASSIGN_OR_RETURN(CorsConfig c, cors_from_json(spec));
  TAMAYA_RETURN_IF_ERROR(impl_->store.put_config("cors", cors_to_json(c).dump()));
  impl_->cors = std::move(c);
  return Status::Ok();
}

json Gateway::openapi() const { return openapi_document(impl_->table.routes(), impl_->cors); }

// --- function URLs -----------------------------------------------------------

std::shared_ptr<const FunctionUrl> Gateway::Impl::find_url(const std::string& function,
                                                           const std::string& qualifier) const {
  for (const auto& [id, u] : urls) {
    if (u->function == function && u->qualifier == qualifier) return u;
  }
  return nullptr;
}

Result<json> Gateway::create_function_url(const std::string& function, const std::string& qualifier,
                                          const json& body) {
  if (impl_->find_url(function, qualifier)) {
    return Status::Exists("Failed to create function url config for [functionArn = " + function +
                          (qualifier.empty() ? "" : ":" + qualifier) +
                          "]. Error message:  FunctionUrlConfig exists for this Lambda function");
  }
  FunctionUrl u;
  TAMAYA_RETURN_IF_ERROR(apply_function_url_request(body, /*create=*/true, &u));
  u.url_id = random_hex(16);
  u.function = function;
  u.qualifier = qualifier;
  u.region = impl_->s.settings.region;
  u.created_ms = u.modified_ms = impl_->s.clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->store.put_function_url(u));
  auto stored = std::make_shared<const FunctionUrl>(std::move(u));
  impl_->urls[stored->url_id] = stored;
  return function_url_answer(*stored, impl_->public_port);
}

Result<json> Gateway::update_function_url(const std::string& function, const std::string& qualifier,
                                          const json& body) {
  auto old = impl_->find_url(function, qualifier);
  if (!old) return no_function_url(function, qualifier);
  FunctionUrl u = *old;
  TAMAYA_RETURN_IF_ERROR(apply_function_url_request(body, /*create=*/false, &u));
  u.modified_ms = impl_->s.clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->store.put_function_url(u));
  auto stored = std::make_shared<const FunctionUrl>(std::move(u));
  impl_->urls[stored->url_id] = stored;
  return function_url_answer(*stored, impl_->public_port);
}

Result<json> Gateway::get_function_url(const std::string& function,
                                       const std::string& qualifier) const {
  auto u = impl_->find_url(function, qualifier);
  if (!u) return no_function_url(function, qualifier);
  return function_url_answer(*u, impl_->public_port);
}

Status Gateway::delete_function_url(const std::string& function, const std::string& qualifier) {
  auto u = impl_->find_url(function, qualifier);
  if (!u) return no_function_url(function, qualifier);
  TAMAYA_RETURN_IF_ERROR(impl_->store.delete_function_url(u->url_id));
  impl_->urls.erase(u->url_id);
  return Status::Ok();
}

std::vector<std::pair<std::string, json>> Gateway::list_function_urls(
    const std::string& function) const {
  std::vector<std::shared_ptr<const FunctionUrl>> mine;
  for (const auto& [id, u] : impl_->urls) {
    if (u->function == function) mine.push_back(u);
  }
  std::sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) {
    return std::tie(a->created_ms, a->url_id) < std::tie(b->created_ms, b->url_id);
  });
  std::vector<std::pair<std::string, json>> out;
  out.reserve(mine.size());
  for (const auto& u : mine)
    out.emplace_back(u->qualifier, function_url_answer(*u, impl_->public_port));
  return out;
}

}  // namespace tamaya::gateway
