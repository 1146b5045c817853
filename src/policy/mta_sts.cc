// mta_sts.cc - MTA-STS (RFC 8461) record and policy parsing, MX matching,
// and the readings of a TXT answer and of a fetch that the per-domain
// decision (policy.cc) and the proactive refresh (mta_sts_refresh.cc) share.
//
// The _mta-sts TXT record and the policy file come from parties we do not
// trust, and a policy we misread can either route mail around TLS or make
// mail undeliverable. The parsers therefore follow the RFC 8461 ABNF to the
// letter and refuse anything else with a message that names the offending
// field or line, quoting hostile bytes escaped and truncated. The only
// places where we are stricter than the ABNF are the ones the grammar
// leaves open (duplicate keys, max_age above the RFC's stated ceiling,
// label and name length limits); they are documented next to the check.
//
// Nothing here allocates without a bound: the body size and line length are
// checked before any per-line work, and the functions never throw on bad
// input.
#include "mxsec/policy/mta_sts.h"

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/dns/dns.h"

namespace mxsec {
namespace {

constexpr size_t kMaxPolicyLine = 1000;  // octets, terminator excluded
constexpr size_t kMaxQuoted = 40;        // how much hostile text an error echoes

bool IsAlpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(unsigned char c) { return IsAlpha(c) || IsDigit(c); }
bool IsWsp(unsigned char c) { return c == ' ' || c == '\t'; }
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Error messages end up in logs and TLS-RPT reports; hostile input must not
// be able to inject line breaks or terminal escapes, nor flood the log.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (n++ == kMaxQuoted) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  out += '"';
  return out;
}

// sts-ext-name / sts-policy-ext-name: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool IsExtName(std::string_view s) {
  if (s.empty() || s.size() > 32 || !IsAlnum(s[0])) return false;
  for (unsigned char c : s) {
    if (!IsAlnum(c) && c != '_' && c != '-' && c != '.') return false;
  }
  return true;
}

// sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): printable, no '=', ';', SP.
bool IsTxtExtValue(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c < 0x21 || c > 0x7e || c == '=' || c == ';') return false;
  }
  return true;
}

bool IsStsId(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (unsigned char c : s) {
    if (!IsAlnum(c)) return false;
  }
  return true;
}

// RFC 5321 Domain: LDH labels, no leading/trailing hyphen, no trailing dot.
// The ABNF has no length limits; we add DNS's (63 per label, 253 in all)
// because a longer name cannot be an MX host anyway.
bool IsDomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label_len = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = s[i];
    if (c == '.') {
      if (label_len == 0 || s[i - 1] == '-') return false;
      label_len = 0;
      continue;
    }
    if (!IsAlnum(c) && c != '-') return false;
    if (label_len == 0 && c == '-') return false;
    if (++label_len > 63) return false;
  }
  return label_len != 0 && s.back() != '-';
}

// sts-policy-ext-value: sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
// where sts-policy-vchar is VCHAR or a well-formed multi-octet UTF-8 sequence
// (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
bool IsPolicyExtValue(std::string_view s) {
  if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    if (c >= 0x20 && c <= 0x7e) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    unsigned char c1 = s[i + 1];
    if (c1 < lo || c1 > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      unsigned char ck = s[i + k];
      if (ck < 0x80 || ck > 0xbf) return false;
    }
    i += len;
  }
  return true;
}

