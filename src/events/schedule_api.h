// The schedules' admin endpoints (/v1/schedules, and /v1/test/clock when the
// test clock is on), registered on the admin router by the daemon so the
// admin API module need not know about schedules.
#pragma once

#include "events/scheduler.h"
#include "net/router.h"

namespace tamaya::events {

void add_schedule_admin_routes(net::Router& router, Scheduler& scheduler);

}  // namespace tamaya::events
