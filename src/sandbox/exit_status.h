// Turns a waitpid-style status into the words Lambda uses for
// Runtime.ExitError, so a user who knows Lambda recognises them:
// "Runtime exited with error: " + describe_exit(status).
#pragma once

#include <string>

namespace tamaya::sandbox {

// "exit status 1", "signal: killed", "signal: segmentation fault (core dumped)"
// (the wording of Go's os.ProcessState, which Lambda's own runtime uses).
std::string describe_exit(int wait_status);

// The lower-case signal name in that wording ("killed", "terminated"), or
// "signal N" for a number without one.
std::string signal_description(int sig);

}  // namespace tamaya::sandbox
