// The native admin REST API (docs/api.md): manage functions and invoke
// them. Handlers run on the daemon's io_context; they translate between HTTP
// and typed module calls and keep no state of their own.
#pragma once

#include "common/clock.h"
#include "common/settings.h"
#include "dispatch/dispatcher.h"
#include "events/engine.h"
#include "meter/logs.h"
#include "net/router.h"
#include "registry/artifacts.h"
#include "registry/registry.h"

namespace tamaya::api {

struct Services {
  registry::Registry& registry;
  registry::ArtifactStore& artifacts;
  dispatch::Dispatcher& dispatcher;
  meter::LogStore& logs;
  const Settings& settings;
  const Clock& clock;
  // The durable async queue; Event invokes answer 503 without it.
  events::Events* events = nullptr;
};

void add_admin_routes(net::Router& router, Services services);

}  // namespace tamaya::api
