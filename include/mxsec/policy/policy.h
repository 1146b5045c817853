// policy.h - the per-domain TLS decision (man/mxsec.8, POLICY).
//
// Given a destination domain, the engine looks up its MX hosts, their
// addresses, TLSA records (DANE, RFC 7672) and MTA-STS policy (RFC 8461),
// and decides for every MX host how it may be used (the lookups are the
// engine's; the decision is DecidePolicy of policy_decision.h, a pure
// function of what they learned):
//   dane     TLS required, authenticated by the TLSA records
//   encrypt  TLS required, not authenticated (secure but unusable TLSA)
//   pkix     TLS required, certificate valid for the MX name (MTA-STS enforce)
//   may      opportunistic: STARTTLS when offered, plaintext otherwise
//   skip     do not use this host now (DNS failure, not in the MTA-STS
//            policy, no address)
// and for the domain: must-tls (every usable host requires TLS),
// opportunistic, defer (no host usable now) or fail (null MX, nonexistent
// domain, no host with an address).
//
// Security promises:
//   - a DNS failure is never read as "no DANE": a bogus or indeterminate MX
//     answer defers the domain, a bogus or indeterminate TLSA answer takes
//     that host out of use (RFC 7672 §2.1.1, §2.2.3);
//   - DANE is considered only when the MX RRset and the host's address
//     records are secure and the resolver's AD bit is trusted;
//   - DANE wins over MTA-STS for a host where it applies (RFC 8461 §2);
//   - an unexpired cached MTA-STS policy keeps being enforced when the
//     policy cannot be fetched or the TXT record disappears (RFC 8461 §5).
//   - a rule of the local policy table (local_policy.h) decides every MX
//     host with an address of its domain: dane-only keeps DANE hosts and
//     skips the others (mechanism dane), verify makes every host pkix (to
//     the rule's match= names when given) and encrypt every host encrypt
//     (mechanism local, must-tls), may every host may (mechanism none).
//     The lookups still run (not MTA-STS for dane-only) so that the reason,
//     which always names local_policy_file FILE:LINE, can say what the rule
//     overrides; a rule that weakens a DANE or MTA-STS demand says so in
//     `override_warning` for the caller to log at warning level.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/policy/mta_sts.h"
#include "mxsec/policy/mta_sts_refresh.h"
#include "mxsec/policy/verdict.h"

