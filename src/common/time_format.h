// Wall-clock times as text, in the one shape tamaya prints them.
#pragma once

#include <cstdint>
#include <string>

namespace tamaya {

// "2026-11-25T10:00:00.000Z" (UTC, milliseconds) for ms since the epoch.
std::string format_iso8601(int64_t epoch_ms);

}  // namespace tamaya
