#include "cli/route_cli.h"

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>

#include "cli/output.h"

namespace tamaya::cli {

namespace {

using nlohmann::json;

void print_json(const Context& ctx, const json& doc) { ctx.out << doc.dump(2) << '\n'; }

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Invalid("cannot read '" + path + "'; check the path");
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string rate_text(const json& plan) {
  if (!plan.is_object() || plan.value("rate", 0.0) <= 0) return "-";
  std::ostringstream s;
  s << plan.value("rate", 0.0) << "/s burst " << plan.value("burst", 0);
  return s.str();
}

}  // namespace

struct GatewayCommands::Impl {
  CLI::App* add = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* rm = nullptr;
  CLI::App* exp = nullptr;
  CLI::App* key_create = nullptr;
  CLI::App* key_ls = nullptr;
  CLI::App* key_revoke = nullptr;

  std::string method, path, target, format = "2.0", auth = "none", issuer, secret, public_key,
                                    jwks_file, id, key_name;
  std::vector<std::string> audience, scopes;
  bool async = false;
  int64_t timeout_ms = 0, burst = 0, daily_quota = 0;
  double rate = 0;

  int route_add(const Context& ctx) const {
    json body = {{"target", target},
                 {"integration", async ? "async" : "sync"},
                 {"payload_format", format},
                 {"timeout_ms", timeout_ms},
                 {"auth", auth}};
    if (method == "$default") {
      body["route_key"] = "$default";
    } else {
      if (path.empty()) {
        return fail(ctx,
                    Status::Invalid("give a PATH, e.g. `tamaya route add GET /items/{id} fn`"));
      }
      body["route_key"] = method + " " + path;
    }
    if (auth == "jwt") {
      json jwt = {{"issuer", issuer}, {"audience", audience}, {"scopes", scopes}};
      if (!secret.empty()) jwt["secret"] = secret;
      if (!public_key.empty()) {
        auto pem = read_file(public_key);
        if (!pem.ok()) return fail(ctx, pem.status());
        jwt["public_key_pem"] = *pem;
      }
      if (!jwks_file.empty()) jwt["jwks_file"] = jwks_file;
      body["jwt"] = jwt;
    }
    if (rate > 0) body["rate_limit"] = {{"rate", rate}, {"burst", burst}};
    Result<json> answer = ctx.api.send_json("POST", "/v1/routes", body.dump(),
                                            {{"Content-Type", "application/json"}});
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
    } else {
      ctx.out << "route " << field_text(*answer, "id") << ": " << field_text(*answer, "route_key")
              << " -> " << field_text(*answer, "target") << '\n';
    }
    return kExitOk;
  }

  int route_ls(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("GET", "/v1/routes");
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& r : answer->value("routes", json::array())) {
      rows.push_back({field_text(r, "id"), field_text(r, "route_key"), field_text(r, "target"),
                      field_text(r, "integration"), field_text(r, "payload_format"),
                      field_text(r, "auth"), rate_text(r.value("rate_limit", json()))});
    }
    print_table(ctx.out, {"ID", "ROUTE", "TARGET", "INTEGRATION", "FORMAT", "AUTH", "RATE"}, rows);
    if (rows.empty())
      ctx.err << "no routes yet; add one with `tamaya route add GET /path FUNCTION`\n";
    return kExitOk;
  }

  int route_rm(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("DELETE", "/v1/routes/" + percent_encode(id));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (!ctx.json) ctx.out << "deleted route " << id << '\n';
    return kExitOk;
  }

  int route_export(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("GET", "/v1/openapi.json");
    if (!answer.ok()) return fail(ctx, answer.status());
    print_json(ctx, *answer);
    return kExitOk;
  }

  int key_create_run(const Context& ctx) const {
    json body = {
        {"name", key_name}, {"rate", rate}, {"burst", burst}, {"daily_quota", daily_quota}};
    Result<json> answer =
        ctx.api.send_json("POST", "/v1/keys", body.dump(), {{"Content-Type", "application/json"}});
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
    } else {
      ctx.out << field_text(*answer, "key") << '\n';
      ctx.err << "API key " << field_text(*answer, "id") << " for '" << key_name
              << "': shown once, keep it now (send it as the x-api-key header)\n";
    }
    return kExitOk;
  }

  int key_ls_run(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("GET", "/v1/keys");
    if (!answer.ok()) return fail(ctx, answer.status());
    if (ctx.json) {
      print_json(ctx, *answer);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& k : answer->value("keys", json::array())) {
      json plan = k.value("usage_plan", json::object());
      rows.push_back(
          {field_text(k, "id"), field_text(k, "name"), field_text(k, "prefix") + "…",
           rate_text(plan),
           plan.value("daily_quota", 0) > 0 ? std::to_string(plan.value("daily_quota", 0)) : "-",
           k.value("revoked", false) ? "revoked" : "active"});
    }
    print_table(ctx.out, {"ID", "NAME", "KEY", "RATE", "DAILY QUOTA", "STATE"}, rows);
    return kExitOk;
  }

  int key_revoke_run(const Context& ctx) const {
    Result<json> answer = ctx.api.send_json("DELETE", "/v1/keys/" + percent_encode(id));
    if (!answer.ok()) return fail(ctx, answer.status());
    if (!ctx.json) ctx.out << "revoked API key " << id << '\n';
    return kExitOk;
  }
};

