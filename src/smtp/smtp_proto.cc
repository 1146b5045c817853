// smtp_proto.cc - the SMTP wire format (RFC 5321, RFC 3463, RFC 6531),
// without any I/O.
//
// Everything here sits between mxsec and a hostile peer or a hostile
// command line, so the module promises:
//   - a server reply is either parsed exactly or refused: no guessing at
//     malformed lines, and no input can make a reply use unbounded memory
//     (kMaxLine per line, kMaxLines per reply) or time (each octet is
//     looked at a constant number of times, however the input is split);
//   - no string this module builds for the wire contains a CR or LF that
//     it did not put there itself: envelope addresses with control
//     characters are refused, and message data never carries a bare CR or
//     bare LF (SMTP smuggling, CVE-2023-51764 family);
//   - message data is transformed in one O(n) pass and never folded or
//     otherwise rewritten beyond line-ending normalisation and dot-stuffing;
//   - nothing throws; every refusal says what was wrong and where.
#include "mxsec/smtp/smtp_proto.h"

#include <cstring>

#include "mxsec/base/domain_name.h"
#include "mxsec/base/text.h"

namespace mxsec {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }


// Length of the RFC 3463 code (class.subject.detail, subject and detail
// 1-3 digits) at the start of `s`, or 0. The code must end the text or be
// followed by a space, so "5.1.10" is not read as "5.1.1".
size_t EnhancedCodeLength(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
  size_t i = 2;
  for (int field = 0; field < 2; ++field) {
    size_t start = i;
    while (i < s.size() && IsDigit(s[i]) && i - start < 4) ++i;
    size_t digits = i - start;
    if (digits < 1 || digits > 3) return 0;
    if (field == 0) {
      if (i >= s.size() || s[i] != '.') return 0;
      ++i;
    }
  }
  if (i < s.size() && s[i] != ' ') return 0;
  return i;
}

