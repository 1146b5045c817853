// delivery.cc - one message to the recipients of one domain, host by host
// (see delivery.h for the promises), and the SQLite log of attempts.
#include "mxsec/smtp/delivery.h"
#include "mxsec/base/text.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <tuple>
#include <random>
#include <sstream>

#include "mxsec/base/net_address.h"
#include "mxsec/base/sqlite.h"
#include "mxsec/smtp/smtp_trouble.h"
#include "mxsec/smtp/tls_status.h"

namespace mxsec {

namespace {


// The tables' shape as this version writes it, stored as the file's
// user_version once made: a file already at it needs no CREATE and no
// column checks (three PRAGMA table_info each), which every `deliver`
// process paid at start. A file of an older version (0) is migrated.
// Version 2 added the forwarding state (delivery.h ForwardAttempts), 3 the
// session's source address (sending_ip, RFC 8460 sending-mta-ip).
constexpr int64_t kAttemptsSchema = 3;

// How far the attempt log's WAL may grow before a commit checkpoints and
// truncates it (SqliteOpenOptions::truncate_wal_at_frames; see OpenAttemptsDb
// for why it is not checkpointed at each close). A cost per process, not
// only a bound on disk: every `deliver` reads and checksums the whole WAL
// when it opens the file. With SQLite's automatic checkpoint instead the
// WAL was never restarted (each process forgets the last one's checkpoint)
// and grew by each delivery's pages: at 4 MB a `deliver` spent milliseconds
// of CPU on it. At 64 pages the checkpoint (two fsyncs and a truncation)
// comes every twenty deliveries or so.
constexpr int kAttemptLogWalPages = 64;

// The file's log id: random, so that two hosts' files, or a file and the
// one recreated in its place, never share one.
std::string NewLogId() {
  std::random_device rd;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    unsigned v = rd() & 0xff;
    out += kHex[v >> 4];
    out += kHex[v & 15];
  }
  return out;
}

Status PrepareVersion1(SqliteDb& db, const std::string& path);

// Creates the tables, or brings those of an older version to this one.
//
// synchronous=NORMAL (with WAL: a commit is not fsynced, a checkpoint is):
// the attempt log is not the queue. It records what sessions saw, for
// `mxsec stats` and TLS reports; whether a recipient is delivered, and
// what is tried again, is decided by the queue's envelopes (fsynced as
// queue.h promises) or by the caller's queue (Postfix's, for `deliver`),
// neither of which this touches. A process that crashes loses nothing (the
// WAL is in the page cache); a power loss may drop the last commits before
// the next checkpoint, never corrupts the file (SQLite's WAL guarantee),
// so at worst a report undercounts the sessions of those last moments.
// Every delivery paid two fsyncs (and one of the directory) for this.
Status PrepareAttemptsTable(SqliteDb& db, const std::string& path) {
  Status pragmas = db.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
  if (!pragmas.ok()) return pragmas.Prefixed(path + ": ");
  Result<int64_t> version = db.UserVersion();
  if (!version.ok()) return version.status().Prefixed(path + ": ");
  if (*version >= kAttemptsSchema) return Status::Ok();
  if (*version < 1) {
    Status v1 = PrepareVersion1(db, path);
    if (!v1.ok()) return v1;
  }
  // One row, made once: the INSERT is one statement, so two processes
  // upgrading the file at once still leave one log id.
  Status forwarding = db.Exec(
      "CREATE TABLE IF NOT EXISTS forward_state (log_id TEXT NOT NULL, forwarded_up_to INTEGER NOT NULL);"
      "INSERT INTO forward_state (log_id, forwarded_up_to) SELECT '" + NewLogId() +
      "', 0 WHERE NOT EXISTS (SELECT 1 FROM forward_state);");
  if (!forwarding.ok()) return forwarding.Prefixed(path + ": ");
  // Version 3: our end of each session (RFC 8460 §4.4 sending-mta-ip).
  Status sending_ip = db.AddColumn("attempts", "sending_ip", "TEXT NOT NULL DEFAULT ''");
  if (!sending_ip.ok()) return sending_ip.Prefixed(path + ": adding column sending_ip: ");
  return db.Exec("PRAGMA user_version = " + std::to_string(kAttemptsSchema)).Prefixed(path + ": ");
}

// The tables of version 1, or the columns a table of an older version lacks.
Status PrepareVersion1(SqliteDb& db, const std::string& path) {
  Status created = db.Exec(
      "CREATE TABLE IF NOT EXISTS attempts (time INTEGER, domain TEXT, mx TEXT, address TEXT,"
      " port INTEGER, policy TEXT, mechanism TEXT, host_tls TEXT, tls_version TEXT, tls_cipher TEXT,"
      " verification TEXT, verified INTEGER, outcome TEXT, code TEXT, detail TEXT,"
      " failure_type TEXT, policy_type TEXT, policy_strings TEXT, mx_patterns TEXT);"
      "CREATE TABLE IF NOT EXISTS messages (time INTEGER, domain TEXT, status TEXT, security TEXT,"
      " policy_failure TEXT, tls_status TEXT, recipients INTEGER);");
  if (!created.ok()) return created.Prefixed(path + ": ");
  for (const char* column : {"policy_type", "policy_strings", "mx_patterns"}) {
    Status added = db.AddColumn("attempts", column, "TEXT");
    if (!added.ok()) return added.Prefixed(path + ": adding column " + column + ": ");
  }
  return Status::Ok();
}

// The attempt log's file: the busy timeout lets parallel deliveries wait for
// each other's short writes. A `deliver` process (one per message under
// pipe(8)) that closed the file last would checkpoint the WAL into it,
// fsync both and delete the WAL, for the next process to make again: the
// WAL is checkpointed by the commit that finds it over kAttemptLogWalPages
// instead, which bounds it. So a power loss may drop the rows since that
// checkpoint (see PrepareAttemptsTable: a report undercounts; nothing is
// delivered twice or lost, that is the queue's business).
Result<SqliteDb> OpenAttemptsDb(const std::string& path, bool create) {
  SqliteOpenOptions options = SqliteOpenOptions::SharedByProcesses(kAttemptLogWalPages);
  options.create = create;
  Result<SqliteDb> db = SqliteDb::Open(path, options);
  if (!db.ok()) return db.status().Prefixed(path + ": ");
  Status prepared = PrepareAttemptsTable(db.value(), path);
  if (!prepared.ok()) return prepared;
  return db;
}

class SqliteAttemptLog : public AttemptLog {
 public:
  explicit SqliteAttemptLog(SqliteDb db) : db_(std::move(db)) {}

