#include "registry/registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>
#include <tuple>
#include <utility>

#include "common/clock.h"
#include "common/encoding.h"
#include "store/database.h"

namespace tamaya::registry {

namespace {

// A patch's field replaces the current value only when the patch has it.
template <typename T>
void take(T& field, const std::optional<T>& patched) {
  if (patched) field = *patched;
}

constexpr std::array<std::string_view, 3> kRuntimes = {"python3", "nodejs", "provided"};

// Set by Lambda (or by tamaya's runtime in the sandbox); a user value would
// be silently overridden or would break the runtime, so it is refused.
constexpr std::array<std::string_view, 18> kReservedEnv = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
};

std::string runtimes_list() {
  std::string out;
  for (std::string_view r : kRuntimes) {
    if (!out.empty()) {
      out += ", ";
    }
    out += r;
  }
  return out;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  return std::all_of(name.begin(), name.end(),
                     [](unsigned char c) { return std::isalnum(c) != 0 || c == '-' || c == '_'; });
}

bool ascii_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool ascii_digit(char c) { return c >= '0' && c <= '9'; }

bool valid_env_key(const std::string& key) {
  if (key.empty() || !(ascii_alpha(key[0]) || key[0] == '_')) {
    return false;
  }
  return std::all_of(key.begin(), key.end(),
                     [](char c) { return ascii_alpha(c) || ascii_digit(c) || c == '_'; });
}

// module.function: the function is an identifier after the last '.'; the
// module may sit in subdirectories ("src/app") and, for python, be a dotted
// package path. No component may climb out of the task root.
bool valid_module_handler(const std::string& handler) {
  size_t dot = handler.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == handler.size()) {
    return false;
  }
  std::string_view module(handler.data(), dot);
  std::string_view function(handler.data() + dot + 1, handler.size() - dot - 1);
  auto ident_char = [](char c) { return ascii_alpha(c) || ascii_digit(c) || c == '_' || c == '$'; };
  if (ascii_digit(function[0]) || !std::all_of(function.begin(), function.end(), ident_char)) {
    return false;
  }
  size_t start = 0;
  while (start <= module.size()) {
    size_t end = module.find('/', start);
    if (end == std::string_view::npos) {
      end = module.size();
    }
    std::string_view part = module.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return false;
    }
    for (char c : part) {
      if (!(ascii_alpha(c) || ascii_digit(c) || c == '_' || c == '-' || c == '.')) {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

bool same_code_and_config(const FunctionVersion& a, const FunctionVersion& b) {
  const FunctionConfig& x = a.config;
  const FunctionConfig& y = b.config;
  return a.code_sha256 == b.code_sha256 && x.runtime == y.runtime && x.handler == y.handler &&
         x.memory_mb == y.memory_mb && x.timeout_s == y.timeout_s &&
         x.max_concurrency == y.max_concurrency && x.environment == y.environment &&
         x.runtime_id == y.runtime_id && x.role == y.role && x.network == y.network &&
         x.tmp_mb == y.tmp_mb;
}

std::string env_to_json(const std::map<std::string, std::string>& env) {
  return nlohmann::json(env).dump();
}

Result<std::map<std::string, std::string>> env_from_json(const std::string& text,
                                                         const std::string& name) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return Status::Internal("stored environment of function '" + name +
                            "' is not a JSON object; the database is damaged");
  }
  std::map<std::string, std::string> env;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) {
      return Status::Internal("stored environment of function '" + name +
                              "' has a non-string "
                              "value for '" +
                              it.key() + "'; the database is damaged");
    }
    env[it.key()] = it.value().get<std::string>();
  }
  return env;
}

// Column order shared by both tables, starting at `first`.
void bind_config(store::Statement& st, int first, const FunctionVersion& v) {
  st.bind(first, v.config.runtime)
      .bind(first + 1, v.config.handler)
      .bind(first + 2, int64_t{v.config.memory_mb})
      .bind(first + 3, int64_t{v.config.timeout_s})
      .bind(first + 4, int64_t{v.config.max_concurrency})
      .bind(first + 5, env_to_json(v.config.environment))
      .bind(first + 6, v.config.description)
      .bind(first + 7, v.code_sha256)
      .bind(first + 8, v.code_size)
      .bind(first + 9, v.revision_id)
      .bind(first + 10, v.config.runtime_id)
      .bind(first + 11, v.config.role)
      .bind(first + 12, v.config.network)
      .bind(first + 13, int64_t{v.config.tmp_mb});
}

Status read_config(const store::Statement& st, int first, FunctionVersion& v) {
  v.config.runtime = st.column_text(first);
  v.config.handler = st.column_text(first + 1);
  v.config.memory_mb = static_cast<int>(st.column_int(first + 2));
  v.config.timeout_s = static_cast<int>(st.column_int(first + 3));
  v.config.max_concurrency = static_cast<int>(st.column_int(first + 4));
  TAMAYA_ASSIGN_OR_RETURN(v.config.environment, env_from_json(st.column_text(first + 5), v.name));
  v.config.description = st.column_text(first + 6);
  v.code_sha256 = st.column_text(first + 7);
  v.code_size = st.column_int(first + 8);
  v.revision_id = st.column_text(first + 9);
  v.config.runtime_id = st.column_text(first + 10);
  v.config.role = st.column_text(first + 11);
  v.config.network = st.column_text(first + 12);
  v.config.tmp_mb = static_cast<int>(st.column_int(first + 13));
  return Status::Ok();
}

