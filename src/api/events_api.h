// Async invocation management over HTTP (docs/api.md, "Async invocations"):
// the native /v1 endpoints (event-invoke config, dead letters, redrive,
// queue figures) and Lambda's EventInvokeConfig operations (2019-09-25
// paths). Async invokes themselves are the invoke endpoints' Event type.
#pragma once

#include "api/admin_api.h"
#include "events/engine.h"
#include "net/router.h"

namespace tamaya::api {

void add_events_routes(net::Router& router, registry::Registry& registry, events::Events& events,
                       const Settings& settings);

// 202 {"request_id"} once the event is durable, or the error.
void enqueue_async(events::Events& events, events::EnqueueRequest request, net::Responder respond);

}  // namespace tamaya::api
