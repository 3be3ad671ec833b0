#include "events/schedule_api.h"

#include <charconv>

#include "common/time_format.h"
#include "net/json_body.h"

namespace tamaya::events {

namespace {

using nlohmann::json;

constexpr int kDefaultFiresShown = 20;

}  // namespace

void add_schedule_admin_routes(net::Router& router, Scheduler& sch) {
  router.add("POST", "/v1/schedules",
             [&sch](const net::Request& req, const net::Params&, const net::Responder& respond) {
               auto doc = net::parse_json_object(req.body);
               if (!doc.ok()) return respond(net::Response::error(doc.status()));
               auto s = sch.create(*doc);
               if (!s.ok()) return respond(net::Response::error(s.status()));
               respond(net::json_response(201, sch.to_json(*s)));
             });
  router.add("GET", "/v1/schedules",
             [&sch](const net::Request&, const net::Params&, const net::Responder& respond) {
               json arr = json::array();
               for (const auto& s : sch.list()) arr.push_back(sch.to_json(s));
               respond(net::json_response(200, {{"schedules", arr}}));
             });
  router.add(
      "GET", "/v1/schedules/{name}",
      [&sch](const net::Request& req, net::Params p, const net::Responder& respond) {
        auto s = sch.get(p["name"]);
        if (!s.ok()) return respond(net::Response::error(s.status()));
        int limit = kDefaultFiresShown;
        if (auto v = req.query_param("fires")) {
          auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), limit);
          if (ec != std::errc() || ptr != v->data() + v->size() || limit < 0 || limit > 1000) {
            return respond(
                net::Response::error(Status::Invalid("'fires' must be a number from 0 to 1000")));
          }
        }
        auto fires = sch.fires(p["name"], limit);
        if (!fires.ok()) return respond(net::Response::error(fires.status()));
        json body = sch.to_json(*s);
        json arr = json::array();
        for (const auto& f : *fires) arr.push_back(Scheduler::fire_to_json(f));
        body["recent_fires"] = arr;
        respond(net::json_response(200, body));
      });
  router.add("DELETE", "/v1/schedules/{name}",
             [&sch](const net::Request&, net::Params p, const net::Responder& respond) {
               Status s = sch.remove(p["name"]);
               respond(s.ok() ? net::Response::no_content() : net::Response::error(s));
             });
  for (bool enable : {true, false}) {
    router.add("POST", std::string("/v1/schedules/{name}/") + (enable ? "enable" : "disable"),
               [&sch, enable](const net::Request&, net::Params p, const net::Responder& respond) {
                 auto s = sch.set_enabled(p["name"], enable);
                 if (!s.ok()) return respond(net::Response::error(s.status()));
                 respond(net::json_response(200, sch.to_json(*s)));
               });
  }
  if (!sch.manual_clock()) return;  // the test clock's endpoint exists only when it is on
  auto clock_json = [&sch] {
    return json{{"now", format_iso8601(sch.now_ms())}, {"now_ms", sch.now_ms()}};
  };
  router.add("GET", "/v1/test/clock",
             [clock_json](const net::Request&, const net::Params&, const net::Responder& respond) {
               respond(net::json_response(200, clock_json()));
             });
  router.add("POST", "/v1/test/clock",
             [&sch, clock_json](const net::Request& req, const net::Params&,
                                const net::Responder& respond) {
               auto doc = net::parse_json_object(req.body);
               if (!doc.ok()) return respond(net::Response::error(doc.status()));
               auto it = doc->find("advance_ms");
               if (it == doc->end() || !it->is_number_integer()) {
                 return respond(net::Response::error(Status::Invalid(
                     "send {\"advance_ms\": N}: how far to move the test clock forward")));
               }
               auto fired = sch.advance(it->get<int64_t>());
               if (!fired.ok()) return respond(net::Response::error(fired.status()));
               json body = clock_json();
               body["fired"] = *fired;
               respond(net::json_response(200, body));
             });
}

}  // namespace tamaya::events
