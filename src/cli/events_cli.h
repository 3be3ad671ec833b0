// `tamaya dlq ls|redrive` and `tamaya event-config get|set|rm`: async
// invocation management, clients of /v1/dead-letters and
// /v1/functions/{name}/event-invoke-config. Registered by cli.cpp in one call.
#pragma once

#include <memory>
#include <optional>

#include "cli/commands.h"

namespace CLI {
class App;
}

namespace tamaya::cli {

class EventsCommands {
 public:
  explicit EventsCommands(CLI::App& app);
  ~EventsCommands();
  // The exit code when one of these commands was parsed; nullopt otherwise.
  std::optional<int> run(const Context& ctx) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tamaya::cli
