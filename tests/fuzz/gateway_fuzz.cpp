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
#include "route_and_build.h"

using namespace tamaya;

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

  fuzz::route_and_build(r);
  (void)gateway::map_response_v2(body);
  (void)gateway::map_response_v1(body);
  return 0;
}