  Status Record(const AttemptRecord& r) override {
    std::lock_guard<std::mutex> l(mu_);
    return InsertAttempt(r);
  }

  Status RecordMessage(const MessageRecord& m) override {
    std::lock_guard<std::mutex> l(mu_);
    return InsertMessage(m);
  }

  // All the rows in one transaction: one commit instead of one per row.
  Status WriteBatch(const std::vector<AttemptRecord>& attempts, const std::vector<MessageRecord>& messages) {
    std::lock_guard<std::mutex> l(mu_);
    Result<SqliteTransaction> tx = SqliteTransaction::Begin(db_);
    if (!tx.ok()) return tx.status().Prefixed("attempt log: ");
    for (const AttemptRecord& r : attempts) {
      Status s = InsertAttempt(r);
      if (!s.ok()) return s;
    }
    for (const MessageRecord& m : messages) {
      Status s = InsertMessage(m);
      if (!s.ok()) return s;
    }
    return tx->Commit().Prefixed("attempt log: ");
  }

 private:
  Status InsertAttempt(const AttemptRecord& r) {
    static const char* kSql =
        "INSERT INTO attempts (time, domain, mx, address, port, policy, mechanism, host_tls, tls_version,"
        " tls_cipher, verification, verified, outcome, code, detail, failure_type, policy_type, policy_strings,"
        " mx_patterns, sending_ip) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)";
    Result<SqliteStatement> st = db_.Prepare(kSql);
    if (!st.ok()) return st.status().Prefixed("attempt log: ");
    int i = 1;
    // Up to a NUL byte, as always stored: no field is meant to hold one.
    auto text = [&](const std::string& s) { st->BindText(i++, s.c_str()); };
    st->BindInt64(i++, r.time);
    text(r.domain);
    text(r.mx);
    text(r.address);
    st->BindInt64(i++, r.port);
    text(r.policy);
    text(r.mechanism);
    text(r.host_tls);
    text(r.tls_version);
    text(r.tls_cipher);
    text(r.verification);
    st->BindInt64(i++, r.verified ? 1 : 0);
    text(r.outcome);
    text(r.code);
    text(r.detail);
    text(r.failure_type);
    text(r.policy_type);
    text(JoinLines(r.policy_strings));
    text(JoinLines(r.mx_patterns));
    text(r.sending_ip);
    return st->Run().Prefixed("attempt log: ");
  }

  Status InsertMessage(const MessageRecord& m) {
    Result<SqliteStatement> st = db_.Prepare(
        "INSERT INTO messages (time, domain, status, security, policy_failure, tls_status, recipients)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7)");
    if (!st.ok()) return st.status().Prefixed("attempt log: ");
    st->BindInt64(1, m.time);
    st->BindText(2, m.domain.c_str());
    st->BindText(3, m.status.c_str());
    st->BindText(4, m.security.c_str());
    st->BindText(5, m.policy_failure.c_str());
    st->BindText(6, m.tls_status.c_str());
    st->BindInt64(7, m.recipients);
    return st->Run().Prefixed("attempt log: ");
  }

  std::mutex mu_;
  SqliteDb db_;
};

// Rows kept in memory and written in one transaction when kBatchRows are
// waiting, when the oldest has waited kBatchDelayMs (checked at the next
// row), at Flush and when destroyed. For a runner that delivers many
// messages in one process: a commit per row cost it about a third of its
// throughput. A process that dies loses the rows of at most that second:
// rows of what sessions saw, for reports; what was delivered is the
// queue's, written as before.
class BatchedSqliteAttemptLog : public AttemptLog {
 public:
  static constexpr size_t kBatchRows = 64;
  static constexpr int64_t kBatchDelayMs = 1000;

  explicit BatchedSqliteAttemptLog(std::unique_ptr<SqliteAttemptLog> log) : log_(std::move(log)) {}
  ~BatchedSqliteAttemptLog() override { (void)Flush(); }

