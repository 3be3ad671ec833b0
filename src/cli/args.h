// Parsing of repeated KEY=VALUE flags (--env, --set).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace tamaya::cli {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// Splits each item at its first '='; the value may be empty or contain '='.
// Rejects an item without '=', an empty key and a key given twice, naming
// `flag` in the message.
Result<KeyValues> parse_key_values(const std::vector<std::string>& items, std::string_view flag);

}  // namespace tamaya::cli
