// sqlite_wal_test.cc - SqliteOpenOptions::checkpoint_on_close: the last
// connection to close leaves the WAL (and its rows) for the next opener
// instead of checkpointing and deleting it, as the attempt log of `deliver`
// opens it; the default still checkpoints. Both keep every committed row.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <string>

#include "mxsec/base/sqlite.h"
#include "temp_queue_dir.h"

using namespace mxsec;
using mxsec_test::TempQueueDir;

namespace {

bool Exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

// Opens `path` in WAL mode, adds one row to t, closes.
void AppendRow(const std::string& path, bool checkpoint_on_close) {
  SqliteOpenOptions options;
  options.checkpoint_on_close = checkpoint_on_close;
  Result<SqliteDb> db = SqliteDb::Open(path, options);
  REQUIRE_MESSAGE(db.ok(), db.error());
  REQUIRE(
      db->Exec("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (x INTEGER); INSERT INTO t VALUES (1);").ok());
}

int64_t Rows(const std::string& path) {
  Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions{});
  REQUIRE_MESSAGE(db.ok(), db.error());
  Result<SqliteStatement> st = db->Prepare("SELECT count(*) FROM t");
  REQUIRE(st.ok());
  Result<bool> row = st->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return st->ColumnInt64(0);
}

}  // namespace

TEST_CASE("sqlite: checkpoint_on_close false leaves the WAL with its rows; the default removes it") {
  TempQueueDir dir("mxsec-sqlite-wal-test");
  REQUIRE(mkdir(dir.path.c_str(), 0700) == 0);
  const std::string kept = dir.path + "/kept.sqlite", checkpointed = dir.path + "/checkpointed.sqlite";

  AppendRow(kept, false);
  AppendRow(kept, false);
  CHECK(Exists(kept + "-wal"));  // not checkpointed and deleted by the last close
  AppendRow(checkpointed, true);
  CHECK_FALSE(Exists(checkpointed + "-wal"));

  CHECK(Rows(kept) == 2);  // the rows are there for the next opener, from the WAL
  CHECK(Rows(checkpointed) == 1);
}
