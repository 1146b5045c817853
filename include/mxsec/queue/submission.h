// submission.h - the sendmail(1) command line and message preparation of the
// sendmail mode, without any I/O (unit-tested on their own).
//
// ParseSendmailArgs accepts what programs pass to /usr/sbin/sendmail, with
// getopt semantics (grouped flags "-ti", attached or separate arguments
// "-fuser" / "-f user", "--" ends the options) and Postfix's choices:
// legacy -o* and -O options, -G -h -L -n -U -e -c -x -X are accepted and
// ignored, except -O requiretls=yes|no (Postfix 3.11's spelling of
// REQUIRETLS, RFC 8689), whose value must be one of those; any other
// option is an error naming it.
//
// EditHeaders implements the submission header rules: a line that is
// neither a header field nor its continuation ends the header section (an
// empty line is inserted before it, so it stays in the body, as Postfix
// does); Bcc fields are removed; To/Cc/Bcc addresses are extracted for -t;
// From, Date and Message-ID are added when missing. The body is kept byte
// for byte. A field it changed or added whose lines grew past 78 octets is
// folded (RFC 5322 §2.2.3); a header line over 998 octets after editing is
// an error naming the field, never a message that bounces later.
//
// PrepareSubmission is the whole of it, as `sendmail` applies it to what it
// read (and what a fuzz target can call: no I/O): one line-ending rule
// (CRLF and LF end a line, a bare CR is refused), NUL and input lines over
// 998 octets refused naming the line, then EditHeaders. What it returns has
// LF line ends only and no line over 998 octets, and with -t no Bcc or
// Resent-Bcc field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/base/status.h"

namespace mxsec {

// RFC 5322 §2.1.1 (and RFC 5321 §4.5.3.1.6): at most 998 octets on a line,
// its line end not counted; 78 is the width lines are folded to.
constexpr size_t kMaxLine = 998;
constexpr size_t kFoldWidth = 78;

struct SendmailOptions {
  enum class Mode { kSend, kListQueue, kRunQueue };
  enum class Delivery { kBackground, kInteractive, kQueueOnly };
  Mode mode = Mode::kSend;
  Delivery delivery = Delivery::kBackground;
  bool extract_recipients = false;  // -t
  bool ignore_dots = false;         // -i, -oi
  std::optional<std::string> sender;  // -f / -r
  std::optional<std::string> full_name;  // -F
  int verbose = 0;
  std::string notify;               // -N
  std::string ret;                  // -R
  std::string envid;                // -V
  std::string config_file;          // -C
  bool requiretls = false;          // -O requiretls=yes (Postfix 3.11): REQUIRETLS, RFC 8689
  std::vector<std::string> recipients;
  std::vector<std::string> ignored; // options accepted and ignored (for -v logging)
};

// Parses the arguments after the program name. An error is a usage message
// naming the option ("unknown option -bs", "-f needs an argument").
Result<SendmailOptions> ParseSendmailArgs(const std::vector<std::string>& args);

// Addresses of an RFC 5322 address list ("A <a@x>, b@y (c), grp: c@z;"):
// the addr-specs, comments and display names dropped. Errors name the
// problem ("unterminated quoted string").
Result<std::vector<std::string>> ParseAddressList(std::string_view value);

struct HeaderEdit {
  bool extract_recipients = false;
  std::string from;         // value of a From: field to add if none exists
  std::string date;         // value of a Date: field to add if none exists
  std::string message_id;   // value of a Message-ID: field to add if none exists ("<...>")
  // When set, addresses without a domain in From, Sender, Reply-To, To and Cc
  // ("root (Cron Daemon)", "Admin <admin>") get "@" + this domain, as
  // Postfix's cleanup does; everything else in those fields is kept as is.
  std::string qualify_domain;
};

struct EditedMessage {
  std::string message;
  std::vector<std::string> recipients;   // from To/Cc/Bcc, when extracting
  std::vector<std::string> added;        // names of the fields added
  bool bcc_removed = false;
  bool qualified = false;                // an address in a header got its domain
};

Result<EditedMessage> EditHeaders(std::string_view raw, const HeaderEdit& edit);

// The message as `sendmail` queues it, from the bytes it read (after the
// lone-dot cut, LoneDotEnd): see the top of this file. Errors name the line
// ("bare CR ... on line 3", "NUL byte on line 4", "line 7 is 1204 octets
// long; SMTP allows 998") or the header field ("header field From: ...").
Result<EditedMessage> PrepareSubmission(std::string_view raw, const HeaderEdit& edit);

// `value` (a field body, possibly folded) with "@" + `domain` added to every
// address of its address list that has none. Elements it cannot read with
// certainty (groups, quoted local parts) are left alone.
std::string QualifyAddressField(std::string_view value, const std::string& domain);

// The trace field a locally submitted message gets when it enters the
// queue (RFC 5321 §4.4, RFC 5322 §3.6.7), as Postfix's pickup/cleanup add:
//   Received: by HOST (mxsec, from userid UID)<eol>\tid QUEUE_ID; DATE<eol>
// with DATE the RFC 5322 date-time of `now` in UTC and <eol> the line end
// of `message` (CRLF when its first line ends in CRLF, else LF).
std::string SubmissionReceivedHeader(const std::string& host, unsigned uid, const std::string& queue_id, int64_t now,
                                     std::string_view message);

// Without -i a line of a single "." ends the message (what follows is
// dropped). Returns the length of the message before that line, or
// raw.size() when there is none.
size_t LoneDotEnd(std::string_view raw);

}  // namespace mxsec
