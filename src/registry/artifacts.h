// Code artifacts, stored once each and addressed by the sha256 of the zip
// that was uploaded. A zip is unpacked once into <root>/code/<sha256>/ and
// that directory is what instances see as their task root.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/settings.h"
#include "common/status.h"

namespace tamaya::registry {

struct ArtifactLimits {
  int64_t max_zip_bytes = 50ll << 20;
  int64_t max_unpacked_bytes = 250ll << 20;
  int64_t max_files = 20'000;
};

// The artifact_* settings as limits.
ArtifactLimits artifact_limits(const Settings& settings);

struct Artifact {
  std::string sha256;
  int64_t size = 0;  // bytes of the zip
};

class ArtifactStore {
 public:
  ArtifactStore(std::string root_dir, ArtifactLimits limits);

  // Verifies and unpacks a zip (no-op when this sha256 is already stored).
  // Rejects, with InvalidArgument and the offending entry named: absolute
  // paths, '..' components, symlinks whose target leaves the root, device or
  // fifo entries, archives that are not zips. TooLarge for size/count limits.
  // Unix modes are kept (a bootstrap stays executable), so are in-root
  // symlinks. A failed unpack leaves nothing behind.
  Result<Artifact> put_zip(std::string_view zip_bytes);

  bool contains(const std::string& sha256) const;
  // The unpacked tree of an artifact.
  std::string code_dir(const std::string& sha256) const;
  // The zip as uploaded, kept so it can be handed back (Lambda's GetFunction
  // Code.Location). Artifacts stored before zips were kept have none.
  std::string zip_path(const std::string& sha256) const;

 private:
  Status keep_zip(const std::string& sha256, std::string_view zip_bytes) const;

 public:
 private:
  std::string root_;
  ArtifactLimits limits_;
};

}  // namespace tamaya::registry
