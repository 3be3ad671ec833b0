#include "cli/commands.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/output.h"
#include "cli/zip.h"
#include "common/encoding.h"

namespace tamaya::cli {
namespace {

using nlohmann::json;

// Handler used on create when none is given: `handler` in app.py / app.js.
constexpr const char* kDefaultHandler = "app.handler";

void print_json(const Context& ctx, const json& value) { ctx.out << value.dump(2) << '\n'; }

json environment_json(const KeyValues& pairs) {
  json env = json::object();
  for (const auto& [key, value] : pairs) env[key] = value;
  return env;
}

// The configuration flags given to deploy, as API fields.
json config_fields(const DeployOptions& options) {
  json fields = json::object();
  if (options.runtime) fields["runtime"] = *options.runtime;
  if (options.handler) fields["handler"] = *options.handler;
  if (options.memory_mb) fields["memory_mb"] = *options.memory_mb;
  if (options.timeout_s) fields["timeout_s"] = *options.timeout_s;
  if (options.max_concurrency) fields["max_concurrency"] = *options.max_concurrency;
  if (options.environment) fields["environment"] = environment_json(*options.environment);
  if (options.description) fields["description"] = *options.description;
  if (options.min_instances) fields["min_instances"] = *options.min_instances;
  if (options.idle_timeout_s) fields["idle_timeout_s"] = *options.idle_timeout_s;
  if (options.reserved_concurrency) {
    fields["reserved_concurrency"] =
        *options.reserved_concurrency ? json(**options.reserved_concurrency) : json(nullptr);
  }
  return fields;
}

void print_scaling(const Context& ctx, const json& f) {
  if (ctx.json) return print_json(ctx, f);
  const json& r = f.value("reserved_concurrency", json(nullptr));
  ctx.out << "function " << field_text(f, "name") << ": min_instances "
          << field_text(f, "min_instances") << ", max_instances " << field_text(f, "max_instances")
          << ", reserved_concurrency " << (r.is_null() ? std::string("none") : r.dump())
          << ", idle_timeout " << field_text(f, "idle_timeout_s") << " s\n";
  const json& i = f.value("instances", json::object());
  ctx.out << "instances: " << i.value("total", 0) << " (busy " << i.value("busy", 0) << ", idle "
          << i.value("idle", 0) << ", starting " << i.value("starting", 0) << "), warm "
          << i.value("provisioned_ready", 0) << "/" << i.value("provisioned", 0) << ", queued "
          << i.value("queued", 0)
          << (i.value("held", false) ? ", held (the host's CPUs are saturated)" : "") << "\n";
  for (const auto& p : f.value("provisioned", json::array())) {
    ctx.out << "provisioned " << p.value("qualifier", "") << ": " << p.value("ready", 0) << "/"
            << p.value("requested", 0) << " " << p.value("status", "");
    if (p.contains("error")) ctx.out << " (" << p.value("error", "") << ")";
    ctx.out << "\n";
  }
}

void print_deployed(const Context& ctx, std::string_view verb, const json& function) {
  if (ctx.json) return print_json(ctx, function);
  std::string sha = field_text(function, "code_sha256").substr(0, 12);
  ctx.out << verb << " function " << field_text(function, "name") << ": "
          << field_text(function, "runtime");
  const std::string handler = field_text(function, "handler");
  if (!handler.empty()) ctx.out << " " << handler;
  ctx.out << ", code " << sha << " (" << field_text(function, "code_size") << " bytes)\n";
}

Result<std::string> read_payload(const InvokeOptions& options) {
  if (options.data) return *options.data;
  const bool from_stdin = options.file ? *options.file == "-" : !::isatty(STDIN_FILENO);
  if (from_stdin) {
    std::string payload{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    if (std::cin.bad()) return Status::Invalid("reading the payload from stdin failed");
    return payload;
  }
  if (options.file) {
    std::ifstream in(*options.file, std::ios::binary);
    if (!in) {
      return Status::Invalid("cannot read payload file '" + *options.file +
                             "'; check the path (use --file - for stdin)");
    }
    return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  // Nothing given on an interactive terminal: an empty event, as Lambda's
  // console does, rather than waiting on the keyboard.
  return std::string("{}");
}

std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string query;
  for (const auto& [key, value] : params) {
    query += (query.empty() ? "?" : "&") + key + "=" + percent_encode(value);
  }
  return query;
}

}  // namespace

int fail(const Context& ctx, const Status& status) {
  ctx.err << "error: " << status.message() << '\n';
  return kExitError;
}

int deploy(const Context& ctx, const DeployOptions& options) {
  // Local mistakes (bad path) surface before anything is sent.
  Result<std::string> zip = package_code(options.path);
  if (!zip.ok()) return fail(ctx, zip.status());

  const std::string path = function_path(options.name);
  Result<json> existing = ctx.api.send_json("GET", path);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) {
    return fail(ctx, existing.status());
  }

