#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "cli/admin_client.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/events_cli.h"
#include "cli/meter_cli.h"
#include "cli/route_cli.h"
#include "cli/schedule_cli.h"

#ifndef TAMAYA_VERSION
#error "TAMAYA_VERSION must be defined by the build"
#endif

namespace tamaya::cli {
namespace {

template <typename T>
std::optional<T> given(const CLI::Option* option, const T& value) {
  return option->count() > 0 ? std::optional<T>(value) : std::nullopt;
}

std::string default_endpoint() {
  const char* env = std::getenv("TAMAYA_ENDPOINT");
  return env && *env ? env : kDefaultEndpoint;
}

}  // namespace

int run(int argc, char** argv, const ServeFn& serve) {
  CLI::App app{"tamaya: a self-hosted serverless platform in one binary", "tamaya"};
  app.set_version_flag("--version", "tamaya " TAMAYA_VERSION);
  app.require_subcommand(1);
  // Global flags may follow the command: `tamaya ls --json`.
  app.fallthrough();
  app.failure_message([](const CLI::App* failed, const CLI::Error& e) {
    return "error: " + std::string(e.what()) + "\nrun `" + failed->get_display_name(true) +
           " --help` for usage\n";
  });

  std::string endpoint = default_endpoint();
  bool json_output = false;
  app.add_option("--endpoint", endpoint,
                 "admin API of the daemon (default: $TAMAYA_ENDPOINT, else " +
                     std::string(kDefaultEndpoint) + ")");
  app.add_flag("--json", json_output, "print the API's JSON instead of tables and text");

  // serve
  ServeOptions serve_options;
  std::vector<std::string> serve_sets;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run the tamaya daemon");
  serve_cmd->add_option("--config", serve_options.config_path, "settings file (JSON)");
  serve_cmd->add_option("--data-dir", serve_options.data_dir, "where state and code live");
  serve_cmd->add_option("--admin-host", serve_options.admin_host, "admin API listen address");
  serve_cmd->add_option("--admin-port", serve_options.admin_port, "admin API port")
      ->check(CLI::Range(1, 65535));
  serve_cmd->add_option("--set", serve_sets, "override one setting: --set key=value")
      ->allow_extra_args(false);

  // doctor: the host's isolation capabilities, through the same hook as serve
  // (this library links no sandbox code).
  ServeOptions doctor_options;
  doctor_options.doctor = true;
  CLI::App* doctor_cmd = app.add_subcommand(
      "doctor",
      "print which isolation layers this host gives instances (run as the daemon's user)");
  doctor_cmd->add_option("--config", doctor_options.config_path, "settings file (JSON)");
  doctor_cmd->add_option("--data-dir", doctor_options.data_dir, "where state and code live");

  // deploy
  DeployOptions deploy_options;
  std::string deploy_runtime, deploy_handler, deploy_description;
  int deploy_memory = 0, deploy_timeout = 0, deploy_concurrency = 0;
  std::vector<std::string> deploy_env;
  CLI::App* deploy_cmd = app.add_subcommand(
      "deploy", "create a function, or update its code (and any configuration given)");
  deploy_cmd->add_option("NAME", deploy_options.name, "function name")->required();
  deploy_cmd->add_option("PATH", deploy_options.path, "directory, file or .zip of the code")
      ->required();
  auto* runtime_opt = deploy_cmd->add_option("--runtime", deploy_runtime, "needed on create")
                          ->check(CLI::IsMember({"python3", "nodejs", "provided"}));
  auto* handler_opt = deploy_cmd->add_option("--handler", deploy_handler,
                                             "module.function (default on create: app.handler)");
  auto* memory_opt =
      deploy_cmd->add_option("--memory", deploy_memory, "memory in MB")->check(CLI::PositiveNumber);
  auto* timeout_opt = deploy_cmd->add_option("--timeout", deploy_timeout, "timeout in seconds")
                          ->check(CLI::PositiveNumber);
  auto* concurrency_opt =
      deploy_cmd
          ->add_option("--max-concurrency,--max-instances", deploy_concurrency, "instances at most")
          ->check(CLI::PositiveNumber);
  int deploy_min = 0, deploy_idle = 0;
  std::string deploy_reserved;
  auto* deploy_min_opt =
      deploy_cmd->add_option("--min-instances", deploy_min, "instances kept warm (provisioned)")
          ->check(CLI::NonNegativeNumber);
  auto* deploy_reserved_opt = deploy_cmd->add_option(
      "--reserved-concurrency", deploy_reserved, "share of concurrency_limit kept for it, or none");
  auto* deploy_idle_opt =
      deploy_cmd->add_option("--idle-timeout", deploy_idle, "seconds an instance may idle")
          ->check(CLI::PositiveNumber);
  auto* env_opt = deploy_cmd
                      ->add_option("--env", deploy_env,
                                   "environment variable K=V (repeatable; replaces the whole map)")
                      ->allow_extra_args(false);
  auto* description_opt = deploy_cmd->add_option("--description", deploy_description);

  // invoke
  InvokeOptions invoke_options;
  std::string invoke_data, invoke_file, invoke_qualifier;
  CLI::App* invoke_cmd = app.add_subcommand(
      "invoke", "call a function; the payload is --data, --file, or stdin when piped");
  invoke_cmd->add_option("NAME", invoke_options.name)->required();
  auto* data_opt = invoke_cmd->add_option("--data", invoke_data, "payload (JSON)");
  auto* file_opt = invoke_cmd->add_option("--file", invoke_file, "payload file, - for stdin")
                       ->excludes(data_opt);
  auto* invoke_qualifier_opt =
      invoke_cmd->add_option("--qualifier", invoke_qualifier, "version to call");
  invoke_cmd->add_flag("--log-tail", invoke_options.log_tail,
                       "print the end of the invocation's log to stderr");
  invoke_cmd->add_flag("--async", invoke_options.async,
                       "queue the invocation (durable) and print its request id");

  // ls, get, rm, publish, versions
  CLI::App* ls_cmd = app.add_subcommand("ls", "list functions");
  std::string name, qualifier, publish_description;
  CLI::App* get_cmd = app.add_subcommand("get", "show a function");
  get_cmd->add_option("NAME", name)->required();
  auto* get_qualifier_opt = get_cmd->add_option("--qualifier", qualifier, "version to show");
  CLI::App* rm_cmd = app.add_subcommand("rm", "delete a function and its versions");
  rm_cmd->add_option("NAME", name)->required();
  CLI::App* publish_cmd = app.add_subcommand("publish", "publish $LATEST as a new version");
  publish_cmd->add_option("NAME", name)->required();
  auto* publish_description_opt = publish_cmd->add_option("--description", publish_description);
  CLI::App* versions_cmd = app.add_subcommand("versions", "list a function's versions");
  versions_cmd->add_option("NAME", name)->required();

  // scale
  ScaleOptions scale_options;
  int scale_min = 0, scale_max = 0, scale_idle = 0;
  std::string scale_reserved;
  CLI::App* scale_cmd =
      app.add_subcommand("scale", "show or change a function's scaling (no new code or revision)");
  scale_cmd->add_option("NAME", scale_options.name)->required();
  auto* scale_min_opt =
      scale_cmd->add_option("--min-instances", scale_min, "instances kept warm (provisioned)")
          ->check(CLI::NonNegativeNumber);
  auto* scale_max_opt =
      scale_cmd->add_option("--max-instances,--max-concurrency", scale_max, "instances at most")
          ->check(CLI::PositiveNumber);
  auto* scale_reserved_opt = scale_cmd->add_option(
      "--reserved-concurrency", scale_reserved, "share of concurrency_limit kept for it, or none");
  auto* scale_idle_opt =
      scale_cmd->add_option("--idle-timeout", scale_idle, "seconds an instance may idle")
          ->check(CLI::PositiveNumber);

  // logs
  LogsOptions logs_options;
  std::string logs_request_id;
  int logs_limit = 0;
  CLI::App* logs_cmd = app.add_subcommand("logs", "print a function's logs");
  logs_cmd->add_option("NAME", logs_options.name)->required();
  logs_cmd->add_flag("-f,--follow", logs_options.follow, "keep printing new lines");
  auto* request_id_opt =
      logs_cmd->add_option("--request-id", logs_request_id, "only this invocation's lines");
  auto* limit_opt =
      logs_cmd->add_option("--limit", logs_limit, "at most N lines")->check(CLI::PositiveNumber);

  // route, key (the API gateway)
  GatewayCommands gateway_commands(app);
  // schedule (rate/cron invocations)
  ScheduleCommands schedule_commands(app);
  // invocations, usage (src/meter)
  MeterCommands meter_commands(app);
  // dlq, event-config (src/events)
  EventsCommands events_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" that exit 0.
    return app.exit(e, std::cout, std::cerr) == 0 ? kExitOk : kExitError;
  }

