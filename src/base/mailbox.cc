// mailbox.cc - envelope address syntax (RFC 5321 §4.1.2, RFC 6531 §3.3);
// the promises are in mailbox.h.
#include "mxsec/base/mailbox.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "mxsec/base/domain_name.h"
#include "mxsec/base/text.h"

namespace mxsec {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }


// Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF) starting at s[i], or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  size_t need;
  unsigned char lo = 0x80, hi = 0xbf;  // bounds for the second byte
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 2;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 3;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (s.size() - i <= need) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k <= need; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
  }
  return need + 1;
}

// RFC 5322 atext; RFC 6531 adds UTF8-non-ascii, which the caller checks.
bool IsAtext(char c) {
  if (IsAlpha(c) || IsDigit(c)) return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != '\0';
}

// A domain with U-labels. Without an IDNA library we cannot map it to
// A-labels or fold non-ASCII case; we check the structure (labels of LDH
// ASCII and UTF-8, lengths) and lowercase the ASCII letters.
Result<std::string> NormalizeUtf8Domain(std::string_view name) {
  std::string out = AsciiLower(name);
  if (!out.empty() && out.back() == '.') out.pop_back();
  if (out.size() > 253) return Status::Error("domain is longer than 253 octets");
  size_t start = 0;
  while (start <= out.size()) {
    size_t dot = out.find('.', start);
    if (dot == std::string::npos) dot = out.size();
    std::string_view label(out.data() + start, dot - start);
    if (label.empty()) return Status::Error("domain has an empty label");
    if (label.size() > 63) return Status::Error("domain has a label longer than 63 octets");
    if (label.front() == '-' || label.back() == '-')
      return Status::Error("domain has a label that starts or ends with a hyphen");
    for (char c : label) {
      if (static_cast<unsigned char>(c) < 0x80 && !IsAlpha(c) && !IsDigit(c) && c != '-')
        return Status::Error("domain has a character other than letters, digits, hyphen");
    }
    start = dot + 1;
  }
  return out;
}

// RFC 5321 §4.1.3. Only the IPv4 form and the "IPv6:" tag are defined;
// a General-address-literal with another tag cannot be routed by anyone.
bool IsAddressLiteral(std::string_view lit) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  std::string inner(lit.substr(1, lit.size() - 2));
  in_addr a4;
  in6_addr a6;
  if (inner.size() > 5 && AsciiLower(inner.substr(0, 5)) == "ipv6:")
    return inet_pton(AF_INET6, inner.c_str() + 5, &a6) == 1;
  return inet_pton(AF_INET, inner.c_str(), &a4) == 1;
}

}  // namespace

std::string Mailbox::ToString() const {
  if (local.empty() && domain.empty()) return "";
  return local + "@" + domain;
}

Result<Mailbox> ParseMailbox(std::string_view address, bool allow_null) {
  const std::string shown = QuotedPrintable(address);
  auto fail = [&](const std::string& why) { return Status::Error("address " + shown + ": " + why); };

  // Callers sometimes pass the address in its SMTP path form ("<a@b>",
  // sendmail habit); strip exactly one pair.
  std::string_view a = address;
  if (!a.empty() && a.front() == '<') {
    if (a.size() < 2 || a.back() != '>') return fail("'<' without a matching '>'");
    a = a.substr(1, a.size() - 2);
  }
  if (a.empty()) {
    if (allow_null) return Mailbox{};
    return Status::Error("empty address");
  }

  bool utf8 = false;
  for (size_t i = 0; i < a.size();) {
    unsigned char u = static_cast<unsigned char>(a[i]);
    if (u < 0x20 || u == 0x7f) return fail("control character in address");
    size_t n = Utf8SequenceLength(a, i);
    if (n == 0) return fail("invalid UTF-8");
    if (n > 1) utf8 = true;
    i += n;
  }

  // Local-part = Dot-string / Quoted-string (RFC 5321 §4.1.2, RFC 6531 §3.3).
  size_t at;
  if (a.front() == '"') {
    size_t i = 1;
    for (;;) {
      if (i >= a.size()) return fail("unterminated quoted local part");
      char c = a[i];
      if (c == '"') break;
      if (c == '\\') {
        // quoted-pairSMTP = "\" %d32-126 (RFC 6531 does not extend it)
        if (i + 1 >= a.size() || static_cast<unsigned char>(a[i + 1]) >= 0x80)
          return fail("bad backslash escape in quoted local part");
        i += 2;
        continue;
      }
      ++i;
    }
    at = i + 1;
    if (at >= a.size() || a[at] != '@') return fail("quoted local part not followed by '@'");
    if (at == 2) return fail("empty local part");
  } else {
    at = 0;
    while (at < a.size() && a[at] != '@') {
      char c = a[at];
      if (c != '.' && !IsAtext(c) && static_cast<unsigned char>(c) < 0x80) {
        if (c == ' ') return fail("space outside quotes");
        return fail(std::string("character '") + c + "' not allowed outside quotes");
      }
      ++at;
    }
    if (at == a.size()) return fail("missing '@'");
    if (at == 0) return fail("empty local part");
    std::string_view local = a.substr(0, at);
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
      return fail("local part has a leading, trailing or doubled '.' (quote it)");
  }
  std::string_view local = a.substr(0, at);
  std::string_view domain = a.substr(at + 1);
  if (local.size() > 64)
    return fail("local part is " + std::to_string(local.size()) + " octets; SMTP allows 64");
  if (domain.empty()) return fail("empty domain");
  if (domain.find('@') != std::string_view::npos) return fail("more than one '@' outside quotes");

  Mailbox mb;
  mb.local = std::string(local);
  mb.utf8 = utf8;
  if (domain.front() == '[') {
    // Kept as given: a literal has no normal form the server would prefer.
    if (!IsAddressLiteral(domain)) return fail("bad address literal");
    mb.domain = std::string(domain);
  } else {
    bool ascii = true;
    for (char c : domain) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    auto d = ascii ? NormalizeHostName(domain) : NormalizeUtf8Domain(domain);
    if (!d.ok()) return fail(d.error());
    mb.domain = std::move(d.value());
  }
  // RFC 5321 §4.5.3.1.3: the path "<local@domain>" is at most 256 octets.
  size_t path = mb.local.size() + 1 + mb.domain.size() + 2;
  if (path > 256) return fail("path is " + std::to_string(path) + " octets; SMTP allows 256");
  return mb;
}

}  // namespace mxsec
