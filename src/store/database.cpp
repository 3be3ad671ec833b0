#include "store/database.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <chrono>
#include <mutex>
#include <string>
#include <utility>

namespace tamaya::store {

namespace {

// SQLite counts every allocation under a process-wide mutex, for
// sqlite3_memory_used() and heap limits, which tamaya does not use. Must
// come before the library initialises, i.e. before the first open; if
// something initialised it already, the call fails and nothing changes.
void configure_library_once() {
  static std::once_flag once;
  std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

// Maps a SQLite result code to the Status kind a caller can act on.
Status sqlite_error(int rc, std::string_view what, std::string_view detail) {
  std::string message = std::string(what) + ": " + std::string(detail);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(message + " (the database stayed locked for more than " +
                                 std::to_string(kBusyTimeoutMs) + " ms); retry later");
    case SQLITE_FULL:
      return Status::Internal(message + "; free disk space under the data directory");
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return Status::Internal(message + "; check that the data directory is writable");
    default:
      break;
  }
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
    return Status::Exists(message);
  }
  return Status::Internal(message);
}

std::string sql_excerpt(std::string_view sql) {
  constexpr size_t kMax = 80;
  std::string s(sql.substr(0, kMax));
  for (char& c : s) {
    if (c == '\n' || c == '\t') {
      c = ' ';
    }
  }
  if (sql.size() > kMax) {
    s += "...";
  }
  return s;
}

}  // namespace

// --- Statement ---------------------------------------------------------------

Statement::~Statement() {
  if (stmt_ != nullptr) {
    sqlite3_finalize(stmt_);
  }
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}

Statement& Statement::bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK && bind_rc_ == 0) {
    bind_rc_ = rc;
  }
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  // A null data pointer would bind SQL NULL; an empty view must stay ''.
  const char* data = text.data() != nullptr ? text.data() : "";
  int rc = sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && bind_rc_ == 0) {
    bind_rc_ = rc;
  }
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  int rc = bytes.empty()
               ? sqlite3_bind_zeroblob(stmt_, index, 0)
               : sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_rc_ == 0) {
    bind_rc_ = rc;
  }
  return *this;
}

Statement& Statement::bind_null(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK && bind_rc_ == 0) {
    bind_rc_ = rc;
  }
  return *this;
}

Status Statement::error(int rc) const {
  return sqlite_error(rc, "sqlite (" + sql_excerpt(sqlite3_sql(stmt_)) + ")", sqlite3_errmsg(db_));
}

Result<bool> Statement::step() {
  if (bind_rc_ != 0) {
    return Status::Internal("sqlite (" + sql_excerpt(sqlite3_sql(stmt_)) +
                            "): binding a parameter failed: " + sqlite3_errstr(bind_rc_));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  Status status = error(rc);
  // Leaves the statement reusable after a failed step.
  sqlite3_reset(stmt_);
  return status;
}

Status Statement::run() {
  while (true) {
    auto row = step();
    if (!row.ok()) {
      return row.status();
    }
    if (!*row) {
      return Status::Ok();
    }
  }
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_rc_ = 0;
}

int64_t Statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

std::string Statement::column_text(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  if (text == nullptr) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, index));
}

std::string Statement::column_blob(int index) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  if (data == nullptr) {
    return {};
  }
  return std::string(static_cast<const char*>(data), sqlite3_column_bytes(stmt_, index));
}

bool Statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

// --- Database ----------------------------------------------------------------

