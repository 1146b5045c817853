// mta_sts_txt.cc - libFuzzer target: the _mta-sts TXT record parser
// (ParseStsTxt, mta_sts.h). The input is split at NUL bytes into TXT RRs.
//
// Oracle: no crash or sanitizer report; an accepted record set has exactly
// one RR starting with the version token "v=STSv1" and its id is 1-32 of [A-Za-z0-9]
// (RFC 8461 §3.1).
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "mxsec/policy/mta_sts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> records(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0)
      records.emplace_back();
    else
      records.back().push_back(static_cast<char>(data[i]));
  }
  auto r = mxsec::ParseStsTxt(records);
  if (!r.ok()) return 0;
  // A candidate begins with the whole version token "v=STSv1".
  size_t candidates = 0;
  for (const auto& rec : records)
    if (rec.rfind("v=STSv1", 0) == 0 && (rec.size() == 7 || rec[7] == ';' || rec[7] == ' ' || rec[7] == '\t'))
      ++candidates;
  if (candidates != 1) abort();
  const std::string& id = r.value().id;
  if (id.empty() || id.size() > 32) abort();
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c))) abort();
  return 0;
}
