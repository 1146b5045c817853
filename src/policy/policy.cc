// policy.cc - the per-domain TLS decision (see policy.h for the promises).
//
// Lookups are batched so that a domain costs about two sequential DNS round
// trips: (1) MX and the _mta-sts TXT record; (2) A, AAAA and - when DANE is
// possible - TLSA for every MX host at once, plus the addresses of the
// MTA-STS policy host when a fetch is needed. Only MX hosts that are CNAMEs
// need a third round (the TLSA base domain rules of RFC 7672 §2.2.3). TLSA
// answers for hosts whose address records turn out insecure are discarded
// unread: the speculative query costs a packet, never a decision.
#include "mxsec/policy/policy.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "mxsec/dns/dane.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/policy/local_policy.h"

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

PolicyEngine::PolicyEngine(Resolver* resolver, StsFetcherFactory fetchers, StsCache* cache, Clock* clock,
                           PolicyOptions options)
    : resolver_(resolver), fetchers_(std::move(fetchers)), cache_(cache), clock_(clock),
      options_(std::move(options)) {}

DomainPolicy PolicyEngine::Resolve(const std::string& domain) {
  std::unique_ptr<StsFetcher> fetcher;
  if (options_.mta_sts && fetchers_) fetcher = fetchers_();
  return ResolveWith(domain, fetcher.get());
}

