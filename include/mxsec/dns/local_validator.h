// local_validator.h - the Resolver of `dnssec_validation = local`:
// DNSSEC validated in this process from a trust anchor, with any resolver
// (validating or not, local or remote) used only to fetch the data.
//
// Every question is sent with DO+CD, so the resolver hands over what it
// has, signatures included, without judging it. The answer's status is
// then established here (RFC 4035 §5):
//   - the zone that signed each RRset (the RRSIG signer) is reached from
//     the trust anchor down the delegation path, one DS query per label:
//     a signed DS leads to the child's DNSKEY set (authenticated by that
//     DS), a signed NSEC/NSEC3 denial of DS at a delegation makes
//     everything below insecure, a signed NODATA for DS shows the name is
//     not a zone cut. Validated DNSKEY sets and cut facts are cached per
//     process, shared by all lookups, for min(TTL, cache_seconds): the
//     signature's TTL limit (original TTL, time to expiry) for DS/DNSKEY,
//     the smallest TTL of the denial records for proofs; failures are not
//     cached;
//   - RRsets must verify with the keys of that zone (wildcard expansions
//     also need the proof that the next closer name does not exist);
//     NXDOMAIN and NODATA need a signed NSEC/NSEC3 proof; an unsigned
//     answer is insecure only when the walk proves an insecure delegation
//     above it, and bogus otherwise;
//   - the records an answer returns are the RRset whose status was
//     established, taken from the one copy of the reply (DnsResponse),
//     and a CNAME or DNAME hop is followed only through the one record of
//     its verified RRset; a reply over a limit was refused by the
//     transport and is indeterminate;
//   - every hop of a CNAME chain is validated on its own; the answer gets
//     the weakest status of its hops. A hop synthesized from a DNAME (an
//     unsigned CNAME, or none) takes the status of the DNAME RRset, if the
//     CNAME is exactly the DNAME substitution (RFC 6672) and the DNAME is
//     not a wildcard expansion; otherwise it is bogus;
//   - each lookup (one question, its CNAME hops and the walks they need)
//     spends from a ValidationBudget of its own: a zone that demands more
//     signature checks or NSEC3 hashing than that is bogus for the lookup;
//   - signatures verified once are remembered until they expire
//     (VerifiedSignatures), so answers seen again, as a warm resolver
//     cache hands them out, cost no public-key operation; every other
//     check is made again. Lookups running side by side that miss the
//     cache for the same DS/DNSKEY fact wait for one fetch of it.
// A DS algorithm or digest we cannot verify, or NSEC3 parameters we do not
// process, make the zone insecure (RFC 6840 §5.2, RFC 9276), never secure.
// Bogus and indeterminate answers are failures (outcome kFailure), as a
// validating resolver's SERVFAIL is in resolver mode, so PolicyEngine
// reaches the same decisions in both modes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "mxsec/dns/dns.h"
#include "mxsec/dns/dnssec.h"

namespace mxsec {

struct LocalValidatorOptions {
  std::string description;            // for describe(): "local validation (anchor FILE) via 127.0.0.1:53"
  std::function<int64_t()> now;       // Unix time for signature windows and the cache; null = system clock
  int64_t cache_seconds = 3600;       // upper bound on how long a validated DNSKEY/DS fact is reused
  size_t cache_entries = 10000;       // the cache is emptied when it grows past this
  size_t verified_entries = 10000;    // bound on remembered verified signatures (VerifiedSignatures)
  // Called after each lookup with the validation work it spent, which is
  // bounded per lookup (ValidationBudget, dnssec.h); for tests and
  // diagnostics. Null: not called.
  std::function<void(const ValidationBudget&)> on_lookup_work;
};

// `anchors` are the trust anchors (DS or DNSKEY records, ParseTrustAnchors).
// Does not take ownership of `transport`. Thread-safe.
std::unique_ptr<Resolver> NewLocalValidatingResolver(DnsTransport* transport, RrList anchors,
                                                     LocalValidatorOptions options);

}  // namespace mxsec