// The part of a TXT record that follows "v=STSv1". Per the ABNF:
//   1*(sts-field-delim sts-field) [sts-field-delim]
//   sts-field-delim = *WSP ";" *WSP
// so splitting on ';' leaves, between delimiters, a field with WSP allowed
// on both sides; before the first ';' only WSP; after the last ';' either
// only WSP (the optional trailing delimiter) or a field with no trailing WSP.
Result<StsTxt> ParseStsFields(std::string_view rest) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  for (;;) {
    size_t semi = rest.find(';', start);
    if (semi == std::string_view::npos) {
      pieces.push_back(rest.substr(start));
      break;
    }
    pieces.push_back(rest.substr(start, semi - start));
    start = semi + 1;
  }
  if (pieces[0].find_first_not_of(" \t") != std::string_view::npos) {
    return Status::Invalid("TXT record: junk after v=STSv1");
  }
  if (pieces.size() == 1) return Status::Invalid("TXT record: id missing");

  std::optional<std::string> id;
  for (size_t i = 1; i < pieces.size(); ++i) {
    const bool last = i + 1 == pieces.size();
    std::string_view f = pieces[i];
    while (!f.empty() && IsWsp(f.front())) f.remove_prefix(1);
    if (f.empty()) {
      if (last) break;  // optional trailing delimiter
      return Status::Invalid("TXT record: empty field");
    }
    if (last && IsWsp(f.back())) {
      return Status::Invalid("TXT record: white space at end of record");
    }
    while (IsWsp(f.back())) f.remove_suffix(1);

    size_t eq = f.find('=');
    if (eq == std::string_view::npos) {
      return Status::Invalid("TXT record: invalid field " + Quote(f));
    }
    std::string_view name = f.substr(0, eq);
    std::string_view value = f.substr(eq + 1);
    if (name == "id") {
      // Stricter than the ABNF, which would let a second "id=" parse as an
      // extension: two ids leave the cache key ambiguous.
      if (id) return Status::Invalid("TXT record: duplicate id");
      if (!IsStsId(value)) {
        return Status::Invalid("TXT record: id " + Quote(value) + " is not 1-32 letters and digits");
      }
      id = std::string(value);
    } else if (name == "v") {
      return Status::Invalid("TXT record: duplicate v= field");
    } else if (!IsExtName(name) || !IsTxtExtValue(value)) {
      return Status::Invalid("TXT record: invalid field " + Quote(f));
    }
  }
  if (!id) return Status::Invalid("TXT record: id missing");
  return StsTxt{*id};
}

// RFC 8461 §3.1 says to discard records that do not begin with "v=STSv1";
// we read "begin with" as the whole version token, so "v=STSv10" (a future
// version, or garbage) is discarded rather than mistaken for version 1.
bool IsStsRecord(std::string_view r) {
  constexpr std::string_view kVersion = "v=STSv1";
  if (r.substr(0, kVersion.size()) != kVersion) return false;
  return r.size() == kVersion.size() || r[kVersion.size()] == ';' || IsWsp(r[kVersion.size()]);
}

std::string LineError(size_t line, const std::string& what) {
  return "policy line " + std::to_string(line) + ": " + what;
}

}  // namespace

Result<StsTxt> ParseStsTxt(const std::vector<std::string>& records) {
  const std::string* found = nullptr;
  size_t count = 0;
  for (const std::string& r : records) {
    if (!IsStsRecord(r)) continue;
    ++count;
    found = &r;
  }
  if (count == 0) return Status::NotFound("no v=STSv1 TXT record");
  if (count > 1) return Status::Invalid(std::to_string(count) + " v=STSv1 TXT records");
  return ParseStsFields(std::string_view(*found).substr(7));
}

Result<StsTxt> ReadStsTxtAnswer(const DnsAnswer& txt) {
  if (txt.failed()) return Status::Unavailable("_mta-sts TXT lookup failed: " + txt.reason);
  std::vector<std::string> texts;
  for (const DnsRecord& r : txt.records) texts.push_back(r.text);
  Result<StsTxt> parsed = ParseStsTxt(texts);
  if (!parsed.ok()) return parsed.status().Prefixed("_mta-sts TXT: ");
  return parsed;
}

Result<StsFetchRequest> StsFetchRequestFor(const std::string& domain, const DnsAnswer& a, const DnsAnswer& aaaa) {
  StsFetchRequest request;
  request.domain = domain;
  for (const DnsAnswer* answer : {&a, &aaaa}) {
    for (const DnsRecord& r : answer->records) request.addresses.push_back(r.text);
  }
  if (request.addresses.empty()) {
    return Status::NotFound("no address for mta-sts." + domain + " (" +
                            (a.failed() ? a.reason : std::string(DnsOutcomeName(a.outcome))) + ")");
  }
  return request;
}

