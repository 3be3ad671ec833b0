#include "runtime/launch.h"

#include <unistd.h>

namespace tamaya::runtime {

bool is_known_runtime(const std::string& runtime) {
  return runtime == "python3" || runtime == "nodejs" || runtime == "provided";
}

Result<sandbox::LaunchSpec> make_launch_spec(const InstanceSpec& spec, const RuntimePaths& paths) {
  sandbox::LaunchSpec out;
  // Paths as the instance sees them.
  const bool inside = spec.isolated && spec.own_root;
  const std::string task_root = inside ? sandbox::kTaskRoot : spec.code_dir;
  const std::string runtimes = inside ? sandbox::kRuntimesRoot : paths.runtimes_dir;
  out.cwd = task_root;
  if (spec.isolated) {
    sandbox::Isolation& iso = out.isolation;
    iso.enabled = true;
    iso.code_dir = spec.code_dir;
    // A `provided` function brings its own runtime: no runtime clients to
    // mount (one detached mount fewer per cold start).
    if (spec.runtime != "provided") iso.runtimes_dir = paths.runtimes_dir;
    iso.memory_bytes = int64_t(spec.memory_mb) << 20;
    iso.cpu_shares = sandbox::cpu_shares_for_memory(spec.memory_mb);
    iso.tmp_bytes = int64_t(spec.tmp_mb) << 20;
    iso.network = spec.network_none ? sandbox::Network::kNone : sandbox::Network::kHost;
  }
  if (spec.runtime == "python3") {
    // -I: ignore PYTHON* variables and the user site dir, so the host's
    // environment cannot change how a function starts.
    out.argv = {paths.python, "-I", runtimes + "/python/bootstrap.py"};
    // The same interpreter and flags, but forking instances (sandbox/zygote.h).
    // With the handler, the zygote compiles its module ahead (one zygote per
    // code and handler: both are in the zygote's key).
    out.zygote_argv = {paths.python, "-I", runtimes + "/python/zygote.py",
                       "--handler=" + spec.handler, "--task-root=" + task_root};
  } else if (spec.runtime == "nodejs") {
    out.argv = {paths.node, runtimes + "/node/bootstrap.js"};
    // The same node, pre-started and specialised on demand (sandbox/node_pool.h).
    out.generic_argv = {paths.node, runtimes + "/node/generic.js"};
  } else if (spec.runtime == "provided") {
    if (access((spec.code_dir + "/bootstrap").c_str(), X_OK) != 0) {
      return Status::Invalid(
          "Runtime.InvalidEntrypoint: the code has no executable 'bootstrap' file at its root; "
          "a 'provided' function must ship one (chmod +x bootstrap)");
    }
    out.argv = {task_root + "/bootstrap"};
  } else {
    return Status::Invalid("unknown runtime '" + spec.runtime + "'");
  }

  // The function's own variables first; Lambda's reserved ones override them.
  std::map<std::string, std::string> env = spec.environment;
  env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
  env["LANG"] = "C.UTF-8";
  env["TZ"] = ":UTC";
  env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:" + std::to_string(spec.runtime_api_port);
  env["_HANDLER"] = spec.handler;
  env["LAMBDA_TASK_ROOT"] = task_root;
  env["LAMBDA_RUNTIME_DIR"] = runtimes;
  env["AWS_LAMBDA_FUNCTION_NAME"] = spec.function_name;
  env["AWS_LAMBDA_FUNCTION_VERSION"] = spec.version;
  env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = std::to_string(spec.memory_mb);
  env["AWS_LAMBDA_LOG_GROUP_NAME"] = "/aws/lambda/" + spec.function_name;
  env["AWS_LAMBDA_LOG_STREAM_NAME"] = spec.log_stream;
  env["AWS_REGION"] = spec.region;
  env["AWS_DEFAULT_REGION"] = spec.region;
  env["AWS_EXECUTION_ENV"] = "AWS_Lambda_" + spec.runtime;
  env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "on-demand";
  if (spec.runtime == "nodejs") env["NODE_PATH"] = task_root + "/node_modules";
  for (auto& [k, v] : env) out.env.push_back(std::string(k).append("=").append(v));
  return out;
}

}  // namespace tamaya::runtime
