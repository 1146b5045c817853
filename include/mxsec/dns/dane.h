// dane.h - DANE for SMTP (RFC 7672, RFC 7671): TLSA record sets.
//
// What a TLSA RRset means for one MX host. Only DANE-TA(2) and DANE-EE(3)
// with a known selector and matching type (and a digest of the right
// length) are usable; PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP (RFC 7672
// §3.1.3). A secure RRset with no usable record still obliges the client
// to use TLS, without authentication (RFC 7672 §2.2).
#pragma once

#include <string>
#include <vector>

#include "mxsec/dns/dns.h"

namespace mxsec {

// "_25._tcp.<host>" (RFC 6698 §3).
std::string TlsaOwnerName(const std::string& host, int port = 25);

// Empty when the record is usable, else why not ("usage 1 (PKIX-EE) is not
// used by SMTP clients", "SHA2-256 data is 31 bytes, want 32", ...).
std::string TlsaUnusableReason(const TlsaRecord& r);
inline bool IsUsableTlsa(const TlsaRecord& r) { return TlsaUnusableReason(r).empty(); }

struct TlsaSet {
  std::vector<TlsaRecord> usable;
  std::vector<TlsaRecord> unusable;
};
TlsaSet ClassifyTlsa(const std::vector<DnsRecord>& records);

}  // namespace mxsec
