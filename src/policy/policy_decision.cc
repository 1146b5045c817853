// policy_decision.cc - DecidePolicy (policy_decision.h): the MX answer, each
// host's addresses and DANE status (RFC 7672), and the domain's verdict.
// MTA-STS is decided in policy_decision_sts.cc, the local policy table in
// policy_decision_local.cc. Each function below is one rule; the reasons
// are words that tests, logs and `policy --json` readers rely on, so they
// change only on purpose.
#include "mxsec/policy/policy_decision.h"

#include <algorithm>
#include <map>

#include "mxsec/base/domain_name.h"
#include "mxsec/dns/dane.h"
#include "policy_decision_internal.h"

namespace mxsec {

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kMustTls: return "must-tls";
    case Verdict::kOpportunistic: return "opportunistic";
    case Verdict::kDefer: return "defer";
    case Verdict::kFail: return "fail";
  }
  return "?";
}

const char* MechanismName(Mechanism m) {
  switch (m) {
    case Mechanism::kDane: return "dane";
    case Mechanism::kMtaSts: return "mta-sts";
    case Mechanism::kLocal: return "local";
    case Mechanism::kNone: return "none";
  }
  return "?";
}

const char* HostTlsName(HostTls t) {
  switch (t) {
    case HostTls::kDane: return "dane";
    case HostTls::kEncrypt: return "encrypt";
    case HostTls::kPkix: return "pkix";
    case HostTls::kMay: return "may";
    case HostTls::kSkip: return "skip";
  }
  return "?";
}

