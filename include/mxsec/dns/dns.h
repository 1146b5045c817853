// dns.h - DNS lookups with their DNSSEC status.
//
// Two layers, each behind an interface so tests can replace it:
//   DnsTransport  sends questions to the configured resolver(s) and returns
//                 what came back (rcode, AD bit, answer records), nothing
//                 more. The ldns implementation sends a batch of questions
//                 concurrently over one UDP socket (TCP on truncation) and
//                 matches every reply to its question (ID, QR, name, type).
//   Resolver      answers questions with a classified outcome (records,
//                 NODATA, NXDOMAIN, failure), the DNSSEC status (secure /
//                 insecure / bogus / indeterminate, RFC 4035 §4.3) and the
//                 CNAME chain that was followed. ResolverModeResolver
//                 derives the status from the AD bit of a validating
//                 resolver; a SERVFAIL is asked again with CD set to tell
//                 bogus data from an unreachable zone.
// Promise: a failure is never reported as "no data". A timeout, SERVFAIL,
// REFUSED, malformed or mismatched reply is a failure with status bogus or
// indeterminate, and the policy layer treats it as such; so is a reply
// over a limit (kMaxSectionRecords), which is refused whole, never cut
// short. A reply's records are kept once, as parsed (DnsResponse): every
// view of them is computed from that one list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/net_address.h"
#include "mxsec/base/status.h"

