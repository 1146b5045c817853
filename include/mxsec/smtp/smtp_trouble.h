// smtp_trouble.h - what the SMTP client does about everything that goes
// wrong: the one place of the error policy, as Postfix's smtp_trouble.c.
//
// The session (smtp_client.cc) and the walk over MX hosts (delivery.cc)
// detect trouble; the functions here decide what it means: whether the
// host is given up (HostFailure) or a recipient is bounced, deferred, or
// may go on to the next MX host (RcptResult), with the RFC 3463 enhanced
// status code, the reason text for logs and DSNs, and, for TLS trouble,
// the RFC 8460 result type. They do no I/O and keep no state.
//
// Security promises (smtp_client.h states them for the session):
//   - under a policy that requires TLS (dane, encrypt, pkix) every TLS
//     trouble (STARTTLS not offered or refused, a failed handshake, a
//     failed verification) is a HostFailure without retry_plaintext: there
//     is no decision here that leads from such a host to plaintext;
//   - only `may` lets a session carry on in plaintext when STARTTLS is not
//     offered or refused, and only `may` allows a NEW plaintext connection
//     after a failed handshake (RFC 7435);
//   - EHLO refused falls back to HELO (which cannot lead to STARTTLS) only
//     where plaintext is allowed and TLS is not already in use;
//   - no reply after the end of data defers without trying another host:
//     the server may have the message (RFC 1047).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "mxsec/base/status.h"
#include "mxsec/policy/verdict.h"
#include "mxsec/smtp/smtp_client.h"
#include "mxsec/smtp/smtp_proto.h"
#include "mxsec/smtp/tls_verify.h"

namespace mxsec {

// What the policy of one host demands of TLS, as the session knows it.
struct TlsDemand {
  HostTls tls = HostTls::kMay;
  std::string required_by;  // who demands TLS, for messages ("": DANE/MTA-STS by `tls`)

  static TlsDemand Of(const SessionOptions& options) { return {options.tls, options.required_by}; }
  // dane, encrypt and pkix: no mail without TLS.
  bool Required() const;
  // "DANE", "MTA-STS", ..., or `required_by` when set.
  std::string Who() const;
};

// A host that cannot be used for this message: nothing was (or will be)
// sent to it, its recipients are untouched.
struct HostFailure {
  std::string code;              // RFC 3463: "4.4.1", "4.7.4", "4.7.5", or the server's
  std::string reason;            // for logs and DSNs
  std::string failure_type;      // RFC 8460 result type when TLS failed, else ""
  bool retry_plaintext = false;  // `may` only: a new connection without TLS is allowed
};

// --- Before the transaction: the host fails, or the session goes on. ---

HostFailure ConnectFailed(const Status& error);               // 4.4.1
HostFailure GreetingLost(const Status& error);                // 4.4.2, "greeting: ..."
HostFailure GreetingRefused(const SmtpReply& reply);          // not 220: the server's code
// EHLO (or the HELO fallback) failed; `after_starttls` for the second EHLO.
HostFailure HelloFailed(const Status& error, bool after_starttls);  // 4.5.0
// Whether a refused EHLO may be followed by HELO: never where TLS is
// required or already in use (HELO announces no STARTTLS).
bool MayFallBackToHelo(const TlsDemand& demand, bool tls_in_use);
// No STARTTLS in the EHLO reply: nullopt when the policy allows plaintext.
std::optional<HostFailure> StarttlsNotOffered(const TlsDemand& demand);
HostFailure StarttlsLost(const Status& error);                // 4.4.2, "STARTTLS: ..."
// Not 220 to STARTTLS: nullopt when the policy allows plaintext.
std::optional<HostFailure> StarttlsRefused(const SmtpReply& reply, const TlsDemand& demand);
// Octets after the 220 to STARTTLS, before the handshake (response
// injection): the host fails whatever the policy.
HostFailure DataBeforeHandshake();
// The handshake failed: retry_plaintext only where TLS is not required.
HostFailure HandshakeFailed(const Status& error, const TlsDemand& demand);
// DANE or PKIX verification failed (`result.ok` is false).
HostFailure VerificationFailed(const VerifyResult& result, const TlsDemand& demand);
// REQUIRETLS asked (RFC 8689 §4.2.1) and this session cannot carry it: no
// TLS, no authenticated server, or no REQUIRETLS announced after
// STARTTLS. 4.7.30: another host, or a later attempt, may (the queue
// bounces with 5.7.30 when the message expires). nullopt: it can.
std::optional<HostFailure> RequireTlsNotMet(const TlsInfo& tls, const EhloCapabilities& caps);

// --- In the transaction: per recipient. ---

// An extension the message or an address needs and the server lacks.
enum class MissingExtension { kEightBitMime, kSmtpUtf8Sender, kSmtpUtf8Recipient };
RcptResult ServerLacks(MissingExtension extension);  // bounced: 5.6.3, 5.6.7
RcptResult MessageTooBig(uint64_t size, uint64_t limit);  // bounced: 5.3.4

// Where the transaction was when the connection failed or a reply came.
enum class TransactionStage {
  kSendPipelined,  // MAIL, RCPT and DATA in one write (RFC 2920)
  kSendMail,
  kReadMail,
  kSendRcpt,
  kReadRcpt,
  kSendData,
  kReadData,
  kSendMessage,
  kReadEndOfData,
};
// The connection failed (write, read, timeout) at `stage`: deferred 4.4.2,
// on to the next host, except after the end of data (RFC 1047: outcome
// unknown, the next host would duplicate the message).
RcptResult StreamFailed(TransactionStage stage, const Status& error);
// A reply that does not let the transaction go on at `stage` (MAIL not
// 250, RCPT not 250/251, DATA not 354), or the reply after the end of data
// whatever it is: delivered (250), bounced (5xx) or deferred (else, on to
// the next host). The server's enhanced code is kept when it gave one.
RcptResult ReplyOutcome(TransactionStage stage, const SmtpReply& reply);

// --- Across hosts (delivery.cc). ---

// The outcome of every recipient when the domain's verdict is fail
// (bounced, "5.4.4") or defer (deferred, "4.4.3"), the policy's own code
// first; nullopt when the verdict lets delivery go on.
std::optional<RcptResult> VerdictOutcome(Verdict verdict, const std::string& status_code,
                                         const std::string& domain, const std::string& reason);
// Whether a failed session may be followed by one new connection without
// TLS: only for a `may` host whose session allowed it (a failed handshake).
bool MayRetryWithoutTls(const SessionResult& session, HostTls host_tls);
// What recipients are told when `relay` failed as a host (deferred).
RcptResult HostFailedOutcome(const SessionResult& session, const std::string& relay);
// A session that returned fewer results than recipients: deferred.
RcptResult MissingOutcome();
// Before any host: what deferred recipients are told if none is reached.
RcptResult NoHostReached(const std::string& domain);
// REQUIRETLS and no MX host of the domain may take the message (`why`):
// deferred 4.7.30, since the domain may deploy DANE or MTA-STS later.
RcptResult RequireTlsUnavailable(const std::string& why);
// The deferral of a recipient no server settled, from the last trouble of
// the walk: never a permanent code (it is a deferral).
RcptResult FinalDeferral(const RcptResult& last_trouble);
// Why the walk over MX hosts stopped early (a limit of DeliveryOptions).
enum class WalkLimit { kAddresses, kSessions };
std::string WalkLimitNote(WalkLimit limit, size_t value, size_t addresses_left);

}  // namespace mxsec