constexpr const char* kConfigColumns =
    "runtime, handler, memory_mb, timeout_s, max_concurrency, environment, description, "
    "code_sha256, code_size, revision_id, runtime_id, role, network, tmp_mb";
// How many columns kConfigColumns names: the columns after them are bound and
// read from kConfigColumnCount + 1 (binds) or + 0 (reads after a leading name).
constexpr int kConfigColumnCount = 14;

std::string placeholders(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += i == 0 ? "?" : ", ?";
  return out;
}

}  // namespace

struct Registry::Impl {
  struct Entry {
    FunctionVersion latest;
    int64_t next_version = 1;
    std::map<int64_t, FunctionVersion> versions;
    std::optional<int> reserved_concurrency;
    std::map<std::string, Alias> aliases;
    std::optional<int> idle_timeout_s;
    std::map<std::string, int> provisioned;  // qualifier -> instances kept warm
  };

  Impl(store::Database& d, ArtifactStore& a, const Settings& s)
      : db(d), artifacts(a), settings(s) {}

  store::Database& db;
  ArtifactStore& artifacts;
  Settings settings;
  SystemClock clock;
  std::map<std::string, Entry> functions;
  std::function<void(const std::string&)> listener;

  // Tells the listener (the dispatcher's scaling) that a function's code,
  // config or scaling changed.
  void changed(const std::string& name) {
    if (listener) listener(name);
  }
  int provisioned_sum(const Entry& e) const {
    int n = 0;
    for (const auto& [q, count] : e.provisioned) n += count;
    return n;
  }

  Status load();
  Status load_scaling();
  Status write_provisioned(const std::string& name, const std::string& qualifier, int instances);
  // One nullable integer column of a function's row (NULL: use the default).
  Status write_optional(const char* update_sql, const std::string& name, std::optional<int> value);
  Status load_lambda_state();
  Status write_alias(const Alias& a, bool insert);
  Status check_alias_fields(const Entry& entry, const Alias& a) const;
  Status write_latest(const FunctionVersion& v, int64_t next_version, bool insert);
  Result<Entry*> find(const std::string& name);
  Status check_artifact(const Artifact& code) const;
};

Status Registry::Impl::load() {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement fns,
                          db.prepare(std::string("SELECT name, ") + kConfigColumns +
                                     ", created_ms, updated_ms, next_version FROM functions"));
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, fns.step());
    if (!row) {
      break;
    }
    Entry e;
    e.latest.name = fns.column_text(0);
    e.latest.version = kLatest;
    TAMAYA_RETURN_IF_ERROR(read_config(fns, 1, e.latest));
    e.latest.created_ms = fns.column_int(kConfigColumnCount + 1);
    e.latest.updated_ms = fns.column_int(kConfigColumnCount + 2);
    e.next_version = fns.column_int(kConfigColumnCount + 3);
    functions.emplace(e.latest.name, std::move(e));
  }

  TAMAYA_ASSIGN_OR_RETURN(store::Statement vs,
                          db.prepare(std::string("SELECT name, version, ") + kConfigColumns +
                                     ", created_ms FROM function_versions"));
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, vs.step());
    if (!row) {
      break;
    }
    FunctionVersion v;
    v.name = vs.column_text(0);
    const int64_t number = vs.column_int(1);
    v.version = std::to_string(number);
    TAMAYA_RETURN_IF_ERROR(read_config(vs, 2, v));
    v.created_ms = v.updated_ms = vs.column_int(kConfigColumnCount + 2);
    auto it = functions.find(v.name);
    // The foreign key makes an orphan impossible; skip one rather than fail.
    if (it != functions.end()) {
      it->second.versions.emplace(number, std::move(v));
    }
  }
  return load_lambda_state();
}

Status Registry::Impl::load_lambda_state() {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement rc,
                          db.prepare("SELECT name, reserved_concurrency FROM functions "
                                     "WHERE reserved_concurrency IS NOT NULL"));
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, rc.step());
    if (!row) {
      break;
    }
    if (auto it = functions.find(rc.column_text(0)); it != functions.end()) {
      it->second.reserved_concurrency = static_cast<int>(rc.column_int(1));
    }
  }
  TAMAYA_RETURN_IF_ERROR(load_scaling());
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement as,
      db.prepare("SELECT function, alias, version, description, extra_version, extra_weight, "
                 "revision_id, created_ms, updated_ms FROM function_aliases"));
  while (true) {
    TAMAYA_ASSIGN_OR_RETURN(bool row, as.step());
    if (!row) {
      break;
    }
    Alias a;
    a.function = as.column_text(0);
    a.name = as.column_text(1);
    a.version = as.column_text(2);
    a.description = as.column_text(3);
    a.extra_version = as.column_text(4);
    a.extra_weight = std::strtod(as.column_text(5).c_str(), nullptr);
    a.revision_id = as.column_text(6);
    a.created_ms = as.column_int(7);
    a.updated_ms = as.column_int(8);
    if (auto it = functions.find(a.function); it != functions.end()) {
      it->second.aliases.emplace(a.name, std::move(a));
    }
  }
  return Status::Ok();
}