namespace mxsec {

class RrList;  // dnssec.h

enum class DnssecStatus { kSecure, kInsecure, kBogus, kIndeterminate };
const char* DnssecStatusName(DnssecStatus s);
// The weaker of two statuses for a chain of answers: any failure wins,
// then insecure, then secure.
DnssecStatus WeakerStatus(DnssecStatus a, DnssecStatus b);

enum class RrType : uint16_t {
  kA = 1, kNS = 2, kCNAME = 5, kSOA = 6, kMX = 15, kTXT = 16, kAAAA = 28, kDNAME = 39, kDS = 43,
  kRRSIG = 46, kNSEC = 47, kDNSKEY = 48, kNSEC3 = 50, kTLSA = 52,
};
std::string RrTypeName(RrType t);

struct TlsaRecord {
  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t matching = 0;
  std::vector<uint8_t> data;
  std::string DataHex() const;
  std::string ToString() const;  // "3 1 1 ab12..."
  bool operator==(const TlsaRecord&) const = default;
};

struct DnsRecord {
  std::string owner;  // normal form (lowercase, no trailing dot)
  RrType type = RrType::kA;
  uint32_t ttl = 0;
  std::string text;        // A/AAAA: address; CNAME/DNAME: target (normal form); TXT: strings concatenated
  uint16_t preference = 0; // MX
  std::string exchange;    // MX: normal form; "" for the null MX target "."
  TlsaRecord tlsa;         // TLSA
};

struct DnsQuestion {
  std::string name;  // normal form
  RrType type = RrType::kA;
  bool operator==(const DnsQuestion&) const = default;
};

// --- Transport layer ---

enum class DnsRcode { kNoError, kNxDomain, kServFail, kRefused, kOther };

// The most records a reply may carry in its answer section, and in its
// authority section. Hostile servers can send thousands; mail routing and
// validation never need this many. A reply over the limit is refused
// whole (never read in part: the first N records of a section can say
// something the whole section does not).
inline constexpr size_t kMaxSectionRecords = 512;

struct DnsResponse {
  // false: timeout, network error, or a reply refused as unusable (over
  // kMaxSectionRecords); `error` says which.
  bool answered = false;
  DnsRcode rcode = DnsRcode::kOther;
  int rcode_value = 0;
  bool ad = false;
  bool tc = false;
  // The answer and the authority section: every IN record as parsed from
  // the wire, RRSIGs included, in wire order. These are the only copy of
  // the reply's records: resolver mode reads them through AnswerRecords(),
  // the local validator verifies RRsets taken from them and returns those
  // RRsets. Never null after ParseDnsReply; null in a response that was
  // not parsed (read as empty sections). Shared and immutable, so copying
  // a response stays cheap.
  std::shared_ptr<const RrList> answer_rrs;
  std::shared_ptr<const RrList> authority_rrs;
  std::string ede;                // RFC 8914 extended error, "7 (Signature Expired)", or ""
  std::string error;              // when !answered
  std::string server;             // which resolver answered
};

// The records of `list` in the form mail routing reads them, in order,
// RRSIGs left out.
std::vector<DnsRecord> DnsRecordsOf(const RrList& list);
// DnsRecordsOf the answer section of `r` (empty when there is none).
std::vector<DnsRecord> AnswerRecords(const DnsResponse& r);

class DnsTransport {
 public:
  virtual ~DnsTransport() = default;
  // Asks every question (recursion desired, EDNS0 DO=1; CD=1 when
  // `checking_disabled`) and returns one response per question, in order.
  // Must be safe to call from several threads at once.
  virtual std::vector<DnsResponse> QueryMany(const std::vector<DnsQuestion>& questions,
                                             bool checking_disabled) = 0;
};

struct DnsTransportOptions {
  std::vector<ResolverAddress> servers;
  int timeout_ms = 5000;  // per try
  int tries = 2;          // per server
};
std::unique_ptr<DnsTransport> NewLdnsTransport(const DnsTransportOptions& options);

// Parses a DNS reply in wire format for `question` (used by the transport
// and by tests with hostile packets). Records not belonging to the answer
// chain of the question are kept; Resolver filters them. A reply whose
// answer or authority section holds more than kMaxSectionRecords records
// is refused: not answered, with an error naming the section, its count
// and the limit (`mismatch` stays empty: it is the reply to the question).
DnsResponse ParseDnsReply(const uint8_t* wire, size_t len, const DnsQuestion& question, uint16_t expected_id,
                          std::string* mismatch);

// --- Resolver layer ---

enum class DnsOutcome {
  kRecords,   // records of the asked type at the end of the chain
  kNoData,    // name exists, no records of that type
  kNxDomain,  // name does not exist
  kFailure,   // SERVFAIL, REFUSED, timeout, malformed: unknown
};
const char* DnsOutcomeName(DnsOutcome o);

struct DnsAnswer {
  DnsQuestion question;
  DnsOutcome outcome = DnsOutcome::kFailure;
  DnssecStatus dnssec = DnssecStatus::kIndeterminate;
  std::vector<std::string> chain;   // CNAME targets followed, in order
  std::string final_name;           // question.name or the last CNAME target
  std::vector<DnsRecord> records;   // of question.type at final_name
  uint32_t ttl = 0;                 // minimum TTL of records
  std::string reason;               // for failures: "SERVFAIL from 127.0.0.1:53 (EDE 7 ...)", "timeout"
  // Local validation only: how the status of each hop was reached (zones
  // walked from the anchor, key tags), one line per hop; empty otherwise.
  std::vector<std::string> validation;
  bool failed() const { return outcome == DnsOutcome::kFailure; }
};

// --- Resolver self-check (resolver mode) ---
//
// A resolver that does not validate (validation switched off, a plain
// forwarder, a resolver without trust anchor) answers everything without
// AD: trusting its AD bit would quietly turn every DANE domain into
// "insecure". So resolver mode asks two names: one that must FAIL
// validation (`dnssec_probe`: a validating resolver answers SERVFAIL) and
// one that must validate (`dnssec_probe_secure`: a validating resolver
// sets AD). Data for the bogus name, or no AD on the secure one, proves
// the resolver does not validate. A check that cannot conclude (timeout,
// REFUSED, SERVFAIL for the secure name) proves nothing either way and is
// reported as inconclusive. The check catches misconfiguration, not a
// malicious resolver: a resolver on loopback is trusted by design.
enum class ResolverCheckStatus { kValidates, kNotValidating, kInconclusive };
const char* ResolverCheckStatusName(ResolverCheckStatus s);  // "validates", "not-validating", "inconclusive"

struct ResolverCheck {
  ResolverCheckStatus status = ResolverCheckStatus::kInconclusive;
  std::string summary;        // one sentence for output and logs
  std::string probe_name;     // the must-fail name ("" when not configured)
  std::string probe_result;   // what came back: "SERVFAIL", "NOERROR (1 record, no AD)", "timeout ..."
  bool probe_ok = false;      // the probe failed validation as it must
  std::string secure_name;    // the must-validate name ("" when not configured)
  std::string secure_result;
  bool secure_ok = false;     // the secure name came back with AD
  int64_t checked_at = 0;     // Unix time of the check
};

// Evaluates the replies to the two check questions (`probe` for A at
// `probe_name`, `secure` for SOA at `secure_name`; null when that name is
// not configured). Pure; exposed for tests.
ResolverCheck EvaluateResolverCheck(const std::string& resolver, const std::string& probe_name,
                                    const DnsResponse* probe, const std::string& secure_name,
                                    const DnsResponse* secure);

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Answers every question, CNAME chains and DNAMEs followed (at most 8 hops), one
  // answer per question in order. Thread-safe.
  virtual std::vector<DnsAnswer> LookupMany(const std::vector<DnsQuestion>& questions) = 0;
  DnsAnswer Lookup(const DnsQuestion& q) { return LookupMany({q}).front(); }
  // Whether the status of answers can be trusted for DANE at all, and if
  // not, why (e.g. the resolver is not on loopback).
  virtual bool dnssec_trusted() const = 0;
  virtual std::string dnssec_untrusted_reason() const = 0;
  // How statuses were obtained, for the policy output ("resolver 127.0.0.1:53 (AD bit)").
  virtual std::string describe() const = 0;
  // The DNSSEC mode of the answers: "resolver" (AD bit) or "local".
  virtual std::string dnssec_mode() const { return "resolver"; }
  // The last self-check of a validating resolver (resolver mode), or
  // nullopt when none was made (other modes, fakes).
  virtual std::optional<ResolverCheck> resolver_check() const { return std::nullopt; }
};

