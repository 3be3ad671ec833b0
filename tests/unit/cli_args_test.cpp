#include <gtest/gtest.h>

#include "cli/args.h"

namespace tamaya::cli {
namespace {

TEST(ParseKeyValues, SplitsAtTheFirstEquals) {
  auto parsed = parse_key_values({"A=1", "URL=http://x/?a=b", "EMPTY="}, "--env");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  const KeyValues expected = {{"A", "1"}, {"URL", "http://x/?a=b"}, {"EMPTY", ""}};
  EXPECT_EQ(*parsed, expected);
}

TEST(ParseKeyValues, NothingGivenIsEmpty) {
  auto parsed = parse_key_values({}, "--env");
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
}

TEST(ParseKeyValues, RejectsMissingEquals) {
  auto parsed = parse_key_values({"A=1", "GREETING"}, "--env");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parsed.status().message(), "--env 'GREETING' has no '='; write --env KEY=VALUE");
}

TEST(ParseKeyValues, RejectsEmptyKey) {
  auto parsed = parse_key_values({"=value"}, "--set");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("--set '=value' has an empty key"), std::string::npos);
}

TEST(ParseKeyValues, RejectsKeyGivenTwice) {
  auto parsed = parse_key_values({"A=1", "B=2", "A=3"}, "--env");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("'A' twice"), std::string::npos);
}

}  // namespace
}  // namespace tamaya::cli
