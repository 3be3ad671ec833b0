#include "registry/registry.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "registry/schema.h"
#include "store/database.h"
#include "zip_fixture.h"

namespace tamaya::registry {
namespace {

namespace fs = std::filesystem;
using test_support::one_file_zip;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tamaya_registry_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    artifacts_ = std::make_unique<ArtifactStore>(dir_.string(), ArtifactLimits{});
    auto a = artifacts_->put_zip(one_file_zip("app.py", "def handler(e, c): return 1\n"));
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    code_a_ = *a;
    auto b = artifacts_->put_zip(one_file_zip("app.py", "def handler(e, c): return 2\n"));
    ASSERT_TRUE(b.ok()) << b.status().to_string();
    code_b_ = *b;
    reopen();
  }
  void TearDown() override {
    registry_.reset();
    db_.reset();
    fs::remove_all(dir_);
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

  FunctionConfig python() const {
    FunctionConfig c = registry_->defaults();
    c.runtime = "python3";
    c.handler = "app.handler";
    return c;
  }

  void expect_invalid(const FunctionConfig& c, const std::string& needle,
                      const std::string& name = "fn") {
    Status s = registry_->validate(name, c);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    auto created = registry_->create(name, c, code_a_);
    EXPECT_EQ(created.status().code(), Code::kInvalidArgument);
  }

  fs::path dir_;
  Settings settings_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<Registry> registry_;
  Artifact code_a_, code_b_;
};

TEST_F(RegistryTest, DefaultsComeFromSettings) {
  settings_.default_memory_mb = 256;
  settings_.default_timeout_s = 7;
  settings_.default_max_concurrency = 3;
  reopen();
  FunctionConfig c = registry_->defaults();
  EXPECT_EQ(c.memory_mb, 256);
  EXPECT_EQ(c.timeout_s, 7);
  EXPECT_EQ(c.max_concurrency, 3);
}

TEST_F(RegistryTest, CreateGetList) {
  FunctionConfig c = python();
  c.environment = {{"GREETING", "hi"}, {"_private", "x"}};
  c.description = "says hi";
  auto created = registry_->create("hello", c, code_a_);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  EXPECT_EQ(created->name, "hello");
  EXPECT_EQ(created->version, "$LATEST");
  EXPECT_EQ(created->code_sha256, code_a_.sha256);
  EXPECT_EQ(created->code_size, code_a_.size);
  EXPECT_EQ(created->revision_id.size(), 36u);
  EXPECT_GT(created->created_ms, 0);
  EXPECT_EQ(created->created_ms, created->updated_ms);

  ASSERT_TRUE(registry_->create("another", python(), code_b_).ok());

  for (const std::string q : {"", "$LATEST"}) {
    auto got = registry_->get("hello", q);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(got->config.environment, c.environment);
    EXPECT_EQ(got->config.description, "says hi");
    EXPECT_EQ(got->revision_id, created->revision_id);
  }

  auto all = registry_->list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "another");  // sorted by name
  EXPECT_EQ(all[1].name, "hello");
}

TEST_F(RegistryTest, DuplicateCreateIsAlreadyExists) {
  ASSERT_TRUE(registry_->create("dup", python(), code_a_).ok());
  auto again = registry_->create("dup", python(), code_b_);
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
  EXPECT_NE(again.status().message().find("function 'dup' already exists"), std::string::npos);
  EXPECT_EQ(registry_->get("dup")->code_sha256, code_a_.sha256);
}

TEST_F(RegistryTest, CreateNeedsStoredArtifact) {
  Artifact missing{std::string(64, 'a'), 10};
  auto r = registry_->create("fn", python(), missing);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(registry_->get("fn").status().code(), Code::kNotFound);
}

