// smtp_reply.cc - libFuzzer target: the SMTP reply reader (smtp_proto.h),
// fed the input in pieces whose sizes the input's first byte chooses, as TCP
// segments and TLS records split a server's bytes.
//
// Oracle: no crash or sanitizer report; every reply returned has a code in
// 200..599, at most ReplyReader::kMaxLines lines of at most kMaxLine octets,
// none holding a LF (the reader is lenient about a bare CR inside a line: it is text, not a line end); Summary() stays bounded; the bytes consumed never
// exceed those fed. The per-input time limit (-timeout in tools/fuzz.sh)
// catches input that makes parsing super-linear.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mxsec/smtp/smtp_proto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  mxsec::ReplyReader reader;
  size_t fed = 0;
  while (true) {
    if (fed < in.size()) {
      size_t n = std::min(chunk, in.size() - fed);
      reader.Feed(in.substr(fed, n));
      fed += n;
    }
    if (reader.buffered() > fed) abort();
    auto r = reader.Next();
    if (!r.ok()) break;  // malformed: the client drops the connection
    if (!r.value()) {
      if (fed == in.size()) break;
      continue;
    }
    const mxsec::SmtpReply& reply = *r.value();
    if (reply.code < 200 || reply.code > 599) abort();
    if (reply.lines.empty() || reply.lines.size() > mxsec::ReplyReader::kMaxLines) abort();
    for (const auto& line : reply.lines) {
      if (line.size() > mxsec::ReplyReader::kMaxLine) abort();
      if (line.find('\n') != std::string::npos) abort();
    }
    if (reply.Summary().size() > 1000) abort();
    (void)mxsec::ParseEhlo(reply);
  }
  return 0;
}
