#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "store/database.h"

namespace tamaya::store {
namespace {

namespace fs = std::filesystem;

class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tamaya_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "db.sqlite").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::string path_;
};

std::vector<Migration> two_migrations() {
  return {
      {1, "create t", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"},
      {2, "seed t", "INSERT INTO t(v) VALUES ('seed')"},
  };
}

int64_t count_rows(Database& db, const std::string& sql) {
  auto stmt = db.prepare(sql);
  EXPECT_TRUE(stmt.ok()) << stmt.status().to_string();
  auto row = stmt->step();
  EXPECT_TRUE(row.ok() && *row);
  return stmt->column_int(0);
}

TEST_F(DatabaseTest, MigrationsAreAppliedOnceAcrossReopen) {
  {
    auto db = Database::open(path_, two_migrations());
    ASSERT_TRUE(db.ok()) << db.status().to_string();
    EXPECT_EQ((*db)->schema_version(), 2);
    EXPECT_EQ(count_rows(**db, "SELECT COUNT(*) FROM t"), 1);
  }
  {
    // Reopening with one more migration applies only the new one: the seed
    // row would be duplicated if migration 2 ran again.
    auto migrations = two_migrations();
    migrations.push_back({3, "add column", "ALTER TABLE t ADD COLUMN w INTEGER"});
    auto db = Database::open(path_, migrations);
    ASSERT_TRUE(db.ok()) << db.status().to_string();
    EXPECT_EQ((*db)->schema_version(), 3);
    EXPECT_EQ(count_rows(**db, "SELECT COUNT(*) FROM t"), 1);
    EXPECT_EQ(count_rows(**db, "SELECT COUNT(*) FROM schema_migrations"), 3);
    auto stmt = (*db)->prepare("SELECT name, applied_at FROM schema_migrations WHERE version=3");
    ASSERT_TRUE(stmt.ok());
    ASSERT_TRUE(*stmt->step());
    EXPECT_EQ(stmt->column_text(0), "add column");
    EXPECT_GT(stmt->column_int(1), 1'600'000'000'000);
  }
}

TEST_F(DatabaseTest, PragmasAreSet) {
  auto db = Database::open(path_, {});
  ASSERT_TRUE(db.ok());
  auto mode = (*db)->prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->step());
  EXPECT_EQ(mode->column_text(0), "wal");
  EXPECT_EQ(count_rows(**db, "PRAGMA foreign_keys"), 1);
  EXPECT_EQ(count_rows(**db, "PRAGMA synchronous"), 1);  // NORMAL
  EXPECT_EQ(count_rows(**db, "PRAGMA busy_timeout"), kBusyTimeoutMs);
  EXPECT_EQ((*db)->schema_version(), 0);
}

TEST_F(DatabaseTest, FailedMigrationIsRolledBackAndReported) {
  std::vector<Migration> bad = {
      {1, "create t", "CREATE TABLE t(id INTEGER PRIMARY KEY)"},
      {2, "broken", "CREATE TABLE u(x); INSERT INTO no_such_table VALUES (1)"},
  };
  auto db = Database::open(path_, bad);
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("migration 2 (broken)"), std::string::npos)
      << db.status().message();

  auto reopened = Database::open(path_, {});
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->schema_version(), 1);
  // Table u was created inside the failed migration's transaction.
  EXPECT_EQ(count_rows(**reopened, "SELECT COUNT(*) FROM sqlite_master WHERE name='u'"), 0);
}

TEST_F(DatabaseTest, RejectsMigrationsOutOfOrder) {
  auto db = Database::open(path_, {{2, "b", "SELECT 1"}, {1, "a", "SELECT 1"}});
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Code::kInternal);
  EXPECT_NE(db.status().message().find("strictly increasing"), std::string::npos);
}

TEST_F(DatabaseTest, TransactionCommitsOrRollsBack) {
  auto db = Database::open(path_, two_migrations());
  ASSERT_TRUE(db.ok());
  Database& d = **db;

  Status failed = d.transaction([&]() -> Status {
    TAMAYA_RETURN_IF_ERROR(d.exec("INSERT INTO t(v) VALUES ('rolled back')"));
    return Status::Invalid("stop here");
  });
  EXPECT_EQ(failed.code(), Code::kInvalidArgument);
  EXPECT_EQ(failed.message(), "stop here");
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t"), 1);

  Status ok = d.transaction([&] { return d.exec("INSERT INTO t(v) VALUES ('kept')"); });
  EXPECT_TRUE(ok.ok()) << ok.to_string();
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t"), 2);
}

TEST_F(DatabaseTest, NestedTransactionRollsBackOnlyItself) {
  auto db = Database::open(path_, two_migrations());
  ASSERT_TRUE(db.ok());
  Database& d = **db;
  Status outer = d.transaction([&]() -> Status {
    TAMAYA_RETURN_IF_ERROR(d.exec("INSERT INTO t(v) VALUES ('outer')"));
    Status inner = d.transaction([&]() -> Status {
      TAMAYA_RETURN_IF_ERROR(d.exec("INSERT INTO t(v) VALUES ('inner')"));
      return Status::Internal("inner fails");
    });
    EXPECT_FALSE(inner.ok());
    return Status::Ok();
  });
  ASSERT_TRUE(outer.ok()) << outer.to_string();
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t WHERE v='outer'"), 1);
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t WHERE v='inner'"), 0);
}

