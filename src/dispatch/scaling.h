// The registry holds each function's scaling (reserved and provisioned
// concurrency, idle timeout); this hands it to the dispatcher, resolving each
// provisioned qualifier to the version and code it runs now. The daemon calls
// it at start for every function and whenever the registry says a function
// changed, so a code change re-creates the warm instances on the new code.
#pragma once

#include <string>

#include "dispatch/dispatcher.h"
#include "registry/artifacts.h"
#include "registry/registry.h"

namespace tamaya::dispatch {

// A function that no longer exists is forgotten.
void apply_scaling(Dispatcher& dispatcher, const registry::Registry& registry,
                   registry::ArtifactStore& artifacts, const std::string& function);

}  // namespace tamaya::dispatch
