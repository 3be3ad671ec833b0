#include <gtest/gtest.h>

#include "gateway/routes.h"

namespace tamaya::gateway {
namespace {

Route make(std::string id, std::string method, std::string path) {
  Route r;
  r.id = std::move(id);
  r.method = std::move(method);
  r.path = std::move(path);
  r.target = "fn";
  return r;
}

RouteTable table() {
  return RouteTable({
      make("proxy", "ANY", "/pets/{proxy+}"),
      make("dog1", "GET", "/pets/dog/1"),
      make("dogid", "GET", "/pets/dog/{id}"),
      make("anydog", "ANY", "/pets/dog/{id}"),
      make("pets", "GET", "/pets"),
      make("owner", "GET", "/pets/{kind}/owners/{owner}"),
      make("root", "GET", "/"),
      make("default", "", ""),
  });
}

struct Case {
  const char* method;
  const char* path;
  const char* route;  // expected route id, "" for no match
  std::map<std::string, std::string> params;
};

TEST(GatewayRouter, MostSpecificRouteWins) {
  RouteTable t = table();
  const Case cases[] = {
      {"GET", "/pets/dog/1", "dog1", {}},                // exact beats {id} and {proxy+}
      {"GET", "/pets/dog/2", "dogid", {{"id", "2"}}},    // params beat greedy
      {"POST", "/pets/dog/2", "anydog", {{"id", "2"}}},  // ANY when no method matches
      {"GET", "/pets", "pets", {}},
      {"POST", "/pets", "default", {}},  // greedy needs one segment
      {"GET", "/pets/cat", "proxy", {{"proxy", "cat"}}},
      {"GET", "/pets/cat/a/b", "proxy", {{"proxy", "cat/a/b"}}},
      {"GET", "/pets/cat/owners/ann", "owner", {{"kind", "cat"}, {"owner", "ann"}}},
      {"GET", "/", "root", {}},
      {"DELETE", "/", "default", {}},
      {"GET", "/unknown/path", "default", {}},
      {"GET", "/pets/dog%2F1", "proxy", {{"proxy", "dog/1"}}},  // encoded slash is one segment
      {"GET", "/pets/dog/caf%C3%A9", "dogid", {{"id", "caf\xC3\xA9"}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.method) + " " + c.path);
    auto m = t.match(c.method, c.path);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->route->id, c.route);
    EXPECT_EQ(m->path_parameters, c.params);
  }
}

TEST(GatewayRouter, NoDefaultMeansNoMatch) {
  RouteTable t({make("a", "GET", "/a/{x}")});
  EXPECT_FALSE(t.match("GET", "/a").has_value());
  EXPECT_FALSE(t.match("GET", "/a/").has_value());  // an empty segment is no parameter
  EXPECT_FALSE(t.match("POST", "/a/1").has_value());
  EXPECT_FALSE(t.match("GET", "/a/1/2").has_value());
  ASSERT_TRUE(t.match("GET", "/a/1").has_value());
}

TEST(GatewayRouter, MoreSegmentsFirstAmongEquals) {
  RouteTable t({make("short", "GET", "/a/{x}"), make("long", "GET", "/a/{x}/{y}")});
  EXPECT_EQ(t.match("GET", "/a/1/2")->route->id, "long");
  EXPECT_EQ(t.match("GET", "/a/1")->route->id, "short");
}

TEST(GatewayRouter, ValidatesRouteKeys) {
  EXPECT_TRUE(validate_route_key("GET", "/items/{id}").ok());
  EXPECT_TRUE(validate_route_key("ANY", "/{proxy+}").ok());
  EXPECT_TRUE(validate_route_key("GET", "/").ok());
  const std::pair<const char*, const char*> bad[] = {
      {"get", "/a"},           {"GET", "a"},        {"GET", "/a/{proxy+}/b"},
      {"GET", "/a/{id}/{id}"}, {"GET", "/a/x{id}"}, {"GET", "/a/{}"},
      {"GET", "/a//b"},        {"G-T", "/a"},       {"GET", ""},
  };
  for (const auto& [m, p] : bad) {
    Status s = validate_route_key(m, p);
    EXPECT_FALSE(s.ok()) << m << " " << p;
    EXPECT_GT(s.message().size(), 20u) << m << " " << p;
  }
}

TEST(GatewayRouter, RouteKeyText) {
  EXPECT_EQ(make("x", "GET", "/a/{b}").route_key(), "GET /a/{b}");
  EXPECT_EQ(make("x", "", "").route_key(), "$default");
}

}  // namespace
}  // namespace tamaya::gateway
