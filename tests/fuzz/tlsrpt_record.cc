// tlsrpt_record.cc - libFuzzer target: the TLS-RPT TXT record parser
// (ParseTlsRptRecord, SelectTlsRptRecord, MailtoAddress, HttpsAuthority;
// tlsrpt.h). The input is one record, and split at NUL bytes, an RRset.
//
// Oracle: no crash or sanitizer report; an accepted record starts with
// "v=TLSRPTv1" and has at least one rua URI, each mailto: or https:
// (RFC 8460 §3); an RRset is accepted only with exactly one candidate.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/report/tlsrpt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = mxsec::ParseTlsRptRecord(text);
  if (r.ok()) {
    if (text.rfind("v=TLSRPTv1", 0) != 0) abort();
    if (r.value().rua.empty()) abort();
    for (const auto& uri : r.value().rua) {
      std::string scheme = uri.substr(0, uri.find(':') + 1);
      for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (scheme != "mailto:" && scheme != "https:") abort();
      if (scheme == "mailto:")
        (void)mxsec::MailtoAddress(uri);
      else
        (void)mxsec::HttpsAuthority(uri);
    }
  }
  std::vector<std::string> records(1);
  for (char c : text) {
    if (c == '\0')
      records.emplace_back();
    else
      records.back().push_back(c);
  }
  auto s = mxsec::SelectTlsRptRecord(records);
  if (s.ok()) {
    size_t candidates = 0;
    for (const auto& rec : records)
      if (rec.rfind("v=TLSRPTv1", 0) == 0) ++candidates;
    if (candidates != 1) abort();
  }
  return 0;
}
