#include "dispatch/scaling.h"

#include "common/log.h"

namespace tamaya::dispatch {

void apply_scaling(Dispatcher& dispatcher, const registry::Registry& registry,
                   registry::ArtifactStore& artifacts, const std::string& function) {
  auto scaling = registry.scaling(function);
  if (!scaling.ok()) {
    dispatcher.configure(function, FunctionScaling{});
    return;
  }
  FunctionScaling s;
  s.reserved = scaling->reserved_concurrency;
  if (scaling->idle_timeout_s) s.idle_timeout_ms = *scaling->idle_timeout_s * 1000;
  for (const auto& [qualifier, instances] : scaling->provisioned) {
    auto version = registry.get(function, qualifier);
    if (!version.ok()) {
      spdlog::warn("provisioned concurrency skipped function={} qualifier={} error={}", function,
                   qualifier, version.status().message());
      continue;
    }
    Provisioned p;
    p.qualifier = qualifier;
    p.target.code_dir = artifacts.code_dir(version->code_sha256);
    p.target.function = std::move(*version);
    p.instances = instances;
    s.provisioned.push_back(std::move(p));
  }
  dispatcher.configure(function, s);
}

}  // namespace tamaya::dispatch
