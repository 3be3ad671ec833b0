#include "cli/zip.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <memory>
#include <sstream>
#include <system_error>
#include <vector>

namespace tamaya::cli {
namespace {

namespace fs = std::filesystem;

struct Entry {
  std::string name;  // path inside the archive, '/' separated, dirs end in '/'
  fs::path source;
  mode_t mode = 0;  // from lstat: file type and permission bits
};

// Directories that are caches or version control, never code to run.
bool skipped(const fs::path& path) {
  const std::string name = path.filename().string();
  if (name == ".git" || name == "__pycache__") return true;
  return name == ".cache" && path.parent_path().filename() == "node_modules";
}

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::Invalid("cannot read '" + path.string() + "': " +
                           std::generic_category().message(errno) + "; check its permissions");
  }
  std::ostringstream data;
  data << in.rdbuf();
  if (in.bad()) {
    return Status::Invalid("reading '" + path.string() + "' failed; check the file");
  }
  return std::move(data).str();
}

Result<mode_t> lstat_mode(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return Status::Invalid("cannot stat '" + path.string() +
                           "': " + std::generic_category().message(errno));
  }
  return st.st_mode;
}

la_ssize_t append_output(struct archive*, void* client, const void* buffer, size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
  return static_cast<la_ssize_t>(length);
}

struct ArchiveFree {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

Status archive_error(struct archive* a, const std::string& what) {
  const char* detail = archive_error_string(a);
  return Status::Internal("building the zip failed at " + what + ": " +
                          (detail ? detail : "unknown libarchive error"));
}

// Writes `entries` (already sorted) as a deflate zip.
Result<std::string> write_zip(const std::vector<Entry>& entries) {
  std::string out;
  std::unique_ptr<struct archive, ArchiveFree> a(archive_write_new());
  if (archive_write_set_format_zip(a.get()) != ARCHIVE_OK ||
      archive_write_set_options(a.get(), "zip:compression=deflate") != ARCHIVE_OK ||
      // No padding after the last block: a zip is not a tape.
      archive_write_set_bytes_in_last_block(a.get(), 1) != ARCHIVE_OK ||
      archive_write_open(a.get(), &out, nullptr, append_output, nullptr) != ARCHIVE_OK) {
    return archive_error(a.get(), "setup");
  }
  for (const Entry& entry : entries) {
    std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), entry.name.c_str());
    archive_entry_set_mode(e.get(), entry.mode);
    // uid/gid of the builder's machine would make the bytes differ by user;
    // timestamps are left unset for the same reason (libarchive then writes
    // the earliest DOS time and no extended-timestamp field).
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    std::string content;
    if (S_ISLNK(entry.mode)) {
      std::error_code ec;
      const fs::path target = fs::read_symlink(entry.source, ec);
      if (ec) {
        return Status::Invalid("cannot read symlink '" + entry.source.string() +
                               "': " + ec.message());
      }
      archive_entry_set_symlink(e.get(), target.c_str());
      archive_entry_set_size(e.get(), 0);
    } else if (S_ISREG(entry.mode)) {
      TAMAYA_ASSIGN_OR_RETURN(content, read_file(entry.source));
      archive_entry_set_size(e.get(), static_cast<la_int64_t>(content.size()));
    } else {
      archive_entry_set_size(e.get(), 0);
    }
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) {
      return archive_error(a.get(), "'" + entry.name + "'");
    }
    if (!content.empty() && archive_write_data(a.get(), content.data(), content.size()) !=
                                static_cast<la_ssize_t>(content.size())) {
      return archive_error(a.get(), "'" + entry.name + "'");
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return archive_error(a.get(), "the end");
  return out;
}

bool ends_with_zip(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".zip";
}

}  // namespace

Result<std::string> zip_directory(const fs::path& dir) {
  std::vector<Entry> entries;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) {
    return Status::Invalid("cannot read directory '" + dir.string() + "': " + ec.message());
  }
  bool has_file = false;
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& path = it->path();
    if (skipped(path)) {
      it.disable_recursion_pending();
      continue;
    }
    TAMAYA_ASSIGN_OR_RETURN(mode_t mode, lstat_mode(path));
    std::string name = path.lexically_relative(dir).generic_string();
    if (S_ISDIR(mode)) {
      name += '/';
    } else if (S_ISREG(mode) || S_ISLNK(mode)) {
      has_file = true;
    } else {
      continue;
    }
    entries.push_back(Entry{std::move(name), path, mode});
  }
  if (ec) {
    return Status::Invalid("walking directory '" + dir.string() + "' failed: " + ec.message());
  }
  if (!has_file) {
    return Status::Invalid("directory '" + dir.string() +
                           "' holds no files to deploy; point PATH at your function's code");
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return write_zip(entries);
}

Result<std::string> zip_file(const fs::path& file) {
  TAMAYA_ASSIGN_OR_RETURN(mode_t mode, lstat_mode(file));
  if (S_ISLNK(mode)) {
    // A symlink given as PATH is the user pointing at its target.
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      return Status::Invalid(fmt::format("'{}' is a dangling symlink", file.string()));
    }
    mode = st.st_mode;
  }
  if (!S_ISREG(mode)) {
    return Status::Invalid(fmt::format("'{}' is not a regular file", file.string()));
  }
  return write_zip({Entry{file.filename().string(), file, mode}});
}

Result<std::string> package_code(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    return Status::Invalid(fmt::format(
        "code path '{}' does not exist; give a directory, a file or a .zip", path.string()));
  }
  if (fs::is_directory(status)) return zip_directory(path);
  if (!ends_with_zip(path)) return zip_file(path);

  TAMAYA_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  // A local file header, or the end record of an empty archive.
  const bool looks_like_zip = bytes.rfind(std::string("PK\x03\x04", 4), 0) == 0 ||
                              bytes.rfind(std::string("PK\x05\x06", 4), 0) == 0;
  if (!looks_like_zip) {
    return Status::Invalid(fmt::format(
        "'{}' ends in .zip but is not a zip archive; rebuild it or pass the directory instead",
        path.string()));
  }
  return bytes;
}

}  // namespace tamaya::cli
