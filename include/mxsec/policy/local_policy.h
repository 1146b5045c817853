// local_policy.h - the local per-domain TLS policy table (`local_policy_file`).
//
// The administrator's overrides, in the spirit of Postfix's
// smtp_tls_policy_maps, kept small and strict. One rule per line, `#`
// comments and blank lines ignored:
//
//   DOMAIN  POLICY  [match=NAME[:NAME...]] [until=YYYY-MM-DD] [reason="TEXT"]
//
// DOMAIN is an exact domain ("example.org", normal form of domain_name.h)
// or ".example.org" for every subdomain of example.org (not example.org
// itself). POLICY is one of
//   dane-only  TLS authenticated by DANE; an MX without secure usable TLSA
//              is not used
//   verify     TLS with a PKIX-valid certificate for the MX host name, or
//              with match=, for one of the listed names (exact host names)
//   encrypt    TLS, certificate not checked
//   may        opportunistic TLS, even where DANE or MTA-STS would demand it
// There is deliberately no policy that sends in clear text when STARTTLS is
// offered.
//
// until=YYYY-MM-DD makes a rule temporary ("relax this partner until they
// fix their DANE"): it applies up to the end of that day in UTC and then
// stops applying, as if it were not in the table (a ".parent" rule may
// then apply, else the domain gets its normal DANE/MTA-STS policy). The
// time is the table's Clock, so tests inject one. reason="TEXT" says why
// the rule exists, for `policy` and logs; an attribute value may be
// written in double quotes, with \" and \\ for a quote and a backslash
// inside, and then holds spaces and '#'.
//
// Promises: Parse/Load accept a table only when every line is valid; any
// problem (unknown policy, bad domain, match= on another policy than
// verify, an until= that is not a real date, an unterminated quote, an
// attribute given twice, duplicate domain, a line over kLocalPolicyMaxLine characters, a
// file over kLocalPolicyMaxFile bytes, an unreadable file) is an error that
// names FILE:LINE (or the file). Find() gives the exact rule for a domain,
// else the rule of its longest matching ".parent" suffix, else null,
// skipping expired rules. The table is immutable after loading and safe to
// share between threads (as long as its Clock is).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/base/status.h"

namespace mxsec {

inline constexpr size_t kLocalPolicyMaxLine = 1000;     // characters, without the line end
inline constexpr size_t kLocalPolicyMaxFile = 1 << 20;  // bytes

enum class LocalTls { kDaneOnly, kVerify, kEncrypt, kMay };
const char* LocalTlsName(LocalTls t);  // "dane-only", "verify", "encrypt", "may"

struct LocalRule {
  std::string domain;               // normal form, without the leading dot of a parent rule
  bool subdomains = false;          // written ".domain": applies to every subdomain, not to domain
  LocalTls policy = LocalTls::kMay;
  std::vector<std::string> match;   // verify only: accepted certificate names; empty: the MX host name
  std::string source;               // "FILE:LINE", for reasons and logs
  std::string until;                // until=: "YYYY-MM-DD" as written, or "" (no expiry)
  int64_t expires_at = 0;           // until=: the first second after that day, UTC (0: never)
  std::string reason;               // reason=, unquoted, or ""

  // Whether until= has passed at `now` (seconds since the epoch).
  bool ExpiredAt(int64_t now) const { return expires_at != 0 && now >= expires_at; }

  std::string Key() const { return (subdomains ? "." : "") + domain; }  // as written, normal form
};

class LocalPolicy {
 public:
  // `file` names the text in messages and in every rule's source.
  // `clock` (never null, must outlive the table) decides expiry.
  static Result<LocalPolicy> Parse(const std::string& text, const std::string& file,
                                   const Clock* clock = SystemClock());
  static Result<LocalPolicy> Load(const std::string& path, const Clock* clock = SystemClock());

  // The rule for `domain` (normal form) now: an exact rule wins over
  // parent rules, the longest parent suffix wins, an expired rule is
  // skipped. Null when no rule applies.
  const LocalRule* Find(const std::string& domain) const;
  size_t size() const { return exact_.size() + parents_.size(); }

  // One warning per rule expired now, in file order: "FILE:LINE: the local
  // policy rule for DOMAIN expired at the end of DATE (UTC) and no longer
  // applies". Every command that uses the table prints them.
  std::vector<std::string> ExpiryWarnings() const;

 private:
  const Clock* clock_ = nullptr;
  std::map<std::string, LocalRule> exact_;    // by domain
  std::map<std::string, LocalRule> parents_;  // by domain, for ".domain" rules
};

}  // namespace mxsec
