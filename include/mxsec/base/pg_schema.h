// pg_schema.h - the schema of the state a fleet of mxsec hosts shares on
// PostgreSQL (state_backend = postgresql://..., mxsec.conf(5)), created and
// migrated by mxsec itself (`mxsec db init`, `mxsec db migrate`), and the
// one way every command connects to it.
//
// Tables (version 2):
//   mxsec_schema       one row per `db init` or `migrate` that changed the
//                      schema: the version, when and by which host it was
//                      made so (the largest is the schema's version)
//   sts_policy         the MTA-STS policy cache (policy/mta_sts.h StsCache),
//                      one row per policy domain, with the host that fetched
//                      it; since version 2, a row with removed_at set is
//                      the mark of the policy's removal (StsRemoval), by
//                      removed_by
//   attempts           the attempt log TLS reports aggregate (smtp/
//                      delivery.h AttemptRecord), forwarded by every host
//                      from its local log: the key (log_id, local_id) is the
//                      row's identity in the local log it came from, so a
//                      row forwarded twice is stored once
//   tlsrpt_sent        which (day, domain, URI) got which report, and from
//   tlsrpt_report_ids  which host; the one report-id of each (day, domain)
//
// Promises:
//   - MigratePgSchema runs in one transaction under an advisory lock, so two
//     hosts migrating at once leave one schema, made once; a failure leaves
//     the schema as it was.
//   - ConnectPgState connects with the configuration's bounds and refuses a
//     database whose schema is not exactly this version: older (run `mxsec
//     db migrate`), newer (this mxsec is older than the fleet's), or absent
//     (run `mxsec db init`). A command never creates or alters the schema
//     as a side effect of its own work.
#pragma once

#include <string>

#include "mxsec/base/config.h"
#include "mxsec/base/pg.h"
#include "mxsec/base/status.h"

namespace mxsec {

inline constexpr int kPgSchemaVersion = 2;

// The schema's version in the database; 0 when it has no mxsec schema.
Result<int> PgSchemaVersion(PgConnection& c);

enum class PgMigrateMode {
  kInit,     // create the schema where there is none; an existing one at this version is fine
  kMigrate,  // bring an existing schema to this version
};

struct PgMigration {
  int from = 0, to = 0;  // equal: nothing was done
};

// `host` is recorded as the one that made the change.
Result<PgMigration> MigratePgSchema(PgConnection& c, PgMigrateMode mode, const std::string& host);

// The connection options of `cfg` (state_backend and its bounds).
PgOptions PgOptionsOf(const Config& cfg);

// Connects to cfg.state_backend and checks the schema's version.
Result<PgConnection> ConnectPgState(const Config& cfg);

// The name this host goes by in the shared state (attempt rows, reports
// sent, policies fetched): state_host_name, else helo_name, else the
// host's name.
std::string StateHostName(const Config& cfg);

}  // namespace mxsec