  if (doctor_cmd->parsed()) return serve(doctor_options);
  if (serve_cmd->parsed()) {
    Result<KeyValues> sets = parse_key_values(serve_sets, "--set");
    if (!sets.ok()) {
      std::cerr << "error: " << sets.status().message() << '\n';
      return kExitError;
    }
    serve_options.overrides = std::move(sets).value();
    return serve(serve_options);
  }

  Result<net::Url> url = net::parse_url(endpoint);
  if (!url.ok()) {
    std::cerr << "error: " << url.status().message() << '\n';
    return kExitError;
  }
  const Context ctx{AdminClient(*url), json_output, std::cout, std::cerr};
  if (std::optional<int> rc = gateway_commands.run(ctx)) return *rc;
  if (std::optional<int> rc = schedule_commands.run(ctx)) return *rc;
  if (std::optional<int> rc = meter_commands.run(ctx)) return *rc;
  if (std::optional<int> rc = events_commands.run(ctx)) return *rc;

  if (deploy_cmd->parsed()) {
    deploy_options.runtime = given(runtime_opt, deploy_runtime);
    deploy_options.handler = given(handler_opt, deploy_handler);
    deploy_options.memory_mb = given(memory_opt, deploy_memory);
    deploy_options.timeout_s = given(timeout_opt, deploy_timeout);
    deploy_options.max_concurrency = given(concurrency_opt, deploy_concurrency);
    deploy_options.description = given(description_opt, deploy_description);
    deploy_options.min_instances = given(deploy_min_opt, deploy_min);
    deploy_options.idle_timeout_s = given(deploy_idle_opt, deploy_idle);
    if (deploy_reserved_opt->count() > 0) {
      auto r = parse_reserved(deploy_reserved);
      if (!r.ok()) return fail(ctx, r.status());
      deploy_options.reserved_concurrency = *r;
    }
    if (env_opt->count() > 0) {
      Result<KeyValues> env = parse_key_values(deploy_env, "--env");
      if (!env.ok()) return fail(ctx, env.status());
      deploy_options.environment = std::move(env).value();
    }
    return deploy(ctx, deploy_options);
  }
  if (invoke_cmd->parsed()) {
    invoke_options.data = given(data_opt, invoke_data);
    invoke_options.file = given(file_opt, invoke_file);
    invoke_options.qualifier = given(invoke_qualifier_opt, invoke_qualifier);
    return invoke(ctx, invoke_options);
  }
  if (ls_cmd->parsed()) return list_functions(ctx);
  if (get_cmd->parsed()) return get_function(ctx, name, given(get_qualifier_opt, qualifier));
  if (rm_cmd->parsed()) return remove_function(ctx, name);
  if (publish_cmd->parsed()) {
    return publish(ctx, name, given(publish_description_opt, publish_description));
  }
  if (versions_cmd->parsed()) return list_versions(ctx, name);
  if (scale_cmd->parsed()) {
    scale_options.min_instances = given(scale_min_opt, scale_min);
    scale_options.max_instances = given(scale_max_opt, scale_max);
    scale_options.idle_timeout_s = given(scale_idle_opt, scale_idle);
    if (scale_reserved_opt->count() > 0) {
      auto r = parse_reserved(scale_reserved);
      if (!r.ok()) return fail(ctx, r.status());
      scale_options.reserved_concurrency = *r;
    }
    return scale(ctx, scale_options);
  }
  if (logs_cmd->parsed()) {
    logs_options.request_id = given(request_id_opt, logs_request_id);
    logs_options.limit = given(limit_opt, logs_limit);
    return logs(ctx, logs_options);
  }
  // require_subcommand(1) makes this unreachable; a bug if reached.
  std::cerr << "error: no command given; run `tamaya --help`\n";
  return kExitError;
}

}  // namespace tamaya::cli
