// dane.cc - classification of TLSA records for SMTP (RFC 7672 §3).
#include "mxsec/dns/dane.h"

namespace mxsec {

std::string TlsaOwnerName(const std::string& host, int port) {
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) about
  // "literal" + std::string&&.
  std::string owner = "_";
  owner += std::to_string(port);
  owner += "._tcp.";
  owner += host;
  return owner;
}

std::string TlsaUnusableReason(const TlsaRecord& r) {
  if (r.usage == 0 || r.usage == 1)
    return "usage " + std::to_string(r.usage) + (r.usage == 0 ? " (PKIX-TA)" : " (PKIX-EE)") +
           " is not used by SMTP clients (RFC 7672 §3.1.3)";
  if (r.usage != 2 && r.usage != 3) return "unknown usage " + std::to_string(r.usage);
  if (r.selector != 0 && r.selector != 1) return "unknown selector " + std::to_string(r.selector);
  switch (r.matching) {
    case 0:
      if (r.data.empty()) return "empty certificate data";
      return "";
    case 1:
      if (r.data.size() != 32) return "SHA2-256 data is " + std::to_string(r.data.size()) + " bytes, want 32";
      return "";
    case 2:
      if (r.data.size() != 64) return "SHA2-512 data is " + std::to_string(r.data.size()) + " bytes, want 64";
      return "";
    default:
      return "unknown matching type " + std::to_string(r.matching);
  }
}

TlsaSet ClassifyTlsa(const std::vector<DnsRecord>& records) {
  TlsaSet set;
  for (const DnsRecord& rec : records) {
    if (rec.type != RrType::kTLSA) continue;
    (IsUsableTlsa(rec.tlsa) ? set.usable : set.unusable).push_back(rec.tlsa);
  }
  return set;
}

}  // namespace mxsec
