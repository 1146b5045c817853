// tls_verify.h - authentication of an SMTP server's certificate chain:
// DANE (RFC 7672 §3, RFC 7671) and PKIX for MTA-STS (RFC 8461 §4.2).
//
// Input is the chain exactly as the server presented it (DER, leaf first)
// and what the policy demands; output is a verdict with the reason and the
// RFC 8460 failure type. The functions never consult the network, and they
// take the time as an argument so that tests can move the clock.
//
// Promises:
//   - DANE-EE (usage 3): only the leaf is compared (selector 0: whole
//     certificate DER, 1: SubjectPublicKeyInfo DER; matching 0: exact, 1:
//     SHA2-256, 2: SHA2-512). No name, date, issuer or key usage check.
//   - DANE-TA (usage 2): a certificate at depth >= 1 of the presented chain
//     (or, for a "2 0 0" record, the certificate in the record itself) must
//     match; the chain from the leaf to that certificate is then verified
//     with that certificate as the ONLY trust anchor (never the system
//     store), with signatures, CA constraints and validity dates checked,
//     and the leaf's DNS names must match one of the reference names
//     (RFC 6125: '*' only as the whole left-most label, one label).
//   - Digest agility (RFC 7671 §9): within a (usage, selector) group,
//     records with a weaker digest are ignored when a stronger one is
//     present (SHA2-512 > SHA2-256; full data is never dropped).
//   - Any one usable record that verifies is enough; unusable records are
//     ignored here (the policy layer decided what they mean).
//   - PKIX: the chain must verify to `ca_file` (or the system store when
//     empty), be within its validity dates, and the leaf must match `host`.
// Nothing is ever accepted on a parse error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/dns/dns.h"

namespace mxsec {

using DerCertificate = std::vector<uint8_t>;

struct CertificateInfo {
  std::string subject;      // RFC 4514 DN
  std::string issuer;
  std::string spki_sha256;  // lowercase hex of SHA2-256(SubjectPublicKeyInfo DER)
  std::string cert_sha256;  // lowercase hex of SHA2-256(certificate DER)
  int64_t not_before = 0;   // unix seconds
  int64_t not_after = 0;
  std::vector<std::string> dns_names;  // subjectAltName dNSNames (CN when there are none)
};

// Describes every certificate of the chain (for `probe` and the logs).
// Certificates that do not parse are described with subject "(unparsable)".
std::vector<CertificateInfo> DescribeChain(const std::vector<DerCertificate>& chain);

struct VerifyResult {
  bool ok = false;
  std::string detail;                // "DANE-EE 3 1 1 matched the leaf", or why it failed
  std::optional<TlsaRecord> matched; // the TLSA record that authenticated the server
  int matched_depth = -1;            // chain depth of the matching certificate (-1: from the record)
  std::string failure_type;          // RFC 8460 result-type when !ok: "validation-failure",
                                     // "certificate-host-mismatch", "certificate-expired",
                                     // "certificate-not-trusted"
};

struct DaneVerifyInput {
  std::vector<DerCertificate> chain;         // as presented, leaf first
  std::vector<TlsaRecord> tlsa;              // the RRset (unusable records are skipped)
  std::vector<std::string> reference_names;  // for DANE-TA: TLSA base domain, MX host, next-hop domain
  int64_t now = 0;                           // unix seconds
};
VerifyResult VerifyDane(const DaneVerifyInput& input);

struct PkixVerifyInput {
  std::vector<DerCertificate> chain;  // as presented, leaf first
  std::string ca_file;                // PEM bundle; empty: the system trust store
  std::string host;                   // the MX host name the certificate must match
  int64_t now = 0;
  std::vector<std::string> names;     // if not empty: match one of these instead of `host` (local verify match=)
};
VerifyResult VerifyPkix(const PkixVerifyInput& input);

// RFC 7671 §9 digest agility filter over usable records (exposed for tests).
std::vector<TlsaRecord> ApplyDigestAgility(const std::vector<TlsaRecord>& usable);

}  // namespace mxsec
