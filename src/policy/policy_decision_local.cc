// policy_decision_local.cc - the local policy table's part of DecidePolicy
// (policy_decision.h): a local_policy_file rule (local_policy.h) decides
// every MX host with an address of its domain, after DANE and MTA-STS have
// had their say, and the reason names the rule and what it overrides.
#include "policy_decision_internal.h"

namespace mxsec::decision {
namespace {

// What DANE or MTA-STS demanded for the domain before a local rule, in
// words ("DANE must-tls", "MTA-STS enforce (id x) must-tls"); "" when they
// demanded nothing.
std::string DemandOf(const DomainPolicy& p) {
  bool dane = p.mechanism == Mechanism::kDane, sts = p.mechanism == Mechanism::kMtaSts;
  for (const MxPolicy& m : p.mx) {
    dane = dane || m.tls == HostTls::kDane || m.tls == HostTls::kEncrypt;
    sts = sts || m.tls == HostTls::kPkix;
  }
  sts = sts || (p.mta_sts && p.mta_sts->mode == StsMode::kEnforce);
  std::string verdict = VerdictName(p.verdict);
  std::string out;
  if (dane) out = "DANE " + (p.mechanism == Mechanism::kDane ? verdict : std::string("for some MX hosts"));
  if (sts) {
    if (!out.empty()) out += " and ";
    out += "MTA-STS enforce" + (p.mta_sts && !p.mta_sts->id.empty() ? " (id " + p.mta_sts->id + ")" : std::string()) +
           (p.mechanism == Mechanism::kMtaSts ? " " + verdict : std::string());
  }
  return out;
}

// The rule's words, shared by every reason it writes.
struct RuleWords {
  std::string rule;   // "local policy verify (local_policy_file FILE:LINE)"
  std::string names;  // verify's match= names, comma-separated ("" without match=)
};

RuleWords WordsOf(const LocalRule& r) {
  RuleWords w;
  w.rule = std::string("local policy ") + LocalTlsName(r.policy) + " (local_policy_file " + r.source + ")";
  for (const std::string& n : r.match) w.names += (w.names.empty() ? "" : ", ") + n;
  return w;
}

// The rule decides one host that has an address; the reason keeps what it
// would have been without the rule.
void ApplyToHost(const LocalRule& r, const RuleWords& w, MxPolicy* m) {
  const std::string was = m->reason.empty() ? std::string() : "; without the rule: " + m->reason;
  switch (r.policy) {
    case LocalTls::kDaneOnly:
      if (m->tls == HostTls::kDane) {
        m->reason = w.rule + ": TLS authenticated by DANE" + was;
      } else {
        m->tls = HostTls::kSkip;
        m->reason = w.rule + " requires DANE and " + m->host + " has no secure usable TLSA records: not used" + was;
      }
      break;
    case LocalTls::kVerify:
      m->tls = HostTls::kPkix;
      m->pkix_names = r.match;
      m->reason = w.rule + ": TLS with a PKIX-valid certificate for " + (w.names.empty() ? m->host : w.names) + was;
      break;
    case LocalTls::kEncrypt:
      m->tls = HostTls::kEncrypt;
      m->reason = w.rule + ": TLS required, certificate not checked" + was;
      break;
    case LocalTls::kMay:
      m->tls = HostTls::kMay;
      m->reason = w.rule + ": STARTTLS when offered, without authentication" + was;
      break;
  }
}

// No host left to use: dane-only defers when it skipped hosts with an
// address; otherwise the rule changes nothing.
void NoHostLeft(const LocalRule& r, const RuleWords& w, const std::string& before, size_t hosts_with_address,
                DomainPolicy* p) {
  if (r.policy == LocalTls::kDaneOnly && hosts_with_address > 0) {
    p->verdict = Verdict::kDefer;
    p->mechanism = Mechanism::kDane;
    p->status_code = "4.7.5";
    p->reason = "no MX host of " + p->domain + " has secure usable TLSA records and " + w.rule +
                " requires DANE; retry later (without the rule: " + before + ")";
  } else {  // no host has an address: the rule changes nothing
    p->reason += "; " + w.rule + " does not change that";
  }
}

// The domain's verdict under the rule, and what it means in words.
std::string RuleVerdict(const LocalRule& r, const RuleWords& w, size_t usable, DomainPolicy* p) {
  p->status_code.clear();
  switch (r.policy) {
    case LocalTls::kDaneOnly:
      p->verdict = Verdict::kMustTls;
      p->mechanism = Mechanism::kDane;
      return "every usable MX host requires TLS authenticated by DANE (" + std::to_string(usable) + " of " +
             std::to_string(p->mx.size()) + " hosts usable)";
    case LocalTls::kVerify:
      p->verdict = Verdict::kMustTls;
      p->mechanism = Mechanism::kLocal;
      return "TLS with a PKIX-valid certificate for " +
             (w.names.empty() ? std::string("the MX host name") : "one of " + w.names) + " required for every MX host";
    case LocalTls::kEncrypt:
      p->verdict = Verdict::kMustTls;
      p->mechanism = Mechanism::kLocal;
      return "TLS required for every MX host, certificate not checked";
    case LocalTls::kMay:
      p->verdict = Verdict::kOpportunistic;
      p->mechanism = Mechanism::kNone;
      return "STARTTLS when offered, without authentication";
  }
  return "";
}

}  // namespace

void ApplyLocalRule(const LocalRule& r, DomainPolicy* p) {
  const RuleWords w = WordsOf(r);
  p->local = r;
  if (p->mx.empty()) {  // MX lookup failed, NXDOMAIN, null MX: no host to decide
    p->reason += "; " + w.rule + " does not change that";
    return;
  }
  const std::string demand = DemandOf(*p);
  const std::string before = p->reason;
  size_t usable = 0, hosts_with_address = 0;
  for (MxPolicy& m : p->mx) {
    if (m.addresses.empty()) continue;  // nothing to connect to, whatever the rule says
    ++hosts_with_address;
    ApplyToHost(r, w, &m);
    usable += m.tls != HostTls::kSkip;
  }
  if (usable == 0) {
    NoHostLeft(r, w, before, hosts_with_address, p);
    return;
  }
  const std::string what = RuleVerdict(r, w, usable, p);
  // dane-only never weakens DANE; every other rule replaces what DANE or
  // MTA-STS demanded, and must say so.
  if (r.policy != LocalTls::kDaneOnly && !demand.empty()) {
    p->reason = w.rule + " overrides " + demand + ": " + what + " (without the rule: " + before + ")";
    p->override_warning = p->domain + ": " + p->reason;
  } else {
    p->reason = w.rule + ": " + what + " (without the rule: " + before + ")";
  }
}

}  // namespace mxsec::decision
