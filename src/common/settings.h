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
  int http_header_timeout_ms = 10'000;        // time to receive a request's headers
  int http_idle_timeout_ms = 60'000;          // keep-alive connections idle longer are closed
  int64_t http_refused_reads_per_s = 20'000;  // next requests of connections answered 429

  // Invocation limits (Lambda's).
  int64_t invoke_max_payload_bytes = 6 << 20;            // request payload
  int64_t runtime_max_response_bytes = (6 << 20) + 100;  // function response

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
  // Concurrency across all functions (Lambda's account limit): instances of
  // every function together. Reserved concurrency is carved out of it, and
  // reservations must leave at least concurrency_unreserved_min for the
  // functions without one.
  int concurrency_limit = 1'000;
  int concurrency_unreserved_min = 100;
  int provision_retry_max_ms = 60'000;  // back-off cap when min_instances keep failing to start
  int launch_threads = 2;  // threads that start instances' processes, off the event loop
  // The daemon's event loop polls for up to this long after it runs out of
  // work before it sleeps, adapting to how soon work follows (see
  // net/event_loop.h); 0: sleep at once.
  int event_loop_idle_poll_us = 100;
  // While the event loop has work without a break, it yields its CPU once
  // per this long, so a task queued behind it there runs (see
  // net/event_loop.h); 0: never.
  int event_loop_busy_yield_us = 100;
  // Holding a CPU-bound function's scale-out on a saturated host (see
  // dispatch/cpu_hold.h): while the host's CPU pressure is at least
  // scale_hold_cpu_pressure_percent and a function's instances use at least
  // scale_hold_function_cpu_percent of its CPUs, the function keeps
  // scale_hold_busy_per_core busy instances per CPU (0: never hold) and its
  // other requests wait in its queue, up to scale_hold_max_wait_ms before one
  // starts an instance anyway. Sampled every scale_sample_ms.
  int scale_hold_busy_per_core = 4;
  int scale_hold_cpu_pressure_percent = 50;
  int scale_hold_function_cpu_percent = 25;
  int scale_hold_max_wait_ms = 100;
  int scale_sample_ms = 100;

  // API gateway (src/gateway): the public port, separate from the admin API.
  // Loopback by default so a test or a laptop never exposes functions by
  // accident; set gateway_host=0.0.0.0 to serve other machines.
  std::string gateway_host = "127.0.0.1";
  int gateway_port = 8080;                      // 0 picks a free port
  int gateway_integration_timeout_ms = 30'000;  // a route's default: then 504
  int64_t gateway_max_body_bytes = 6 << 20;     // request body (Lambda's sync payload)
  int64_t gateway_async_max_body_bytes = 256
                                         << 10;  // body of an async route (Lambda's event invoke)
  int64_t gateway_max_header_bytes = 16 << 10;   // request line + headers, else 431
  int gateway_max_header_count = 100;            // header fields, else 431
  int gateway_max_request_line_bytes = 8 << 10;  // method + target + version, else 414
  int gateway_max_connections = 4096;            // beyond it new connections are closed at once
  int gateway_header_timeout_ms = 10'000;        // whole request head, else 408
  int gateway_body_timeout_ms = 30'000;          // whole body once the head is in, else 408
  int gateway_idle_timeout_ms = 60'000;          // keep-alive connection idle, then closed
  int64_t gateway_refused_reads_per_s = 20'000;  // next requests of connections answered 429
  std::string gateway_access_log;  // "" = the daemon's log; else a file (relative: in data_dir)
  int gateway_access_log_flush_ms =
      200;  // buffered access-log lines are written at least this often
  int64_t gateway_access_log_buffer_bytes = 64 << 10;  // ... or as soon as this many bytes wait
  int gateway_quota_flush_ms =
      1'000;  // API-key daily usage saved at most this often (one transaction)

  // AWS Lambda API on the admin port (src/api/lambda_api.h). Signatures
  // (SigV4) are accepted unchecked unless verification is on; then every
  // request must be signed with one of lambda_api_keys ("AKID:secret,...").
  int lambda_api_verify_sigv4 = 0;  // 1: verify, 403 InvalidSignatureException when wrong
  std::string lambda_api_keys;

  // Async invocations (src/events): the durable queue in <data_dir>/events.db.
  int events_delivery_concurrency = 32;  // deliveries in flight at once; 0 pauses delivery
  int events_retry_base_ms = 60'000;     // first retry after a function error; the 2nd waits 2x
  int events_throttle_base_ms = 1'000;   // first retry after a throttle/system error, doubling
  int events_throttle_max_ms = 300'000;  // cap of that doubling
  int events_min_event_age_s = 60;       // smallest MaximumEventAgeInSeconds accepted (Lambda's)
  int events_max_queue_depth = 100'000;  // accepted, undelivered events; beyond: 429
  int64_t events_max_queued_bytes = 512ll
                                    << 20;  // their payload bytes (held in memory); beyond: 429

  // Schedules (src/events/scheduler.h): rate(…)/cron(…) invocations, UTC.
  int schedules_max = 1'000;                 // schedules at most
  int64_t schedule_input_max_bytes = 8'192;  // a schedule's custom input (EventBridge's limit)
  int schedule_history_max = 100;            // fires kept per schedule (GET /v1/schedules/{name})
  // TEST ONLY. 0 (default): schedules follow the system clock. > 0: they
  // follow a manual clock that starts at this epoch-ms and moves only through
  // POST /v1/test/clock, which exists only then.
  int64_t schedule_test_clock_ms = 0;

  // Logs captured from instances.
  int64_t log_max_bytes_per_invocation = 256 << 10;
  int64_t log_max_events_per_function = 10'000;  // older lines are deleted
  int logs_follow_max_streams = 64;              // concurrent `tamaya logs -f` streams, beyond: 429
  int64_t logs_follow_max_buffer_bytes = 1 << 20;  // unsent per stream, beyond: stream closed

  // Invocation records (src/meter) and the usage report's prices.
  int64_t invocation_max_age_s = int64_t{30} * 24 * 3600;  // older records are deleted
  int64_t invocation_max_rows = 1'000'000;                 // beyond it the oldest are deleted
  double price_request_usd_per_million = 0.20;             // AWS Lambda x86, per 1M requests
  double price_gb_second_usd = 0.0000166667;               // AWS Lambda x86, per GB-second
  // The always-on alternative: a rented VM (default: 2 vCPU / 4 GiB on-demand,
  // e.g. an AWS t3.medium at $0.0416/h) and the memory it offers to functions.
  double rented_instance_hourly_usd = 0.0416;
  int rented_instance_memory_mb = 4096;

  // Runtimes: interpreters and the in-sandbox runtime clients.
  std::string python_path = "/usr/bin/python3";
  std::string node_path = "/usr/bin/node";
  std::string runtimes_dir;  // default: compiled-in source tree's runtimes/
  // "on": sandboxed Python instances are forked from a zygote per function
  // (src/sandbox/zygote.h); "off": every instance starts its interpreter.
  std::string python_zygote = "on";
  int python_zygote_start_timeout_ms = 2'000;  // a new zygote must be ready within this
  // Children each zygote keeps forked and prepared ahead of need; 0: none
  // (every instance is forked on request). Two cover cold starts that follow
  // each other closely while the one just taken is replaced.
  int python_zygote_prefork = 2;
  // Generic Node.js instances kept started ahead of need, specialised for a
  // function on its cold start (src/sandbox/node_pool.h); 0: none. Two
  // cover a burst of two cold starts while the pool refills.
  int node_pool_size = 2;
  int node_pool_start_timeout_ms = 10'000;  // a new pool member must be ready within this

  // Isolation of instances (src/sandbox). "auto": every layer the host
  // supports (namespaces, pivot_root, cgroups, uids, seccomp); "off": a plain
  // process with rlimits, for developers without root.
  std::string sandbox_isolation = "auto";
  int sandbox_uid_base = 200'000;  // first uid/gid handed to functions
  int sandbox_uid_count = 10'000;  // size of that range: at most this many functions
  int sandbox_pids_max = 1'024;    // processes + threads per instance (pids cgroup)
  int sandbox_open_files = 1'024;  // RLIMIT_NOFILE per instance
  // "on": the daemon mounts a cgroup hierarchy with favordynmods, so that an
  // instance joining its cgroups does not wait ~10 ms for an RCU grace period
  // after a quiet spell (src/sandbox/cgroup.h); it slows fork and exit a
  // little host-wide and, on recent kernels, lasts until reboot. "off":
  // leave the host as it is.
  std::string sandbox_cgroup_favor_dynmods = "on";
  // Instance cgroup sets kept made ahead of need, so that a cold start does
  // not wait for their mkdirs (src/sandbox/cgroup.h, CgroupStock); 0: each
  // start makes its own.
  int sandbox_cgroups_ahead = 2;
  // Sandboxes kept made ahead of need for instances that start directly
  // (`provided`, ...): their namespaces, root, /tmp, /proc and cgroups are
  // up before the request, which then adds only the code, the uid, the
  // rlimits and the filter (src/sandbox/launcher.cpp, ReadySandboxes); 0:
  // each start makes its own.
  int sandbox_ready_ahead = 2;
  // "batch": instances (and zygotes) run under SCHED_BATCH, so one the event
  // loop wakes does not preempt the loop mid-turn; "normal": SCHED_OTHER.
  std::string instance_cpu_policy = "batch";
  int default_tmp_mb = 512;  // size of an instance's private /tmp
  int max_tmp_mb = 10'240;

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
