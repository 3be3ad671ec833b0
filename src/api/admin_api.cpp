#include "api/admin_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "api/events_api.h"
#include "api/invoke_answer.h"
#include "common/encoding.h"
#include "common/time_format.h"
#include "net/json_body.h"

namespace tamaya::api {

namespace {

using nlohmann::json;

json to_json(const registry::FunctionVersion& f) {
  return {{"name", f.name},
          {"version", f.version},
          {"runtime", f.config.runtime},
          {"handler", f.config.handler},
          {"memory_mb", f.config.memory_mb},
          {"timeout_s", f.config.timeout_s},
          {"max_concurrency", f.config.max_concurrency},
          {"environment", f.config.environment},
          {"description", f.config.description},
          {"network", f.config.network},
          {"tmp_mb", f.config.tmp_mb},
          {"code_sha256", f.code_sha256},
          {"code_size", f.code_size},
          {"revision_id", f.revision_id},
          {"created_at", format_iso8601(f.created_ms)},
          {"updated_at", format_iso8601(f.updated_ms)}};
}

// Reads an optional typed field, with an error that names the field.
template <typename T>
Status read_field(const json& doc, const char* key, std::optional<T>* out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if constexpr (std::is_same_v<T, int>) {
    if (!it->is_number_integer())
      return Status::Invalid(fmt::format("'{}' must be an integer", key));
    auto v = it->get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX)
      return Status::Invalid(fmt::format("'{}' is out of range", key));
    *out = int(v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return Status::Invalid(fmt::format("'{}' must be a string", key));
    *out = it->get<std::string>();
  } else {
    if (!it->is_object()) {
      return Status::Invalid(fmt::format("'{}' must be an object of string values", key));
    }
    std::map<std::string, std::string> m;
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) {
        return Status::Invalid(fmt::format("'{}.{}' must be a string", key, k));
      }
      m[k] = v.template get<std::string>();
    }
    *out = std::move(m);
  }
  return Status::Ok();
}

// Scaling fields, kept apart from the versioned config: changing them starts
// or stops warm instances but makes no new revision. null removes a setting.
struct ScalingPatch {
  std::optional<int> min_instances;
  std::optional<std::optional<int>> reserved_concurrency;
  std::optional<std::optional<int>> idle_timeout_s;
  bool empty() const { return !min_instances && !reserved_concurrency && !idle_timeout_s; }
};

Status read_nullable_int(const json& doc, const char* key, std::optional<std::optional<int>>* out) {
  auto it = doc.find(key);
  if (it == doc.end()) return Status::Ok();
  if (it->is_null()) {
    *out = std::optional<int>();
    return Status::Ok();
  }
  std::optional<int> v;
  TAMAYA_RETURN_IF_ERROR(read_field(doc, key, &v));
  *out = v;
  return Status::Ok();
}

Result<ScalingPatch> read_scaling(const json& doc) {
  ScalingPatch p;
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "min_instances", &p.min_instances));
  TAMAYA_RETURN_IF_ERROR(read_nullable_int(doc, "reserved_concurrency", &p.reserved_concurrency));
  TAMAYA_RETURN_IF_ERROR(read_nullable_int(doc, "idle_timeout_s", &p.idle_timeout_s));
  return p;
}

Result<registry::ConfigPatch> read_patch(const json& doc) {
  static const std::set<std::string> kKnown = {
      "name",           "runtime",       "handler",
      "memory_mb",      "timeout_s",     "max_concurrency",
      "max_instances",  "min_instances", "reserved_concurrency",
      "idle_timeout_s", "environment",   "description",
      "network",        "tmp_mb",        "code"};
  for (const auto& [k, v] : doc.items()) {
    if (!kKnown.count(k)) {
      return Status::Invalid(
          fmt::format("unknown field '{}'; known fields: runtime, handler, memory_mb, timeout_s, "
                      "max_concurrency (or max_instances), min_instances, reserved_concurrency, "
                      "idle_timeout_s, environment, description, network, tmp_mb, code",
                      k));
    }
  }
  if (doc.contains("max_concurrency") && doc.contains("max_instances")) {
    return Status::Invalid("'max_instances' is another name for 'max_concurrency'; give one");
  }
  registry::ConfigPatch p;
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "max_instances", &p.max_concurrency));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "runtime", &p.runtime));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "handler", &p.handler));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "memory_mb", &p.memory_mb));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "timeout_s", &p.timeout_s));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "max_concurrency", &p.max_concurrency));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "environment", &p.environment));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "description", &p.description));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "network", &p.network));
  TAMAYA_RETURN_IF_ERROR(read_field(doc, "tmp_mb", &p.tmp_mb));
  return p;
}