Status Registry::Impl::write_alias(const Alias& a, bool insert) {
  std::string sql =
      insert ? "INSERT INTO function_aliases (version, description, extra_version, extra_weight, "
               "revision_id, created_ms, updated_ms, function, alias) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
             : "UPDATE function_aliases SET version = ?, description = ?, extra_version = ?, "
               "extra_weight = ?, revision_id = ?, created_ms = ?, updated_ms = ? "
               "WHERE function = ? AND alias = ?";
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st, db.prepare(sql));
  // The weight goes in as its shortest decimal text; the REAL column's
  // affinity stores it as a number.
  char weight[32];
  auto [end, ec] = std::to_chars(weight, weight + sizeof weight, a.extra_weight);
  (void)ec;
  st.bind(1, a.version)
      .bind(2, a.description)
      .bind(3, a.extra_version)
      .bind(4, std::string_view(weight, static_cast<size_t>(end - weight)))
      .bind(5, a.revision_id)
      .bind(6, a.created_ms)
      .bind(7, a.updated_ms)
      .bind(8, a.function)
      .bind(9, a.name);
  return st.run();
}

Status Registry::Impl::check_alias_fields(const Entry& entry, const Alias& a) const {
  auto published = [&](const std::string& v) {
    int64_t n = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    return ec == std::errc() && ptr == v.data() + v.size() && entry.versions.count(n) != 0;
  };
  if (a.version != kLatest && !published(a.version)) {
    return Status::NotFound("function '" + a.function + "' has no version '" + a.version +
                            "'; point the alias at $LATEST or a published version");
  }
  if (a.description.size() > kMaxDescriptionChars) {
    return Status::Invalid("alias description is " + std::to_string(a.description.size()) +
                           " bytes long; the limit is " + std::to_string(kMaxDescriptionChars));
  }
  if (a.extra_version.empty()) {
    return Status::Ok();
  }
  if (a.version == kLatest) {
    return Status::Invalid(
        "an alias with routing weights must point at a published version, "
        "not $LATEST; publish a version and point the alias at it");
  }
  if (!published(a.extra_version)) {
    return Status::NotFound("function '" + a.function + "' has no version '" + a.extra_version +
                            "' to route to; use a published version");
  }
  if (a.extra_version == a.version) {
    return Status::Invalid("the routing version " + a.extra_version +
                           " is the alias's own version; route to a different version");
  }
  if (!(a.extra_weight >= 0.0 && a.extra_weight <= 1.0)) {
    return Status::Invalid("routing weight must be between 0.0 and 1.0");
  }
  return Status::Ok();
}

Status Registry::Impl::write_latest(const FunctionVersion& v, int64_t next_version, bool insert) {
  std::string sql =
      insert ? std::string("INSERT INTO functions (") + kConfigColumns +
                   ", created_ms, updated_ms, next_version, name) "
                   "VALUES (" +
                   placeholders(kConfigColumnCount + 4) + ")"
             : "UPDATE functions SET runtime = ?, handler = ?, memory_mb = ?, timeout_s = ?, "
               "max_concurrency = ?, environment = ?, description = ?, code_sha256 = ?, "
               "code_size = ?, revision_id = ?, runtime_id = ?, role = ?, network = ?, tmp_mb = ?, "
               "created_ms = ?, "
               "updated_ms = ?, next_version = ? WHERE name = ?";
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st, db.prepare(sql));
  bind_config(st, 1, v);
  const int n = kConfigColumnCount;
  st.bind(n + 1, v.created_ms)
      .bind(n + 2, v.updated_ms)
      .bind(n + 3, next_version)
      .bind(n + 4, v.name);
  return st.run();
}

Result<Registry::Impl::Entry*> Registry::Impl::find(const std::string& name) {
  auto it = functions.find(name);
  if (it == functions.end()) {
    return Status::NotFound("function '" + name + "' does not exist; create it first");
  }
  return &it->second;
}

Status Registry::Impl::check_artifact(const Artifact& code) const {
  if (!artifacts.contains(code.sha256)) {
    return Status::Precondition("code " + code.sha256 +
                                " is not in the artifact store; upload the zip again");
  }
  return Status::Ok();
}

Registry::Registry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Registry::~Registry() = default;

Result<std::unique_ptr<Registry>> Registry::open(store::Database& db, ArtifactStore& artifacts,
                                                 const Settings& settings) {
  auto impl = std::make_unique<Impl>(db, artifacts, settings);
  Status s = impl->load();
  if (!s.ok()) {
    return s.with_context("loading the function registry");
  }
  return std::unique_ptr<Registry>(new Registry(std::move(impl)));
}

FunctionConfig Registry::defaults() const {
  FunctionConfig c;
  c.memory_mb = impl_->settings.default_memory_mb;
  c.timeout_s = impl_->settings.default_timeout_s;
  c.max_concurrency = impl_->settings.default_max_concurrency;
  c.tmp_mb = impl_->settings.default_tmp_mb;
  return c;
}

