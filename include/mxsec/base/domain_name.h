// domain_name.h - syntax checks and normal form for DNS names.
//
// Every name that reaches the DNS layer or the policy decision passes
// through here first, whether it came from the command line, a
// configuration file or a DNS answer. The normal form is lowercase ASCII
// without a trailing dot; comparisons elsewhere assume it.
#pragma once

#include <string>
#include <string_view>

#include "mxsec/base/status.h"

namespace mxsec {

// A mail domain or host name: letters, digits and hyphens (LDH labels of
// 1-63 octets, no leading or trailing hyphen), at least one dot-separated
// label, 253 octets at most, an optional trailing dot. Internationalised
// names must be given as A-labels ("xn--..."). IP literals are refused.
// Returns the normal form, or an error that says what is wrong.
Result<std::string> NormalizeHostName(std::string_view name);

// Looser check for names that appear in DNS data (owner names with
// underscores such as "_25._tcp.mx.example"): any printable ASCII label
// except '.', '\\', space; same length limits. Returns the normal form.
Result<std::string> NormalizeDnsName(std::string_view name);

// Lowercase ASCII copy.
std::string AsciiLower(std::string_view s);

// True when `addr` is an IPv4 address in 127.0.0.0/8 or the IPv6 address ::1
// (the resolver addresses whose AD bit is trusted, RFC 7672 §2.1.3).
bool IsLoopbackAddress(std::string_view addr);

}  // namespace mxsec