TEST_F(RegistryTest, UnknownNamesAndVersionsAreNotFound) {
  EXPECT_EQ(registry_->get("nope").status().code(), Code::kNotFound);
  EXPECT_NE(registry_->get("nope").status().message().find("'nope'"), std::string::npos);
  EXPECT_EQ(registry_->versions("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->update_code("nope", code_a_).status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->update_config("nope", {}).status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->remove("nope").code(), Code::kNotFound);
  EXPECT_EQ(registry_->publish("nope", "").status().code(), Code::kNotFound);

  ASSERT_TRUE(registry_->create("fn", python(), code_a_).ok());
  auto v = registry_->get("fn", "1");
  EXPECT_EQ(v.status().code(), Code::kNotFound);
  EXPECT_NE(v.status().message().find("no published versions"), std::string::npos);
  ASSERT_TRUE(registry_->publish("fn", "").ok());
  v = registry_->get("fn", "2");
  EXPECT_EQ(v.status().code(), Code::kNotFound);
  EXPECT_NE(v.status().message().find("versions are 1 to 1"), std::string::npos);
  for (const std::string bad : {"0", "+1", "99999999999999999999", "a b"}) {
    EXPECT_EQ(registry_->get("fn", bad).status().code(), Code::kInvalidArgument) << bad;
  }
  // Names an alias could have are unknown aliases.
  for (const std::string unknown : {"-1", "abc", "1x"}) {
    EXPECT_EQ(registry_->get("fn", unknown).status().code(), Code::kNotFound) << unknown;
  }
}

TEST_F(RegistryTest, UpdateCodeAndConfigChangeRevision) {
  auto created = registry_->create("fn", python(), code_a_);
  ASSERT_TRUE(created.ok());

  auto code = registry_->update_code("fn", code_b_);
  ASSERT_TRUE(code.ok()) << code.status().to_string();
  EXPECT_EQ(code->code_sha256, code_b_.sha256);
  EXPECT_NE(code->revision_id, created->revision_id);
  EXPECT_EQ(code->created_ms, created->created_ms);

  ConfigPatch patch;
  patch.memory_mb = 512;
  patch.environment = std::map<std::string, std::string>{{"A", "1"}};
  auto cfg = registry_->update_config("fn", patch);
  ASSERT_TRUE(cfg.ok()) << cfg.status().to_string();
  EXPECT_EQ(cfg->config.memory_mb, 512);
  EXPECT_EQ(cfg->config.handler, "app.handler");  // untouched fields stay
  EXPECT_EQ(cfg->config.environment.at("A"), "1");
  EXPECT_NE(cfg->revision_id, code->revision_id);

  // An invalid patch changes nothing.
  ConfigPatch bad;
  bad.memory_mb = 256;
  bad.runtime = "ruby";
  auto rejected = registry_->update_config("fn", bad);
  EXPECT_EQ(rejected.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->get("fn")->config.memory_mb, 512);
  EXPECT_EQ(registry_->get("fn")->revision_id, cfg->revision_id);
}

TEST_F(RegistryTest, PublishNumbersVersionsAndReusesUnchanged) {
  ASSERT_TRUE(registry_->create("fn", python(), code_a_).ok());
  bool created = false;
  auto v1 = registry_->publish("fn", "first", &created);
  ASSERT_TRUE(v1.ok()) << v1.status().to_string();
  EXPECT_TRUE(created);
  EXPECT_EQ(v1->version, "1");
  EXPECT_EQ(v1->config.description, "first");

  // Nothing changed: the same version comes back.
  auto again = registry_->publish("fn", "ignored", &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->version, "1");
  EXPECT_EQ(again->revision_id, v1->revision_id);

  ASSERT_TRUE(registry_->update_code("fn", code_b_).ok());
  auto v2 = registry_->publish("fn", "", &created);
  ASSERT_TRUE(v2.ok());
  EXPECT_TRUE(created);
  EXPECT_EQ(v2->version, "2");
  EXPECT_EQ(v2->code_sha256, code_b_.sha256);

  ConfigPatch patch;
  patch.timeout_s = 30;
  ASSERT_TRUE(registry_->update_config("fn", patch).ok());
  auto v3 = registry_->publish("fn", "");
  ASSERT_TRUE(v3.ok());
  EXPECT_EQ(v3->version, "3");
  EXPECT_EQ(v3->config.timeout_s, 30);

  // Versions are immutable: later edits of $LATEST do not reach them.
  EXPECT_EQ(registry_->get("fn", "1")->code_sha256, code_a_.sha256);
  EXPECT_EQ(registry_->get("fn", "2")->config.timeout_s, 3);

  auto all = registry_->versions("fn");
  ASSERT_TRUE(all.ok());
  std::vector<std::string> names;
  for (const auto& v : *all) names.push_back(v.version);
  EXPECT_EQ(names, (std::vector<std::string>{"$LATEST", "1", "2", "3"}));
}

TEST_F(RegistryTest, PersistsAcrossReopen) {
  FunctionConfig c = python();
  c.environment = {{"K", "v with \"quotes\" and \n newline"}};
  ASSERT_TRUE(registry_->create("fn", c, code_a_).ok());
  ASSERT_TRUE(registry_->publish("fn", "v1").ok());
  ASSERT_TRUE(registry_->update_code("fn", code_b_).ok());
  auto latest = registry_->get("fn");
  ASSERT_TRUE(latest.ok());

  reopen();
  auto got = registry_->get("fn");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->code_sha256, code_b_.sha256);
  EXPECT_EQ(got->revision_id, latest->revision_id);
  EXPECT_EQ(got->updated_ms, latest->updated_ms);
  EXPECT_EQ(got->config.environment, c.environment);
  auto v1 = registry_->get("fn", "1");
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->code_sha256, code_a_.sha256);
  EXPECT_EQ(v1->config.description, "v1");

  // The version counter survived too.
  auto v2 = registry_->publish("fn", "");
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version, "2");
}

