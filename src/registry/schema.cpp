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
  };
}

}  // namespace tamaya::registry
