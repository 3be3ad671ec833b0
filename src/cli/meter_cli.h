// `tamaya invocations` (records) and `tamaya usage` (usage and cost): the
// meter part of the CLI, registered on the app like the gateway commands.
#pragma once

#include <memory>
#include <optional>

#include "cli/commands.h"

namespace CLI {
class App;
}

namespace tamaya::cli {

class MeterCommands {
 public:
  explicit MeterCommands(CLI::App& app);
  ~MeterCommands();
  // The exit code when one of these commands was parsed; nullopt otherwise.
  std::optional<int> run(const Context& ctx) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tamaya::cli
