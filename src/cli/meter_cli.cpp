#include "cli/meter_cli.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/output.h"

namespace tamaya::cli {

namespace {

using nlohmann::json;

std::string query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    q += (q.empty() ? "?" : "&") + k + "=" + percent_encode(v);
  }
  return q;
}

double num(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string usd(double v) { return fmt::format("${:.6f}", v); }

}  // namespace

struct MeterCommands::Impl {
  CLI::App* invocations = nullptr;
  CLI::App* usage = nullptr;
  std::string function, status, trigger, since, until, usage_since, usage_until;
  int limit = 20;

  int run_invocations(const Context& ctx) const {
    Result<json> answer =
        ctx.api.send_json("GET", "/v1/invocations" + query({{"function", function},
                                                            {"status", status},
                                                            {"trigger", trigger},
                                                            {"since", since},
                                                            {"until", until},
                                                            {"limit", std::to_string(limit)}}));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      ctx.out << answer->dump(2) << '\n';
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& r : answer->value("invocations", json::array())) {
      rows.push_back(
          {field_text(r, "start"), field_text(r, "function"), field_text(r, "version"),
           field_text(r, "trigger"), field_text(r, "status"),
           fmt::format("{:.2f}", num(r, "duration_ms")),
           fmt::format("{}", int64_t(num(r, "billed_duration_ms"))),
           r.value("cold", false) ? fmt::format("{:.2f}", num(r, "init_duration_ms")) : "-",
           fmt::format("{}/{}", int64_t(num(r, "max_memory_used_mb")),
                       int64_t(num(r, "memory_size_mb"))),
           field_text(r, "error_type").empty() ? "-" : field_text(r, "error_type"),
           field_text(r, "request_id")});
    }
    print_table(ctx.out,
                {"START", "FUNCTION", "VERSION", "TRIGGER", "STATUS", "DURATION_MS", "BILLED_MS",
                 "INIT_MS", "MEM_MB", "ERROR", "REQUEST_ID"},
                rows);
    return kExitOk;
  }

  int run_usage(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json(
        "GET", "/v1/usage" + query({{"since", usage_since}, {"until", usage_until}}));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      ctx.out << answer->dump(2) << '\n';
      return kExitOk;
    }
    auto row = [](const std::string& name, const json& f) -> std::vector<std::string> {
      return {name,
              fmt::format("{}", int64_t(num(f, "requests"))),
              fmt::format("{}", int64_t(num(f, "errors"))),
              fmt::format("{:.3f}", num(f, "gb_seconds")),
              usd(num(f, "cost_usd")),
              fmt::format("{}", int64_t(num(f, "peak_concurrency"))),
              fmt::format("{}", int64_t(num(f, "rented_instances"))),
              usd(num(f, "rented_cost_usd"))};
    };
    std::vector<std::vector<std::string>> rows;
    for (const json& f : answer->value("functions", json::array())) {
      rows.push_back(row(field_text(f, "function"), f));
    }
    const json total = answer->value("total", json::object());
    rows.push_back(row("TOTAL", total));
    ctx.out << "usage from " << field_text(*answer, "since") << " to "
            << field_text(*answer, "until") << fmt::format(" ({:.2f} h)\n", num(*answer, "hours"));
    print_table(ctx.out,
                {"FUNCTION", "REQUESTS", "ERRORS", "GB_SECONDS", "COST", "PEAK_CONC", "RENTED_VMS",
                 "RENTED_COST"},
                rows);
    const json prices = answer->value("prices", json::object());
    ctx.out << fmt::format(
        "pay per use: {} ({} per 1M requests + {} per GB-second)\n"
        "always on:   {} ({} VM(s) of {} MB at ${}/h, sized for the peak, for the whole window)\n",
        usd(num(total, "cost_usd")), usd(num(prices, "request_usd_per_million")),
        fmt::format("${}", num(prices, "gb_second_usd")), usd(num(total, "rented_cost_usd")),
        int64_t(num(total, "rented_instances")), int64_t(num(prices, "rented_instance_memory_mb")),
        num(prices, "rented_instance_hourly_usd"));
    return kExitOk;
  }
};

MeterCommands::MeterCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& i = *impl_;
  i.invocations = app.add_subcommand("invocations", "list invocation records, newest first");
  i.invocations->add_option("--function", i.function, "only this function");
  i.invocations->add_option("--status", i.status, "success or error")
      ->check(CLI::IsMember({"success", "error"}));
  i.invocations->add_option("--trigger", i.trigger, "api, gateway, async or schedule")
      ->check(CLI::IsMember({"api", "gateway", "async", "schedule"}));
  i.invocations->add_option("--since", i.since, "from: 15m, 1h, 7d, epoch ms or ISO-8601");
  i.invocations->add_option("--until", i.until, "to: same forms as --since");
  i.invocations->add_option("--limit", i.limit, "at most N records (default 20)")
      ->check(CLI::Range(1, 10'000));
  i.usage = app.add_subcommand("usage", "usage and cost per function, vs always-on VMs");
  i.usage->add_option("--since", i.usage_since, "from (default 24h): 1h, 7d, epoch ms, ISO-8601");
  i.usage->add_option("--until", i.usage_until, "to (default now)");
}

MeterCommands::~MeterCommands() = default;

std::optional<int> MeterCommands::run(const Context& ctx) const {
  if (impl_->invocations->parsed()) return impl_->run_invocations(ctx);
  if (impl_->usage->parsed()) return impl_->run_usage(ctx);
  return std::nullopt;
}

}  // namespace tamaya::cli
