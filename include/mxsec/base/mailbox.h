// mailbox.h - envelope addresses (RFC 5321 §4.1.2, RFC 6531 §3.3): the one
// parser every entry point uses for senders and recipients, from the command
// line, the queue, configuration or the network. Nothing here does I/O.
#pragma once

#include <string>
#include <string_view>

#include "mxsec/base/status.h"

namespace mxsec {

// An envelope address: "" (the null sender, only where allowed) or
// local@domain. Checks RFC 5321 §4.1.2 syntax (dot-atom or quoted local
// part), §4.5.3.1 lengths (local part 64, domain 255, path 256), no
// control characters, no '<' '>' or whitespace outside quotes. The domain
// is returned in normal form (lowercase, no trailing dot).
struct Mailbox {
  std::string local;   // as given (case preserved)
  std::string domain;  // normal form; A-label or UTF-8 (see utf8)
  bool utf8 = false;   // non-ASCII anywhere: needs SMTPUTF8
  std::string ToString() const;  // "local@domain", "" for the null sender
};
Result<Mailbox> ParseMailbox(std::string_view address, bool allow_null);

}  // namespace mxsec
