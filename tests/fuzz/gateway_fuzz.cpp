// libFuzzer target for the gateway's pure request path: route matching on an
// arbitrary method and target, 2.0 and 1.0 event building from arbitrary
// headers and bodies, and response mapping of arbitrary function answers.
// Input: "METHOD TARGET\nName: value\n...\n\nBODY"; the body doubles as a
// function response.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/event.h"
#include "gateway/routes.h"

using namespace tamaya;

namespace {

const gateway::RouteTable& table() {
  static const gateway::RouteTable t = [] {
    std::vector<gateway::Route> routes;
    auto add = [&](std::string id, std::string m, std::string p) {
      gateway::Route r;
      r.id = id;
      r.method = m;
      r.path = p;
      routes.push_back(r);
    };
    add("a", "GET", "/items/{id}");
    add("b", "ANY", "/files/{proxy+}");
    add("c", "POST", "/a/b/c");
    add("d", "GET", "/{x}/{y}/{z}");
    add("e", "", "");
    return gateway::RouteTable(routes);
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t head_end = in.find("\n\n");
  std::string_view head = in.substr(0, head_end);
  std::string_view body = head_end == std::string_view::npos ? "" : in.substr(head_end + 2);
  size_t nl = head.find('\n');
  std::string_view line = head.substr(0, nl);
  net::Request r;
  size_t sp = line.find(' ');
  r.method = std::string(line.substr(0, sp));
  r.target = sp == std::string_view::npos ? "/" : std::string(line.substr(sp + 1));
  std::string_view t = r.target;
  r.path = std::string(t.substr(0, t.find('?')));
  if (t.find('?') != std::string_view::npos) r.query = std::string(t.substr(t.find('?') + 1));
  std::string_view rest = nl == std::string_view::npos ? "" : head.substr(nl + 1);
  while (!rest.empty()) {
    size_t e = rest.find('\n');
    std::string_view h = rest.substr(0, e);
    size_t colon = h.find(':');
    if (colon != std::string_view::npos) {
      r.headers.emplace_back(std::string(h.substr(0, colon)), std::string(h.substr(colon + 1)));
    }
    if (e == std::string_view::npos) break;
    rest.remove_prefix(e + 1);
  }
  r.body = std::string(body);
  r.remote_addr = "127.0.0.1";

  auto m = table().match(r.method, r.path);
  gateway::EventContext c;
  c.route_key = m ? m->route->route_key() : "$default";
  if (m) c.path_parameters = m->path_parameters;
  c.request_id = "fuzz";
  c.time_ms = 1'700'000'000'000;
  (void)gateway::build_event_v2(r, c);
  (void)gateway::build_event_v1(r, c);
  (void)gateway::map_response_v2(body);
  (void)gateway::map_response_v1(body);
  (void)gateway::validate_route_key(r.method, r.path);
  return 0;
}
