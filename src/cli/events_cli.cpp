#include "cli/events_cli.h"

#include <CLI/CLI.hpp>

#include "cli/output.h"

namespace tamaya::cli {

namespace {

using nlohmann::json;

void print_json(const Context& ctx, const json& doc) { ctx.out << doc.dump(2) << '\n'; }

}  // namespace

struct EventsCommands::Impl {
  CLI::App* dlq_ls = nullptr;
  CLI::App* dlq_redrive = nullptr;
  CLI::App* config_get = nullptr;
  CLI::App* config_set = nullptr;
  CLI::App* config_rm = nullptr;
  CLI::Option* retries_opt = nullptr;
  CLI::Option* age_opt = nullptr;
  CLI::Option* success_opt = nullptr;
  CLI::Option* failure_opt = nullptr;

  std::string function, id, on_success, on_failure;
  int limit = 100, max_retries = 0, max_age_s = 0;

  int ls(const Context& ctx) const {
    std::string target = "/v1/dead-letters?limit=" + std::to_string(limit);
    if (!function.empty()) target += "&function=" + percent_encode(function);
    Result<json> answer = ctx.api.send_json("GET", target);
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& d : answer->value("dead_letters", json::array())) {
      rows.push_back({field_text(d, "id"), field_text(d, "function"), field_text(d, "condition"),
                      field_text(d, "invokes"), field_text(d, "failed_at"),
                      field_text(d, "error")});
    }
    print_table(ctx.out, {"ID", "FUNCTION", "CONDITION", "INVOKES", "FAILED", "ERROR"}, rows);
    if (rows.empty()) ctx.err << "no dead letters\n";
    return kExitOk;
  }

  int redrive(const Context& ctx) const {
    json body = json::object();
    if (!id.empty()) body["id"] = id;
    if (!function.empty()) body["function"] = function;
    Result<json> answer = ctx.api.send_json("POST", "/v1/dead-letters/redrive", body.dump(),
                                            {{"Content-Type", "application/json"}});
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
    } else {
      ctx.out << "redriven " << answer->value("redriven", 0) << " event(s) into the queue\n";
    }
    return kExitOk;
  }

  std::string config_path() const { return function_path(function) + "/event-invoke-config"; }

  int print_config(const Context& ctx, const json& c) const {
    if (ctx.json) {
      print_json(ctx, c);
      return kExitOk;
    }
    print_table(ctx.out, {"FUNCTION", "MAX RETRIES", "MAX AGE (S)", "ON SUCCESS", "ON FAILURE"},
                {{field_text(c, "function"), field_text(c, "max_retry_attempts"),
                  field_text(c, "max_event_age_s"), field_text(c, "on_success"),
                  c.value("on_failure", "").empty() ? "(dead-letter table)"
                                                    : field_text(c, "on_failure")}});
    return kExitOk;
  }

  int get(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("GET", config_path());
    if (!answer.ok()) return fail(ctx, answer.status());
    return print_config(ctx, *answer);
  }

  int set(const Context& ctx) const {
    json body = json::object();
    if (retries_opt->count()) body["max_retry_attempts"] = max_retries;
    if (age_opt->count()) body["max_event_age_s"] = max_age_s;
    if (success_opt->count()) body["on_success"] = on_success;
    if (failure_opt->count()) body["on_failure"] = on_failure;
    Result<json> answer = ctx.api.send_json("PUT", config_path(), body.dump(),
                                            {{"Content-Type", "application/json"}});
    if (!answer.ok()) return fail(ctx, answer.status());
    return print_config(ctx, *answer);
  }

  int rm(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("DELETE", config_path());
    if (!answer.ok()) return fail(ctx, answer.status());
    if (!ctx.json)
      ctx.out << "event-invoke config of " << function << " removed (defaults apply)\n";
    return kExitOk;
  }
};

EventsCommands::EventsCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& i = *impl_;
  CLI::App* dlq = app.add_subcommand("dlq", "async events that failed for good (dead letters)");
  dlq->require_subcommand(1);
  i.dlq_ls = dlq->add_subcommand("ls", "list dead letters, of one FUNCTION or all");
  i.dlq_ls->add_option("FUNCTION", i.function);
  i.dlq_ls->add_option("--limit", i.limit, "at most N")->check(CLI::Range(1, 10'000));
  i.dlq_redrive = dlq->add_subcommand(
      "redrive", "put dead letters back into the queue: FUNCTION, --id, or all");
  i.dlq_redrive->add_option("FUNCTION", i.function);
  i.dlq_redrive->add_option("--id", i.id, "only the event with this id");

  CLI::App* cfg = app.add_subcommand(
      "event-config", "a function's async settings: retries, maximum age, destinations");
  cfg->require_subcommand(1);
  i.config_get = cfg->add_subcommand("get", "show NAME's async settings");
  i.config_get->add_option("NAME", i.function)->required();
  i.config_set = cfg->add_subcommand("set", "change NAME's async settings");
  i.config_set->add_option("NAME", i.function)->required();
  i.retries_opt = i.config_set->add_option("--max-retries", i.max_retries,
                                           "retries after a function error, 0-2 (default 2)");
  i.age_opt = i.config_set->add_option("--max-age", i.max_age_s,
                                       "seconds an event may wait, 60-21600 (default 21600)");
  i.success_opt = i.config_set->add_option("--on-success", i.on_success,
                                           "function that gets a record of each success");
  i.failure_opt = i.config_set->add_option(
      "--on-failure", i.on_failure, "function that gets failed events (default: dead letters)");
  i.config_rm = cfg->add_subcommand("rm", "back to the defaults");
  i.config_rm->add_option("NAME", i.function)->required();
}

EventsCommands::~EventsCommands() = default;

std::optional<int> EventsCommands::run(const Context& ctx) const {
  const Impl& i = *impl_;
  if (i.dlq_ls->parsed()) return i.ls(ctx);
  if (i.dlq_redrive->parsed()) return i.redrive(ctx);
  if (i.config_get->parsed()) return i.get(ctx);
  if (i.config_set->parsed()) return i.set(ctx);
  if (i.config_rm->parsed()) return i.rm(ctx);
  return std::nullopt;
}

}  // namespace tamaya::cli