Result<std::string> zip_from_json(const json& code) {
  if (!code.is_object() || !code.contains("zip_base64") || !code["zip_base64"].is_string()) {
    return Status::Invalid(
        "'code' must be an object with 'zip_base64': the base64 of a zip archive");
  }
  auto bytes = base64_decode(code["zip_base64"].get<std::string>());
  if (!bytes) return Status::Invalid("'code.zip_base64' is not valid base64");
  return std::move(*bytes);
}

class Handlers {
 public:
  explicit Handlers(Services s) : s_(s) {}

  void create(const net::Request& req, const net::Params&, const net::Responder& respond) {
    auto doc = net::parse_json_object(req.body);
    if (!doc.ok()) return respond(net::Response::error(doc.status()));
    auto scaling = read_scaling(*doc);
    if (!scaling.ok()) return respond(net::Response::error(scaling.status()));
    auto name_it = doc->find("name");
    if (name_it == doc->end() || !name_it->is_string()) {
      return respond(
          net::Response::error(Status::Invalid("'name' is required and must be a string")));
    }
    std::string name = name_it->get<std::string>();
    auto patch = read_patch(*doc);
    if (!patch.ok()) return respond(net::Response::error(patch.status()));
    registry::FunctionConfig config = s_.registry.defaults();
    apply(*patch, &config);
    if (!patch->runtime) {
      return respond(net::Response::error(
          Status::Invalid("'runtime' is required; use one of: python3, nodejs, provided")));
    }
    if (Status v = s_.registry.validate(name, config); !v.ok()) {
      return respond(net::Response::error(v));
    }
    if (s_.registry.get(name).ok()) {
      return respond(net::Response::error(Status::Exists(fmt::format(
          "function '{}' already exists; update it with PUT /v1/functions/{}/code and PATCH "
          "/v1/functions/{}",
          name, name, name))));
    }
    if (!doc->contains("code")) {
      return respond(net::Response::error(
          Status::Invalid("'code' is required: {\"zip_base64\": \"<base64 of a zip>\"}")));
    }
    auto zip = zip_from_json((*doc)["code"]);
    if (!zip.ok()) return respond(net::Response::error(zip.status()));
    auto artifact = s_.artifacts.put_zip(*zip);
    if (!artifact.ok()) return respond(net::Response::error(artifact.status()));
    auto created = s_.registry.create(name, config, *artifact);
    if (!created.ok()) return respond(net::Response::error(created.status()));
    if (Status st = apply_scaling(name, *scaling); !st.ok()) {
      // All or nothing: a function whose scaling was refused is not left behind.
      s_.registry.remove(name).ok();
      return respond(net::Response::error(st));
    }
    respond(net::json_response(201, with_scaling(to_json(*created))));
  }

  void list(const net::Request&, const net::Params&, const net::Responder& respond) {
    json arr = json::array();
    for (const auto& f : s_.registry.list()) arr.push_back(to_json(f));
    respond(net::json_response(200, {{"functions", arr}}));
  }

  void get(const net::Request& req, net::Params p, const net::Responder& respond) {
    auto f = s_.registry.get(p["name"], req.query_param("qualifier").value_or(""));
    if (!f.ok()) return respond(net::Response::error(f.status()));
    respond(net::json_response(200, with_scaling(to_json(*f))));
  }

  void update_code(net::Request req, net::Params p, const net::Responder& respond) {
    const std::string& name = p["name"];
    if (auto f = s_.registry.get(name); !f.ok()) return respond(net::Response::error(f.status()));
    std::string zip;
    auto ct = req.header("Content-Type").value_or("");
    if (ct.substr(0, 16) == "application/json") {
      auto doc = net::parse_json_object(req.body);
      if (!doc.ok()) return respond(net::Response::error(doc.status()));
      auto bytes = zip_from_json(*doc);
      if (!bytes.ok()) return respond(net::Response::error(bytes.status()));
      zip = std::move(*bytes);
    } else {
      zip = std::move(req.body);
    }
    if (zip.empty()) {
      return respond(net::Response::error(Status::Invalid(
          "the request body is empty; send the zip's bytes (Content-Type: application/zip)")));
    }
    auto artifact = s_.artifacts.put_zip(zip);
    if (!artifact.ok()) return respond(net::Response::error(artifact.status()));
    auto f = s_.registry.update_code(name, *artifact);
    if (!f.ok()) return respond(net::Response::error(f.status()));
    s_.dispatcher.retire(name);
    respond(net::json_response(200, to_json(*f)));
  }

