// metrics.h - what `mxsec serve` counts, written in the Prometheus text
// exposition format (version 0.0.4) for `serve --metrics`.
//
// Names follow Prometheus's conventions: mxsec_serve_ prefix, counters end
// in _total, durations are in seconds. Every label takes values from a
// fixed set written here (never from client input), so the number of
// series is bounded. All functions are thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "mxsec/dns/dns.h"
#include "mxsec/policy/mta_sts_refresh.h"
#include "mxsec/policy/policy.h"
#include "mxsec/serve/socketmap.h"

namespace mxsec {

// The answers a decision can give Postfix, as the label answer="...":
// the TLS policy level of an OK answer (Postfix's TLS policy table), or
// "notfound", "temp".
enum class AnswerLabel { kDaneOnly, kDane, kEncrypt, kSecure, kVerify, kMay, kNone, kNotFound, kTemp, kOther };
inline constexpr size_t kAnswerLabels = 10;
AnswerLabel AnswerLabelOf(const SocketmapAnswer& answer);
const char* AnswerLabelName(AnswerLabel label);

// How a decision's MTA-STS policy was obtained (label outcome="..."):
// "fetched", "cached" (in force as published), or the StsProblem:
// "txt-unusable", "fetch-failed", "policy-invalid", "cache-fallback".
// Domains without MTA-STS are not counted.
enum class StsLookupOutcome { kFetched, kCached, kTxtUnusable, kFetchFailed, kPolicyInvalid, kCacheFallback };
inline constexpr size_t kStsLookupOutcomes = 6;
std::optional<StsLookupOutcome> StsLookupOutcomeOf(const DomainPolicy& policy);

// Upper bounds (seconds) of the lookup latency histogram's buckets.
inline constexpr std::array<double, 12> kLookupLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                 0.5,   1,    2.5,   5,    10,  20};

class ServeMetrics {
 public:
  // A request read from a client; answered from memory (hit), needing a
  // lookup (miss), or answered at once with no lookup (neither).
  void CountRequest() { requests_++; }
  void CountCacheHit() { cache_hits_++; }
  void CountCacheMiss() { cache_misses_++; }
  // Requests answered TEMP because their lookup took too long.
  void CountLookupTimeouts(size_t n) { lookup_timeouts_ += n; }
  // A decision made by a worker (for a client or a renewal).
  void CountLookup(const SocketmapAnswer& answer, const DomainPolicy& policy, double seconds);
  void CountStsRefresh(const StsRefreshReport& report);
  void SetResolverCheck(const ResolverCheck& check);
  void SetCacheEntries(size_t n) { cache_entries_ = n; }
  // Whether the shared state store answered last (nullopt: none configured,
  // and the gauge is not written).
  void SetStateStoreUp(std::optional<bool> up) { state_store_up_ = up ? (*up ? 1 : 0) : -1; }
  void CountAccepted() { accepted_++; open_++; }
  void CountClosed() { open_--; }
  void CountRejected() { rejected_++; }
  void CountMalformed() { malformed_++; }
  void CountReload(bool ok) { (ok ? reloads_ok_ : reloads_failed_)++; }

  // Every metric, in the text exposition format (one HELP and TYPE line
  // per metric; each line ends in "\n").
  std::string Exposition() const;

 private:
  std::atomic<uint64_t> requests_{0}, cache_hits_{0}, cache_misses_{0}, lookup_timeouts_{0};
  std::atomic<uint64_t> cache_entries_{0}, accepted_{0}, open_{0}, rejected_{0}, malformed_{0};
  std::atomic<uint64_t> reloads_ok_{0}, reloads_failed_{0};
  std::atomic<int> state_store_up_{-1};  // -1: no shared state store
  mutable std::mutex mu_;  // the rest
  std::array<uint64_t, kAnswerLabels> lookups_{};
  std::array<uint64_t, kLookupLatencyBuckets.size()> latency_buckets_{};  // not cumulative
  uint64_t latency_count_ = 0;
  double latency_sum_ = 0;
  std::array<uint64_t, kStsLookupOutcomes> sts_lookups_{};
  uint64_t local_rule_lookups_ = 0, overrides_ = 0;
  uint64_t sts_refresh_runs_ = 0, sts_refreshed_ = 0, sts_refresh_failed_ = 0;
  std::optional<ResolverCheckStatus> resolver_status_;
  uint64_t resolver_checks_ = 0;
};

}  // namespace mxsec
