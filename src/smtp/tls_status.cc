// tls_status.cc - Postfix 3.11 TLS feature status and the security class
// of a delivery (see tls_status.h).
#include "mxsec/smtp/tls_status.h"

namespace mxsec {

const char* PostfixTlsLevel(HostTls demand) {
  switch (demand) {
    case HostTls::kDane: return "dane";
    case HostTls::kEncrypt: return "encrypt";
    case HostTls::kPkix: return "secure";
    case HostTls::kMay: return "may";
    case HostTls::kSkip: return "none";
  }
  return "none";
}

std::string TlsFeatureStatus(const TlsFacts& facts) {
  const std::string level = PostfixTlsLevel(facts.demand);
  switch (facts.progress) {
    case TlsProgress::kUndecided: return level + "?";
    case TlsProgress::kViolated: return level + "!";
    case TlsProgress::kDecided: break;
  }
  if (facts.tls_used) return level;
  // Plaintext is a downgrade `may` allows; for any other level it is a
  // violation (the session never sends under it, smtp_trouble.h).
  return facts.demand == HostTls::kMay ? level + ":none" : level + "!";
}

TlsFacts FactsOfSession(HostTls demand, const SessionResult& session) {
  TlsFacts f;
  f.demand = demand;
  f.tls_used = session.tls.used;
  const bool required = demand != HostTls::kMay;
  if (session.host_failed && required && !session.failure_type.empty()) {
    f.progress = TlsProgress::kViolated;  // smtp_trouble.h: a TLS failure under a required level
  } else if (!session.host_failed || session.tls.used) {
    f.progress = TlsProgress::kDecided;
  } else {
    f.progress = TlsProgress::kUndecided;
  }
  return f;
}

const char* TlsSecurityClass(const TlsInfo& tls) {
  if (!tls.used) return "clear";
  if (!tls.verified) return "encrypted";
  if (tls.verification == "dane") return "dane";
  if (tls.verification == "pkix") return "mta-sts";
  return "encrypted";
}

}  // namespace mxsec
