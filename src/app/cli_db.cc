// cli_db.cc - `mxsec db init|migrate|status`: the shared state's schema on
// PostgreSQL (base/pg_schema.h), made and upgraded by an administrator's
// command, never as a side effect of delivering mail. `mxsec db forward`:
// this host's attempt log forwarded to the shared one now, all of it
// (report/fleet_state.h), rather than at the end of the next delivery.
//
// Exit codes (sysexits.h): 0 done; 64 usage; 78 state_backend is not a
// PostgreSQL server, or the schema is not one this mxsec can bring to its
// version (newer, or absent for `migrate`); 69 the server cannot be
// reached or refused us; 75 a timeout or a lost race (run it again); 70
// any other database error.
#include <sysexits.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli_internal.h"
#include "mxsec/base/pg.h"
#include "mxsec/base/pg_schema.h"
#include "mxsec/report/fleet_state.h"
#include "mxsec/smtp/delivery.h"

namespace mxsec {
namespace {

int ExitCodeOf(const Status& s) {
  switch (s.code()) {
    case Status::Code::kUnavailable: return EX_UNAVAILABLE;
    case Status::Code::kTimeout: return EX_TEMPFAIL;
    case Status::Code::kInvalid:
    case Status::Code::kNotFound: return EX_CONFIG;
    default: return EX_SOFTWARE;
  }
}

int DbStatus(PgConnection& c) {
  Result<int> version = PgSchemaVersion(c);
  if (!version.ok()) return Fail(ExitCodeOf(version.status()), "db status: " + version.error());
  std::cout << "database: " << c.where() << "\n";
  std::cout << "schema: " << *version << " (this mxsec: " << kPgSchemaVersion << ")\n";
  if (*version == kPgSchemaVersion) return EX_OK;
  if (*version == 0) return Fail(EX_CONFIG, "db status: no mxsec schema: create it with `mxsec db init`");
  if (*version < kPgSchemaVersion) return Fail(EX_CONFIG, "db status: run `mxsec db migrate`");
  return Fail(EX_CONFIG, "db status: the schema is newer than this mxsec: upgrade mxsec");
}

int DbForward(const Config& cfg) {
  Result<PgConnection> c = ConnectPgState(cfg);
  if (!c.ok()) return Fail(ExitCodeOf(c.status()), "db forward: " + c.error());
  size_t rows = 0;
  // Ends when the local log does: each call forwards at most
  // kForwardMaxBatches batches, and the log is finite.
  for (;;) {
    Result<ForwardResult> done = ForwardOwnAttempts(cfg, c.value());
    if (!done.ok()) return Fail(ExitCodeOf(done.status()), "db forward: " + done.error());
    rows += done->rows;
    if (!done->more) break;
  }
  const std::string path = LocalAttemptLogPath(cfg);
  Result<ForwardMark> mark = ReadForwardMark(path);
  std::cout << "db forward: " << c->where() << ": " << rows << " attempts forwarded as host "
            << StateHostName(cfg);
  if (mark.ok())
    std::cout << " (log " << mark->log_id << ", forwarded up to row " << mark->forwarded_up_to << " of "
              << mark->last_id << ")";
  std::cout << "\n";
  return EX_OK;
}

}  // namespace

int RunDb(const GlobalOptions& /*g*/, const Config& cfg, const std::vector<std::string>& args) {
  if (args.size() != 1 ||
      (args[0] != "init" && args[0] != "migrate" && args[0] != "status" && args[0] != "forward")) {
    return Fail(EX_USAGE, "usage: mxsec db init|migrate|status|forward");
  }
  const std::string& what = args[0];
  if (!IsPgBackend(cfg.state_backend)) {
    return Fail(EX_CONFIG, "db " + what + ": state_backend is \"" + cfg.state_backend +
                               "\" in " + cfg.source + ": the db command manages a PostgreSQL backend only");
  }
  if (what == "forward") return DbForward(cfg);
  Result<PgConnection> c = PgConnection::Connect(PgOptionsOf(cfg));
  if (!c.ok()) return Fail(ExitCodeOf(c.status()), "db " + what + ": " + c.error());
  if (what == "status") return DbStatus(c.value());
  PgMigrateMode mode = what == "init" ? PgMigrateMode::kInit : PgMigrateMode::kMigrate;
  Result<PgMigration> m = MigratePgSchema(c.value(), mode, StateHostName(cfg));
  if (!m.ok()) return Fail(ExitCodeOf(m.status()), "db " + what + ": " + c->where() + ": " + m.error());
  if (m->from == m->to) {
    std::cout << "db " << what << ": " << c->where() << ": schema already at version " << m->to << "\n";
  } else {
    std::cout << "db " << what << ": " << c->where() << ": schema version " << m->from << " -> " << m->to << "\n";
  }
  return EX_OK;
}

}  // namespace mxsec
