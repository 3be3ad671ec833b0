// Scaling in the registry: reservations checked against concurrency_limit
// less concurrency_unreserved_min, provisioned concurrency per qualifier
// (bounded by max_concurrency, the reservation or the unreserved pool), the
// idle timeout, persistence across reopen, and the change listener.
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

class ScalingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tamaya_scaling_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    settings_.concurrency_limit = 20;
    settings_.concurrency_unreserved_min = 5;
    artifacts_ = std::make_unique<ArtifactStore>(dir_.string(), ArtifactLimits{});
    reopen();
    for (const char* name : {"a", "b", "c"}) {
      FunctionConfig c = registry_->defaults();
      c.runtime = "python3";
      c.handler = "app.handler";
      c.max_concurrency = 10;
      ASSERT_TRUE(registry_->create(name, c, put()).ok());
    }
  }
  void TearDown() override {
    registry_.reset();
    db_.reset();
    fs::remove_all(dir_);
  }

  Artifact put() {
    auto a = artifacts_->put_zip(one_file_zip("app.py", "def handler(e, c):\n  return 1\n"));
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

  fs::path dir_;
  Settings settings_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(ScalingTest, ReservationsMustLeaveTheUnreservedMinimum) {
  // 20 in all, 5 must stay unreserved: 15 can be reserved across functions.
  ASSERT_TRUE(registry_->set_reserved_concurrency("a", 10).ok());
  Status over = registry_->set_reserved_concurrency("b", 6);
  EXPECT_EQ(over.code(), Code::kInvalidArgument);
  EXPECT_NE(over.message().find("UnreservedConcurrentExecution below its minimum value of [5]"),
            std::string::npos)
      << over.message();
  EXPECT_NE(over.message().find("at most 5"), std::string::npos) << over.message();
  EXPECT_TRUE(registry_->set_reserved_concurrency("b", 5).ok());
  // Changing a's own reservation does not count a's old value against it.
  EXPECT_TRUE(registry_->set_reserved_concurrency("a", 9).ok());
  EXPECT_EQ(registry_->set_reserved_concurrency("a", 11).code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->set_reserved_concurrency("c", 21).code(), Code::kInvalidArgument);
  EXPECT_TRUE(registry_->set_reserved_concurrency("a", std::nullopt).ok());
  EXPECT_TRUE(registry_->set_reserved_concurrency("c", 10).ok());
}

TEST_F(ScalingTest, ProvisionedIsBoundedAndPersisted) {
  EXPECT_EQ(registry_->set_provisioned("a", kLatest, 11).code(), Code::kInvalidArgument)
      << "above max_concurrency";
  EXPECT_EQ(registry_->set_provisioned("a", "7", 1).code(), Code::kNotFound) << "no version 7";
  ASSERT_TRUE(registry_->set_provisioned("a", kLatest, 3).ok());
  // Unreserved functions' provisioned instances may take at most
  // limit - reserved - unreserved minimum = 15 together.
  ASSERT_TRUE(registry_->set_provisioned("b", kLatest, 10).ok());
  Status full = registry_->set_provisioned("c", kLatest, 3);
  EXPECT_EQ(full.code(), Code::kInvalidArgument) << full.message();
  EXPECT_NE(full.message().find("at most 2"), std::string::npos) << full.message();
  // With a reservation, provisioned is bounded by it instead.
  ASSERT_TRUE(registry_->set_reserved_concurrency("c", 4).ok());
  EXPECT_EQ(registry_->set_provisioned("c", kLatest, 5).code(), Code::kInvalidArgument);
  ASSERT_TRUE(registry_->set_provisioned("c", kLatest, 4).ok());
  // ... and the reservation cannot drop below it.
  EXPECT_EQ(registry_->set_reserved_concurrency("c", 3).code(), Code::kInvalidArgument);
  ASSERT_TRUE(registry_->set_idle_timeout("c", 30).ok());
  EXPECT_EQ(registry_->set_idle_timeout("c", 0).code(), Code::kInvalidArgument);

  reopen();
  auto a = registry_->scaling("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->provisioned.at(kLatest), 3);
  EXPECT_FALSE(a->reserved_concurrency.has_value());
  auto c = registry_->scaling("c");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->provisioned.at(kLatest), 4);
  EXPECT_EQ(c->reserved_concurrency.value_or(-1), 4);
  EXPECT_EQ(c->idle_timeout_s.value_or(-1), 30);

  ASSERT_TRUE(registry_->set_provisioned("a", kLatest, 0).ok());
  EXPECT_EQ(registry_->set_provisioned("a", kLatest, 0).code(), Code::kNotFound);
  EXPECT_TRUE(registry_->scaling("a")->provisioned.empty());
}

TEST_F(ScalingTest, DeletingAVersionDropsItsProvisionedConcurrency) {
  ASSERT_TRUE(registry_->publish("a", "").ok());
  ASSERT_TRUE(registry_->set_provisioned("a", "1", 2).ok());
  ASSERT_TRUE(registry_->remove_version("a", "1").ok());
  EXPECT_TRUE(registry_->scaling("a")->provisioned.empty());
  reopen();
  EXPECT_TRUE(registry_->scaling("a")->provisioned.empty());
}

TEST_F(ScalingTest, ListenerHearsCodeConfigAndScalingChanges) {
  std::vector<std::string> heard;
  registry_->set_listener([&](const std::string& name) { heard.push_back(name); });
  ASSERT_TRUE(registry_->update_code("a", put()).ok());
  ConfigPatch p;
  p.memory_mb = 256;
  ASSERT_TRUE(registry_->update_config("b", p).ok());
  ASSERT_TRUE(registry_->set_provisioned("c", kLatest, 1).ok());
  ASSERT_TRUE(registry_->set_reserved_concurrency("c", 2).ok());
  ASSERT_FALSE(registry_->set_reserved_concurrency("c", 99).ok());  // refused: not heard
  ASSERT_TRUE(registry_->remove("a").ok());
  EXPECT_EQ(heard, (std::vector<std::string>{"a", "b", "c", "c", "a"}));
}

}  // namespace
}  // namespace tamaya::registry
