// dnssec.h - building blocks of in-process DNSSEC validation
// (`dnssec_validation = local`, issue 6).
//
// The validator itself (chain walk, cache, CNAME chains) is
// LocalValidatingResolver (local_validator.h); what is here is each check
// on its own, unit-tested:
//   - loading trust anchors (DS or DNSKEY records) from a file;
//   - checking the signatures of one RRset with a trusted DNSKEY set, with
//     the checks ldns's low-level verifier leaves to its caller (notes
//     §5.4): the signer name equals the key set's owner and encloses the
//     RRset's owner, the key has the zone bit and not the REVOKE bit, the
//     label count is sane (and tells a wildcard expansion), the validity
//     window holds with a clock-skew allowance;
//   - authenticating a zone's DNSKEY RRset from the parent's DS RRset or
//     from trust anchors;
//   - checking NSEC and NSEC3 denials (NODATA, NXDOMAIN with its wildcard
//     proof, insecure delegation incl. NSEC3 opt-out) made of records that
//     verify with the zone's keys.
// Every result says why, and which key tags were used, so that the policy
// output can show how a status was reached. An algorithm or digest we
// cannot verify (or that is marked unsupported) gives kUnsupported: the
// caller treats that zone as insecure (RFC 6840 §5.2, RFC 4035 §5.2),
// never as secure and never as bogus. Anything else that does not verify
// is bogus, including missing signatures.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxsec/status.h"

// ldns's record list, kept opaque here: its headers pull in OpenSSL.
struct ldns_struct_rr_list;

namespace mxsec {

// An owned list of resource records (RAII over ldns_rr_list). Move-only.
class RrList {
 public:
  RrList();
  explicit RrList(ldns_struct_rr_list* adopt);  // takes ownership; null = empty
  ~RrList();
  RrList(RrList&& o) noexcept;
  RrList& operator=(RrList&& o) noexcept;
  RrList(const RrList&) = delete;
  RrList& operator=(const RrList&) = delete;

  // Records in zone-file presentation form, one per line ("owner TTL IN
  // TYPE rdata"; ';' comments and blank lines skipped; names must be
  // absolute). `name` is used in messages ("root.key:3: ...").
  static Result<RrList> FromText(const std::string& text, const std::string& name);
  // A copy of the records of `type` (all when 0) at `owner` (any owner when
  // empty; normal form, "." or "" for the root).
  RrList Select(uint16_t type, const std::string& owner = "") const;
  RrList Clone() const;
  void Append(const RrList& other);  // copies other's records

  size_t size() const;
  bool empty() const { return size() == 0; }
  ldns_struct_rr_list* get() const { return list_; }
  std::string ToString() const;  // presentation form, one record per line

 private:
  ldns_struct_rr_list* list_;
};

// Trust anchors: DS or DNSKEY records, nothing else; at least one. A
// DNSKEY anchor must have the zone bit. Errors name the file and line.
Result<RrList> ParseTrustAnchors(const std::string& text, const std::string& name);
Result<RrList> LoadTrustAnchors(const std::string& path);

// Signatures already verified. The same RRset, RRSIG and DNSKEY verify
// the same way every time, so once the public-key operation has succeeded
// for a triple it is remembered until the signature expires, and later
// checks of the same triple skip it; every other check (validity window,
// signer, key flags, label count) is still made on every use. Entries are
// keyed by the exact records (owner, type, class, RDATA; TTLs aside, as
// the signature covers the original TTL), never by a hash, so no other
// data can ever be taken for a verified triple. Failures are not kept.
// Bounded: when full, expired entries go, and if that is not enough,
// all. Thread-safe.
class VerifiedSignatures {
 public:
  explicit VerifiedSignatures(size_t max_entries = 20000) : max_entries_(max_entries) {}
  VerifiedSignatures(const VerifiedSignatures&) = delete;
  VerifiedSignatures& operator=(const VerifiedSignatures&) = delete;

  bool Contains(const std::string& triple, int64_t now);
  void Add(std::string triple, int64_t usable_until, int64_t now);
  size_t size();

