#include "api/lambda_api.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>

#include "api/invoke_answer.h"
#include "api/lambda_shared.h"
#include "api/lambda_sigv4.h"
#include "common/encoding.h"
#include "common/json_text.h"

namespace tamaya::api {

namespace {

using nlohmann::json;

// Lambda's own limits, where a setting would add nothing.
constexpr int kDefaultMaxItems = 50;  // ListFunctions and friends without MaxItems
constexpr int kLargestMaxItems = 10'000;
constexpr int64_t kEventMaxPayloadBytes = 256 << 10;  // an Event (async) invoke's payload
constexpr const char* kSupportedRuntimes =
    "python3.x (e.g. python3.12), nodejs<N>.x (e.g. nodejs20.x), provided, provided.al2, "
    "provided.al2023";

// --- errors, as Lambda's clients parse them ---------------------------------

net::Response bad_json() {
  return aws_error(400, "InvalidRequestContentException",
                   "Could not parse request body into json: send a JSON object");
}

// --- shapes -------------------------------------------------------------------

std::string last_modified(int64_t ms) {
  time_t secs = ms / 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

// Lambda's CodeSha256 is the base64 of the digest; tamaya keeps it as hex.
std::string code_sha256_b64(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return base64_encode(bytes);
}

// A Lambda runtime identifier as one of tamaya's runtimes.
Result<std::string> map_runtime(const std::string& id) {
  static const std::regex kPython(R"(python3\.[0-9]+)");
  static const std::regex kNode(R"(nodejs[0-9]*\.x)");
  if (std::regex_match(id, kPython)) return std::string("python3");
  if (std::regex_match(id, kNode)) return std::string("nodejs");
  if (id == "provided" || id == "provided.al2" || id == "provided.al2023") {
    return std::string("provided");
  }
  return Status::Invalid(fmt::format("Runtime '{}' is not supported by tamaya; use one of: {}", id,
                                     kSupportedRuntimes));
}

// The runtime as the caller named it, while it still says what runs.
std::string runtime_shown(const registry::FunctionConfig& c) {
  if (!c.runtime_id.empty()) {
    auto mapped = map_runtime(c.runtime_id);
    if (mapped.ok() && *mapped == c.runtime) return c.runtime_id;
  }
  return c.runtime;
}

// --- request fields -------------------------------------------------------------

Status opt_string(const json& d, const char* key, std::optional<std::string>* out) {
  auto it = d.find(key);
  if (it == d.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return Status::Invalid(fmt::format("{} must be a string", key));
  *out = it->get<std::string>();
  return Status::Ok();
}

Status opt_int(const json& d, const char* key, std::optional<int>* out) {
  auto it = d.find(key);
  if (it == d.end() || it->is_null()) return Status::Ok();
  if (!it->is_number_integer() || it->get<int64_t>() < INT32_MIN ||
      it->get<int64_t>() > INT32_MAX) {
    return Status::Invalid(fmt::format("{} must be an integer", key));
  }
  *out = it->get<int>();
  return Status::Ok();
}

Status opt_bool(const json& d, const char* key, bool* out) {
  auto it = d.find(key);
  if (it == d.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return Status::Invalid(fmt::format("{} must be true or false", key));
  *out = it->get<bool>();
  return Status::Ok();
}

// Environment: {"Variables": {"K": "V"}}; replaces the whole map.
Status opt_environment(const json& d, std::optional<std::map<std::string, std::string>>* out) {
  auto it = d.find("Environment");
  if (it == d.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return Status::Invalid("Environment must be {\"Variables\": {...}}");
  std::map<std::string, std::string> vars;
  if (auto v = it->find("Variables"); v != it->end() && !v->is_null()) {
    if (!v->is_object()) return Status::Invalid("Environment.Variables must be an object");
    for (const auto& [k, val] : v->items()) {
      if (!val.is_string()) {
        return Status::Invalid(fmt::format("Environment.Variables.{} must be a string", k));
      }
      vars[k] = val.get<std::string>();
    }
  }
  *out = std::move(vars);
  return Status::Ok();
}

// RoutingConfig: {"AdditionalVersionWeights": {"2": 0.1}}; an empty map
// removes the routing.
Status opt_routing(const json& d, std::optional<std::pair<std::string, double>>* out) {
  auto it = d.find("RoutingConfig");
  if (it == d.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return Status::Invalid("RoutingConfig must be an object");
  auto w = it->find("AdditionalVersionWeights");
  if (w == it->end() || w->is_null() || (w->is_object() && w->empty())) {
    *out = std::make_pair(std::string(), 0.0);
    return Status::Ok();
  }
  if (!w->is_object() || w->size() != 1) {
    return Status::Invalid(
        "RoutingConfig.AdditionalVersionWeights must name exactly one other version with its "
        "weight, e.g. {\"2\": 0.1}");
  }
  auto entry = w->begin();
  if (!entry.value().is_number()) {
    return Status::Invalid(
        "the weight in RoutingConfig.AdditionalVersionWeights must be a number "
        "between 0.0 and 1.0");
  }
  *out = std::make_pair(entry.key(), entry.value().get<double>());
  return Status::Ok();
}

Result<std::optional<int>> query_int(const net::Request& r, const char* key) {
  auto v = r.query_param(key);
  if (!v) return std::optional<int>();
  try {
    size_t used = 0;
    int n = std::stoi(*v, &used);
    if (used != v->size()) throw std::invalid_argument(*v);
    return std::optional<int>(n);
  } catch (const std::exception&) {
    return Status::Invalid(fmt::format("{} must be an integer, got '{}'", key, *v));
  }
}

// Marker/MaxItems over a list: markers are offsets, opaque to clients.
struct Page {
  size_t begin = 0;
  size_t end = 0;
  std::optional<std::string> next_marker;
};

Result<Page> page_of(const net::Request& r, size_t total) {
  TAMAYA_ASSIGN_OR_RETURN(std::optional<int> max_items, query_int(r, "MaxItems"));
  int max = max_items.value_or(kDefaultMaxItems);
  if (max < 1 || max > kLargestMaxItems) {
    return Status::Invalid(fmt::format("MaxItems must be 1 to {}", kLargestMaxItems));
  }
  Page p;
  if (auto marker = r.query_param("Marker"); marker && !marker->empty()) {
    auto offset = query_int(r, "Marker");
    if (!offset.ok() || !offset->has_value() || **offset < 0) {
      return Status::Invalid("Marker is not one this API gave out; pass NextMarker unchanged");
    }
    p.begin = std::min(total, size_t(**offset));
  }
  p.end = std::min(total, p.begin + size_t(max));
  if (p.end < total) p.next_marker = std::to_string(p.end);
  return p;
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// --- the handlers -----------------------------------------------------------------

struct Call {
  net::Request req;
  net::Params params;
  net::Responder respond;
  std::string account;

  void fail(const Status& s) const { respond(aws_error(s)); }
  void reply(int status, const json& body) const {
    net::Response r = net::Response::json(status, json_text(body));
    r.set_header("x-amzn-RequestId", new_request_id());
    respond(std::move(r));
  }
  void no_content() const {
    net::Response r = net::Response::no_content();
    r.set_header("x-amzn-RequestId", new_request_id());
    respond(std::move(r));
  }
};

class Handlers {
 public:
  explicit Handlers(Services s)
      : s_(s),
        door_(s_.settings.lambda_api_verify_sigv4 != 0, s_.settings.lambda_api_keys),
        rng_(std::random_device{}()) {
    if (!door_.keys_status().ok()) spdlog::error("lambda API: {}", door_.keys_status().message());
  }

  // Who is calling (the account of ARNs) and, when verification is on,
  // whether the signature holds; then the operation.
  void run(void (Handlers::*op)(Call&), net::Request req, net::Params params,
           net::Responder respond) {
    auto account = door_.account_of(req);
    if (!account.ok()) {
      return respond(aws_error(403, "InvalidSignatureException", account.status().message()));
    }
    Call call{std::move(req), std::move(params), std::move(respond), std::move(*account)};
    (this->*op)(call);
  }

  void create(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    std::optional<std::string> name_raw, runtime, handler, role, description, package_type;
    std::optional<int> memory, timeout;
    std::optional<std::map<std::string, std::string>> env;
    bool publish = false;
    for (const Status& st :
         {opt_string(*doc, "FunctionName", &name_raw), opt_string(*doc, "Runtime", &runtime),
          opt_string(*doc, "Handler", &handler), opt_string(*doc, "Role", &role),
          opt_string(*doc, "Description", &description),
          opt_string(*doc, "PackageType", &package_type), opt_int(*doc, "MemorySize", &memory),
          opt_int(*doc, "Timeout", &timeout), opt_environment(*doc, &env),
          opt_bool(*doc, "Publish", &publish), check_architectures(*doc)}) {
      if (!st.ok()) return c.fail(st);
    }
    if (!name_raw) return c.fail(Status::Invalid("FunctionName is required"));
    auto ref = unqualified(*name_raw);
    if (!ref.ok()) return c.fail(ref.status());
    if (package_type && *package_type != "Zip") {
      return c.fail(Status::Invalid("PackageType " + *package_type +
                                    " is not supported; tamaya runs Zip packages only"));
    }
    if (!runtime) {
      return c.fail(
          Status::Invalid(fmt::format("Runtime is required; use one of: {}", kSupportedRuntimes)));
    }
    auto mapped = map_runtime(*runtime);
    if (!mapped.ok()) return c.fail(mapped.status());
    registry::FunctionConfig config = s_.registry.defaults();
    config.runtime = *mapped;
    config.runtime_id = *runtime;
    config.handler = handler.value_or("");
    config.role = role.value_or("");
    config.description = description.value_or("");
    if (memory) config.memory_mb = *memory;
    if (timeout) config.timeout_s = *timeout;
    if (env) config.environment = std::move(*env);
    if (Status v = s_.registry.validate(ref->name, config); !v.ok()) return c.fail(v);
    if (s_.registry.get(ref->name).ok()) {
      return c.fail(Status::Exists(
          fmt::format("Function already exist: {}; update it with update-function-code and "
                      "update-function-configuration, or delete it first",
                      ref->name)));
    }
    auto zip = zip_from(*doc);
    if (!zip.ok()) return c.fail(zip.status());
    auto artifact = s_.artifacts.put_zip(*zip);
    if (!artifact.ok()) return c.fail(artifact.status());
    auto created = s_.registry.create(ref->name, config, *artifact);
    if (!created.ok()) return c.fail(created.status());
    registry::FunctionVersion shown = *created;
    if (publish) {
      auto v = s_.registry.publish(ref->name, "");
      if (!v.ok()) return c.fail(v.status());
      shown = *v;
    }
    c.reply(201, configuration(shown, c.account, publish ? shown.version : ""));
  }

  void list(Call& c) {
    std::vector<registry::FunctionVersion> all;
    bool every_version = c.req.query_param("FunctionVersion").value_or("") == "ALL";
    for (const auto& f : s_.registry.list()) {
      if (!every_version) {
        all.push_back(f);
        continue;
      }
      auto vs = s_.registry.versions(f.name);
      if (vs.ok()) all.insert(all.end(), vs->begin(), vs->end());
    }
    auto page = page_of(c.req, all.size());
    if (!page.ok()) return c.fail(page.status());
    json arr = json::array();
    for (size_t i = page->begin; i < page->end; ++i) {
      arr.push_back(configuration(all[i], c.account, every_version ? all[i].version : ""));
    }
    json body = {{"Functions", arr}};
    if (page->next_marker) body["NextMarker"] = *page->next_marker;
    c.reply(200, body);
  }

  void get(Call& c) {
    auto ref = qualified(c);
    if (!ref.ok()) return c.fail(ref.status());
    auto f = s_.registry.get(ref->name, ref->qualifier);
    if (!f.ok()) return c.fail(f.status());
    std::string host(c.req.header("Host").value_or(
        fmt::format("{}:{}", s_.settings.admin_host, s_.settings.admin_port)));
    std::string location =
        fmt::format("http://{}/2015-03-31/functions/{}/code.zip", host, url_encode(ref->name));
    if (!ref->qualifier.empty()) location += "?Qualifier=" + url_encode(ref->qualifier);
    json body = {{"Configuration", configuration(*f, c.account, ref->qualifier)},
                 {"Code", {{"RepositoryType", "S3"}, {"Location", location}}}};
    auto reserved = s_.registry.reserved_concurrency(ref->name);
    if (reserved.ok() && reserved->has_value()) {
      body["Concurrency"] = {{"ReservedConcurrentExecutions", **reserved}};
    }
    c.reply(200, body);
  }

  void get_configuration(Call& c) {
    auto ref = qualified(c);
    if (!ref.ok()) return c.fail(ref.status());
    auto f = s_.registry.get(ref->name, ref->qualifier);
    if (!f.ok()) return c.fail(f.status());
    c.reply(200, configuration(*f, c.account, ref->qualifier));
  }

  // The uploaded zip, which GetFunction's Code.Location points at.
  void code_zip(Call& c) {
    auto ref = qualified(c);
    if (!ref.ok()) return c.fail(ref.status());
    auto f = s_.registry.get(ref->name, ref->qualifier);
    if (!f.ok()) return c.fail(f.status());
    std::ifstream in(s_.artifacts.zip_path(f->code_sha256), std::ios::binary);
    if (!in) {
      return c.fail(Status::NotFound(fmt::format(
          "the zip of function '{}' was uploaded before tamaya kept zips; upload the code again "
          "to make it downloadable",
          ref->name)));
    }
    std::ostringstream bytes;
    bytes << in.rdbuf();
    net::Response r{200, {}, bytes.str()};
    r.set_header("Content-Type", "application/zip");
    c.respond(std::move(r));
  }

  void update_code(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    std::optional<std::string> revision;
    bool publish = false, dry_run = false;
    for (const Status& st :
         {opt_string(*doc, "RevisionId", &revision), opt_bool(*doc, "Publish", &publish),
          opt_bool(*doc, "DryRun", &dry_run), check_architectures(*doc)}) {
      if (!st.ok()) return c.fail(st);
    }
    auto current = s_.registry.get(ref->name);
    if (!current.ok()) return c.fail(current.status());
    if (Status st = check_revision(*current, revision); !st.ok()) return c.fail(st);
    auto zip = zip_from(*doc);
    if (!zip.ok()) return c.fail(zip.status());
    if (dry_run) return c.reply(200, configuration(*current, c.account, ""));
    auto artifact = s_.artifacts.put_zip(*zip);
    if (!artifact.ok()) return c.fail(artifact.status());
    auto f = s_.registry.update_code(ref->name, *artifact);
    if (!f.ok()) return c.fail(f.status());
    s_.dispatcher.retire(ref->name);
    registry::FunctionVersion shown = *f;
    if (publish) {
      auto v = s_.registry.publish(ref->name, "");
      if (!v.ok()) return c.fail(v.status());
      shown = *v;
    }
    c.reply(200, configuration(shown, c.account, publish ? shown.version : ""));
  }

  void update_configuration(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    registry::ConfigPatch patch;
    std::optional<std::string> revision, runtime;
    for (const Status& st :
         {opt_string(*doc, "RevisionId", &revision), opt_string(*doc, "Runtime", &runtime),
          opt_string(*doc, "Handler", &patch.handler), opt_string(*doc, "Role", &patch.role),
          opt_string(*doc, "Description", &patch.description),
          opt_int(*doc, "MemorySize", &patch.memory_mb), opt_int(*doc, "Timeout", &patch.timeout_s),
          opt_environment(*doc, &patch.environment)}) {
      if (!st.ok()) return c.fail(st);
    }
    if (runtime) {
      auto mapped = map_runtime(*runtime);
      if (!mapped.ok()) return c.fail(mapped.status());
      patch.runtime = *mapped;
      patch.runtime_id = *runtime;
    }
    auto current = s_.registry.get(ref->name);
    if (!current.ok()) return c.fail(current.status());
    if (Status st = check_revision(*current, revision); !st.ok()) return c.fail(st);
    auto f = s_.registry.update_config(ref->name, patch);
    if (!f.ok()) return c.fail(f.status());
    s_.dispatcher.retire(ref->name);
    c.reply(200, configuration(*f, c.account, ""));
  }

  void remove(Call& c) {
    auto ref = qualified(c);
    if (!ref.ok()) return c.fail(ref.status());
    if (ref->qualifier == registry::kLatest) {
      return c.fail(
          Status::Invalid("$LATEST version cannot be deleted without deleting the function; call "
                          "DeleteFunction without a qualifier"));
    }
    if (!ref->qualifier.empty()) {
      if (Status st = s_.registry.remove_version(ref->name, ref->qualifier); !st.ok()) {
        return c.fail(st);
      }
      s_.dispatcher.retire(ref->name);
      return c.no_content();
    }
    if (Status st = s_.registry.remove(ref->name); !st.ok()) return c.fail(st);
    s_.dispatcher.retire(ref->name);
    s_.logs.remove_function(ref->name).ok();
    c.no_content();
  }

  void publish(Call& c) {
    json doc = json::object();
    if (!c.req.body.empty()) {
      auto parsed = object_body(c);
      if (!parsed) return;
      doc = std::move(*parsed);
    }
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    std::optional<std::string> description, sha, revision;
    for (const Status& st :
         {opt_string(doc, "Description", &description), opt_string(doc, "CodeSha256", &sha),
          opt_string(doc, "RevisionId", &revision)}) {
      if (!st.ok()) return c.fail(st);
    }
    auto current = s_.registry.get(ref->name);
    if (!current.ok()) return c.fail(current.status());
    if (Status st = check_revision(*current, revision); !st.ok()) return c.fail(st);
    if (sha && *sha != code_sha256_b64(current->code_sha256)) {
      return c.fail(Status::Invalid(fmt::format(
          "CodeSha256 ({}) is different from current CodeSha256 in $LATEST ({}); publish "
          "without CodeSha256 or with the current one",
          *sha, code_sha256_b64(current->code_sha256))));
    }
    auto v = s_.registry.publish(ref->name, description.value_or(""));
    if (!v.ok()) return c.fail(v.status());
    c.reply(201, configuration(*v, c.account, v->version));
  }

  void versions(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    auto vs = s_.registry.versions(ref->name);
    if (!vs.ok()) return c.fail(vs.status());
    auto page = page_of(c.req, vs->size());
    if (!page.ok()) return c.fail(page.status());
    json arr = json::array();
    for (size_t i = page->begin; i < page->end; ++i) {
      arr.push_back(configuration((*vs)[i], c.account, (*vs)[i].version));
    }
    json body = {{"Versions", arr}};
    if (page->next_marker) body["NextMarker"] = *page->next_marker;
    c.reply(200, body);
  }

  void invoke(Call& c) {
    auto ref = qualified(c);
    if (!ref.ok()) return c.fail(ref.status());
    std::string type(c.req.header("X-Amz-Invocation-Type").value_or("RequestResponse"));
    if (type != "RequestResponse" && type != "Event" && type != "DryRun") {
      return c.fail(Status::Invalid(fmt::format(
          "X-Amz-Invocation-Type '{}' is not one of RequestResponse, Event, DryRun", type)));
    }
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    auto f = s_.registry.resolve(ref->name, ref->qualifier, uniform(rng_));
    if (!f.ok()) return c.fail(f.status());
    int64_t limit = type == "Event"
                        ? std::min(kEventMaxPayloadBytes, s_.settings.invoke_max_payload_bytes)
                        : s_.settings.invoke_max_payload_bytes;
    if (int64_t(c.req.body.size()) > limit) {
      return c.respond(aws_error(
          413, "RequestEntityTooLargeException",
          fmt::format("Request must be smaller than {} bytes for the {} invocation type; the "
                      "payload is {} bytes",
                      limit, type, c.req.body.size())));
    }
    if (c.req.body.empty()) {
      c.req.body = "{}";
    } else if (!json::accept(c.req.body)) {
      return c.respond(aws_error(400, "InvalidRequestContentException",
                                 "Could not parse request body into json: the payload is not "
                                 "valid JSON; send a JSON document as the event"));
    }
    auto reserved = s_.registry.reserved_concurrency(ref->name);
    std::optional<int> reserved_value = reserved.ok() ? *reserved : std::nullopt;
    if (reserved_value && *reserved_value == 0 && type != "DryRun") {
      net::Response r = aws_error(
          429, "TooManyRequestsException",
          fmt::format("Rate Exceeded: function '{}' has a reserved concurrency of 0, so every "
                      "invocation is throttled; raise it with put-function-concurrency or "
                      "remove it with delete-function-concurrency",
                      ref->name),
          "ReservedFunctionConcurrentInvocationLimitExceeded");
      r.set_header("Retry-After", "1");
      return c.respond(std::move(r));
    }
    if (type == "DryRun") return c.no_content();

    dispatch::InvokeRequest ir;
    ir.request_id = new_request_id();
    ir.target.code_dir = s_.artifacts.code_dir(f->code_sha256);
    ir.target.function = std::move(*f);
    ir.payload = std::move(c.req.body);
    ir.trace_id = std::string(c.req.header("X-Amzn-Trace-Id").value_or(""));
    if (auto ctx = c.req.header("X-Amz-Client-Context")) {
      auto decoded = base64_decode(*ctx);
      if (!decoded) {
        return c.fail(Status::Invalid("X-Amz-Client-Context must be base64-encoded JSON"));
      }
      ir.client_context = std::move(*decoded);
    }

    if (type == "Event") {
      // Through the durable queue (src/events): 202 only once the event is
      // committed; the qualifier is resolved again at each delivery.
      if (s_.events == nullptr) {
        return c.fail(Status::Unavailable("async invocations are not enabled"));
      }
      events::EnqueueRequest er;
      er.function = ref->name;
      er.qualifier = ref->qualifier;
      er.payload = std::move(ir.payload);
      er.request_id = ir.request_id;
      er.trace_id = ir.trace_id;
      s_.events->enqueue(std::move(er), [respond = c.respond](Result<std::string> id) {
        if (!id.ok()) {
          net::Response e = aws_error(id.status());
          if (id.status().code() == Code::kResourceExhausted) e.set_header("Retry-After", "1");
          return respond(std::move(e));
        }
        net::Response accepted{202, {}, {}};
        accepted.set_header("x-amzn-RequestId", *id);
        respond(std::move(accepted));
      });
      return;
    }

    ir.want_log_tail = c.req.header("X-Amz-Log-Type").value_or("") == "Tail";
    bool has_reserved = reserved_value.has_value();
    s_.dispatcher.invoke(
        std::move(ir), [respond = c.respond, has_reserved](dispatch::InvokeResult r) {
          if (!r.status.ok()) {
            net::Response e = aws_error(r.status);
            if (r.status.code() == Code::kResourceExhausted) {
              e = aws_error(429, "TooManyRequestsException", "Rate Exceeded: " + r.status.message(),
                            has_reserved ? "ReservedFunctionConcurrentInvocationLimitExceeded"
                                         : "ConcurrentInvocationLimitExceeded");
              e.set_header("Retry-After", "1");
            }
            return respond(std::move(e));
          }
          respond(invoke_answer(std::move(r), kLambdaInvokeHeaders));
        });
  }

  // --- aliases ---

  void create_alias(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    std::optional<std::string> alias;
    registry::AliasPatch fields;
    for (const Status& st :
         {opt_string(*doc, "Name", &alias), opt_string(*doc, "FunctionVersion", &fields.version),
          opt_string(*doc, "Description", &fields.description),
          opt_routing(*doc, &fields.routing)}) {
      if (!st.ok()) return c.fail(st);
    }
    if (!alias) return c.fail(Status::Invalid("Name is required: the alias's name"));
    if (!fields.version) return c.fail(Status::Invalid("FunctionVersion is required"));
    auto a = s_.registry.create_alias(ref->name, *alias, fields);
    if (!a.ok()) return c.fail(a.status());
    c.reply(201, alias_json(*a, c.account));
  }

  void get_alias(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    auto a = s_.registry.get_alias(ref->name, c.params["alias"]);
    if (!a.ok()) return c.fail(a.status());
    c.reply(200, alias_json(*a, c.account));
  }

  void list_aliases(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    auto all = s_.registry.aliases(ref->name);
    if (!all.ok()) return c.fail(all.status());
    if (auto v = c.req.query_param("FunctionVersion")) {
      all->erase(std::remove_if(all->begin(), all->end(),
                                [&](const registry::Alias& a) { return a.version != *v; }),
                 all->end());
    }
    auto page = page_of(c.req, all->size());
    if (!page.ok()) return c.fail(page.status());
    json arr = json::array();
    for (size_t i = page->begin; i < page->end; ++i)
      arr.push_back(alias_json((*all)[i], c.account));
    json body = {{"Aliases", arr}};
    if (page->next_marker) body["NextMarker"] = *page->next_marker;
    c.reply(200, body);
  }

  void update_alias(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    registry::AliasPatch patch;
    std::optional<std::string> revision;
    for (const Status& st :
         {opt_string(*doc, "FunctionVersion", &patch.version),
          opt_string(*doc, "Description", &patch.description),
          opt_string(*doc, "RevisionId", &revision), opt_routing(*doc, &patch.routing)}) {
      if (!st.ok()) return c.fail(st);
    }
    auto a = s_.registry.update_alias(ref->name, c.params["alias"], patch, revision.value_or(""));
    if (!a.ok()) return c.fail(a.status());
    c.reply(200, alias_json(*a, c.account));
  }

  void delete_alias(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    if (Status st = s_.registry.remove_alias(ref->name, c.params["alias"]); !st.ok()) {
      return c.fail(st);
    }
    c.no_content();
  }

  // --- reserved concurrency ---

  void put_concurrency(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    std::optional<int> n;
    if (Status st = opt_int(*doc, "ReservedConcurrentExecutions", &n); !st.ok()) return c.fail(st);
    if (!n) return c.fail(Status::Invalid("ReservedConcurrentExecutions is required"));
    if (Status st = s_.registry.set_reserved_concurrency(ref->name, *n); !st.ok()) {
      return c.fail(st);
    }
    c.reply(200, {{"ReservedConcurrentExecutions", *n}});
  }

  void get_concurrency(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    auto n = s_.registry.reserved_concurrency(ref->name);
    if (!n.ok()) return c.fail(n.status());
    json body = json::object();
    if (n->has_value()) body["ReservedConcurrentExecutions"] = **n;
    c.reply(200, body);
  }

  void delete_concurrency(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    if (Status st = s_.registry.set_reserved_concurrency(ref->name, std::nullopt); !st.ok()) {
      return c.fail(st);
    }
    c.no_content();
  }

  // --- provisioned concurrency (tamaya's min_instances, per qualifier) ---

  Result<FunctionRef> provisioned_ref(Call& c) {
    TAMAYA_ASSIGN_OR_RETURN(FunctionRef ref, qualified(c));
    if (ref.qualifier.empty()) {
      return Status::Invalid(
          "Qualifier is required: the version or alias whose instances are kept warm");
    }
    return ref;
  }

  json provisioned_json(const FunctionRef& ref, int requested, const std::string& account) const {
    int available = 0;
    std::string error;
    for (const auto& p : s_.dispatcher.provisioned(ref.name)) {
      if (p.qualifier != ref.qualifier) continue;
      available = std::min(p.ready, requested);
      error = p.error;
    }
    std::string status = available >= requested ? "READY"
                         : error.empty()        ? "IN_PROGRESS"
                                                : "FAILED";
    json j = {{"RequestedProvisionedConcurrentExecutions", requested},
              {"AvailableProvisionedConcurrentExecutions", available},
              {"AllocatedProvisionedConcurrentExecutions", available},
              {"Status", status},
              {"LastModified", last_modified(s_.clock.wall_ms())}};
    if (!error.empty()) j["StatusReason"] = error;
    if (!account.empty()) j["FunctionArn"] = arn(account, ref.name, ref.qualifier);
    return j;
  }

  void put_provisioned(Call& c) {
    auto doc = object_body(c);
    if (!doc) return;
    auto ref = provisioned_ref(c);
    if (!ref.ok()) return c.fail(ref.status());
    std::optional<int> n;
    if (Status st = opt_int(*doc, "ProvisionedConcurrentExecutions", &n); !st.ok())
      return c.fail(st);
    if (!n || *n < 1) {
      return c.fail(
          Status::Invalid("ProvisionedConcurrentExecutions is required and must be 1 or more"));
    }
    if (Status st = s_.registry.set_provisioned(ref->name, ref->qualifier, *n); !st.ok()) {
      return c.fail(st);
    }
    c.reply(202, provisioned_json(*ref, *n, ""));
  }

  void get_provisioned(Call& c) {
    auto parsed = parse_function_name(c.params["name"]);
    if (parsed.ok() && parsed->qualifier.empty() && !c.req.query_param("Qualifier")) {
      return list_provisioned(c);
    }
    auto ref = provisioned_ref(c);
    if (!ref.ok()) return c.fail(ref.status());
    auto sc = s_.registry.scaling(ref->name);
    if (!sc.ok()) return c.fail(sc.status());
    auto it = sc->provisioned.find(ref->qualifier);
    if (it == sc->provisioned.end()) {
      return c.respond(aws_error(
          404, "ProvisionedConcurrencyConfigNotFoundException",
          fmt::format("No Provisioned Concurrency Config found for this function: '{}' has none "
                      "on qualifier '{}'",
                      ref->name, ref->qualifier)));
    }
    c.reply(200, provisioned_json(*ref, it->second, ""));
  }

  void list_provisioned(Call& c) {
    auto ref = unqualified(c.params["name"]);
    if (!ref.ok()) return c.fail(ref.status());
    auto sc = s_.registry.scaling(ref->name);
    if (!sc.ok()) return c.fail(sc.status());
    json arr = json::array();
    for (const auto& [qualifier, n] : sc->provisioned) {
      arr.push_back(provisioned_json(FunctionRef{ref->name, qualifier}, n, c.account));
    }
    c.reply(200, {{"ProvisionedConcurrencyConfigs", arr}});
  }

  void delete_provisioned(Call& c) {
    auto ref = provisioned_ref(c);
    if (!ref.ok()) return c.fail(ref.status());
    if (Status st = s_.registry.set_provisioned(ref->name, ref->qualifier, 0); !st.ok()) {
      if (st.code() == Code::kNotFound && s_.registry.get(ref->name).ok()) {
        return c.respond(
            aws_error(404, "ProvisionedConcurrencyConfigNotFoundException", st.message()));
      }
      return c.fail(st);
    }
    c.no_content();
  }

  // Lambda's account limits, as this node has them.
  void account_settings(Call& c) {
    int reserved = 0, functions = 0;
    int64_t code_bytes = 0;
    for (const auto& f : s_.registry.list()) {
      functions++;
      if (auto sc = s_.registry.scaling(f.name); sc.ok() && sc->reserved_concurrency) {
        reserved += *sc->reserved_concurrency;
      }
      if (auto vs = s_.registry.versions(f.name); vs.ok()) {
        for (const auto& v : *vs) code_bytes += v.code_size;
      }
    }
    const Settings& st = s_.settings;
    c.reply(200,
            {{"AccountLimit",
              {{"TotalCodeSize", int64_t{75} << 30},
               {"CodeSizeUnzipped", st.artifact_max_unpacked_bytes},
               {"CodeSizeZipped", st.artifact_max_zip_bytes},
               {"ConcurrentExecutions", st.concurrency_limit},
               {"UnreservedConcurrentExecutions", std::max(0, st.concurrency_limit - reserved)}}},
             {"AccountUsage", {{"TotalCodeSize", code_bytes}, {"FunctionCount", functions}}}});
  }

 private:
  std::optional<json> object_body(Call& c) {
    auto doc = json::parse(c.req.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      c.respond(bad_json());
      return std::nullopt;
    }
    return doc;
  }

  // The function of the path, with the qualifier from the name or from
  // ?Qualifier= (they must agree when both are given).
  Result<FunctionRef> qualified(Call& c) {
    TAMAYA_ASSIGN_OR_RETURN(FunctionRef ref, parse_function_name(c.params["name"]));
    if (auto q = c.req.query_param("Qualifier"); q && !q->empty()) {
      if (!ref.qualifier.empty() && ref.qualifier != *q) {
        return Status::Invalid(fmt::format(
            "The derived qualifier from the function name ({}) does not match the specified "
            "qualifier ({}); give the qualifier once",
            ref.qualifier, *q));
      }
      ref.qualifier = *q;
    }
    return ref;
  }

  static Result<FunctionRef> unqualified(const std::string& raw) {
    TAMAYA_ASSIGN_OR_RETURN(FunctionRef ref, parse_function_name(raw));
    if (!ref.qualifier.empty()) {
      return Status::Invalid(fmt::format(
          "'{}' names a qualifier, which this operation does not take; pass the function's name "
          "or unqualified ARN",
          raw));
    }
    return ref;
  }

  static Status check_revision(const registry::FunctionVersion& f,
                               const std::optional<std::string>& revision) {
    if (revision && !revision->empty() && *revision != f.revision_id) {
      return Status::Precondition(
          "The Revision Id provided does not match the latest Revision Id. Call the GetFunction "
          "API to retrieve the latest Revision Id and retry");
    }
    return Status::Ok();
  }

  static Status check_architectures(const json& doc) {
    auto it = doc.find("Architectures");
    if (it == doc.end() || it->is_null()) return Status::Ok();
    if (!it->is_array()) return Status::Invalid("Architectures must be a list");
    for (const auto& a : *it) {
      if (!a.is_string() || a.get<std::string>() != "x86_64") {
        return Status::Invalid("tamaya runs x86_64 only; set Architectures to [\"x86_64\"]");
      }
    }
    return Status::Ok();
  }

  static Result<std::string> zip_from(const json& doc) {
    auto code = doc.find("Code");
    if (code == doc.end() && doc.contains("ZipFile")) code = doc.find("ZipFile");
    const json* zip = nullptr;
    if (code != doc.end() && code->is_object()) {
      if (code->contains("S3Bucket") || code->contains("ImageUri")) {
        return Status::Invalid(
            "Code.S3Bucket and Code.ImageUri are not supported; send the zip "
            "itself as Code.ZipFile");
      }
      if (auto z = code->find("ZipFile"); z != code->end()) zip = &*z;
    } else if (code != doc.end()) {
      zip = &*code;  // UpdateFunctionCode's top-level ZipFile
    }
    if (doc.contains("S3Bucket") || doc.contains("ImageUri")) {
      return Status::Invalid("S3Bucket and ImageUri are not supported; send the zip as ZipFile");
    }
    if (zip == nullptr || !zip->is_string()) {
      return Status::Invalid("the code is required as ZipFile: the zip's bytes, base64-encoded");
    }
    auto bytes = base64_decode(zip->get<std::string>());
    if (!bytes || bytes->empty()) {
      return Status::Invalid("ZipFile is not valid base64 of a zip archive");
    }
    return std::move(*bytes);
  }

  std::string arn(const std::string& account, const std::string& name,
                  const std::string& qualifier) const {
    std::string out =
        fmt::format("arn:aws:lambda:{}:{}:function:{}", s_.settings.region, account, name);
    if (!qualifier.empty()) out += ":" + qualifier;
    return out;
  }

  json configuration(const registry::FunctionVersion& f, const std::string& account,
                     const std::string& arn_qualifier) const {
    json c = {{"FunctionName", f.name},
              {"FunctionArn", arn(account, f.name, arn_qualifier)},
              {"Runtime", runtime_shown(f.config)},
              {"Role", f.config.role},
              {"Handler", f.config.handler},
              {"CodeSize", f.code_size},
              {"Description", f.config.description},
              {"Timeout", f.config.timeout_s},
              {"MemorySize", f.config.memory_mb},
              {"LastModified", last_modified(f.updated_ms)},
              {"CodeSha256", code_sha256_b64(f.code_sha256)},
              {"Version", f.version},
              {"TracingConfig", {{"Mode", "PassThrough"}}},
              {"RevisionId", f.revision_id},
              {"State", "Active"},
              {"LastUpdateStatus", "Successful"},
              {"PackageType", "Zip"},
              {"Architectures", {"x86_64"}},
              {"EphemeralStorage", {{"Size", 512}}}};
    if (!f.config.environment.empty()) c["Environment"] = {{"Variables", f.config.environment}};
    return c;
  }

  json alias_json(const registry::Alias& a, const std::string& account) const {
    json j = {{"AliasArn", arn(account, a.function, a.name)},
              {"Name", a.name},
              {"FunctionVersion", a.version},
              {"Description", a.description},
              {"RevisionId", a.revision_id}};
    if (!a.extra_version.empty()) {
      j["RoutingConfig"] = {{"AdditionalVersionWeights", {{a.extra_version, a.extra_weight}}}};
    }
    return j;
  }

  Services s_;
  SigV4Door door_;
  std::mt19937_64 rng_;
};

}  // namespace

void add_lambda_routes(net::Router& router, Services services) {
  auto h = std::make_shared<Handlers>(services);
  auto bind = [h](void (Handlers::*op)(Call&)) {
    return [h, op](net::Request r, net::Params p, net::Responder respond) {
      h->run(op, std::move(r), std::move(p), std::move(respond));
    };
  };
  const std::string fn = "/2015-03-31/functions";
  router.add("POST", fn, bind(&Handlers::create));
  router.add("GET", fn, bind(&Handlers::list));
  router.add("GET", fn + "/{name}", bind(&Handlers::get));
  router.add("DELETE", fn + "/{name}", bind(&Handlers::remove));
  router.add("GET", fn + "/{name}/configuration", bind(&Handlers::get_configuration));
  router.add("PUT", fn + "/{name}/configuration", bind(&Handlers::update_configuration));
  router.add("PUT", fn + "/{name}/code", bind(&Handlers::update_code));
  router.add("GET", fn + "/{name}/code.zip", bind(&Handlers::code_zip));
  router.add("POST", fn + "/{name}/invocations", bind(&Handlers::invoke));
  router.add("POST", fn + "/{name}/versions", bind(&Handlers::publish));
  router.add("GET", fn + "/{name}/versions", bind(&Handlers::versions));
  router.add("POST", fn + "/{name}/aliases", bind(&Handlers::create_alias));
  router.add("GET", fn + "/{name}/aliases", bind(&Handlers::list_aliases));
  router.add("GET", fn + "/{name}/aliases/{alias}", bind(&Handlers::get_alias));
  router.add("PUT", fn + "/{name}/aliases/{alias}", bind(&Handlers::update_alias));
  router.add("DELETE", fn + "/{name}/aliases/{alias}", bind(&Handlers::delete_alias));
  router.add("PUT", "/2017-10-31/functions/{name}/concurrency", bind(&Handlers::put_concurrency));
  router.add("DELETE", "/2017-10-31/functions/{name}/concurrency",
             bind(&Handlers::delete_concurrency));
  router.add("GET", "/2019-09-30/functions/{name}/concurrency", bind(&Handlers::get_concurrency));
  const std::string provisioned = "/2019-09-30/functions/{name}/provisioned-concurrency";
  router.add("PUT", provisioned, bind(&Handlers::put_provisioned));
  router.add("GET", provisioned, bind(&Handlers::get_provisioned));
  router.add("DELETE", provisioned, bind(&Handlers::delete_provisioned));
  router.add("GET", "/2016-08-19/account-settings", bind(&Handlers::account_settings));
}

}  // namespace tamaya::api
