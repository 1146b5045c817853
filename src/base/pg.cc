// pg.cc - libpq behind pg.h's contract.
//
// The session's timeouts go in the startup packet (the `options` keyword),
// so a connection costs no extra round trip to set them. libpq bounds the
// connect itself (connect_timeout) but not a read from a server that went
// silent mid-statement: tcp_user_timeout (Linux) closes such a connection
// once sent data has gone unacknowledged for longer than any statement may
// take, and keepalives catch a peer that vanished while we waited for a
// reply to a statement already sent.
#include "mxsec/base/pg.h"

#include <libpq-fe.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "pq_api.h"

namespace mxsec {
namespace {

// The loaded library. Only code that holds a connection or a result calls
// it, and neither exists unless LoadPq succeeded first (Connect and
// ParsePgConnectionString load it and fail without it).
const PqApi& Pq() { return *LoadPq(nullptr); }

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// libpq ends its messages with a newline, sometimes two lines.
std::string OneLine(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s.empty() ? "unknown libpq error" : s;
}

Status::Code CodeOfSqlstate(const std::string& state, bool connection_bad) {
  if (connection_bad) return Status::Code::kUnavailable;
  // 08: connection exception; 57P01-57P03: the server is shutting down or
  // cannot take us; 25P03: our transaction sat idle past the bound.
  if (StartsWith(state, "08") || state == "57P01" || state == "57P02" || state == "57P03" || state == "25P03") {
    return Status::Code::kUnavailable;
  }
  // 57014: statement timeout; 40001, 40P01: the transaction lost a race and
  // may simply be run again.
  if (state == "57014" || state == "40001" || state == "40P01") return Status::Code::kTimeout;
  return Status::Code::kGeneric;
}

}  // namespace

bool IsPgBackend(std::string_view v) {
  return StartsWith(v, "postgresql://") || StartsWith(v, "postgres://") || v.find('=') != std::string_view::npos;
}

Result<std::string> ParsePgConnectionString(std::string_view text) {
  if (!IsPgBackend(text)) {
    return Status::Invalid("not a PostgreSQL connection string (postgresql://... or key=value pairs)");
  }
  std::string load_error;
  if (LoadPq(&load_error) == nullptr) return Status::Unavailable(load_error);
  std::string s(text);
  char* error = nullptr;
  PQconninfoOption* options = Pq().conninfoParse(s.c_str(), &error);
  if (options == nullptr) {
    std::string why = error ? OneLine(error) : "out of memory";
    if (error) Pq().freemem(error);
    return Status::Invalid("libpq cannot read it: " + why);
  }
  bool has_password = false;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') has_password = true;
  }
  Pq().conninfoFree(options);
  if (has_password) {
    return Status::Invalid(
        "it holds a password: put the password in a passfile (state_backend_passfile, or PGPASSFILE) instead");
  }
  return s;
}

PgResult::~PgResult() {
  if (r_) Pq().clear(r_);
}
PgResult::PgResult(PgResult&& other) noexcept : r_(std::exchange(other.r_, nullptr)) {}
PgResult& PgResult::operator=(PgResult&& other) noexcept {
  if (this != &other) {
    if (r_) Pq().clear(r_);
    r_ = std::exchange(other.r_, nullptr);
  }
  return *this;
}
int PgResult::rows() const { return r_ ? Pq().ntuples(r_) : 0; }
int PgResult::columns() const { return r_ ? Pq().nfields(r_) : 0; }
bool PgResult::IsNull(int row, int column) const { return !r_ || Pq().getisnull(r_, row, column) != 0; }
std::string PgResult::Text(int row, int column) const {
  if (IsNull(row, column)) return "";
  return std::string(Pq().getvalue(r_, row, column), static_cast<size_t>(Pq().getlength(r_, row, column)));
}
Result<int64_t> PgResult::Int64(int row, int column) const {
  std::string text = Text(row, column);
  const char* name = r_ ? Pq().fname(r_, column) : nullptr;
  char* end = nullptr;
  errno = 0;
  long long v = text.empty() ? 0 : strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || end == nullptr || *end != '\0') {
    return Status::Invalid(std::string("column ") + (name ? name : "?") + " is not a number: \"" + text + "\"");
  }
  return static_cast<int64_t>(v);
}
int64_t PgResult::affected() const {
  const char* n = r_ ? Pq().cmdTuples(r_) : nullptr;
  return (n && *n) ? strtoll(n, nullptr, 10) : 0;
}

PgConnection::PgConnection(pg_conn* c) : c_(c) {
  const char* host = Pq().host(c);
  const char* port = Pq().port(c);
  const char* db = Pq().db(c);
  where_ = std::string(host ? host : "?") + ":" + (port ? port : "?") + "/" + (db ? db : "?");
}
PgConnection::~PgConnection() {
  if (c_) Pq().finish(c_);
}
PgConnection::PgConnection(PgConnection&& other) noexcept
    : c_(std::exchange(other.c_, nullptr)), sqlstate_(std::move(other.sqlstate_)), where_(std::move(other.where_)) {}
