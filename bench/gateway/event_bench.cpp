// bench/gateway/event_bench: the gateway's per-request JSON work against
// the document-tree way it was done before, in the same run (ratios survive
// a noisy machine; absolute ns do not). Prints ns per call, median of rounds.
//
//   build/<you>/bench/gateway/bench_gateway_event [iterations]
//
// The references below are the replaced code, kept here only to measure
// against: the 2.0 event built as an nlohmann::json tree then dumped, and a
// plain-JSON function answer parsed into a tree to look for statusCode.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gateway/event.h"

namespace {

using nlohmann::json;
using tamaya::gateway::EventContext;

constexpr int kRounds = 5;

// A request as bench/gateway/run.sh sends it (wrk's headers and body).
tamaya::net::Request bench_request() {
  tamaya::net::Request r;
  r.method = "POST";
  r.target = "/open";
  r.path = "/open";
  r.headers = {
      {"Host", "127.0.0.1:8080"}, {"Content-Length", "24"}, {"Content-Type", "application/json"}};
  r.body = R"({"hello":"world","n":42})";
  r.remote_addr = "127.0.0.1";
  return r;
}

EventContext bench_context() {
  EventContext c;
  c.route_key = "POST /open";
  c.resource_path = "/open";
  c.request_id = "c0ffee00-0000-4000-8000-000000000000";
  c.time_ms = 1'764'000'000'000;
  return c;
}

// The replaced 2.0 builder: a document tree, then dump (same fields).
std::string reference_event_v2(const tamaya::net::Request& r, const EventContext& c) {
  json event = json::object();
  event["version"] = "2.0";
  event["routeKey"] = c.route_key;
  event["rawPath"] = r.path;
  event["rawQueryString"] = r.query;
  json headers = json::object();
  for (const auto& [k, v] : r.headers) {
    std::string name = k;
    for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    headers[name] = v;
  }
  event["headers"] = std::move(headers);
  std::string host(r.header("host").value_or(""));
  json http = {{"method", r.method},
               {"path", r.path},
               {"protocol", "HTTP/1.1"},
               {"sourceIp", r.remote_addr},
               {"userAgent", std::string(r.header("user-agent").value_or(""))}};
  json ctx = {{"accountId", tamaya::gateway::kAccountId},
              {"apiId", tamaya::gateway::kApiId},
              {"domainName", host},
              {"domainPrefix", host.substr(0, host.find('.'))},
              {"http", std::move(http)},
              {"requestId", c.request_id},
              {"routeKey", c.route_key},
              {"stage", tamaya::gateway::kStage},
              {"time", tamaya::gateway::clf_time(c.time_ms)},
              {"timeEpoch", c.time_ms}};
  event["requestContext"] = std::move(ctx);
  event["body"] = r.body;
  event["isBase64Encoded"] = false;
  return event.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The replaced response check: a tree for every answer.
size_t reference_map_v2(const std::string& payload) {
  json doc = json::parse(payload, nullptr, false);
  if (doc.is_discarded()) return 0;
  if (!doc.is_object() || !doc.contains("statusCode")) return std::string(payload).size();
  return 1;
}

double ns_per_call(int n, const std::function<size_t()>& f) {
  size_t sink = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) sink += f();
  auto t1 = std::chrono::steady_clock::now();
  if (sink == 42) std::puts("");  // keeps the calls from being optimised away
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
}

struct Case {
  const char* name;
  std::function<size_t()> mine, reference;
};

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 100'000;
  if (n <= 0 || n > 100'000'000) {
    std::fprintf(stderr, "usage: %s [iterations 1..100000000]\n", argv[0]);
    return 2;
  }
  auto req = bench_request();
  auto ctx = bench_context();
  // The echo function's answer: the event itself (no statusCode).
  std::string answer = tamaya::gateway::build_event_v2(req, ctx);
  std::vector<Case> cases = {
      {"2.0 event (writer vs tree+dump)",
       [&] { return tamaya::gateway::build_event_v2(req, ctx).size(); },
       [&] { return reference_event_v2(req, ctx).size(); }},
      {"plain-JSON answer (SAX check vs tree)",
       [&] { return tamaya::gateway::map_response_v2(answer)->body.size(); },
       [&] { return reference_map_v2(answer); }},
  };
  std::printf("%-40s %12s %12s %8s\n", "per request", "now ns", "before ns", "ratio");
  for (const auto& c : cases) {
    std::vector<double> mine, ref;
    for (int r = 0; r < kRounds; ++r) {  // interleaved, so drift hits both
      mine.push_back(ns_per_call(n, c.mine));
      ref.push_back(ns_per_call(n, c.reference));
    }
    std::sort(mine.begin(), mine.end());
    std::sort(ref.begin(), ref.end());
    double m = mine[kRounds / 2], f = ref[kRounds / 2];
    std::printf("%-40s %12.0f %12.0f %7.2fx\n", c.name, m, f, f / m);
  }
  return 0;
}
