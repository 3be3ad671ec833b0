// Every limit and timeout of the daemon is a named setting with a documented
// default. Precedence: defaults < settings file (JSON) < TAMAYA_* environment
// < command-line flags (applied by the caller).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"

namespace tamaya {

struct Settings {
  // Where SQLite, code artifacts and instance scratch space live.
  std::string data_dir = ".tamaya";

  // Admin API (management + invoke), loopback by default: it is not public.
  std::string admin_host = "127.0.0.1";
  int admin_port = 9000;

  std::string log_level = "info";  // trace, debug, info, warn, error
  std::string region = "us-east-1";

  // HTTP limits of the admin server.
  int64_t admin_max_body_bytes = 80ll << 20;  // a 50 MiB zip, base64-encoded in JSON
  int64_t max_header_bytes = 16 << 10;
  int http_header_timeout_ms = 10'000;  // time to receive a request's headers
  int http_idle_timeout_ms = 60'000;    // keep-alive connections idle longer are closed

  // Invocation limits (Lambda's).
  int64_t invoke_max_payload_bytes = 6 << 20;               // request payload
  int64_t runtime_max_response_bytes = (6 << 20) + 100;      // function response

  // Code artifacts.
  int64_t artifact_max_zip_bytes = 50ll << 20;
  int64_t artifact_max_unpacked_bytes = 250ll << 20;
  int64_t artifact_max_files = 20'000;

  // Function defaults, used when a deploy does not say.
  int default_memory_mb = 128;
  int default_timeout_s = 3;
  int default_max_concurrency = 10;
  int max_timeout_s = 900;
  int max_memory_mb = 10'240;

  // Dispatcher.
  int instance_idle_timeout_ms = 300'000;  // scale to zero after this long idle
  int queue_max_per_function = 100;        // waiting requests per function version
  int queue_timeout_ms = 1'000;            // a waiting request gets 429 after this
  int instance_start_timeout_ms = 10'000;  // runtime must reach invocation/next by then
  int drain_timeout_ms = 30'000;           // SIGTERM: in-flight invocations get this long

  // Logs captured from instances.
  int64_t log_max_bytes_per_invocation = 256 << 10;

  // Runtimes: interpreters and the in-sandbox runtime clients.
  std::string python_path = "/usr/bin/python3";
  std::string node_path = "/usr/bin/node";
  std::string runtimes_dir;  // default: compiled-in source tree's runtimes/

  // Sets one field by its name (as in the settings file); used by the file,
  // TAMAYA_* variables and flags alike.
  Status set(const std::string& key, const std::string& value);
  // All settings as strings, by name.
  std::map<std::string, std::string> to_map() const;
};

// Reads the JSON settings file at `path` (skipped when empty or absent and not
// `required`), then TAMAYA_<KEY> environment variables.
Result<Settings> load_settings(const std::string& path, bool required);

}  // namespace tamaya
