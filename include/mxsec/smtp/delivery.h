// delivery.h - delivering one message to the recipients of one domain,
// with the domain's TLS policy enforced host by host.
//
// DeliverDomain walks the usable MX hosts of a DomainPolicy in preference
// order (equal preferences shuffled), every address of each host, and runs
// an SMTP session (smtp_client.h) with the TLS requirement of that host,
// until DeliveryOptions' address or session limit is reached; recipients
// still pending then are deferred with the limit named in their reply.
// A host that cannot be used (connection failure, 4xx, TLS required and not
// possible) moves on to the next; a 5xx to RCPT is final for that recipient
// only; a recipient is never sent to a host whose policy was not met.
// For an opportunistic host whose TLS handshake failed, one new plaintext
// connection is made (RFC 7435); for every other host a TLS failure is final
// for that host. What each failure means for the recipients is decided in
// smtp_trouble.h.
//
// What the sender asked of the message's TLS (requiretls.h) changes the
// walk: with REQUIRETLS only the hosts RequireTlsHost() accepts are tried,
// each session demands REQUIRETLS of its server (smtp_client.h), and when
// no host may take the message its recipients are deferred with 4.7.30;
// with `TLS-Required: No` the hosts are walked as SetAsideTlsDemands()
// makes them, and such sessions are recorded with mechanism
// "tls-required-no" and no report policy (TLS-RPT does not count them).
//
// Every session is recorded through an AttemptLog (domain, host, address,
// policy, TLS, verification, outcome, RFC 8460 failure type) for reports;
// so is, per call, every MX host taken out of use because its TLSA lookup
// was bogus or indeterminate (outcome "policy-failed", failure type
// "dnssec-invalid", no address), and a published MTA-STS policy that could
// not be fetched ("sts-policy-fetch-error") or parsed ("sts-policy-invalid")
// with no cached policy in force (policy type "sts", no host).
// Per call, the fate of the recipients is recorded too (RecordMessage:
// one row per group of recipients with the same fate), for `mxsec stats`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/policy/policy.h"
#include "mxsec/policy/requiretls.h"
#include "mxsec/smtp/smtp_client.h"
#include "mxsec/smtp/smtp_proto.h"

