// The composition root: `tamaya serve` builds every module, wires them, runs
// the event loop and drains on SIGTERM. The only place that knows them all.
#pragma once

#include "cli/cli.h"

namespace tamaya::daemon {

int serve(const cli::ServeOptions& options);

}  // namespace tamaya::daemon