Status Registry::validate(const std::string& name, const FunctionConfig& c) const {
  const Settings& s = impl_->settings;
  if (!valid_name(name)) {
    return Status::Invalid("function name '" + name +
                           "' is invalid; use 1 to 64 characters from A-Z, a-z, 0-9, '-' and "
                           "'_'");
  }
  if (std::find(kRuntimes.begin(), kRuntimes.end(), c.runtime) == kRuntimes.end()) {
    return Status::Invalid("runtime '" + c.runtime +
                           "' is not supported; use one of: " + runtimes_list());
  }
  if (c.handler.size() > kMaxHandlerChars) {
    return Status::Invalid("handler is " + std::to_string(c.handler.size()) +
                           " characters long; the limit is " + std::to_string(kMaxHandlerChars));
  }
  if (c.runtime == "provided") {
    bool clean = std::none_of(c.handler.begin(), c.handler.end(), [](unsigned char ch) {
      return std::isspace(ch) != 0 || std::iscntrl(ch) != 0;
    });
    if (!clean) {
      return Status::Invalid("handler '" + c.handler +
                             "' contains whitespace or control characters; remove them");
    }
  } else if (c.handler.empty()) {
    return Status::Invalid("handler is required for runtime " + c.runtime +
                           "; use module.function, e.g. app.handler");
  } else if (!valid_module_handler(c.handler)) {
    return Status::Invalid("handler '" + c.handler +
                           "' is invalid; use module.function, e.g. app.handler (the module may "
                           "be in a subdirectory: src/app.handler)");
  }
  if (c.memory_mb < 128 || c.memory_mb > s.max_memory_mb) {
    return Status::Invalid("memory_mb " + std::to_string(c.memory_mb) +
                           " is out of range; use 128 to " + std::to_string(s.max_memory_mb));
  }
  if (c.timeout_s < 1 || c.timeout_s > s.max_timeout_s) {
    return Status::Invalid("timeout_s " + std::to_string(c.timeout_s) +
                           " is out of range; use 1 to " + std::to_string(s.max_timeout_s));
  }
  if (c.network != "host" && c.network != "none") {
    return Status::Invalid("network '" + c.network +
                           "' is not supported; use host (the host's network, as in Lambda) or "
                           "none (no network but the Runtime API)");
  }
  if (c.tmp_mb < 1 || c.tmp_mb > s.max_tmp_mb) {
    return Status::Invalid("tmp_mb " + std::to_string(c.tmp_mb) + " is out of range; use 1 to " +
                           std::to_string(s.max_tmp_mb));
  }
  if (c.max_concurrency < 1 || c.max_concurrency > kMaxConcurrencyLimit) {
    return Status::Invalid("max_concurrency " + std::to_string(c.max_concurrency) +
                           " is out of range; use 1 to " + std::to_string(kMaxConcurrencyLimit));
  }
  int64_t env_bytes = 0;
  for (const auto& [key, value] : c.environment) {
    if (!valid_env_key(key)) {
      return Status::Invalid("environment variable name '" + key +
                             "' is invalid; use letters, digits and '_', not starting with a "
                             "digit ([A-Za-z_][A-Za-z0-9_]*)");
    }
    if (std::find(kReservedEnv.begin(), kReservedEnv.end(), key) != kReservedEnv.end()) {
      return Status::Invalid("environment variable '" + key +
                             "' is reserved (the runtime sets it); use another name");
    }
    env_bytes += static_cast<int64_t>(key.size() + value.size());
  }
  if (env_bytes > kMaxEnvironmentBytes) {
    return Status::Invalid("environment variables total " + std::to_string(env_bytes) +
                           " bytes; the limit is " + std::to_string(kMaxEnvironmentBytes) +
                           " bytes (as in Lambda); move large values into the code or a file");
  }
  if (c.description.size() > kMaxDescriptionChars) {
    return Status::Invalid("description is " + std::to_string(c.description.size()) +
                           " bytes long; the limit is " + std::to_string(kMaxDescriptionChars));
  }
  return Status::Ok();
}

Result<FunctionVersion> Registry::create(const std::string& name, FunctionConfig config,
                                         const Artifact& code) {
  TAMAYA_RETURN_IF_ERROR(validate(name, config));
  if (impl_->functions.count(name) != 0) {
    return Status::Exists("function '" + name +
                          "' already exists; update it, or delete it first to start over");
  }
  TAMAYA_RETURN_IF_ERROR(impl_->check_artifact(code));
  FunctionVersion v;
  v.name = name;
  v.version = kLatest;
  v.config = std::move(config);
  v.code_sha256 = code.sha256;
  v.code_size = code.size;
  v.revision_id = new_request_id();
  v.created_ms = v.updated_ms = impl_->clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->write_latest(v, 1, /*insert=*/true));
  Impl::Entry entry;
  entry.latest = v;
  impl_->functions.emplace(name, std::move(entry));
  return v;
}

Result<FunctionVersion> Registry::update_code(const std::string& name, const Artifact& code) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  TAMAYA_RETURN_IF_ERROR(impl_->check_artifact(code));
  FunctionVersion v = entry->latest;
  v.code_sha256 = code.sha256;
  v.code_size = code.size;
  v.revision_id = new_request_id();
  v.updated_ms = impl_->clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->write_latest(v, entry->next_version, /*insert=*/false));
  entry->latest = v;
  impl_->changed(name);
  return v;
}

