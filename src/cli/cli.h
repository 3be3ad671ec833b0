// The `tamaya` command line: `serve` starts the daemon (through the function
// the daemon passes in, so this library links no server module), every other
// command is a client of the admin API (docs/api.md).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace tamaya::cli {

// What `tamaya serve` was told on the command line; 0 or empty means "not
// given", so the daemon keeps the value from the settings file or defaults.
struct ServeOptions {
  std::string config_path;
  std::string data_dir;
  std::string admin_host;
  int admin_port = 0;
  // --set key=value, in the order given (later ones win).
  std::vector<std::pair<std::string, std::string>> overrides;
  // `tamaya doctor`: the daemon side prints what isolation this host allows
  // with these settings and exits, without serving (no daemon needed).
  bool doctor = false;
};

using ServeFn = std::function<int(const ServeOptions&)>;

// Parses argv and runs one command; returns the process exit code: 0 ok,
// 1 the invoked function failed (`invoke` only), 2 usage, API or transport
// error.
int run(int argc, char** argv, const ServeFn& serve);

}  // namespace tamaya::cli
