// requiretls.h - what the sender of one message asks of its TLS (RFC 8689),
// and what that means for a domain's policy.
//
// REQUIRETLS (RFC 8689 §4.2.1): the message may go only to an MX host
//   1. whose name is authenticated: the MX answer is DNSSEC-secure, or the
//      host is listed in the domain's MTA-STS policy in mode enforce;
//   2. that is reached over TLS whose certificate is verified by DANE, or
//      by PKIX for the MX host name;
//   3. that announces REQUIRETLS after STARTTLS (the SMTP client checks
//      this one; the MAIL FROM then carries REQUIRETLS).
// In mxsec's words: a `dane` host (its MX answer and addresses are secure
// by construction), or a `pkix` host whose name the MTA-STS policy in
// enforce mode lists, or that a local `verify` rule (with no other names)
// made pkix in a domain whose MX answer is secure. `encrypt`, `may` and
// `skip` hosts never are; neither is an MTA-STS policy in testing mode.
//
// `TLS-Required: No` (RFC 8689 §3, §4.2.2): the sender asks that the recipient
// domain's DANE and MTA-STS demands be set aside for this message. TLS is
// still used when offered (the host becomes `may`), and never verified;
// DNS failures and a domain that cannot receive mail still are what they
// are. It is a downgrade the sender chose: callers log it as an override.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "mxsec/policy/policy.h"

namespace mxsec {

enum class MessageTls {
  kPolicy,        // the domain's policy decides (the default)
  kRequireTls,    // REQUIRETLS: only hosts that satisfy RFC 8689 §4.2.1
  kTlsOptional,   // TLS-Required: No: the domain's demands set aside
};
const char* MessageTlsName(MessageTls t);  // "policy", "requiretls", "tls-required-no"
std::optional<MessageTls> ParseMessageTls(std::string_view name);

// Whether `mx` of `policy` may receive a REQUIRETLS message (steps 1 and 2
// above); when not, `reason` says why, naming the host.
struct RequireTlsCheck {
  bool eligible = false;
  std::string reason;  // eligible: by what ("DANE", "MTA-STS enforce", ...); else why not
};
RequireTlsCheck RequireTlsHost(const DomainPolicy& policy, const MxPolicy& mx);
// Whether any host of the domain may (the verdict must let delivery go on);
// when none, why (the reasons of the hosts, or the verdict's).
RequireTlsCheck RequireTlsDomain(const DomainPolicy& policy);

// Whether the header section of `message` (up to the first empty line, or
// the first line that is neither a field nor a continuation) has a field
// "TLS-Required" whose value, unfolded and trimmed, is "No" in any case
// (RFC 8689 §3; other values mean nothing). Reads at most
// kMaxHeaderScan octets: a field beyond that is not seen.
inline constexpr size_t kMaxHeaderScan = 1 << 20;
bool HasTlsRequiredNo(std::string_view message);

// The policy as `TLS-Required: No` makes it: every host with an address
// `may`, the verdict opportunistic when some host has an address and it
// was must-tls or defer for lack of a usable host; otherwise unchanged.
// `demanded` (when given) says what was set aside, or "" when nothing
// was (an opportunistic domain): the override to log.
DomainPolicy SetAsideTlsDemands(const DomainPolicy& policy, std::string* demanded = nullptr);

}  // namespace mxsec