 private:
  std::mutex mu_;
  size_t max_entries_;
  std::unordered_map<std::string, int64_t> entries_;  // triple -> last second it may be used
};

enum class SigStatus { kValid, kBogus, kUnsupported };
const char* SigStatusName(SigStatus s);  // "valid", "bogus", "unsupported"

struct SigCheckOptions {
  int64_t now = 0;                   // Unix time of the check
  int64_t skew = 300;                // seconds of allowance on both ends of a validity window
  std::set<uint8_t> unsupported_algorithms;  // treated as unknown (kUnsupported), e.g. RFC 8624 MUST NOTs
  std::set<uint8_t> unsupported_digests;     // DS digest types treated as unknown
  VerifiedSignatures* verified = nullptr;    // when set: remembers verified signatures (not owned)
};
// The DNSKEY algorithms RFC 8624 §3.1 says MUST NOT be used for
// validation (1 RSAMD5, 3 DSA, 6 DSA-NSEC3-SHA1, 12 ECC-GOST), and DS digest
// type 3 (GOST).
SigCheckOptions DefaultSigCheckOptions(int64_t now);

struct SigResult {
  SigStatus status = SigStatus::kBogus;
  std::string reason;                // why (for bogus/unsupported), or what validated
  std::vector<uint16_t> key_tags;    // keys whose signature verified (kValid)
  std::string signer;                // zone that signed (normal form, "." for the root)
  bool wildcard = false;             // the RRset is a wildcard expansion (RRSIG labels < owner labels)
  std::string wildcard_source;       // then: the wildcard's name, "*.<closest encloser>"
  uint32_t ttl_limit = 0;            // min(original TTL, seconds to signature expiry) of the verifying RRSIG
};

// Checks the RRSIGs `sigs` over `rrset` (records of one owner, type and
// class) with `keys`, an already trusted DNSKEY RRset of one zone. Valid
// when at least one RRSIG covering the type, by that zone, within its
// window (± skew), made by a zone key of the set (matching tag and
// algorithm, zone bit, not revoked), verifies. kUnsupported when no RRSIG
// uses an algorithm we can verify; bogus otherwise (no RRSIG at all, wrong
// signer, expired, no such key, bad signature...).
SigResult VerifyRrset(const RrList& rrset, const RrList& sigs, const RrList& keys, const SigCheckOptions& o);

// Authenticates the DNSKEY RRset of a zone: some DNSKEY that matches one
// of `ds` (the parent's validated DS RRset for the zone, or DS trust
// anchors) or is itself one of the DNSKEY trust anchors in `ds`, must sign
// the whole DNSKEY RRset (`sigs`). kUnsupported when no DS/anchor has a
// digest type and algorithm we support (the zone is then insecure); bogus
// when supported ones exist but none matches a key that signs the set.
SigResult VerifyDnskeys(const RrList& dnskeys, const RrList& sigs, const RrList& ds, const SigCheckOptions& o);

// --- Authenticated denial of existence (RFC 4035 §5.4, RFC 5155 §8) ---

enum class Denial {
  kNoData,   // the name exists and has no record of the type (nor a CNAME)
  kNxDomain, // the name does not exist, and no wildcard could have answered
  kNoDs,     // the name is a delegation (NS) without DS: an insecure delegation
};

struct DenialResult {
  // kValid: proven. kUnsupported: the proof uses NSEC3 parameters we do
  // not process (hash algorithm other than SHA-1, more than 150 iterations,
  // RFC 9276 §3.2): the caller treats the answer as insecure. kBogus: not
  // proven (no or unsigned records, a record that contradicts the claim).
  SigStatus status = SigStatus::kBogus;
  std::string reason;
  std::string method;            // "NSEC", "NSEC3"
  bool opt_out = false;          // proven only up to an NSEC3 opt-out span: insecure, not secure
  bool wildcard = false;         // kNoData proven at the wildcard that would have answered
  std::vector<uint16_t> key_tags;
};

// Checks that the NSEC or NSEC3 records in `auth` (with their RRSIGs;
// other records are ignored) prove `what` for `qname` (normal form) and
// `qtype` (ignored for kNoDs). Only records whose signatures verify with
// `keys` (the zone's authenticated DNSKEY set) count; NSEC/NSEC3 records
// must belong to that zone and must not be wildcard expansions. An NSEC
// at a delegation point above `qname` proves nothing below it.
DenialResult VerifyDenial(const std::string& qname, uint16_t qtype, Denial what, const RrList& auth,
                          const RrList& keys, const SigCheckOptions& o);

// Checks the proof that comes with a wildcard expansion (RFC 4035 §5.3.4,
// RFC 5155 §8.8): `qname` was answered by `wildcard_source` ("*.<closest
// encloser>", from VerifyRrset), so signed NSEC/NSEC3 records of the zone
// in `auth` must show that the next closer name (and for NSEC, qname)
// does not exist. kValid with opt_out set when only an opt-out span
// covers it (insecure); kUnsupported for NSEC3 parameters we do not
// process; kBogus otherwise.
DenialResult VerifyWildcardAnswer(const std::string& qname, const std::string& wildcard_source, const RrList& auth,
                                  const RrList& keys, const SigCheckOptions& o);

}  // namespace mxsec