// A Mailbox can be filled in by hand, bypassing ParseMailbox: a command
// must still never carry a line break the server would take as a second
// command. The server will refuse the mangled address, which is the safe
// outcome.
std::string NoLineBreaks(std::string s) {
  for (char& c : s) {
    if (c == '\r' || c == '\n' || c == '\0') c = '?';
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------- replies

std::string SmtpReply::Summary() const {
  constexpr size_t kMax = 300;
  std::string out = std::to_string(code);
  for (size_t i = 0; i < lines.size() && out.size() <= kMax; ++i) {
    if (i == 0) {
      if (lines[i].empty()) continue;
      out += ' ';
    } else {
      out += " / ";
    }
    for (char c : lines[i]) {
      unsigned char u = static_cast<unsigned char>(c);
      out += (u < 0x20 || u >= 0x7f) ? '?' : c;
      if (out.size() > kMax) break;
    }
  }
  if (out.size() > kMax) {
    out.resize(kMax - 3);
    out += "...";
  }
  return out;
}

void ReplyReader::Feed(std::string_view bytes) {
  // Compact only when the consumed prefix is at least half the buffer, so
  // each byte is moved O(1) times in total however the input is split.
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ >= 4096 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

// An error does not consume anything and is kept: every later Next() fails
// the same way, which makes the reader unusable after an error without the
// caller having to remember it.
//
// The scan of an incomplete reply resumes where the previous call stopped
// (lines_end_, searched_): trickled input, one octet per segment, costs
// O(1) per octet instead of a rescan of the whole reply (kMaxLines lines
// of kMaxLine octets) per segment.
Result<std::optional<SmtpReply>> ReplyReader::Next() {
  if (!error_.empty()) return Status::Error(error_);
  const char* base = buf_.data() + pos_;
  const size_t avail = buf_.size() - pos_;
  auto fail = [&](std::string why) -> Result<std::optional<SmtpReply>> {
    error_ = std::move(why);
    return Status::Error(error_);
  };

  for (;;) {
    const size_t start = lines_end_;
    if (start >= avail) return std::optional<SmtpReply>();
    // A line is at most kMaxLine octets, a CR and the LF.
    const size_t window = std::min(avail, start + kMaxLine + 2);
    const size_t from = std::max(searched_, start);
    const void* lf = from < window ? std::memchr(base + from, '\n', window - from) : nullptr;
    if (lf == nullptr) {
      examined_ += window - std::min(from, window);
      searched_ = window;
      // kMaxLine octets and a CR may still be waiting for their LF.
      const size_t have = avail - start;
      if (have > kMaxLine + 1 || (have == kMaxLine + 1 && base[avail - 1] != '\r'))
        return fail("reply line longer than " + std::to_string(kMaxLine) + " octets");
      return std::optional<SmtpReply>();
    }
    const size_t lf_at = static_cast<size_t>(static_cast<const char*>(lf) - base);
    examined_ += lf_at + 1 - from;
    size_t len = lf_at - start;
    if (len > 0 && base[lf_at - 1] == '\r') --len;
    if (len > kMaxLine) return fail("reply line longer than " + std::to_string(kMaxLine) + " octets");
    std::string_view t(base + start, len);
    if (t.size() < 3 || t[0] < '2' || t[0] > '5' || !IsDigit(t[1]) || !IsDigit(t[2]) ||
        (t.size() > 3 && t[3] != ' ' && t[3] != '-'))
      return fail("malformed reply line " + QuotedPrintable(t, 60));
    const int this_code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
    if (line_count_ == 0) {
      code_ = this_code;
    } else if (this_code != code_) {
      return fail("reply code changed from " + std::to_string(code_) + " to " + std::to_string(this_code) +
                  " within one reply");
    }
    ++line_count_;
    lines_end_ = searched_ = lf_at + 1;
    if (t.size() == 3 || t[3] == ' ') break;
    if (line_count_ >= kMaxLines)
      return fail("reply has more than " + std::to_string(kMaxLines) + " lines");
  }

  // Complete: split the validated lines once more, now building strings.
  SmtpReply reply;
  reply.code = code_;
  reply.lines.reserve(line_count_);
  for (size_t q = 0; q < lines_end_;) {
    const char* lf = static_cast<const char*>(std::memchr(base + q, '\n', lines_end_ - q));
    const size_t lf_at = static_cast<size_t>(lf - base);
    examined_ += lf_at + 1 - q;
    size_t len = lf_at - q;
    if (len > 0 && base[lf_at - 1] == '\r') --len;
    std::string_view text(base + q, len);
    reply.lines.emplace_back(text.size() > 4 ? text.substr(4) : std::string_view());
    q = lf_at + 1;
  }
  std::string_view first = reply.lines.front();
  size_t elen = EnhancedCodeLength(first);
  if (elen > 0 && first[0] - '0' == code_ / 100) reply.enhanced = std::string(first.substr(0, elen));
  pos_ += lines_end_;
  lines_end_ = searched_ = line_count_ = 0;
  code_ = 0;
  return std::optional<SmtpReply>(std::move(reply));
}

// ------------------------------------------------------------------- EHLO

EhloCapabilities ParseEhlo(const SmtpReply& reply) {
  EhloCapabilities caps;
  if (reply.code != 250) return caps;
  bool size_seen = false;
  bool size_conflict = false;  // SIZE lines that disagree: the limit is unreadable
  std::optional<uint64_t> seen_size;
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::string_view line = reply.lines[i];
    size_t sp = line.find(' ');
    std::string_view keyword = line.substr(0, sp);
    std::string_view params = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    // ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    bool ok = !keyword.empty() && keyword[0] != '-';
    for (char c : keyword) ok = ok && (IsAlpha(c) || IsDigit(c) || c == '-');
    if (!ok) continue;
    std::string kw(keyword);
    for (char& c : kw) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    while (!params.empty() && (params.front() == ' ' || params.front() == '\t')) params.remove_prefix(1);
    while (!params.empty() && (params.back() == ' ' || params.back() == '\t')) params.remove_suffix(1);

    if (kw == "SIZE") {
      // A limit we cannot read is treated as no announcement at all rather
      // than as "no limit": then we never send SIZE= it might misread.
      if (params.empty()) {
        caps.size = 0;
      } else {
        uint64_t v = 0;
        bool good = params.size() <= 19;
        for (char c : params) {
          good = good && IsDigit(c);
          if (good) v = v * 10 + static_cast<uint64_t>(c - '0');
        }
        caps.size = good ? std::optional<uint64_t>(v) : std::nullopt;
      }
      if (size_seen && caps.size != seen_size) size_conflict = true;
      if (size_conflict) caps.size = std::nullopt;
      size_seen = true;
      seen_size = caps.size;
    } else if (kw == "STARTTLS") {
      caps.starttls = true;
    } else if (kw == "PIPELINING") {
      caps.pipelining = true;
    } else if (kw == "DSN") {
      caps.dsn = true;
    } else if (kw == "8BITMIME") {
      caps.eightbitmime = true;
    } else if (kw == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (kw == "ENHANCEDSTATUSCODES") {
      caps.enhancedstatuscodes = true;
    } else if (kw == "CHUNKING") {
      caps.chunking = true;
    } else if (kw == "REQUIRETLS") {
      caps.requiretls = true;
    }
    caps.keywords.push_back(std::move(kw));
  }
  return caps;
}

// -------------------------------------------------------------- addresses


std::string XtextEncode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 33 && c <= 126 && c != '+' && c != '=') {
      out += ch;
    } else {
      out += '+';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string MailFromCommand(const Mailbox& sender, const EhloCapabilities& caps, uint64_t size, bool eight_bit,
                            const DsnRequest* dsn, bool requiretls) {
  std::string cmd = "MAIL FROM:<" + NoLineBreaks(sender.ToString()) + ">";
  if (caps.size && size > 0) cmd += " SIZE=" + std::to_string(size);
  if (eight_bit && caps.eightbitmime) cmd += " BODY=8BITMIME";
  // Only the sender is known here. A UTF-8 recipient also needs SMTPUTF8 on
  // MAIL FROM (RFC 6531 §3.4): the caller appends it in that case, and
  // refuses (5.6.7) when the server does not offer it.
  if (sender.utf8 && caps.smtputf8) cmd += " SMTPUTF8";
  if (dsn && caps.dsn) {
    if (dsn->ret == "HDRS" || dsn->ret == "FULL") cmd += " RET=" + dsn->ret;
    if (!dsn->envid.empty()) cmd += " ENVID=" + XtextEncode(dsn->envid);
  }
  if (requiretls && caps.requiretls) cmd += " REQUIRETLS";
  return cmd;
}

std::string RcptToCommand(const Mailbox& rcpt) {
  return "RCPT TO:<" + NoLineBreaks(rcpt.ToString()) + ">";
}

std::string RcptToCommand(const Mailbox& rcpt, const EhloCapabilities& caps, const DsnRequest& dsn) {
  std::string cmd = RcptToCommand(rcpt);
  if (!caps.dsn || dsn.notify.empty()) return cmd;
  // The list is ours (checked at submission), but keep the command one line whatever it holds.
  cmd += " NOTIFY=" + XtextEncode(dsn.notify);
  if (!rcpt.utf8) cmd += " ORCPT=rfc822;" + XtextEncode(rcpt.ToString());
  return cmd;
}

// ----------------------------------------------------------- message data

Result<PreparedMessage> PrepareMessage(std::string_view raw, const MessageOptions& options) {
  constexpr size_t kMaxText = 998;  // RFC 5321 §4.5.3.1.6, without CRLF
  PreparedMessage out;
  // Most input already has CRLF or LF endings; a little slack covers
  // dot-stuffing and LF→CRLF growth without repeated reallocation.
  out.data.reserve(raw.size() + raw.size() / 32 + 8);
  bool over = false;

  const char* s = raw.data();
  const size_t n = raw.size();
  size_t i = 0;
  while (i < n) {
    ++out.lines;
    const size_t start = i;
    for (; i < n; ++i) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '\r' || c == '\n') break;
      if (c >= 0x80) {
        out.eight_bit = true;
      } else if (c == 0 && !options.allow_nul) {
        return Status::Error("NUL byte on line " + std::to_string(out.lines));
      }
    }
    const size_t len = i - start;
    // Measured before stuffing: the extra '.' is transport and is removed
    // by the receiver, so it does not count against the 998.
    if (len > kMaxText)
      return Status::Error("line " + std::to_string(out.lines) + " is " + std::to_string(len) +
                           " octets long; SMTP allows " + std::to_string(kMaxText));
    if (i < n) i += (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
    out.content_size += len + 2;
    if (options.max_size != 0 && out.content_size > options.max_size && !over) {
      // Keep counting for the error message, stop building the data.
      over = true;
      std::string().swap(out.data);
    }
    if (!over) {
      if (len > 0 && s[start] == '.') out.data += '.';
      out.data.append(s + start, len);
      out.data += "\r\n";
    }
  }
  if (over)
    return Status::Error("message is " + std::to_string(out.content_size) + " octets, limit " +
                         std::to_string(options.max_size));
  // The terminator is CRLF "." CRLF whose first CRLF ends the last line;
  // an empty message therefore is just ".\r\n".
  out.data += ".\r\n";
  return out;
}

std::string LeadingEnhancedCode(std::string_view text) {
  return std::string(text.substr(0, EnhancedCodeLength(text)));
}

}  // namespace mxsec
