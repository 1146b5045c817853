// smtp_client.h - one SMTP session with one server address, with the TLS
// policy of that MX host enforced (RFC 5321, RFC 3207, RFC 7672, RFC 8461).
//
// The session connects, reads the greeting, says EHLO, negotiates STARTTLS
// as the host's policy demands, authenticates the server (DANE or PKIX),
// says EHLO again, and then either QUITs (probe) or runs one mail
// transaction. It reports what happened per recipient and, when the host
// could not be used, why, with an RFC 3463 status code and, for TLS
// failures, an RFC 8460 result type. What each failure means (the code,
// the reason, whether another host or plaintext may be tried) is decided
// in smtp_trouble.h, never here.
//
// Security promises:
//   - when the policy requires TLS (dane, encrypt, pkix) nothing but EHLO,
//     STARTTLS and QUIT is ever sent in plaintext: no STARTTLS offered, a
//     refused STARTTLS, a failed handshake or a failed verification ends
//     the session before MAIL FROM;
//   - bytes received after the 220 reply to STARTTLS and before the
//     handshake (response injection, the CVE-2011-0411 family) end the
//     session, whatever the policy;
//   - after the handshake everything learned in plaintext is forgotten and
//     EHLO is sent again;
//   - no reply after the final "." (timeout, lost connection) defers the
//     transaction's recipients with try_next_host false: the server may
//     have the message (RFC 1047), another MX now would duplicate it;
//   - with `requiretls`, no MAIL FROM is sent unless the session is TLS,
//     the server was authenticated and announced REQUIRETLS after STARTTLS;
//   - for `may`, a failed handshake is reported with `retry_plaintext` set:
//     the caller may open a NEW connection without TLS (RFC 7435); this
//     session never continues on the broken one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/dns/dns.h"
#include "mxsec/policy/verdict.h"
#include "mxsec/smtp/smtp_proto.h"
#include "mxsec/smtp/tls_verify.h"

