// policy.cc - the per-domain TLS decision (see policy.h for the promises):
// the engine and its lookups. This file alone asks the resolver, the MTA-STS
// fetcher and the policy cache; what they answer becomes a PolicyFacts, and
// DecidePolicy (policy_decision.h) decides from it.
//
// Lookups are batched so that a domain costs about two sequential DNS round
// trips: (1) MX and the _mta-sts TXT record; (2) A, AAAA and - when DANE is
// possible - TLSA for every MX host at once, plus the addresses of the
// MTA-STS policy host when a fetch is needed. Only MX hosts that are CNAMEs
// need a third round (the TLSA base domain rules of RFC 7672 §2.2.3). TLSA
// answers for hosts whose address records turn out insecure are discarded
// unread: the speculative query costs a packet, never a decision. The
// policy fetch (HTTPS) follows the DNS rounds.
#include "mxsec/policy/policy.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "mxsec/dns/dane.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/policy/policy_decision.h"

namespace mxsec {

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

// A batch of DNS questions whose answers go straight to where the facts
// keep them, so that no index is carried from a question to its answer.
class QuestionBatch {
 public:
  void Ask(const std::string& name, RrType type, DnsAnswer* into) {
    questions_.push_back({name, type});
    into_.push_back(into);
  }
  bool empty() const { return questions_.empty(); }
  // One round trip; every answer is traced with how its status was reached.
  // An answer the resolver did not give stays a failure.
  void Send(Resolver* resolver, const std::string& dnssec_mode, std::vector<LookupTrace>* trace) {
    std::vector<DnsAnswer> answers = resolver->LookupMany(questions_);
    for (const DnsAnswer& a : answers) {
      trace->push_back({a.question.name, RrTypeName(a.question.type), DnsOutcomeName(a.outcome), a.dnssec,
                        dnssec_mode, a.validation});
    }
    for (size_t i = 0; i < answers.size() && i < into_.size(); ++i) *into_[i] = std::move(answers[i]);
  }

 private:
  std::vector<DnsQuestion> questions_;
  std::vector<DnsAnswer*> into_;  // into_[i] receives the answer to questions_[i]
};

// The lookups for one domain, round by round as the schedule above says,
// and the one side effect: a freshly fetched policy is stored in the cache.
class DomainLookups {
 public:
  DomainLookups(Resolver* resolver, StsFetcher* fetcher, StsCache* cache, const PolicyOptions& options,
                const std::string& domain, const LocalRule* rule);
  void Run(Clock* clock);
  const PolicyFacts& facts() const { return facts_; }
  int64_t now() const { return now_; }

 private:
  void Send(QuestionBatch* batch) { batch->Send(resolver_, dnssec_mode_, &facts_.lookups); }
  void AskMxAndTxt();          // round 1
  void ReadCache();
  void AskAddressesAndTlsa();  // round 2
  void AskExpandedTlsa();      // round 3, aliases only
  void FetchPolicy();

