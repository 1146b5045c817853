// policy_decision_internal.h - what the three parts of DecidePolicy
// (policy_decision.h) hand each other: policy_decision.cc (MX, DANE, the
// verdict), policy_decision_sts.cc (MTA-STS) and policy_decision_local.cc
// (the local policy table).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mxsec/policy/policy_decision.h"

namespace mxsec::decision {

// One host while it is being decided: its MxPolicy and the failures the
// domain's verdict tells apart from a definite "no".
struct HostDecision {
  MxPolicy policy;
  bool address_lookup_failed = false;  // no address, and a lookup failed (retry may help)
  bool tlsa_lookup_failed = false;     // its TLSA lookup failed (RFC 7672 §2.1.1): not used now
};

// RFC 8461 for hosts DANE left opportunistic (tls may): sets p->mta_sts to
// the policy in force, adds a note when a fetched policy could not be
// cached, and applies the policy to those hosts. Returns the cache's error
// when an unreadable cache took hosts out of use.
std::optional<std::string> ApplyMtaSts(const StsFacts& sts, int64_t now, std::vector<HostDecision>* hosts,
                                       DomainPolicy* p);

// The local_policy_file rule `rule` over a decision made from DNS and
// MTA-STS: it decides every host that has an address (policy.h).
void ApplyLocalRule(const LocalRule& rule, DomainPolicy* p);

}  // namespace mxsec::decision