std::vector<DomainPolicy> PolicyEngine::ResolveMany(const std::vector<std::string>& domains) {
  std::vector<DomainPolicy> out(domains.size());
  size_t workers = std::min(domains.size(), std::max<size_t>(1, options_.parallelism));
  if (workers <= 1) {
    for (size_t i = 0; i < domains.size(); ++i) out[i] = Resolve(domains[i]);
    return out;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      std::unique_ptr<StsFetcher> fetcher;
      if (options_.mta_sts && fetchers_) fetcher = fetchers_();
      for (size_t i = next++; i < domains.size(); i = next++) out[i] = ResolveWith(domains[i], fetcher.get());
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

namespace {

std::string StatusWord(DnssecStatus s) { return DnssecStatusName(s); }

// The addresses of one host from its A and AAAA answers.
void FillAddresses(const DnsAnswer& a, const DnsAnswer& aaaa, MxPolicy* mx, bool* lookup_failed) {
  *lookup_failed = false;
  bool any_ok = false;
  DnssecStatus status = DnssecStatus::kSecure;
  std::vector<std::string> failures;
  for (const DnsAnswer* ans : {&a, &aaaa}) {
    if (ans->failed()) {
      failures.push_back(RrTypeName(ans->question.type) + " lookup failed: " + ans->reason);
      continue;
    }
    any_ok = true;
    status = WeakerStatus(status, ans->dnssec);
    for (const DnsRecord& r : ans->records) {
      if (std::find(mx->addresses.begin(), mx->addresses.end(), r.text) == mx->addresses.end())
        mx->addresses.push_back(r.text);
    }
    if (mx->cname_chain.empty() && !ans->chain.empty()) mx->cname_chain = ans->chain;
  }
  if (!any_ok) {
    mx->dnssec = WeakerStatus(a.dnssec, aaaa.dnssec);
  } else {
    mx->dnssec = status;
  }
  if (mx->addresses.empty()) {
    mx->tls = HostTls::kSkip;
    if (!failures.empty()) {
      *lookup_failed = true;
      mx->reason = failures.front();
    } else {
      mx->reason = std::string("no A or AAAA records (") + DnsOutcomeName(a.outcome) + ")";
    }
  } else if (!failures.empty()) {
    // Use what resolved; a failed family is logged, not fatal.
    mx->reason = failures.front() + "; using the other address family. ";
  }
}

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

// Applies a local_policy_file rule to a decision made from DNS and
// MTA-STS: the rule decides every host that has an address.
void ApplyLocalRule(const LocalRule& r, DomainPolicy* p) {
  const std::string name = LocalTlsName(r.policy);
  const std::string rule = "local policy " + name + " (local_policy_file " + r.source + ")";
  p->local = r;
  if (p->mx.empty()) {  // MX lookup failed, NXDOMAIN, null MX: no host to decide
    p->reason += "; " + rule + " does not change that";
    return;
  }
  const std::string demand = DemandOf(*p);
  const std::string before = p->reason;
  std::string names;
  for (const std::string& n : r.match) names += (names.empty() ? "" : ", ") + n;

  size_t usable = 0, hosts_with_address = 0;
  for (MxPolicy& m : p->mx) {
    if (m.addresses.empty()) continue;  // nothing to connect to, whatever the rule says
    ++hosts_with_address;
    const std::string was = m.reason.empty() ? std::string() : "; without the rule: " + m.reason;
    switch (r.policy) {
      case LocalTls::kDaneOnly:
        if (m.tls == HostTls::kDane) {
          m.reason = rule + ": TLS authenticated by DANE" + was;
        } else {
          m.tls = HostTls::kSkip;
          m.reason = rule + " requires DANE and " + m.host + " has no secure usable TLSA records: not used" + was;
        }
        break;
      case LocalTls::kVerify:
        m.tls = HostTls::kPkix;
        m.pkix_names = r.match;
        m.reason = rule + ": TLS with a PKIX-valid certificate for " + (names.empty() ? m.host : names) + was;
        break;
      case LocalTls::kEncrypt:
        m.tls = HostTls::kEncrypt;
        m.reason = rule + ": TLS required, certificate not checked" + was;
        break;
      case LocalTls::kMay:
        m.tls = HostTls::kMay;
        m.reason = rule + ": STARTTLS when offered, without authentication" + was;
        break;
    }
    usable += m.tls != HostTls::kSkip;
  }

  if (usable == 0) {
    if (r.policy == LocalTls::kDaneOnly && hosts_with_address > 0) {
      p->verdict = Verdict::kDefer;
      p->mechanism = Mechanism::kDane;
      p->status_code = "4.7.5";
      p->reason = "no MX host of " + p->domain + " has secure usable TLSA records and " + rule +
                  " requires DANE; retry later (without the rule: " + before + ")";
    } else {  // no host has an address: the rule changes nothing
      p->reason += "; " + rule + " does not change that";
    }
    return;
  }
  p->status_code.clear();
  std::string what;
  switch (r.policy) {
    case LocalTls::kDaneOnly:
      p->verdict = Verdict::kMustTls;
      p->mechanism = Mechanism::kDane;
      what = "every usable MX host requires TLS authenticated by DANE (" + std::to_string(usable) + " of " +
             std::to_string(p->mx.size()) + " hosts usable)";
      break;
    case LocalTls::kVerify:
      p->verdict = Verdict::kMustTls;
      p->mechanism = Mechanism::kLocal;
      what = "TLS with a PKIX-valid certificate for " +
             (names.empty() ? std::string("the MX host name") : "one of " + names) + " required for every MX host";
      break;
    case LocalTls::kEncrypt:
      p->verdict = Verdict::kMustTls;
      p->mechanism = Mechanism::kLocal;
      what = "TLS required for every MX host, certificate not checked";
      break;
    case LocalTls::kMay:
      p->verdict = Verdict::kOpportunistic;
      p->mechanism = Mechanism::kNone;
      what = "STARTTLS when offered, without authentication";
      break;
  }
  // dane-only never weakens DANE; every other rule replaces what DANE or
  // MTA-STS demanded, and must say so.
  if (r.policy != LocalTls::kDaneOnly && !demand.empty()) {
    p->reason = rule + " overrides " + demand + ": " + what + " (without the rule: " + before + ")";
    p->override_warning = p->domain + ": " + p->reason;
  } else {
    p->reason = rule + ": " + what + " (without the rule: " + before + ")";
  }
}

}  // namespace

StsRefreshReport PolicyEngine::RefreshStsCache(const StsRefreshOptions& options) {
  if (!options_.mta_sts || cache_ == nullptr) return StsRefreshReport();
  std::unique_ptr<StsFetcher> fetcher;
  if (fetchers_) fetcher = fetchers_();
  return RefreshStsPolicies(resolver_, fetcher.get(), cache_, clock_, options);
}

DomainPolicy PolicyEngine::ResolveWith(const std::string& domain, StsFetcher* fetcher) {
  const LocalRule* rule = options_.local_policy ? options_.local_policy->Find(domain) : nullptr;
  // dane-only makes MTA-STS irrelevant; the other rules still look, so that
  // the reason can say what they override.
  const bool use_sts = options_.mta_sts && !(rule && rule->policy == LocalTls::kDaneOnly);
  DomainPolicy p = Decide(domain, fetcher, use_sts);
  if (rule) ApplyLocalRule(*rule, &p);
  return p;
}

DomainPolicy PolicyEngine::Decide(const std::string& domain, StsFetcher* fetcher, bool use_sts) {
  DomainPolicy p;
  p.domain = domain;
  p.dnssec_source = resolver_->describe();
  p.resolver_check = resolver_->resolver_check();
  // Every lookup, with how its DNSSEC status was reached.
  const std::string dnssec_mode = resolver_->dnssec_mode();
  auto Trace = [&dnssec_mode](const std::vector<DnsAnswer>& answers, DomainPolicy* out) {
    for (const DnsAnswer& a : answers) {
      out->lookups.push_back({a.question.name, RrTypeName(a.question.type), DnsOutcomeName(a.outcome), a.dnssec,
                              dnssec_mode, a.validation});
    }
  };
  const bool dane_enabled = options_.dane && resolver_->dnssec_trusted();
  std::string dane_off_reason;
  if (!options_.dane) {
    dane_off_reason = options_.dane_off_reason.empty() ? "DANE is switched off (dane = no)" : options_.dane_off_reason;
  } else if (!resolver_->dnssec_trusted()) {
    dane_off_reason = resolver_->dnssec_untrusted_reason();
  }

  // --- Round 1: MX and the MTA-STS TXT record ---
  std::vector<DnsQuestion> q1{{domain, RrType::kMX}};
  if (use_sts) q1.push_back({"_mta-sts." + domain, RrType::kTXT});
  std::vector<DnsAnswer> a1 = resolver_->LookupMany(q1);
  Trace(a1, &p);
  const DnsAnswer& mx_answer = a1[0];
  p.dnssec = mx_answer.dnssec;
  p.mx_chain = mx_answer.chain;

  if (mx_answer.failed()) {
    p.verdict = Verdict::kDefer;
    p.status_code = "4.4.3";
    p.reason = "MX lookup failed (" + StatusWord(mx_answer.dnssec) + "): " + mx_answer.reason +
               (mx_answer.dnssec == DnssecStatus::kBogus ? "; the domain's DNSSEC signatures do not validate" : "") +
               "; retry later";
    return p;
  }
  if (mx_answer.outcome == DnsOutcome::kNxDomain) {
    p.verdict = Verdict::kFail;
    p.status_code = "5.1.2";
    p.reason = "domain " + domain + " does not exist (NXDOMAIN" +
               (mx_answer.chain.empty() ? "" : " at " + mx_answer.final_name) + ", " + StatusWord(mx_answer.dnssec) +
               ")";
    return p;
  }

  // --- MX hosts ---
  if (mx_answer.outcome == DnsOutcome::kRecords) {
    size_t nulls = 0;
    for (const DnsRecord& r : mx_answer.records) nulls += r.exchange.empty();
    if (nulls > 0 && mx_answer.records.size() == 1) {
      p.verdict = Verdict::kFail;
      p.status_code = "5.1.10";
      p.reason = "domain " + domain + " publishes a null MX (RFC 7505): it accepts no mail";
      return p;
    }
    if (nulls > 0) p.notes.push_back("null MX record mixed with other MX records ignored (RFC 7505 §3)");
    std::map<std::string, MxPolicy> by_name;
    for (const DnsRecord& r : mx_answer.records) {
      if (r.exchange.empty()) continue;
      MxPolicy m;
      m.preference = r.preference;
      auto norm = NormalizeHostName(r.exchange);
      if (!norm.ok()) {
        m.host = r.exchange;
        m.tls = HostTls::kSkip;
        m.reason = "invalid MX host name: " + norm.error();
      } else {
        m.host = norm.value();
      }
      auto it = by_name.find(m.host);
      if (it == by_name.end() || it->second.preference > m.preference) by_name[m.host] = m;
    }
    for (auto& [name, m] : by_name) p.mx.push_back(m);
    std::sort(p.mx.begin(), p.mx.end(), [](const MxPolicy& a, const MxPolicy& b) {
      return a.preference != b.preference ? a.preference < b.preference : a.host < b.host;
    });
    if (p.mx.size() > options_.max_mx_hosts) {
      p.notes.push_back(std::to_string(p.mx.size() - options_.max_mx_hosts) + " MX hosts beyond the first " +
                        std::to_string(options_.max_mx_hosts) + " ignored");
      p.mx.resize(options_.max_mx_hosts);
    }
  } else {
    // NODATA: the domain itself is the only host (RFC 5321 §5.1).
    MxPolicy m;
    m.host = mx_answer.final_name;
    m.preference = 0;
    p.implicit_mx = true;
    p.mx.push_back(m);
  }
  const bool dane_possible = dane_enabled && mx_answer.dnssec == DnssecStatus::kSecure;
  std::string no_dane_reason;
  if (!dane_enabled) {
    no_dane_reason = dane_off_reason;
  } else if (!dane_possible) {
    no_dane_reason = std::string(p.implicit_mx ? "the no-MX proof" : "the MX records") + " of " + domain + " are " +
                     StatusWord(mx_answer.dnssec) + ": DANE needs a DNSSEC-secure MX RRset (RFC 7672 §2.2.1)";
  }

  // --- MTA-STS: what the TXT record and the cache say ---
  std::optional<CachedStsPolicy> cached;
  std::optional<std::string> txt_id;
  std::string txt_problem;  // why the TXT record gives no id
  bool txt_absent = false;
  std::string cache_error;  // the cache could not be read: a policy may exist
  const int64_t now = clock_->Now();
  if (use_sts) {
    if (cache_) {
      auto looked_up = cache_->Lookup(domain);
      if (looked_up.ok()) cached = looked_up.value();
      else cache_error = looked_up.error();
    }
    const DnsAnswer& txt = a1[1];
    if (txt.outcome == DnsOutcome::kRecords) {
      std::vector<std::string> texts;
      for (const DnsRecord& r : txt.records) texts.push_back(r.text);
      auto parsed = ParseStsTxt(texts);
      if (parsed.ok()) {
        txt_id = parsed->id;
      } else {
        txt_problem = "_mta-sts TXT: " + parsed.error();
        txt_absent = parsed.error().find("no v=STSv1") != std::string::npos;
      }
    } else if (txt.failed()) {
      txt_problem = "_mta-sts TXT lookup failed: " + txt.reason;
    } else {
      txt_absent = true;
    }
  }
  const bool cache_valid = cached && cached->expires_at > now;
  const bool need_fetch = txt_id && (!cache_valid || cached->id != *txt_id);
  const std::string sts_host = "mta-sts." + domain;

  // --- Round 2: addresses, speculative TLSA, policy host addresses ---
  std::vector<DnsQuestion> q2;
  std::vector<size_t> addr_index(p.mx.size(), SIZE_MAX), tlsa_index(p.mx.size(), SIZE_MAX);
  for (size_t i = 0; i < p.mx.size(); ++i) {
    if (p.mx[i].tls == HostTls::kSkip && !p.mx[i].reason.empty()) continue;  // invalid name
    addr_index[i] = q2.size();
    q2.push_back({p.mx[i].host, RrType::kA});
    q2.push_back({p.mx[i].host, RrType::kAAAA});
    if (dane_possible) {
      tlsa_index[i] = q2.size();
      q2.push_back({TlsaOwnerName(p.mx[i].host), RrType::kTLSA});
    }
  }
  size_t sts_addr_index = SIZE_MAX;
  if (need_fetch) {
    sts_addr_index = q2.size();
    q2.push_back({sts_host, RrType::kA});
    q2.push_back({sts_host, RrType::kAAAA});
  }
  std::vector<DnsAnswer> a2 = resolver_->LookupMany(q2);
  Trace(a2, &p);

  std::vector<bool> addr_failed(p.mx.size(), false);
  for (size_t i = 0; i < p.mx.size(); ++i) {
    if (addr_index[i] == SIZE_MAX) continue;
    bool failed = false;
    FillAddresses(a2[addr_index[i]], a2[addr_index[i] + 1], &p.mx[i], &failed);
    addr_failed[i] = failed;
    if (!p.mx[i].addresses.empty()) p.mx[i].tls = HostTls::kMay;
  }

  // --- Round 3 (aliases only): TLSA at the CNAME-expanded host name ---
  // RFC 7672 §2.2.3: for a host whose secure address lookup followed a CNAME
  // to H', try _25._tcp.H' first, then _25._tcp.H.
  std::vector<bool> wants_dane(p.mx.size(), false);
  std::vector<DnsQuestion> q3;
  std::vector<size_t> expanded_index(p.mx.size(), SIZE_MAX);
  for (size_t i = 0; i < p.mx.size(); ++i) {
    MxPolicy& m = p.mx[i];
    if (m.tls != HostTls::kMay) continue;
    if (!dane_possible) continue;
    if (m.dnssec != DnssecStatus::kSecure) continue;
    wants_dane[i] = true;
    if (!m.cname_chain.empty()) {
      expanded_index[i] = q3.size();
      q3.push_back({TlsaOwnerName(m.cname_chain.back()), RrType::kTLSA});
    }
  }
  std::vector<DnsAnswer> a3;
  if (!q3.empty()) a3 = resolver_->LookupMany(q3);
  Trace(a3, &p);

  std::vector<bool> dane_failed(p.mx.size(), false);
  for (size_t i = 0; i < p.mx.size(); ++i) {
    MxPolicy& m = p.mx[i];
    if (m.tls != HostTls::kMay) continue;
    if (!wants_dane[i]) {
      if (!no_dane_reason.empty()) {
        m.reason += "no DANE: " + no_dane_reason;
      } else {
        m.reason += "no DANE: the address records of " + m.host + " are " + StatusWord(m.dnssec) +
                    " (RFC 7672 §2.2.3)";
      }
      continue;
    }
    const DnsAnswer* decisive = &a2[tlsa_index[i]];
    std::string base = m.host;
    if (expanded_index[i] != SIZE_MAX) {
      const DnsAnswer& expanded = a3[expanded_index[i]];
      if (expanded.failed() ||
          (expanded.outcome == DnsOutcome::kRecords && expanded.dnssec == DnssecStatus::kSecure)) {
        decisive = &expanded;
        base = m.cname_chain.back();
      }
    }
    const DnsAnswer& t = *decisive;
    m.tlsa_looked_up = true;
    m.tlsa_dnssec = t.dnssec;
    const std::string owner = TlsaOwnerName(base);
    if (t.failed()) {
      m.tls = HostTls::kSkip;
      dane_failed[i] = true;
      m.reason += "TLSA lookup at " + owner + " failed (" + StatusWord(t.dnssec) + "): " + t.reason +
                  "; host not used now, neither authenticated TLS nor plaintext is safe (RFC 7672 §2.2.3)";
      continue;
    }
    if (t.outcome != DnsOutcome::kRecords) {
      m.reason += std::string("no DANE: no TLSA records at ") + owner + " (" + DnsOutcomeName(t.outcome) + ", " +
                  StatusWord(t.dnssec) + ")";
      continue;
    }
    if (t.dnssec != DnssecStatus::kSecure) {
      m.reason += "no DANE: TLSA records at " + owner + " are " + StatusWord(t.dnssec) + " and ignored";
      continue;
    }
    TlsaSet set = ClassifyTlsa(t.records);
    m.tlsa_base = base;
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
                  TlsaUnusableReason(set.unusable.front()) +
                  "): TLS is required without authentication (RFC 7672 §2.2)";
    }
  }

  // --- MTA-STS: fetch if needed, then apply to hosts without DANE ---
  bool cache_unreadable = false;
  if (use_sts) {
    std::optional<StsState> state;
    auto from_cache = [&](const std::string& why) {
      StsState s;
      s.mode = cached->policy.mode;
      s.id = cached->id;
      s.max_age = cached->policy.max_age;
      s.mx = cached->policy.mx;
      s.source = "cache";
      s.expires_at = cached->expires_at;
      if (!why.empty()) s.error = why;
      return s;
    };
    if (need_fetch) {
      std::string fetch_error;
      std::vector<std::string> addrs;
      for (size_t k = sts_addr_index; k < sts_addr_index + 2; ++k) {
        for (const DnsRecord& r : a2[k].records) addrs.push_back(r.text);
      }
      if (addrs.empty()) {
        const DnsAnswer& a = a2[sts_addr_index];
        fetch_error = "no address for " + sts_host + " (" +
                      (a.failed() ? a.reason : std::string(DnsOutcomeName(a.outcome))) + ")";
      } else if (!fetcher) {
        fetch_error = "no HTTPS fetcher available";
      } else {
        std::vector<StsFetchResult> got = fetcher->FetchMany({StsFetchRequest{domain, addrs}});
        if (got.size() != 1 || !got[0].ok) {
          fetch_error = got.empty() ? "fetch failed" : got[0].error;
        } else {
          auto parsed = ParseStsPolicy(got[0].body);
          if (!parsed.ok()) {
            fetch_error = "invalid policy: " + parsed.error();
          } else {
            CachedStsPolicy entry;
            entry.domain = domain;
            entry.id = *txt_id;
            entry.text = got[0].body;
            entry.policy = parsed.value();
            entry.fetched_at = now;
            entry.expires_at = now + parsed->max_age;
            if (cache_) {
              Status s = cache_->Put(entry);
              if (!s.ok()) p.notes.push_back("MTA-STS cache not updated: " + s.message());
            }
            StsState st;
            st.mode = entry.policy.mode;
            st.id = entry.id;
            st.max_age = entry.policy.max_age;
            st.mx = entry.policy.mx;
            st.source = "fetched";
            st.expires_at = entry.expires_at;
            state = st;
          }
        }
      }
      if (!state) {
        if (cache_valid) {
          state = from_cache("policy fetch failed, cached policy (id " + cached->id + ") still applies: " +
                             fetch_error);
        } else {
          StsState st;  // no policy in force; shown so the administrator sees why
          st.mode = StsMode::kNone;
          st.id = *txt_id;
          st.source = "fetched";
          st.error = "policy fetch failed: " + fetch_error;
          state = st;
        }
      }
    } else if (txt_id && cache_valid) {
      state = from_cache("");
    } else if (cache_valid) {
      // TXT gone, invalid, or DNS failure: an unexpired policy keeps
      // applying (RFC 8461 §5.1), else a downgrade would be one DNS
      // answer away.
      state = from_cache(txt_absent ? "no _mta-sts TXT record; cached policy still applies"
                                    : txt_problem + "; cached policy still applies");
    } else if (!txt_problem.empty() && !txt_absent) {
      StsState st;
      st.mode = StsMode::kNone;
      st.source = "fetched";
      st.error = txt_problem;
      state = st;
    }
    p.mta_sts = state;

    // A cache we cannot read may hold an enforce policy that the current
    // DNS/HTTPS answers no longer show (the very situation an attacker
    // creates). Without a freshly fetched policy, hosts not protected by
    // DANE are not used until the cache is readable again.
    if (!cache_error.empty() && !(state && state->source == "fetched" && !state->error)) {
      cache_unreadable = true;
      for (MxPolicy& m : p.mx) {
        if (m.tls != HostTls::kMay) continue;
        m.tls = HostTls::kSkip;
        m.reason += "; MTA-STS policy cache unreadable (" + cache_error + "): not used until it can be checked";
      }
    }

    if (state && state->mode != StsMode::kNone) {
      StsPolicy pol;
      pol.mode = state->mode;
      pol.mx = state->mx;
      for (MxPolicy& m : p.mx) {
        if (m.tls != HostTls::kMay) continue;  // DANE decided, or not usable
        bool match = StsPolicyMatches(pol, m.host);
        if (state->mode == StsMode::kEnforce) {
          if (match) {
            m.tls = HostTls::kPkix;
            m.reason += "; MTA-STS enforce (id " + state->id + "): TLS with a certificate valid for " + m.host;
          } else {
            m.tls = HostTls::kSkip;
            m.reason += "; not listed in the MTA-STS policy of " + domain + " (mode enforce): not used";
          }
        } else {
          m.reason += match ? "; MTA-STS testing: TLS failures would only be reported"
                            : "; MTA-STS testing: host not listed in the policy (only reported)";
        }
      }
    }
  }

  // --- The domain's verdict ---
  size_t usable = 0, required = 0, dane_hosts = 0, pkix_hosts = 0;
  bool any_dane_failure = false, any_sts_excluded = false, any_addr_failure = false;
  for (size_t i = 0; i < p.mx.size(); ++i) {
    const MxPolicy& m = p.mx[i];
    any_dane_failure = any_dane_failure || dane_failed[i];
    any_addr_failure = any_addr_failure || addr_failed[i];
    if (m.tls == HostTls::kSkip) {
      if (!dane_failed[i] && !addr_failed[i] && !m.addresses.empty()) any_sts_excluded = true;
      continue;
    }
    ++usable;
    if (m.tls == HostTls::kDane || m.tls == HostTls::kEncrypt) { ++required; ++dane_hosts; }
    if (m.tls == HostTls::kPkix) { ++required; ++pkix_hosts; }
  }
  const std::string hosts_word = p.implicit_mx ? "host (no MX: the domain itself)" : "MX host";
  if (usable == 0) {
    if (!any_dane_failure && !any_sts_excluded && !any_addr_failure) {
      p.verdict = Verdict::kFail;
      p.status_code = "5.4.4";
      p.reason = p.implicit_mx ? "domain " + domain + " has no MX and no address records: no route"
                               : "no MX host of " + domain + " has an address: no route";
      return p;
    }
    p.verdict = Verdict::kDefer;
    if (cache_unreadable) {
      p.mechanism = Mechanism::kMtaSts;
      p.status_code = "4.3.0";
      p.reason = "the MTA-STS policy cache cannot be read (" + cache_error + "); retry later";
    } else if (any_dane_failure) {
      p.mechanism = Mechanism::kDane;
      p.status_code = "4.7.5";
      p.reason = "no usable MX host: TLSA lookups failed (DNSSEC bogus or indeterminate); retry later";
    } else if (any_sts_excluded) {
      p.mechanism = Mechanism::kMtaSts;
      p.status_code = "4.7.5";
      p.reason = "no MX host matches the MTA-STS policy of " + domain + " (mode enforce)";
    } else {
      p.status_code = "4.4.3";
      p.reason = "no MX host address could be resolved now; retry later";
    }
    return p;
  }
  if (required == usable) {
    p.verdict = Verdict::kMustTls;
    p.mechanism = dane_hosts > 0 ? Mechanism::kDane : Mechanism::kMtaSts;
    if (pkix_hosts == 0) {
      p.reason = "every usable " + hosts_word + " requires TLS by DANE (" + std::to_string(dane_hosts) + " of " +
                 std::to_string(p.mx.size()) + " hosts usable)";
    } else if (dane_hosts == 0) {
      p.reason = "MTA-STS policy (mode enforce, id " + p.mta_sts->id + ") requires TLS with a valid certificate for " +
                 std::to_string(pkix_hosts) + " " + hosts_word + (pkix_hosts == 1 ? "" : "s");
    } else {
      p.reason = "every usable MX host requires TLS: " + std::to_string(dane_hosts) + " by DANE, " +
                 std::to_string(pkix_hosts) + " by MTA-STS";
    }
    if (any_dane_failure) p.reason += "; some hosts are skipped because their TLSA lookup failed";
    return p;
  }
  p.verdict = Verdict::kOpportunistic;
  p.mechanism = Mechanism::kNone;
  if (required > 0) {
    std::string weak;
    for (const MxPolicy& m : p.mx) {
      if (m.tls == HostTls::kMay) { weak = m.host; break; }
    }
    p.reason = std::to_string(required) + " of " + std::to_string(usable) +
               " usable MX hosts require TLS, but " + weak +
               " does not: an attacker can steer mail to it, so TLS is opportunistic for the domain";
  } else {
    std::string why = no_dane_reason.empty() ? "no usable TLSA records" : no_dane_reason;
    std::string sts = !p.mta_sts ? "no MTA-STS policy"
                      : p.mta_sts->mode == StsMode::kTesting ? "MTA-STS policy in testing mode (reports only)"
                      : p.mta_sts->error ? "no MTA-STS policy in force (" + *p.mta_sts->error + ")"
                                         : "MTA-STS policy mode none";
    p.reason = "no DANE (" + why + ") and " + sts + ": STARTTLS when offered, without authentication";
  }
  return p;
}

}  // namespace mxsec
