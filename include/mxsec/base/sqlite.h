// sqlite.h - the one SQLite wrapper of mxsec: an owned database handle, an
// owned prepared statement, and a transaction, for the attempt log
// (smtp/delivery.cc), the MTA-STS policy cache (policy/mta_sts_cache.cc) and
// the TLS-RPT sent-once store (report/tlsrpt_send.cc).
//
// Promises:
//   - SqliteDb and SqliteStatement own their handle (closed, finalized on
//     destruction), are movable and not copyable. A statement keeps a raw
//     pointer to its database: it must be destroyed before the SqliteDb it
//     came from (declare the database first).
//   - Every failure is a Status whose message is SQLite's own text (the
//     caller adds the file and what it was doing) and whose code says what a
//     caller may branch on: kTimeout for a lock still held when the busy
//     timeout ran out (SQLITE_BUSY, SQLITE_LOCKED), kIoError for a file that
//     cannot be opened, read or written (CANTOPEN, IOERR, FULL, READONLY,
//     PERM), kInvalid for a damaged file (CORRUPT, NOTADB), kLimit for a
//     value too big (TOOBIG), kGeneric for the rest (SQL errors, constraint).
//   - Bind errors are remembered and returned by the next Step, so a caller
//     can bind in a row and check once; no statement runs with a failed bind.
//   - Text is bound and read with its length (embedded NUL bytes kept).
// A wrapper adds no locking: share one between threads only with the
// database opened full_mutex and the caller's own serialization of a
// statement's bind/step/reset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mxsec/base/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace mxsec {

class SqliteStatement {
 public:
  enum class Type { kInteger, kFloat, kText, kBlob, kNull };

  SqliteStatement() = default;
  ~SqliteStatement();
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // False for a default-constructed (or moved-from) statement.
  bool prepared() const { return stmt_ != nullptr; }
  // Parameters are numbered from 1 (?1, ?2, ...).
  SqliteStatement& BindText(int index, std::string_view text);
  SqliteStatement& BindInt64(int index, int64_t value);
  // true: a row is ready for the Column functions; false: the statement is
  // done. An error (including an earlier bind error) otherwise.
  Result<bool> Step();
  // Steps a statement that returns no row (INSERT, UPDATE, ...).
  Status Run();
  // The current row's columns, numbered from 0.
  Type ColumnType(int column) const;
  int64_t ColumnInt64(int column) const;
  std::string ColumnText(int column) const;  // "" for NULL
  // Back to unbound and un-stepped: a reused statement holds no read lock
  // (and no snapshot of a WAL file) between uses.
  void Reset();

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  void Bound(int rc);

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_error_ = 0;  // the first failed bind's result code since Reset
};

// Resets a reused statement however the scope using it ends.
class SqliteResetOnExit {
 public:
  explicit SqliteResetOnExit(SqliteStatement& statement) : statement_(statement) {}
  ~SqliteResetOnExit() { statement_.Reset(); }
  SqliteResetOnExit(const SqliteResetOnExit&) = delete;
  SqliteResetOnExit& operator=(const SqliteResetOnExit&) = delete;

 private:
  SqliteStatement& statement_;
};

struct SqliteOpenOptions {
  bool create = true;             // false: the file must exist
  bool full_mutex = false;        // SQLITE_OPEN_FULLMUTEX: the handle may be used from several threads
  int busy_timeout_ms = 5000;     // how long a statement waits for another process's lock
  // false: the last connection to close leaves the WAL to a later checkpoint (give it a bound:
  // truncate_wal_at_frames) instead of checkpointing, fsyncing and deleting it
  // (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE): for a log that many short processes append to.
  bool checkpoint_on_close = true;
  // With checkpoint_on_close false: once a commit leaves the WAL at this many frames or more, the
  // committing connection checkpoints it and truncates it to nothing, without waiting (with
  // another process reading or writing, the next commit tries again). 0: SQLite's own automatic
  // checkpoint. Why not that: a process that opens the file with no other process holding it
  // rebuilds the WAL's index from every frame, and forgets that an earlier process's automatic
  // checkpoint already copied them, so the WAL is never restarted and grows by every process's
  // commits, each paying for the reading and for a checkpoint of the whole WAL.
  int truncate_wal_at_frames = 0;

  // For a file that many short processes open in turn (the attempt log, the MTA-STS cache): the
  // handle may be shared by threads, the WAL is left for the next process and truncated once a
  // commit leaves it at `wal_frames` frames.
  static SqliteOpenOptions SharedByProcesses(int wal_frames) {
    SqliteOpenOptions o;
    o.full_mutex = true;
    o.checkpoint_on_close = false;
    o.truncate_wal_at_frames = wal_frames;
    return o;
  }
};

class SqliteDb {
 public:
  // How often a statement will run: kPersistent for one kept and reused
  // for the life of the database (SQLITE_PREPARE_PERSISTENT).
  enum class Reuse { kOnce, kPersistent };

  SqliteDb() = default;
  ~SqliteDb();
  SqliteDb(SqliteDb&& other) noexcept;
  SqliteDb& operator=(SqliteDb&& other) noexcept;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Opens read-write; the busy timeout is set before anything else runs,
  // since the first statement may already meet another process's lock.
  // The first Open of a process also configures SQLite before it
  // initializes (no bulk page-cache allocation, sqlite.cc): every SQLite
  // file of the program, tests included, is opened here.
  static Result<SqliteDb> Open(const std::string& path, const SqliteOpenOptions& options);

  // Runs one or more statements that return nothing of interest (schema,
  // pragmas).
  Status Exec(const std::string& sql);
  Result<SqliteStatement> Prepare(std::string_view sql, Reuse reuse = Reuse::kOnce);
  // Adds `column` (with its type and constraints, `declaration`) to `table`
  // unless it is there: how a file of an older version is migrated. Two
  // processes may migrate at once; a column the other one just added is
  // not an error.
  Status AddColumn(const std::string& table, const std::string& column, const std::string& declaration);
  // PRAGMA user_version: 0 for a new file. A store writes its schema's
  // version there once the file has that shape, so that later opens skip
  // the CREATE statements and column checks (each a statement SQLite
  // parses, paid by every short-lived process).
  Result<int64_t> UserVersion();

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  Result<bool> HasColumn(const std::string& table, const std::string& column);
  friend class SqliteTransaction;

  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE (the write lock is taken at once, waiting up to the busy
// timeout) ... Commit; rolled back when destroyed uncommitted.
class SqliteTransaction {
 public:
  static Result<SqliteTransaction> Begin(SqliteDb& db);
  ~SqliteTransaction();
  SqliteTransaction(SqliteTransaction&& other) noexcept;
  SqliteTransaction& operator=(SqliteTransaction&&) = delete;
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;
  Status Commit();

 private:
  explicit SqliteTransaction(SqliteDb* db) : db_(db) {}
  SqliteDb* db_ = nullptr;  // null once committed or rolled back
};

}  // namespace mxsec