  void update_config(const net::Request& req, net::Params p, const net::Responder& respond) {
    auto doc = net::parse_json_object(req.body);
    if (!doc.ok()) return respond(net::Response::error(doc.status()));
    if (doc->contains("name") || doc->contains("code")) {
      return respond(
          net::Response::error(Status::Invalid("'name' and 'code' cannot be changed here; update "
                                               "code with PUT /v1/functions/{name}/code")));
    }
    auto patch = read_patch(*doc);
    if (!patch.ok()) return respond(net::Response::error(patch.status()));
    auto scaling = read_scaling(*doc);
    if (!scaling.ok()) return respond(net::Response::error(scaling.status()));
    auto f = s_.registry.get(p["name"]);
    if (!f.ok()) return respond(net::Response::error(f.status()));
    // Only scaling fields: no new revision, the running instances stay.
    if (!is_empty(*patch)) {
      f = s_.registry.update_config(p["name"], *patch);
      if (!f.ok()) return respond(net::Response::error(f.status()));
      s_.dispatcher.retire(p["name"]);
    }
    if (Status st = apply_scaling(p["name"], *scaling); !st.ok()) {
      return respond(net::Response::error(st));
    }
    respond(net::json_response(200, with_scaling(to_json(*f))));
  }

  void remove(const net::Request&, net::Params p, const net::Responder& respond) {
    if (Status st = s_.registry.remove(p["name"]); !st.ok())
      return respond(net::Response::error(st));
    s_.dispatcher.retire(p["name"]);
    s_.logs.remove_function(p["name"]).ok();
    respond(net::Response::no_content());
  }

  void publish(const net::Request& req, net::Params p, const net::Responder& respond) {
    std::string description;
    if (!req.body.empty()) {
      auto doc = net::parse_json_object(req.body);
      if (!doc.ok()) return respond(net::Response::error(doc.status()));
      std::optional<std::string> d;
      if (Status st = read_field(*doc, "description", &d); !st.ok()) {
        return respond(net::Response::error(st));
      }
      description = d.value_or("");
    }
    bool created = false;
    auto v = s_.registry.publish(p["name"], description, &created);
    if (!v.ok()) return respond(net::Response::error(v.status()));
    respond(net::json_response(created ? 201 : 200, to_json(*v)));
  }

  void versions(const net::Request&, net::Params p, const net::Responder& respond) {
    auto vs = s_.registry.versions(p["name"]);
    if (!vs.ok()) return respond(net::Response::error(vs.status()));
    json arr = json::array();
    for (const auto& f : *vs) arr.push_back(to_json(f));
    respond(net::json_response(200, {{"versions", arr}}));
  }

