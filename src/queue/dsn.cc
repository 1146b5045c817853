// dsn.cc - building RFC 3464 delivery status notifications.
//
// The DSN is built as text with LF line ends; PrepareMessage turns it into
// SMTP data like any other queued message. Values that came from a server
// (replies) are hostile input: control characters are replaced and lengths
// bounded so that the report stays a well-formed message. Every line is at
// most 998 octets by construction: the fields of the delivery-status part
// are bounded and kept on one line (their meaning is the protocol's), the
// text of the human-readable part is wrapped at 78 octets (only line breaks
// are added there: it is read by people, no program parses it), and the
// returned message is reduced to its headers, or left out, when it has a NUL
// or a line that SMTP could not carry.
#include "mxsec/queue/dsn.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <random>

namespace mxsec {
namespace {

// What of a diagnostic the human-readable part shows (wrapped): a server's reply of a few
// lines fits; a longer one is cut there, marked.
constexpr size_t kDsnTextDiagnosticMax = 4000;

// One header-safe line of at most `max` octets, for the notification's
// us-ascii part and RFC 3464 fields: controls
// become spaces, octets beyond ASCII (a "§" in our reasons, UTF-8 in a
// server's reply) become '?', so that the declared charset is the truth.
std::string Clean(std::string_view s, size_t max = 900) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : u >= 0x80 ? '?' : c;
    if (out.size() >= max) break;
  }
  return out;
}

// `msg` with LF line ends: CRLF, and a CR alone, end a line, as the SMTP encoding
// (PrepareMessage) reads them; a last line without its end gets one. With `header_only`,
// only the header section: the lines before the first empty one.
std::string LfLines(std::string_view msg, bool header_only) {
  std::string out;
  out.reserve(header_only ? std::min<size_t>(msg.size(), 65536) : msg.size() + 1);
  for (size_t i = 0; i < msg.size(); ++i) {
    char c = msg[i];
    if (c == '\r') {
      if (i + 1 < msg.size() && msg[i + 1] == '\n') continue;
      c = '\n';
    }
    if (header_only && c == '\n' && (out.empty() || out.back() == '\n')) return out;
    out += c;
  }
  if (!out.empty() && out.back() != '\n') out += '\n';
  return out;
}

// The header section of `lf` (LF line ends), up to the first empty line.
std::string HeaderSection(const std::string& lf) {
  if (lf.rfind("\n", 0) == 0) return "";
  size_t blank = lf.find("\n\n");
  return blank == std::string::npos ? lf : lf.substr(0, blank + 1);
}