GatewayCommands::GatewayCommands(CLI::App& app) : impl_(std::make_unique<Impl>()) {
  Impl& i = *impl_;
  CLI::App* route = app.add_subcommand("route", "manage the API gateway's routes");
  route->require_subcommand(1);
  i.add = route->add_subcommand("add", "add a route: METHOD PATH TARGET (or $default TARGET)");
  i.add->add_option("METHOD", i.method, "GET, POST, ..., ANY, or $default")->required();
  i.add->add_option("PATH", i.path, "/items/{id}, /files/{proxy+} (omit for $default)");
  i.add->add_option("TARGET", i.target, "function, function:version or function:alias");
  i.add->add_flag("--async", i.async, "answer 202 with a request id and invoke in the background");
  i.add->add_option("--format", i.format, "payload format")->check(CLI::IsMember({"2.0", "1.0"}));
  i.add->add_option("--timeout-ms", i.timeout_ms, "integration timeout (default: the gateway's)");
  i.add->add_option("--auth", i.auth, "none, api_key or jwt")
      ->check(CLI::IsMember({"none", "api_key", "jwt"}));
  i.add->add_option("--jwt-issuer", i.issuer, "required iss");
  i.add->add_option("--jwt-audience", i.audience, "accepted aud (repeatable)");
  i.add->add_option("--scope", i.scopes, "the token must hold one of these scopes (repeatable)");
  i.add->add_option("--jwt-secret", i.secret, "HS256 secret");
  i.add->add_option("--jwt-public-key", i.public_key, "PEM file of the RS256/ES256 public key");
  i.add->add_option("--jwt-jwks", i.jwks_file, "JWKS file on the daemon's host");
  i.add->add_option("--rate", i.rate, "requests per second for the route (0 = no limit)");
  i.add->add_option("--burst", i.burst, "bucket size of the route's rate limit");
  i.ls = route->add_subcommand("ls", "list routes");
  i.rm = route->add_subcommand("rm", "delete a route by id or route key");
  i.rm->add_option("ID", i.id)->required();
  i.exp = route->add_subcommand("export", "print the OpenAPI 3 document of all routes");

  CLI::App* key = app.add_subcommand("key", "manage the API gateway's API keys");
  key->require_subcommand(1);
  i.key_create = key->add_subcommand("create", "create an API key (printed once)");
  i.key_create->add_option("NAME", i.key_name, "who the key is for")->required();
  i.key_create->add_option("--rate", i.rate, "requests per second (0 = no limit)");
  i.key_create->add_option("--burst", i.burst, "bucket size");
  i.key_create->add_option("--daily-quota", i.daily_quota, "requests per UTC day (0 = unlimited)");
  i.key_ls = key->add_subcommand("ls", "list API keys");
  i.key_revoke = key->add_subcommand("revoke", "revoke an API key by id");
  i.key_revoke->add_option("ID", i.id)->required();
}

GatewayCommands::~GatewayCommands() = default;

std::optional<int> GatewayCommands::run(const Context& ctx) const {
  const Impl& i = *impl_;
  if (i.add->parsed()) {
    // `route add $default fn`: the target lands in PATH.
    if (i.target.empty()) {
      if (i.method != "$default") {
        return fail(
            ctx,
            Status::Invalid("give METHOD PATH TARGET, e.g. `tamaya route add GET /items/{id} fn`"));
      }
      Impl copy = i;
      copy.target = i.path;
      copy.path.clear();
      return copy.route_add(ctx);
    }
    return i.route_add(ctx);
  }
  if (i.ls->parsed()) return i.route_ls(ctx);
  if (i.rm->parsed()) return i.route_rm(ctx);
  if (i.exp->parsed()) return i.route_export(ctx);
  if (i.key_create->parsed()) return i.key_create_run(ctx);
  if (i.key_ls->parsed()) return i.key_ls_run(ctx);
  if (i.key_revoke->parsed()) return i.key_revoke_run(ctx);
  return std::nullopt;
}

}  // namespace tamaya::cli
