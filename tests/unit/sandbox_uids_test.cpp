#include <set>

#include "gtest/gtest.h"
#include "sandbox/uids.h"

namespace tamaya::sandbox {
namespace {

TEST(UidMap, StablePerNameAndNeverShared) {
  UidMap map(200'000, 8);
  auto a = map.uid_for("alpha");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*map.uid_for("alpha"), *a);
  std::set<uint32_t> seen;
  for (int i = 0; i < 8; ++i) {
    auto uid = map.uid_for("fn" + std::to_string(i) + (i == 0 ? "" : "x"));
    if (i < 7) {
      ASSERT_TRUE(uid.ok());
      EXPECT_GE(*uid, 200'000u);
      EXPECT_LT(*uid, 200'008u);
      EXPECT_NE(*uid, *a);
      EXPECT_TRUE(seen.insert(*uid).second) << "uid " << *uid << " given twice";
    } else {
      EXPECT_EQ(uid.status().code(), Code::kResourceExhausted);
      EXPECT_NE(uid.status().message().find("sandbox_uid_count"), std::string::npos);
    }
  }
  map.forget("alpha");
  EXPECT_TRUE(map.uid_for("late").ok());
  // Same name, same slot in a fresh map (a restarted daemon).
  UidMap again(200'000, 8);
  EXPECT_EQ(*again.uid_for("alpha"), *a);
}

}  // namespace
}  // namespace tamaya::sandbox
