// The host's facts as the daemon reads them: its CPUs, generated files.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "common/fd.h"
#include "common/host.h"

namespace tamaya {
namespace {

TEST(UsableCores, AtLeastOne) { EXPECT_GE(usable_cores(), 1); }

TEST(ReadAtZero, ReadsAGeneratedFileAfreshEachTime) {
  Fd fd(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto first = read_at_zero(fd.get());
  auto second = read_at_zero(fd.get());
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  // Both start at the file's beginning: this process's pid.
  const std::string pid = std::to_string(getpid()) + " ";
  EXPECT_EQ(first->rfind(pid, 0), 0u) << *first;
  EXPECT_EQ(second->rfind(pid, 0), 0u) << *second;
}

TEST(ReadAtZero, NoFdNoText) { EXPECT_EQ(read_at_zero(-1), std::nullopt); }

}  // namespace
}  // namespace tamaya
