// sqlite_test.cc - the SQLite wrapper (base/sqlite.h): round trips, and the
// error paths with the codes callers branch on (a file that cannot be
// opened, a damaged file, a lock held past the busy timeout, a failed bind).
#include <doctest/doctest.h>

#include <sqlite3.h>

#include <fstream>
#include <string>

#include "mxsec/base/sqlite.h"
#include "temp_queue_dir.h"

using namespace mxsec;
using mxsec_test::TempQueueDir;

namespace {

SqliteDb MustOpen(const std::string& path, int busy_timeout_ms = 5000) {
  SqliteOpenOptions options;
  options.busy_timeout_ms = busy_timeout_ms;
  Result<SqliteDb> db = SqliteDb::Open(path, options);
  REQUIRE_MESSAGE(db.ok(), db.error());
  return std::move(db).value();
}

SqliteStatement MustPrepare(SqliteDb& db, const std::string& sql) {
  Result<SqliteStatement> st = db.Prepare(sql);
  REQUIRE_MESSAGE(st.ok(), st.error());
  return std::move(st).value();
}

int64_t CountRows(SqliteDb& db, const std::string& table) {
  SqliteStatement st = MustPrepare(db, "SELECT count(*) FROM " + table);
  Result<bool> row = st.Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return st.ColumnInt64(0);
}

}  // namespace

TEST_CASE("sqlite: bind, step and columns round trip; text keeps NUL bytes; NULL reads as empty") {
  TempQueueDir dir("mxsec-sqlite-test");
  SqliteDb db = MustOpen(dir.path + ".db");
  REQUIRE(db.Exec("CREATE TABLE t (name TEXT, n INTEGER, extra TEXT)").ok());
  const std::string with_nul("a\0b", 3);
  SqliteStatement insert = MustPrepare(db, "INSERT INTO t (name, n) VALUES (?1, ?2)");
  CHECK(insert.BindText(1, with_nul).BindInt64(2, int64_t{1} << 40).Run().ok());
  insert.Reset();
  CHECK(insert.BindText(1, "second").BindInt64(2, -7).Run().ok());

  SqliteStatement select = MustPrepare(db, "SELECT name, n, extra FROM t ORDER BY n DESC");
  Result<bool> row = select.Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  CHECK(select.ColumnText(0) == with_nul);
  CHECK(select.ColumnInt64(1) == int64_t{1} << 40);
  CHECK(select.ColumnType(0) == SqliteStatement::Type::kText);
  CHECK(select.ColumnType(1) == SqliteStatement::Type::kInteger);
  CHECK(select.ColumnType(2) == SqliteStatement::Type::kNull);
  CHECK(select.ColumnText(2).empty());
  row = select.Step();
  REQUIRE(row.ok());
  CHECK(*row);
  CHECK(select.ColumnText(0) == "second");
  row = select.Step();
  REQUIRE(row.ok());
  CHECK_FALSE(*row);
  // Reset makes a statement run again from the start.
  select.Reset();
  row = select.Step();
  REQUIRE(row.ok());
  CHECK(*row);
}

TEST_CASE("sqlite: a file that cannot be opened is an I/O error in SQLite's words") {
  SqliteOpenOptions options;
  Result<SqliteDb> db = SqliteDb::Open("/nonexistent-mxsec-test-dir/sub/x.db", options);
  REQUIRE_FALSE(db.ok());
  CHECK(db.status().IsIoError());
  CHECK(db.error() == "unable to open database file");

  TempQueueDir dir("mxsec-sqlite-test");
  options.create = false;  // the file must exist
  db = SqliteDb::Open(dir.path + ".db", options);
  REQUIRE_FALSE(db.ok());
  CHECK(db.status().IsIoError());
}

TEST_CASE("sqlite: a damaged file is invalid, SQL errors are generic, bad statements do not prepare") {
  TempQueueDir dir("mxsec-sqlite-test");
  const std::string path = dir.path + ".db";
  {
    std::ofstream junk(path);
    junk << std::string(4096, 'x');
  }
  SqliteDb damaged = MustOpen(path);  // SQLite reads the file lazily
  Status s = damaged.Exec("CREATE TABLE t (a)");
  CHECK(s.IsInvalid());
  CHECK(s.message() == "file is not a database");

  SqliteDb db = MustOpen(dir.path + "-2.db");
  s = db.Exec("SELEC 1");
  CHECK(s.code() == Status::Code::kGeneric);
  CHECK(s.message().find("syntax error") != std::string::npos);
  Result<SqliteStatement> st = db.Prepare("SELECT * FROM missing");
  REQUIRE_FALSE(st.ok());
  CHECK(st.error() == "no such table: missing");
  st = db.Prepare("   ");
  REQUIRE_FALSE(st.ok());
  CHECK(st.status().IsInvalid());
}

