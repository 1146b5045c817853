// fleet_state.cc - the shared attempt log and sent-once log on PostgreSQL
// (fleet_state.h).
#include "mxsec/report/fleet_state.h"
#include "mxsec/base/text.h"

#include <atomic>
#include <sstream>

#include "mxsec/base/pg_schema.h"

namespace mxsec {
namespace {

// The first key of every TLS-RPT advisory lock (the second is hashtext of
// the day and domain): keeps them apart from other users' two-key locks.
// The schema's migration lock is a one-key lock, a different key space.
constexpr int kTlsRptLockClass = 0x74727074;  // "trpt"

std::string LockKey(const std::string& day, const std::string& domain) { return day + " " + domain; }

}  // namespace

Status PgAttemptStore::InsertOnce(const std::string& log_id, const std::vector<ForwardedAttempt>& rows) {
  Result<PgTransaction> tx = PgTransaction::Begin(*c_);
  if (!tx.ok()) return tx.status();
  static const char* kSql =
      "INSERT INTO attempts (log_id, local_id, host, sending_ip, time, domain, mx, address, port, policy,"
      " mechanism, host_tls, tls_version, tls_cipher, verification, verified, outcome, code, detail,"
      " failure_type, policy_type, policy_strings, mx_patterns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
      " $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
      " ON CONFLICT (log_id, local_id) DO NOTHING";
  for (const ForwardedAttempt& row : rows) {
    const AttemptRecord& r = row.record;
    Status s = c_->Run(kSql, {log_id, PgInt(row.local_id), host_, r.sending_ip, PgInt(r.time), r.domain, r.mx,
                              r.address, PgInt(r.port), r.policy, r.mechanism, r.host_tls, r.tls_version,
                              r.tls_cipher, r.verification, PgInt(r.verified ? 1 : 0), r.outcome, r.code,
                              r.detail, r.failure_type, r.policy_type, JoinLines(r.policy_strings),
                              JoinLines(r.mx_patterns)});
    if (!s.ok()) return s.Prefixed("shared attempt log: ");
  }
  return tx->Commit().Prefixed("shared attempt log: ");
}

Result<std::vector<AttemptRecord>> ReadPgAttempts(PgConnection& c, int64_t from, int64_t to) {
  Result<PgResult> r = c.Query(
      "SELECT host, sending_ip, time, domain, mx, address, port, policy, mechanism, host_tls, tls_version,"
      " tls_cipher, verification, verified, outcome, code, detail, failure_type, policy_type, policy_strings,"
      " mx_patterns FROM attempts WHERE time >= $1 AND time < $2 ORDER BY time, host, log_id, local_id",
      {PgInt(from), PgInt(to)});
  if (!r.ok()) return r.status().Prefixed("shared attempt log: ");
  std::vector<AttemptRecord> out;
  out.reserve(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    int col = 0;
    auto text = [&]() { return r->Text(i, col++); };
    auto number = [&]() -> Result<int64_t> {
      if (r->IsNull(i, col)) { ++col; return int64_t{0}; }
      return r->Int64(i, col++);
    };
    AttemptRecord a;
    a.host = text();
    a.sending_ip = text();
    Result<int64_t> time = number();
    if (!time.ok()) return time.status();
    a.time = *time;
    a.domain = text();
    a.mx = text();
    a.address = text();
    Result<int64_t> port = number();
    if (!port.ok()) return port.status();
    a.port = static_cast<uint16_t>(*port);
    a.policy = text();
    a.mechanism = text();
    a.host_tls = text();
    a.tls_version = text();
    a.tls_cipher = text();
    a.verification = text();
    Result<int64_t> verified = number();
    if (!verified.ok()) return verified.status();
    a.verified = *verified != 0;
    a.outcome = text();
    a.code = text();
    a.detail = text();
    a.failure_type = text();
    a.policy_type = text();
    a.policy_strings = SplitLines(text());
    a.mx_patterns = SplitLines(text());
    out.push_back(std::move(a));
  }
  return out;
}

PgTlsRptSentLog::PgTlsRptSentLog(PgConnection* c, std::string host)
    : c_(c), host_(std::move(host)), where_("PostgreSQL " + c->where()) {}

Result<std::optional<std::string>> PgTlsRptSentLog::Sent(const std::string& day, const std::string& domain,
                                                         const std::string& uri) {
  Result<PgResult> r =
      c_->Query("SELECT report_id FROM tlsrpt_sent WHERE day = $1 AND domain = $2 AND uri = $3", {day, domain, uri});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<std::string>();
  if (r->IsNull(0, 0)) return std::optional<std::string>("?");
  return std::optional<std::string>(r->Text(0, 0));
}

Status PgTlsRptSentLog::Mark(const std::string& day, const std::string& domain, const std::string& uri,
                             const std::string& id, int64_t now) {
  return c_->Run(
      "INSERT INTO tlsrpt_sent (day, domain, uri, report_id, time, host) VALUES ($1, $2, $3, $4, $5, $6)"
      " ON CONFLICT (day, domain, uri) DO UPDATE SET report_id = EXCLUDED.report_id, time = EXCLUDED.time,"
      " host = EXCLUDED.host",
      {day, domain, uri, id, PgInt(now), host_});
}

Result<std::string> PgTlsRptSentLog::ReportId(const std::string& day, const std::string& domain,
                                              const std::string& proposed) {
  Status inserted = c_->Run(
      "INSERT INTO tlsrpt_report_ids (day, domain, report_id) VALUES ($1, $2, $3)"
      " ON CONFLICT (day, domain) DO NOTHING",
      {day, domain, proposed});
  if (!inserted.ok()) return inserted;
  Result<PgResult> r =
      c_->Query("SELECT report_id FROM tlsrpt_report_ids WHERE day = $1 AND domain = $2", {day, domain});
  if (!r.ok()) return r.status();
  if (r->rows() != 1 || r->Text(0, 0).empty()) return Status::NotFound("no report-id for " + day + " " + domain);
  return r->Text(0, 0);
}

Status PgTlsRptSentLog::Lock(const std::string& day, const std::string& domain) {
  return c_->Run("SELECT pg_advisory_lock($1::integer, hashtext($2))",
                 {PgInt(kTlsRptLockClass), LockKey(day, domain)});
}

void PgTlsRptSentLog::Unlock(const std::string& day, const std::string& domain) {
  // A connection that broke took the lock with it.
  if (!c_->usable()) return;
  (void)c_->Run("SELECT pg_advisory_unlock($1::integer, hashtext($2))",
                {PgInt(kTlsRptLockClass), LockKey(day, domain)});
}

std::string LocalAttemptLogPath(const Config& cfg) { return cfg.state_dir + "/delivery.sqlite"; }

Result<ForwardResult> ForwardOwnAttempts(const Config& cfg, PgConnection& c) {
  PgAttemptStore store(&c, StateHostName(cfg));
  return ForwardAttempts(LocalAttemptLogPath(cfg), &store);
}

void ForwardAttemptsAfterDelivery(const Config& cfg, const std::function<void(const std::string&)>& warn) {
  if (!IsPgBackend(cfg.state_backend)) return;
  static std::atomic<bool> warned{false};
  auto say = [&](const std::string& why) {
    if (!warned.exchange(true))
      warn("attempts not forwarded to the shared state (" + why + "); they wait in the local log");
  };
  Result<PgConnection> c = ConnectPgState(cfg);
  if (!c.ok()) return say(c.error());
  Result<ForwardResult> done = ForwardOwnAttempts(cfg, c.value());
  if (!done.ok()) say(done.error());
}

}  // namespace mxsec