  Resolver* resolver_;
  StsFetcher* fetcher_;
  StsCache* cache_;
  const PolicyOptions& options_;
  std::string dnssec_mode_;
  PolicyFacts facts_;
  int64_t now_ = 0;
  bool need_fetch_ = false;
  DnsAnswer sts_host_a_, sts_host_aaaa_;  // mta-sts.<domain>, asked when need_fetch_
};

DomainLookups::DomainLookups(Resolver* resolver, StsFetcher* fetcher, StsCache* cache, const PolicyOptions& options,
                             const std::string& domain, const LocalRule* rule)
    : resolver_(resolver), fetcher_(fetcher), cache_(cache), options_(options) {
  facts_.domain = domain;
  facts_.dnssec_source = resolver->describe();
  facts_.resolver_check = resolver->resolver_check();
  dnssec_mode_ = resolver->dnssec_mode();
  facts_.dnssec_trusted = resolver->dnssec_trusted();
  if (!facts_.dnssec_trusted) facts_.dnssec_untrusted_reason = resolver->dnssec_untrusted_reason();
  if (rule) facts_.local_rule = *rule;
  if (ConsidersMtaSts(options, rule)) facts_.sts.emplace();
}

void DomainLookups::Run(Clock* clock) {
  AskMxAndTxt();
  now_ = clock->Now();
  if (MxAnswerEndsLookups(facts_.mx)) return;
  ListMxHosts(options_.max_mx_hosts, &facts_);
  if (facts_.sts) {
    ReadCache();
    need_fetch_ = StsNeedsFetch(*facts_.sts, now_);
  }
  AskAddressesAndTlsa();
  AskExpandedTlsa();
  if (need_fetch_) FetchPolicy();
}

void DomainLookups::AskMxAndTxt() {
  QuestionBatch batch;
  batch.Ask(facts_.domain, RrType::kMX, &facts_.mx);
  if (facts_.sts) batch.Ask("_mta-sts." + facts_.domain, RrType::kTXT, &facts_.sts->txt);
  Send(&batch);
}

void DomainLookups::ReadCache() {
  if (cache_ == nullptr) return;
  auto looked_up = cache_->Lookup(facts_.domain);
  if (looked_up.ok()) {
    facts_.sts->cached = looked_up.value();
  } else {
    facts_.sts->cache_read = looked_up.status();
  }
}

// TLSA is asked speculatively with the addresses, before it is known
// whether they are secure: it saves a round trip for every DANE domain.
void DomainLookups::AskAddressesAndTlsa() {
  const bool dane_possible = DanePossible(facts_, options_);
  QuestionBatch batch;
  for (MxHostFacts& h : facts_.hosts) {
    if (!h.name_error.empty()) continue;
    batch.Ask(h.host, RrType::kA, &h.a);
    batch.Ask(h.host, RrType::kAAAA, &h.aaaa);
    if (dane_possible) batch.Ask(TlsaOwnerName(h.host), RrType::kTLSA, &h.tlsa.emplace());
  }
  if (need_fetch_) {
    batch.Ask("mta-sts." + facts_.domain, RrType::kA, &sts_host_a_);
    batch.Ask("mta-sts." + facts_.domain, RrType::kAAAA, &sts_host_aaaa_);
  }
  Send(&batch);
}

void DomainLookups::AskExpandedTlsa() {
  const bool dane_possible = DanePossible(facts_, options_);
  QuestionBatch batch;
  for (MxHostFacts& h : facts_.hosts) {
    std::optional<std::string> base = ExpandedTlsaBase(h, dane_possible);
    if (base) batch.Ask(TlsaOwnerName(*base), RrType::kTLSA, &h.tlsa_expanded.emplace());
  }
  if (!batch.empty()) Send(&batch);
}

void DomainLookups::FetchPolicy() {
  StsFacts& sts = *facts_.sts;
  StsFetchFacts& fetch = sts.fetch.emplace();
  Result<StsFetchRequest> request = StsFetchRequestFor(facts_.domain, sts_host_a_, sts_host_aaaa_);
  if (!request.ok()) {
    fetch.status = request.status();
    return;
  }
  if (fetcher_ == nullptr) {
    fetch.status = Status::Unavailable("no HTTPS fetcher available");
    return;
  }
  std::vector<StsFetchResult> got = fetcher_->FetchMany({request.value()});
  if (got.size() != 1) {
    fetch.status = Status::Unavailable(got.empty() ? "fetch failed" : got[0].error);
    return;
  }
  Result<StsPolicy> policy = ReadFetchedStsPolicy(got[0]);
  if (!policy.ok()) {
    fetch.status = policy.status();
    return;
  }
  const std::string id = ReadStsTxtAnswer(sts.txt)->id;  // StsNeedsFetch: the TXT record names one
  fetch.policy = NewCachedStsPolicy(facts_.domain, id, got[0].body, policy.value(), now_);
  if (cache_ != nullptr) fetch.cache_update = cache_->Put(*fetch.policy);
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
  DomainLookups lookups(resolver_, fetcher, cache_, options_, domain, rule);
  lookups.Run(clock_);
  return DecidePolicy(lookups.facts(), options_, lookups.now());
}

}  // namespace mxsec
