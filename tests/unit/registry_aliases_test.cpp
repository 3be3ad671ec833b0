// Aliases, reserved concurrency, version deletion and the Lambda fields
// (runtime id, role) of the registry, persisted across reopen.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "registry/registry.h"
#include "registry/schema.h"
#include "store/database.h"
#include "zip_fixture.h"

namespace tamaya::registry {
namespace {

namespace fs = std::filesystem;
using test_support::one_file_zip;

class AliasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tamaya_alias_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    artifacts_ = std::make_unique<ArtifactStore>(dir_.string(), ArtifactLimits{});
    reopen();
    // $LATEST, then versions 1 and 2 with different code.
    FunctionConfig c = registry_->defaults();
    c.runtime = "python3";
    c.handler = "app.handler";
    c.runtime_id = "python3.12";
    c.role = "arn:aws:iam::123456789012:role/r";
    ASSERT_TRUE(registry_->create("fn", c, put("return 1")).ok());
    ASSERT_TRUE(registry_->publish("fn", "").ok());
    ASSERT_TRUE(registry_->update_code("fn", put("return 2")).ok());
    ASSERT_TRUE(registry_->publish("fn", "").ok());
  }
  void TearDown() override {
    registry_.reset();
    db_.reset();
    fs::remove_all(dir_);
  }

  Artifact put(const std::string& body) {
    auto a = artifacts_->put_zip(one_file_zip("app.py", "def handler(e, c):\n  " + body + "\n"));
    EXPECT_TRUE(a.ok()) << a.status().to_string();
    return *a;
  }

  void reopen() {
    registry_.reset();
    db_.reset();
    auto db = store::Database::open((dir_ / "tamaya.db").string(), migrations());
    ASSERT_TRUE(db.ok()) << db.status().to_string();
    db_ = std::move(*db);
    auto r = Registry::open(*db_, *artifacts_, settings_);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    registry_ = std::move(*r);
  }

  static AliasPatch to(std::string version, std::string extra = "", double weight = 0) {
    AliasPatch p;
    p.version = std::move(version);
    if (!extra.empty()) p.routing = std::make_pair(std::move(extra), weight);
    return p;
  }

  fs::path dir_;
  Settings settings_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(AliasTest, LambdaFieldsAreKeptPerVersion) {
  reopen();
  auto v1 = registry_->get("fn", "1");
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->config.runtime_id, "python3.12");
  EXPECT_EQ(v1->config.role, "arn:aws:iam::123456789012:role/r");
  ConfigPatch p;
  p.role = "arn:aws:iam::123456789012:role/other";
  ASSERT_TRUE(registry_->update_config("fn", p).ok());
  bool created = false;
  auto v3 = registry_->publish("fn", "", &created);
  EXPECT_TRUE(created) << "a role change is a change worth a version";
  EXPECT_EQ(v3->config.role, "arn:aws:iam::123456789012:role/other");
}

TEST_F(AliasTest, CreateResolveAndPersist) {
  auto a = registry_->create_alias("fn", "live", to("1", "2", 0.25));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_FALSE(a->revision_id.empty());
  reopen();
  auto got = registry_->get_alias("fn", "live");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->version, "1");
  EXPECT_EQ(got->extra_version, "2");
  EXPECT_DOUBLE_EQ(got->extra_weight, 0.25);
  EXPECT_EQ(registry_->get("fn", "live")->version, "1");
  EXPECT_EQ(registry_->resolve("fn", "live", 0.10)->version, "2");
  EXPECT_EQ(registry_->resolve("fn", "live", 0.30)->version, "1");
  EXPECT_EQ(registry_->resolve("fn", "2", 0.0)->version, "2");
  EXPECT_EQ(registry_->aliases("fn")->size(), 1u);
}

TEST_F(AliasTest, RefusesBadAliases) {
  EXPECT_EQ(registry_->create_alias("fn", "123", to("1")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->create_alias("fn", "a b", to("1")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->create_alias("fn", "x", to("9")).status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->create_alias("fn", "x", to("$LATEST", "1", 0.5)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(registry_->create_alias("fn", "x", to("1", "1", 0.5)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(registry_->create_alias("fn", "x", to("1", "2", 1.5)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(registry_->create_alias("nope", "x", to("1")).status().code(), Code::kNotFound);
  ASSERT_TRUE(registry_->create_alias("fn", "x", to("$LATEST")).ok());
  EXPECT_EQ(registry_->create_alias("fn", "x", to("1")).status().code(), Code::kAlreadyExists);
}

TEST_F(AliasTest, UpdateChecksTheRevision) {
  auto a = registry_->create_alias("fn", "live", to("1"));
  ASSERT_TRUE(a.ok());
  AliasPatch p;
  p.version = "2";
  EXPECT_EQ(registry_->update_alias("fn", "live", p, "stale").status().code(),
            Code::kFailedPrecondition);
  auto b = registry_->update_alias("fn", "live", p, a->revision_id);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(b->version, "2");
  EXPECT_NE(b->revision_id, a->revision_id);
  ASSERT_TRUE(registry_->remove_alias("fn", "live").ok());
  EXPECT_EQ(registry_->get_alias("fn", "live").status().code(), Code::kNotFound);
}

TEST_F(AliasTest, VersionsInUseCannotBeDeleted) {
  ASSERT_TRUE(registry_->create_alias("fn", "live", to("1", "2", 0.5)).ok());
  EXPECT_EQ(registry_->remove_version("fn", "2").code(), Code::kAlreadyExists);
  EXPECT_EQ(registry_->remove_version("fn", "$LATEST").code(), Code::kInvalidArgument);
  ASSERT_TRUE(registry_->remove_alias("fn", "live").ok());
  ASSERT_TRUE(registry_->remove_version("fn", "2").ok());
  reopen();
  EXPECT_EQ(registry_->get("fn", "2").status().code(), Code::kNotFound);
  EXPECT_TRUE(registry_->get("fn", "1").ok());
}

TEST_F(AliasTest, ReservedConcurrencyPersistsAndGoesWithTheFunction) {
  EXPECT_FALSE(registry_->reserved_concurrency("fn")->has_value());
  ASSERT_TRUE(registry_->set_reserved_concurrency("fn", 0).ok());
  reopen();
  EXPECT_EQ(registry_->reserved_concurrency("fn")->value_or(-1), 0);
  EXPECT_EQ(registry_->set_reserved_concurrency("fn", -1).code(), Code::kInvalidArgument);
  ASSERT_TRUE(registry_->set_reserved_concurrency("fn", std::nullopt).ok());
  reopen();
  EXPECT_FALSE(registry_->reserved_concurrency("fn")->has_value());
  ASSERT_TRUE(registry_->create_alias("fn", "live", to("1")).ok());
  ASSERT_TRUE(registry_->remove("fn").ok());
  reopen();
  EXPECT_EQ(registry_->reserved_concurrency("fn").status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->get_alias("fn", "live").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace tamaya::registry
