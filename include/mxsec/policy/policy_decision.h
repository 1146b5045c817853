// policy_decision.h - the per-domain TLS decision as a pure function of what
// the lookups learned.
//
// PolicyEngine (policy.h) gathers: it alone talks to the resolver, the
// MTA-STS fetcher and the policy cache, and writes down what it learned in
// a PolicyFacts. DecidePolicy turns those facts into a DomainPolicy by the
// rules of RFC 7672 (DANE), RFC 8461 (MTA-STS) and the local policy table
// (local_policy.h), with the promises policy.h states. It does no I/O and
// reads no clock: the same facts, options and time give the same decision,
// word for word, so every rule can be tested from facts alone.
//
// The few rules the gathering needs to know what to ask next (whether the
// MX answer ends the lookups, the host list, whether DANE is possible,
// where the TLSA records of an alias are looked for first, whether the
// policy is fetched) are declared here too and used by both sides, so the
// questions asked and the answers read cannot drift apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/status.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/policy/mta_sts.h"
#include "mxsec/policy/policy.h"

namespace mxsec {

// One MX host (or the domain itself when it has no MX) as looked up.
struct MxHostFacts {
  std::string host;          // normal form; the exchange as published when name_error is set
  uint16_t preference = 0;
  std::string name_error;    // non-empty: the exchange is no valid host name, nothing was asked
  DnsAnswer a, aaaa;         // the host's address records
  std::optional<DnsAnswer> tlsa;           // _25._tcp.<host>, asked when DanePossible
  std::optional<DnsAnswer> tlsa_expanded;  // _25._tcp.<alias target>, asked when ExpandedTlsaBase names one
};

// The policy fetch made because StsNeedsFetch said so.
struct StsFetchFacts {
  // Why there is no fresh policy: kInvalid when the body did not parse
  // (ReadFetchedStsPolicy), another code when there was no body (no
  // address for the policy host, no fetcher, an HTTPS failure). The message
  // is what the decision shows.
  Status status;
  std::optional<CachedStsPolicy> policy;  // status ok: the policy fetched, under the TXT record's id
  Status cache_update;                    // the cache's answer to storing `policy` (ok without a cache)
};

// What MTA-STS looked like for the domain.
struct StsFacts {
  DnsAnswer txt;                          // _mta-sts.<domain> TXT
  std::optional<CachedStsPolicy> cached;  // the cache entry, expired or not
  Status cache_read;                      // not ok: the cache could not be read, a policy may be there
  std::optional<StsFetchFacts> fetch;     // present when the policy was fetched
};

struct PolicyFacts {
  std::string domain;                           // normal form
  std::string dnssec_source;                    // Resolver::describe()
  std::optional<ResolverCheck> resolver_check;  // Resolver::resolver_check()
  bool dnssec_trusted = true;                   // Resolver::dnssec_trusted()
  std::string dnssec_untrusted_reason;          // Resolver::dnssec_untrusted_reason() when not trusted
  std::optional<LocalRule> local_rule;          // the local_policy_file rule for the domain, if any
  DnsAnswer mx;                                 // the MX answer
  // The hosts ListMxHosts found, with what was learned about them; empty
  // when the MX answer ended the lookups (MxAnswerEndsLookups).
  std::vector<MxHostFacts> hosts;
  bool null_mx_ignored = false;                 // a null MX among other MX records (RFC 7505 §3)
  size_t hosts_beyond_limit = 0;                // MX hosts past PolicyOptions::max_mx_hosts, not looked up
  std::optional<StsFacts> sts;                  // present when MTA-STS was considered (ConsidersMtaSts)
  std::vector<LookupTrace> lookups;             // every DNS lookup made, in order
};

// The decision (policy.h states its promises); `now` is the time the
// cache's expiry is compared with, in seconds since the epoch.
DomainPolicy DecidePolicy(const PolicyFacts& facts, const PolicyOptions& options, int64_t now);

// --- Rules the gathering shares ---

// MTA-STS is considered unless switched off or a dane-only rule makes it
// irrelevant; the other rules still look, so the reason can say what they
// override.
bool ConsidersMtaSts(const PolicyOptions& options, const LocalRule* rule);

// The MX answer alone decides the domain (lookup failure, NXDOMAIN, a lone
// null MX of RFC 7505): nothing more is looked up.
bool MxAnswerEndsLookups(const DnsAnswer& mx);

// Fills facts->hosts, null_mx_ignored and hosts_beyond_limit from facts->mx:
// valid exchanges once each (at their lowest preference), by preference
// then name, at most max_hosts; invalid names stay, with name_error. No MX
// records (NODATA): the domain itself, at preference 0 (RFC 5321 §5.1).
void ListMxHosts(size_t max_hosts, PolicyFacts* facts);

// DANE applies only with DANE on, a trusted resolver and a secure MX RRset
// (RFC 7672 §2.2.1).
bool DanePossible(const PolicyFacts& facts, const PolicyOptions& options);

// A host's addresses from its A and AAAA answers.
struct HostAddresses {
  std::vector<std::string> addresses;      // both families, each once
  DnssecStatus dnssec = DnssecStatus::kIndeterminate;  // the weaker of the answers that did not fail
  std::vector<std::string> cname_chain;    // CNAMEs followed (the first answer that followed any)
  std::vector<std::string> failures;       // "A lookup failed: ...", per failed family
};
HostAddresses ReadHostAddresses(const MxHostFacts& host);

// RFC 7672 §2.2.3: for a host whose secure address lookup followed a CNAME
// to H', TLSA records are looked for at _25._tcp.H' first, then at
// _25._tcp.H. H' (the last name of the chain), or nothing.
std::optional<std::string> ExpandedTlsaBase(const MxHostFacts& host, bool dane_possible);

// The policy is fetched when the TXT record names an id and no unexpired
// cached policy has that id (RFC 8461 §3.3, §5.1).
bool StsNeedsFetch(const StsFacts& sts, int64_t now);

}  // namespace mxsec