namespace {

using decision::HostDecision;

std::string StatusWord(DnssecStatus s) { return DnssecStatusName(s); }

bool IsLoneNullMx(const DnsAnswer& mx) {
  return mx.outcome == DnsOutcome::kRecords && mx.records.size() == 1 && mx.records[0].exchange.empty();
}

// --- The MX answer (RFC 5321 §5.1, RFC 7505) ---

// A failed MX lookup defers: bogus or indeterminate is never "no MX"
// (RFC 7672 §2.1.1). NXDOMAIN and a lone null MX fail. True when the
// answer decided.
bool DecideFromMxAnswer(const DnsAnswer& mx, DomainPolicy* p) {
  if (mx.failed()) {
    p->verdict = Verdict::kDefer;
    p->status_code = "4.4.3";
    p->reason = "MX lookup failed (" + StatusWord(mx.dnssec) + "): " + mx.reason +
                (mx.dnssec == DnssecStatus::kBogus ? "; the domain's DNSSEC signatures do not validate" : "") +
                "; retry later";
    return true;
  }
  if (mx.outcome == DnsOutcome::kNxDomain) {
    p->verdict = Verdict::kFail;
    p->status_code = "5.1.2";
    p->reason = "domain " + p->domain + " does not exist (NXDOMAIN" +
                (mx.chain.empty() ? "" : " at " + mx.final_name) + ", " + StatusWord(mx.dnssec) + ")";
    return true;
  }
  if (IsLoneNullMx(mx)) {
    p->verdict = Verdict::kFail;
    p->status_code = "5.1.10";
    p->reason = "domain " + p->domain + " publishes a null MX (RFC 7505): it accepts no mail";
    return true;
  }
  return false;
}

// What the host list left out, for the log.
void AddMxNotes(const PolicyFacts& facts, const PolicyOptions& options, DomainPolicy* p) {
  if (facts.null_mx_ignored) p->notes.push_back("null MX record mixed with other MX records ignored (RFC 7505 §3)");
  if (facts.hosts_beyond_limit > 0) {
    p->notes.push_back(std::to_string(facts.hosts_beyond_limit) + " MX hosts beyond the first " +
                       std::to_string(options.max_mx_hosts) + " ignored");
  }
}

// --- DANE for the domain (RFC 7672 §2.2.1) ---

struct DaneContext {
  bool possible = false;
  std::string no_dane_reason;  // why not, when !possible (may be empty only if the resolver gives no reason)
};

std::string DaneOffReason(const PolicyFacts& facts, const PolicyOptions& options) {
  if (!options.dane) {
    return options.dane_off_reason.empty() ? "DANE is switched off (dane = no)" : options.dane_off_reason;
  }
  return facts.dnssec_trusted ? std::string() : facts.dnssec_untrusted_reason;
}

DaneContext DaneContextOf(const PolicyFacts& facts, const PolicyOptions& options, bool implicit_mx) {
  DaneContext dane;
  dane.possible = DanePossible(facts, options);
  if (!options.dane || !facts.dnssec_trusted) {
    dane.no_dane_reason = DaneOffReason(facts, options);
  } else if (!dane.possible) {
    dane.no_dane_reason = std::string(implicit_mx ? "the no-MX proof" : "the MX records") + " of " + facts.domain +
                          " are " + StatusWord(facts.mx.dnssec) +
                          ": DANE needs a DNSSEC-secure MX RRset (RFC 7672 §2.2.1)";
  }
  return dane;
}

// --- One host ---

// Its addresses; none: not used (a failed lookup is worth a retry, a
// definite "no address" is not). A failed family is noted, not fatal.
void ApplyAddresses(const MxHostFacts& h, const HostAddresses& found, HostDecision* d) {
  MxPolicy& m = d->policy;
  m.addresses = found.addresses;
  m.cname_chain = found.cname_chain;
  m.dnssec = found.dnssec;
  if (!m.addresses.empty()) {
    m.tls = HostTls::kMay;
    if (!found.failures.empty()) m.reason = found.failures.front() + "; using the other address family. ";
    return;
  }
  m.tls = HostTls::kSkip;
  if (!found.failures.empty()) {
    d->address_lookup_failed = true;
    m.reason = found.failures.front();
  } else {
    m.reason = std::string("no A or AAAA records (") + DnsOutcomeName(h.a.outcome) + ")";
  }
}

// RFC 7672 §2.2.3: DANE for a host needs secure address records too.
std::string NoDaneReason(const MxPolicy& m, const DaneContext& dane) {
  if (!dane.no_dane_reason.empty()) return "no DANE: " + dane.no_dane_reason;
  return "no DANE: the address records of " + m.host + " are " + StatusWord(m.dnssec) + " (RFC 7672 §2.2.3)";
}

struct TlsaChoice {
  const DnsAnswer* answer;
  std::string base;  // the name under _25._tcp. that was asked
};

// A TLSA answer the facts lack reads as a failed lookup, never as "no TLSA".
const DnsAnswer& NotLookedUp() {
  static const DnsAnswer kAnswer = [] {
    DnsAnswer a;
    a.reason = "not looked up";
    return a;
  }();
  return kAnswer;
}

// RFC 7672 §2.2.3: the expanded name's TLSA RRset decides when it is
// secure or its lookup failed; otherwise the alias's.
TlsaChoice DecisiveTlsa(const MxHostFacts& h, const HostAddresses& found) {
  TlsaChoice choice{h.tlsa ? &*h.tlsa : &NotLookedUp(), h.host};
  if (h.tlsa_expanded && !found.cname_chain.empty()) {
    const DnsAnswer& expanded = *h.tlsa_expanded;
    if (expanded.failed() ||
        (expanded.outcome == DnsOutcome::kRecords && expanded.dnssec == DnssecStatus::kSecure)) {
      choice = {&expanded, found.cname_chain.back()};
    }
  }
  return choice;
}

// RFC 7672 §2.2: a failed lookup takes the host out of use (neither
// authenticated TLS nor plaintext is safe); only a secure RRset counts; a
// secure RRset without usable records still demands TLS (encrypt).
void ApplyTlsa(const TlsaChoice& choice, HostDecision* d) {
  MxPolicy& m = d->policy;
  const DnsAnswer& t = *choice.answer;
  const std::string owner = TlsaOwnerName(choice.base);
  m.tlsa_looked_up = true;
  m.tlsa_dnssec = t.dnssec;
  if (t.failed()) {
    m.tls = HostTls::kSkip;
    d->tlsa_lookup_failed = true;
    m.reason += "TLSA lookup at " + owner + " failed (" + StatusWord(t.dnssec) + "): " + t.reason +
                "; host not used now, neither authenticated TLS nor plaintext is safe (RFC 7672 §2.2.3)";
    return;
  }
  if (t.outcome != DnsOutcome::kRecords) {
    m.reason += std::string("no DANE: no TLSA records at ") + owner + " (" + DnsOutcomeName(t.outcome) + ", " +
                StatusWord(t.dnssec) + ")";
    return;
  }
  if (t.dnssec != DnssecStatus::kSecure) {
    m.reason += "no DANE: TLSA records at " + owner + " are " + StatusWord(t.dnssec) + " and ignored";
    return;
  }
  TlsaSet set = ClassifyTlsa(t.records);
  m.tlsa_base = choice.base;
  m.tlsa = set.usable;
  m.tlsa.insert(m.tlsa.end(), set.unusable.begin(), set.unusable.end());
  if (!set.usable.empty()) {
    m.tls = HostTls::kDane;
    m.reason += "DANE: " + std::to_string(set.usable.size()) + " usable TLSA record" +
                (set.usable.size() == 1 ? "" : "s") + " at " + owner + " (DNSSEC secure)";
    if (!set.unusable.empty()) m.reason += ", " + std::to_string(set.unusable.size()) + " unusable ignored";
  } else {
    m.tls = HostTls::kEncrypt;
    m.reason += "DANE: TLSA records at " + owner + " are secure but none is usable (" +
                TlsaUnusableReason(set.unusable.front()) + "): TLS is required without authentication (RFC 7672 §2.2)";
  }
}

HostDecision DecideHost(const MxHostFacts& h, const DaneContext& dane) {
  HostDecision d;
  MxPolicy& m = d.policy;
  m.host = h.host;
  m.preference = h.preference;
  if (!h.name_error.empty()) {
    m.tls = HostTls::kSkip;
    m.reason = "invalid MX host name: " + h.name_error;
    return d;
  }
  const HostAddresses found = ReadHostAddresses(h);
  ApplyAddresses(h, found, &d);
  if (m.tls == HostTls::kSkip) return d;
  if (!dane.possible || m.dnssec != DnssecStatus::kSecure) {
    m.reason += NoDaneReason(m, dane);
    return d;
  }
  ApplyTlsa(DecisiveTlsa(h, found), &d);
  return d;
}

// --- The domain's verdict ---

struct HostCounts {
  size_t usable = 0, required = 0, dane = 0, pkix = 0;
  bool tlsa_failure = false, sts_excluded = false, address_failure = false;
};

HostCounts CountHosts(const std::vector<HostDecision>& hosts) {
  HostCounts c;
  for (const HostDecision& h : hosts) {
    const MxPolicy& m = h.policy;
    c.tlsa_failure = c.tlsa_failure || h.tlsa_lookup_failed;
    c.address_failure = c.address_failure || h.address_lookup_failed;
    if (m.tls == HostTls::kSkip) {
      // Skipped for another reason than a failed lookup: MTA-STS (or an
      // unreadable policy cache) excluded it.
      if (!h.tlsa_lookup_failed && !h.address_lookup_failed && !m.addresses.empty()) c.sts_excluded = true;
      continue;
    }
    ++c.usable;
    if (m.tls == HostTls::kDane || m.tls == HostTls::kEncrypt) { ++c.required; ++c.dane; }
    if (m.tls == HostTls::kPkix) { ++c.required; ++c.pkix; }
  }
  return c;
}

// No host usable: fail when that is definite, else defer with the cause.
void NoUsableHost(const HostCounts& c, const std::optional<std::string>& unreadable_cache, DomainPolicy* p) {
  if (!c.tlsa_failure && !c.sts_excluded && !c.address_failure) {
    p->verdict = Verdict::kFail;
    p->status_code = "5.4.4";
    p->reason = p->implicit_mx ? "domain " + p->domain + " has no MX and no address records: no route"
                               : "no MX host of " + p->domain + " has an address: no route";
    return;
  }
  p->verdict = Verdict::kDefer;
  if (unreadable_cache) {
    p->mechanism = Mechanism::kMtaSts;
    p->status_code = "4.3.0";
    p->reason = "the MTA-STS policy cache cannot be read (" + *unreadable_cache + "); retry later";
  } else if (c.tlsa_failure) {
    p->mechanism = Mechanism::kDane;
    p->status_code = "4.7.5";
    p->reason = "no usable MX host: TLSA lookups failed (DNSSEC bogus or indeterminate); retry later";
  } else if (c.sts_excluded) {
    p->mechanism = Mechanism::kMtaSts;
    p->status_code = "4.7.5";
    p->reason = "no MX host matches the MTA-STS policy of " + p->domain + " (mode enforce)";
  } else {
    p->status_code = "4.4.3";
    p->reason = "no MX host address could be resolved now; retry later";
  }
}

// Every usable host requires TLS: the domain is must-tls.
void RequireTls(const HostCounts& c, DomainPolicy* p) {
  const std::string hosts_word = p->implicit_mx ? "host (no MX: the domain itself)" : "MX host";
  p->verdict = Verdict::kMustTls;
  p->mechanism = c.dane > 0 ? Mechanism::kDane : Mechanism::kMtaSts;
  if (c.pkix == 0) {
    p->reason = "every usable " + hosts_word + " requires TLS by DANE (" + std::to_string(c.dane) + " of " +
                std::to_string(p->mx.size()) + " hosts usable)";
  } else if (c.dane == 0) {
    p->reason = "MTA-STS policy (mode enforce, id " + p->mta_sts->id + ") requires TLS with a valid certificate for " +
                std::to_string(c.pkix) + " " + hosts_word + (c.pkix == 1 ? "" : "s");
  } else {
    p->reason = "every usable MX host requires TLS: " + std::to_string(c.dane) + " by DANE, " +
                std::to_string(c.pkix) + " by MTA-STS";
  }
  if (c.tlsa_failure) p->reason += "; some hosts are skipped because their TLSA lookup failed";
}

// One usable host without a TLS demand makes the whole domain
// opportunistic: an attacker can steer mail to it.
void Opportunistic(const HostCounts& c, const std::string& no_dane_reason, DomainPolicy* p) {
  p->verdict = Verdict::kOpportunistic;
  p->mechanism = Mechanism::kNone;
  if (c.required > 0) {
    std::string weak;
    for (const MxPolicy& m : p->mx) {
      if (m.tls == HostTls::kMay) { weak = m.host; break; }
    }
    p->reason = std::to_string(c.required) + " of " + std::to_string(c.usable) +
                " usable MX hosts require TLS, but " + weak +
                " does not: an attacker can steer mail to it, so TLS is opportunistic for the domain";
    return;
  }
  const std::string why = no_dane_reason.empty() ? "no usable TLSA records" : no_dane_reason;
  const std::optional<StsState>& s = p->mta_sts;
  const std::string sts = !s ? "no MTA-STS policy"
                          : s->mode == StsMode::kTesting ? "MTA-STS policy in testing mode (reports only)"
                          : s->error ? "no MTA-STS policy in force (" + *s->error + ")"
                                     : "MTA-STS policy mode none";
  p->reason = "no DANE (" + why + ") and " + sts + ": STARTTLS when offered, without authentication";
}

void DecideVerdict(const std::vector<HostDecision>& hosts, const std::string& no_dane_reason,
                   const std::optional<std::string>& unreadable_cache, DomainPolicy* p) {
  const HostCounts c = CountHosts(hosts);
  if (c.usable == 0) {
    NoUsableHost(c, unreadable_cache, p);
  } else if (c.required == c.usable) {
    RequireTls(c, p);
  } else {
    Opportunistic(c, no_dane_reason, p);
  }
}

// What the decision rests on, whatever it is.
DomainPolicy Provenance(const PolicyFacts& facts) {
  DomainPolicy p;
  p.domain = facts.domain;
  p.dnssec_source = facts.dnssec_source;
  p.resolver_check = facts.resolver_check;
  p.lookups = facts.lookups;
  p.dnssec = facts.mx.dnssec;
  p.mx_chain = facts.mx.chain;
  return p;
}

// The decision from DNS and MTA-STS, before any local rule.
DomainPolicy DecideFromDnsAndSts(const PolicyFacts& facts, const PolicyOptions& options, int64_t now) {
  DomainPolicy p = Provenance(facts);
  if (DecideFromMxAnswer(facts.mx, &p)) return p;
  p.implicit_mx = facts.mx.outcome != DnsOutcome::kRecords;
  AddMxNotes(facts, options, &p);
  const DaneContext dane = DaneContextOf(facts, options, p.implicit_mx);
  std::vector<HostDecision> hosts;
  for (const MxHostFacts& h : facts.hosts) hosts.push_back(DecideHost(h, dane));
  std::optional<std::string> unreadable_cache;
  if (facts.sts) unreadable_cache = decision::ApplyMtaSts(*facts.sts, now, &hosts, &p);
  for (const HostDecision& h : hosts) p.mx.push_back(h.policy);
  DecideVerdict(hosts, dane.no_dane_reason, unreadable_cache, &p);
  return p;
}

}  // namespace

