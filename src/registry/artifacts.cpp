#include "registry/artifacts.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/encoding.h"
#include "common/fd.h"

namespace tamaya::registry {

namespace {

namespace fs = std::filesystem;

constexpr mode_t kDirMode = 0755;
constexpr mode_t kDefaultFileMode = 0644;  // for zips made without unix modes
constexpr const char* kTmpPrefix = ".tmp-";

std::string errno_text(int err) { return std::strerror(err); }

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

bool is_sha256_hex(const std::string& s) {
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) {
      end = path.size();
    }
    parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// The entry's path as components below the root; rejects anything that could
// name a place outside it.
Result<std::vector<std::string>> entry_components(const std::string& name) {
  if (name.empty()) {
    return Status::Invalid("zip has an entry with an empty name; rebuild the zip");
  }
  if (name.front() == '/') {
    return Status::Invalid("zip entry '" + name +
                           "' has an absolute path; zip the files with paths relative to the "
                           "code root");
  }
  std::vector<std::string> out;
  for (std::string& part : split_path(name)) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      return Status::Invalid("zip entry '" + name +
                             "' contains a '..' component; zip the files with paths inside the "
                             "code root");
    }
    out.push_back(std::move(part));
  }
  return out;
}

// Resolves the target lexically from the link's own directory: it must stay
// below the root. Physical resolution cannot be fooled either, because no
// entry is ever written through a symlinked directory (see open_dir).
bool symlink_stays_inside(const std::vector<std::string>& link, std::string_view target) {
  if (target.empty() || target.front() == '/') {
    return false;
  }
  std::vector<std::string> stack(link.begin(), link.end() - 1);
  for (std::string& part : split_path(target)) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      if (stack.empty()) {
        return false;
      }
      stack.pop_back();
    } else {
      stack.push_back(std::move(part));
    }
  }
  return true;
}

std::string join(const std::vector<std::string>& parts, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) {
      out += '/';
    }
    out += parts[i];
  }
  return out;
}

// Opens (creating as needed) the directory made of the first `count`
// components, one component at a time with O_NOFOLLOW, so an entry can never
// be written through a symlink an earlier entry planted.
Result<Fd> open_dir(int root_fd, const std::vector<std::string>& parts, size_t count,
                    const std::string& entry) {
  Fd current(::dup(root_fd));
  if (!current.valid()) {
    return Status::Internal("dup: " + errno_text(errno));
  }
  for (size_t i = 0; i < count; ++i) {
    const char* name = parts[i].c_str();
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = ::openat(current.get(), name, flags);
    if (fd < 0 && errno == ENOENT) {
      if (::mkdirat(current.get(), name, kDirMode) != 0 && errno != EEXIST) {
        return Status::Internal("creating directory '" + join(parts, i + 1) +
                                "': " + errno_text(errno));
      }
      fd = ::openat(current.get(), name, flags);
      if (fd >= 0 && ::fchmod(fd, kDirMode) != 0) {
        int err = errno;
        ::close(fd);
        return Status::Internal("chmod '" + join(parts, i + 1) + "': " + errno_text(err));
      }
    }
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return Status::Invalid("zip entry '" + entry + "' is inside '" + join(parts, i + 1) +
                               "', which is a symlink or a file, not a directory; zip the real "
                               "directory instead");
      }
      return Status::Internal("opening directory '" + join(parts, i + 1) +
                              "': " + errno_text(errno));
    }
    current = Fd(fd);
  }
  return current;
}

Status duplicate_entry(const std::string& entry) {
  return Status::Invalid("zip entry '" + entry +
                         "' appears twice (or clashes with a directory); rebuild the zip");
}

