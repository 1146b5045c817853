// text.h - showing untrusted text safely. Replies from servers, curl's error
// buffer, header values and command-line arguments end up in logs, DSNs,
// reports and terminals: these functions promise one line of printable ASCII
// of bounded length, whatever the input, so no input can inject a log line,
// a terminal escape or unbounded output.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mxsec {

// `s` with every octet outside printable ASCII (0x20-0x7e) replaced by '?',
// cut after `max` octets with "..." appended.
std::string PrintableAscii(std::string_view s, size_t max);

// `s` in double quotes with every octet outside printable ASCII shown as
// \xNN, cut after `max` input octets with "..." before the closing quote.
std::string QuotedPrintable(std::string_view s, size_t max = 80);

// `s` without its leading and trailing spaces and tabs (RFC 5234 WSP).
std::string_view TrimWsp(std::string_view s);
// ASCII case-insensitive comparisons, for protocol keywords, header field
// names and URI schemes (never for anything that may hold UTF-8 meaning).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix);

// True when `name` is LDH labels (letters, digits, hyphen) separated by
// single dots, without a leading or trailing dot, at most `max_len` octets:
// a name that can be put into a URL or a curl option without changing its
// meaning. Label syntax beyond that is the DNS layer's business.
// Lists stored one item per line (the attempt logs' TLSA records, policy
// lines, host names: no item holds a line break). SplitLines(JoinLines(v))
// == v for such items.
std::string JoinLines(const std::vector<std::string>& v);
std::vector<std::string> SplitLines(const std::string& s);

bool IsLdhName(std::string_view name, size_t max_len);

}  // namespace mxsec
