// How each runtime is started inside an instance: the command line and the
// standard Lambda environment. The in-sandbox runtime clients themselves
// live in runtimes/python and runtimes/node.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "sandbox/launcher.h"

namespace tamaya::runtime {

struct RuntimePaths {
  std::string python = "/usr/bin/python3";
  std::string node = "/usr/bin/node";
  std::string runtimes_dir;  // holds python/bootstrap.py and node/bootstrap.js
};

struct InstanceSpec {
  std::string function_name;
  std::string version;  // "$LATEST" or "1", ...
  std::string runtime;  // python3 | nodejs | provided
  std::string handler;
  std::string code_dir;
  std::string region;
  int memory_mb = 128;
  std::map<std::string, std::string> environment;  // the function's own
  uint16_t runtime_api_port = 0;
  std::string log_stream;
  // Sandboxed (the launcher's filesystem layer is on): the code is seen at
  // /var/task and the runtime clients at /opt/tamaya/runtimes, and the
  // spec's isolation is filled in (code, runtimes, memory, /tmp, network).
  bool isolated = false;
  bool own_root = false;  // the launcher pivots into a minimal root (Layers::filesystem)
  bool network_none = false;
  int tmp_mb = 512;
};

bool is_known_runtime(const std::string& runtime);

// Errors: a provided function without an executable bootstrap
// (Runtime.InvalidEntrypoint), an unknown runtime.
Result<sandbox::LaunchSpec> make_launch_spec(const InstanceSpec& spec, const RuntimePaths& paths);

}  // namespace tamaya::runtime
