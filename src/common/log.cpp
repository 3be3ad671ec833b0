#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "common/thread_step.h"

namespace tamaya {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("tamaya");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

Status contained_bug(std::string_view where, std::string_view what) noexcept {
  spdlog::critical("bug: an exception escaped {}; that step failed, the thread runs on error={}",
                   where, what);
  return Status::Internal("a bug in tamaya failed " + std::string(where) + " (" +
                          std::string(what) + "); the daemon's log has it, please report it");
}

}  // namespace tamaya