  if (!existing.ok()) {
    if (!options.runtime) {
      return fail(ctx, Status::Invalid("function '" + options.name +
                                       "' does not exist yet; creating it needs --runtime "
                                       "(python3, nodejs or provided)"));
    }
    json body = config_fields(options);
    body["name"] = options.name;
    if (!options.handler && *options.runtime != "provided") body["handler"] = kDefaultHandler;
    body["code"] = {{"zip_base64", base64_encode(*zip)}};
    Result<json> created =
        ctx.api.send_json("POST", "/v1/functions", body.dump(),
                          {{"Content-Type", "application/json"}}, kUploadTimeout);
    if (!created.ok()) return fail(ctx, created.status());
    print_deployed(ctx, "created", *created);
    return kExitOk;
  }

  Result<json> updated = ctx.api.send_json("PUT", path + "/code", std::move(zip).value(),
                                           {{"Content-Type", "application/zip"}}, kUploadTimeout);
  if (!updated.ok()) return fail(ctx, updated.status().with_context("uploading code"));
  const json fields = config_fields(options);
  if (!fields.empty()) {
    updated =
        ctx.api.send_json("PATCH", path, fields.dump(), {{"Content-Type", "application/json"}});
    if (!updated.ok()) {
      return fail(ctx, updated.status().with_context(
                           "the code was updated, but changing the configuration failed"));
    }
  }
  print_deployed(ctx, "updated", *updated);
  return kExitOk;
}

Result<std::optional<int>> parse_reserved(const std::string& text) {
  if (text == "none") return std::optional<int>();
  try {
    size_t used = 0;
    int n = std::stoi(text, &used);
    if (used == text.size() && n >= 0) return std::optional<int>(n);
  } catch (const std::exception&) {
  }
  return Status::Invalid("--reserved-concurrency takes a number (0 or more) or 'none', not '" +
                         text + "'");
}

int scale(const Context& ctx, const ScaleOptions& options) {
  const std::string path = function_path(options.name);
  json fields = json::object();
  if (options.min_instances) fields["min_instances"] = *options.min_instances;
  if (options.max_instances) fields["max_instances"] = *options.max_instances;
  if (options.idle_timeout_s) fields["idle_timeout_s"] = *options.idle_timeout_s;
  if (options.reserved_concurrency) {
    fields["reserved_concurrency"] =
        *options.reserved_concurrency ? json(**options.reserved_concurrency) : json(nullptr);
  }
  Result<json> f = fields.empty() ? ctx.api.send_json("GET", path)
                                  : ctx.api.send_json("PATCH", path, fields.dump(),
                                                      {{"Content-Type", "application/json"}});
  if (!f.ok()) return fail(ctx, f.status());
  print_scaling(ctx, *f);
  return kExitOk;
}

int invoke(const Context& ctx, const InvokeOptions& options) {
  Result<std::string> payload = read_payload(options);
  if (!payload.ok()) return fail(ctx, payload.status());

  net::Headers headers = {{"Content-Type", "application/json"}};
  if (options.log_tail) headers.emplace_back("X-Tamaya-Log-Type", "Tail");
  if (options.async) headers.emplace_back("X-Tamaya-Invocation-Type", "Event");
  std::string target = function_path(options.name) + "/invoke";
  if (options.qualifier) target += query_string({{"qualifier", *options.qualifier}});

  Result<net::Response> response =
      ctx.api.send("POST", target, std::move(payload).value(), headers, kInvokeTimeout);
  if (!response.ok()) return fail(ctx, response.status());

  ctx.out << response->body << '\n' << std::flush;
  if (options.log_tail) {
    if (auto tail = find_header(response->headers, "X-Tamaya-Log-Result")) {
      if (auto decoded = base64_decode(*tail)) {
        ctx.err << *decoded;
        if (!decoded->empty() && decoded->back() != '\n') ctx.err << '\n';
      } else {
        ctx.err << "warning: the log tail from the daemon is not valid base64\n";
      }
    }
  }
  return find_header(response->headers, "X-Tamaya-Function-Error") ? kExitFunctionError : kExitOk;
}

int list_functions(const Context& ctx) {
  Result<json> answer = ctx.api.send_json("GET", "/v1/functions");
  if (!answer.ok()) return fail(ctx, answer.status());
  if (ctx.json) {
    print_json(ctx, *answer);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  const json& functions = answer->is_object() ? answer->value("functions", json::array()) : json();
  if (functions.is_array()) {
    for (const json& function : functions) rows.push_back(function_row(function));
  }
  print_table(ctx.out, {"NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "UPDATED"}, rows);
  if (rows.empty()) {
    ctx.err << "no functions yet; create one with `tamaya deploy NAME PATH --runtime python3`\n";
  }
  return kExitOk;
}

int get_function(const Context& ctx, const std::string& name,
                 const std::optional<std::string>& qualifier) {
  std::string target = function_path(name);
  if (qualifier) target += query_string({{"qualifier", *qualifier}});
  Result<json> function = ctx.api.send_json("GET", target);
  if (!function.ok()) return fail(ctx, function.status());
  if (ctx.json) {
    print_json(ctx, *function);
  } else {
    print_function(ctx.out, *function);
  }
  return kExitOk;
}

int remove_function(const Context& ctx, const std::string& name) {
  Result<net::Response> answer = ctx.api.send("DELETE", function_path(name));
  if (!answer.ok()) return fail(ctx, answer.status());
  // 204: there is no JSON to print with --json.
  if (!ctx.json) ctx.out << "deleted function " << name << '\n';
  return kExitOk;
}

int publish(const Context& ctx, const std::string& name,
            const std::optional<std::string>& description) {
  json body = json::object();
  if (description) body["description"] = *description;
  Result<net::Response> answer = ctx.api.send("POST", function_path(name) + "/versions",
                                              body.dump(), {{"Content-Type", "application/json"}});
  if (!answer.ok()) return fail(ctx, answer.status());
  json function = json::parse(answer->body, nullptr, false);
  if (function.is_discarded()) {
    return fail(ctx, Status::Internal("publishing answered with a body that is not JSON"));
  }
  if (ctx.json) {
    print_json(ctx, function);
    return kExitOk;
  }
  const std::string version = field_text(function, "version");
  ctx.out << version << '\n';
  if (answer->status == 200) {
    ctx.err << "nothing changed since version " << version << "; no new version published\n";
  }
  return kExitOk;
}

int list_versions(const Context& ctx, const std::string& name) {
  Result<json> answer = ctx.api.send_json("GET", function_path(name) + "/versions");
  if (!answer.ok()) return fail(ctx, answer.status());
  if (ctx.json) {
    print_json(ctx, *answer);
    return kExitOk;
  }
  constexpr size_t kShortSha = 12;
  std::vector<std::vector<std::string>> rows;
  const json& versions = answer->is_object() ? answer->value("versions", json::array()) : json();
  if (versions.is_array()) {
    for (const json& v : versions) {
      rows.push_back({field_text(v, "version"), field_text(v, "code_sha256").substr(0, kShortSha),
                      field_text(v, "created_at"), field_text(v, "description")});
    }
  }
  print_table(ctx.out, {"VERSION", "CODE", "CREATED", "DESCRIPTION"}, rows);
  return kExitOk;
}

namespace {

// Prints the events of a server-sent event stream of log lines until the
// server ends it; the stream's comment lines (": keep-alive") are skipped.
int follow_logs(const Context& ctx, const LogsOptions& options, int64_t since_id) {
  std::string pending;
  Status s = ctx.api.stream(
      function_path(options.name) + "/logs/stream?since_id=" + std::to_string(since_id),
      [&](std::string_view chunk) {
        pending.append(chunk);
        size_t end;
        while ((end = pending.find("\n\n")) != std::string::npos) {
          std::string_view event(pending.data(), end);
          size_t pos = 0;
          while (pos < event.size()) {
            size_t nl = event.find('\n', pos);
            std::string_view line =
                event.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
            pos = nl == std::string_view::npos ? event.size() : nl + 1;
            if (line.substr(0, 6) != "data: ") continue;
            json doc = json::parse(line.substr(6), nullptr, false);
            if (doc.is_discarded() || !doc.is_object()) continue;
            if (options.request_id && field_text(doc, "request_id") != *options.request_id)
              continue;
            if (ctx.json) {
              ctx.out << doc.dump() << '\n';
            } else {
              const std::string message = field_text(doc, "message");
              ctx.out << message;
              if (message.empty() || message.back() != '\n') ctx.out << '\n';
            }
          }
          pending.erase(0, end + 2);
        }
        ctx.out << std::flush;
        return true;
      },
      kLogStreamTimeout);
  if (!s.ok()) return fail(ctx, s);
  return kExitOk;
}

}  // namespace

int logs(const Context& ctx, const LogsOptions& options) {
  std::vector<std::pair<std::string, std::string>> params;
  if (options.limit) params.emplace_back("limit", std::to_string(*options.limit));
  if (options.request_id) params.emplace_back("request_id", *options.request_id);
  Result<json> answer =
      ctx.api.send_json("GET", function_path(options.name) + "/logs" + query_string(params));
  if (!answer.ok()) return fail(ctx, answer.status());

  const json events = answer->is_object() ? answer->value("events", json::array()) : json();
  if (ctx.json) {
    // One document a line under -f, so the stream stays machine-readable.
    if (options.follow) {
      if (events.is_array() && !events.empty()) ctx.out << answer->dump() << '\n';
    } else {
      print_json(ctx, *answer);
    }
  } else if (events.is_array()) {
    for (const json& event : events) {
      const std::string message = field_text(event, "message");
      ctx.out << message;
      if (message.empty() || message.back() != '\n') ctx.out << '\n';
    }
  }
  ctx.out << std::flush;
  if (!options.follow) return kExitOk;
  // Then new lines as they come (server-sent events), until interrupted;
  // the stream starts right after the last line printed.
  int64_t next = 0;
  if (answer->is_object() && answer->contains("next_since_id") &&
      (*answer)["next_since_id"].is_number_integer()) {
    next = (*answer)["next_since_id"].get<int64_t>();
  }
  return follow_logs(ctx, options, next);
}

}  // namespace tamaya::cli