namespace mxsec {

struct MxPolicy {
  std::string host;                    // MX exchange name, normal form
  uint16_t preference = 0;
  DnssecStatus dnssec = DnssecStatus::kIndeterminate;  // of the address records
  std::vector<std::string> addresses;
  std::vector<std::string> cname_chain;  // CNAMEs followed for the address lookup
  HostTls tls = HostTls::kSkip;
  std::vector<TlsaRecord> tlsa;        // all records of the RRset that decided (usable first)
  std::string tlsa_base;               // name under _25._tcp. that carried the TLSA RRset
  DnssecStatus tlsa_dnssec = DnssecStatus::kIndeterminate;
  bool tlsa_looked_up = false;
  std::vector<std::string> pkix_names; // pkix by a local verify rule with match=: accepted names (else: host)
  std::string reason;
};

// What kept the MTA-STS policy in force from being the one the domain
// publishes now; StsState::error says it in words, set exactly when this is
// not kNone. Callers branch on this (a TLS report's result type, RFC 8460
// §4.3), never on the words.
enum class StsProblem {
  kNone,           // what is in force is what the domain publishes
  kTxtUnusable,    // the _mta-sts TXT record is malformed or ambiguous, or its lookup failed: no policy
  kFetchFailed,    // a published policy (TXT id) could not be fetched: no policy (sts-policy-fetch-error)
  kPolicyInvalid,  // a published policy was fetched and does not parse: no policy (sts-policy-invalid)
  kCacheFallback,  // the TXT record or the fetch failed: the unexpired cached policy applies (RFC 8461 §5.1)
};

struct StsState {
  StsMode mode = StsMode::kNone;
  std::string id;
  int64_t max_age = 0;
  std::vector<std::string> mx;
  std::string source;                  // "fetched" or "cache"
  std::optional<std::string> error;    // why a fetch failed, or the TXT was unusable
  StsProblem problem = StsProblem::kNone;
  int64_t expires_at = 0;
};

// How the DNSSEC status of one lookup was reached.
struct LookupTrace {
  std::string name;                    // question name, normal form
  std::string type;                    // "MX", "TLSA", ...
  std::string outcome;                 // DnsOutcomeName
  DnssecStatus dnssec = DnssecStatus::kIndeterminate;
  std::string mode;                    // Resolver::dnssec_mode(): "resolver" (AD bit) or "local"
  std::vector<std::string> how;        // local: per hop, the zones walked from the anchor and the key tags
};

struct DomainPolicy {
  std::string domain;
  Verdict verdict = Verdict::kDefer;
  Mechanism mechanism = Mechanism::kNone;
  std::string reason;
  std::string status_code;             // RFC 3463 code for defer/fail ("4.4.3", "5.1.10"), else ""
  DnssecStatus dnssec = DnssecStatus::kIndeterminate;  // of the MX answer
  std::vector<std::string> mx_chain;   // CNAMEs followed for the MX lookup
  bool implicit_mx = false;
  std::vector<MxPolicy> mx;
  std::optional<StsState> mta_sts;
  std::vector<std::string> notes;      // things worth logging that did not change the decision
  std::string dnssec_source;           // how statuses were obtained
  std::optional<ResolverCheck> resolver_check;  // resolver mode: the resolver's last self-check
  std::vector<LookupTrace> lookups;    // every DNS lookup made for the decision, in order
  std::optional<LocalRule> local;      // the local_policy_file rule applied, if any
  std::string override_warning;        // non-empty: that rule weakened what DANE/MTA-STS demand (log it)
};

struct PolicyOptions {
  bool dane = true;
  bool mta_sts = true;
  std::string dane_off_reason;         // when !dane: why (shown in the output)
  size_t max_mx_hosts = 20;            // hosts beyond this (by preference) are ignored
  size_t parallelism = 64;             // domains resolved at once by ResolveMany
  std::shared_ptr<const LocalPolicy> local_policy;  // local_policy_file rules, or null
};

// Creates one fetcher per worker thread (fetchers need not be thread-safe).
using StsFetcherFactory = std::function<std::unique_ptr<StsFetcher>()>;

class PolicyEngine {
 public:
  // None of the pointers is owned; all must outlive the engine. `cache` may
  // be shared by several engines and processes.
  PolicyEngine(Resolver* resolver, StsFetcherFactory fetchers, StsCache* cache, Clock* clock,
               PolicyOptions options);
  PolicyEngine(const PolicyEngine&) = delete;
  PolicyEngine& operator=(const PolicyEngine&) = delete;

  // `domain` must be in normal form (NormalizeHostName).
  DomainPolicy Resolve(const std::string& domain);
  // Resolves many domains concurrently; result i belongs to domains[i].
  std::vector<DomainPolicy> ResolveMany(const std::vector<std::string>& domains);
  // One proactive refresh run over the MTA-STS cache (mta_sts_refresh.h)
  // with this engine's resolver, fetchers, cache and clock; nothing when
  // MTA-STS is off or there is no cache.
  StsRefreshReport RefreshStsCache(const StsRefreshOptions& options);

 private:
  // Gathers the facts (policy.cc) and decides from them.
  DomainPolicy ResolveWith(const std::string& domain, StsFetcher* fetcher);

  Resolver* resolver_;
  StsFetcherFactory fetchers_;
  StsCache* cache_;
  Clock* clock_;
  PolicyOptions options_;
};

// The `policy --json` object of man/mxsec.8, one line, no trailing newline.
std::string PolicyToJsonLine(const DomainPolicy& policy);
// The readable form printed by `mxsec policy` (several lines, ends with \n).
std::string PolicyToText(const DomainPolicy& policy);

}  // namespace mxsec
