#include <gtest/gtest.h>

#include "common/strings.h"

namespace tamaya {
namespace {

using Pieces = std::vector<std::string_view>;

TEST(Split, KeepsEmptyPiecesBetweenAndAtTheEnds) {
  EXPECT_EQ(split("a::b", ':'), (Pieces{"a", "", "b"}));
  EXPECT_EQ(split(":a:", ':'), (Pieces{"", "a", ""}));
  EXPECT_EQ(split("", ':'), (Pieces{""}));
  EXPECT_EQ(split("no separator", ':'), (Pieces{"no separator"}));
}

TEST(Split, ALambdaArnHasItsEightFields) {
  auto parts = split("arn:aws:lambda:us-east-1:123456789012:function:shop:live", ':');
  ASSERT_EQ(parts.size(), 8u);
  EXPECT_EQ(parts[2], "lambda");
  EXPECT_EQ(parts[6], "shop");
  EXPECT_EQ(parts[7], "live");
}

TEST(Trim, RemovesAsciiWhitespaceOnBothSidesOnly) {
  EXPECT_EQ(trim(" \t a b \r\n"), "a b");
  EXPECT_EQ(trim("   "), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("x"), "x");
}

TEST(AppendEscapedLine, EscapesBackslashAndNewlineOnly) {
  std::string out = "x:";
  append_escaped_line(out, "a\\b\nc\td");
  EXPECT_EQ(out, "x:a\\\\b\\nc\td");
}

TEST(UnescapeLine, UndoesAppendEscapedLine) {
  for (std::string text : {"", "plain", "a\\b\nc", "\\n is not a newline", "ends\\"}) {
    std::string escaped;
    append_escaped_line(escaped, text);
    EXPECT_EQ(escaped.find('\n'), std::string::npos) << escaped;
    EXPECT_EQ(unescape_line(escaped), text);
  }
}

TEST(Lower, LowersAsciiLettersAndLeavesOtherBytes) {
  EXPECT_EQ(lower("Content-Type: ÄB"), "content-type: Äb");
  EXPECT_EQ(lower(""), "");
}

TEST(Iequals, IgnoresOnlyAsciiCase) {
  EXPECT_TRUE(iequals("Content-Type", "content-type"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Content-Type", "content-typ"));
  EXPECT_FALSE(iequals("a-b", "a_b"));
  EXPECT_FALSE(iequals("\xC3\x89", "\xC3\xA9"));  // É and é: not ASCII
}

TEST(IequalsPrefix, ComparesOnlyThePrefixWithoutCase) {
  EXPECT_TRUE(iequals_prefix("Bearer abc", "bearer "));
  EXPECT_TRUE(iequals_prefix("TEXT/plain", "text/"));
  EXPECT_TRUE(iequals_prefix("x", ""));
  EXPECT_FALSE(iequals_prefix("text", "text/"));
  EXPECT_FALSE(iequals_prefix("Access-Control", "access-control-"));
}

}  // namespace
}  // namespace tamaya
