// mta_sts_refresh.cc - proactive refresh of cached MTA-STS policies
// (RFC 8461 §3.3, §10.2); what it promises is in mta_sts_refresh.h.
#include "mxsec/policy/mta_sts_refresh.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace mxsec {

int64_t StsRefreshBackoff(const StsRefreshOptions& options, int failures) {
  const int64_t lo = std::max<int64_t>(1, options.backoff_min);
  const int64_t hi = std::max(lo, options.backoff_max);
  int64_t delay = lo;
  // Doubling stops at the cap, so the loop is short and cannot overflow.
  for (int i = 1; i < failures && delay < hi; ++i) delay *= 2;
  return std::min(delay, hi);
}

namespace {

// One due entry on its way through the run.
struct RefreshAttempt {
  const CachedStsPolicy* entry = nullptr;
  StsRefreshOutcome* out = nullptr;
  std::string id;  // the id the TXT record names now
  std::optional<StsFetchRequest> request;  // set when the policy is to be fetched
};

// What the TXT record and the policy host's addresses (answers[0..2]: TXT,
// A, AAAA) allow: a request, or out->error saying why not.
void PrepareFetch(const DnsAnswer* answers, bool have_fetcher, RefreshAttempt* attempt) {
  const std::string& domain = attempt->entry->domain;
  // Without a record there is nothing to refresh from; the cached policy
  // keeps applying until it expires (RFC 8461 §5.1), as at delivery.
  Result<StsTxt> txt = ReadStsTxtAnswer(answers[0]);
  if (!txt.ok()) {
    attempt->out->error = txt.error();
    return;
  }
  attempt->id = txt->id;
  Result<StsFetchRequest> request = StsFetchRequestFor(domain, answers[1], answers[2]);
  if (!request.ok()) {
    attempt->out->error = request.error();
  } else if (!have_fetcher) {
    attempt->out->error = "no HTTPS fetcher available";
  } else {
    attempt->request = std::move(request.value());
  }
}

// Stores a fetched policy under the id the TXT record names now.
void StoreFetched(const StsFetchResult* fetched, int64_t fetched_at, StsCache* cache, RefreshAttempt* attempt) {
  StsRefreshOutcome& out = *attempt->out;
  if (fetched == nullptr) {
    out.error = "policy fetch failed: no result";
    return;
  }
  Result<StsPolicy> policy = ReadFetchedStsPolicy(*fetched);
  if (!policy.ok()) {
    out.error = policy.status().IsInvalid() ? policy.error() : "policy fetch failed: " + policy.error();
    return;
  }
  CachedStsPolicy fresh =
      NewCachedStsPolicy(attempt->entry->domain, attempt->id, fetched->body, policy.value(), fetched_at);
  Status put = cache->Put(fresh);
  if (!put.ok()) {
    out.error = "cache not updated: " + put.message();
    return;
  }
  out.refreshed = true;
  out.id = fresh.id;
  out.expires_at = fresh.expires_at;
}

// A failed refresh leaves the policy as it was and puts the next attempt off.
void RecordFailure(const CachedStsPolicy& entry, int64_t now, const StsRefreshOptions& options, StsCache* cache,
                   StsRefreshOutcome* out) {
  CachedStsPolicy state = entry;
  state.refresh_failures = std::min(state.refresh_failures, 1 << 20) + 1;
  state.refresh_last = now;
  state.refresh_next = now + StsRefreshBackoff(options, state.refresh_failures);
  state.refresh_error = out->error;
  out->expires_at = state.expires_at;
  out->next_attempt = state.refresh_next;
  Status s = cache->RecordRefreshFailure(state);
  if (!s.ok()) out->error += "; back-off not recorded: " + s.message();
}

}  // namespace

StsRefreshReport RefreshStsPolicies(Resolver* resolver, StsFetcher* fetcher, StsCache* cache, Clock* clock,
                                    const StsRefreshOptions& options) {
  StsRefreshReport report;
  if (cache == nullptr || options.max_domains == 0) return report;
  const int64_t now = clock->Now();
  auto due = cache->RefreshCandidates(now, options.refresh_age, options.max_domains);
  if (!due.ok()) {
    report.error = due.error();
    return report;
  }
  const std::vector<CachedStsPolicy>& entries = due.value();
  if (entries.empty()) return report;

  // One batch of DNS questions for every domain: TXT, A, AAAA.
  std::vector<DnsQuestion> questions;
  for (const CachedStsPolicy& e : entries) {
    questions.push_back({"_mta-sts." + e.domain, RrType::kTXT});
    questions.push_back({"mta-sts." + e.domain, RrType::kA});
    questions.push_back({"mta-sts." + e.domain, RrType::kAAAA});
  }
  std::vector<DnsAnswer> answers = resolver->LookupMany(questions);

  report.domains.resize(entries.size());
  std::vector<RefreshAttempt> attempts(entries.size());
  std::vector<StsFetchRequest> requests;
  std::vector<RefreshAttempt*> fetching;  // requests[k] is for *fetching[k]
  for (size_t i = 0; i < entries.size(); ++i) {
    RefreshAttempt& attempt = attempts[i];
    attempt.entry = &entries[i];
    attempt.out = &report.domains[i];
    attempt.out->domain = entries[i].domain;
    PrepareFetch(&answers[3 * i], fetcher != nullptr, &attempt);
    if (!attempt.request) continue;
    requests.push_back(*attempt.request);
    fetching.push_back(&attempt);
  }

  std::vector<StsFetchResult> fetched;
  if (!requests.empty()) fetched = fetcher->FetchMany(requests);
  // The fetch may have taken a while: the new max_age counts from its end,
  // never from before the policy was seen.
  const int64_t fetched_at = clock->Now();
  for (size_t k = 0; k < fetching.size(); ++k) {
    StoreFetched(k < fetched.size() ? &fetched[k] : nullptr, fetched_at, cache, fetching[k]);
  }

  for (RefreshAttempt& attempt : attempts) {
    if (!attempt.out->refreshed) RecordFailure(*attempt.entry, now, options, cache, attempt.out);
  }
  return report;
}

}  // namespace mxsec
