// The client commands, one function each, apart from argument parsing so
// that cli.cpp stays a table of flags. Each returns the process exit code.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "cli/admin_client.h"
#include "cli/args.h"

namespace tamaya::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFunctionError = 1;  // invoke: the function itself failed
inline constexpr int kExitError = 2;          // usage, API or transport error

// `tamaya logs -f` gives up when its stream is silent this long; the daemon
// sends a keep-alive comment every 15 s.
inline constexpr std::chrono::milliseconds kLogStreamTimeout{60'000};

struct Context {
  AdminClient api;
  bool json = false;  // print the API's JSON instead of tables and text
  std::ostream& out;
  std::ostream& err;
};

// Prints "error: <message>" and returns kExitError.
int fail(const Context& ctx, const Status& status);

struct DeployOptions {
  std::string name;
  std::string path;
  std::optional<std::string> runtime;
  std::optional<std::string> handler;
  std::optional<int> memory_mb;
  std::optional<int> timeout_s;
  std::optional<int> max_concurrency;
  std::optional<KeyValues> environment;  // replaces the whole map when given
  std::optional<std::string> description;
  // Scaling (applied without a new revision; see `scale`).
  std::optional<int> min_instances;
  std::optional<std::optional<int>> reserved_concurrency;  // inner nullopt: remove
  std::optional<int> idle_timeout_s;
};
int deploy(const Context& ctx, const DeployOptions& options);

// `--reserved-concurrency N|none`.
Result<std::optional<int>> parse_reserved(const std::string& text);

struct ScaleOptions {
  std::string name;
  std::optional<int> min_instances;
  std::optional<int> max_instances;
  std::optional<std::optional<int>> reserved_concurrency;
  std::optional<int> idle_timeout_s;
};
// Changes the given scaling fields (PATCH), then prints the function's
// scaling and instances; with no field, only prints them.
int scale(const Context& ctx, const ScaleOptions& options);

struct InvokeOptions {
  std::string name;
  std::optional<std::string> data;
  std::optional<std::string> file;  // "-" is stdin
  std::optional<std::string> qualifier;
  bool log_tail = false;
  bool async = false;  // Event: 202 with the request id once the event is durable
};
int invoke(const Context& ctx, const InvokeOptions& options);

int list_functions(const Context& ctx);
int get_function(const Context& ctx, const std::string& name,
                 const std::optional<std::string>& qualifier);
int remove_function(const Context& ctx, const std::string& name);
int publish(const Context& ctx, const std::string& name,
            const std::optional<std::string>& description);
int list_versions(const Context& ctx, const std::string& name);

struct LogsOptions {
  std::string name;
  bool follow = false;
  std::optional<std::string> request_id;
  std::optional<int> limit;
};
int logs(const Context& ctx, const LogsOptions& options);

}  // namespace tamaya::cli