Result<FunctionVersion> Registry::update_config(const std::string& name, const ConfigPatch& patch) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  FunctionVersion v = entry->latest;
  FunctionConfig& c = v.config;
  take(c.runtime, patch.runtime);
  take(c.handler, patch.handler);
  take(c.memory_mb, patch.memory_mb);
  take(c.timeout_s, patch.timeout_s);
  take(c.max_concurrency, patch.max_concurrency);
  take(c.environment, patch.environment);
  take(c.description, patch.description);
  take(c.runtime_id, patch.runtime_id);
  take(c.role, patch.role);
  take(c.network, patch.network);
  take(c.tmp_mb, patch.tmp_mb);
  TAMAYA_RETURN_IF_ERROR(validate(name, c));
  v.revision_id = new_request_id();
  v.updated_ms = impl_->clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->write_latest(v, entry->next_version, /*insert=*/false));
  entry->latest = v;
  impl_->changed(name);
  return v;
}

Status Registry::remove(const std::string& name) {
  if (auto found = impl_->find(name); !found.ok()) {
    return found.status();
  }
  // Versions go with the function through ON DELETE CASCADE.
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st,
                          impl_->db.prepare("DELETE FROM functions WHERE name = ?"));
  st.bind(1, name);
  TAMAYA_RETURN_IF_ERROR(st.run());
  impl_->functions.erase(name);
  impl_->changed(name);
  return Status::Ok();
}

Result<FunctionVersion> Registry::publish(const std::string& name, const std::string& description,
                                          bool* created) {
  if (created != nullptr) {
    *created = false;
  }
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  if (!entry->versions.empty() &&
      same_code_and_config(entry->versions.rbegin()->second, entry->latest)) {
    return entry->versions.rbegin()->second;
  }
  if (description.size() > kMaxDescriptionChars) {
    return Status::Invalid("description is " + std::to_string(description.size()) +
                           " bytes long; the limit is " + std::to_string(kMaxDescriptionChars));
  }
  const int64_t number = entry->next_version;
  FunctionVersion v = entry->latest;
  v.version = std::to_string(number);
  if (!description.empty()) {
    v.config.description = description;
  }
  v.revision_id = new_request_id();
  v.created_ms = v.updated_ms = impl_->clock.wall_ms();

  store::Database& db = impl_->db;
  TAMAYA_RETURN_IF_ERROR(db.transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(store::Statement ins,
                            db.prepare(std::string("INSERT INTO function_versions (") +
                                       kConfigColumns + ", created_ms, name, version) VALUES (" +
                                       placeholders(kConfigColumnCount + 3) + ")"));
    bind_config(ins, 1, v);
    const int n = kConfigColumnCount;
    ins.bind(n + 1, v.created_ms).bind(n + 2, name).bind(n + 3, number);
    TAMAYA_RETURN_IF_ERROR(ins.run());
    TAMAYA_ASSIGN_OR_RETURN(store::Statement bump,
                            db.prepare("UPDATE functions SET next_version = ? WHERE name = ?"));
    bump.bind(1, number + 1).bind(2, name);
    return bump.run();
  }));
  entry->next_version = number + 1;
  entry->versions.emplace(number, v);
  if (created != nullptr) {
    *created = true;
  }
  return v;
}

Result<FunctionVersion> Registry::get(const std::string& name, const std::string& qualifier) const {
  auto it = impl_->functions.find(name);
  if (it == impl_->functions.end()) {
    return Status::NotFound("function '" + name + "' does not exist; create it first");
  }
  const Impl::Entry& entry = it->second;
  if (qualifier.empty() || qualifier == kLatest) {
    return entry.latest;
  }
  if (auto a = entry.aliases.find(qualifier); a != entry.aliases.end()) {
    return get(name, a->second.version);
  }

  int64_t number = 0;
  const char* end = qualifier.data() + qualifier.size();
  auto [ptr, ec] = std::from_chars(qualifier.data(), end, number);
  if (ec != std::errc() || ptr != end || number < 1 || qualifier[0] == '+') {
    // A name that could be an alias is an unknown alias; anything else is malformed.
    bool digits_only = std::all_of(qualifier.begin(), qualifier.end(), ascii_digit);
    bool alias_chars = std::all_of(qualifier.begin(), qualifier.end(), [](char c) {
      return ascii_alpha(c) || ascii_digit(c) || c == '-' || c == '_';
    });
    if (digits_only || !alias_chars) {
      return Status::Invalid("qualifier '" + qualifier +
                             "' is invalid; use $LATEST, a version number (1, 2, ...) or an "
                             "alias name");
    }
    return Status::NotFound("function '" + name + "' has no alias or version '" + qualifier +
                            "'; use $LATEST, a version number (1, 2, ...) or an existing alias");
  }
  auto v = entry.versions.find(number);
  if (v == entry.versions.end()) {
    std::string known = entry.versions.empty()
                            ? "it has no published versions; publish one first"
                            : "its versions are " + entry.versions.begin()->second.version +
                                  " to " + entry.versions.rbegin()->second.version;
    return Status::NotFound("function '" + name + "' has no version " + qualifier + "; " + known);
  }
  return v->second;
}

