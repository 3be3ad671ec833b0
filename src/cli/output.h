// Human-readable rendering of admin API objects (tables, key/value lists).
// With --json the commands print the API's JSON instead and skip this.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace tamaya::cli {

// Columns padded to their widest cell, two spaces apart; the last column is
// not padded so lines carry no trailing blanks.
void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows);

// A field as text: strings as they are, numbers and booleans printed, null
// or missing (or an object that is not one) as "".
std::string field_text(const nlohmann::json& object, std::string_view key);

// A function object (docs/api.md) as aligned "key  value" lines.
void print_function(std::ostream& out, const nlohmann::json& function);

// One row of `tamaya ls`: NAME RUNTIME HANDLER MEMORY TIMEOUT UPDATED.
std::vector<std::string> function_row(const nlohmann::json& function);

}  // namespace tamaya::cli
