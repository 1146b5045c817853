// pg_schema.cc - the shared state's schema and its migrations (pg_schema.h).
//
// Each migration is the SQL that takes the schema from one version to the
// next; a new version appends one and raises kPgSchemaVersion, and never
// edits an old one (a fleet's database went through it as written).
#include "mxsec/base/pg_schema.h"

#include <unistd.h>

#include <ctime>
#include <string>
#include <vector>

namespace mxsec {
namespace {

// Any fixed number: the advisory lock every mxsec migration takes, so two
// hosts migrating at once run one after the other.
constexpr int64_t kMigrationLock = 0x6d78736563;  // "mxsec"

// kMigrations[i] takes the schema from version i to i + 1.
const char* const kMigrations[] = {
    // 0 -> 1
    "CREATE TABLE mxsec_schema (version integer NOT NULL, migrated_at bigint NOT NULL, migrated_by text NOT NULL);"
    "CREATE TABLE sts_policy (domain text PRIMARY KEY, id text NOT NULL, text text NOT NULL,"
    " fetched_at bigint NOT NULL, expires_at bigint NOT NULL,"
    " refresh_failures integer NOT NULL DEFAULT 0, refresh_last bigint NOT NULL DEFAULT 0,"
    " refresh_next bigint NOT NULL DEFAULT 0, refresh_error text NOT NULL DEFAULT '',"
    " fetched_by text NOT NULL DEFAULT '');"
    "CREATE TABLE attempts (log_id text NOT NULL, local_id bigint NOT NULL, host text NOT NULL,"
    " sending_ip text NOT NULL DEFAULT '', time bigint NOT NULL, domain text NOT NULL, mx text, address text,"
    " port integer, policy text, mechanism text, host_tls text, tls_version text, tls_cipher text,"
    " verification text, verified integer, outcome text, code text, detail text, failure_type text,"
    " policy_type text, policy_strings text, mx_patterns text, PRIMARY KEY (log_id, local_id));"
    "CREATE INDEX attempts_by_time ON attempts (time);"
    "CREATE TABLE tlsrpt_sent (day text NOT NULL, domain text NOT NULL, uri text NOT NULL, report_id text,"
    " time bigint NOT NULL, host text NOT NULL DEFAULT '', PRIMARY KEY (day, domain, uri));"
    "CREATE TABLE tlsrpt_report_ids (day text NOT NULL, domain text NOT NULL, report_id text NOT NULL,"
    " PRIMARY KEY (day, domain));",
    // 1 -> 2: a removed MTA-STS policy leaves the mark of its removal
    // (policy/mta_sts.h StsRemoval) in its row rather than no row.
    "ALTER TABLE sts_policy ADD COLUMN removed_at bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE sts_policy ADD COLUMN removed_by text NOT NULL DEFAULT '';",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kPgSchemaVersion,
              "one migration per version: append one when raising kPgSchemaVersion");

std::string OwnHostName() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

Result<int> PgSchemaVersion(PgConnection& c) {
  // to_regclass: NULL rather than an error when the table does not exist.
  Result<PgResult> exists = c.Query("SELECT to_regclass('mxsec_schema') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  if (exists->rows() != 1 || exists->Text(0, 0) != "t") return 0;
  Result<PgResult> r = c.Query("SELECT max(version) FROM mxsec_schema");
  if (!r.ok()) return r.status();
  if (r->rows() != 1 || r->IsNull(0, 0)) return 0;
  Result<int64_t> v = r->Int64(0, 0);
  if (!v.ok()) return v.status().Prefixed("mxsec_schema: ");
  return static_cast<int>(*v);
}

Result<PgMigration> MigratePgSchema(PgConnection& c, PgMigrateMode mode, const std::string& host) {
  Result<PgTransaction> tx = PgTransaction::Begin(c);
  if (!tx.ok()) return tx.status();
  Status locked = c.Run("SELECT pg_advisory_xact_lock($1)", {PgInt(kMigrationLock)});
  if (!locked.ok()) return locked;
  Result<int> version = PgSchemaVersion(c);
  if (!version.ok()) return version.status();
  PgMigration m{*version, *version};
  if (*version > kPgSchemaVersion) {
    return Status::Invalid("the database's mxsec schema is version " + std::to_string(*version) +
                           ", newer than this mxsec's " + std::to_string(kPgSchemaVersion) +
                           ": upgrade mxsec on this host");
  }
  if (*version == kPgSchemaVersion) return m;
  if (mode == PgMigrateMode::kInit && *version != 0) {
    return Status::Invalid("the database has mxsec schema version " + std::to_string(*version) +
                           ": `mxsec db migrate` brings it to " + std::to_string(kPgSchemaVersion));
  }
  if (mode == PgMigrateMode::kMigrate && *version == 0) {
    return Status::NotFound("the database has no mxsec schema: create it with `mxsec db init`");
  }
  for (int v = *version; v < kPgSchemaVersion; ++v) {
    // One statement at a time: Run sends through the extended protocol
    // (PQexecParams), which takes one command only. No migration has a ';'
    // inside a literal.
    std::string all = kMigrations[v];
    for (size_t at = 0; at < all.size();) {
      size_t end = all.find(';', at);
      if (end == std::string::npos) end = all.size();
      const std::string statement = all.substr(at, end - at);
      at = end + 1;
      if (statement.find_first_not_of(" \n") == std::string::npos) continue;
      Status s = c.Run(statement);
      if (!s.ok()) return s.Prefixed("migration to version " + std::to_string(v + 1) + ": ");
    }
  }
  Status recorded = c.Run("INSERT INTO mxsec_schema (version, migrated_at, migrated_by) VALUES ($1, $2, $3)",
                          {PgInt(kPgSchemaVersion), PgInt(static_cast<int64_t>(time(nullptr))), host});
  if (!recorded.ok()) return recorded;
  Status committed = tx->Commit();
  if (!committed.ok()) return committed;
  m.to = kPgSchemaVersion;
  return m;
}

PgOptions PgOptionsOf(const Config& cfg) {
  PgOptions o;
  o.conninfo = cfg.state_backend;
  o.passfile = cfg.state_backend_passfile;
  o.connect_timeout_s = cfg.state_backend_connect_timeout;
  o.statement_timeout_ms = cfg.state_backend_statement_timeout * 1000;
  return o;
}

Result<PgConnection> ConnectPgState(const Config& cfg) {
  if (!IsPgBackend(cfg.state_backend)) return Status::Invalid("state_backend is not a PostgreSQL server");
  Result<PgConnection> c = PgConnection::Connect(PgOptionsOf(cfg));
  if (!c.ok()) return c.status();
  Result<int> version = PgSchemaVersion(c.value());
  if (!version.ok()) return version.status();
  if (*version == kPgSchemaVersion) return c;
  std::string where = c->where();
  if (*version == 0) {
    return Status::Invalid("PostgreSQL " + where + " has no mxsec schema: create it with `mxsec db init`");
  }
  if (*version < kPgSchemaVersion) {
    return Status::Invalid("PostgreSQL " + where + " has mxsec schema version " + std::to_string(*version) +
                           ", this mxsec needs " + std::to_string(kPgSchemaVersion) + ": run `mxsec db migrate`");
  }
  return Status::Invalid("PostgreSQL " + where + " has mxsec schema version " + std::to_string(*version) +
                         ", newer than this mxsec's " + std::to_string(kPgSchemaVersion) + ": upgrade mxsec");
}

std::string StateHostName(const Config& cfg) {
  if (!cfg.state_host_name.empty()) return cfg.state_host_name;
  if (!cfg.helo_name.empty()) return cfg.helo_name;
  return OwnHostName();
}

}  // namespace mxsec