DomainPolicy DecidePolicy(const PolicyFacts& facts, const PolicyOptions& options, int64_t now) {
  DomainPolicy p = DecideFromDnsAndSts(facts, options, now);
  if (facts.local_rule) decision::ApplyLocalRule(*facts.local_rule, &p);
  return p;
}

// --- Rules the gathering shares ---

bool ConsidersMtaSts(const PolicyOptions& options, const LocalRule* rule) {
  return options.mta_sts && !(rule && rule->policy == LocalTls::kDaneOnly);
}

bool MxAnswerEndsLookups(const DnsAnswer& mx) {
  return mx.failed() || mx.outcome == DnsOutcome::kNxDomain || IsLoneNullMx(mx);
}

void ListMxHosts(size_t max_hosts, PolicyFacts* facts) {
  facts->hosts.clear();
  const DnsAnswer& mx = facts->mx;
  if (mx.outcome != DnsOutcome::kRecords) {
    MxHostFacts self;  // RFC 5321 §5.1: the domain itself
    self.host = mx.final_name;
    facts->hosts.push_back(self);
    return;
  }
  std::map<std::string, MxHostFacts> by_name;
  for (const DnsRecord& r : mx.records) {
    if (r.exchange.empty()) {
      facts->null_mx_ignored = true;
      continue;
    }
    MxHostFacts h;
    h.preference = r.preference;
    auto norm = NormalizeHostName(r.exchange);
    h.host = norm.ok() ? norm.value() : r.exchange;
    if (!norm.ok()) h.name_error = norm.error();
    auto it = by_name.find(h.host);
    if (it == by_name.end() || it->second.preference > h.preference) by_name[h.host] = h;
  }
  for (auto& [name, h] : by_name) facts->hosts.push_back(h);
  std::sort(facts->hosts.begin(), facts->hosts.end(), [](const MxHostFacts& a, const MxHostFacts& b) {
    return a.preference != b.preference ? a.preference < b.preference : a.host < b.host;
  });
  if (facts->hosts.size() > max_hosts) {
    facts->hosts_beyond_limit = facts->hosts.size() - max_hosts;
    facts->hosts.resize(max_hosts);
  }
}

