// socketmap.h - Postfix's socketmap protocol (socketmap_table(5)) and the
// translation of an mxsec decision into a Postfix TLS policy
// (smtp_tls_policy_maps, postconf(5) "TLS POLICY TABLE").
//
// Requests and replies are netstrings ("<len>:<bytes>,"). A request is
// "<mapname> <key>"; a reply is "OK <value>", "NOTFOUND ", "TEMP <reason>",
// "TIMEOUT <reason>" or "PERM <reason>". Anything malformed or oversized is
// an error: the server drops that connection and nothing else.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "mxsec/policy.h"
#include "mxsec/status.h"

namespace mxsec {

inline constexpr size_t kSocketmapMaxRequest = 4096;

// Incremental netstring decoder for one connection.
class NetstringReader {
 public:
  explicit NetstringReader(size_t max_len = kSocketmapMaxRequest) : max_len_(max_len) {}
  void Feed(std::string_view bytes) { buf_.append(bytes); }
  // The next complete netstring's payload; nullopt when more bytes are
  // needed; an error for a malformed or oversized netstring.
  Result<std::optional<std::string>> Next();
  size_t buffered() const { return buf_.size(); }

 private:
  size_t max_len_;
  std::string buf_;
};

std::string EncodeNetstring(std::string_view payload);

// "<mapname> <key>" -> the key (map names are not interpreted: any name
// works). Error when there is no space or the key is empty.
Result<std::string> SocketmapKey(std::string_view request);

// The Postfix TLS policy for a decision, as a socketmap reply payload:
//   must-tls by DANE      -> "OK dane-only" ("OK encrypt" when every usable
//                            host has only unusable TLSA records)
//   must-tls by MTA-STS   -> "OK secure match=<names> servername=hostname",
//                            names = the policy's exact mx patterns plus the
//                            MX host names that its wildcard patterns match
//                            (a pattern "*.example.org" covers one label,
//                            Postfix's ".example.org" any depth: never
//                            written as one another)
//   decided by a local_policy_file rule (not defer or fail):
//                            dane-only -> "OK dane-only", encrypt -> "OK encrypt",
//                            may -> "OK may", verify -> "OK secure
//                            match=<names, or hostname> servername=hostname"
//   opportunistic, fail   -> "NOTFOUND " (Postfix's own default applies)
//   defer                 -> "TEMP <reason>"
std::string PostfixPolicyReply(const DomainPolicy& policy);

}  // namespace mxsec
