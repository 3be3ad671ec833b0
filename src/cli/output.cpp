#include "cli/output.h"

#include <algorithm>
#include <utility>

namespace tamaya::cli {

void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  const auto widen = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  widen(header);
  for (const auto& row : rows) widen(row);
  const auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      line += cell;
      if (i + 1 < widths.size()) line.append(widths[i] - cell.size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

std::string field_text(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

void print_function(std::ostream& out, const nlohmann::json& function) {
  std::vector<std::pair<std::string, std::string>> lines = {
      {"name", field_text(function, "name")},
      {"version", field_text(function, "version")},
      {"runtime", field_text(function, "runtime")},
      {"handler", field_text(function, "handler")},
      {"memory", field_text(function, "memory_mb") + " MB"},
      {"timeout", field_text(function, "timeout_s") + " s"},
      {"max concurrency", field_text(function, "max_concurrency")},
      {"description", field_text(function, "description")},
      {"code sha256", field_text(function, "code_sha256")},
      {"code size", field_text(function, "code_size") + " bytes"},
      {"revision", field_text(function, "revision_id")},
      {"created", field_text(function, "created_at")},
      {"updated", field_text(function, "updated_at")},
  };
  std::vector<std::string> env;
  if (function.is_object()) {
    auto it = function.find("environment");
    if (it != function.end() && it->is_object()) {
      for (const auto& [key, value] : it->items()) {
        env.push_back(key + "=" + (value.is_string() ? value.get<std::string>() : value.dump()));
      }
    }
  }
  constexpr size_t kKeyWidth = 17;  // longest key plus two spaces
  for (const auto& [key, value] : lines) {
    out << key << std::string(kKeyWidth - key.size(), ' ') << value << '\n';
  }
  const std::string env_key = "environment";
  if (env.empty()) {
    out << env_key << '\n';
  }
  for (size_t i = 0; i < env.size(); ++i) {
    out << (i == 0 ? env_key : std::string())
        << std::string(kKeyWidth - (i == 0 ? env_key.size() : 0), ' ') << env[i] << '\n';
  }
}

std::vector<std::string> function_row(const nlohmann::json& function) {
  return {field_text(function, "name"),
          field_text(function, "runtime"),
          field_text(function, "handler"),
          field_text(function, "memory_mb") + " MB",
          field_text(function, "timeout_s") + " s",
          field_text(function, "updated_at")};
}

}  // namespace tamaya::cli