// A bug that throws inside a transaction (outer or nested) undoes what it
// wrote and leaves the connection usable for the next transaction.
TEST_F(DatabaseTest, AnExceptionRollsBackAndLeavesTheConnectionUsable) {
  auto db = Database::open(path_, two_migrations());
  ASSERT_TRUE(db.ok());
  Database& d = **db;
  EXPECT_THROW((void)d.transaction([&]() -> Status {
    TAMAYA_RETURN_IF_ERROR(d.exec("INSERT INTO t(v) VALUES ('thrown away')"));
    throw std::runtime_error("bug");
  }),
               std::runtime_error);
  Status outer = d.transaction([&]() -> Status {
    TAMAYA_RETURN_IF_ERROR(d.exec("INSERT INTO t(v) VALUES ('outer')"));
    EXPECT_THROW((void)d.transaction([&]() -> Status {
      TAMAYA_RETURN_IF_ERROR(d.exec("INSERT INTO t(v) VALUES ('inner')"));
      throw std::runtime_error("bug");
    }),
                 std::runtime_error);
    // The next nested one uses the same savepoint name again.
    return d.transaction([&] { return d.exec("INSERT INTO t(v) VALUES ('second inner')"); });
  });
  ASSERT_TRUE(outer.ok()) << outer.to_string();
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t WHERE v='thrown away'"), 0);
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t WHERE v='inner'"), 0);
  EXPECT_EQ(count_rows(d, "SELECT COUNT(*) FROM t WHERE v IN ('outer', 'second inner')"), 2);
}

TEST_F(DatabaseTest, BindAndStepTextIntBlobNull) {
  auto db =
      Database::open(path_, {{1, "kv", "CREATE TABLE kv(k TEXT, i INTEGER, b BLOB, n TEXT)"}});
  ASSERT_TRUE(db.ok());
  Database& d = **db;
  const std::string blob("a\0b\xff", 4);
  {
    auto insert = d.prepare("INSERT INTO kv VALUES (?, ?, ?, ?)");
    ASSERT_TRUE(insert.ok());
    insert->bind(1, std::string_view("héllo")).bind(2, int64_t{-1} << 40).bind_blob(3, blob);
    insert->bind_null(4);
    ASSERT_TRUE(insert->run().ok());
    EXPECT_EQ(d.last_insert_rowid(), 1);
    // Reuse after reset: empty text and empty blob stay non-NULL.
    insert->reset();
    insert->bind(1, std::string_view()).bind(2, int64_t{7}).bind_blob(3, "").bind(4, "x");
    ASSERT_TRUE(insert->run().ok());
    EXPECT_EQ(d.last_insert_rowid(), 2);
  }
  auto select = d.prepare("SELECT k, i, b, n FROM kv ORDER BY rowid");
  ASSERT_TRUE(select.ok());
  auto row = select->step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(select->column_text(0), "héllo");
  EXPECT_EQ(select->column_int(1), int64_t{-1} << 40);
  EXPECT_EQ(select->column_blob(2), blob);
  EXPECT_TRUE(select->column_is_null(3));
  EXPECT_FALSE(select->column_is_null(0));
  row = select->step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(select->column_text(0), "");
  EXPECT_FALSE(select->column_is_null(0));
  EXPECT_FALSE(select->column_is_null(2));
  EXPECT_EQ(select->column_text(3), "x");
  row = select->step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
}

TEST_F(DatabaseTest, ErrorsAreValues) {
  auto db = Database::open(path_, two_migrations());
  ASSERT_TRUE(db.ok());
  Database& d = **db;

  auto bad_sql = d.prepare("SELEC nonsense");
  ASSERT_FALSE(bad_sql.ok());
  EXPECT_EQ(bad_sql.status().code(), Code::kInternal);
  EXPECT_NE(bad_sql.status().message().find("syntax error"), std::string::npos);

  auto dup = d.prepare("INSERT INTO t(id, v) VALUES (1, 'dup')");
  ASSERT_TRUE(dup.ok());
  Status s = dup->run();
  EXPECT_EQ(s.code(), Code::kAlreadyExists) << s.to_string();

  auto bad_index = d.prepare("SELECT ?");
  ASSERT_TRUE(bad_index.ok());
  bad_index->bind(5, int64_t{1});
  auto step = bad_index->step();
  EXPECT_FALSE(step.ok());
  EXPECT_NE(step.status().message().find("binding"), std::string::npos);
}

TEST_F(DatabaseTest, OpenFailsWithAUsefulMessage) {
  auto db = Database::open((dir_ / "missing" / "db.sqlite").string(), {});
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("check that its directory exists"), std::string::npos)
      << db.status().message();
}

}  // namespace
}  // namespace tamaya::store
