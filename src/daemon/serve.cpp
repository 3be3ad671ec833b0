#include "daemon/serve.h"

#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>

#include "api/admin_api.h"
#include "api/lambda_api.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/settings.h"
#include "dispatch/dispatcher.h"
#include "gateway/gateway.h"
#include "gateway/store.h"
#include "meter/logs.h"
#include "net/http.h"
#include "net/router.h"
#include "registry/artifacts.h"
#include "registry/registry.h"
#include "registry/schema.h"
#include "sandbox/launcher.h"
#include "sandbox/setup.h"
#include "store/database.h"

namespace tamaya::daemon {

namespace {

// Hands each invocation's framed log to the log store, which writes it on
// its own thread.
class LogObserver final : public dispatch::Observer {
 public:
  explicit LogObserver(meter::LogStore& logs) : logs_(logs) {}
  void on_invocation(const std::string& function, const dispatch::InvokeResult& result,
                     std::vector<dispatch::LogLine> log) override {
    std::vector<meter::LogEvent> events;
    events.reserve(log.size());
    for (auto& line : log) {
      meter::LogEvent e;
      e.time_ms = line.time_ms;
      e.function = function;
      e.request_id = result.request_id;
      e.message = std::move(line.text);
      events.push_back(std::move(e));
    }
    logs_.append(std::move(events));
  }

