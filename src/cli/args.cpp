#include "cli/args.h"

#include <set>

namespace tamaya::cli {

Result<KeyValues> parse_key_values(const std::vector<std::string>& items, std::string_view flag) {
  KeyValues result;
  std::set<std::string, std::less<>> seen;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return Status::Invalid(std::string(flag) + " '" + item + "' has no '='; write " +
                             std::string(flag) + " KEY=VALUE");
    }
    std::string key = item.substr(0, eq);
    if (key.empty()) {
      return Status::Invalid(std::string(flag) + " '" + item + "' has an empty key; write " +
                             std::string(flag) + " KEY=VALUE");
    }
    if (!seen.insert(key).second) {
      return Status::Invalid(std::string(flag) + " gives '" + key +
                             "' twice; keep the value you mean");
    }
    result.emplace_back(std::move(key), item.substr(eq + 1));
  }
  return result;
}

}  // namespace tamaya::cli