  Status Record(const AttemptRecord& r) override {
    std::unique_lock<std::mutex> l(mu_);
    attempts_.push_back(r);
    return FlushIfDue(l);
  }
  Status RecordMessage(const MessageRecord& m) override {
    std::unique_lock<std::mutex> l(mu_);
    messages_.push_back(m);
    return FlushIfDue(l);
  }
  Status Flush() override {
    std::unique_lock<std::mutex> l(mu_);
    return WriteOut(l);
  }

 private:
  static int64_t NowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  Status FlushIfDue(std::unique_lock<std::mutex>& l) {
    const int64_t now = NowMs();
    if (attempts_.size() + messages_.size() == 1) first_ms_ = now;
    if (attempts_.size() + messages_.size() < kBatchRows && now - first_ms_ < kBatchDelayMs) return Status::Ok();
    return WriteOut(l);
  }
  // Takes the rows and writes them without holding mu_ (other threads keep recording).
  Status WriteOut(std::unique_lock<std::mutex>& l) {
    std::vector<AttemptRecord> attempts;
    std::vector<MessageRecord> messages;
    attempts.swap(attempts_);
    messages.swap(messages_);
    l.unlock();
    if (attempts.empty() && messages.empty()) return Status::Ok();
    return log_->WriteBatch(attempts, messages);
  }

  std::unique_ptr<SqliteAttemptLog> log_;
  std::mutex mu_;
  std::vector<AttemptRecord> attempts_;
  std::vector<MessageRecord> messages_;
  int64_t first_ms_ = 0;
};

}  // namespace

Result<std::unique_ptr<AttemptLog>> OpenSqliteAttemptLog(const std::string& path, AttemptLogWrites writes) {
  Result<SqliteDb> db = OpenAttemptsDb(path, true);
  if (!db.ok()) return db.status();
  auto log = std::make_unique<SqliteAttemptLog>(std::move(db).value());
  if (writes == AttemptLogWrites::kBatched)
    return std::unique_ptr<AttemptLog>(new BatchedSqliteAttemptLog(std::move(log)));
  return std::unique_ptr<AttemptLog>(std::move(log));
}

namespace {

// The rows of `select` (?1 = from, ?2 = to) in the log at `path`, each
// made by `make`. A missing file has no rows.
template <typename Record>
Result<std::vector<Record>> ReadRows(const std::string& path, const char* select, int64_t from, int64_t to,
                                     Record (*make)(SqliteStatement& st)) {
  std::vector<Record> out;
  struct stat sb;
  if (stat(path.c_str(), &sb) != 0) return out;  // nothing was ever recorded
  Result<SqliteDb> db = OpenAttemptsDb(path, false);
  if (!db.ok()) return db.status();
  Result<SqliteStatement> st = db->Prepare(select);
  if (!st.ok()) return st.status().Prefixed(path + ": ");
  st->BindInt64(1, from).BindInt64(2, to);
  for (;;) {
    Result<bool> row = st->Step();
    if (!row.ok()) return row.status().Prefixed(path + ": ");
    if (!*row) break;
    out.push_back(make(st.value()));
  }
  return out;
}

// The columns of kAttemptColumns, from column `c` on.
AttemptRecord AttemptOfColumns(SqliteStatement& st, int c) {
  auto text = [&]() { return st.ColumnText(c++); };
  AttemptRecord r;
  r.time = st.ColumnInt64(c++);
  r.domain = text();
  r.mx = text();
  r.address = text();
  r.port = static_cast<uint16_t>(st.ColumnInt64(c++));
  r.policy = text();
  r.mechanism = text();
  r.host_tls = text();
  r.tls_version = text();
  r.tls_cipher = text();
  r.verification = text();
  r.verified = st.ColumnInt64(c++) != 0;
  r.outcome = text();
  r.code = text();
  r.detail = text();
  r.failure_type = text();
  r.policy_type = text();
  r.policy_strings = SplitLines(text());
  r.mx_patterns = SplitLines(text());
  r.sending_ip = text();
  return r;
}

AttemptRecord AttemptOfRow(SqliteStatement& st) { return AttemptOfColumns(st, 0); }

#define MXSEC_ATTEMPT_COLUMNS                                                                         \
  "time, domain, mx, address, port, policy, mechanism, host_tls, tls_version, tls_cipher,"            \
  " verification, verified, outcome, code, detail, failure_type, policy_type, policy_strings,"        \
  " mx_patterns, sending_ip"

MessageRecord MessageOfRow(SqliteStatement& st) {
  MessageRecord m;
  m.time = st.ColumnInt64(0);
  m.domain = st.ColumnText(1);
  m.status = st.ColumnText(2);
  m.security = st.ColumnText(3);
  m.policy_failure = st.ColumnText(4);
  m.tls_status = st.ColumnText(5);
  m.recipients = st.ColumnInt64(6);
  return m;
}

}  // namespace

Result<std::vector<AttemptRecord>> ReadAttempts(const std::string& path, int64_t from, int64_t to) {
  return ReadRows(path,
                  "SELECT " MXSEC_ATTEMPT_COLUMNS " FROM attempts WHERE time >= ?1 AND time < ?2 ORDER BY time, rowid",
                  from, to, AttemptOfRow);
}

Result<std::vector<MessageRecord>> ReadMessages(const std::string& path, int64_t from, int64_t to) {
  return ReadRows(path,
                  "SELECT time, domain, status, security, policy_failure, tls_status, recipients FROM messages"
                  " WHERE time >= ?1 AND time < ?2 ORDER BY time, rowid",
                  from, to, MessageOfRow);
}

