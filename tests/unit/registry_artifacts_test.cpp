#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/encoding.h"
#include "registry/artifacts.h"

namespace tamaya::registry {
namespace {

namespace fs = std::filesystem;

struct ZipEntry {
  std::string path;
  std::string data;        // file content, or the target for symlinks
  mode_t type = AE_IFREG;  // AE_IFREG, AE_IFDIR, AE_IFLNK
  mode_t perm = 0644;
};

la_ssize_t append_cb(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// Builds a zip in memory with libarchive, the way `zip -y` would on unix.
std::string make_zip(const std::vector<ZipEntry>& entries) {
  std::string out;
  archive* a = archive_write_new();
  EXPECT_EQ(archive_write_set_format_zip(a), ARCHIVE_OK);
  archive_write_set_bytes_in_last_block(a, 1);  // no padding to 10 KiB blocks
  EXPECT_EQ(archive_write_open(a, &out, nullptr, append_cb, nullptr), ARCHIVE_OK);
  for (const ZipEntry& z : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, z.path.c_str());
    archive_entry_set_filetype(e, z.type);
    archive_entry_set_perm(e, z.perm);
    archive_entry_set_mtime(e, 1'700'000'000, 0);
    if (z.type == AE_IFLNK) {
      archive_entry_set_symlink(e, z.data.c_str());
      archive_entry_set_size(e, 0);
    } else if (z.type == AE_IFREG) {
      archive_entry_set_size(e, static_cast<la_int64_t>(z.data.size()));
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    if (z.type == AE_IFREG && !z.data.empty()) {
      EXPECT_EQ(archive_write_data(a, z.data.data(), z.data.size()),
                static_cast<la_ssize_t>(z.data.size()));
    }
    archive_entry_free(e);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

uint32_t crc32(std::string_view data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void le16(std::string& s, uint16_t v) {
  s += char(v & 0xff);
  s += char(v >> 8);
}
void le32(std::string& s, uint32_t v) {
  le16(s, uint16_t(v & 0xffff));
  le16(s, uint16_t(v >> 16));
}

// A stored (uncompressed) zip whose entries say "made by MS-DOS": no unix
// modes at all, as Windows' built-in zip writes them.
// `claimed_size`, when set, is written as every entry's uncompressed size: a
// lie that a reader trusting headers would believe.
std::string make_dos_zip(const std::vector<std::pair<std::string, std::string>>& files,
                         std::optional<uint32_t> claimed_size = std::nullopt) {
  std::string body, central;
  for (const auto& [name, data] : files) {
    const uint32_t offset = static_cast<uint32_t>(body.size());
    const uint32_t crc = crc32(data);
    le32(body, 0x04034b50);
    le16(body, 20);    // version needed
    le16(body, 0);     // flags
    le16(body, 0);     // stored
    le16(body, 0);     // time
    le16(body, 0x21);  // date
    le32(body, crc);
    le32(body, uint32_t(data.size()));
    le32(body, claimed_size.value_or(uint32_t(data.size())));
    le16(body, uint16_t(name.size()));
    le16(body, 0);
    body += name;
    body += data;

    le32(central, 0x02014b50);
    le16(central, 20);  // made by: MS-DOS (high byte 0), spec 2.0
    le16(central, 20);
    le16(central, 0);
    le16(central, 0);
    le16(central, 0);
    le16(central, 0x21);
    le32(central, crc);
    le32(central, uint32_t(data.size()));
    le32(central, claimed_size.value_or(uint32_t(data.size())));
    le16(central, uint16_t(name.size()));
    le16(central, 0);  // extra
    le16(central, 0);  // comment
    le16(central, 0);  // disk
    le16(central, 0);  // internal attrs
    le32(central, 0);  // external attrs: plain file
    le32(central, offset);
    central += name;
  }
  std::string out = body + central;
  le32(out, 0x06054b50);
  le16(out, 0);
  le16(out, 0);
  le16(out, uint16_t(files.size()));
  le16(out, uint16_t(files.size()));
  le32(out, uint32_t(central.size()));
  le32(out, uint32_t(body.size()));
  le16(out, 0);
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t perm_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

class ArtifactsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("tamaya_artifacts_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Nothing but finished artifacts may be left under code/.
  std::vector<std::string> code_children() const {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ / "code", ec)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }

  void expect_rejected(const std::string& zip, Code code, const std::string& needle,
                       ArtifactLimits limits = {}) {
    ArtifactStore store(root_.string(), limits);
    auto r = store.put_zip(zip);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status().to_string();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
    EXPECT_TRUE(code_children().empty()) << "leftover: " << code_children().front();
    EXPECT_FALSE(store.contains(sha256_hex(zip)));
  }

  fs::path root_;
};

TEST_F(ArtifactsTest, UnpacksFilesAndSubdirectories) {
  std::string zip = make_zip({
      {"app.py", "def handler(e, c):\n  return 1\n"},
      {"lib/", "", AE_IFDIR, 0700},
      {"lib/util.py", "X = 1\n", AE_IFREG, 0600},
      {"deep/er/file.txt", "implied parents"},
  });
  ArtifactStore store(root_.string(), {});
  auto r = store.put_zip(zip);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->sha256, sha256_hex(zip));
  EXPECT_EQ(r->size, static_cast<int64_t>(zip.size()));
  EXPECT_TRUE(store.contains(r->sha256));

  fs::path dir = store.code_dir(r->sha256);
  EXPECT_EQ(dir, root_ / "code" / r->sha256);
  EXPECT_EQ(read_file(dir / "app.py"), "def handler(e, c):\n  return 1\n");
  EXPECT_EQ(read_file(dir / "lib" / "util.py"), "X = 1\n");
  EXPECT_EQ(read_file(dir / "deep" / "er" / "file.txt"), "implied parents");
  // Other uids must read everything: directories 0755, files at least 0444,
  // even when the zip said 0700 / 0600.
  EXPECT_EQ(perm_of(dir), 0755u);
  EXPECT_EQ(perm_of(dir / "lib"), 0755u);
  EXPECT_EQ(perm_of(dir / "deep" / "er"), 0755u);
  EXPECT_EQ(perm_of(dir / "lib" / "util.py"), 0644u);
  EXPECT_EQ(perm_of(dir / "app.py"), 0644u);
}

TEST_F(ArtifactsTest, KeepsExecBitAndDropsGroupWriteAndSetuid) {
  std::string zip = make_zip({
      {"bootstrap", "#!/bin/sh\necho hi\n", AE_IFREG, 0755},
      {"tool", "x", AE_IFREG, 04700},
      {"shared.txt", "x", AE_IFREG, 0666},
  });
  ArtifactStore store(root_.string(), {});
  auto r = store.put_zip(zip);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  fs::path dir = store.code_dir(r->sha256);
  EXPECT_EQ(perm_of(dir / "bootstrap"), 0755u);
  EXPECT_EQ(perm_of(dir / "tool"), 0755u);
  EXPECT_EQ(perm_of(dir / "shared.txt"), 0644u);
}

TEST_F(ArtifactsTest, ZipWithoutUnixModesGetsDefaultsAndExecutableBootstrap) {
  std::string zip = make_dos_zip({{"bootstrap", "#!/bin/sh\n"}, {"data.txt", "d"}});
  ArtifactStore store(root_.string(), {});
  auto r = store.put_zip(zip);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  fs::path dir = store.code_dir(r->sha256);
  EXPECT_EQ(read_file(dir / "bootstrap"), "#!/bin/sh\n");
  EXPECT_EQ(perm_of(dir / "bootstrap"), 0755u);
  EXPECT_EQ(perm_of(dir / "data.txt"), 0644u);
}

TEST_F(ArtifactsTest, KeepsInRootSymlinks) {
  std::string zip = make_zip({
      {"lib/real.py", "R = 1\n"},
      {"lib/alias.py", "real.py", AE_IFLNK, 0777},
      {"sub/up.py", "../lib/real.py", AE_IFLNK, 0777},
  });
  ArtifactStore store(root_.string(), {});
  auto r = store.put_zip(zip);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  fs::path dir = store.code_dir(r->sha256);
  ASSERT_TRUE(fs::is_symlink(dir / "lib" / "alias.py"));
  EXPECT_EQ(fs::read_symlink(dir / "lib" / "alias.py"), "real.py");
  EXPECT_EQ(read_file(dir / "lib" / "alias.py"), "R = 1\n");
  EXPECT_EQ(read_file(dir / "sub" / "up.py"), "R = 1\n");
}

TEST_F(ArtifactsTest, RejectsZipSlip) {
  expect_rejected(make_zip({{"ok.txt", "fine"}, {"../evil", "pwned"}}), Code::kInvalidArgument,
                  "'../evil' contains a '..' component");
  EXPECT_FALSE(fs::exists(root_ / "evil"));
  expect_rejected(make_zip({{"a/../../evil", "pwned"}}), Code::kInvalidArgument, "'..'");
}

TEST_F(ArtifactsTest, RejectsAbsolutePath) {
  expect_rejected(make_zip({{"/etc/x", "pwned"}}), Code::kInvalidArgument,
                  "'/etc/x' has an absolute path");
}

TEST_F(ArtifactsTest, RejectsSymlinkToAbsoluteTarget) {
  expect_rejected(make_zip({{"passwd", "/etc/passwd", AE_IFLNK, 0777}}), Code::kInvalidArgument,
                  "symlink to '/etc/passwd', which is outside the code root");
}

TEST_F(ArtifactsTest, RejectsSymlinkClimbingOut) {
  expect_rejected(make_zip({{"a/x", "../../x", AE_IFLNK, 0777}}), Code::kInvalidArgument,
                  "symlink to '../../x'");
  expect_rejected(make_zip({{"x", "..", AE_IFLNK, 0777}}), Code::kInvalidArgument,
                  "outside the code root");
}

TEST_F(ArtifactsTest, RejectsWritingThroughASymlinkedDirectory) {
  // "d" points inside the root, but an entry below it would be written via a
  // link; refusing that keeps later links' lexical checks sound.
  expect_rejected(
      make_zip({{"real/", "", AE_IFDIR, 0755}, {"d", "real", AE_IFLNK, 0777}, {"d/file", "x"}}),
      Code::kInvalidArgument, "which is a symlink or a file");
}

TEST_F(ArtifactsTest, RejectsDuplicateEntries) {
  expect_rejected(make_zip({{"a.txt", "1"}, {"a.txt", "2"}}), Code::kInvalidArgument,
                  "appears twice");
}

TEST_F(ArtifactsTest, RejectsTooManyFiles) {
  ArtifactLimits limits;
  limits.max_files = 3;
  expect_rejected(make_zip({{"1", "a"}, {"2", "b"}, {"3", "c"}, {"4", "d"}}), Code::kTooLarge,
                  "more than 3 entries (artifact_max_files)", limits);
  // Exactly at the limit is fine.
  ArtifactStore store(root_.string(), limits);
  EXPECT_TRUE(store.put_zip(make_zip({{"1", "a"}, {"2", "b"}, {"3", "c"}})).ok());
}

TEST_F(ArtifactsTest, RejectsTooManyUnpackedBytes) {
  ArtifactLimits limits;
  limits.max_unpacked_bytes = 1000;
  // Compresses to a few bytes: the zip is small, its content is not.
  std::string bomb = make_zip({{"a", std::string(600, 'a')}, {"b", std::string(600, 'b')}});
  ASSERT_LT(bomb.size(), 1000u);
  expect_rejected(bomb, Code::kTooLarge, "more than 1000 bytes (artifact_max_unpacked_bytes)",
                  limits);
}

TEST_F(ArtifactsTest, CountsUnpackedBytesInsteadOfTrustingHeaders) {
  ArtifactLimits limits;
  limits.max_unpacked_bytes = 1000;
  // Each entry claims 10 bytes but holds 800.
  std::string liar = make_dos_zip({{"a", std::string(800, 'a')}, {"b", std::string(800, 'b')}},
                                  /*claimed_size=*/10);
  expect_rejected(liar, Code::kTooLarge, "(artifact_max_unpacked_bytes)", limits);
}

TEST_F(ArtifactsTest, RejectsZipOverSizeLimit) {
  ArtifactLimits limits;
  limits.max_zip_bytes = 100;
  std::string zip = make_zip({{"a", "some content that makes the zip over 100 bytes"}});
  ASSERT_GT(zip.size(), 100u);
  expect_rejected(zip, Code::kTooLarge, "(artifact_max_zip_bytes)", limits);
}

TEST_F(ArtifactsTest, RejectsGarbage) {
  {
    SCOPED_TRACE("text");
    expect_rejected("this is not a zip file at all, just some bytes", Code::kInvalidArgument,
                    "code is not a valid zip archive: ");
  }
  {
    SCOPED_TRACE("empty");
    expect_rejected("", Code::kInvalidArgument, "code is not a valid zip archive: ");
  }
  {
    SCOPED_TRACE("truncated");
    std::string zip = make_zip({{"a.txt", std::string(5000, 'z')}});
    expect_rejected(zip.substr(0, zip.size() / 2), Code::kInvalidArgument,
                    "code is not a valid zip archive");
  }
}

TEST_F(ArtifactsTest, SameZipTwiceIsStoredOnce) {
  std::string zip = make_zip({{"app.py", "print(1)\n"}});
  ArtifactStore store(root_.string(), {});
  auto first = store.put_zip(zip);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto second = store.put_zip(zip);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(first->sha256, second->sha256);
  EXPECT_EQ(code_children(), std::vector<std::string>{first->sha256});
}

TEST(ArtifactLimitsTest, ComeFromSettings) {
  Settings settings;
  settings.artifact_max_zip_bytes = 1;
  settings.artifact_max_unpacked_bytes = 2;
  settings.artifact_max_files = 3;
  ArtifactLimits limits = artifact_limits(settings);
  EXPECT_EQ(limits.max_zip_bytes, 1);
  EXPECT_EQ(limits.max_unpacked_bytes, 2);
  EXPECT_EQ(limits.max_files, 3);
  // The struct's own defaults match the documented settings defaults.
  ArtifactLimits defaults = artifact_limits(Settings{});
  EXPECT_EQ(defaults.max_zip_bytes, ArtifactLimits{}.max_zip_bytes);
  EXPECT_EQ(defaults.max_unpacked_bytes, ArtifactLimits{}.max_unpacked_bytes);
  EXPECT_EQ(defaults.max_files, ArtifactLimits{}.max_files);
}

TEST_F(ArtifactsTest, LeftoverTempDirsAreRemovedAtStart) {
  fs::create_directories(root_ / "code" / ".tmp-crashed" / "sub");
  ArtifactStore store(root_.string(), {});
  EXPECT_TRUE(code_children().empty());
  EXPECT_FALSE(store.contains("not-a-sha"));
  EXPECT_FALSE(store.contains("../../etc"));
}

}  // namespace
}  // namespace tamaya::registry