namespace mxsec {

struct AttemptRecord {
  int64_t time = 0;
  std::string domain, mx, address;
  uint16_t port = 25;
  std::string policy, mechanism, host_tls;
  std::string tls_version, tls_cipher, verification;
  bool verified = false;
  std::string outcome;       // "delivered", "partial", "deferred", "bounced", "host-failed", "probe-ok",
                             // "policy-failed" (no session: a TLSA lookup or MTA-STS fetch failed)
  std::string code, detail;
  std::string failure_type;  // RFC 8460 result type or ""
  // What an RFC 8460 report names as the policy of this host (tlsrpt.h):
  // policy_type "tlsa" (the host's TLSA RRset decided: dane, encrypt),
  // "sts" (an MTA-STS policy in mode enforce or testing applied), else
  // "no-policy-found"; "" in rows written by probes and by versions before
  // these columns (such rows are not reported). policy_strings: the TLSA
  // records in presentation form, or the MTA-STS policy as key: value
  // lines; mx_patterns: the MTA-STS mx patterns, or the MX host for tlsa.
  std::string policy_type;
  std::vector<std::string> policy_strings;
  std::vector<std::string> mx_patterns;
  // Who made the session, in the fleet's shared log (report/fleet_state.h):
  // the host's StateHostName and the session's local address. Rows of the
  // local log leave both "" (the host is implied; the SMTP client does not
  // report its local address).
  std::string host, sending_ip;
};

// Sets the report fields above for a session with `mx` of `policy`.
void SetReportPolicy(AttemptRecord* record, const DomainPolicy& policy, const MxPolicy& mx);
// The record of a session with `mx` of `policy` at `address`: when, where,
// under which policy (SetReportPolicy); the caller adds TLS and outcome.
AttemptRecord SessionAttemptRecord(const DomainPolicy& policy, const MxPolicy& mx, const std::string& address,
                                   uint16_t port, int64_t now);
// Takes the report fields out: a record TLS reports do not count (a probe,
// a session whose policy the sender set aside).
void ClearReportPolicy(AttemptRecord* record);
// The TLS fields of `record` from a session's TlsInfo (none without TLS).
void SetAttemptTls(AttemptRecord* record, const TlsInfo& tls);

// What one call of DeliverDomain did for a group of its recipients with
// the same fate: one message (to one destination domain) per row.
struct MessageRecord {
  int64_t time = 0;
  std::string domain;
  std::string status;          // "delivered", "deferred", "bounced"
  std::string security;        // delivered: TlsSecurityClass (tls_status.h) of the session; else ""
  // Deferred or bounced because the TLS policy could not be met: the RFC
  // 8460 result type ("starttls-not-supported", "dnssec-invalid", ...);
  // "" for every other reason.
  std::string policy_failure;
  std::string tls_status;      // TlsFeatureStatus (tls_status.h) of the recipients' last session
  int64_t recipients = 0;
};

class AttemptLog {
 public:
  virtual ~AttemptLog() = default;
  virtual Status Record(const AttemptRecord& record) = 0;
  // Logs that keep no per-message rows (test fakes) ignore them.
  virtual Status RecordMessage(const MessageRecord& /*record*/) { return Status::Ok(); }
  // Writes what a batching log holds (AttemptLogWrites::kBatched); others have nothing held.
  virtual Status Flush() { return Status::Ok(); }
};

// How the SQLite log writes: each row in its own transaction (kEach: one
// process per message, `deliver`), or rows held in memory and written
// together, at most 64 rows or 1 s after the first of them, at Flush and
// when the log is destroyed (kBatched: the queue runner; a process that
// dies loses at most those rows, never anything of the queue).
enum class AttemptLogWrites { kEach, kBatched };

// `<state_dir>/delivery.sqlite`, table `attempts` (shared by processes).
// A table written by an older version gets the missing columns added
// (ALTER TABLE ADD COLUMN), so deployed logs keep working.
Result<std::unique_ptr<AttemptLog>> OpenSqliteAttemptLog(const std::string& path,
                                                         AttemptLogWrites writes = AttemptLogWrites::kEach);

// The records of `path` with from <= time < to, oldest first (the table is
// migrated like OpenSqliteAttemptLog does). A missing file is an empty log.
Result<std::vector<AttemptRecord>> ReadAttempts(const std::string& path, int64_t from, int64_t to);

// The message rows (table `messages`) of `path` with from <= time < to,
// oldest first. A missing file, or one written before the table existed,
// is an empty log.
Result<std::vector<MessageRecord>> ReadMessages(const std::string& path, int64_t from, int64_t to);

// --- Forwarding the local log to the fleet's shared log ---
//
// Every host keeps its local log as above (the copy that survives the
// shared store being down) and forwards its rows: each local file has a
// random log id, made once with the file and stored in it (a recreated
// file gets a new one, so its rowids never meet an old file's rows), and
// each row its rowid; (log id, rowid) is the row's key in the shared store,
// which ignores a key it already has. Rows are never deleted from the local
// log and the table has no VACUUM run on it, so a rowid names one row for
// the file's life, and SQLite's single writer makes rowids appear in order:
// a reader that sees row N has seen every row below it.
//
// ForwardAttempts reads the rows after the file's "forwarded up to" mark, at
// most kForwardBatchRows at a time, hands each batch to the store in one
// transaction, and only after the store committed it raises the mark (to
// the larger of its value and the batch's last rowid: two processes may
// forward at once). A crash between the commit and the mark re-sends the
// batch next time, and the store ignores it: no row lost, none counted
// twice. The store failing leaves the mark as it was.

// A forwarded row: its rowid in the local log and what it holds.
struct ForwardedAttempt {
  int64_t local_id = 0;
  AttemptRecord record;
};

// The shared log, as the forwarder sees it (report/fleet_state.h has the
// PostgreSQL one; tests a fake).
class SharedAttemptStore {
 public:
  virtual ~SharedAttemptStore() = default;
  // Stores `rows` of the local log `log_id` all or none, ignoring those
  // whose (log_id, local_id) it already has; Ok only once committed.
  virtual Status InsertOnce(const std::string& log_id, const std::vector<ForwardedAttempt>& rows) = 0;
};

// Rows per batch (one transaction of the store), and batches per call: a
// call at the end of a delivery forwards that delivery's few rows; a log
// that was cut off from the store for long catches up over several calls
// rather than holding one for minutes.
inline constexpr size_t kForwardBatchRows = 500;
inline constexpr size_t kForwardMaxBatches = 20;

struct ForwardResult {
  size_t rows = 0;     // rows handed to the store (and committed) by this call
  bool more = false;   // rows are left for a later call (kForwardMaxBatches reached)
};

// Forwards the rows of the log at `path` (see above). A missing file has
// nothing to forward.
Result<ForwardResult> ForwardAttempts(const std::string& path, SharedAttemptStore* store);

// The log id of the log at `path` and its mark (for tests and `mxsec db
// forward`'s report); a missing file is an error.
struct ForwardMark {
  std::string log_id;
  int64_t forwarded_up_to = 0;
  int64_t last_id = 0;  // the newest row's rowid, 0 when empty
};
Result<ForwardMark> ReadForwardMark(const std::string& path);

struct RecipientOutcome {
  Mailbox recipient;
  RcptStatus status = RcptStatus::kDeferred;
  std::string code;     // RFC 3463
  std::string reply;    // the server's reply or our reason
  bool reached = false; // a server was reached for this recipient
  bool dsn_passed = false;  // the server that settled it announced DSN and got NOTIFY= (smtp_client.h)
  std::string relay_host, relay_address;
  uint16_t relay_port = 0;
  TlsInfo tls;
  std::string tls_status;      // TlsFeatureStatus (tls_status.h): "dane", "may:none", "secure!", "dane?"
  std::string policy_failure;  // deferred or bounced because the TLS policy was not met: RFC 8460 type, else ""
};

using SessionRunner = std::function<SessionResult(const std::string& address, uint16_t port,
                                                  const SessionOptions& options, const Envelope* envelope,
                                                  int64_t now)>;

struct DeliveryOptions {
  std::string helo_name;
  std::string bind_address4, bind_address6;  // SessionOptions'
  uint16_t port = 25;
  SmtpTimeouts timeouts;
  std::string ca_file;
  SessionRunner session = RunSmtpSession;   // tests substitute a fake
  bool shuffle_equal_preferences = true;
  // Per call (one delivery attempt), as Postfix's smtp_mx_address_limit and
  // smtp_mx_session_limit: at most `mx_address_limit` addresses are tried,
  // in preference order, and at most `mx_session_limit` sessions get as far
  // as a mail transaction (a session that fails before, at connect, the
  // greeting, EHLO or TLS, does not count). Both are at least 1.
  size_t mx_address_limit = 5;
  size_t mx_session_limit = 2;
  // SessionOptions::reuse_connection and resume_tls (for a runner that
  // keeps sessions, smtp_client.h RunSmtpSessionCached).
  bool reuse_connection = true;
  bool resume_tls = true;
  // Called for every host that failed, and for every session that resumed
  // a TLS session, with a line for the log.
  std::function<void(const std::string&)> log;
};

// Delivers `message` from `sender` to `recipients` (all in policy.domain).
// Returns one outcome per recipient, in order. `dsn` (may be null): the
// sender's RFC 3461 request, passed on to servers that announce DSN.
// `message_tls`: the sender's RFC 8689 request (see above).
std::vector<RecipientOutcome> DeliverDomain(const DomainPolicy& policy, const Mailbox& sender,
                                            const std::vector<Mailbox>& recipients,
                                            const PreparedMessage& message, const DeliveryOptions& options,
                                            AttemptLog* log, Clock* clock, const DsnRequest* dsn = nullptr,
                                            MessageTls message_tls = MessageTls::kPolicy);

// The session options that enforce `mx`'s policy (shared by deliver and probe).
SessionOptions SessionOptionsFor(const DomainPolicy& policy, const MxPolicy& mx, const DeliveryOptions& options);

}  // namespace mxsec