TEST_F(RegistryTest, RemoveDeletesFunctionAndVersions) {
  ASSERT_TRUE(registry_->create("fn", python(), code_a_).ok());
  ASSERT_TRUE(registry_->publish("fn", "").ok());
  ASSERT_TRUE(registry_->remove("fn").ok());
  EXPECT_EQ(registry_->get("fn").status().code(), Code::kNotFound);
  EXPECT_TRUE(registry_->list().empty());

  reopen();
  EXPECT_EQ(registry_->get("fn").status().code(), Code::kNotFound);
  auto count = db_->prepare("SELECT COUNT(*) FROM function_versions");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->step());
  EXPECT_EQ(count->column_int(0), 0);

  // The name is free again and numbering starts over.
  ASSERT_TRUE(registry_->create("fn", python(), code_b_).ok());
  EXPECT_EQ(registry_->publish("fn", "")->version, "1");
}

TEST_F(RegistryTest, ValidatesName) {
  for (const std::string& bad :
       std::vector<std::string>{"", "has space", "dot.name", "slash/name", std::string(65, 'a')}) {
    expect_invalid(python(), "function name '" + bad + "' is invalid; use 1 to 64 characters", bad);
  }
  EXPECT_TRUE(registry_->validate(std::string(64, 'a'), python()).ok());
  EXPECT_TRUE(registry_->validate("A-z_09", python()).ok());
}

TEST_F(RegistryTest, ValidatesRuntime) {
  FunctionConfig c = python();
  c.runtime = "ruby";
  expect_invalid(c, "runtime 'ruby' is not supported; use one of: python3, nodejs, provided");
  c.runtime = "";
  expect_invalid(c, "runtime '' is not supported");
}

TEST_F(RegistryTest, ValidatesHandler) {
  FunctionConfig c = python();
  c.handler = "";
  expect_invalid(c, "handler is required for runtime python3");
  for (const std::string bad :
       {"app", "app.", ".handler", "app.1fn", "../app.handler", "/abs/app.handler", "a//b.handler",
        "app.han dler", "./app.handler"}) {
    c.handler = bad;
    expect_invalid(c, "handler '" + bad + "' is invalid; use module.function");
  }
  c.runtime = "nodejs";
  for (const std::string good : {"index.handler", "src/app.main", "dir/sub/mod.fn_2",
                                 "pkg.mod.handler", "my-module.$handler"}) {
    c.handler = good;
    EXPECT_TRUE(registry_->validate("fn", c).ok()) << good;
  }
  c.handler = std::string(121, 'a') + ".handler";  // 129 characters
  expect_invalid(c, "the limit is 128");

  c.runtime = "provided";
  c.handler = "";
  EXPECT_TRUE(registry_->validate("fn", c).ok());
  c.handler = "anything-goes.here";
  EXPECT_TRUE(registry_->validate("fn", c).ok());
  c.handler = "has space";
  expect_invalid(c, "whitespace or control characters");
}

TEST_F(RegistryTest, ValidatesNumbers) {
  FunctionConfig c = python();
  c.memory_mb = 127;
  expect_invalid(c, "memory_mb 127 is out of range; use 128 to 10240");
  c.memory_mb = settings_.max_memory_mb + 1;
  expect_invalid(c, "memory_mb 10241 is out of range");
  c = python();
  c.timeout_s = 0;
  expect_invalid(c, "timeout_s 0 is out of range; use 1 to 900");
  c.timeout_s = 901;
  expect_invalid(c, "timeout_s 901 is out of range");
  c = python();
  c.max_concurrency = 0;
  expect_invalid(c, "max_concurrency 0 is out of range; use 1 to 1000");
  c.max_concurrency = kMaxConcurrencyLimit + 1;
  expect_invalid(c, "max_concurrency 1001 is out of range");
  c = python();
  c.memory_mb = 128;
  c.timeout_s = 900;
  c.max_concurrency = 1;
  EXPECT_TRUE(registry_->validate("fn", c).ok());
}

TEST_F(RegistryTest, ValidatesEnvironment) {
  FunctionConfig c = python();
  for (const std::string bad : {"1ABC", "A-B", "", "A B", "Ä"}) {
    c.environment = {{bad, "v"}};
    expect_invalid(c, "environment variable name '" + bad + "' is invalid");
  }
  for (const std::string reserved :
       {"AWS_LAMBDA_RUNTIME_API", "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_SECRET_ACCESS_KEY"}) {
    c.environment = {{reserved, "v"}};
    expect_invalid(c, "environment variable '" + reserved + "' is reserved");
  }
  c.environment = {{"BIG", std::string(kMaxEnvironmentBytes - 3, 'x')}};
  EXPECT_TRUE(registry_->validate("fn", c).ok());  // exactly at the limit
  c.environment = {{"BIG", std::string(kMaxEnvironmentBytes - 2, 'x')}};
  expect_invalid(c, "environment variables total 4097 bytes; the limit is 4096 bytes");
}

TEST_F(RegistryTest, ValidatesDescription) {
  FunctionConfig c = python();
  c.description = std::string(kMaxDescriptionChars + 1, 'd');
  expect_invalid(c, "description is 257 bytes long; the limit is 256");
  ASSERT_TRUE(registry_->create("fn", python(), code_a_).ok());
  auto v = registry_->publish("fn", std::string(300, 'd'));
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace tamaya::registry