TEST_CASE("sqlite: a failed bind is reported by the step, and nothing runs") {
  TempQueueDir dir("mxsec-sqlite-test");
  SqliteDb db = MustOpen(dir.path + ".db");
  REQUIRE(db.Exec("CREATE TABLE t (a TEXT PRIMARY KEY)").ok());
  SqliteStatement insert = MustPrepare(db, "INSERT INTO t VALUES (?1)");
  Status s = insert.BindText(1, "x").BindText(2, "no such parameter").Run();
  CHECK_FALSE(s.ok());
  CHECK(s.message() == "column index out of range");
  CHECK(CountRows(db, "t") == 0);
  // After a reset the statement is usable again; a constraint is an error.
  insert.Reset();
  CHECK(insert.BindText(1, "x").Run().ok());
  insert.Reset();
  s = insert.BindText(1, "x").Run();
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("UNIQUE constraint failed") != std::string::npos);
  // A moved-from statement has nothing to run.
  SqliteStatement moved = std::move(insert);
  CHECK_FALSE(insert.Run().ok());  // NOLINT(bugprone-use-after-move): on purpose
}

TEST_CASE("sqlite: a lock held past the busy timeout is a timeout") {
  TempQueueDir dir("mxsec-sqlite-test");
  const std::string path = dir.path + ".db";
  SqliteDb holder = MustOpen(path);
  REQUIRE(holder.Exec("CREATE TABLE t (a)").ok());
  Result<SqliteTransaction> held = SqliteTransaction::Begin(holder);
  REQUIRE(held.ok());
  SqliteDb waiter = MustOpen(path, 50);
  Result<SqliteTransaction> second = SqliteTransaction::Begin(waiter);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().IsTimeout());
  Status s = waiter.Exec("INSERT INTO t VALUES (1)");
  CHECK(s.IsTimeout());
}

TEST_CASE("sqlite: a transaction commits, or rolls back when dropped") {
  TempQueueDir dir("mxsec-sqlite-test");
  SqliteDb db = MustOpen(dir.path + ".db");
  REQUIRE(db.Exec("CREATE TABLE t (a)").ok());
  {
    Result<SqliteTransaction> tx = SqliteTransaction::Begin(db);
    REQUIRE(tx.ok());
    REQUIRE(db.Exec("INSERT INTO t VALUES (1)").ok());
  }
  CHECK(CountRows(db, "t") == 0);
  {
    Result<SqliteTransaction> tx = SqliteTransaction::Begin(db);
    REQUIRE(tx.ok());
    REQUIRE(db.Exec("INSERT INTO t VALUES (1)").ok());
    CHECK(tx->Commit().ok());
    CHECK_FALSE(tx->Commit().ok());  // once only
  }
  CHECK(CountRows(db, "t") == 1);
}

TEST_CASE("sqlite: UserVersion is 0 for a new file and what was stored after") {
  TempQueueDir dir("mxsec-sqlite-test");
  const std::string path = dir.path + ".db";
  SqliteDb db = MustOpen(path);
  CHECK(db.UserVersion().value() == 0);
  REQUIRE(db.Exec("PRAGMA user_version = 7").ok());
  CHECK(MustOpen(path).UserVersion().value() == 7);
}

TEST_CASE("sqlite: a connection allocates its page cache as it reads pages, not 20 pages up front") {
  TempQueueDir dir("mxsec-sqlite-test");
  const std::string path = dir.path + ".db";
  SqliteDb db = MustOpen(path);
  REQUIRE(db.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)").ok());
  const sqlite3_int64 before = sqlite3_memory_used();
  SqliteDb again = MustOpen(path);
  REQUIRE(again.UserVersion().ok());  // reads the schema: a page or two
  // SQLite's default bulk allocation adds about 87 KB here (20 pages of 4 KB and their headers).
  CHECK(sqlite3_memory_used() - before < 40000);
}

TEST_CASE("sqlite: AddColumn migrates once and tolerates a column already there") {
  TempQueueDir dir("mxsec-sqlite-test");
  const std::string path = dir.path + ".db";
  SqliteDb db = MustOpen(path);
  REQUIRE(db.Exec("CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('old')").ok());
  CHECK(db.AddColumn("t", "b", "INTEGER NOT NULL DEFAULT 3").ok());
  CHECK(db.AddColumn("t", "b", "INTEGER NOT NULL DEFAULT 3").ok());
  SqliteDb other = MustOpen(path);  // a second process migrating too
  CHECK(other.AddColumn("t", "b", "INTEGER NOT NULL DEFAULT 3").ok());
  SqliteStatement st = MustPrepare(db, "SELECT a, b FROM t");
  Result<bool> row = st.Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  CHECK(st.ColumnText(0) == "old");
  CHECK(st.ColumnInt64(1) == 3);
  Status s = db.AddColumn("missing", "b", "TEXT");
  CHECK_FALSE(s.ok());
  CHECK(s.message() == "no such table: missing");
}
