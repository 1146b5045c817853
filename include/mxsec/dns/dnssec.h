// dnssec.h - building blocks of in-process DNSSEC validation
// (`dnssec_validation = local`).
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
// Every result says why (in at most kMaxReasonLength characters), and which
// key tags were used, so that the policy output can show how a status was
// reached.
// The work is bounded (CVE-2023-50387 "KeyTrap", CVE-2023-50868): the
// zone's owner chooses how many keys share a key tag, how many RRSIGs an
// RRset carries, how many NSEC/NSEC3 records a denial brings and how
// costly their hashes are, so each of these has a limit below, per RRset
// and per lookup (ValidationBudget); going past one makes the answer
// bogus, with a reason naming the limit, never "secure" on less evidence. An algorithm or digest we
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

#include "mxsec/base/status.h"

// ldns's record types, kept opaque here: its headers pull in OpenSSL.
struct ldns_struct_rr_list;
struct ldns_struct_rr;

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

// --- Bounds on validation work ---
// Per RRset (VerifyRrset, VerifyDnskeys):
//   - an RRSIG whose key tag and algorithm match more than
//     kMaxKeyTagCollisions keys of the zone is not tried at all (unbound
//     1.19.1 allows 4 colliding keys when building the chain of trust);
//   - at most kMaxSignatureChecksPerRrset (RRSIG, DNSKEY) pairs are
//     checked, remembered results included (unbound 1.19.1
//     MAX_VALIDATE_RRSIGS 8);
//   - at most kMaxDsMatchFailures DS-matched keys are tried on a DNSKEY
//     RRset (unbound 1.19.1 MAX_DS_MATCH_FAILURES 4);
//   - RSA keys with a public exponent longer than kMaxRsaExponentBits or a
//     modulus longer than kMaxRsaModulusBits are not used: a 2040-bit
//     exponent makes one RSA-2048 verification cost ~2.5 ms instead of
//     ~0.05 ms (RFC 3110 §2 allows up to 4096-bit exponents; OpenSSL
//     itself refuses exponents over 64 bits for moduli over 3072 bits;
//     RFC 3110 and RFC 5702 cap the modulus at 4096 bits).
// Per denial proof: at most kMaxDenialRrsets NSEC/NSEC3 RRsets (a proof
// uses at most four: at the name or its closest encloser, over the next
// closer name, over or at the wildcard; the rest is room for servers that
// send more).
// Per lookup (ValidationBudget, shared by every check one lookup makes):
//   - kMaxPublicKeyOperationsPerLookup signature verifications
//     (unbound 1.19.1 verifies MAX_VALIDATE_AT_ONCE 8 signatures per pass
//     and suspends a query at most MAX_VALIDATION_SUSPENDS 16 times,
//     8 x 16 = 128);
//   - kMaxSignatureFailuresPerLookup failed signature checks (BIND's
//     max-validation-failures-per-fetch, from 9.19.21 on, allows 1 per
//     upstream response by default; a lookup here reads up to two
//     responses per label of the name, DS and DNSKEY);
//   - kMaxNsec3RoundsPerLookup NSEC3 hash rounds, (iterations + 1) per name
//     hashed (unbound 1.19.1 MAX_NSEC3_CALCULATIONS 8 per pass, at most 16
//     suspends: 128 hashes, of up to 151 rounds each under the
//     150-iteration limit of RFC 9276 §3.2).
constexpr size_t kMaxKeyTagCollisions = 4;
constexpr size_t kMaxSignatureChecksPerRrset = 8;
constexpr size_t kMaxDsMatchFailures = 4;
constexpr size_t kMaxRsaExponentBits = 64;
constexpr size_t kMaxRsaModulusBits = 4096;
constexpr size_t kMaxDenialRrsets = 16;
constexpr size_t kMaxPublicKeyOperationsPerLookup = 128;
constexpr size_t kMaxSignatureFailuresPerLookup = 16;
constexpr uint64_t kMaxNsec3RoundsPerLookup = 128 * 151;
// Reasons list at most a few problems each ("...; and 497 more"), and are
// cut at this length (the bytes a policy line or log line can carry).
constexpr size_t kMaxReasonLength = 2048;

// The work one lookup has spent, and the check that it may spend more.
// Not thread-safe: one lookup, one thread.
class ValidationBudget {
 public:
  ValidationBudget() = default;
  ValidationBudget(size_t max_public_key_operations, size_t max_failures, uint64_t max_nsec3_rounds)
      : max_ops_(max_public_key_operations), max_failures_(max_failures), max_nsec3_rounds_(max_nsec3_rounds) {}