std::vector<FunctionVersion> Registry::list() const {
  std::vector<FunctionVersion> out;
  out.reserve(impl_->functions.size());
  for (const auto& [name, entry] : impl_->functions) {
    out.push_back(entry.latest);
  }
  return out;
}

Result<std::vector<FunctionVersion>> Registry::versions(const std::string& name) const {
  auto it = impl_->functions.find(name);
  if (it == impl_->functions.end()) {
    return Status::NotFound("function '" + name + "' does not exist; create it first");
  }
  std::vector<FunctionVersion> out;
  out.reserve(it->second.versions.size() + 1);
  out.push_back(it->second.latest);
  for (const auto& [number, v] : it->second.versions) {
    out.push_back(v);
  }
  return out;
}

}  // namespace tamaya::registry

namespace tamaya::registry {

namespace {

bool valid_alias_name(const std::string& alias) {
  if (alias.empty() || alias.size() > 128) {
    return false;
  }
  bool all_digits = std::all_of(alias.begin(), alias.end(), ascii_digit);
  return !all_digits && std::all_of(alias.begin(), alias.end(), [](char c) {
    return ascii_alpha(c) || ascii_digit(c) || c == '-' || c == '_';
  });
}

std::string no_alias(const std::string& function, const std::string& alias) {
  return "function '" + function + "' has no alias '" + alias + "'; create it first";
}

}  // namespace

Result<FunctionVersion> Registry::resolve(const std::string& name, const std::string& qualifier,
                                          double uniform) const {
  auto it = impl_->functions.find(name);
  if (it != impl_->functions.end()) {
    if (auto a = it->second.aliases.find(qualifier); a != it->second.aliases.end()) {
      const Alias& alias = a->second;
      bool extra = !alias.extra_version.empty() && uniform < alias.extra_weight;
      return get(name, extra ? alias.extra_version : alias.version);
    }
  }
  return get(name, qualifier);
}

Status Registry::remove_version(const std::string& name, const std::string& version) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  if (version == kLatest) {
    return Status::Invalid("$LATEST cannot be deleted on its own; delete the function instead");
  }
  TAMAYA_ASSIGN_OR_RETURN(FunctionVersion v, get(name, version));
  if (v.version != version) {  // an alias name resolved to a version
    return Status::Invalid("'" + version +
                           "' is an alias, not a version; delete the alias instead");
  }
  for (const auto& [alias_name, alias] : entry->aliases) {
    if (alias.version == version || alias.extra_version == version) {
      return Status::Exists(fmt::format(
          "version {} of function '{}' is used by alias '{}'; point the alias elsewhere or "
          "delete it first",
          version, name, alias_name));
    }
  }
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement st,
      impl_->db.prepare("DELETE FROM function_versions WHERE name = ? AND version = ?"));
  const int64_t number = std::stoll(version);
  st.bind(1, name).bind(2, number);
  TAMAYA_RETURN_IF_ERROR(st.run());
  entry->versions.erase(number);
  // Provisioned concurrency goes with its version, as in Lambda.
  if (entry->provisioned.count(version) != 0) {
    TAMAYA_RETURN_IF_ERROR(impl_->write_provisioned(name, version, 0));
    entry->provisioned.erase(version);
  }
  impl_->changed(name);
  return Status::Ok();
}

Result<Alias> Registry::create_alias(const std::string& function, const std::string& alias,
                                     const AliasPatch& fields) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(function));
  if (!valid_alias_name(alias)) {
    return Status::Invalid("alias name '" + alias +
                           "' is invalid; use 1 to 128 characters from A-Z, a-z, 0-9, '-' and "
                           "'_', not only digits");
  }
  if (entry->aliases.count(alias) != 0) {
    return Status::Exists("alias '" + alias + "' of function '" + function +
                          "' already exists; update it or delete it first");
  }
  if (!fields.version) {
    return Status::Invalid("an alias needs a function version; name $LATEST or a version number");
  }
  Alias a;
  a.function = function;
  a.name = alias;
  a.version = *fields.version;
  a.description = fields.description.value_or("");
  if (fields.routing) {
    a.extra_version = fields.routing->first;
    a.extra_weight = a.extra_version.empty() ? 0.0 : fields.routing->second;
  }
  TAMAYA_RETURN_IF_ERROR(impl_->check_alias_fields(*entry, a));
  a.revision_id = new_request_id();
  a.created_ms = a.updated_ms = impl_->clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->write_alias(a, /*insert=*/true));
  entry->aliases.emplace(alias, a);
  return a;
}

Result<Alias> Registry::update_alias(const std::string& function, const std::string& alias,
                                     const AliasPatch& patch,
                                     const std::string& expected_revision) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(function));
  auto it = entry->aliases.find(alias);
  if (it == entry->aliases.end()) {
    return Status::NotFound(no_alias(function, alias));
  }
  if (!expected_revision.empty() && expected_revision != it->second.revision_id) {
    return Status::Precondition("alias '" + alias + "' has revision " + it->second.revision_id +
                                ", not " + expected_revision +
                                "; it changed since you read it: read it again and retry");
  }
  Alias a = it->second;
  take(a.version, patch.version);
  take(a.description, patch.description);
  if (patch.routing) {
    a.extra_version = patch.routing->first;
    a.extra_weight = a.extra_version.empty() ? 0.0 : patch.routing->second;
  }
  TAMAYA_RETURN_IF_ERROR(impl_->check_alias_fields(*entry, a));
  a.revision_id = new_request_id();
  a.updated_ms = impl_->clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->write_alias(a, /*insert=*/false));
  it->second = a;
  impl_->changed(function);
  return a;
}

