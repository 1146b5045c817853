// ehlo.cc - libFuzzer target: EHLO capability parsing (ParseEhlo,
// smtp_proto.h) of a 250 reply whose lines are the input's lines.
//
// Oracle: no crash or sanitizer report; every keyword reported is upper
// case, of the RFC 5321 keyword syntax, and at most one per line (the greeting line never
// is one); a flag (STARTTLS, ...) is set only when its keyword is listed;
// a SIZE value is reported only when SIZE is listed.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mxsec/smtp/smtp_proto.h"

namespace {
bool Listed(const mxsec::EhloCapabilities& caps, const std::string& k) {
  for (const auto& kw : caps.keywords)
    if (kw == k) return true;
  return false;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mxsec::SmtpReply reply;
  reply.code = 250;
  std::string line;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      reply.lines.push_back(line);
      line.clear();
    } else {
      line.push_back(static_cast<char>(data[i]));
    }
  }
  reply.lines.push_back(line);
  mxsec::EhloCapabilities caps = mxsec::ParseEhlo(reply);
  if (caps.keywords.size() >= reply.lines.size()) abort();
  for (const auto& kw : caps.keywords) {
    // RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    if (kw.empty() || kw[0] == '-') abort();
    for (char c : kw)
      if (!(std::isupper(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-'))
        abort();
  }
  if (caps.starttls && !Listed(caps, "STARTTLS")) abort();
  if (caps.pipelining && !Listed(caps, "PIPELINING")) abort();
  if (caps.requiretls && !Listed(caps, "REQUIRETLS")) abort();
  if (caps.chunking && !Listed(caps, "CHUNKING")) abort();
  if (caps.dsn && !Listed(caps, "DSN")) abort();
  if (caps.size && !Listed(caps, "SIZE")) abort();
  return 0;
}
