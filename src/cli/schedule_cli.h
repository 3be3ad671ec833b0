// `tamaya schedule create|ls|get|rm|enable|disable`: clients of
// /v1/schedules. Registered on the CLI11 app by cli.cpp in one call.
#pragma once

#include <memory>
#include <optional>

#include "cli/commands.h"

namespace CLI {
class App;
}

namespace tamaya::cli {

class ScheduleCommands {
 public:
  explicit ScheduleCommands(CLI::App& app);
  ~ScheduleCommands();
  // The exit code when one of these commands was parsed; nullopt otherwise.
  std::optional<int> run(const Context& ctx) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tamaya::cli
