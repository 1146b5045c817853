// smtp_proto.h - the SMTP wire format (RFC 5321), without any I/O:
// replies, EHLO capabilities, envelope addresses and message data.
//
// The SMTP client (smtp_client.cc) feeds bytes from the server into a
// ReplyReader and writes what these functions produce. Everything the
// server sends is hostile input: replies are bounded in line length and
// line count, and a malformed reply is an error, never guessed at.
//
// Message data promises (RFC 5321 §2.3.8, §4.5.2): bare CR and bare LF are
// normalised to CRLF, lines starting with '.' are dot-stuffed, a final CRLF
// is added when missing, and the data ends with CRLF.CRLF. No bare CR or
// LF is ever emitted (SMTP smuggling, CVE-2023-51764 family). Lines over
// 998 octets are refused, not folded: folding would change the message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/base/mailbox.h"
#include "mxsec/base/status.h"

namespace mxsec {

struct SmtpReply {
  int code = 0;                     // 3 digits, 200..599
  std::string enhanced;             // RFC 3463 code from the first line ("5.1.1"), or ""
  std::vector<std::string> lines;   // text after "ddd-" / "ddd " (enhanced code kept), no CRLF
  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  // "550 5.1.1 <u@example.org>: user unknown" (lines joined with " / ",
  // control characters replaced, at most ~300 characters).
  std::string Summary() const;
};

// Incremental reply parser: lines may arrive split across TCP segments and
// TLS records, several replies may arrive in one read (PIPELINING).
class ReplyReader {
 public:
  static constexpr size_t kMaxLine = 2048;   // RFC 5321 says 512; be lenient but bounded
  static constexpr size_t kMaxLines = 200;

  // Appends bytes from the server.
  void Feed(std::string_view bytes);
  // Extracts the next complete reply if there is one. Returns:
  //   a reply, nullopt when more bytes are needed, or an error for a
  //   malformed reply (bad code, codes differing between lines, a line or
  //   reply over the limits, a bare LF is accepted as line end).
  // After an error every later call returns the same error. Work is linear
  // in the bytes fed, however they are split: what was scanned is not
  // scanned again while the reply is incomplete.
  Result<std::optional<SmtpReply>> Next();
  // Bytes received but not yet consumed by Next() (the STARTTLS injection
  // check: after the 220 to STARTTLS this must be 0).
  size_t buffered() const { return buf_.size() - pos_; }
  // Octets Next() has looked at so far, all calls together: a measure of
  // its work, so that tests can hold it to a linear bound however the
  // server splits its replies.
  size_t examined() const { return examined_; }

 private:
  std::string buf_;
  size_t pos_ = 0;        // start of the reply being read
  // The incomplete reply at pos_, as far as it was scanned (offsets from
  // pos_, so that Feed may drop the consumed prefix): its complete lines
  // end at lines_end_, and the line after them has no LF before searched_.
  size_t lines_end_ = 0;
  size_t searched_ = 0;
  size_t line_count_ = 0;
  int code_ = 0;
  std::string error_;     // set once; the reader is unusable from then on
  size_t examined_ = 0;
};

struct EhloCapabilities {
  bool starttls = false;
  bool pipelining = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool enhancedstatuscodes = false;
  bool chunking = false;
  bool requiretls = false;
  bool dsn = false;               // RFC 3461
  std::optional<uint64_t> size;   // SIZE limit; 0 or absent value means no limit announced
  std::vector<std::string> keywords;  // all keywords, uppercased
};
// Parses a 250 reply to EHLO (the first line is the greeting, not a keyword).
// A SIZE limit announced twice with different values (or once unreadably)
// reads as no announcement: no single limit can be taken from the reply.
EhloCapabilities ParseEhlo(const SmtpReply& reply);

// What the sender asked of delivery status notifications (RFC 3461), for
// the transaction. Passed on only to a server that announces DSN.
struct DsnRequest {
  std::string notify;  // "" (not asked), "NEVER", or a list of SUCCESS, DELAY, FAILURE ("SUCCESS,FAILURE")
  std::string ret;     // "", "HDRS" or "FULL"
  std::string envid;   // "" or the envelope identifier (printable US-ASCII, sent xtext-encoded)
};

// RFC 3461 §4 xtext: "+" "=" and octets outside 33..126 as "+HH".
std::string XtextEncode(std::string_view s);

// "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x
// REQUIRETLS" with only the parameters the server announced (size > 0 and
// caps.size, RET and ENVID when caps.dsn and `dsn` asks for them,
// REQUIRETLS when `requiretls` and caps.requiretls (RFC 8689 §4.2.1), etc).
std::string MailFromCommand(const Mailbox& sender, const EhloCapabilities& caps, uint64_t size, bool eight_bit,
                            const DsnRequest* dsn = nullptr, bool requiretls = false);
// "RCPT TO:<a@b>", with " NOTIFY=... ORCPT=rfc822;a@b" when caps.dsn and
// `dsn` has a NOTIFY list (ORCPT only for an ASCII address).
std::string RcptToCommand(const Mailbox& rcpt);
std::string RcptToCommand(const Mailbox& rcpt, const EhloCapabilities& caps, const DsnRequest& dsn);

struct MessageOptions {
  bool allow_nul = false;   // NUL bytes are refused unless set (then they are kept)
  size_t max_size = 0;      // 0: no limit; otherwise the most content_size may be
};

struct PreparedMessage {
  std::string data;          // ready for the DATA phase: the lines, then ".\r\n" (just ".\r\n" when empty)
  size_t content_size = 0;   // octets of the message with CRLF endings, before stuffing (for SIZE=)
  bool eight_bit = false;    // any octet >= 0x80
  size_t lines = 0;
};
// Errors name the line: "line 17 is 1204 octets long; SMTP allows 998",
// "NUL byte on line 3", "message is 12000000 octets, limit 10240000".
Result<PreparedMessage> PrepareMessage(std::string_view raw, const MessageOptions& options);

// The enhanced status code at the start of `text` ("4.7.5 ..."), or "".
std::string LeadingEnhancedCode(std::string_view text);

}  // namespace mxsec