mode_t file_mode(archive_entry* e, const std::string& basename) {
  mode_t perm = archive_entry_perm(e) & 0777;  // setuid/setgid/sticky are never kept
  if (perm == 0) {
    perm = kDefaultFileMode;
  }
  // Instances run as other uids: every file is readable by all and writable
  // by nobody but the daemon; an executable stays executable for everyone.
  perm = (perm & 0755) | 0444;
  if ((perm & 0111) != 0) {
    perm |= 0111;
  }
  // The `provided` runtime execs ./bootstrap; zips made on Windows carry no
  // exec bit, and a non-executable bootstrap is never what the user meant.
  if (basename == "bootstrap") {
    perm |= 0111;
  }
  return perm;
}

class Unpacker {
 public:
  Unpacker(int root_fd, const ArtifactLimits& limits) : root_fd_(root_fd), limits_(limits) {}

  Status run(std::string_view zip_bytes) {
    ArchivePtr a(archive_read_new());
    if (!a) {
      return Status::Internal("archive_read_new failed");
    }
    archive_read_support_format_zip(a.get());
    if (archive_read_open_memory(a.get(), zip_bytes.data(), zip_bytes.size()) != ARCHIVE_OK) {
      return not_a_zip(a.get());
    }
    while (true) {
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) {
        break;
      }
      if (r < ARCHIVE_WARN) {
        return not_a_zip(a.get());
      }
      if (++entries_ > limits_.max_files) {
        return Status::TooLarge("code zip has more than " + std::to_string(limits_.max_files) +
                                " entries (artifact_max_files); ship fewer files, e.g. bundle "
                                "dependencies");
      }
      TAMAYA_RETURN_IF_ERROR(extract(a.get(), e));
    }
    return Status::Ok();
  }

 private:
  static Status not_a_zip(archive* a) {
    const char* err = archive_error_string(a);
    return Status::Invalid(std::string("code is not a valid zip archive: ") +
                           (err != nullptr ? err : "unreadable") +
                           "; upload the bytes of a .zip file");
  }

  Status extract(archive* a, archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) {
      raw = archive_entry_pathname_utf8(e);
    }
    if (raw == nullptr) {
      return Status::Invalid("zip has an entry whose name cannot be decoded; use UTF-8 names");
    }
    const std::string name = raw;
    TAMAYA_ASSIGN_OR_RETURN(std::vector<std::string> parts, entry_components(name));
    if (archive_entry_hardlink(e) != nullptr) {
      return Status::Invalid("zip entry '" + name +
                             "' is a hard link; only files, directories and symlinks are "
                             "allowed");
    }
    const mode_t type = archive_entry_filetype(e);
    if (parts.empty()) {
      if (type == AE_IFDIR) {
        return Status::Ok();  // "./": the root itself
      }
      return Status::Invalid("zip entry '" + name +
                             "' names the code root itself; rebuild the zip");
    }
    TAMAYA_ASSIGN_OR_RETURN(Fd parent, open_dir(root_fd_, parts, parts.size() - 1, name));
    const std::string& leaf = parts.back();

    switch (type) {
      case AE_IFDIR:
        return make_dir(parent.get(), parts, name);
      case AE_IFREG:
        return write_file(a, e, parent.get(), leaf, name);
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        if (target == nullptr) {
          target = archive_entry_symlink_utf8(e);
        }
        std::string t = target != nullptr ? target : "";
        if (!symlink_stays_inside(parts, t)) {
          return Status::Invalid("zip entry '" + name + "' is a symlink to '" + t +
                                 "', which is outside the code root; only relative links to "
                                 "files inside the zip are allowed");
        }
        if (::symlinkat(t.c_str(), parent.get(), leaf.c_str()) != 0) {
          if (errno == EEXIST) {
            return duplicate_entry(name);
          }
          return Status::Internal("creating symlink '" + name + "': " + errno_text(errno));
        }
        return Status::Ok();
      }
      default:
        return Status::Invalid("zip entry '" + name +
                               "' is a device, fifo or socket; only files, directories and "
                               "symlinks are allowed");
    }
  }

  Status make_dir(int parent_fd, const std::vector<std::string>& parts, const std::string& name) {
    if (::mkdirat(parent_fd, parts.back().c_str(), kDirMode) != 0 && errno != EEXIST) {
      return Status::Internal("creating directory '" + name + "': " + errno_text(errno));
    }
    // Existing is fine when an earlier entry implied it; open_dir refuses a
    // file or symlink squatting on the name.
    TAMAYA_ASSIGN_OR_RETURN(Fd dir, open_dir(parent_fd, {parts.back()}, 1, name));
    if (::fchmod(dir.get(), kDirMode) != 0) {
      return Status::Internal("chmod '" + name + "': " + errno_text(errno));
    }
    return Status::Ok();
  }

  Status write_file(archive* a, archive_entry* e, int parent_fd, const std::string& leaf,
                    const std::string& name) {
    // The header's size is only a hint that lets an honest oversized zip fail
    // fast; the bytes are counted as they are written.
    if (archive_entry_size_is_set(e) &&
        unpacked_ + archive_entry_size(e) > limits_.max_unpacked_bytes) {
      return too_large();
    }
    Fd fd(::openat(parent_fd, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   0600));
    if (!fd.valid()) {
      if (errno == EEXIST) {
        return duplicate_entry(name);
      }
      return Status::Internal("creating file '" + name + "': " + errno_text(errno));
    }
    while (true) {
      const void* buf = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(a, &buf, &size, &offset);
      if (r == ARCHIVE_EOF) {
        break;
      }
      if (r < ARCHIVE_WARN) {
        const char* err = archive_error_string(a);
        return Status::Invalid("code is not a valid zip archive: entry '" + name +
                               "': " + (err != nullptr ? err : "unreadable") +
                               "; rebuild the zip (encrypted entries are not supported)");
      }
      unpacked_ += static_cast<int64_t>(size);
      if (unpacked_ > limits_.max_unpacked_bytes) {
        return too_large();
      }
      const char* p = static_cast<const char*>(buf);
      while (size > 0) {
        ssize_t n = ::pwrite(fd.get(), p, size, offset);
        if (n < 0) {
          if (errno == EINTR) {
            continue;
          }
          return Status::Internal("writing '" + name + "': " + errno_text(errno));
        }
        p += n;
        size -= static_cast<size_t>(n);
        offset += n;
      }
    }
    if (::fchmod(fd.get(), file_mode(e, leaf)) != 0) {
      return Status::Internal("chmod '" + name + "': " + errno_text(errno));
    }
    return Status::Ok();
  }

  Status too_large() const {
    return Status::TooLarge("code unpacks to more than " +
                            std::to_string(limits_.max_unpacked_bytes) +
                            " bytes (artifact_max_unpacked_bytes); ship less code or raise the "
                            "limit");
  }

  int root_fd_;
  const ArtifactLimits& limits_;
  int64_t entries_ = 0;
  int64_t unpacked_ = 0;
};

}  // namespace

