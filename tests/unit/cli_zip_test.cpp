#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cli/zip.h"

namespace tamaya::cli {
namespace {

namespace fs = std::filesystem;

struct ReadEntry {
  std::string name;
  mode_t mode = 0;
  std::string symlink;
  std::string content;
};

// Reads a zip back with libarchive, in archive order.
std::vector<ReadEntry> read_zip(const std::string& bytes) {
  std::vector<ReadEntry> entries;
  struct archive* a = archive_read_new();
  archive_read_support_format_zip(a);
  EXPECT_EQ(archive_read_open_memory(a, bytes.data(), bytes.size()), ARCHIVE_OK)
      << archive_error_string(a);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    ReadEntry entry;
    entry.name = archive_entry_pathname(e);
    entry.mode = archive_entry_mode(e);
    if (const char* target = archive_entry_symlink(e)) entry.symlink = target;
    char buffer[4096];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof buffer)) > 0) entry.content.append(buffer, n);
    entries.push_back(entry);
  }
  archive_read_free(a);
  return entries;
}

void write(const fs::path& path, const std::string& content, fs::perms perms) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  fs::permissions(path, perms);
}

class ZipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("tamaya_cli_zip_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A function tree with the cases the builder must handle.
  fs::path make_tree(const std::string& name) {
    const fs::path dir = root_ / name;
    write(dir / "app.py", "def handler(event, context):\n    return event\n",
          fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
              fs::perms::others_read);
    write(dir / "bin" / "tool", "#!/bin/sh\necho hi\n",
          fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
    write(dir / "lib" / "util.py", "X = 1\n", fs::perms::owner_read | fs::perms::owner_write);
    fs::create_symlink("lib/util.py", dir / "util_link.py");
    write(dir / ".git" / "HEAD", "ref: refs/heads/main\n", fs::perms::owner_all);
    write(dir / "lib" / "__pycache__" / "util.cpython-311.pyc", "junk", fs::perms::owner_all);
    write(dir / "node_modules" / ".cache" / "x", "junk", fs::perms::owner_all);
    write(dir / "node_modules" / "left-pad" / "index.js", "module.exports = 1;\n",
          fs::perms::owner_read | fs::perms::owner_write);
    return dir;
  }

  fs::path root_;
};

TEST_F(ZipTest, SameTreeGivesSameBytes) {
  const fs::path a = make_tree("a");
  auto first = zip_directory(a);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto again = zip_directory(a);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*first, *again);

  // A copy made later (other mtimes, other inode order) zips to the same bytes.
  const fs::path b = make_tree("b");
  const auto old_time = fs::file_time_type::clock::now() - std::chrono::hours(24 * 400);
  fs::last_write_time(b / "app.py", old_time);
  auto copy = zip_directory(b);
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(*first, *copy);
}

TEST_F(ZipTest, BytesDoNotDependOnTimeZone) {
  const fs::path dir = make_tree("tz");
  const char* saved = std::getenv("TZ");
  const std::string saved_tz = saved ? saved : "";
  ::setenv("TZ", "America/Los_Angeles", 1);
  ::tzset();
  auto west = zip_directory(dir);
  ::setenv("TZ", "Asia/Tokyo", 1);
  ::tzset();
  auto east = zip_directory(dir);
  if (saved) {
    ::setenv("TZ", saved_tz.c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
  ASSERT_TRUE(west.ok());
  ASSERT_TRUE(east.ok());
  EXPECT_EQ(*west, *east);
}

TEST_F(ZipTest, EntriesAreSortedWithModesAndSymlinksKept) {
  auto zip = zip_directory(make_tree("t"));
  ASSERT_TRUE(zip.ok()) << zip.status().to_string();
  const auto entries = read_zip(*zip);

  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.name);
  const std::vector<std::string> expected = {"app.py",
                                             "bin/",
                                             "bin/tool",
                                             "lib/",
                                             "lib/util.py",
                                             "node_modules/",
                                             "node_modules/left-pad/",
                                             "node_modules/left-pad/index.js",
                                             "util_link.py"};
  EXPECT_EQ(names, expected);

  std::map<std::string, ReadEntry> by_name;
  for (const auto& e : entries) by_name[e.name] = e;
  EXPECT_TRUE(S_ISREG(by_name["app.py"].mode));
  EXPECT_EQ(by_name["app.py"].mode & 07777, 0644u);
  EXPECT_EQ(by_name["app.py"].content, "def handler(event, context):\n    return event\n");
  EXPECT_EQ(by_name["bin/tool"].mode & 07777, 0750u);
  EXPECT_EQ(by_name["lib/util.py"].mode & 07777, 0600u);
  EXPECT_TRUE(S_ISDIR(by_name["lib/"].mode));
  EXPECT_TRUE(S_ISLNK(by_name["util_link.py"].mode));
  EXPECT_EQ(by_name["util_link.py"].symlink, "lib/util.py");
}

TEST_F(ZipTest, SingleFileIsAtTheRoot) {
  const fs::path file = root_ / "deep" / "dir" / "handler.py";
  write(file, "print(1)\n", fs::perms::owner_all);
  auto zip = package_code(file);
  ASSERT_TRUE(zip.ok()) << zip.status().to_string();
  const auto entries = read_zip(*zip);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].name, "handler.py");
  EXPECT_EQ(entries[0].mode & 07777, 0700u);
  EXPECT_EQ(entries[0].content, "print(1)\n");
}

TEST_F(ZipTest, ZipFileIsSentAsIs) {
  auto built = zip_directory(make_tree("z"));
  ASSERT_TRUE(built.ok());
  const fs::path zip_path = root_ / "code.ZIP";
  std::ofstream(zip_path, std::ios::binary) << *built;
  auto sent = package_code(zip_path);
  ASSERT_TRUE(sent.ok()) << sent.status().to_string();
  EXPECT_EQ(*sent, *built);
}

TEST_F(ZipTest, RejectsWhatCannotBeDeployed) {
  const fs::path fake = root_ / "fake.zip";
  write(fake, "not a zip", fs::perms::owner_all);
  auto not_zip = package_code(fake);
  ASSERT_FALSE(not_zip.ok());
  EXPECT_EQ(not_zip.status().code(), Code::kInvalidArgument);
  EXPECT_NE(not_zip.status().message().find("not a zip archive"), std::string::npos);

  auto missing = package_code(root_ / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);

  fs::create_directories(root_ / "empty" / ".git");
  write(root_ / "empty" / ".git" / "HEAD", "x", fs::perms::owner_all);
  auto empty = package_code(root_ / "empty");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no files"), std::string::npos);
}

}  // namespace
}  // namespace tamaya::cli
