// policy_decision_sts.cc - the MTA-STS part of DecidePolicy
// (policy_decision.h): which policy is in force (RFC 8461 §3.3, §5.1),
// what an unreadable cache means, and what the policy does to the hosts
// DANE left opportunistic (RFC 8461 §4, §5). DANE wins where it applies
// (RFC 8461 §2), so only hosts with tls may are touched here.
#include "policy_decision_internal.h"

namespace mxsec::decision {
namespace {

const CachedStsPolicy* UnexpiredCache(const StsFacts& sts, int64_t now) {
  return sts.cached && sts.cached->expires_at > now ? &*sts.cached : nullptr;
}

StsState StateOf(const CachedStsPolicy& entry, const std::string& source) {
  StsState s;
  s.mode = entry.policy.mode;
  s.id = entry.id;
  s.max_age = entry.policy.max_age;
  s.mx = entry.policy.mx;
  s.source = source;
  s.expires_at = entry.expires_at;
  return s;
}

// The cached policy, with why it stands in for what the domain publishes
// (empty: it is what the domain publishes).
StsState FromCache(const CachedStsPolicy& cached, const std::string& why) {
  StsState s = StateOf(cached, "cache");
  if (!why.empty()) {
    s.error = why;
    s.problem = StsProblem::kCacheFallback;
  }
  return s;
}

// No policy in force; shown so that the administrator sees why.
StsState NoPolicy(const std::string& id, const std::string& why, StsProblem problem) {
  StsState s;
  s.mode = StsMode::kNone;
  s.id = id;
  s.source = "fetched";
  s.error = why;
  s.problem = problem;
  return s;
}

// After a fetch: the fresh policy; else an unexpired cached one (RFC 8461
// §5.1); else none, for the reason RFC 8460 reports.
StsState AfterFetch(const StsFetchFacts& fetch, const std::string& txt_id, const CachedStsPolicy* valid) {
  if (fetch.status.ok() && fetch.policy) return StateOf(*fetch.policy, "fetched");
  const std::string& why = fetch.status.message();
  if (valid) return FromCache(*valid, "policy fetch failed, cached policy (id " + valid->id + ") still applies: " + why);
  return NoPolicy(txt_id, "policy fetch failed: " + why,
                  fetch.status.IsInvalid() ? StsProblem::kPolicyInvalid : StsProblem::kFetchFailed);
}

// The policy in force, or none.
std::optional<StsState> PolicyInForce(const StsFacts& sts, int64_t now) {
  const Result<StsTxt> txt = ReadStsTxtAnswer(sts.txt);
  const CachedStsPolicy* valid = UnexpiredCache(sts, now);
  if (sts.fetch) return AfterFetch(*sts.fetch, txt.ok() ? txt->id : std::string(), valid);
  if (valid && txt.ok()) return FromCache(*valid, "");
  // TXT gone, invalid, or DNS failure: an unexpired policy keeps applying
  // (RFC 8461 §5.1), else a downgrade would be one DNS answer away.
  if (valid) {
    return FromCache(*valid, txt.status().IsNotFound() ? "no _mta-sts TXT record; cached policy still applies"
                                                       : txt.error() + "; cached policy still applies");
  }
  if (!txt.ok() && !txt.status().IsNotFound()) return NoPolicy("", txt.error(), StsProblem::kTxtUnusable);
  return std::nullopt;
}

// A cache we cannot read may hold an enforce policy that the current
// DNS/HTTPS answers no longer show (the very situation an attacker
// creates). Without a freshly fetched policy, hosts not protected by DANE
// are not used until the cache is readable again. Returns the cache's
// error when the rule applied.
std::optional<std::string> KeepOutWhileCacheUnreadable(const StsFacts& sts, const std::optional<StsState>& state,
                                                       std::vector<HostDecision>* hosts) {
  if (sts.cache_read.ok()) return std::nullopt;
  if (state && state->source == "fetched" && !state->error) return std::nullopt;
  const std::string& error = sts.cache_read.message();
  for (HostDecision& h : *hosts) {
    MxPolicy& m = h.policy;
    if (m.tls != HostTls::kMay) continue;
    m.tls = HostTls::kSkip;
    m.reason += "; MTA-STS policy cache unreadable (" + error + "): not used until it can be checked";
  }
  return error;
}

// RFC 8461 §4, §5: in enforce mode a listed host needs a certificate valid
// for its name and an unlisted one is not used; testing changes nothing on
// the wire.
void ApplyPolicy(const StsState& state, const std::string& domain, std::vector<HostDecision>* hosts) {
  StsPolicy policy;
  policy.mode = state.mode;
  policy.mx = state.mx;
  for (HostDecision& h : *hosts) {
    MxPolicy& m = h.policy;
    if (m.tls != HostTls::kMay) continue;  // DANE decided, or not usable
    const bool match = StsPolicyMatches(policy, m.host);
    if (state.mode != StsMode::kEnforce) {
      m.reason += match ? "; MTA-STS testing: TLS failures would only be reported"
                        : "; MTA-STS testing: host not listed in the policy (only reported)";
    } else if (match) {
      m.tls = HostTls::kPkix;
      m.reason += "; MTA-STS enforce (id " + state.id + "): TLS with a certificate valid for " + m.host;
    } else {
      m.tls = HostTls::kSkip;
      m.reason += "; not listed in the MTA-STS policy of " + domain + " (mode enforce): not used";
    }
  }
}

}  // namespace

std::optional<std::string> ApplyMtaSts(const StsFacts& sts, int64_t now, std::vector<HostDecision>* hosts,
                                       DomainPolicy* p) {
  if (sts.fetch && sts.fetch->policy && !sts.fetch->cache_update.ok()) {
    p->notes.push_back("MTA-STS cache not updated: " + sts.fetch->cache_update.message());
  }
  p->mta_sts = PolicyInForce(sts, now);
  std::optional<std::string> unreadable_cache = KeepOutWhileCacheUnreadable(sts, p->mta_sts, hosts);
  if (p->mta_sts && p->mta_sts->mode != StsMode::kNone) ApplyPolicy(*p->mta_sts, p->domain, hosts);
  return unreadable_cache;
}

}  // namespace mxsec::decision