ArtifactLimits artifact_limits(const Settings& settings) {
  ArtifactLimits limits;
  limits.max_zip_bytes = settings.artifact_max_zip_bytes;
  limits.max_unpacked_bytes = settings.artifact_max_unpacked_bytes;
  limits.max_files = settings.artifact_max_files;
  return limits;
}

ArtifactStore::ArtifactStore(std::string root_dir, ArtifactLimits limits)
    : root_(std::move(root_dir)), limits_(limits) {
  // Temp dirs left by a crash mid-unpack are garbage: nothing refers to them.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(root_) / "code", ec)) {
    if (entry.path().filename().string().rfind(kTmpPrefix, 0) == 0) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

bool ArtifactStore::contains(const std::string& sha256) const {
  std::error_code ec;
  return is_sha256_hex(sha256) && fs::is_directory(code_dir(sha256), ec);
}

std::string ArtifactStore::code_dir(const std::string& sha256) const {
  return root_ + "/code/" + sha256;
}

Result<Artifact> ArtifactStore::put_zip(std::string_view zip_bytes) {
  const auto size = static_cast<int64_t>(zip_bytes.size());
  if (size > limits_.max_zip_bytes) {
    return Status::TooLarge("code zip is " + std::to_string(size) + " bytes, over the limit of " +
                            std::to_string(limits_.max_zip_bytes) +
                            " bytes (artifact_max_zip_bytes); ship less code");
  }
  if (zip_bytes.empty()) {
    return Status::Invalid("code is not a valid zip archive: it is empty; upload a .zip file");
  }
  Artifact artifact{sha256_hex(zip_bytes), size};
  if (contains(artifact.sha256)) {
    TAMAYA_RETURN_IF_ERROR(keep_zip(artifact.sha256, zip_bytes));
    return artifact;
  }

  const fs::path code_root = fs::path(root_) / "code";
  std::error_code ec;
  fs::create_directories(code_root, ec);
  if (ec) {
    return Status::Internal("creating '" + code_root.string() + "': " + ec.message() +
                            "; check that the data directory is writable");
  }
  const fs::path tmp = code_root / (kTmpPrefix + new_request_id());
  if (::mkdir(tmp.c_str(), kDirMode) != 0) {
    return Status::Internal("creating '" + tmp.string() + "': " + errno_text(errno));
  }

  Status status = [&]() -> Status {
    Fd root_fd(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd.valid()) {
      return Status::Internal("opening '" + tmp.string() + "': " + errno_text(errno));
    }
    if (::fchmod(root_fd.get(), kDirMode) != 0) {
      return Status::Internal("chmod '" + tmp.string() + "': " + errno_text(errno));
    }
    TAMAYA_RETURN_IF_ERROR(Unpacker(root_fd.get(), limits_).run(zip_bytes));
    // The directory's name promises complete content: flush it before the
    // rename makes it visible (and before the caller records the sha).
    if (::syncfs(root_fd.get()) != 0) {
      return Status::Internal("syncing '" + tmp.string() + "': " + errno_text(errno));
    }
    const std::string final_dir = code_dir(artifact.sha256);
    if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
      // Another put of the same bytes won the race: its content is ours.
      if ((errno == EEXIST || errno == ENOTEMPTY) && contains(artifact.sha256)) {
        fs::remove_all(tmp, ec);
        return Status::Ok();
      }
      return Status::Internal("renaming '" + tmp.string() + "' to '" + final_dir +
                              "': " + errno_text(errno));
    }
    return Status::Ok();
  }();

  if (!status.ok()) {
    fs::remove_all(tmp, ec);
    if (ec) {
      spdlog::warn("removing failed unpack dir={} error={}", tmp.string(), ec.message());
    }
    return status;
  }
  TAMAYA_RETURN_IF_ERROR(keep_zip(artifact.sha256, zip_bytes));
  return artifact;
}

std::string ArtifactStore::zip_path(const std::string& sha256) const {
  return (fs::path(root_) / "zips" / (sha256 + ".zip")).string();
}

Status ArtifactStore::keep_zip(const std::string& sha256, std::string_view zip_bytes) const {
  const std::string path = zip_path(sha256);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    return Status::Ok();
  }
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) {
    return Status::Internal("creating the zip directory for '" + path + "': " + ec.message() +
                            "; check that the data directory is writable");
  }
  const std::string tmp = path + kTmpPrefix + new_request_id();
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) {
      return Status::Internal("creating '" + tmp + "': " + errno_text(errno));
    }
    size_t done = 0;
    while (done < zip_bytes.size()) {
      ssize_t n = ::write(fd.get(), zip_bytes.data() + done, zip_bytes.size() - done);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return Status::Internal("writing '" + tmp + "': " + errno_text(err));
      }
      done += static_cast<size_t>(n);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::Internal("renaming '" + tmp + "' to '" + path + "': " + errno_text(err));
  }
  return Status::Ok();
}

}  // namespace tamaya::registry
