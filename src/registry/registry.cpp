#include "registry/registry.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "common/clock.h"
#include "common/encoding.h"
#include "store/database.h"

namespace tamaya::registry {

namespace {

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
         x.max_concurrency == y.max_concurrency && x.environment == y.environment;
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
      .bind(first + 9, v.revision_id);
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
  return Status::Ok();
}

constexpr const char* kConfigColumns =
    "runtime, handler, memory_mb, timeout_s, max_concurrency, environment, description, "
    "code_sha256, code_size, revision_id";

}  // namespace

struct Registry::Impl {
  struct Entry {
    FunctionVersion latest;
    int64_t next_version = 1;
    std::map<int64_t, FunctionVersion> versions;
  };

  Impl(store::Database& d, ArtifactStore& a, const Settings& s)
      : db(d), artifacts(a), settings(s) {}

  store::Database& db;
  ArtifactStore& artifacts;
  Settings settings;
  SystemClock clock;
  std::map<std::string, Entry> functions;

  Status load();
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
    e.latest.created_ms = fns.column_int(11);
    e.latest.updated_ms = fns.column_int(12);
    e.next_version = fns.column_int(13);
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
    v.created_ms = v.updated_ms = vs.column_int(12);
    auto it = functions.find(v.name);
    // The foreign key makes an orphan impossible; skip one rather than fail.
    if (it != functions.end()) {
      it->second.versions.emplace(number, std::move(v));
    }
  }
  return Status::Ok();
}

Status Registry::Impl::write_latest(const FunctionVersion& v, int64_t next_version, bool insert) {
  std::string sql =
      insert ? std::string("INSERT INTO functions (") + kConfigColumns +
                   ", created_ms, updated_ms, next_version, name) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
             : "UPDATE functions SET runtime = ?, handler = ?, memory_mb = ?, timeout_s = ?, "
               "max_concurrency = ?, environment = ?, description = ?, code_sha256 = ?, "
               "code_size = ?, revision_id = ?, created_ms = ?, updated_ms = ?, "
               "next_version = ? WHERE name = ?";
  TAMAYA_ASSIGN_OR_RETURN(store::Statement st, db.prepare(sql));
  bind_config(st, 1, v);
  st.bind(11, v.created_ms).bind(12, v.updated_ms).bind(13, next_version).bind(14, v.name);
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
  return v;
}

Result<FunctionVersion> Registry::update_config(const std::string& name, const ConfigPatch& patch) {
  TAMAYA_ASSIGN_OR_RETURN(Impl::Entry * entry, impl_->find(name));
  FunctionVersion v = entry->latest;
  FunctionConfig& c = v.config;
  if (patch.runtime) {
    c.runtime = *patch.runtime;
  }
  if (patch.handler) {
    c.handler = *patch.handler;
  }
  if (patch.memory_mb) {
    c.memory_mb = *patch.memory_mb;
  }
  if (patch.timeout_s) {
    c.timeout_s = *patch.timeout_s;
  }
  if (patch.max_concurrency) {
    c.max_concurrency = *patch.max_concurrency;
  }
  if (patch.environment) {
    c.environment = *patch.environment;
  }
  if (patch.description) {
    c.description = *patch.description;
  }
  TAMAYA_RETURN_IF_ERROR(validate(name, c));
  v.revision_id = new_request_id();
  v.updated_ms = impl_->clock.wall_ms();
  TAMAYA_RETURN_IF_ERROR(impl_->write_latest(v, entry->next_version, /*insert=*/false));
  entry->latest = v;
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
    TAMAYA_ASSIGN_OR_RETURN(
        store::Statement ins,
        db.prepare(std::string("INSERT INTO function_versions (") + kConfigColumns +
                   ", created_ms, name, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    bind_config(ins, 1, v);
    ins.bind(11, v.created_ms).bind(12, name).bind(13, number);
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

  int64_t number = 0;
  const char* end = qualifier.data() + qualifier.size();
  auto [ptr, ec] = std::from_chars(qualifier.data(), end, number);
  if (ec != std::errc() || ptr != end || number < 1 || qualifier[0] == '+') {
    return Status::Invalid("qualifier '" + qualifier +
                           "' is invalid; use $LATEST or a version number (1, 2, ...)");
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