  // False (and exhausted() says which limit) when one more public-key
  // operation would exceed the limit; otherwise counts it.
  bool SpendPublicKeyOperation();
  // Counts a failed signature check (computed or remembered); false when
  // that reaches the limit.
  bool RecordFailure();
  // False when hashing one more name with `iterations` would exceed the
  // limit; otherwise counts its rounds.
  bool SpendNsec3Hash(uint16_t iterations);

  size_t public_key_operations() const { return ops_; }
  size_t failures() const { return failures_; }
  size_t nsec3_hashes() const { return nsec3_hashes_; }
  uint64_t nsec3_rounds() const { return nsec3_rounds_; }
  // "" while within the limits; else which limit was reached, for reasons.
  const std::string& exhausted() const { return exhausted_; }

 private:
  size_t max_ops_ = kMaxPublicKeyOperationsPerLookup;
  size_t max_failures_ = kMaxSignatureFailuresPerLookup;
  uint64_t max_nsec3_rounds_ = kMaxNsec3RoundsPerLookup;
  size_t ops_ = 0, failures_ = 0, nsec3_hashes_ = 0;
  uint64_t nsec3_rounds_ = 0;
  std::string exhausted_;
};

// Signatures already checked. The same RRset, RRSIG and DNSKEY verify
// the same way every time, so once the public-key operation has succeeded
// for a triple it is remembered until the signature expires, and later
// checks of the same triple skip it; every other check (validity window,
// signer, key flags, label count) is still made on every use. A triple
// that failed is remembered too, for kFailureMemorySeconds only (unbound's
// val-bogus-ttl default), so that an answer asked for again does not cost
// the same failed operations again. Entries are keyed by the exact
// records (owner, type, class, RDATA; TTLs aside, as the signature covers
// the original TTL), never by a hash, so no other data can ever be taken
// for a checked triple. Bounded: when full, expired entries go, and if
// that is not enough, all (successes and failures are kept apart, so
// failures cannot push out successes). Thread-safe.
class VerifiedSignatures {
 public:
  static constexpr int64_t kFailureMemorySeconds = 60;
  explicit VerifiedSignatures(size_t max_entries = 20000) : max_entries_(max_entries) {}
  VerifiedSignatures(const VerifiedSignatures&) = delete;
  VerifiedSignatures& operator=(const VerifiedSignatures&) = delete;

  bool Contains(const std::string& triple, int64_t now);
  void Add(std::string triple, int64_t usable_until, int64_t now);
  bool Failed(const std::string& triple, int64_t now);
  void AddFailure(std::string triple, int64_t now);
  size_t size();
  size_t failures();

 private:
  std::mutex mu_;
  size_t max_entries_;
  std::unordered_map<std::string, int64_t> entries_;   // triple -> last second it may be used
  std::unordered_map<std::string, int64_t> failures_;  // triple -> last second the failure is remembered
};

enum class SigStatus { kValid, kBogus, kUnsupported };
const char* SigStatusName(SigStatus s);  // "valid", "bogus", "unsupported"

struct SigCheckOptions {
  int64_t now = 0;                   // Unix time of the check
  int64_t skew = 300;                // seconds of allowance on both ends of a validity window
  std::set<uint8_t> unsupported_algorithms;  // treated as unknown (kUnsupported), e.g. RFC 8624 MUST NOTs
  std::set<uint8_t> unsupported_digests;     // DS digest types treated as unknown
  VerifiedSignatures* verified = nullptr;    // when set: remembers verified signatures (not owned)
  // When set: the work of the whole lookup is counted and bounded there
  // (not owned). When null, each call of the functions below has a
  // ValidationBudget of its own.
  ValidationBudget* budget = nullptr;
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
// window (± skew; an inception after the expiration is invalid), made by a
// zone key of the set (matching tag and algorithm, zone bit, not revoked,
// within the RSA size limits), verifies within the work limits above. kUnsupported when no RRSIG
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

namespace internal {
// The public-key operation alone of checking RRSIG `sig` over `rrset` with
// DNSKEY `key` (no name, flag or window checks: VerifyRrset makes those);
// `check_time` lies inside the signature's window. ECDSA keys are parsed
// once per process; other algorithms go to ldns_verify_rrsig_time. False
// with `error` when the signature does not verify. Exposed for the unit
// tests, which hold it to ldns_verify_rrsig_time's answers.
bool VerifySignatureCrypto(const ldns_struct_rr_list* rrset, const ldns_struct_rr* sig, const ldns_struct_rr* key,
                           int64_t check_time, std::string* error);
}  // namespace internal

}  // namespace mxsec
