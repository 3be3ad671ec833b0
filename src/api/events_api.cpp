#include "api/events_api.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "api/lambda_shared.h"
#include "common/time_format.h"
#include "net/json_body.h"

namespace tamaya::api {

namespace {

using nlohmann::json;

constexpr int kDefaultDeadLetterLimit = 100;
constexpr int kMaxDeadLetterLimit = 10'000;

json native_config(const events::InvokeConfig& c) {
  return {{"function", c.function},
          {"max_retry_attempts", c.max_retry_attempts},
          {"max_event_age_s", c.max_event_age_s},
          {"on_success", c.on_success},
          {"on_failure", c.on_failure},
          {"last_modified", format_iso8601(c.last_modified_ms)}};
}

std::string function_arn(const Settings& s, const std::string& target) {
  return fmt::format("arn:aws:lambda:{}:000000000000:function:{}", s.region, target);
}

json lambda_config(const events::InvokeConfig& c, const Settings& s) {
  json dest = json::object();
  if (!c.on_success.empty()) dest["OnSuccess"] = {{"Destination", function_arn(s, c.on_success)}};
  if (!c.on_failure.empty()) dest["OnFailure"] = {{"Destination", function_arn(s, c.on_failure)}};
  return {{"FunctionArn", function_arn(s, c.function)},
          {"MaximumRetryAttempts", c.max_retry_attempts},
          {"MaximumEventAgeInSeconds", c.max_event_age_s},
          {"LastModified", double(c.last_modified_ms) / 1000.0},
          {"DestinationConfig", dest}};
}

json dead_letter_json(const events::DeadLetter& d) {
  json record = json::parse(d.record, nullptr, false);
  json payload = json::parse(d.payload, nullptr, false);
  return {{"id", d.id},
          {"function", d.function},
          {"qualifier", d.qualifier},
          {"condition", d.condition},
          {"error", d.error},
          {"invokes", d.invokes},
          {"enqueued_at", format_iso8601(d.enqueued_ms)},
          {"failed_at", format_iso8601(d.failed_ms)},
          {"payload", payload.is_discarded() ? json(d.payload) : payload},
          {"record", record.is_discarded() ? json(d.record) : record}};
}

// An empty body is an empty object: every field of these requests is optional.
Result<json> object_of(const std::string& body) {
  if (body.empty()) return json::object();
  return net::parse_json_object(body);
}

Status read_int(const json& doc, const char* key, int* out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (!it->is_number_integer()) return Status::Invalid(fmt::format("'{}' must be an integer", key));
  *out = it->get<int>();
  return Status::Ok();
}

Status read_string(const json& doc, const char* key, std::string* out) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return Status::Invalid(fmt::format("'{}' must be a string", key));
  *out = it->get<std::string>();
  return Status::Ok();
}

// Lambda's DestinationConfig: {"OnSuccess":{"Destination":arn},"OnFailure":{...}}.
Status read_destinations(const json& doc, events::InvokeConfig* c) {
  auto it = doc.find("DestinationConfig");
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return Status::Invalid("DestinationConfig must be an object");
  for (auto [key, out] : {std::pair{"OnSuccess", &c->on_success}, {"OnFailure", &c->on_failure}}) {
    auto d = it->find(key);
    if (d == it->end() || d->is_null()) continue;
    if (!d->is_object())
      return Status::Invalid(fmt::format("DestinationConfig.{} must be an object", key));
    *out = "";
    TAMAYA_RETURN_IF_ERROR(read_string(*d, "Destination", out));
  }
  return Status::Ok();
}

class Handlers {
 public:
  Handlers(registry::Registry& r, events::Events& e, const Settings& s)
      : registry_(r), events_(e), settings_(s) {}

  // --- native /v1 ---

  void get_config(const net::Request&, net::Params p, const net::Responder& respond) {
    if (auto f = registry_.get(p["name"]); !f.ok())
      return respond(net::Response::error(f.status()));
    auto c = events_.config(p["name"]);
    if (!c.ok()) {
      // No config is the defaults, which a client can show as they are.
      events::InvokeConfig d;
      d.function = p["name"];
      json body = native_config(d);
      body["default"] = true;
      return respond(net::json_response(200, body));
    }
    respond(net::json_response(200, native_config(*c)));
  }