Result<std::unique_ptr<Database>> Database::open(const std::string& path,
                                                 const std::vector<Migration>& migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version <= 0 ||
        (i > 0 && migrations[i].version <= migrations[i - 1].version)) {
      // A programming error in how modules numbered their migrations.
      return Status::Internal("migration '" + migrations[i].name + "' has version " +
                              std::to_string(migrations[i].version) +
                              "; versions must be positive and strictly increasing");
    }
  }

  configure_library_once();
  sqlite3* raw = nullptr;
  // No mutex of SQLite's own: a Database is used by one thread at a time
  // (database.h), and the writer thread that inserts every invocation's
  // record and lines spent about a tenth of its time taking and releasing
  // it (bench/meter).
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string detail = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return Status::Internal("cannot open database '" + path + "': " + detail +
                            "; check that its directory exists and is writable");
  }
  std::unique_ptr<Database> db(new Database(raw));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);

  {
    TAMAYA_ASSIGN_OR_RETURN(Statement wal, db->prepare("PRAGMA journal_mode=WAL"));
    TAMAYA_ASSIGN_OR_RETURN(bool row, wal.step());
    std::string mode = row ? wal.column_text(0) : "";
    // In-memory databases cannot use WAL; that is fine for tests.
    if (mode != "wal" && mode != "memory") {
      spdlog::warn("sqlite WAL mode unavailable path={} journal_mode={}", path, mode);
    }
  }
  TAMAYA_RETURN_IF_ERROR(db->exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"));
  TAMAYA_RETURN_IF_ERROR(
      db->exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
               "  version INTEGER PRIMARY KEY,"
               "  name TEXT NOT NULL,"
               "  applied_at INTEGER NOT NULL)"));

  for (const Migration& m : migrations) {
    Status s = db->apply(m);
    if (!s.ok()) {
      return s.with_context("applying migration " + std::to_string(m.version) + " (" + m.name +
                            ") to '" + path + "'");
    }
  }
  return db;
}

Status Database::apply(const Migration& migration) {
  // The applied-check sits inside the write transaction so that two processes
  // opening the same file cannot both apply a step.
  return transaction([&]() -> Status {
    TAMAYA_ASSIGN_OR_RETURN(Statement check,
                            prepare("SELECT 1 FROM schema_migrations WHERE version = ?"));
    check.bind(1, int64_t{migration.version});
    TAMAYA_ASSIGN_OR_RETURN(bool applied, check.step());
    if (applied) {
      return Status::Ok();
    }
    TAMAYA_RETURN_IF_ERROR(exec(migration.sql));
    TAMAYA_ASSIGN_OR_RETURN(
        Statement record,
        prepare("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)"));
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    record.bind(1, int64_t{migration.version}).bind(2, migration.name).bind(3, now_ms);
    return record.run();
  });
}

Database::~Database() {
  // Statements are finalized by their owners first (documented contract), so
  // close_v2 only has to release the connection.
  sqlite3_close_v2(db_);
}

Result<Statement> Database::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), 0, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return sqlite_error(rc, "sqlite prepare (" + sql_excerpt(sql) + ")", sqlite3_errmsg(db_));
  }
  if (stmt == nullptr) {
    return Status::Internal("sqlite prepare: no statement in '" + sql_excerpt(sql) + "'");
  }
  return Statement(db_, stmt);
}

Status Database::exec(std::string_view sql) {
  std::string text(sql);  // sqlite3_exec needs a terminated string
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) {
    return Status::Ok();
  }
  std::string detail = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return sqlite_error(rc, "sqlite (" + sql_excerpt(sql) + ")", detail);
}

Status Database::transaction(const std::function<Status()>& fn) {
  const bool outermost = sqlite3_get_autocommit(db_) != 0;
  const std::string savepoint = "tamaya_sp" + std::to_string(savepoint_depth_);
  if (outermost) {
    TAMAYA_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
  } else {
    TAMAYA_RETURN_IF_ERROR(exec("SAVEPOINT " + savepoint));
    ++savepoint_depth_;
  }

  auto roll_back = [&] {
    Status rollback =
        exec(outermost ? "ROLLBACK" : "ROLLBACK TO " + savepoint + "; RELEASE " + savepoint);
    if (!rollback.ok()) {
      spdlog::error("sqlite rollback failed error={}", rollback.message());
    }
  };
  Status status;
  try {
    status = fn();
  } catch (...) {
    // A bug in fn: what it wrote is undone and the connection stays usable
    // for the caller that contains the bug (common/thread_step.h).
    if (!outermost) --savepoint_depth_;
    roll_back();
    throw;
  }

  if (!outermost) {
    --savepoint_depth_;
  }
  if (status.ok()) {
    Status commit = exec(outermost ? "COMMIT" : "RELEASE " + savepoint);
    if (commit.ok()) {
      return Status::Ok();
    }
    status = commit;
  }
  roll_back();
  return status;
}

int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

int Database::schema_version() const {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1, &stmt,
                         nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return 0;
  }
  int version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  return version;
}

}  // namespace tamaya::store
