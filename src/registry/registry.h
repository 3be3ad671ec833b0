// Functions, their immutable published versions, and their code artifacts.
// Single-threaded: the daemon calls it from its event loop only. Reads are
// served from an in-memory cache loaded at open, so the invoke path never
// waits for SQLite; writes go through to SQLite before they return.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/settings.h"
#include "common/status.h"
#include "registry/artifacts.h"

namespace tamaya::store {
class Database;
}

namespace tamaya::registry {

inline constexpr const char* kLatest = "$LATEST";

// Lambda's limits where a setting would add nothing.
inline constexpr int64_t kMaxEnvironmentBytes = 4096;  // sum of key and value bytes
inline constexpr size_t kMaxDescriptionChars = 256;
inline constexpr size_t kMaxHandlerChars = 128;
inline constexpr int kMaxConcurrencyLimit = 1000;  // per function, beyond which a host thrashes
inline constexpr int kMaxIdleTimeoutS = 86'400;

struct FunctionConfig {
  std::string runtime;  // python3 | nodejs | provided
  std::string handler;  // "module.function" (python3, nodejs); optional for provided
  int memory_mb = 128;
  int timeout_s = 3;
  int max_concurrency = 10;
  std::map<std::string, std::string> environment;
  std::string description;
  // Lambda API only: the runtime identifier as the caller named it
  // (python3.12, provided.al2023) and the execution role, both echoed back.
  // Empty when the function came through the native API.
  std::string runtime_id;
  std::string role;
  // Isolation (src/sandbox): "host" (Lambda's default) or "none" (an empty
  // network namespace), and the size of the instance's private /tmp.
  std::string network = "host";
  int tmp_mb = 512;
};

// A partial update: only the fields that are set change.
struct ConfigPatch {
  std::optional<std::string> runtime;
  std::optional<std::string> handler;
  std::optional<int> memory_mb;
  std::optional<int> timeout_s;
  std::optional<int> max_concurrency;
  std::optional<std::map<std::string, std::string>> environment;
  std::optional<std::string> description;
  std::optional<std::string> runtime_id;
  std::optional<std::string> role;
  std::optional<std::string> network;
  std::optional<int> tmp_mb;
};

// A named pointer to one published version (or $LATEST), optionally sending a
// share of invocations to one other version (Lambda's weighted alias).
struct Alias {
  std::string function;
  std::string name;
  std::string version;
  std::string description;
  std::string extra_version;  // "" when the alias routes to `version` only
  double extra_weight = 0;    // 0..1, the share of invocations that go to extra_version
  std::string revision_id;    // changes on every write
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct AliasPatch {
  std::optional<std::string> version;
  std::optional<std::string> description;
  // Set with an empty extra_version to remove the routing.
  std::optional<std::pair<std::string, double>> routing;
};

struct FunctionVersion {
  std::string name;
  std::string version;  // "$LATEST" or "1", "2", ...
  FunctionConfig config;
  std::string code_sha256;
  int64_t code_size = 0;
  std::string revision_id;  // changes on every write of $LATEST
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// How a function scales, per function and not versioned (like Lambda's
// reserved and provisioned concurrency); max_concurrency is in its config.
struct Scaling {
  // Lambda's reserved concurrency: a guarantee and a cap, drawn from the
  // concurrency_limit setting. nullopt: the function shares the unreserved rest.
  std::optional<int> reserved_concurrency;
  // How long an on-demand instance may idle; nullopt: instance_idle_timeout_ms.
  std::optional<int> idle_timeout_s;
  // Provisioned concurrency (min_instances): instances kept warm per
  // qualifier ($LATEST, a version or an alias's primary version).
  std::map<std::string, int> provisioned;
};

class Registry {
 public:
  // Loads every function and version into memory.
  static Result<std::unique_ptr<Registry>> open(store::Database& db, ArtifactStore& artifacts,
                                                const Settings& settings);

  // Fills defaults from settings and checks every field: name pattern
  // [A-Za-z0-9_-]{1,64}, runtime known, handler present where needed, memory
  // 128..max_memory_mb, timeout 1..max_timeout_s, concurrency >= 1, env keys.
  Status validate(const std::string& name, const FunctionConfig& config) const;
  FunctionConfig defaults() const;

  // The artifact must already be in the ArtifactStore.
  Result<FunctionVersion> create(const std::string& name, FunctionConfig config,
                                 const Artifact& code);
  Result<FunctionVersion> update_code(const std::string& name, const Artifact& code);
  Result<FunctionVersion> update_config(const std::string& name, const ConfigPatch& patch);
  // Removes the function and all its versions.
  Status remove(const std::string& name);
  // Snapshots $LATEST as the next version number; returns the existing
  // latest version instead when nothing changed since it was published (code
  // and config other than description). `created`, when given, tells which.
  // The version's description is `description`, or $LATEST's when empty.
  Result<FunctionVersion> publish(const std::string& name, const std::string& description,
                                  bool* created = nullptr);

  // Deletes one published version; refused while an alias routes to it.
  Status remove_version(const std::string& name, const std::string& version);

  // qualifier: "" or "$LATEST" or a version number or an alias (its primary
  // version).
  Result<FunctionVersion> get(const std::string& name, const std::string& qualifier = "") const;
  // As get(), but an alias with routing picks its extra version when
  // `uniform` (in [0,1)) falls under the extra version's weight.
  Result<FunctionVersion> resolve(const std::string& name, const std::string& qualifier,
                                  double uniform) const;
  std::vector<FunctionVersion> list() const;  // $LATEST of each, by name
  // $LATEST first, then published versions in ascending order.
  Result<std::vector<FunctionVersion>> versions(const std::string& name) const;

  // Aliases: name 1..128 of [A-Za-z0-9_-], not all digits. The version must
  // exist; routing needs a published primary version and an extra version
  // other than it. expected_revision, when not empty, must equal the alias's.
  Result<Alias> create_alias(const std::string& function, const std::string& alias,
                             const AliasPatch& fields);
  Result<Alias> update_alias(const std::string& function, const std::string& alias,
                             const AliasPatch& patch, const std::string& expected_revision);
  Status remove_alias(const std::string& function, const std::string& alias);
  Result<Alias> get_alias(const std::string& function, const std::string& alias) const;
  Result<std::vector<Alias>> aliases(const std::string& function) const;  // by name

  // Reserved concurrency (per function, across its versions; not versioned):
  // nullopt when none is set; 0 means every invocation is refused.
  Status set_reserved_concurrency(const std::string& name, std::optional<int> reserved);
  Result<std::optional<int>> reserved_concurrency(const std::string& name) const;

  // Scaling: reserved concurrency as above (refused when the reservations
  // would leave less than concurrency_unreserved_min of concurrency_limit),
  // the idle timeout, and provisioned concurrency per qualifier (0 removes;
  // at most the version's max_concurrency and the reservation, or what the
  // unreserved pool can spare). Deleting a version or alias drops its
  // provisioned concurrency.
  Result<Scaling> scaling(const std::string& name) const;
  Status set_idle_timeout(const std::string& name, std::optional<int> seconds);
  Status set_provisioned(const std::string& name, const std::string& qualifier, int instances);

  // Called after every change to a function's code, config, aliases or
  // scaling (and its removal), with its name: the daemon re-applies the
  // function's scaling to the dispatcher.
  void set_listener(std::function<void(const std::string& name)> listener);

 private:
  struct Impl;
  explicit Registry(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;

 public:
  ~Registry();
};

}  // namespace tamaya::registry
