// `tamaya route add|ls|rm|export` and `tamaya key create|ls|revoke`: the API
// gateway's management commands, clients of /v1/routes, /v1/keys and
// /v1/openapi.json. Registered on the CLI11 app by cli.cpp in one call.
#pragma once

#include <memory>
#include <optional>

#include "cli/commands.h"

namespace CLI {
class App;
}

namespace tamaya::cli {

class GatewayCommands {
 public:
  explicit GatewayCommands(CLI::App& app);
  ~GatewayCommands();
  // The exit code when one of these commands was parsed; nullopt otherwise.
  std::optional<int> run(const Context& ctx) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tamaya::cli
