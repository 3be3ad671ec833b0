#include "cli/schedule_cli.h"

#include <CLI/CLI.hpp>

#include "cli/output.h"

namespace tamaya::cli {

namespace {

using nlohmann::json;

void print_json(const Context& ctx, const json& doc) { ctx.out << doc.dump(2) << '\n'; }

std::string target_text(const json& s) {
  std::string q = field_text(s, "qualifier");
  return field_text(s, "function") + (q.empty() ? "" : ":" + q);
}

std::string or_dash(std::string s) { return s.empty() ? "-" : std::move(s); }

}  // namespace

struct ScheduleCommands::Impl {
  CLI::App* create = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* get = nullptr;
  CLI::App* rm = nullptr;
  CLI::App* enable = nullptr;
  CLI::App* disable = nullptr;

  std::string name, function, expression, qualifier, input, missed, description;
  bool disabled = false;
  int fires = 10;

  int create_run(const Context& ctx) const {
    json body = {{"name", name}, {"function", function}, {"expression", expression}};
    if (!qualifier.empty()) body["qualifier"] = qualifier;
    if (!missed.empty()) body["missed"] = missed;
    if (!description.empty()) body["description"] = description;
    if (disabled) body["enabled"] = false;
    if (!input.empty()) {
      // Sent as JSON text so the daemon gives the one error message for bad input.
      body["input"] = input;
    }
    Result<json> answer = ctx.api.send_json("POST", "/v1/schedules", body.dump(),
                                            {{"Content-Type", "application/json"}});
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
    } else {
      ctx.out << "schedule " << field_text(*answer, "name") << ": "
              << field_text(*answer, "expression") << " -> " << target_text(*answer) << ", next "
              << or_dash(field_text(*answer, "next_fire")) << '\n';
    }
    return kExitOk;
  }

  int ls_run(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("GET", "/v1/schedules");
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& s : answer->value("schedules", json::array())) {
      rows.push_back({field_text(s, "name"), field_text(s, "expression"), target_text(s),
                      s.value("enabled", false) ? "enabled" : "disabled",
                      or_dash(field_text(s, "next_fire")), or_dash(field_text(s, "last_fired")),
                      field_text(s, "fires"), field_text(s, "missed")});
    }
    print_table(ctx.out,
                {"NAME", "EXPRESSION", "TARGET", "STATE", "NEXT", "LAST", "FIRES", "MISSED"}, rows);
    if (rows.empty()) {
      ctx.err << "no schedules yet; add one with `tamaya schedule create NAME --function F "
                 "--expression 'rate(5 minutes)'`\n";
    }
    return kExitOk;
  }

  int get_run(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json(
        "GET", "/v1/schedules/" + percent_encode(name) + "?fires=" + std::to_string(fires));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
      return kExitOk;
    }
    const json& s = *answer;
    std::vector<std::vector<std::string>> rows = {
        {"name", field_text(s, "name")},
        {"arn", field_text(s, "arn")},
        {"expression", field_text(s, "expression") + " (UTC)"},
        {"target", target_text(s)},
        {"state", s.value("enabled", false) ? "enabled" : "disabled"},
        {"missed", field_text(s, "missed")},
        {"input",
         s.contains("input") && !s["input"].is_null() ? s["input"].dump() : "(scheduled event)"},
        {"next_fire", or_dash(field_text(s, "next_fire"))},
        {"last_fired", or_dash(field_text(s, "last_fired"))},
        {"fires", field_text(s, "fires")},
        {"description", or_dash(field_text(s, "description"))}};
    print_table(ctx.out, {"FIELD", "VALUE"}, rows);
    std::vector<std::vector<std::string>> fire_rows;
    for (const json& f : s.value("recent_fires", json::array())) {
      fire_rows.push_back({field_text(f, "scheduled"), field_text(f, "fired"),
                           field_text(f, "event_id"), f.value("missed", false) ? "missed" : ""});
    }
    if (!fire_rows.empty()) {
      ctx.out << '\n';
      print_table(ctx.out, {"SCHEDULED", "FIRED", "EVENT ID", ""}, fire_rows);
    }
    return kExitOk;
  }

  int rm_run(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("DELETE", "/v1/schedules/" + percent_encode(name));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (!ctx.json) ctx.out << "deleted schedule " << name << '\n';
    return kExitOk;
  }

  int toggle_run(const Context& ctx, bool on) const {
    Result<json> answer = ctx.api.send_json(
        "POST", "/v1/schedules/" + percent_encode(name) + (on ? "/enable" : "/disable"));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
    } else {
      ctx.out << "schedule " << name << (on ? " enabled, next " : " disabled")
              << (on ? or_dash(field_text(*answer, "next_fire")) : "") << '\n';
    }
    return kExitOk;
  }
};

ScheduleCommands::ScheduleCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& i = *impl_;
  CLI::App* schedule =
      app.add_subcommand("schedule", "manage schedules: rate(…) and cron(…) invocations (UTC)");
  schedule->require_subcommand(1);
  i.create = schedule->add_subcommand("create", "create a schedule that invokes a function");
  i.create->add_option("NAME", i.name, "letters, digits, '.', '-', '_' (1-64)")->required();
  i.create->add_option("--function", i.function, "function, or function:qualifier")->required();
  i.create
      ->add_option("--expression", i.expression,
                   "rate(5 minutes) or cron(min hour day-of-month month day-of-week year)")
      ->required();
  i.create->add_option("--qualifier", i.qualifier, "version or alias to invoke");
  i.create->add_option("--input", i.input, "JSON sent instead of the scheduled event");
  i.create->add_option("--missed", i.missed, "times missed while the daemon was down")
      ->check(CLI::IsMember({"fire_once", "skip"}));
  i.create->add_option("--description", i.description);
  i.create->add_flag("--disabled", i.disabled, "create it disabled");
  i.ls = schedule->add_subcommand("ls", "list schedules");
  i.get = schedule->add_subcommand("get", "show a schedule and its recent fires");
  i.get->add_option("NAME", i.name)->required();
  i.get->add_option("--fires", i.fires, "how many recent fires to show")
      ->check(CLI::Range(0, 1000));
  i.rm = schedule->add_subcommand("rm", "delete a schedule");
  i.rm->add_option("NAME", i.name)->required();
  i.enable = schedule->add_subcommand("enable", "enable a schedule (missed times are not fired)");
  i.enable->add_option("NAME", i.name)->required();
  i.disable = schedule->add_subcommand("disable", "disable a schedule");
  i.disable->add_option("NAME", i.name)->required();
}

ScheduleCommands::~ScheduleCommands() = default;

std::optional<int> ScheduleCommands::run(const Context& ctx) const {
  const Impl& i = *impl_;
  if (i.create->parsed()) return i.create_run(ctx);
  if (i.ls->parsed()) return i.ls_run(ctx);
  if (i.get->parsed()) return i.get_run(ctx);
  if (i.rm->parsed()) return i.rm_run(ctx);
  if (i.enable->parsed()) return i.toggle_run(ctx, true);
  if (i.disable->parsed()) return i.toggle_run(ctx, false);
  return std::nullopt;
}

}  // namespace tamaya::cli
