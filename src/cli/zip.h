// Packaging of function code for upload. The daemon stores artifacts by
// sha256, so the same tree must give the same bytes: entries are sorted by
// path, carry no timestamps (every entry reads 1980-01-01 00:00) and uid/gid
// 0; unix modes and symlinks are kept.
#pragma once

#include <filesystem>
#include <string>

#include "common/status.h"

namespace tamaya::cli {

// PATH as zip bytes: a directory is zipped with its tree at the archive
// root, a file ending in .zip is taken as is, any other file becomes a zip
// holding only that file at the root.
Result<std::string> package_code(const std::filesystem::path& path);

// Zips the tree under `dir`, skipping .git, __pycache__ and
// node_modules/.cache at any depth, and anything that is not a regular file,
// directory or symlink (sockets, fifos, devices). Symlinks are stored as
// symlinks, never followed.
Result<std::string> zip_directory(const std::filesystem::path& dir);

// A zip holding the one regular file at `file`, under its file name.
Result<std::string> zip_file(const std::filesystem::path& file);

}  // namespace tamaya::cli
