// local_policy.cc - libFuzzer target: the local policy table parser
// (LocalPolicy::Parse, local_policy.h).
//
// Oracle: no crash or sanitizer report; an accepted table keeps the
// promises of local_policy.h: no more rules than lines, match= only on
// verify rules, a rule Find() returns is the exact rule of the name or a
// ".domain" rule of a proper suffix of it, an exact rule is found again
// by its own domain, every rule names its FILE:LINE source, a rule Find()
// returns has not expired, and there is one expiry warning per expired rule
// at most.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mxsec/policy/local_policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto r = mxsec::LocalPolicy::Parse(text, "fuzz-policy");
  if (!r.ok()) return 0;
  const mxsec::LocalPolicy& lp = r.value();
  // Every line holds at most one rule.
  size_t lines = 1;
  for (char c : text) lines += c == '\n';
  if (lp.size() > lines) abort();
  if (lp.ExpiryWarnings().size() > lp.size()) abort();
  for (const std::string& probe : {std::string("example.org"), std::string("a.b.example.org"), text.substr(0, 64)}) {
    const mxsec::LocalRule* rule = lp.Find(probe);
    if (!rule) continue;
    if (!rule->match.empty() && rule->policy != mxsec::LocalTls::kVerify) abort();
    if (rule->source.rfind("fuzz-policy:", 0) != 0) abort();
    if (rule->ExpiredAt(mxsec::SystemClock()->Now())) abort();
    if (!rule->subdomains && rule->domain != probe) abort();
    if (rule->subdomains) {
      const std::string suffix = "." + rule->domain;
      if (probe.size() <= suffix.size() || probe.compare(probe.size() - suffix.size(), suffix.size(), suffix) != 0)
        abort();
    }
    if (!rule->subdomains && lp.Find(rule->domain) != rule) abort();
  }
  return 0;
}