namespace {

Result<ForwardMark> ReadMark(SqliteDb& db, const std::string& path) {
  Result<SqliteStatement> st = db.Prepare(
      "SELECT log_id, forwarded_up_to, (SELECT coalesce(max(rowid), 0) FROM attempts) FROM forward_state");
  if (!st.ok()) return st.status().Prefixed(path + ": ");
  Result<bool> row = st->Step();
  if (!row.ok()) return row.status().Prefixed(path + ": ");
  if (!*row) return Status::Invalid(path + ": no forwarding state (forward_state is empty)");
  ForwardMark m;
  m.log_id = st->ColumnText(0);
  m.forwarded_up_to = st->ColumnInt64(1);
  m.last_id = st->ColumnInt64(2);
  if (m.log_id.empty()) return Status::Invalid(path + ": forward_state has an empty log id");
  return m;
}

// The next batch after `after`, oldest first.
Result<std::vector<ForwardedAttempt>> RowsAfter(SqliteDb& db, const std::string& path, int64_t after) {
  Result<SqliteStatement> st = db.Prepare("SELECT rowid, " MXSEC_ATTEMPT_COLUMNS
                                          " FROM attempts WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
  if (!st.ok()) return st.status().Prefixed(path + ": ");
  st->BindInt64(1, after).BindInt64(2, static_cast<int64_t>(kForwardBatchRows));
  std::vector<ForwardedAttempt> out;
  for (;;) {
    Result<bool> row = st->Step();
    if (!row.ok()) return row.status().Prefixed(path + ": ");
    if (!*row) break;
    out.push_back(ForwardedAttempt{st->ColumnInt64(0), AttemptOfColumns(st.value(), 1)});
  }
  return out;
}

}  // namespace

Result<ForwardMark> ReadForwardMark(const std::string& path) {
  struct stat sb;
  if (stat(path.c_str(), &sb) != 0) return Status::NotFound(path + ": no attempt log");
  Result<SqliteDb> db = OpenAttemptsDb(path, false);
  if (!db.ok()) return db.status();
  return ReadMark(db.value(), path);
}

Result<ForwardResult> ForwardAttempts(const std::string& path, SharedAttemptStore* store) {
  ForwardResult result;
  struct stat sb;
  if (stat(path.c_str(), &sb) != 0) return result;  // nothing was ever recorded
  Result<SqliteDb> db = OpenAttemptsDb(path, false);
  if (!db.ok()) return db.status();
  Result<ForwardMark> mark = ReadMark(db.value(), path);
  if (!mark.ok()) return mark.status();
  int64_t after = mark->forwarded_up_to;
  for (size_t batch = 0; batch < kForwardMaxBatches; ++batch) {
    Result<std::vector<ForwardedAttempt>> rows = RowsAfter(db.value(), path, after);
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return result;
    Status stored = store->InsertOnce(mark->log_id, rows.value());
    if (!stored.ok()) return stored;
    // Only now, the store having committed: a crash before this line
    // re-sends the batch, which the store then ignores.
    after = rows->back().local_id;
    Result<SqliteStatement> st =
        db->Prepare("UPDATE forward_state SET forwarded_up_to = max(forwarded_up_to, ?1)");
    if (!st.ok()) return st.status().Prefixed(path + ": ");
    Status marked = st->BindInt64(1, after).Run();
    if (!marked.ok()) return marked.Prefixed(path + ": forwarded up to row " + std::to_string(after) + ": ");
    result.rows += rows->size();
    if (rows->size() < kForwardBatchRows) return result;
  }
  result.more = true;
  return result;
}

void SetReportPolicy(AttemptRecord* r, const DomainPolicy& p, const MxPolicy& mx) {
  r->policy_strings.clear();
  r->mx_patterns.clear();
  if ((mx.tls == HostTls::kDane || mx.tls == HostTls::kEncrypt) && !mx.tlsa.empty()) {
    r->policy_type = "tlsa";
    for (const TlsaRecord& t : mx.tlsa) r->policy_strings.push_back(t.ToString());
    r->mx_patterns.push_back(mx.host);
    return;
  }
  if (p.mta_sts && (p.mta_sts->mode == StsMode::kEnforce || p.mta_sts->mode == StsMode::kTesting)) {
    // The policy as RFC 8461 §3.2 lines, in the order the RFC lists the keys.
    r->policy_type = "sts";
    r->policy_strings.push_back("version: STSv1");
    r->policy_strings.push_back(std::string("mode: ") + StsModeName(p.mta_sts->mode));
    for (const std::string& m : p.mta_sts->mx) r->policy_strings.push_back("mx: " + m);
    r->policy_strings.push_back("max_age: " + std::to_string(p.mta_sts->max_age));
    r->mx_patterns = p.mta_sts->mx;
    return;
  }
  r->policy_type = "no-policy-found";
}

SessionOptions SessionOptionsFor(const DomainPolicy& policy, const MxPolicy& mx, const DeliveryOptions& options) {
  SessionOptions o;
  o.helo_name = options.helo_name;
  o.bind_address4 = options.bind_address4;
  o.bind_address6 = options.bind_address6;
  o.tls = mx.tls;
  o.timeouts = options.timeouts;
  o.ca_file = options.ca_file;
  o.reuse_connection = options.reuse_connection;
  o.resume_tls = options.resume_tls;
  o.pkix_host = mx.host;
  o.pkix_names = mx.pkix_names;
  o.sni = mx.host;
  if (policy.local) o.required_by = "local policy " + std::string(LocalTlsName(policy.local->policy)) +
                                    " (local_policy_file " + policy.local->source + ")";
  if (mx.tls == HostTls::kDane) {
    for (const TlsaRecord& t : mx.tlsa) o.tlsa.push_back(t);
    // RFC 7672 §3.2.2 reference identifiers for DANE-TA; SNI is the TLSA
    // base domain (§8.1).
    std::string base = mx.tlsa_base.empty() ? mx.host : mx.tlsa_base;
    o.sni = base;
    o.dane_names.push_back(base);
    if (base != mx.host) o.dane_names.push_back(mx.host);
    o.dane_names.push_back(policy.domain);
    if (!policy.mx_chain.empty()) o.dane_names.push_back(policy.mx_chain.back());
  }
  return o;
}

AttemptRecord SessionAttemptRecord(const DomainPolicy& p, const MxPolicy& mx, const std::string& address,
                                   uint16_t port, int64_t now) {
  AttemptRecord r;
  r.time = now;
  r.domain = p.domain;
  r.mx = mx.host;
  r.address = address;
  r.port = port;
  r.policy = VerdictName(p.verdict);
  r.mechanism = MechanismName(p.mechanism);
  r.host_tls = HostTlsName(mx.tls);
  SetReportPolicy(&r, p, mx);
  return r;
}

void ClearReportPolicy(AttemptRecord* r) {
  r->policy_type.clear();
  r->policy_strings.clear();
  r->mx_patterns.clear();
}

void SetAttemptTls(AttemptRecord* r, const TlsInfo& tls) {
  if (!tls.used) return;
  r->tls_version = tls.version;
  r->tls_cipher = tls.cipher;
  r->verification = tls.verification;
  r->verified = tls.verified;
}

namespace {

void SetHostFailed(AttemptRecord* r, const SessionResult& sr) {
  r->outcome = "host-failed";
  r->code = sr.code;
  r->detail = sr.error;
  r->failure_type = sr.failure_type;
}

// The outcome of a session with a transaction, by its recipients' fates.
const char* TransactionOutcome(size_t delivered, size_t bounced, size_t deferred) {
  return deferred == 0 && bounced == 0   ? "delivered"
         : delivered == 0 && deferred == 0 ? "bounced"
         : delivered == 0 && bounced == 0  ? "deferred"
                                           : "partial";
}

// A host taken out of use because its TLSA lookup failed (bogus or
// indeterminate, RFC 7672 §2.1.1) is a DANE failure before any session:
// RFC 8460 reports it as "dnssec-invalid" ("no valid records were
// returned from the recursive resolver"), once per delivery attempt.
void RecordTlsaLookupFailures(const DomainPolicy& policy, const DeliveryOptions& options, AttemptLog* log,
                              Clock* clock) {
  if (!log) return;
  for (const MxPolicy& m : policy.mx) {
    if (m.tls != HostTls::kSkip || !m.tlsa_looked_up ||
        (m.tlsa_dnssec != DnssecStatus::kBogus && m.tlsa_dnssec != DnssecStatus::kIndeterminate))
      continue;
    AttemptRecord rec = SessionAttemptRecord(policy, m, "", options.port, clock->Now());
    rec.policy_type = "tlsa";
    rec.policy_strings.clear();
    rec.mx_patterns = {m.host};
    rec.outcome = "policy-failed";
    rec.detail = m.reason;
    rec.failure_type = "dnssec-invalid";
    (void)log->Record(rec);
  }
}

// Records the MTA-STS policy failure of this delivery attempt, if any.
void RecordStsPolicyFailure(const DomainPolicy& policy, const DeliveryOptions& options, AttemptLog* log,
                            Clock* clock) {
  // A published MTA-STS policy (TXT record present) that could not be
  // fetched or parsed, with no cached one to fall back on: RFC 8460's
  // sts-policy-fetch-error / sts-policy-invalid, once per delivery attempt.
  if (log && policy.mta_sts && (policy.mta_sts->problem == StsProblem::kFetchFailed ||
                                policy.mta_sts->problem == StsProblem::kPolicyInvalid)) {
    AttemptRecord rec;
    rec.time = clock->Now();
    rec.domain = policy.domain;
    rec.port = options.port;
    rec.policy = VerdictName(policy.verdict);
    rec.mechanism = MechanismName(policy.mechanism);
    rec.policy_type = "sts";
    rec.outcome = "policy-failed";
    rec.detail = policy.mta_sts->error.value_or("");
    rec.failure_type = policy.mta_sts->problem == StsProblem::kPolicyInvalid ? "sts-policy-invalid"
                                                                             : "sts-policy-fetch-error";
    (void)log->Record(rec);
  }
}

// Usable hosts by preference; equal preferences in random order
// (RFC 5321 §5.1) so that load spreads as the domain intended.
std::vector<const MxPolicy*> HostsInOrder(const DomainPolicy& policy, bool shuffle_equal_preferences) {
  std::vector<const MxPolicy*> hosts;
  for (const MxPolicy& m : policy.mx)
    if (m.tls != HostTls::kSkip && !m.addresses.empty()) hosts.push_back(&m);
  if (!shuffle_equal_preferences) return hosts;
  // Seeded once per thread: a queue run shuffles for every message, and a
  // generator's set-up (random_device, 2.5 KB of state) cost more than the walk.
  thread_local std::mt19937 rng(std::random_device{}());
  for (size_t b = 0; b < hosts.size();) {
    size_t e = b;
    while (e < hosts.size() && hosts[e]->preference == hosts[b]->preference) ++e;
    std::shuffle(hosts.begin() + static_cast<long>(b), hosts.begin() + static_cast<long>(e), rng);
    b = e;
  }
  return hosts;
}

// The TLS feature status of recipients no session reached: undecided,
// at the level the domain's mechanism demands.
std::string DomainTlsStatus(const DomainPolicy& policy) {
  TlsFacts f;
  f.demand = policy.mechanism == Mechanism::kDane     ? HostTls::kDane
             : policy.mechanism == Mechanism::kMtaSts ? HostTls::kPkix
                                                      : HostTls::kMay;
  return TlsFeatureStatus(f);
}

// Why a verdict of defer is the TLS policy's doing, as an RFC 8460 result
// type: a TLSA lookup that failed, an MTA-STS policy that could not be
// fetched or parsed; "" for anything else (DNS trouble, a null MX).
std::string VerdictPolicyFailure(const DomainPolicy& policy) {
  if (policy.verdict != Verdict::kDefer) return "";
  for (const MxPolicy& m : policy.mx)
    if (m.tls == HostTls::kSkip && m.tlsa_looked_up &&
        (m.tlsa_dnssec == DnssecStatus::kBogus || m.tlsa_dnssec == DnssecStatus::kIndeterminate))
      return "dnssec-invalid";
  if (policy.mta_sts && policy.mta_sts->problem == StsProblem::kFetchFailed) return "sts-policy-fetch-error";
  if (policy.mta_sts && policy.mta_sts->problem == StsProblem::kPolicyInvalid) return "sts-policy-invalid";
  return "";
}

// One call of DeliverDomain: what it delivers, the recipients still to be
// settled, and how far the walk over the MX hosts went.
struct Walk {
  Walk(const DomainPolicy& p, const Mailbox& s, const std::vector<Mailbox>& r, const PreparedMessage& m,
       const DeliveryOptions& o, AttemptLog* l, Clock* c, const DsnRequest* d, MessageTls t)
      : policy(p), sender(s), recipients(r), message(m), options(o), log(l), clock(c), dsn(d), message_tls(t),
        out(r.size()), pending(r.size()), last_trouble(NoHostReached(p.domain)) {
    for (size_t i = 0; i < r.size(); ++i) {
      out[i].recipient = r[i];
      pending[i] = i;
    }
  }

