#include "daemon/serve.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <random>

#include "api/admin_api.h"
#include "api/events_api.h"
#include "api/lambda_api.h"
#include "api/lambda_sigv4.h"
#include "api/lambda_urls.h"
#include "api/meter_api.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/settings.h"
#include "daemon/metering.h"
#include "dispatch/dispatcher.h"
#include "dispatch/scaling.h"
#include "events/engine.h"
#include "events/schedule_api.h"
#include "events/scheduler.h"
#include "gateway/gateway.h"
#include "gateway/store.h"
#include "meter/logs.h"
#include "meter/metrics.h"
#include "net/event_loop.h"
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

Result<Settings> resolve_settings(const cli::ServeOptions& o) {
  std::string path = o.config_path;
  bool required = !path.empty();
  if (path.empty()) {
    // The settings file defaults to tamaya.json inside the data dir.
    std::string dir =
        o.data_dir.empty()
            ? (std::getenv("TAMAYA_DATA_DIR") ? std::getenv("TAMAYA_DATA_DIR") : ".tamaya")
            : o.data_dir;
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
  auto schedule_migrations = events::schedule_migrations();
  migrations.insert(migrations.end(), schedule_migrations.begin(), schedule_migrations.end());
  auto gateway_migrations = gateway::migrations();
  migrations.insert(migrations.end(), gateway_migrations.begin(), gateway_migrations.end());
  auto db = store::Database::open(db_path, migrations);
  if (!db.ok()) {
    spdlog::critical("cannot open database path={} error={}", db_path, db.status().message());
    return 1;
  }
  registry::ArtifactStore artifacts(
      settings.data_dir + "/artifacts",
      registry::ArtifactLimits{settings.artifact_max_zip_bytes,
                               settings.artifact_max_unpacked_bytes, settings.artifact_max_files});
  auto reg = registry::Registry::open(**db, artifacts, settings);
  if (!reg.ok()) {
    spdlog::critical("cannot load functions error={}", reg.status().message());
    return 1;
  }
  meter::StoreLimits store_limits;
  store_limits.max_events_per_function = settings.log_max_events_per_function;
  store_limits.record_max_age_ms = settings.invocation_max_age_s * 1000;
  store_limits.record_max_rows = settings.invocation_max_rows;
  auto logs = meter::LogStore::open(db_path, store_limits);
  if (!logs.ok()) {
    spdlog::critical("cannot open log store error={}", logs.status().message());
    return 1;
  }

  boost::asio::io_context io(1);
  SystemClock clock;
  sandbox::ZygoteOptions zygote_options;
  zygote_options.start_timeout_ms = settings.python_zygote_start_timeout_ms;
  zygote_options.idle_ms = settings.instance_idle_timeout_ms;
  zygote_options.prefork = settings.python_zygote_prefork;
  sandbox::NodePoolOptions node_pool;
  node_pool.size = settings.node_pool_size;
  node_pool.start_timeout_ms = settings.node_pool_start_timeout_ms;
  sandbox::LaunchTuning tuning;
  tuning.favor_dynmods = settings.sandbox_cgroup_favor_dynmods;
  tuning.ahead = settings.sandbox_cgroups_ahead;
  tuning.sandboxes_ahead = settings.sandbox_ready_ahead;
  tuning.cpu_policy = settings.instance_cpu_policy;
  auto sandbox = sandbox::Sandbox::open(settings.sandbox_isolation, settings.data_dir,
                                        settings.python_zygote, zygote_options, node_pool, tuning);
  if (!sandbox.ok()) {
    spdlog::critical("{}", sandbox.status().message());
    return 1;
  }
  spdlog::info("{}", (**sandbox).startup_line());
  if (std::string missing = (**sandbox).missing(); !missing.empty()) {
    spdlog::warn("sandbox layers off: {} (tamaya doctor shows the host's capabilities)", missing);
  }
  // Instances hold the daemon's fds (about 6 each), the gateway and admin
  // connections more: a default soft limit of 1,024 would stop starts early.
  if (auto fds = sandbox::raise_open_files_limit(int64_t{settings.concurrency_limit} * 8 + 1024);
      !fds.ok()) {
    spdlog::warn("{}", fds.status().message());
  }
  sandbox::Launcher& launcher = (**sandbox).launcher();
  meter::MetricsRegistry metrics;
  MeterObserver observer(**logs, metrics, clock);
  runtime::RuntimePaths paths{settings.python_path, settings.node_path, settings.runtimes_dir};
  dispatch::Dispatcher dispatcher(io, settings, paths, launcher, clock, &observer);
  // Scaling follows the registry: warm instances start now for every
  // function, and again whenever a function changes (the listener is set
  // below, once the gateway and the event queue exist).
  for (const auto& f : (**reg).list())
    dispatch::apply_scaling(dispatcher, **reg, artifacts, f.name);

  // Async invocations: the durable queue in a file of its own
  // (src/events/README.md says why). Each delivery resolves the qualifier
  // again, as Lambda does, and is capped by the function's concurrency.
  std::mt19937 event_rng(std::random_device{}());
  events::Resolver resolve_event = [&](const std::string& name,
                                       const std::string& qualifier) -> Result<events::Resolved> {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    TAMAYA_ASSIGN_OR_RETURN(registry::FunctionVersion f,
                            (**reg).resolve(name, qualifier, uniform(event_rng)));
    events::Resolved r;
    r.concurrency = f.config.max_concurrency;
    if (auto reserved = (**reg).reserved_concurrency(name);
        reserved.ok() && reserved->has_value()) {
      r.concurrency = std::min(r.concurrency, **reserved);
    }
    r.target.code_dir = artifacts.code_dir(f.code_sha256);
    r.target.function = std::move(f);
    return r;
  };
  auto async_events =
      events::Events::open(events::Services{io, dispatcher, resolve_event, settings, clock},
                           settings.data_dir + "/events.db");
  if (!async_events.ok()) {
    spdlog::critical("cannot open the event queue error={}", async_events.status().message());
    return 1;
  }
  events::Events& async_queue = **async_events;

  // Schedules fire into the same durable queue. Their clock is the system's
  // unless the test-only setting swaps in a manual one.
  std::unique_ptr<events::ManualWallClock> schedule_test_clock;
  if (settings.schedule_test_clock_ms > 0) {
    schedule_test_clock =
        std::make_unique<events::ManualWallClock>(settings.schedule_test_clock_ms);
    spdlog::warn(
        "schedules follow a TEST clock starting at {} (schedule_test_clock_ms); "
        "POST /v1/test/clock moves it",
        settings.schedule_test_clock_ms);
  }
  events::SchedulerOptions schedule_options;
  schedule_options.region = settings.region;
  schedule_options.max_schedules = settings.schedules_max;
  schedule_options.input_max_bytes = settings.schedule_input_max_bytes;
  schedule_options.history_max = settings.schedule_history_max;
  auto scheduler = events::Scheduler::open(
      io, **db,
      schedule_test_clock ? static_cast<const Clock&>(*schedule_test_clock)
                          : static_cast<const Clock&>(clock),
      schedule_test_clock.get(), schedule_options,
      [&async_queue](events::Fire f) {
        std::string name = f.schedule, id = f.event_id;
        async_queue.enqueue(
            events::EnqueueRequest{std::move(f.function), std::move(f.qualifier),
                                   std::move(f.payload), std::move(f.event_id), "", "schedule"},
            [name, id](const Result<std::string>& r) {
              if (!r.ok()) {
                spdlog::error("schedule fire not queued name={} event_id={} error={}", name, id,
                              r.status().message());
              }
            });
      },
      [&reg](const std::string& name, const std::string& qualifier) {
        return (**reg).get(name, qualifier).status();
      });
  if (!scheduler.ok()) {
    spdlog::critical("cannot load schedules error={}", scheduler.status().message());
    return 1;
  }

  gateway::Services gateway_services{io, **reg, artifacts, dispatcher, **db, settings, clock};
  gateway_services.enqueue_async = [&async_queue](gateway::AsyncEvent e,
                                                  std::function<void(Status)> done) {
    async_queue.enqueue(
        events::EnqueueRequest{std::move(e.function), std::move(e.qualifier), std::move(e.payload),
                               std::move(e.request_id), std::move(e.trace_id)},
        [done = std::move(done)](const Result<std::string>& id) {
          done(id.ok() ? Status::Ok() : id.status());
        });
  };
  // AWS_IAM function URLs: SigV4 checked against the Lambda API's keys.
  gateway_services.verify_iam = [keys = api::parse_keys(settings.lambda_api_keys)](
                                    const net::Request& r) -> Result<gateway::IamCaller> {
    if (!keys.ok()) return keys.status();
    if (keys->empty()) {
      return Status(Code::kPermissionDenied,
                    "AWS_IAM function URLs need lambda_api_keys (\"AKID:secret,...\") to check "
                    "signatures");
    }
    TAMAYA_RETURN_IF_ERROR(api::verify_sigv4(r, *keys));
    auto cred = api::parse_authorization(r.header("authorization").value_or(""));
    if (!cred) return Status(Code::kPermissionDenied, "no SigV4 Authorization header");
    return gateway::IamCaller{cred->access_key, api::account_for(cred->access_key)};
  };
  auto gw = gateway::Gateway::open(gateway_services);
  if (!gw.ok()) {
    spdlog::critical("cannot start the API gateway error={}", gw.status().message());
    return 1;
  }

  // Every registry change re-applies the function's scaling. Deferred, so
  // that a handler's own dispatcher.retire() of the old code comes first.
  // A deleted function also loses what other modules keep under its name,
  // as Lambda's DeleteFunction drops its URL configs and its
  // EventInvokeConfig (schedules stay, as EventBridge's do, and their fires
  // fail into the dead-letter table).
  (**reg).set_listener([&](const std::string& name) {
    boost::asio::post(io, [&, name] {
      dispatch::apply_scaling(dispatcher, **reg, artifacts, name);
      if ((**reg).get(name).status().code() != Code::kNotFound) return;
      for (const auto& [qualifier, url] : (**gw).list_function_urls(name)) {
        if (Status st = (**gw).delete_function_url(name, qualifier); !st.ok()) {
          spdlog::error("function URL of deleted function not removed function={} error={}", name,
                        st.message());
        }
      }
      async_queue.delete_config(name, [name](const Status& st) {
        if (!st.ok() && st.code() != Code::kNotFound) {
          spdlog::error("event invoke config of deleted function not removed function={} error={}",
                        name, st.message());
        }
      });
    });
  });

  net::Router router;
  api::Services api_services{**reg, artifacts, dispatcher, **logs, settings, clock};
  api_services.events = &async_queue;
  api::add_admin_routes(router, api_services);
  api::add_lambda_routes(router, api_services);
  api::add_events_routes(router, **reg, async_queue, settings);
  events::add_schedule_admin_routes(router, **scheduler);
  gateway::add_gateway_admin_routes(router, **gw);
  {
    gateway::Gateway& g = **gw;
    api::FunctionUrlHooks url_hooks;
    url_hooks.create = [&g](const auto& f, const auto& q, const auto& b) {
      return g.create_function_url(f, q, b);
    };
    url_hooks.update = [&g](const auto& f, const auto& q, const auto& b) {
      return g.update_function_url(f, q, b);
    };
    url_hooks.get = [&g](const auto& f, const auto& q) { return g.get_function_url(f, q); };
    url_hooks.remove = [&g](const auto& f, const auto& q) { return g.delete_function_url(f, q); };
    url_hooks.list = [&g](const auto& f) { return g.list_function_urls(f); };
    api::add_lambda_url_routes(
        router, api::Services{**reg, artifacts, dispatcher, **logs, settings, clock}, url_hooks);
  }
  api::add_meter_routes(router, api::MeterServices{io, **reg, **logs, metrics, settings, clock});
  add_dispatcher_collector(metrics, dispatcher, **reg);
  add_store_collector(metrics, **logs);
  if (const sandbox::NodePoolLauncher* pool = (**sandbox).node_pool()) {
    metrics.add_collector([pool](meter::Collection& c) {
      const auto n = pool->counters();
      c.gauge("tamaya_node_pool_ready", "Generic Node.js instances started and waiting", {},
              n.ready);
      c.counter("tamaya_node_pool_specialised_total",
                "Node.js instances that came from the pool of generic instances", {},
                double(n.specialised));
      c.counter("tamaya_node_pool_empty_total",
                "Node.js cold starts that found the pool empty and started directly", {},
                double(n.empty));
      c.counter("tamaya_node_pool_failures_total",
                "Generic Node.js instances that failed to start or to take their function", {},
                double(n.failures));
    });
  }
  if (const sandbox::ZygoteLauncher* zygotes = (**sandbox).zygotes()) {
    metrics.add_collector([zygotes](meter::Collection& c) {
      const auto n = zygotes->counters();
      c.counter("tamaya_python_zygote_forked_total",
                "Python instances forked from a function's zygote", {}, double(n.forked));
      c.counter("tamaya_python_zygote_offered_total",
                "Of those, instances handed to a child the zygote had ready ahead of need (the "
                "rest were forked on demand)",
                {}, double(n.offered));
      c.counter("tamaya_python_zygote_fallbacks_total",
                "Python instances started directly because their zygote failed or is gone", {},
                double(n.fallbacks));
    });
  }
  metrics.add_collector([sb = &**sandbox](meter::Collection& c) {
    const auto n = sb->ready_sandboxes();
    c.gauge("tamaya_ready_sandboxes", "Sandboxes made ahead of need and waiting for an instance",
            {}, n.ready);
    c.counter("tamaya_ready_sandboxes_served_total",
              "Direct starts that came from a sandbox made ahead", {}, double(n.served));
    c.counter("tamaya_ready_sandboxes_empty_total",
              "Direct starts that fitted but found no sandbox ready and made their own", {},
              double(n.empty));
    c.counter("tamaya_ready_sandboxes_failures_total",
              "Sandboxes made ahead that died before they were used", {}, double(n.failures));
  });
  add_async_queue_collector(metrics, [&async_queue] {
    events::Stats e = async_queue.stats();
    return AsyncQueueFigures{e.queue_depth, double(e.oldest_age_ms) / 1000.0, e.dead_letters};
  });
  (**gw).set_request_observer(gateway_request_counter(metrics));
  net::ServerLimits limits;
  limits.max_body_bytes = settings.admin_max_body_bytes;
  limits.max_header_bytes = settings.max_header_bytes;
  limits.header_timeout = std::chrono::milliseconds(settings.http_header_timeout_ms);
  limits.idle_timeout = std::chrono::milliseconds(settings.http_idle_timeout_ms);
  limits.refused_reads_per_s = settings.http_refused_reads_per_s;
  net::HttpServer admin(io, limits, [&router](net::Request r, net::Responder respond) {
    router.dispatch(std::move(r), std::move(respond));
  });
  if (Status s = admin.listen(settings.admin_host, uint16_t(settings.admin_port)); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }

  net::HttpServer public_gateway(io, gateway::server_limits(settings),
                                 [&g = **gw](const net::Request& r, net::Responder respond) {
                                   g.handle(r, std::move(respond));
                                 });
  if (Status s = public_gateway.listen(settings.gateway_host, uint16_t(settings.gateway_port));
      !s.ok()) {
    spdlog::critical("API gateway: {}; set gateway_port (0 picks a free port)", s.message());
    return 1;
  }
  (**gw).set_public_port(public_gateway.port());

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
    // Deliveries stop starting; those running finish within the drain and
    // everything not delivered stays in the queue file for the next start.
    (**scheduler).stop();
    async_queue.stop();
    dispatcher.drain([&] {
      async_queue.flush();
      (**logs).flush();
      (**gw).flush();
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
            << "  gateway:    http://" << settings.gateway_host << ":" << public_gateway.port()
            << "\n"
            << "  data dir:   " << settings.data_dir << "\n"
            << std::flush;
  (**scheduler).start();
  net::run_event_loop(io,
                      {.idle_poll = std::chrono::microseconds(settings.event_loop_idle_poll_us),
                       .busy_yield = std::chrono::microseconds(settings.event_loop_busy_yield_us)});
  spdlog::info("stopped cleanly");
  return stopping ? 0 : 1;
}

}  // namespace tamaya::daemon
