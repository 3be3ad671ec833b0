// Structured logs: one line per event, "msg key=value ...", through spdlog.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace tamaya {

// Sets the global logger's level and pattern; call once at startup.
void init_logging(const std::string& level);

}  // namespace tamaya
