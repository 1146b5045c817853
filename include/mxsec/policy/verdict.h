// verdict.h - the words of a TLS decision (policy.h explains them): what a
// domain gets (Verdict), what demanded it (Mechanism) and how one MX host may
// be used (HostTls). Apart from policy.h so that the SMTP client, which
// enforces a HostTls, does not depend on how the decision is made.
#pragma once

namespace mxsec {

enum class Verdict { kMustTls, kOpportunistic, kDefer, kFail };
enum class Mechanism { kDane, kMtaSts, kLocal, kNone };
enum class HostTls { kDane, kEncrypt, kPkix, kMay, kSkip };
const char* VerdictName(Verdict v);      // "must-tls", "opportunistic", "defer", "fail"
const char* MechanismName(Mechanism m);  // "dane", "mta-sts", "local", "none"
const char* HostTlsName(HostTls t);      // "dane", "encrypt", "pkix", "may", "skip"

}  // namespace mxsec
