// mta_sts.h - MTA-STS (RFC 8461): the _mta-sts TXT record, the policy file,
// MX pattern matching, the HTTPS fetch and the persistent policy cache.
//
// Everything a remote party sends here (TXT strings, HTTP bodies, headers)
// is hostile input: parsers are strict, bounded, and return an error naming
// what was wrong instead of guessing. Orchestration (when to fetch, when a
// cached policy still applies) lives in the policy decision
// (policy_decision.h); this module provides the pieces and promises:
//   - ParseStsTxt / ParseStsPolicy never crash and never accept a record or
//     policy the RFC grammar rejects (documented strictness: duplicate
//     version/mode/max_age keys, max_age > 31557600, control bytes are errors);
//   - StsMxMatches compares exactly as RFC 8461 §4.1 says (a wildcard covers
//     one left-most label, never more, never zero);
//   - the fetcher (a GET through the hardened client of https_client.h)
//     never follows a redirect, accepts only HTTP 200 with media type
//     text/plain, caps the body at kStsMaxPolicyBytes, verifies the
//     certificate for mta-sts.<domain>, connects only to the addresses it
//     was given (at most kHttpsMaxAddresses of them) and ends within
//     total_timeout_ms;
//   - the cache is safe to share between processes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/base/status.h"

namespace mxsec {

struct DnsAnswer;  // mxsec/dns/dns.h

inline constexpr int64_t kStsMaxAge = 31557600;       // RFC 8461 §3.2
inline constexpr size_t kStsMaxPolicyBytes = 65536;   // 64 KiB

// --- TXT record (RFC 8461 §3.1) ---
struct StsTxt {
  std::string id;  // 1-32 of [A-Za-z0-9]
};

// `records` holds one element per TXT RR, the RR's character-strings already
// concatenated. RRs that do not start with "v=STSv1" are ignored; exactly one
// must remain and parse, else an error: kNotFound when none remains ("no
// v=STSv1 TXT record": the domain publishes no policy), kInvalid otherwise
// ("2 v=STSv1 TXT records", "TXT record: id missing", ...).
Result<StsTxt> ParseStsTxt(const std::vector<std::string>& records);

// The answer to the _mta-sts.<domain> TXT question read as above, the
// message prefixed "_mta-sts TXT: ": kNotFound also when the name has no TXT
// records (NODATA, NXDOMAIN); kUnavailable ("_mta-sts TXT lookup failed:
// ...") when the lookup failed, which says nothing about the policy.
Result<StsTxt> ReadStsTxtAnswer(const DnsAnswer& txt);

// --- Policy file (RFC 8461 §3.2) ---
enum class StsMode { kEnforce, kTesting, kNone };
const char* StsModeName(StsMode mode);  // "enforce", "testing", "none"

struct StsPolicy {
  StsMode mode = StsMode::kNone;
  int64_t max_age = 0;                  // seconds, 0..kStsMaxAge
  std::vector<std::string> mx;          // patterns as written, lowercased
};

// Parses a policy body. Accepts CRLF or LF line endings (the last line's
// terminator optional); rejects: missing/duplicate version, mode or max_age,
// unknown mode, non-numeric/negative/too large max_age, mx missing when mode
// is enforce or testing, invalid mx pattern, NUL or other control bytes, a
// UTF-8 BOM, lines longer than 1000 octets, bodies over kStsMaxPolicyBytes.
// Unknown keys that follow the extension grammar are ignored.
// Errors name the line: "policy line 4: duplicate key \"mode\"", and all
// have the code kInvalid.
Result<StsPolicy> ParseStsPolicy(std::string_view body);

// RFC 8461 §4.1: `host` is the MX exchange name (no CNAME expansion), with or
// without a trailing dot, any case. "*.example.com" matches "a.example.com"
// only (exactly one label more). Patterns are compared case-insensitively.
bool StsMxMatches(std::string_view pattern, std::string_view host);
bool StsPolicyMatches(const StsPolicy& policy, std::string_view host);

// --- HTTPS fetch (RFC 8461 §3.3) ---
struct StsFetchRequest {
  std::string domain;                  // the recipient domain D (no trailing dot)
  std::vector<std::string> addresses;  // addresses of mta-sts.D from our own DNS; tried in order
};

struct StsFetchResult {
  bool ok = false;
  std::string body;   // when ok: the policy body, at most kStsMaxPolicyBytes
  std::string error;  // when !ok: "HTTP status 404", "redirect refused (301)",
                      // "content type text/html, want text/plain",
                      // "policy larger than 65536 bytes", "TLS: certificate ...", ...
};

struct StsFetchOptions {
  std::string ca_file;          // empty: the system trust store
  long connect_timeout_ms = 10000;
  long total_timeout_ms = 60000;
  uint16_t port = 443;          // test beds only
};

// The request for `domain`'s policy with the addresses of mta-sts.<domain>
// from its A and AAAA answers; kNotFound ("no address for mta-sts.<domain>
// (NXDOMAIN)") when neither has one.
Result<StsFetchRequest> StsFetchRequestFor(const std::string& domain, const DnsAnswer& a, const DnsAnswer& aaaa);

// A fetch's outcome as RFC 8460 §4.3 tells them apart: the policy, or
// kInvalid ("invalid policy: policy line 2: ...") when the body does not
// parse (sts-policy-invalid), or kUnavailable with the fetcher's error when
// there was no body (sts-policy-fetch-error).
Result<StsPolicy> ReadFetchedStsPolicy(const StsFetchResult& fetched);

class StsFetcher {
 public:
  virtual ~StsFetcher() = default;
  // Fetches https://mta-sts.<domain>/.well-known/mta-sts.txt for every
  // request concurrently; result i belongs to request i.
  virtual std::vector<StsFetchResult> FetchMany(const std::vector<StsFetchRequest>& requests) = 0;
};

// libcurl (GnuTLS build) implementation. libcurl is loaded and
// initialised by the first fetch, from any thread (https_client.h);
// InitCurlOnce() does it at once, for a caller that wants it done early.
std::unique_ptr<StsFetcher> NewCurlStsFetcher(const StsFetchOptions& options);
void InitCurlOnce();

// --- Cache (RFC 8461 §3.3, §5) ---
struct CachedStsPolicy {
  std::string domain;      // lowercase, no trailing dot
  std::string id;          // TXT id the policy was fetched under
  std::string text;        // the policy body as fetched
  StsPolicy policy;        // parsed form of text
  int64_t fetched_at = 0;  // unix seconds
  int64_t expires_at = 0;  // fetched_at + policy.max_age (the cache sets it so on Put and Lookup)
  // Proactive refresh (mta_sts_refresh.h) since the last successful fetch;
  // Put stores them as given (a fresh entry: all zero, empty).
  int refresh_failures = 0;     // failed refresh attempts in a row
  int64_t refresh_last = 0;     // unix seconds of the last failed attempt, 0: none
  int64_t refresh_next = 0;     // no refresh attempt before this time (back-off)
  std::string refresh_error;    // why the last attempt failed
  // The host that fetched it, as the shared store of a fleet records it
  // (mta_sts_cache_pg.h; Put writes this field there, or this host's name
  // when it is empty); the other caches keep what Put was given (a host's
  // local copy: the name the shared store gave it), "" when none.
  std::string fetched_by;
};

// The mark a removal (StsCache::Remove) leaves in a cache: the policy of
// `domain` was removed at `removed_at` (unix seconds) by `removed_by` (a
// host of a fleet; "" when removed by a cache of this host alone). It
// reads as no policy. It is kept, in the place of the removed policy, so
// that a fleet's layered cache (mta_sts_cache_pg.h) tells a policy removed
// from one never stored, and does not put back a copy older than the
// removal.
struct StsRemoval {
  std::string domain;
  int64_t removed_at = 0;
  std::string removed_by;
};

// What a cache holds for a domain: a policy, the mark of its removal, or
// neither (never both).
struct StsCacheSlot {
  std::optional<CachedStsPolicy> policy;
  std::optional<StsRemoval> removal;
};

// The cache entry for a policy fetched at `fetched_at` under the TXT id
// `id`: it expires max_age seconds later (RFC 8461 §3.3).
CachedStsPolicy NewCachedStsPolicy(const std::string& domain, const std::string& id, const std::string& text,
                                   const StsPolicy& policy, int64_t fetched_at);

// The key every cache files `domain` under (memory, SQLite, PostgreSQL, so
// that a layered cache's two stores agree): lowercase ASCII, no trailing dot.
std::string StsCacheKey(std::string domain);

class StsCache {
 public:
  virtual ~StsCache() = default;
  // The cached policy for `domain` whether or not it has expired (the caller
  // compares expires_at with its clock); nullopt when there is none or the
  // stored row no longer parses (only corruption can cause that: Put refuses
  // text that does not parse). An error when the store cannot be read (a
  // lock held past the busy timeout, an I/O error): the caller must not
  // take that for "no policy", or a broken disk would be a downgrade.
  virtual Result<std::optional<CachedStsPolicy>> Lookup(const std::string& domain) = 0;
  // Lookup with read errors folded into nullopt, for tests and tools.
  std::optional<CachedStsPolicy> Get(const std::string& domain) {
    auto r = Lookup(domain);
    return r.ok() ? r.value() : std::nullopt;
  }
  // Lookup, with the mark of a removal where there is no policy because it
  // was removed. A cache that keeps no such marks answers as Lookup does.
  virtual Result<StsCacheSlot> Read(const std::string& domain) {
    Result<std::optional<CachedStsPolicy>> found = Lookup(domain);
    if (!found.ok()) return found.status();
    StsCacheSlot slot;
    slot.policy = std::move(found).value();
    return slot;
  }
  // Inserts or replaces the policy of entry.domain, or the mark of its
  // removal (the shared store of a fleet: only with a later fetch).
  virtual Status Put(const CachedStsPolicy& entry) = 0;
  // Removes the entry (used when a domain's policy is withdrawn) and leaves
  // the mark of the removal (StsRemoval), dated now, or at the time of what
  // it removes when that is later (a clock behind the fetching host's): a
  // removal is the latest event of its domain, whatever the clocks say.
  // Absent is ok (the mark is left all the same).
  virtual Status Remove(const std::string& domain) = 0;
  // Stores `removal` as it is dated, unless the cache holds a later event
  // of its domain: a policy fetched after removed_at, or a removal after
  // it. A removal and a fetch in the same second: the removal wins, as
  // Remove's would. (A cache that keeps no such marks says so.)
  virtual Status RecordRemoval(const StsRemoval& /*removal*/) {
    return Status::Error("this MTA-STS cache cannot record removals");
  }
  // At most `limit` unexpired entries (expires_at > now) that are due for a
  // proactive refresh: fetched at least min(refresh_age, 3/4 of their
  // max_age) ago and not backing off (refresh_next <= now); the soonest to
  // expire first.
  // (A cache without refresh support, such as a test double, says so.)
  virtual Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t /*now*/, int64_t /*refresh_age*/,
                                                                 size_t /*limit*/) {
    return Status::Error("this MTA-STS cache cannot list policies to refresh");
  }
  // Records a failed refresh of `domain` (the refresh_* fields of `state`),
  // unless the entry was replaced since `state` was read (its fetched_at
  // differs): then a newer fetch has succeeded and there is nothing to
  // back off from.
  virtual Status RecordRefreshFailure(const CachedStsPolicy& /*state*/) {
    return Status::Error("this MTA-STS cache cannot record refresh failures");
  }
};

// SQLite file at `path` (created with its table if missing), WAL mode and a
// busy timeout so that many mxsec processes can share it; writes are atomic.
Result<std::unique_ptr<StsCache>> OpenSqliteStsCache(const std::string& path);
// In-memory cache for tests and for runs without a state directory.
std::unique_ptr<StsCache> NewMemoryStsCache();

}  // namespace mxsec