namespace mxsec {

// Milliseconds. Writes are bounded by time without progress (data_xfer:
// while the message is sent, the timer restarts whenever octets go out),
// reads by time to the complete reply.
struct SmtpTimeouts {
  int connect = 30000, greeting = 300000, helo = 300000, starttls = 300000, mail = 300000, rcpt = 300000,
      data_init = 120000, data_xfer = 180000, data_done = 600000, quit = 300000;
  // Octets per second: the message as a whole may take data_xfer plus
  // size / min_data_rate (a server that reads a few octets just in time
  // must not hold the session for days). 0: no bound (tests only).
  int min_data_rate = 500;
};

struct SessionOptions {
  std::string helo_name;
  // Our end of connections (config smtp_bind_address, smtp_bind_address6):
  // numeric; empty, the kernel chooses. Only the one of the server's family
  // applies.
  std::string bind_address4, bind_address6;
  HostTls tls = HostTls::kMay;             // never kSkip
  bool no_tls = false;                     // `may` only: do not even try STARTTLS (plaintext retry)
  std::vector<TlsaRecord> tlsa;            // for dane
  std::vector<std::string> dane_names;     // DANE-TA reference names
  std::string sni;                         // server name sent in the handshake
  std::string pkix_host;                   // for pkix: the name the certificate must match
  std::string ca_file;                     // for pkix
  std::vector<std::string> pkix_names;     // for pkix: if not empty, accepted names instead of pkix_host
  std::string required_by;                 // who demands TLS, for messages ("" : DANE/MTA-STS by `tls`)
  SmtpTimeouts timeouts;
  bool probe_only = false;                 // QUIT after TLS and EHLO, before MAIL FROM
  // Fill TlsInfo::chain, for mxsec probe to print. Off by default: it
  // parses every certificate of the chain once more, and deliveries never
  // show it.
  bool describe_chain = false;
  // REQUIRETLS (RFC 8689 §4.2.1): no transaction unless TLS is in use, the
  // server was authenticated (dane or pkix) and announces REQUIRETLS after
  // STARTTLS; then MAIL FROM carries REQUIRETLS.
  bool requiretls = false;
  // `may` only, for measurements (mxsec survey): after the handshake the
  // chain is also checked as DANE (against `tlsa`, when not empty) and as
  // PKIX (`ca_file`, for `pkix_host`), and the results are reported in
  // TlsInfo::survey_pkix / survey_dane. They never end the session: `may`
  // is not authenticated, whatever they find.
  bool report_verification = false;
  // RunSmtpSessionCached only (config smtp_connection_cache_on_demand and
  // smtp_tls_session_cache): park the session for the next message of the
  // same key; resume a TLS session stored under the key (tls_session_store.h).
  // Not in the key: they decide how often a server is authenticated in
  // full, never how.
  bool reuse_connection = true;
  bool resume_tls = true;
};

struct Envelope {
  Mailbox sender;
  std::vector<Mailbox> recipients;
  const PreparedMessage* message = nullptr;
  DsnRequest dsn;  // RFC 3461 parameters, sent only when the server announces DSN
};

enum class RcptStatus { kDelivered, kDeferred, kBounced };
const char* RcptStatusName(RcptStatus s);  // "delivered", "deferred", "bounced"

struct RcptResult {
  RcptStatus status = RcptStatus::kDeferred;
  std::string code;    // enhanced status code ("2.0.0", "5.1.1", "4.4.1")
  std::string reply;   // the server's reply or our reason
  bool try_next_host = true;  // deferred for a reason another MX host may not have
};

struct TlsInfo {
  bool used = false;
  std::string version;       // "TLS1.3"
  std::string cipher;        // "AES-256-GCM"
  std::string description;   // gnutls_session_get_desc()
  bool resumed = false;      // an earlier session was resumed (its chain verified again, as below)
  std::string verification;  // "dane", "pkix", "none" (encrypt/may)
  bool verified = false;
  std::string detail;        // what matched, or why not
  std::optional<TlsaRecord> matched;
  std::vector<CertificateInfo> chain;  // only with SessionOptions::describe_chain
  // SessionOptions::report_verification: what each check found (dane only
  // when TLSA records were given). Informational, never enforced.
  std::optional<VerifyResult> survey_pkix;
  std::optional<VerifyResult> survey_dane;
};

struct SessionResult {
  bool connected = false;
  std::string local_address;      // our end of the connection, once connected (RFC 8460 sending-mta-ip)
  bool host_failed = false;       // nothing was (or could be) delivered here; recipients untouched
  bool retry_plaintext = false;   // may: handshake failed, a new plaintext connection is allowed
  std::string code;               // for host_failed: "4.4.1", "4.7.4", "4.7.5", or the server's
  std::string error;              // for host_failed: the reason, for logs and DSNs
  std::string failure_type;       // RFC 8460 result type when TLS failed, else ""
  std::string greeting;
  std::vector<std::string> ehlo;  // keywords of the last EHLO (after STARTTLS when TLS was used)
  bool starttls_offered = false;  // the EHLO reply in plaintext announced STARTTLS
  TlsInfo tls;
  std::vector<RcptResult> recipients;  // one per envelope recipient (when a transaction ran)
  // The server announced DSN and got the NOTIFY= list: from here on, it reports
  // (RFC 3461 §5.2.2.1); without it, a sender who asked for success gets "relayed".
  bool dsn_passed = false;
};

// Runs one session to `address` (IPv4 or IPv6 literal) on `port`.
// `envelope` may be null only with options.probe_only. `now` is used for
// certificate date checks.
SessionResult RunSmtpSession(const std::string& address, uint16_t port, const SessionOptions& options,
                             const Envelope* envelope, int64_t now);

class SessionCache;

// RunSmtpSession for a runner that delivers many messages: the transaction
// runs on a session parked in `cache` under the same key (RSET first), or
// on a new one; after a transaction that ended in step with the server
// (every reply read), the session is parked for the next message instead of
// QUIT (session_cache.h bounds uses, idle time and age). The result of a
// reused session carries the TLS facts of its handshake and authentication,
// which the key proves were made under the same policy. A new connection
// resumes the TLS session stored in the cache under the key, if any, and
// stores its own once its server was authenticated (tls_session_store.h
// says which, and how a resumed session is checked). Probes and calls
// without an envelope, or with no cache, are plain RunSmtpSession.
SessionResult RunSmtpSessionCached(SessionCache* cache, const std::string& address, uint16_t port,
                                   const SessionOptions& options, const Envelope* envelope, int64_t now);

// The cache key of a session: the address and port and every option that
// decided how the session was set up and its server authenticated (HELO
// name, TLS demand, TLSA records, DANE and PKIX names, SNI, CA file, who
// required TLS, REQUIRETLS). The DANE names hold the recipient domain, so
// sessions are never shared across domains.
std::string SessionCacheKey(const std::string& address, uint16_t port, const SessionOptions& options);

}  // namespace mxsec