  const DomainPolicy& policy;
  const Mailbox& sender;
  const std::vector<Mailbox>& recipients;
  const PreparedMessage& message;
  const DeliveryOptions& options;
  AttemptLog* log;
  Clock* clock;
  const DsnRequest* dsn;
  const MessageTls message_tls;
  std::vector<RecipientOutcome> out;
  std::vector<size_t> pending;  // indices of recipients no server settled yet
  RcptResult last_trouble;      // what `pending` are told if nothing better comes
  size_t addresses_tried = 0, sessions = 0;
  std::string limit_note;       // why the walk stopped early, or ""
  // What `pending` are told of TLS if nothing better comes: the last
  // session's feature status and policy failure (tls_status.h).
  std::string last_tls_status = DomainTlsStatus(policy);
  std::string last_policy_failure;

  void Record(const AttemptRecord& rec) const {
    if (log) (void)log->Record(rec);
  }
  void Log(const std::string& line) const {
    if (options.log) options.log(line);
  }
};

// Postfix's smtp_mx_address_limit / smtp_mx_session_limit: 20 MX hosts
// of up to 1024 addresses each at 30 s per connect would otherwise hold
// one delivery for days. Stopping early only defers; the policy of every
// host tried is enforced as always. Sets w.limit_note when a limit is
// reached before address `ai` of host `hi`.
bool LimitReached(Walk& w, const std::vector<const MxPolicy*>& hosts, size_t hi, size_t ai) {
  const size_t address_limit = std::max<size_t>(w.options.mx_address_limit, 1);
  const size_t session_limit = std::max<size_t>(w.options.mx_session_limit, 1);
  if (w.addresses_tried < address_limit && w.sessions < session_limit) return false;
  size_t left = hosts[hi]->addresses.size() - ai;
  for (size_t h = hi + 1; h < hosts.size(); ++h) left += hosts[h]->addresses.size();
  const bool by_address = w.addresses_tried >= address_limit;
  w.limit_note = WalkLimitNote(by_address ? WalkLimit::kAddresses : WalkLimit::kSessions,
                               by_address ? address_limit : session_limit, left);
  w.Log(w.policy.domain + ": " + w.limit_note);
  return true;
}

// The record of a session of the walk. A session whose policy the sender
// set aside (TLS-Required: No) says so, and is not one a TLS report counts.
// The source address the session used is its sending-mta-ip (RFC 8460).
AttemptRecord SessionRecord(const Walk& w, const MxPolicy& mx, const std::string& address, const SessionResult& sr) {
  AttemptRecord r = SessionAttemptRecord(w.policy, mx, address, w.options.port, w.clock->Now());
  r.sending_ip = sr.local_address;
  if (w.message_tls == MessageTls::kTlsOptional) {
    r.mechanism = MessageTlsName(MessageTls::kTlsOptional);
    ClearReportPolicy(&r);
  }
  return r;
}

// Runs the session with `address` for the pending recipients, and the one
// plaintext retry smtp_trouble.h may allow. `rec` is the attempt to record
// for the session returned (an abandoned TLS attempt is recorded here).
SessionResult RunAttempt(const Walk& w, const MxPolicy& mx, const std::string& address, AttemptRecord* rec) {
  const DeliveryOptions& options = w.options;
  SessionOptions so = SessionOptionsFor(w.policy, mx, options);
  so.requiretls = w.message_tls == MessageTls::kRequireTls;
  Envelope env;
  env.sender = w.sender;
  env.message = &w.message;
  if (w.dsn) env.dsn = *w.dsn;
  for (size_t i : w.pending) env.recipients.push_back(w.recipients[i]);

  SessionResult sr = options.session(address, options.port, so, &env, w.clock->Now());
  *rec = SessionRecord(w, mx, address, sr);
  SetAttemptTls(rec, sr.tls);
  if (sr.tls.resumed)
    w.Log(w.policy.domain + ": " + FormatRelay(mx.host, address, options.port) + ": TLS session resumed (" +
          sr.tls.version + ", " + sr.tls.verification + (sr.tls.verified ? " verified again" : " not verified") + ")");
  if (!MayRetryWithoutTls(sr, mx.tls)) return sr;
  SetHostFailed(rec, sr);
  rec->detail += "; retrying without TLS (opportunistic)";
  w.Record(*rec);
  w.Log(FormatRelay(mx.host, address, options.port) + ": " + sr.error + "; opportunistic TLS: retrying without TLS");
  so.no_tls = true;
  sr = options.session(address, options.port, so, &env, w.clock->Now());
  *rec = SessionRecord(w, mx, address, sr);
  SetAttemptTls(rec, sr.tls);
  return sr;
}

// Names the server that answered for a recipient, and what came of TLS.
void MarkReached(RecipientOutcome* o, const MxPolicy& mx, const std::string& address, uint16_t port,
                 const SessionResult& sr) {
  o->reached = true;
  o->relay_host = mx.host;
  o->relay_address = address;
  o->relay_port = port;
  o->tls = sr.tls;
  const TlsFacts facts = FactsOfSession(mx.tls, sr);
  o->tls_status = TlsFeatureStatus(facts);
  o->policy_failure = facts.progress == TlsProgress::kViolated ? sr.failure_type : "";
}

// The host could not be used: the pending recipients stay pending.
void SettleHostFailure(Walk& w, const MxPolicy& mx, const std::string& address, const SessionResult& sr,
                       AttemptRecord* rec) {
  SetHostFailed(rec, sr);
  w.Record(*rec);
  w.last_trouble = HostFailedOutcome(sr, FormatRelay(mx.host, address, w.options.port));
  const TlsFacts facts = FactsOfSession(mx.tls, sr);
  w.last_tls_status = TlsFeatureStatus(facts);
  w.last_policy_failure = facts.progress == TlsProgress::kViolated ? sr.failure_type : "";
  w.Log(w.last_trouble.reply);
  if (!sr.connected) return;
  // The host was reached and refused by our policy or its own doing: name
  // it in the recipient's line.
  for (size_t i : w.pending) {
    RecipientOutcome& o = w.out[i];
    MarkReached(&o, mx, address, w.options.port, sr);
    o.code = w.last_trouble.code;
    o.reply = w.last_trouble.reply;
    o.status = RcptStatus::kDeferred;
  }
}

// A transaction ran: settle what the server settled; recipients deferred
// for a reason another host may not have stay pending.
void SettleTransaction(Walk& w, const MxPolicy& mx, const std::string& address, const SessionResult& sr,
                       AttemptRecord* rec) {
  ++w.sessions;
  std::vector<size_t> still;
  size_t delivered = 0, bounced = 0, deferred = 0;
  for (size_t k = 0; k < w.pending.size(); ++k) {
    const RcptResult rr = k < sr.recipients.size() ? sr.recipients[k] : MissingOutcome();
    RecipientOutcome& o = w.out[w.pending[k]];
    MarkReached(&o, mx, address, w.options.port, sr);
    o.status = rr.status;
    o.code = rr.code;
    o.reply = rr.reply;
    o.dsn_passed = sr.dsn_passed;
    if (rr.status == RcptStatus::kDelivered) ++delivered;
    else if (rr.status == RcptStatus::kBounced) ++bounced;
    else {
      ++deferred;
      if (rr.try_next_host) still.push_back(w.pending[k]);
    }
  }
  rec->outcome = TransactionOutcome(delivered, bounced, deferred);
  rec->code = sr.recipients.empty() ? "" : sr.recipients.front().code;
  rec->detail = sr.recipients.empty() ? "" : sr.recipients.front().reply;
  w.Record(*rec);
  w.pending = still;
  if (w.pending.empty()) return;
  const RecipientOutcome& first = w.out[w.pending.front()];
  w.last_trouble = {RcptStatus::kDeferred, first.code,
                    FormatRelay(mx.host, address, w.options.port) + ": " + first.reply, true};
  w.last_tls_status = first.tls_status;
  w.last_policy_failure.clear();
}

// REQUIRETLS: the hosts that cannot take the message are not tried (RFC
// 8689 §4.2.1: it "MUST NOT be sent" to them); if none is left, what the
// recipients are told says why.
void KeepRequireTlsHosts(Walk& w, std::vector<const MxPolicy*>* hosts) {
  std::vector<const MxPolicy*> kept;
  for (const MxPolicy* mx : *hosts) {
    RequireTlsCheck c = RequireTlsHost(w.policy, *mx);
    if (c.eligible) {
      kept.push_back(mx);
    } else {
      w.Log(w.policy.domain + ": REQUIRETLS: not trying " + c.reason);
    }
  }
  if (kept.empty()) w.last_trouble = RequireTlsUnavailable(RequireTlsDomain(w.policy).reason);
  *hosts = std::move(kept);
}

// Every address of every usable host in order, until nobody is pending or
// a limit is reached.
void WalkHosts(Walk& w) {
  std::vector<const MxPolicy*> hosts = HostsInOrder(w.policy, w.options.shuffle_equal_preferences);
  if (w.message_tls == MessageTls::kRequireTls) KeepRequireTlsHosts(w, &hosts);
  for (size_t hi = 0; hi < hosts.size() && w.limit_note.empty(); ++hi) {
    const MxPolicy& mx = *hosts[hi];
    for (size_t ai = 0; ai < mx.addresses.size() && !w.pending.empty(); ++ai) {
      if (LimitReached(w, hosts, hi, ai)) break;
      ++w.addresses_tried;
      AttemptRecord rec;
      SessionResult sr = RunAttempt(w, mx, mx.addresses[ai], &rec);
      if (sr.host_failed) SettleHostFailure(w, mx, mx.addresses[ai], sr, &rec);
      else SettleTransaction(w, mx, mx.addresses[ai], sr, &rec);
    }
    if (w.pending.empty()) break;
  }
}

// The recipients no server settled are deferred.
void DeferUnsettled(Walk& w) {
  const RcptResult deferral = FinalDeferral(w.last_trouble);
  for (size_t i : w.pending) {
    RecipientOutcome& o = w.out[i];
    // The last host that answered keeps its word (a 4xx, a TLS failure);
    // otherwise the last connection error explains the deferral. A limit
    // that ended the walk is named either way.
    if (!(o.status == RcptStatus::kDeferred && !o.code.empty() && o.relay_host.size())) {
      o.status = deferral.status;
      o.code = deferral.code;
      o.reply = deferral.reply;
      o.tls_status = w.last_tls_status;
      o.policy_failure = w.last_policy_failure;
    }
    if (!w.limit_note.empty()) o.reply += "; " + w.limit_note;
  }
}

// One message row per group of recipients with the same fate (status,
// security class, policy failure); the group's TLS feature status is that
// of its first recipient.
void RecordMessages(const DomainPolicy& policy, const std::vector<RecipientOutcome>& out, AttemptLog* log,
                    Clock* clock) {
  if (!log) return;
  std::map<std::tuple<std::string, std::string, std::string>, MessageRecord> groups;
  const int64_t now = clock->Now();
  for (const RecipientOutcome& o : out) {
    const bool delivered = o.status == RcptStatus::kDelivered;
    MessageRecord& m = groups[{RcptStatusName(o.status), delivered ? TlsSecurityClass(o.tls) : "",
                               delivered ? "" : o.policy_failure}];
    if (m.recipients++ > 0) continue;
    m.time = now;
    m.domain = policy.domain;
    m.status = RcptStatusName(o.status);
    m.security = delivered ? TlsSecurityClass(o.tls) : "";
    m.policy_failure = delivered ? "" : o.policy_failure;
    m.tls_status = o.tls_status;
  }
  for (const auto& [key, m] : groups) (void)log->RecordMessage(m);
}

}  // namespace

std::vector<RecipientOutcome> DeliverDomain(const DomainPolicy& policy, const Mailbox& sender,
                                            const std::vector<Mailbox>& recipients,
                                            const PreparedMessage& message, const DeliveryOptions& options,
                                            AttemptLog* log, Clock* clock, const DsnRequest* dsn,
                                            MessageTls message_tls) {
  // The sender's TLS-Required: No: the walk sees the demands set aside.
  const DomainPolicy relaxed =
      message_tls == MessageTls::kTlsOptional ? SetAsideTlsDemands(policy) : DomainPolicy();
  const DomainPolicy& walked = message_tls == MessageTls::kTlsOptional ? relaxed : policy;
  Walk w(walked, sender, recipients, message, options, log, clock, dsn, message_tls);
  RecordTlsaLookupFailures(policy, options, log, clock);
  RecordStsPolicyFailure(policy, options, log, clock);
  if (std::optional<RcptResult> settled = VerdictOutcome(walked.verdict, walked.status_code, walked.domain,
                                                         walked.reason)) {
    for (RecipientOutcome& o : w.out) {
      o.status = settled->status;
      o.code = settled->code;
      o.reply = settled->reply;
      o.tls_status = w.last_tls_status;
      o.policy_failure = VerdictPolicyFailure(policy);
    }
    RecordMessages(policy, w.out, log, clock);
    return w.out;
  }
  WalkHosts(w);
  DeferUnsettled(w);
  RecordMessages(policy, w.out, log, clock);
  return w.out;
}

}  // namespace mxsec