Status Registry::remove_alias(const std::string& function, const std::string& alias) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(function));
  if (entry->aliases.count(alias) == 0) {
    return Status::NotFound(no_alias(function, alias));
  }
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement st,
      impl_->db.prepare("DELETE FROM function_aliases WHERE function = ? AND alias = ?"));
  st.bind(1, function).bind(2, alias);
  TAMAYA_RETURN_IF_ERROR(st.run());
  entry->aliases.erase(alias);
  if (entry->provisioned.count(alias) != 0) {
    TAMAYA_RETURN_IF_ERROR(impl_->write_provisioned(function, alias, 0));
    entry->provisioned.erase(alias);
  }
  impl_->changed(function);
  return Status::Ok();
}

Result<Alias> Registry::get_alias(const std::string& function, const std::string& alias) const {
  auto it = impl_->functions.find(function);
  if (it == impl_->functions.end()) {
    return Status::NotFound("function '" + function + "' does not exist; create it first");
  }
  auto a = it->second.aliases.find(alias);
  if (a == it->second.aliases.end()) {
    return Status::NotFound(no_alias(function, alias));
  }
  return a->second;
}

Result<std::vector<Alias>> Registry::aliases(const std::string& function) const {
  auto it = impl_->functions.find(function);
  if (it == impl_->functions.end()) {
    return Status::NotFound("function '" + function + "' does not exist; create it first");
  }
  std::vector<Alias> out;
  for (const auto& [name, a] : it->second.aliases) {
    out.push_back(a);
  }
  return out;
}

Status Registry::set_reserved_concurrency(const std::string& name, std::optional<int> reserved) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  const Settings& s = impl_->settings;
  if (reserved && (*reserved < 0 || *reserved > s.concurrency_limit)) {
    return Status::Invalid("reserved concurrency " + std::to_string(*reserved) +
                           " is out of range; use 0 to " + std::to_string(s.concurrency_limit) +
                           " (the concurrency_limit setting)");
  }
  if (reserved) {
    int others = 0;
    for (const auto& [n, e] : impl_->functions) {
      if (n != name && e.reserved_concurrency) others += *e.reserved_concurrency;
    }
    if (others + *reserved > s.concurrency_limit - s.concurrency_unreserved_min) {
      // Lambda's words, then what is left to reserve.
      return Status::Invalid(
          "Specified ReservedConcurrentExecutions for function decreases account's "
          "UnreservedConcurrentExecution below its minimum value of [" +
          std::to_string(s.concurrency_unreserved_min) + "]: other functions reserve " +
          std::to_string(others) + " of the concurrency_limit " +
          std::to_string(s.concurrency_limit) + ", so at most " +
          std::to_string(std::max(0, s.concurrency_limit - s.concurrency_unreserved_min - others)) +
          " can be reserved here");
    }
    if (int p = impl_->provisioned_sum(*entry); *reserved < p) {
      return Status::Invalid(
          "reserved concurrency " + std::to_string(*reserved) +
          " is below the function's provisioned concurrency (min_instances) of " +
          std::to_string(p) + "; lower that first");
    }
  }
  TAMAYA_RETURN_IF_ERROR(impl_->write_optional(
      "UPDATE functions SET reserved_concurrency = ? WHERE name = ?", name, reserved));
  entry->reserved_concurrency = reserved;
  impl_->changed(name);
  return Status::Ok();
}

Result<std::optional<int>> Registry::reserved_concurrency(const std::string& name) const {
  auto it = impl_->functions.find(name);
  if (it == impl_->functions.end()) {
    return Status::NotFound("function '" + name + "' does not exist; create it first");
  }
  return it->second.reserved_concurrency;
}

}  // namespace tamaya::registry

namespace tamaya::registry {

Status Registry::Impl::load_scaling() {
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement it,
      db.prepare("SELECT name, idle_timeout_s FROM functions WHERE idle_timeout_s IS NOT NULL"));
  TAMAYA_ASSIGN_OR_RETURN(auto timeouts, it.collect([](store::Statement& r) {
    return std::pair{r.column_text(0), static_cast<int>(r.column_int(1))};
  }));
  for (auto& [name, seconds] : timeouts) {
    if (auto f = functions.find(name); f != functions.end()) f->second.idle_timeout_s = seconds;
  }
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement pc,
      db.prepare("SELECT function, qualifier, instances FROM function_provisioned"));
  TAMAYA_ASSIGN_OR_RETURN(auto provisioned, pc.collect([](store::Statement& r) {
    return std::tuple{r.column_text(0), r.column_text(1), static_cast<int>(r.column_int(2))};
  }));
  for (auto& [name, qualifier, instances] : provisioned) {
    if (auto f = functions.find(name); f != functions.end()) {
      f->second.provisioned[qualifier] = instances;
    }
  }
  return Status::Ok();
}

