// sqlite.cc - the SQLite wrapper (sqlite.h): RAII owners of the database
// and statement handles, result codes mapped to Status codes.
#include "mxsec/base/sqlite.h"

#include <sqlite3.h>

#include <climits>
#include <cstdint>
#include <mutex>
#include <utility>

namespace mxsec {
namespace {

Status::Code CodeOf(int rc) {
  switch (rc & 0xff) {  // the primary result code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Code::kTimeout;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return Status::Code::kIoError;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Code::kInvalid;
    case SQLITE_TOOBIG:
      return Status::Code::kLimit;
    default:
      return Status::Code::kGeneric;
  }
}

// The error of `rc` on `db`, in SQLite's words (the message of the last
// failed call on that handle). A null handle is what sqlite3_open_v2 leaves
// when it cannot even allocate one.
Status ErrorOf(sqlite3* db, int rc) {
  return Status::Error(CodeOf(rc), db != nullptr ? sqlite3_errmsg(db) : "out of memory");
}

}  // namespace

// --- SqliteStatement ---

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      bind_error_(std::exchange(other.bind_error_, 0)) {}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
    bind_error_ = std::exchange(other.bind_error_, 0);
  }
  return *this;
}

void SqliteStatement::Bound(int rc) {
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
}

SqliteStatement& SqliteStatement::BindText(int index, std::string_view text) {
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    Bound(SQLITE_TOOBIG);
    return *this;
  }
  Bound(sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
  return *this;
}

SqliteStatement& SqliteStatement::BindInt64(int index, int64_t value) {
  Bound(sqlite3_bind_int64(stmt_, index, value));
  return *this;
}

Result<bool> SqliteStatement::Step() {
  if (stmt_ == nullptr) return Status::Error("no statement");
  if (bind_error_ != SQLITE_OK) return ErrorOf(db_, bind_error_);
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return ErrorOf(db_, rc);
}

Status SqliteStatement::Run() {
  Result<bool> row = Step();
  if (!row.ok()) return row.status();
  return Status::Ok();
}

SqliteStatement::Type SqliteStatement::ColumnType(int column) const {
  switch (sqlite3_column_type(stmt_, column)) {
    case SQLITE_INTEGER:
      return Type::kInteger;
    case SQLITE_FLOAT:
      return Type::kFloat;
    case SQLITE_TEXT:
      return Type::kText;
    case SQLITE_BLOB:
      return Type::kBlob;
    default:
      return Type::kNull;
  }
}

int64_t SqliteStatement::ColumnInt64(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string SqliteStatement::ColumnText(int column) const {
  const unsigned char* p = sqlite3_column_text(stmt_, column);
  const int n = sqlite3_column_bytes(stmt_, column);  // after column_text: the length of that text
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
}

void SqliteStatement::Reset() {
  if (stmt_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = SQLITE_OK;
}

// --- SqliteDb ---

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

SqliteDb::SqliteDb(SqliteDb&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

SqliteDb& SqliteDb::operator=(SqliteDb&& other) noexcept {
  if (this != &other) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

namespace {

// Once per process, before SQLite initializes: no bulk allocation of page
// cache per connection. SQLite's default carves 20 pages (87 KB) up front
// for every connection and writes a header into each, so a short process
// (`deliver` opens two files and reads a few pages of each) touched about
// 40 pages of heap it never used. Pages are then allocated as they are
// needed; the cache's size limit is unchanged. Every SQLite file of the
// program is opened here, so the setting precedes SQLite's initialization.
void ConfigureSqliteOnce() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, 0); });
}

}  // namespace

