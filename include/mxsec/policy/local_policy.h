// local_policy.h - the local per-domain TLS policy table (`local_policy_file`).
//
// The administrator's overrides, in the spirit of Postfix's
// smtp_tls_policy_maps, kept small and strict. One rule per line, `#`
// comments and blank lines ignored:
//
//   DOMAIN  POLICY  [match=NAME[:NAME...]]
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
// Promises: Parse/Load accept a table only when every line is valid; any
// problem (unknown policy, bad domain, match= on another policy than
// verify, duplicate domain, a line over kLocalPolicyMaxLine characters, a
// file over kLocalPolicyMaxFile bytes, an unreadable file) is an error that
// names FILE:LINE (or the file). Find() gives the exact rule for a domain,
// else the rule of its longest matching ".parent" suffix, else null. The
// table is immutable after loading and safe to share between threads.
#pragma once

#include <map>
#include <string>
#include <vector>

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

  std::string Key() const { return (subdomains ? "." : "") + domain; }  // as written, normal form
};

class LocalPolicy {
 public:
  // `file` names the text in messages and in every rule's source.
  static Result<LocalPolicy> Parse(const std::string& text, const std::string& file);
  static Result<LocalPolicy> Load(const std::string& path);

  // The rule for `domain` (normal form): an exact rule wins over parent
  // rules, the longest parent suffix wins. Null when no rule applies.
  const LocalRule* Find(const std::string& domain) const;
  size_t size() const { return exact_.size() + parents_.size(); }

 private:
  std::map<std::string, LocalRule> exact_;    // by domain
  std::map<std::string, LocalRule> parents_;  // by domain, for ".domain" rules
};

}  // namespace mxsec
