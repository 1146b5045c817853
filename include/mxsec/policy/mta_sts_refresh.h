// mta_sts_refresh.h - proactive refresh of cached MTA-STS policies.
//
// RFC 8461 §3.3: "to mitigate the risk of persistent interference with
// policy refresh, as discussed in-depth in Section 10, MTAs SHOULD
// proactively refresh cached policies before they expire; a suggested
// refresh frequency is once per day." Without it, a policy is fetched again
// only by a delivery after it expired, and an attacker who blocks that one
// fetch (§10.2) makes the domain opportunistic: §3.3 then has the sender
// continue "as though the domain has not implemented MTA-STS".
//
// RefreshStsPolicies walks the cache and, for every unexpired policy that is
// due (fetched at least min(refresh_age, 3/4 of its max_age) ago; see
// StsCache::RefreshCandidates), looks up the _mta-sts TXT record and the
// policy host's addresses and fetches the policy again, whether or not the
// id changed: a successful fetch restarts max_age (§3.3) and replaces the
// entry under the id the TXT record names now. It promises:
//   - a failed refresh (TXT lookup failure or no record, no address, fetch
//     or parse failure) never removes or weakens the cached policy: the
//     entry stays as it was, with the failure recorded and the next attempt
//     put off by a back-off that doubles from backoff_min up to
//     backoff_max;
//   - one run touches at most max_domains entries (the soonest to expire
//     first), with one batch of DNS questions and one concurrent fetch
//     (bounded by the fetcher's own deadline), so its cost does not grow
//     with the size of the cache.
// The edge that remains: a policy whose every refresh fails from the time it
// becomes due until it expires lapses at expiry, as §3.3 and §5.1 require
// (no policy is applied that is not valid); with the default refresh age of
// a day and a policy max_age of weeks, that takes weeks of blocking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/mta_sts.h"

namespace mxsec {

struct StsRefreshOptions {
  int64_t refresh_age = 86400;   // refresh a policy this old (or at 3/4 of its max_age, if sooner); RFC 8461 §3.3
  int64_t backoff_min = 300;     // seconds before the first retry after a failure
  int64_t backoff_max = 21600;   // the back-off doubles per failure up to this
  size_t max_domains = 100;      // entries refreshed per run
};

struct StsRefreshOutcome {
  std::string domain;
  bool refreshed = false;
  std::string id;                // refreshed: the id now cached
  int64_t expires_at = 0;        // refreshed: new expiry; failed: the kept policy's expiry
  std::string error;             // failed: why
  int64_t next_attempt = 0;      // failed: no retry before this time
};

struct StsRefreshReport {
  std::vector<StsRefreshOutcome> domains;  // one per entry attempted, in cache order
  std::string error;                       // the cache could not be read (nothing attempted)
  size_t failed() const {
    size_t n = 0;
    for (const auto& d : domains) n += !d.refreshed;
    return n;
  }
};

// The delay before retry number `failures` (1 = after the first failure):
// backoff_min * 2^(failures-1), at most backoff_max.
int64_t StsRefreshBackoff(const StsRefreshOptions& options, int failures);

// One refresh run over `cache` at clock->Now(). `fetcher` may be null (every
// due domain then fails with a reason and backs off).
StsRefreshReport RefreshStsPolicies(Resolver* resolver, StsFetcher* fetcher, StsCache* cache, Clock* clock,
                                    const StsRefreshOptions& options);

}  // namespace mxsec