// Why `lf` (LF line ends) could not be sent by SMTP, or "": a NUL, or a line over 998 octets.
std::string Unsendable(std::string_view lf) {
  constexpr size_t kMaxLine = 998;  // RFC 5321 §4.5.3.1.6
  size_t line = 1;
  for (size_t pos = 0; pos < lf.size(); ++line) {
    size_t nl = lf.find('\n', pos);
    std::string_view l = lf.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (l.find('\0') != std::string_view::npos) return "it has a NUL byte on line " + std::to_string(line);
    if (l.size() > kMaxLine)
      return "its line " + std::to_string(line) + " is " + std::to_string(l.size()) + " octets long; SMTP allows 998";
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return "";
}

// `text` as lines of at most `width` octets (not counting the line end): broken at spaces
// (runs of them collapse), a word longer than the width cut into pieces; lines after the
// first are indented. Nothing is dropped.
std::string Wrap(std::string_view text, size_t width = 78) {
  const std::string indent = "    ";
  std::string out, line;
  bool first = true;
  auto fresh = [&] { return first ? line.empty() : line.size() == indent.size(); };
  auto flush = [&] {
    out += line;
    out += '\n';
    line = indent;
    first = false;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t sp = text.find(' ', pos);
    std::string_view word = text.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
    pos = sp == std::string_view::npos ? text.size() : sp + 1;
    if (word.empty()) continue;
    if (!fresh() && line.size() + 1 + word.size() > width) flush();
    if (!fresh()) line += ' ';
    while (line.size() + word.size() > width) {
      size_t take = width - line.size();
      line.append(word.substr(0, take));
      word.remove_prefix(take);
      flush();
    }
    line.append(word);
  }
  if (!fresh() || out.empty()) {
    out += line;
    out += '\n';
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

std::string BuildDsn(const DsnInput& in, std::string* reduced) {
  if (reduced) reduced->clear();
  const std::string b = Boundary();
  const bool failure = in.kind == DsnKind::kFailure;
  // What is returned: the whole message, its headers, or nothing, and what is asked for is
  // reduced when it could not be sent (a message queued before its lines were checked after
  // editing, or changed on disk: exactly the ones that bounce for being unsendable).
  bool whole = !in.omit_original && failure && !in.headers_only && in.original.size() <= kDsnMaxReturned;
  const std::string original = whole ? LfLines(in.original, false) : std::string();
  std::string headers;
  bool attach = !in.omit_original;
  std::string why_not;  // said in the human-readable part when the return is reduced
  const bool whole_was_asked = whole;
  if (whole) {
    if (std::string why = Unsendable(original); !why.empty()) {
      whole = false;
      why_not = "the original message is returned as headers only: " + why;
    }
  }
  if (attach && !whole) {
    headers = whole_was_asked ? HeaderSection(original) : LfLines(in.original, true);
    if (std::string why = Unsendable(headers); !why.empty()) {
      attach = false;
      why_not = "the original message is not returned: in its header, " + why;
    }
  }
  if (in.omit_original) why_not = "the original message is not returned";
  if (reduced && !in.omit_original) *reduced = why_not;
  const char* subject = failure                      ? "Undelivered Mail Returned to Sender"
                        : in.kind == DsnKind::kDelay ? "Delayed Mail (still being retried)"
                                                     : "Successful Mail Delivery Report";
  const char* action = failure ? "failed" : in.kind == DsnKind::kDelay ? "delayed" : "relayed";
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + Clean(in.bounce_domain, 255) + ">\n";
  m += "To: <" + Clean(in.original_sender, 300) + ">\n";
  m += std::string("Subject: ") + subject + "\n";
  m += "Date: " + Rfc5322Date(in.now) + "\n";
  m += "Message-ID: <" + Clean(in.message_id, 300) + ">\n";
  m += "Auto-Submitted: auto-replied\n";
  m += "MIME-Version: 1.0\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"" + b + "\"\n";
  m += "\nThis is a MIME-encapsulated message.\n\n";

  m += "--" + b + "\n";
  m += "Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n";
  m += "This is the mail system (mxsec) at host " + Clean(in.reporting_mta, 255) + ".\n\n";
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
  if (!attach) m += "It is not attached.\n";
  else m += "It is attached below" + std::string(whole ? "" : " (headers only)") + ".\n";
  if (!why_not.empty()) m += Wrap("(" + why_not + ".)");
  m += "\n";
  for (const DsnRecipient& r : in.recipients) {
    m += Wrap("<" + Clean(r.address, 300) + ">: " +
              (r.expired ? std::string("delivery time expired; last problem: ") : std::string("")) +
              Clean(r.diagnostic, kDsnTextDiagnosticMax) +
              (r.diagnostic.size() > kDsnTextDiagnosticMax ? " [cut]" : ""));
  }
  m += "\n";

  m += "--" + b + "\n";
  m += "Content-Description: Delivery report\nContent-Type: message/delivery-status\n\n";
  m += "Reporting-MTA: dns; " + Clean(in.reporting_mta, 255) + "\n";
  m += "X-Mxsec-Queue-ID: " + Clean(in.queue_id, 100) + "\n";
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

  if (whole) {
    m += "--" + b + "\n";
    m += "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n";
    // RFC 2046 §5.2.1: a message/rfc822 part is 7bit, 8bit or binary; say so when it is not 7bit.
    bool eight_bit = false;
    for (char c : original) eight_bit = eight_bit || static_cast<unsigned char>(c) >= 0x80;
    m += eight_bit ? "Content-Transfer-Encoding: 8bit\n\n" : "\n";
    m += original;
  } else if (attach) {
    m += "--" + b + "\n";
    m += "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n";
    m += headers;
  }
  m += "\n--" + b + "--\n";
  return m;
}

}  // namespace mxsec