  void invoke(net::Request req, net::Params p, net::Responder respond) {
    // An alias with routing weights sends each invocation to one of its two
    // versions at random.
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    auto f =
        s_.registry.resolve(p["name"], req.query_param("qualifier").value_or(""), uniform(rng_));
    if (!f.ok()) return respond(net::Response::error(f.status()));
    if (int64_t(req.body.size()) > s_.settings.invoke_max_payload_bytes) {
      return respond(net::Response::error(
          Status::TooLarge(fmt::format("request payload of {} bytes is over the limit of {} bytes",
                                       req.body.size(), s_.settings.invoke_max_payload_bytes))));
    }
    // An empty payload is the empty event, as in Lambda; anything else must
    // be JSON (validated without building a document).
    if (req.body.empty()) {
      req.body = "{}";
    } else if (!json::accept(req.body)) {
      return respond(net::Response::error(
          Status::Invalid("the payload is not valid JSON; send a JSON document as the event")));
    }
    std::string type(req.header("X-Tamaya-Invocation-Type")
                         .value_or(req.query_param("invocation_type").value_or("RequestResponse")));
    if (type == "Event" || type == "event") {
      // Async: 202 once the event is durable; the queue resolves the
      // qualifier again at each delivery.
      if (s_.events == nullptr) {
        return respond(
            net::Response::error(Status::Unavailable("async invocations are not enabled")));
      }
      if (int64_t(req.body.size()) > s_.settings.gateway_async_max_body_bytes) {
        return respond(net::Response::error(Status::TooLarge(fmt::format(
            "an async (Event) payload must be at most {} bytes (gateway_async_max_body_bytes)",
            s_.settings.gateway_async_max_body_bytes))));
      }
      events::EnqueueRequest er;
      er.function = p["name"];
      er.qualifier = std::string(req.query_param("qualifier").value_or(""));
      er.payload = std::move(req.body);
      er.trace_id = std::string(req.header("X-Amzn-Trace-Id").value_or(""));
      return enqueue_async(*s_.events, std::move(er), std::move(respond));
    }
    if (type != "RequestResponse") {
      return respond(net::Response::error(Status::Invalid(
          fmt::format("invocation type '{}' is not one of RequestResponse, Event", type))));
    }
    dispatch::InvokeRequest ir;
    ir.target.code_dir = s_.artifacts.code_dir(f->code_sha256);
    ir.target.function = std::move(*f);
    ir.payload = std::move(req.body);
    ir.trace_id = std::string(req.header("X-Amzn-Trace-Id").value_or(""));
    auto log_type = req.header("X-Tamaya-Log-Type");
    ir.want_log_tail = log_type && (*log_type == "Tail" || *log_type == "tail");
    s_.dispatcher.invoke(std::move(ir), [respond](dispatch::InvokeResult r) {
      if (!r.status.ok()) {
        net::Response e = net::Response::error(r.status);
        e.set_header("X-Tamaya-Request-Id", r.request_id);
        return respond(std::move(e));
      }
      respond(invoke_answer(std::move(r), kTamayaInvokeHeaders));
    });
  }