bool DanePossible(const PolicyFacts& facts, const PolicyOptions& options) {
  return options.dane && facts.dnssec_trusted && facts.mx.dnssec == DnssecStatus::kSecure;
}

HostAddresses ReadHostAddresses(const MxHostFacts& host) {
  HostAddresses out;
  bool any_ok = false;
  DnssecStatus status = DnssecStatus::kSecure;
  for (const DnsAnswer* answer : {&host.a, &host.aaaa}) {
    if (answer->failed()) {
      out.failures.push_back(RrTypeName(answer->question.type) + " lookup failed: " + answer->reason);
      continue;
    }
    any_ok = true;
    status = WeakerStatus(status, answer->dnssec);
    for (const DnsRecord& r : answer->records) {
      if (std::find(out.addresses.begin(), out.addresses.end(), r.text) == out.addresses.end())
        out.addresses.push_back(r.text);
    }
    if (out.cname_chain.empty() && !answer->chain.empty()) out.cname_chain = answer->chain;
  }
  out.dnssec = any_ok ? status : WeakerStatus(host.a.dnssec, host.aaaa.dnssec);
  return out;
}

std::optional<std::string> ExpandedTlsaBase(const MxHostFacts& host, bool dane_possible) {
  if (!dane_possible || !host.name_error.empty()) return std::nullopt;
  const HostAddresses found = ReadHostAddresses(host);
  if (found.addresses.empty() || found.dnssec != DnssecStatus::kSecure || found.cname_chain.empty()) {
    return std::nullopt;
  }
  return found.cname_chain.back();
}

bool StsNeedsFetch(const StsFacts& sts, int64_t now) {
  const Result<StsTxt> txt = ReadStsTxtAnswer(sts.txt);
  if (!txt.ok()) return false;
  const bool cache_valid = sts.cached && sts.cached->expires_at > now;
  return !cache_valid || sts.cached->id != txt->id;
}

}  // namespace mxsec
