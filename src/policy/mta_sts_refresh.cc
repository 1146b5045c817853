// mta_sts_refresh.cc - proactive refresh of cached MTA-STS policies
// (RFC 8461 §3.3, §10.2); what it promises is in mta_sts_refresh.h.
#include "mxsec/policy/mta_sts_refresh.h"

#include <algorithm>
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
  std::vector<CachedStsPolicy>& entries = due.value();
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
  std::vector<std::string> ids(entries.size());
  std::vector<StsFetchRequest> requests;
  std::vector<size_t> request_of;  // requests[k] is for entries[request_of[k]]
  for (size_t i = 0; i < entries.size(); ++i) {
    StsRefreshOutcome& out = report.domains[i];
    out.domain = entries[i].domain;
    const DnsAnswer& txt = answers[3 * i];
    if (txt.failed()) {
      out.error = "_mta-sts TXT lookup failed: " + txt.reason;
      continue;
    }
    std::vector<std::string> texts;
    for (const DnsRecord& r : txt.records) texts.push_back(r.text);
    // Without a record there is nothing to refresh from; the cached policy
    // keeps applying until it expires (RFC 8461 §5.1), as at delivery.
    Result<StsTxt> parsed = ParseStsTxt(texts);
    if (!parsed.ok()) {
      out.error = "_mta-sts TXT: " + parsed.error();
      continue;
    }
    ids[i] = parsed->id;
    StsFetchRequest req;
    req.domain = entries[i].domain;
    for (size_t k = 3 * i + 1; k <= 3 * i + 2; ++k) {
      for (const DnsRecord& r : answers[k].records) req.addresses.push_back(r.text);
    }
    if (req.addresses.empty()) {
      const DnsAnswer& a = answers[3 * i + 1];
      out.error = "no address for mta-sts." + entries[i].domain + " (" +
                  (a.failed() ? a.reason : std::string(DnsOutcomeName(a.outcome))) + ")";
      continue;
    }
    if (fetcher == nullptr) {
      out.error = "no HTTPS fetcher available";
      continue;
    }
    requests.push_back(std::move(req));
    request_of.push_back(i);
  }

  std::vector<StsFetchResult> fetched;
  if (!requests.empty()) fetched = fetcher->FetchMany(requests);
  // The fetch may have taken a while: the new max_age counts from its end,
  // never from before the policy was seen.
  const int64_t fetched_at = clock->Now();
  for (size_t k = 0; k < request_of.size(); ++k) {
    const size_t i = request_of[k];
    StsRefreshOutcome& out = report.domains[i];
    if (k >= fetched.size() || !fetched[k].ok) {
      out.error = "policy fetch failed: " + (k < fetched.size() ? fetched[k].error : std::string("no result"));
      continue;
    }
    Result<StsPolicy> policy = ParseStsPolicy(fetched[k].body);
    if (!policy.ok()) {
      out.error = "invalid policy: " + policy.error();
      continue;
    }
    CachedStsPolicy fresh;
    fresh.domain = entries[i].domain;
    fresh.id = ids[i];
    fresh.text = fetched[k].body;
    fresh.policy = policy.value();
    fresh.fetched_at = fetched_at;
    fresh.expires_at = fetched_at + policy->max_age;
    Status put = cache->Put(fresh);
    if (!put.ok()) {
      out.error = "cache not updated: " + put.message();
      continue;
    }
    out.refreshed = true;
    out.id = fresh.id;
    out.expires_at = fresh.expires_at;
  }

  for (size_t i = 0; i < entries.size(); ++i) {
    StsRefreshOutcome& out = report.domains[i];
    if (out.refreshed) continue;
    CachedStsPolicy state = entries[i];
    state.refresh_failures = std::min(state.refresh_failures, 1 << 20) + 1;
    state.refresh_last = now;
    state.refresh_next = now + StsRefreshBackoff(options, state.refresh_failures);
    state.refresh_error = out.error;
    out.expires_at = state.expires_at;
    out.next_attempt = state.refresh_next;
    Status s = cache->RecordRefreshFailure(state);
    if (!s.ok()) out.error += "; back-off not recorded: " + s.message();
  }
  return report;
}

}  // namespace mxsec
