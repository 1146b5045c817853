// dsn.h - delivery status notifications (RFC 3464) for the sendmail queue.
//
// BuildDsn makes a complete RFC 5322 message: multipart/report;
// report-type=delivery-status with a human-readable part, a
// message/delivery-status part (one per-recipient block with the Action of
// the kind of report, Status, Diagnostic-Code and Remote-MTA when a server
// answered; Will-Retry-Until for "delayed"), and the returned message:
// for a failure message/rfc822, or text/rfc822-headers when only headers
// are asked for or the message is larger than kDsnMaxReturned; for
// "delayed" and "relayed" reports always the headers only (as Postfix).
// Every line ends in LF and is at most 998 octets; the result is always
// accepted by PrepareMessage. To keep that promise the text of the
// human-readable part is wrapped at 78 octets, and a returned message that
// SMTP could not carry (a NUL, a line over 998 octets) is reduced to its
// headers, or left out when they have one too; `reduced` (when given) says
// why, for the log. omit_original builds the minimal report: no returned
// part at all.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mxsec {

struct DsnRecipient {
  std::string address;
  std::string status;       // RFC 3463 code, e.g. "5.1.1"
  std::string diagnostic;   // the server's reply or our reason
  std::string remote_mta;   // host name of the server that answered, or ""
  bool expired = false;     // bounced because the queue lifetime ran out
};

// failure: Action: failed (a bounce). delay: Action: delayed (a warning,
// still being retried). relayed: Action: relayed (delivered to a next hop
// that does not announce DSN, for a sender who asked for success).
enum class DsnKind { kFailure, kDelay, kRelayed };

struct DsnInput {
  DsnKind kind = DsnKind::kFailure;
  int64_t will_retry_until = 0;  // kDelay: when the queue gives up
  std::string reporting_mta;   // our host name
  std::string bounce_domain;   // From: MAILER-DAEMON@<bounce_domain>
  std::string original_sender; // the To: of the DSN
  std::string queue_id;
  std::string envid;           // Original-Envelope-Id, or ""
  int64_t arrival = 0;
  int64_t now = 0;
  bool headers_only = false;
  std::vector<DsnRecipient> recipients;
  std::string_view original;   // the queued message
  std::string message_id;      // without <>
  bool omit_original = false;  // the minimal report: nothing of the original returned
};

constexpr size_t kDsnMaxReturned = 100000;

std::string BuildDsn(const DsnInput& in, std::string* reduced = nullptr);

// RFC 5322 date-time of `t` in UTC: "Mon, 23 Nov 2026 19:12:12 +0000".
std::string Rfc5322Date(int64_t t);

}  // namespace mxsec
