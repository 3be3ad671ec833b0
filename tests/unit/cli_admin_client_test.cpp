#include <gtest/gtest.h>

#include "cli/admin_client.h"
#include "cli/output.h"

namespace tamaya::cli {
namespace {

TEST(StatusFromResponse, CarriesTheApiMessageAndKind) {
  net::Response response{
      404, {}, R"({"error":{"code":"NotFound","message":"function 'x' not found"}})"};
  Status status = status_from_response(response);
  EXPECT_EQ(status.code(), Code::kNotFound);
  EXPECT_EQ(status.message(), "function 'x' not found");

  response = {429,
              {{"retry-after", "2"}},
              R"({"error":{"code":"TooManyRequests","message":"function x is busy"}})"};
  status = status_from_response(response);
  EXPECT_EQ(status.code(), Code::kResourceExhausted);
  EXPECT_EQ(status.message(), "function x is busy (retry after 2 s)");
}

TEST(StatusFromResponse, ForeignBodyIsQuoted) {
  net::Response response{502, {}, "<html>Bad Gateway</html>"};
  Status status = status_from_response(response);
  EXPECT_EQ(status.code(), Code::kInternal);
  EXPECT_EQ(status.message(),
            "tamaya answered HTTP 502: <html>Bad Gateway</html>; is --endpoint pointing at the "
            "tamaya admin port?");
}

TEST(PercentEncode, KeepsOnlyUnreserved) {
  EXPECT_EQ(percent_encode("hello-World_1.~"), "hello-World_1.~");
  EXPECT_EQ(percent_encode("$LATEST"), "%24LATEST");
  EXPECT_EQ(percent_encode("a/b c?&"), "a%2Fb%20c%3F%26");
  EXPECT_EQ(function_path("../x"), "/v1/functions/..%2Fx");
}

TEST(FindHeader, IgnoresCase) {
  net::Headers headers = {{"X-Tamaya-Function-Error", "Unhandled"}, {"x-a", "1"}, {"X-A", "2"}};
  EXPECT_EQ(find_header(headers, "x-tamaya-function-error"), "Unhandled");
  EXPECT_EQ(find_header(headers, "X-A"), "1");
  EXPECT_EQ(find_header(headers, "X-B"), std::nullopt);
}

TEST(PrintTable, AlignsColumnsWithoutTrailingBlanks) {
  std::ostringstream out;
  print_table(out, {"NAME", "RUNTIME", "UPDATED"},
              {{"hello", "python3", "2026-01-01"}, {"a", "nodejs", ""}});
  EXPECT_EQ(out.str(),
            "NAME   RUNTIME  UPDATED\n"
            "hello  python3  2026-01-01\n"
            "a      nodejs\n");
}

TEST(FieldText, RendersScalarsAndSkipsMissing) {
  const auto fn = nlohmann::json::parse(R"({"name":"x","memory_mb":128,"gone":null})");
  EXPECT_EQ(field_text(fn, "name"), "x");
  EXPECT_EQ(field_text(fn, "memory_mb"), "128");
  EXPECT_EQ(field_text(fn, "gone"), "");
  EXPECT_EQ(field_text(fn, "absent"), "");
  EXPECT_EQ(field_text(nlohmann::json::array(), "name"), "");
}

}  // namespace
}  // namespace tamaya::cli
