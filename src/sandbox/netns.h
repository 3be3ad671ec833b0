// Network "none": an empty network namespace with only loopback up. The
// instance's Runtime API endpoint must still be reachable from inside, so the
// daemon makes the namespace first, opens the endpoint's listening socket in
// it (a socket belongs to the namespace it was created in, whatever thread
// uses it later), then the instance joins that namespace with setns.
// One namespace per instance: instances of "none" functions cannot reach
// each other's endpoints.
#pragma once

#include <functional>

#include "common/status.h"

namespace tamaya::sandbox {

// A new empty network namespace with `lo` up; returns an O_CLOEXEC fd that
// keeps it alive. The calling thread's own namespace is unchanged afterwards.
Result<int> create_network_namespace();

// Runs `fn` on this thread inside the namespace `netns_fd`, then returns the
// thread to its previous namespace (sockets made by fn stay in the new one).
Status run_in_network_namespace(int netns_fd, const std::function<Status()>& fn);

}  // namespace tamaya::sandbox
