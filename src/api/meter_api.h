// The observability part of the admin API (docs/api.md): GET /metrics
// (Prometheus text), GET /v1/invocations (records), GET /v1/usage (usage and
// cost) and GET /v1/functions/{name}/logs/stream (live tail, server-sent
// events). Handlers run on the daemon's io_context.
#pragma once

#include <boost/asio/io_context.hpp>

#include "common/clock.h"
#include "common/settings.h"
#include "meter/logs.h"
#include "meter/metrics.h"
#include "net/router.h"
#include "registry/registry.h"

namespace tamaya::api {

struct MeterServices {
  boost::asio::io_context& io;
  registry::Registry& registry;
  meter::LogStore& logs;
  meter::MetricsRegistry& metrics;
  const Settings& settings;
  const Clock& clock;
};

// A comment line sent on idle log streams this often, so a client that went
// away without closing is noticed (the write fails) and proxies keep the
// connection open.
inline constexpr std::chrono::seconds kLogStreamHeartbeat{15};

void add_meter_routes(net::Router& router, MeterServices services);

}  // namespace tamaya::api
