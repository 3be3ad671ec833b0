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

// Between polls of `tamaya logs -f`.
inline constexpr std::chrono::milliseconds kLogFollowInterval{500};

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
};
int deploy(const Context& ctx, const DeployOptions& options);

struct InvokeOptions {
  std::string name;
  std::optional<std::string> data;
  std::optional<std::string> file;  // "-" is stdin
  std::optional<std::string> qualifier;
  bool log_tail = false;
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