Result<StsPolicy> ReadFetchedStsPolicy(const StsFetchResult& fetched) {
  if (!fetched.ok) return Status::Unavailable(fetched.error);
  Result<StsPolicy> policy = ParseStsPolicy(fetched.body);
  if (!policy.ok()) return policy.status().Prefixed("invalid policy: ");
  return policy;
}

CachedStsPolicy NewCachedStsPolicy(const std::string& domain, const std::string& id, const std::string& text,
                                   const StsPolicy& policy, int64_t fetched_at) {
  CachedStsPolicy entry;
  entry.domain = domain;
  entry.id = id;
  entry.text = text;
  entry.policy = policy;
  entry.fetched_at = fetched_at;
  entry.expires_at = fetched_at + policy.max_age;
  return entry;
}

const char* StsModeName(StsMode mode) {
  switch (mode) {
    case StsMode::kEnforce:
      return "enforce";
    case StsMode::kTesting:
      return "testing";
    case StsMode::kNone:
      return "none";
  }
  return "unknown";
}

namespace {

// One policy line's bytes: bounded, no control bytes, not empty, starting
// in column one.
Status CheckPolicyLine(std::string_view line, size_t lineno) {
  if (line.size() > kMaxPolicyLine) {
    return Status::Invalid(LineError(lineno, "longer than " + std::to_string(kMaxPolicyLine) + " octets"));
  }
  // A lone CR is a control byte too: only CRLF and LF end a line.
  for (unsigned char c : line) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char buf[40];
      std::snprintf(buf, sizeof buf, "control byte 0x%02x", c);
      return Status::Invalid(LineError(lineno, buf));
    }
  }
  // The ABNF has no empty lines and no leading WSP (a field starts in
  // column one; the terminator is only optional after the last field).
  if (line.empty()) return Status::Invalid(LineError(lineno, "empty line"));
  if (IsWsp(line.front())) return Status::Invalid(LineError(lineno, "starts with white space"));
  return Status::Ok();
}

// The policy being read, one "key: value" field at a time.
class PolicyReader {
 public:
  Status Field(std::string_view key, std::string_view value, size_t lineno);
  Result<StsPolicy> Finish() const;

 private:
  Status Version(std::string_view value, size_t lineno);
  Status Mode(std::string_view value, size_t lineno);
  Status MaxAge(std::string_view value, size_t lineno);
  Status Mx(std::string_view value, size_t lineno);

  StsPolicy policy_;
  bool have_version_ = false, have_mode_ = false, have_max_age_ = false;
};

Status PolicyReader::Field(std::string_view key, std::string_view value, size_t lineno) {
  if (key == "version") return Version(value, lineno);
  if (key == "mode") return Mode(value, lineno);
  if (key == "max_age") return MaxAge(value, lineno);
  if (key == "mx") return Mx(value, lineno);
  if (!IsPolicyExtValue(value)) return Status::Invalid(LineError(lineno, "invalid value for " + Quote(key)));
  return Status::Ok();
}

Status PolicyReader::Version(std::string_view value, size_t lineno) {
  if (have_version_) return Status::Invalid(LineError(lineno, "duplicate key \"version\""));
  if (value != "STSv1") return Status::Invalid(LineError(lineno, "unsupported version " + Quote(value)));
  have_version_ = true;
  return Status::Ok();
}

Status PolicyReader::Mode(std::string_view value, size_t lineno) {
  if (have_mode_) return Status::Invalid(LineError(lineno, "duplicate key \"mode\""));
  if (value == "enforce") {
    policy_.mode = StsMode::kEnforce;
  } else if (value == "testing") {
    policy_.mode = StsMode::kTesting;
  } else if (value == "none") {
    policy_.mode = StsMode::kNone;
  } else {
    return Status::Invalid(LineError(lineno, "unknown mode " + Quote(value)));
  }
  have_mode_ = true;
  return Status::Ok();
}