  void put_config(const net::Request& req, net::Params p, net::Responder respond) {
    if (auto f = registry_.get(p["name"]); !f.ok())
      return respond(net::Response::error(f.status()));
    auto doc = object_of(req.body);
    if (!doc.ok()) return respond(net::Response::error(doc.status()));
    events::InvokeConfig c;
    if (auto old = events_.config(p["name"]); old.ok())
      c = *old;  // PUT of some fields keeps the rest
    c.function = p["name"];
    for (const Status& st : {read_int(*doc, "max_retry_attempts", &c.max_retry_attempts),
                             read_int(*doc, "max_event_age_s", &c.max_event_age_s),
                             read_string(*doc, "on_success", &c.on_success),
                             read_string(*doc, "on_failure", &c.on_failure)}) {
      if (!st.ok()) return respond(net::Response::error(st));
    }
    events_.put_config(std::move(c),
                       [respond = std::move(respond)](Result<events::InvokeConfig> r) {
                         if (!r.ok()) return respond(net::Response::error(r.status()));
                         respond(net::json_response(200, native_config(*r)));
                       });
  }

  void delete_config(const net::Request&, net::Params p, net::Responder respond) {
    events_.delete_config(p["name"], [respond = std::move(respond)](const Status& st) {
      if (!st.ok()) return respond(net::Response::error(st));
      respond(net::Response::no_content());
    });
  }

  void dead_letters(const net::Request& req, const net::Params&, net::Responder respond) {
    int limit = kDefaultDeadLetterLimit;
    if (auto v = req.query_param("limit")) {
      try {
        limit = std::stoi(std::string(*v));
      } catch (...) {
        limit = -1;
      }
      if (limit < 1 || limit > kMaxDeadLetterLimit) {
        return respond(net::Response::error(Status::Invalid(
            fmt::format("limit must be an integer from 1 to {}", kMaxDeadLetterLimit))));
      }
    }
    std::string function(req.query_param("function").value_or(""));
    events_.dead_letters(function, limit,
                         [respond = std::move(respond)](Result<std::vector<events::DeadLetter>> r) {
                           if (!r.ok()) return respond(net::Response::error(r.status()));
                           json arr = json::array();
                           for (const auto& d : *r) arr.push_back(dead_letter_json(d));
                           respond(net::json_response(200, json{{"dead_letters", arr}}));
                         });
  }

  void redrive(const net::Request& req, const net::Params&, net::Responder respond) {
    auto doc = object_of(req.body);
    if (!doc.ok()) return respond(net::Response::error(doc.status()));
    std::string function, id;
    for (const Status& st :
         {read_string(*doc, "function", &function), read_string(*doc, "id", &id)}) {
      if (!st.ok()) return respond(net::Response::error(st));
    }
    if (!function.empty() && !id.empty()) {
      return respond(net::Response::error(
          Status::Invalid("give either 'function' or 'id', not both; {} redrives everything")));
    }
    events_.redrive(function, id, [respond = std::move(respond)](Result<int> n) {
      if (!n.ok()) return respond(net::Response::error(n.status()));
      respond(net::json_response(200, json{{"redriven", *n}}));
    });
  }

  void stats(const net::Request&, const net::Params&, const net::Responder& respond) {
    events::Stats s = events_.stats();
    json body = {{"queue_depth", s.queue_depth}, {"oldest_age_ms", s.oldest_age_ms},
                 {"in_flight", s.in_flight},     {"dead_letters", s.dead_letters},
                 {"accepted", s.accepted},       {"deliveries", s.deliveries},
                 {"succeeded", s.succeeded},     {"retries", s.retries},
                 {"throttles", s.throttles},     {"failed", s.failed},
                 {"redelivered", s.redelivered}, {"destination_events", s.destination_events},
                 {"commits", s.commits}};
    respond(net::json_response(200, body));
  }

  // --- Lambda 2019-09-25 EventInvokeConfig ---

  void lambda_get(const net::Request&, net::Params p, const net::Responder& respond) {
    auto ref = function_of(p, respond);
    if (!ref) return;
    auto c = events_.config(*ref);
    if (!c.ok()) return respond(aws_error(c.status()));
    respond(net::json_response(200, lambda_config(*c, settings_)));
  }