 private:
  meter::LogStore& logs_;
};

Result<Settings> resolve_settings(const cli::ServeOptions& o) {
  std::string path = o.config_path;
  bool required = !path.empty();
  if (path.empty()) {
    // The settings file defaults to tamaya.json inside the data dir.
    std::string dir = o.data_dir.empty() ? (std::getenv("TAMAYA_DATA_DIR") ? std::getenv("TAMAYA_DATA_DIR") : ".tamaya") : o.data_dir;
    path = dir + "/tamaya.json";
  }
  TAMAYA_ASSIGN_OR_RETURN(Settings s, load_settings(path, required));
  if (!o.data_dir.empty()) s.data_dir = o.data_dir;
  if (!o.admin_host.empty()) s.admin_host = o.admin_host;
  if (o.admin_port != 0) s.admin_port = o.admin_port;
  for (const auto& [k, v] : o.overrides) TAMAYA_RETURN_IF_ERROR(s.set(k, v).with_context("--set"));
  return s;
}

}  // namespace

int serve(const cli::ServeOptions& options) {
  auto settings_or = resolve_settings(options);
  if (!settings_or.ok()) {
    std::cerr << "error: " << settings_or.status().message() << "\n";
    return 2;
  }
  const Settings settings = std::move(settings_or).value();
  init_logging(settings.log_level);
  if (options.doctor) {
    auto report = sandbox::doctor(settings.sandbox_isolation, settings.data_dir);
    if (!report.ok()) {
      std::cerr << "error: " << report.status().message() << "\n";
      return 2;
    }
    std::cout << *report;
    return 0;
  }

  std::error_code ec;
  std::filesystem::create_directories(settings.data_dir, ec);
  if (ec) {
    spdlog::critical("cannot create data dir path={} error={}", settings.data_dir, ec.message());
    return 1;
  }
  std::string db_path = settings.data_dir + "/tamaya.db";
  auto migrations = registry::migrations();
  auto meter_migrations = meter::migrations();
  migrations.insert(migrations.end(), meter_migrations.begin(), meter_migrations.end());
  auto gateway_migrations = gateway::migrations();
  migrations.insert(migrations.end(), gateway_migrations.begin(), gateway_migrations.end());
  auto db = store::Database::open(db_path, migrations);
  if (!db.ok()) {
    spdlog::critical("cannot open database path={} error={}", db_path, db.status().message());
    return 1;
  }
  registry::ArtifactStore artifacts(
      settings.data_dir + "/artifacts",
      registry::ArtifactLimits{settings.artifact_max_zip_bytes, settings.artifact_max_unpacked_bytes,
                               settings.artifact_max_files});
  auto reg = registry::Registry::open(**db, artifacts, settings);
  if (!reg.ok()) {
    spdlog::critical("cannot load functions error={}", reg.status().message());
    return 1;
  }
  auto logs = meter::LogStore::open(db_path, 10'000);
  if (!logs.ok()) {
    spdlog::critical("cannot open log store error={}", logs.status().message());
    return 1;
  }

  boost::asio::io_context io(1);
  SystemClock clock;
  auto sandbox = sandbox::Sandbox::open(settings.sandbox_isolation, settings.data_dir);
  if (!sandbox.ok()) {
    spdlog::critical("{}", sandbox.status().message());
    return 1;
  }
  spdlog::info("{}", (**sandbox).startup_line());
  if (std::string missing = (**sandbox).missing(); !missing.empty()) {
    spdlog::warn("sandbox layers off: {} (tamaya doctor shows the host's capabilities)", missing);
  }
  sandbox::Launcher& launcher = (**sandbox).launcher();
  LogObserver observer(**logs);
  runtime::RuntimePaths paths{settings.python_path, settings.node_path, settings.runtimes_dir};
  dispatch::Dispatcher dispatcher(io, settings, paths, launcher, clock, &observer);

  auto gw = gateway::Gateway::open(
      gateway::Services{io, **reg, artifacts, dispatcher, **db, settings, clock});
  if (!gw.ok()) {
    spdlog::critical("cannot start the API gateway error={}", gw.status().message());
    return 1;
  }

  net::Router router;
  api::add_admin_routes(router, api::Services{**reg, artifacts, dispatcher, **logs, settings, clock});
  api::add_lambda_routes(router, api::Services{**reg, artifacts, dispatcher, **logs, settings, clock});
  gateway::add_gateway_admin_routes(router, **gw);
  net::ServerLimits limits;
  limits.max_body_bytes = settings.admin_max_body_bytes;
  limits.max_header_bytes = settings.max_header_bytes;
  limits.header_timeout = std::chrono::milliseconds(settings.http_header_timeout_ms);
  limits.idle_timeout = std::chrono::milliseconds(settings.http_idle_timeout_ms);
  net::HttpServer admin(io, limits, [&router](net::Request r, net::Responder respond) {
    router.dispatch(std::move(r), std::move(respond));
  });
  if (Status s = admin.listen(settings.admin_host, uint16_t(settings.admin_port)); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }

  net::HttpServer public_gateway(io, gateway::server_limits(settings),
                                 [&g = **gw](net::Request r, net::Responder respond) {
                                   g.handle(std::move(r), std::move(respond));
                                 });
  if (Status s = public_gateway.listen(settings.gateway_host, uint16_t(settings.gateway_port)); !s.ok()) {
    spdlog::critical("API gateway: {}; set gateway_port (0 picks a free port)", s.message());
    return 1;
  }

  // Instances are killed by PR_SET_PDEATHSIG if we die; a closed pipe to a
  // client must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  bool stopping = false;
  signals.async_wait([&](const boost::system::error_code& e, int sig) {
    if (e) return;
    stopping = true;
    spdlog::info("draining signal={} deadline_ms={}", sig, settings.drain_timeout_ms);
    admin.stop_accepting();
    public_gateway.stop_accepting();
    dispatcher.drain([&] {
      (**logs).flush();
      admin.close_all();
      public_gateway.close_all();
      io.stop();
    });
  });

  std::string endpoint = fmt::format("http://{}:{}", settings.admin_host, admin.port());
  spdlog::info("tamaya serving admin={} data_dir={} functions={} pid={}", endpoint,
               settings.data_dir, (**reg).list().size(), getpid());
  spdlog::info("gateway serving address={}:{} routes={}", settings.gateway_host,
               public_gateway.port(), (**gw).routes().size());
  std::cout << "tamaya is serving\n"
            << "  admin API:  " << endpoint << "/v1/functions\n"
            << "  gateway:    http://" << settings.gateway_host << ":" << public_gateway.port() << "\n"
            << "  data dir:   " << settings.data_dir << "\n"
            << std::flush;
  io.run();
  spdlog::info("stopped cleanly");
  return stopping ? 0 : 1;
}

}  // namespace tamaya::daemon
