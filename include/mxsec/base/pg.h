// pg.h - the one PostgreSQL (libpq) wrapper of mxsec: an owned connection,
// a query's owned result, a transaction, and the reading of the
// `state_backend` connection string. It carries the state a fleet of mxsec
// hosts shares (state_backend = postgresql://..., mxsec.conf(5)): the
// MTA-STS policy cache, the attempt log TLS reports aggregate, and the
// TLS-RPT sent-once log. The schema they live in is pg_schema.h's.
//
// Promises:
//   - PgConnection owns its PGconn (closed on destruction), is movable and
//     not copyable; one thread at a time uses it (libpq's rule).
//   - The password never comes from the connection string: ParsePgUri
//     refuses a string that carries one, and Connect reads it from the
//     passfile it is given (else libpq's PGPASSFILE or ~/.pgpass). A
//     password on a command line or in a world-readable configuration file
//     is a password for everyone on the host.
//   - Every wait is bounded: connecting by PgOptions::connect_timeout_s,
//     every statement by statement_timeout_ms (set on the server for the
//     session, so a lock wait or a slow plan ends too), a transaction left
//     idle by idle_in_transaction_ms.
//   - Failures are Statuses naming what failed, whose code a caller may
//     branch on: kUnavailable when the server cannot be reached or the
//     connection broke (the caller falls back to its local copy and says
//     so; pg.h never retries on its own), kTimeout for the statement
//     timeout and for serialization failures and deadlocks (the caller may
//     retry the transaction), kGeneric for the rest (SQL errors,
//     constraint violations: sqlstate() tells which).
//   - Parameters are sent as text, separately from the statement ($1, $2,
//     ...): no value is ever spliced into SQL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/base/status.h"

struct pg_conn;
struct pg_result;

namespace mxsec {

// The shape of a `state_backend` value that names a PostgreSQL server: a
// libpq connection string, either a URI (postgresql://user@host:port/db?...)
// or keyword=value pairs. Returns the string as given when libpq can read
// it and it holds no password; an error saying what is wrong otherwise.
Result<std::string> ParsePgConnectionString(std::string_view text);

// True when a `state_backend` value names PostgreSQL rather than "sqlite".
bool IsPgBackend(std::string_view state_backend);

struct PgOptions {
  std::string conninfo;                 // ParsePgConnectionString's result
  std::string passfile;                 // "" = libpq's default (PGPASSFILE, ~/.pgpass)
  int connect_timeout_s = 5;            // libpq connect_timeout (it reads 1 as 2)
  int statement_timeout_ms = 10000;     // per statement, on the server
  int idle_in_transaction_ms = 60000;   // a transaction a crashed caller left open
  std::string application_name = "mxsec";  // shown in pg_stat_activity
};

// A parameter: a text value or SQL NULL.
using PgParam = std::optional<std::string>;
inline PgParam PgInt(int64_t v) { return std::to_string(v); }

class PgResult {
 public:
  PgResult() = default;
  ~PgResult();
  PgResult(PgResult&& other) noexcept;
  PgResult& operator=(PgResult&& other) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;

  int rows() const;
  int columns() const;
  bool IsNull(int row, int column) const;
  std::string Text(int row, int column) const;  // "" for NULL
  // The value as a number; an error names the column when it is not one
  // (a damaged or foreign row must not read as 0).
  Result<int64_t> Int64(int row, int column) const;
  // Rows an INSERT, UPDATE or DELETE touched.
  int64_t affected() const;

 private:
  friend class PgConnection;
  friend class PgTransaction;
  explicit PgResult(pg_result* r) : r_(r) {}
  pg_result* r_ = nullptr;
};

class PgConnection {
 public:
  PgConnection() = default;
  ~PgConnection();
  PgConnection(PgConnection&& other) noexcept;
  PgConnection& operator=(PgConnection&& other) noexcept;
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Connects and sets the session's timeouts. kUnavailable when the server
  // cannot be reached or refuses us (the message is libpq's, prefixed with
  // the server's host and port, never the password).
  static Result<PgConnection> Connect(const PgOptions& options);

  // Runs one statement with its parameters.
  Result<PgResult> Query(std::string_view sql, const std::vector<PgParam>& params = {});
  // Query, for a statement whose rows do not matter.
  Status Run(std::string_view sql, const std::vector<PgParam>& params = {});
  // The SQLSTATE of the last failed statement ("" if none or unknown).
  const std::string& sqlstate() const { return sqlstate_; }
  // False once the connection has broken: the caller opens a new one.
  bool usable() const;
  // "host:port/db", for messages.
  const std::string& where() const { return where_; }

 private:
  explicit PgConnection(pg_conn* c);
  pg_conn* c_ = nullptr;
  std::string sqlstate_;
  std::string where_;
};

// BEGIN ... COMMIT; rolled back when destroyed uncommitted. Isolation is
// READ COMMITTED (PostgreSQL's default); callers that need more say so with
// their own statements (row locks, advisory locks, ON CONFLICT).
class PgTransaction {
 public:
  static Result<PgTransaction> Begin(PgConnection& c);
  ~PgTransaction();
  PgTransaction(PgTransaction&& other) noexcept;
  PgTransaction& operator=(PgTransaction&&) = delete;
  PgTransaction(const PgTransaction&) = delete;
  PgTransaction& operator=(const PgTransaction&) = delete;
  Status Commit();

 private:
  explicit PgTransaction(PgConnection* c) : c_(c) {}
  PgConnection* c_ = nullptr;
};

}  // namespace mxsec