Status PolicyReader::MaxAge(std::string_view value, size_t lineno) {
  if (have_max_age_) return Status::Invalid(LineError(lineno, "duplicate key \"max_age\""));
  bool digits = !value.empty();
  for (unsigned char c : value) digits = digits && IsDigit(c);
  if (!digits) return Status::Invalid(LineError(lineno, "max_age " + Quote(value) + " is not a number"));
  if (value.size() > 10) return Status::Invalid(LineError(lineno, "max_age " + Quote(value) + " has more than 10 digits"));
  int64_t n = 0;
  for (unsigned char c : value) n = n * 10 + (c - '0');
  // §3.2 caps max_age at 31557600 although the ABNF allows ten digits
  // (erratum 7282); a larger value is a broken policy, not one to clamp.
  if (n > kStsMaxAge) {
    return Status::Invalid(LineError(lineno, "max_age " + std::string(value) + " exceeds " + std::to_string(kStsMaxAge)));
  }
  policy_.max_age = n;
  have_max_age_ = true;
  return Status::Ok();
}

Status PolicyReader::Mx(std::string_view value, size_t lineno) {
  std::string_view host = value;
  if (host.substr(0, 2) == "*.") host.remove_prefix(2);
  if (!IsDomain(host)) return Status::Invalid(LineError(lineno, "invalid mx pattern " + Quote(value)));
  std::string lowered(value);
  for (char& c : lowered) c = Lower(c);
  policy_.mx.push_back(std::move(lowered));
  return Status::Ok();
}

Result<StsPolicy> PolicyReader::Finish() const {
  if (!have_version_) return Status::Invalid("policy: version missing");
  if (!have_mode_) return Status::Invalid("policy: mode missing");
  if (!have_max_age_) return Status::Invalid("policy: max_age missing");
  if (policy_.mode != StsMode::kNone && policy_.mx.empty()) {
    return Status::Invalid(std::string("policy: mx missing (required with mode ") + StsModeName(policy_.mode) + ")");
  }
  return policy_;
}

}  // namespace

Result<StsPolicy> ParseStsPolicy(std::string_view body) {
  if (body.empty()) return Status::Invalid("policy is empty");
  if (body.size() > kStsMaxPolicyBytes) {
    return Status::Invalid("policy larger than " + std::to_string(kStsMaxPolicyBytes) + " bytes");
  }
  if (body.substr(0, 3) == "\xef\xbb\xbf") {
    return Status::Invalid("policy line 1: starts with a UTF-8 byte order mark");
  }
  PolicyReader reader;
  size_t pos = 0;
  size_t lineno = 0;
  while (pos < body.size()) {
    ++lineno;
    size_t nl = body.find('\n', pos);
    size_t end = nl == std::string_view::npos ? body.size() : nl;
    std::string_view line = body.substr(pos, end - pos);
    pos = nl == std::string_view::npos ? body.size() : nl + 1;
    if (nl != std::string_view::npos && !line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (Status s = CheckPolicyLine(line, lineno); !s.ok()) return s;

    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Status::Invalid(LineError(lineno, "no \"key:\" in " + Quote(line)));
    std::string_view key = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && IsWsp(value.front())) value.remove_prefix(1);
    while (!value.empty() && IsWsp(value.back())) value.remove_suffix(1);
    if (!IsExtName(key)) return Status::Invalid(LineError(lineno, "invalid key " + Quote(key)));
    if (Status s = reader.Field(key, value, lineno); !s.ok()) return s;
  }
  return reader.Finish();
}

bool StsMxMatches(std::string_view pattern, std::string_view host) {
  if (!pattern.empty() && pattern.back() == '.') pattern.remove_suffix(1);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (pattern.empty() || host.empty()) return false;
  if (host.find('*') != std::string_view::npos) return false;

  auto iequal = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (Lower(a[i]) != Lower(b[i])) return false;
    }
    return true;
  };

  if (pattern.substr(0, 2) == "*.") {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (suffix.size() < 2 || suffix.find('*') != std::string_view::npos) return false;
    if (host.size() <= suffix.size()) return false;
    std::string_view label = host.substr(0, host.size() - suffix.size());
    if (label.find('.') != std::string_view::npos) return false;
    return iequal(host.substr(label.size()), suffix);
  }
  if (pattern.find('*') != std::string_view::npos) return false;
  return iequal(pattern, host);
}

bool StsPolicyMatches(const StsPolicy& policy, std::string_view host) {
  for (const std::string& pattern : policy.mx) {
    if (StsMxMatches(pattern, host)) return true;
  }
  return false;
}

}  // namespace mxsec