struct ResolverModeOptions {
  bool trust_ad = true;                 // false: all answers read as insecure
  std::string untrusted_reason;         // why trust_ad is false
  std::string description;
  std::string probe_name;               // self-check: must fail validation ("" = not asked)
  std::string secure_name;              // self-check: must validate ("" = not asked)
};

// The resolver-mode resolver: trusts the AD bit of the transport's replies
// as long as the resolver is not shown to ignore DNSSEC by its self-check.
class ResolverModeResolver : public Resolver {
 public:
  // Asks the check names (one round trip) and remembers the result; from
  // then on, while the resolver is known not to validate, dnssec_trusted()
  // is false, the untrusted reason says "resolver does not validate", and
  // answers carry status indeterminate (never insecure: we cannot know).
  // An inconclusive check after a negative one keeps the negative verdict.
  // Without any check name configured nothing is asked and nullopt is
  // returned. Thread-safe; `now` is the Unix time recorded in the result.
  virtual std::optional<ResolverCheck> RunSelfCheck(int64_t now) = 0;
};

// Does not take ownership of `transport`.
std::unique_ptr<ResolverModeResolver> NewResolverModeResolver(DnsTransport* transport,
                                                              const ResolverModeOptions& options);

// Classifies one transport response for `q` (the resolver-mode rules of
// dns.cc); `cd_retry` is the CD=1 response for a SERVFAIL, or null.
// The chain follows the CNAME at each name; where an answer has no CNAME
// but a DNAME at an ancestor of the name, the hop is synthesized from the
// DNAME (RFC 6672 §3.1), so a resolver that leaves the CNAME out cannot
// make a redirected name read as "no data". Exposed for tests.
DnsAnswer ClassifyResponse(const DnsQuestion& q, const DnsResponse& r, const DnsResponse* cd_retry, bool trust_ad);

// RFC 6672 §2.2: what a DNAME at `owner` pointing to `target` makes of
// `name` (all normal form, "" = the root): the suffix `owner` of `name`
// replaced by `target`. Fails when `name` is not strictly below `owner`
// (a DNAME does not redirect its own owner) or the result exceeds 255
// octets (a server answers YXDOMAIN then).
Result<std::string> DnameSubstitute(const std::string& name, const std::string& owner, const std::string& target);

}  // namespace mxsec
