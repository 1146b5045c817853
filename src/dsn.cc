// dsn.cc - building RFC 3464 delivery status notifications.
//
// The DSN is built as text with LF line ends; PrepareMessage turns it into
// SMTP data like any other queued message. Values that came from a server
// (replies) are hostile input: control characters are replaced and lines
// are cut so that the report stays a well-formed message.
#include "mxsec/dsn.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <random>

namespace mxsec {
namespace {

// One header-safe line: no control characters, at most `max` octets.
std::string Clean(std::string_view s, size_t max = 900) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
    if (out.size() >= max) break;
  }
  return out;
}

// The header section of `msg` (up to the first empty line), LF line ends.
std::string HeaderSection(std::string_view msg) {
  std::string out;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t nl = msg.find('\n', pos);
    std::string_view line = msg.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    out.append(line);
    out += '\n';
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return out;
}

std::string Boundary() {
  std::random_device rd;
  char buf[40];
  snprintf(buf, sizeof buf, "mxsec-dsn-%08x%08x", rd(), rd());
  return buf;
}

}  // namespace

std::string Rfc5322Date(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  gmtime_r(&tt, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

std::string BuildDsn(const DsnInput& in) {
  const std::string b = Boundary();
  const bool failure = in.kind == DsnKind::kFailure;
  bool whole = failure && !in.headers_only && in.original.size() <= kDsnMaxReturned;
  const char* subject = failure                      ? "Undelivered Mail Returned to Sender"
                        : in.kind == DsnKind::kDelay ? "Delayed Mail (still being retried)"
                                                     : "Successful Mail Delivery Report";
  const char* action = failure ? "failed" : in.kind == DsnKind::kDelay ? "delayed" : "relayed";
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + in.bounce_domain + ">\n";
  m += "To: <" + in.original_sender + ">\n";
  m += std::string("Subject: ") + subject + "\n";
  m += "Date: " + Rfc5322Date(in.now) + "\n";
  m += "Message-ID: <" + in.message_id + ">\n";
  m += "Auto-Submitted: auto-replied\n";
  m += "MIME-Version: 1.0\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"" + b + "\"\n";
  m += "\nThis is a MIME-encapsulated message.\n\n";

  m += "--" + b + "\n";
  m += "Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n";
  m += "This is the mail system (mxsec) at host " + in.reporting_mta + ".\n\n";
  if (failure) {
    m += "Your message could not be delivered to one or more recipients.\n";
  } else if (in.kind == DsnKind::kDelay) {
    m += "####################################################################\n"
         "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
         "####################################################################\n\n"
         "Your message could not be delivered yet to the recipients below.\n"
         "The mail system will keep trying until " + Rfc5322Date(in.will_retry_until) + ".\n";
  } else {
    m += "Your message was successfully delivered to the next mail system for the\n"
         "recipients below. That system does not report on delivery itself: you will\n"
         "receive no further notification from it, but you may still receive notices\n"
         "of delivery errors from systems further on.\n";
  }
  m += "It is attached below" + std::string(whole ? "" : " (headers only)") + ".\n\n";
  for (const DsnRecipient& r : in.recipients) {
    m += "<" + Clean(r.address, 300) + ">: " +
         (r.expired ? std::string("delivery time expired; last problem: ") : std::string("")) +
         Clean(r.diagnostic) + "\n";
  }
  m += "\n";

  m += "--" + b + "\n";
  m += "Content-Description: Delivery report\nContent-Type: message/delivery-status\n\n";
  m += "Reporting-MTA: dns; " + in.reporting_mta + "\n";
  m += "X-Mxsec-Queue-ID: " + in.queue_id + "\n";
  if (!in.envid.empty()) m += "Original-Envelope-Id: " + Clean(in.envid, 100) + "\n";
  m += "Arrival-Date: " + Rfc5322Date(in.arrival) + "\n";
  for (const DsnRecipient& r : in.recipients) {
    m += "\nFinal-Recipient: rfc822; " + Clean(r.address, 300) + "\n";
    m += std::string("Action: ") + action + "\n";
    const char* fallback = failure ? "5.0.0" : in.kind == DsnKind::kDelay ? "4.0.0" : "2.0.0";
    m += "Status: " + (r.status.empty() ? std::string(fallback) : Clean(r.status, 20)) + "\n";
    if (!r.remote_mta.empty()) m += "Remote-MTA: dns; " + Clean(r.remote_mta, 255) + "\n";
    // A reply that starts with three digits is an SMTP reply; anything else is our own reason.
    bool smtp = r.diagnostic.size() >= 3 && isdigit(static_cast<unsigned char>(r.diagnostic[0])) &&
                isdigit(static_cast<unsigned char>(r.diagnostic[1])) &&
                isdigit(static_cast<unsigned char>(r.diagnostic[2]));
    m += std::string("Diagnostic-Code: ") + (smtp ? "smtp; " : "x-mxsec; ") + Clean(r.diagnostic) + "\n";
    m += "Last-Attempt-Date: " + Rfc5322Date(in.now) + "\n";
    if (in.kind == DsnKind::kDelay) m += "Will-Retry-Until: " + Rfc5322Date(in.will_retry_until) + "\n";
  }
  m += "\n";

  m += "--" + b + "\n";
  if (whole) {
    m += "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n";
    // RFC 2046 §5.2.1: a message/rfc822 part is 7bit, 8bit or binary; say so when it is not 7bit.
    bool eight_bit = false;
    for (char c : in.original) eight_bit = eight_bit || static_cast<unsigned char>(c) >= 0x80;
    m += eight_bit ? "Content-Transfer-Encoding: 8bit\n\n" : "\n";
    // The message as queued, with LF line ends; its lines are <= 998 octets (checked at submission).
    std::string body;
    body.reserve(in.original.size());
    for (size_t i = 0; i < in.original.size(); ++i) {
      char c = in.original[i];
      if (c == '\r') {
        if (i + 1 < in.original.size() && in.original[i + 1] == '\n') continue;
        c = '\n';
      }
      body += c;
    }
    if (!body.empty() && body.back() != '\n') body += '\n';
    m += body;
  } else {
    m += "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n";
    m += HeaderSection(in.original);
  }
  m += "\n--" + b + "--\n";
  return m;
}

}  // namespace mxsec