Result<SqliteDb> SqliteDb::Open(const std::string& path, const SqliteOpenOptions& options) {
  ConfigureSqliteOnce();
  int flags = SQLITE_OPEN_READWRITE;
  if (options.create) flags |= SQLITE_OPEN_CREATE;
  if (options.full_mutex) flags |= SQLITE_OPEN_FULLMUTEX;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteDb db(raw);  // sqlite3_open_v2 may hand back a handle even on failure: closed with `db`
  if (rc != SQLITE_OK) return ErrorOf(raw, rc);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  if (!options.checkpoint_on_close) {
    const int set = sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    if (set != SQLITE_OK) return ErrorOf(raw, set);
  }
  if (options.truncate_wal_at_frames > 0) {
    // Called after each commit, its write lock released (sqlite3_wal_hook); replaces the
    // automatic checkpoint. The checkpoint does not wait for other processes (a TRUNCATE waits
    // for every reader with the busy handler, which would hold up a delivery behind a long
    // `stats` read): busy, or failed for any other reason, it leaves the WAL to the next commit,
    // the commit itself being done. Both numbers travel in the hook's argument, which has no
    // lifetime of its own to outlive: frames in the low 32 bits, the busy timeout in the high.
    static_assert(sizeof(uintptr_t) >= 8, "the hook's argument holds two 32-bit numbers");
    auto truncate = [](void* arg, sqlite3* handle, const char* db_name, int frames) -> int {
      const auto packed = reinterpret_cast<uintptr_t>(arg);
      if (frames < static_cast<int>(packed & 0xffffffffu)) return SQLITE_OK;
      sqlite3_busy_timeout(handle, 0);
      (void)sqlite3_wal_checkpoint_v2(handle, db_name, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
      sqlite3_busy_timeout(handle, static_cast<int>(packed >> 32));
      return SQLITE_OK;
    };
    const uintptr_t packed = (static_cast<uintptr_t>(static_cast<uint32_t>(options.busy_timeout_ms)) << 32) |
                             static_cast<uint32_t>(options.truncate_wal_at_frames);
    sqlite3_wal_hook(raw, truncate, reinterpret_cast<void*>(packed));
  }
  return Result<SqliteDb>(std::move(db));
}

Status SqliteDb::Exec(const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  Status failed = err != nullptr ? Status::Error(CodeOf(rc), err) : ErrorOf(db_, rc);
  sqlite3_free(err);
  return failed;
}

Result<SqliteStatement> SqliteDb::Prepare(std::string_view sql, Reuse reuse) {
  if (sql.size() > static_cast<size_t>(INT32_MAX)) return Status::Limit("statement too long");
  sqlite3_stmt* raw = nullptr;
  const unsigned flags = reuse == Reuse::kPersistent ? SQLITE_PREPARE_PERSISTENT : 0;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), flags, &raw, nullptr);
  SqliteStatement statement(db_, raw);
  if (rc != SQLITE_OK) return ErrorOf(db_, rc);
  if (raw == nullptr) return Status::Invalid("empty statement");
  return Result<SqliteStatement>(std::move(statement));
}

Result<bool> SqliteDb::HasColumn(const std::string& table, const std::string& column) {
  Result<SqliteStatement> st = Prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
  if (!st.ok()) return st.status();
  st->BindText(1, table).BindText(2, column);
  return st->Step();
}

Status SqliteDb::AddColumn(const std::string& table, const std::string& column, const std::string& declaration) {
  // A failed check is not fatal: the ALTER below then says what is wrong.
  Result<bool> present = HasColumn(table, column);
  if (present.ok() && *present) return Status::Ok();
  Status added = Exec("ALTER TABLE " + table + " ADD COLUMN " + column + " " + declaration);
  // SQLite has no result code of its own for this case, only its message.
  if (!added.ok() && added.message().find("duplicate column") != std::string::npos) return Status::Ok();
  return added;
}

Result<int64_t> SqliteDb::UserVersion() {
  Result<SqliteStatement> st = Prepare("PRAGMA user_version");
  if (!st.ok()) return st.status();
  Result<bool> row = st->Step();
  if (!row.ok()) return row.status();
  return *row ? st->ColumnInt64(0) : int64_t{0};
}

// --- SqliteTransaction ---

Result<SqliteTransaction> SqliteTransaction::Begin(SqliteDb& db) {
  Status begun = db.Exec("BEGIN IMMEDIATE");
  if (!begun.ok()) return begun;
  return SqliteTransaction(&db);
}

SqliteTransaction::SqliteTransaction(SqliteTransaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

SqliteTransaction::~SqliteTransaction() {
  // Nothing can be done about a failed rollback here; SQLite rolls back
  // what is left open when the handle closes.
  if (db_ != nullptr) (void)db_->Exec("ROLLBACK");
}

Status SqliteTransaction::Commit() {
  if (db_ == nullptr) return Status::Error("no transaction");
  Status committed = db_->Exec("COMMIT");
  // A failed COMMIT (a busy reader) leaves the transaction open: the
  // destructor then rolls it back.
  if (committed.ok()) db_ = nullptr;
  return committed;
}

}  // namespace mxsec