  // PUT replaces the whole config; POST (Update) changes only what it names.
  void lambda_put(const net::Request& req, net::Params p, net::Responder respond, bool merge) {
    auto ref = function_of(p, respond);
    if (!ref) return;
    auto doc = object_of(req.body);
    if (!doc.ok()) return respond(aws_error(doc.status()));
    events::InvokeConfig c;
    if (merge) {
      auto old = events_.config(*ref);
      if (!old.ok()) return respond(aws_error(old.status()));
      c = *old;
    }
    c.function = *ref;
    for (const Status& st : {read_int(*doc, "MaximumRetryAttempts", &c.max_retry_attempts),
                             read_int(*doc, "MaximumEventAgeInSeconds", &c.max_event_age_s),
                             read_destinations(*doc, &c)}) {
      if (!st.ok()) return respond(aws_error(st));
    }
    const Settings& s = settings_;
    events_.put_config(std::move(c),
                       [respond = std::move(respond), &s](Result<events::InvokeConfig> r) {
                         if (!r.ok()) return respond(aws_error(r.status()));
                         respond(net::json_response(200, lambda_config(*r, s)));
                       });
  }

  void lambda_delete(const net::Request&, net::Params p, net::Responder respond) {
    auto ref = function_of(p, respond);
    if (!ref) return;
    events_.delete_config(*ref, [respond = std::move(respond)](const Status& st) {
      if (!st.ok()) return respond(aws_error(st));
      respond(net::Response::no_content());
    });
  }

 private:
  std::optional<std::string> function_of(net::Params& p, const net::Responder& respond) {
    auto ref = parse_function_name(p["name"]);
    if (!ref.ok()) {
      respond(aws_error(ref.status()));
      return std::nullopt;
    }
    if (auto f = registry_.get(ref->name); !f.ok()) {
      respond(aws_error(404, "ResourceNotFoundException",
                        fmt::format("Function not found: {}", function_arn(settings_, ref->name))));
      return std::nullopt;
    }
    return ref->name;
  }

  registry::Registry& registry_;
  events::Events& events_;
  const Settings& settings_;
};

}  // namespace

void enqueue_async(events::Events& events, events::EnqueueRequest request, net::Responder respond) {
  events.enqueue(std::move(request), [respond = std::move(respond)](Result<std::string> id) {
    if (!id.ok()) return respond(net::Response::error(id.status()));
    net::Response r = net::json_response(202, json{{"request_id", *id}});
    r.set_header("X-Tamaya-Request-Id", *id);
    respond(std::move(r));
  });
}

void add_events_routes(net::Router& router, registry::Registry& registry, events::Events& events,
                       const Settings& settings) {
  auto h = std::make_shared<Handlers>(registry, events, settings);
  // Each handler takes what it keeps by value and what it only reads by
  // const reference.
  auto bind = [h](auto m) {
    return [h, m](net::Request r, net::Params p, net::Responder respond) {
      ((*h).*m)(std::move(r), std::move(p), std::move(respond));
    };
  };
  router.add("GET", "/v1/functions/{name}/event-invoke-config", bind(&Handlers::get_config));
  router.add("PUT", "/v1/functions/{name}/event-invoke-config", bind(&Handlers::put_config));
  router.add("DELETE", "/v1/functions/{name}/event-invoke-config", bind(&Handlers::delete_config));
  router.add("GET", "/v1/dead-letters", bind(&Handlers::dead_letters));
  router.add("POST", "/v1/dead-letters/redrive", bind(&Handlers::redrive));
  router.add("GET", "/v1/events/stats", bind(&Handlers::stats));

  const std::string path = "/2019-09-25/functions/{name}/event-invoke-config";
  router.add("GET", path, bind(&Handlers::lambda_get));
  router.add("PUT", path, [h](const net::Request& r, net::Params p, net::Responder respond) {
    h->lambda_put(r, std::move(p), std::move(respond), /*merge=*/false);
  });
  router.add("POST", path, [h](const net::Request& r, net::Params p, net::Responder respond) {
    h->lambda_put(r, std::move(p), std::move(respond), /*merge=*/true);
  });
  router.add("DELETE", path, bind(&Handlers::lambda_delete));
}

}  // namespace tamaya::api