Status Registry::Impl::write_provisioned(const std::string& name, const std::string& qualifier,
                                         int instances) {
  if (instances <= 0) {
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement del,
        db.prepare("DELETE FROM function_provisioned WHERE function = ? AND qualifier = ?"));
    del.bind(1, name).bind(2, qualifier);
    return del.run();
  }
  TAMAYA_ASSIGN_OR_RETURN(
      store::Statement up,
      db.prepare("INSERT INTO function_provisioned (function, qualifier, instances, updated_ms) "
                 "VALUES (?, ?, ?, ?) ON CONFLICT (function, qualifier) DO UPDATE SET "
                 "instances = excluded.instances, updated_ms = excluded.updated_ms"));
  up.bind(1, name).bind(2, qualifier).bind(3, int64_t{instances}).bind(4, clock.wall_ms());
  return up.run();
}

Status Registry::Impl::write_optional(const char* update_sql, const std::string& name,
                                      std::optional<int> value) {
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st, db.prepare(update_sql));
  if (value) {
    st.bind(1, int64_t{*value});
  } else {
    st.bind_null(1);
  }
  st.bind(2, name);
  return st.run();
}

Result<Scaling> Registry::scaling(const std::string& name) const {
  auto it = impl_->functions.find(name);
  if (it == impl_->functions.end()) {
    return Status::NotFound("function '" + name + "' does not exist; create it first");
  }
  Scaling s;
  s.reserved_concurrency = it->second.reserved_concurrency;
  s.idle_timeout_s = it->second.idle_timeout_s;
  s.provisioned = it->second.provisioned;
  return s;
}

Status Registry::set_idle_timeout(const std::string& name, std::optional<int> seconds) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  if (seconds && (*seconds < 1 || *seconds > kMaxIdleTimeoutS)) {
    return Status::Invalid("idle_timeout_s " + std::to_string(*seconds) +
                           " is out of range; use 1 to " + std::to_string(kMaxIdleTimeoutS) +
                           " seconds, or null for the instance_idle_timeout_ms setting");
  }
  TAMAYA_RETURN_IF_ERROR(impl_->write_optional(
      "UPDATE functions SET idle_timeout_s = ? WHERE name = ?", name, seconds));
  entry->idle_timeout_s = seconds;
  impl_->changed(name);
  return Status::Ok();
}

Status Registry::set_provisioned(const std::string& name, const std::string& qualifier,
                                 int instances) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  const Settings& s = impl_->settings;
  if (instances < 0) {
    return Status::Invalid("provisioned concurrency (min_instances) must be 0 or more, not " +
                           std::to_string(instances));
  }
  if (instances > 0) {
    TAMAYA_ASSIGN_OR_RETURN(FunctionVersion v, get(name, qualifier));
    if (instances > v.config.max_concurrency) {
      return Status::Invalid("min_instances " + std::to_string(instances) +
                             " is above the function's max_concurrency of " +
                             std::to_string(v.config.max_concurrency) +
                             "; raise max_concurrency (max_instances) first");
    }
    auto current = entry->provisioned.find(qualifier);
    int others_here = impl_->provisioned_sum(*entry) -
                      (current == entry->provisioned.end() ? 0 : current->second);
    if (entry->reserved_concurrency) {
      if (others_here + instances > *entry->reserved_concurrency) {
        return Status::Invalid(
            "Requested Provisioned Concurrency should not be greater than the "
            "reservedConcurrentExecution for function: " +
            std::to_string(others_here + instances) + " provisioned in all, reserved " +
            std::to_string(*entry->reserved_concurrency));
      }
    } else {
      // Provisioned instances of unreserved functions live in the unreserved
      // pool; they may not take what must stay free for on-demand instances.
      int reserved_total = 0, unreserved_provisioned = others_here;
      for (const auto& [n, e] : impl_->functions) {
        if (e.reserved_concurrency) {
          reserved_total += *e.reserved_concurrency;
        } else if (n != name) {
          unreserved_provisioned += impl_->provisioned_sum(e);
        }
      }
      int room = s.concurrency_limit - reserved_total - s.concurrency_unreserved_min;
      if (unreserved_provisioned + instances > room) {
        return Status::Invalid(
            "Requested Provisioned Concurrency exceeds the account's unreserved concurrency less "
            "its minimum of " +
            std::to_string(s.concurrency_unreserved_min) + ": at most " +
            std::to_string(std::max(0, room - unreserved_provisioned)) +
            " more can be provisioned; reserve concurrency for the function or raise "
            "concurrency_limit");
      }
    }
  } else if (entry->provisioned.count(qualifier) == 0) {
    return Status::NotFound("function '" + name + "' has no provisioned concurrency on '" +
                            qualifier + "'");
  }
  TAMAYA_RETURN_IF_ERROR(impl_->write_provisioned(name, qualifier, instances));
  if (instances > 0) {
    entry->provisioned[qualifier] = instances;
  } else {
    entry->provisioned.erase(qualifier);
  }
  impl_->changed(name);
  return Status::Ok();
}

void Registry::set_listener(std::function<void(const std::string& name)> listener) {
  impl_->listener = std::move(listener);
}

}  // namespace tamaya::registry
