// mta_sts_policy.cc - libFuzzer target: the MTA-STS policy file parser
// (ParseStsPolicy, mta_sts.h) and MX pattern matching.
//
// Oracle: no crash or sanitizer report; an accepted policy keeps the
// promises of mta_sts.h: max_age within 0..kStsMaxAge, at least one mx
// pattern when the mode is enforce or testing, patterns lowercase, and no
// accepted body is over kStsMaxPolicyBytes or holds a NUL byte. Matching
// each pattern against a host name taken from the input must not crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mxsec/policy/mta_sts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto r = mxsec::ParseStsPolicy(body);
  if (!r.ok()) return 0;
  const mxsec::StsPolicy& p = r.value();
  if (body.size() > mxsec::kStsMaxPolicyBytes) abort();
  if (body.find('\0') != std::string_view::npos) abort();
  if (p.max_age < 0 || p.max_age > mxsec::kStsMaxAge) abort();
  if (p.mode != mxsec::StsMode::kNone && p.mx.empty()) abort();
  for (const auto& mx : p.mx) {
    if (mx.empty()) abort();
    for (char c : mx)
      if (c >= 'A' && c <= 'Z') abort();
    (void)mxsec::StsMxMatches(mx, mx);
    (void)mxsec::StsMxMatches(mx, body.substr(0, 300));
  }
  (void)mxsec::StsPolicyMatches(p, "mx.example.org");
  return 0;
}