PgConnection& PgConnection::operator=(PgConnection&& other) noexcept {
  if (this != &other) {
    if (c_) Pq().finish(c_);
    c_ = std::exchange(other.c_, nullptr);
    sqlstate_ = std::move(other.sqlstate_);
    where_ = std::move(other.where_);
  }
  return *this;
}

Result<PgConnection> PgConnection::Connect(const PgOptions& o) {
  std::string load_error;
  if (LoadPq(&load_error) == nullptr) return Status::Unavailable("PostgreSQL: " + load_error);
  std::string connect_timeout = std::to_string(o.connect_timeout_s < 2 ? 2 : o.connect_timeout_s);
  std::string session = "-c statement_timeout=" + std::to_string(o.statement_timeout_ms) +
                        " -c idle_in_transaction_session_timeout=" + std::to_string(o.idle_in_transaction_ms);
  // Data unacknowledged this long means the server is gone: longer than any
  // statement may run, so it never cuts a slow but live one.
  std::string tcp_user_timeout = std::to_string(o.statement_timeout_ms + 1000 * (o.connect_timeout_s + 5));
  std::vector<const char*> keys = {"dbname", "connect_timeout", "options", "application_name",
                                   "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                                   "tcp_user_timeout"};
  std::vector<const char*> values = {o.conninfo.c_str(), connect_timeout.c_str(), session.c_str(),
                                     o.application_name.c_str(), "1", "10", "5", "3", tcp_user_timeout.c_str()};
  if (!o.passfile.empty()) {
    keys.push_back("passfile");
    values.push_back(o.passfile.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* c = Pq().connectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (c == nullptr) return Status::Unavailable("PostgreSQL: out of memory");
  if (Pq().status(c) != CONNECTION_OK) {
    std::string why = OneLine(Pq().errorMessage(c));
    Pq().finish(c);
    return Status::Unavailable("PostgreSQL: " + why);
  }
  return PgConnection(c);
}

bool PgConnection::usable() const { return c_ != nullptr && Pq().status(c_) == CONNECTION_OK; }

Result<PgResult> PgConnection::Query(std::string_view sql, const std::vector<PgParam>& params) {
  sqlstate_.clear();
  if (c_ == nullptr) return Status::Unavailable("PostgreSQL: not connected");
  std::string statement(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const PgParam& p : params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(Pq().execParams(c_, statement.c_str(), static_cast<int>(params.size()), nullptr, values.data(), nullptr,
                          nullptr, 0));
  ExecStatusType st = r.r_ ? Pq().resultStatus(r.r_) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  const char* state = r.r_ ? Pq().resultErrorField(r.r_, PG_DIAG_SQLSTATE) : nullptr;
  sqlstate_ = state ? state : "";
  std::string why = OneLine(r.r_ ? Pq().resultErrorMessage(r.r_) : Pq().errorMessage(c_));
  if (why == "unknown libpq error") why = OneLine(Pq().errorMessage(c_));
  return Status::Error(CodeOfSqlstate(sqlstate_, Pq().status(c_) != CONNECTION_OK), "PostgreSQL " + where_ + ": " + why);
}

Status PgConnection::Run(std::string_view sql, const std::vector<PgParam>& params) {
  Result<PgResult> r = Query(sql, params);
  return r.ok() ? Status::Ok() : r.status();
}

Result<PgTransaction> PgTransaction::Begin(PgConnection& c) {
  Status s = c.Run("BEGIN");
  if (!s.ok()) return s;
  return PgTransaction(&c);
}
PgTransaction::~PgTransaction() {
  // A broken connection has no transaction left to roll back.
  if (c_ != nullptr && c_->usable()) (void)c_->Run("ROLLBACK");
}
PgTransaction::PgTransaction(PgTransaction&& other) noexcept : c_(std::exchange(other.c_, nullptr)) {}
Status PgTransaction::Commit() {
  if (c_ == nullptr) return Status::Error("PostgreSQL: commit of a finished transaction");
  PgConnection* c = std::exchange(c_, nullptr);
  // A transaction in which a statement failed answers COMMIT with the tag
  // ROLLBACK and no error: that is a failure, never a silent success.
  Result<PgResult> r = c->Query("COMMIT");
  if (!r.ok()) return r.status();
  const char* tag = r->r_ ? Pq().cmdStatus(r->r_) : nullptr;
  if (tag == nullptr || std::string_view(tag) != "COMMIT") {
    return Status::Error("PostgreSQL " + c->where() + ": the transaction was rolled back, not committed");
  }
  return Status::Ok();
}

}  // namespace mxsec
