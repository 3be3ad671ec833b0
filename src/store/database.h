// SQLite access: one connection, WAL mode, numbered schema migrations, and a
// thin prepared-statement wrapper. Knows no business rules: each module that
// persists something registers its own migrations and writes its own SQL.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tamaya::store {

// One schema step. Versions are global and strictly increasing across
// modules; applied in order, each inside a transaction, recorded in
// schema_migrations so each runs once.
struct Migration {
  int version;
  std::string name;
  std::string sql;
};

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;

  // Binds by 1-based index. A bind failure (bad index, out of memory) is
  // reported by the next step()/run(), so binds can be chained.
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);

  // Returns true while a row is available; false when done.
  Result<bool> step();
  // Steps through every row and returns read(*this) of each, in order.
  template <class Read>
  auto collect(Read read) -> Result<std::vector<decltype(read(std::declval<Statement&>()))>> {
    std::vector<decltype(read(*this))> out;
    while (true) {
      Result<bool> row = step();
      if (!row.ok()) return row.status();
      if (!*row) return out;
      out.push_back(read(*this));
    }
  }
  // Runs to completion (for INSERT/UPDATE/DELETE).
  Status run();
  void reset();

  // Columns by 0-based index.
  int64_t column_int(int index) const;
  std::string column_text(int index) const;
  std::string column_blob(int index) const;
  bool column_is_null(int index) const;

 private:
  Status error(int rc) const;

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = 0;  // first failed bind's result code, 0 when none failed
};

// How long a statement waits for another connection's write lock before it
// fails with Unavailable ("database is busy").
inline constexpr int kBusyTimeoutMs = 5'000;

// Not thread-safe, and SQLite's own mutex is off (SQLITE_OPEN_NOMUTEX): one
// thread at a time may use a Database, as its owner arranges (one per
// thread, or behind the owner's lock). WAL lets several connections to the
// same file read while one writes.
class Database {
 public:
  // Opens (creating) the file, sets WAL, synchronous=NORMAL, foreign keys,
  // busy timeout, and applies migrations not yet applied.
  static Result<std::unique_ptr<Database>> open(const std::string& path,
                                                const std::vector<Migration>& migrations);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Statements must be destroyed before the Database that prepared them.
  Result<Statement> prepare(std::string_view sql);
  // Runs one or more ';'-separated statements that return no rows.
  Status exec(std::string_view sql);
  // Runs fn inside BEGIN IMMEDIATE ... COMMIT; rolls back when fn fails.
  // Nested calls become savepoints, so a failing inner fn undoes only itself.
  Status transaction(const std::function<Status()>& fn);
  int64_t last_insert_rowid() const;
  // Highest applied migration version, 0 for a fresh database.
  int schema_version() const;

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  Status apply(const Migration& migration);

  sqlite3* db_;
  int savepoint_depth_ = 0;
};

}  // namespace tamaya::store
