#include "registry/schema.h"

namespace tamaya::registry {

std::vector<store::Migration> migrations() {
  return {
      {100, "registry: functions and versions",
       R"sql(
CREATE TABLE functions (
  name TEXT PRIMARY KEY,
  runtime TEXT NOT NULL,
  handler TEXT NOT NULL,
  memory_mb INTEGER NOT NULL,
  timeout_s INTEGER NOT NULL,
  max_concurrency INTEGER NOT NULL,
  environment TEXT NOT NULL,          -- JSON object of strings
  description TEXT NOT NULL,
  code_sha256 TEXT NOT NULL,
  code_size INTEGER NOT NULL,
  revision_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  next_version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE function_versions (
  name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  runtime TEXT NOT NULL,
  handler TEXT NOT NULL,
  memory_mb INTEGER NOT NULL,
  timeout_s INTEGER NOT NULL,
  max_concurrency INTEGER NOT NULL,
  environment TEXT NOT NULL,
  description TEXT NOT NULL,
  code_sha256 TEXT NOT NULL,
  code_size INTEGER NOT NULL,
  revision_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);
)sql"},
      {120, "registry: isolation per function (network mode, /tmp size)",
       R"sql(
ALTER TABLE functions ADD COLUMN network TEXT NOT NULL DEFAULT 'host';
ALTER TABLE functions ADD COLUMN tmp_mb INTEGER NOT NULL DEFAULT 512;
ALTER TABLE function_versions ADD COLUMN network TEXT NOT NULL DEFAULT 'host';
ALTER TABLE function_versions ADD COLUMN tmp_mb INTEGER NOT NULL DEFAULT 512;
)sql"},
      {130, "registry: Lambda API runtime id and role, reserved concurrency, aliases",
       R"sql(
ALTER TABLE functions ADD COLUMN runtime_id TEXT NOT NULL DEFAULT '';
ALTER TABLE functions ADD COLUMN role TEXT NOT NULL DEFAULT '';
ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER;  -- NULL: none
ALTER TABLE function_versions ADD COLUMN runtime_id TEXT NOT NULL DEFAULT '';
ALTER TABLE function_versions ADD COLUMN role TEXT NOT NULL DEFAULT '';
CREATE TABLE function_aliases (
  function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
  alias TEXT NOT NULL,
  version TEXT NOT NULL,
  description TEXT NOT NULL,
  extra_version TEXT NOT NULL,
  extra_weight REAL NOT NULL,
  revision_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (function, alias)
);
)sql"},
      {150, "registry: scaling (idle timeout, provisioned concurrency per qualifier)",
       R"sql(
ALTER TABLE functions ADD COLUMN idle_timeout_s INTEGER;  -- NULL: the setting
CREATE TABLE function_provisioned (
  function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
  qualifier TEXT NOT NULL,
  instances INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (function, qualifier)
);
)sql"},
  };
}

}  // namespace tamaya::registry