  void logs(const net::Request& req, net::Params p, const net::Responder& respond) {
    const std::string& name = p["name"];
    if (auto f = s_.registry.get(name); !f.ok()) return respond(net::Response::error(f.status()));
    int64_t since = 0;
    int limit = 1000;
    try {
      if (auto v = req.query_param("since_id")) since = std::stoll(*v);
      if (auto v = req.query_param("limit")) limit = std::stoi(*v);
    } catch (const std::exception&) {
      return respond(net::Response::error(Status::Invalid("since_id and limit must be integers")));
    }
    limit = std::clamp(limit, 1, 10'000);
    auto events = s_.logs.query(name, since, limit, req.query_param("request_id").value_or(""));
    if (!events.ok()) return respond(net::Response::error(events.status()));
    json arr = json::array();
    int64_t next = since;
    for (const auto& e : *events) {
      arr.push_back({{"id", e.id},
                     {"time_ms", e.time_ms},
                     {"request_id", e.request_id},
                     {"message", e.message}});
      next = std::max(next, e.id);
    }
    respond(net::json_response(200, {{"events", arr}, {"next_since_id", next}}));
  }

 private:
  static bool is_empty(const registry::ConfigPatch& p) {
    return !p.runtime && !p.handler && !p.memory_mb && !p.timeout_s && !p.max_concurrency &&
           !p.environment && !p.description && !p.runtime_id && !p.role && !p.network && !p.tmp_mb;
  }

  // Applies scaling fields in an order that each step's check allows: a
  // lower min_instances before a lower reservation, a higher reservation
  // before a higher min_instances.
  Status apply_scaling(const std::string& name, const ScalingPatch& p) {
    if (p.empty()) return Status::Ok();
    TAMAYA_ASSIGN_OR_RETURN(registry::Scaling now, s_.registry.scaling(name));
    auto it = now.provisioned.find(registry::kLatest);
    int current_min = it == now.provisioned.end() ? 0 : it->second;
    auto set_min = [&]() -> Status {
      if (!p.min_instances || *p.min_instances == current_min) return Status::Ok();
      return s_.registry.set_provisioned(name, registry::kLatest, *p.min_instances);
    };
    const bool min_first = p.min_instances && *p.min_instances < current_min;
    if (min_first) TAMAYA_RETURN_IF_ERROR(set_min());
    if (p.reserved_concurrency) {
      TAMAYA_RETURN_IF_ERROR(s_.registry.set_reserved_concurrency(name, *p.reserved_concurrency));
    }
    if (!min_first) TAMAYA_RETURN_IF_ERROR(set_min());
    if (p.idle_timeout_s)
      TAMAYA_RETURN_IF_ERROR(s_.registry.set_idle_timeout(name, *p.idle_timeout_s));
    return Status::Ok();
  }

  // A function's scaling and its instances right now, next to its config.
  json with_scaling(json j) const {
    const std::string name = j["name"].get<std::string>();
    auto sc = s_.registry.scaling(name);
    if (!sc.ok()) return j;
    auto it = sc->provisioned.find(registry::kLatest);
    j["max_instances"] = j["max_concurrency"];
    j["min_instances"] = it == sc->provisioned.end() ? 0 : it->second;
    j["reserved_concurrency"] =
        sc->reserved_concurrency ? json(*sc->reserved_concurrency) : json(nullptr);
    j["idle_timeout_s"] = sc->idle_timeout_s ? json(*sc->idle_timeout_s)
                                             : json(s_.settings.instance_idle_timeout_ms / 1000.0);
    dispatch::Stats st = s_.dispatcher.stats(name);
    j["instances"] = {{"total", st.instances},
                      {"busy", st.busy},
                      {"idle", st.idle},
                      {"starting", st.starting},
                      {"queued", st.queued},
                      {"provisioned", st.provisioned},
                      {"provisioned_ready", st.provisioned_ready},
                      {"held", st.held}};
    json prov = json::array();
    for (const auto& p : s_.dispatcher.provisioned(name)) {
      json e = {{"qualifier", p.qualifier},
                {"version", p.version},
                {"requested", p.requested},
                {"ready", p.ready},
                {"status", p.ready >= p.requested ? "READY"
                           : p.error.empty()      ? "IN_PROGRESS"
                                                  : "FAILED"}};
      if (!p.error.empty()) e["error"] = p.error;
      prov.push_back(std::move(e));
    }
    j["provisioned"] = std::move(prov);
    return j;
  }

  static void apply(const registry::ConfigPatch& p, registry::FunctionConfig* c) {
    if (p.runtime) c->runtime = *p.runtime;
    if (p.handler) c->handler = *p.handler;
    if (p.memory_mb) c->memory_mb = *p.memory_mb;
    if (p.timeout_s) c->timeout_s = *p.timeout_s;
    if (p.max_concurrency) c->max_concurrency = *p.max_concurrency;
    if (p.environment) c->environment = *p.environment;
    if (p.description) c->description = *p.description;
    if (p.network) c->network = *p.network;
    if (p.tmp_mb) c->tmp_mb = *p.tmp_mb;
  }

  Services s_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace

void add_admin_routes(net::Router& router, Services services) {
  auto h = std::make_shared<Handlers>(services);
  // Each handler takes what it keeps by value and what it only reads by
  // const reference.
  auto bind = [h](auto fn) {
    return [h, fn](net::Request r, net::Params p, net::Responder respond) {
      ((*h).*fn)(std::move(r), std::move(p), std::move(respond));
    };
  };
  router.add("GET", "/v1/health",
             [](const net::Request&, const net::Params&, const net::Responder& respond) {
               respond(net::Response::json(200, R"({"status":"ok","version":"0.1.0"})"));
             });
  router.add("POST", "/v1/functions", bind(&Handlers::create));
  router.add("GET", "/v1/functions", bind(&Handlers::list));
  router.add("GET", "/v1/functions/{name}", bind(&Handlers::get));
  router.add("PATCH", "/v1/functions/{name}", bind(&Handlers::update_config));
  router.add("DELETE", "/v1/functions/{name}", bind(&Handlers::remove));
  router.add("PUT", "/v1/functions/{name}/code", bind(&Handlers::update_code));
  router.add("POST", "/v1/functions/{name}/versions", bind(&Handlers::publish));
  router.add("GET", "/v1/functions/{name}/versions", bind(&Handlers::versions));
  router.add("POST", "/v1/functions/{name}/invoke", bind(&Handlers::invoke));
  router.add("GET", "/v1/functions/{name}/logs", bind(&Handlers::logs));
}

}  // namespace tamaya::api
