// policy_facts.h - a builder of PolicyFacts (policy_decision.h) for tests of
// the pure decision: what the lookups would have learned about example.org,
// a few facts per call, then Decide(). Hosts get one IPv4 address each and
// no AAAA records; TLSA, MTA-STS and local-rule calls apply to the last
// host added or to the domain. Example:
//   DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Decide();
//   CHECK(p.mx[0].tls == HostTls::kDane);
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "fakes.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/policy/policy_decision.h"

namespace mxsec::testing {

inline constexpr int64_t kFactsNow = 1700000000;

// The DNSSEC statuses as the decision tests write them.
inline constexpr auto S = DnssecStatus::kSecure;
inline constexpr auto I = DnssecStatus::kInsecure;
inline constexpr auto B = DnssecStatus::kBogus;
inline constexpr auto X = DnssecStatus::kIndeterminate;

// A usable DANE-EE(3) SPKI(1) SHA2-256(1) record, and an unusable PKIX-EE one.
inline DnsRecord DaneEe() { return TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1); }
inline DnsRecord PkixEe() { return TlsaRec("_25._tcp.mx1.example.org", 1, 1, 1); }

inline DnsAnswer Answer(const std::string& name, RrType type, DnsOutcome outcome, DnssecStatus status,
                        std::vector<DnsRecord> records = {}) {
  DnsAnswer a;
  a.question = {name, type};
  a.outcome = outcome;
  a.dnssec = status;
  a.final_name = name;
  a.records = std::move(records);
  if (outcome == DnsOutcome::kFailure) a.reason = "SERVFAIL (fake)";
  return a;
}

class Facts {
 public:
  // example.org with a secure MX RRset (the hosts come from Host()), a
  // trusted resolver and MTA-STS not considered.
  Facts() {
    facts_.domain = "example.org";
    facts_.dnssec_source = "fake resolver";
    facts_.mx = Answer("example.org", RrType::kMX, DnsOutcome::kRecords, DnssecStatus::kSecure);
  }

  // --- MX ---
  Facts& MxStatus(DnssecStatus s) { facts_.mx.dnssec = s; return *this; }
  Facts& MxAnswer(DnsOutcome outcome, DnssecStatus s) {
    facts_.mx = Answer("example.org", RrType::kMX, outcome, s);
    return *this;
  }
  Facts& NullMx() {
    facts_.mx.records = {MxRec("example.org", 0, "")};
    return *this;
  }
  Facts& Untrusted(const std::string& why) {
    facts_.dnssec_trusted = false;
    facts_.dnssec_untrusted_reason = why;
    return *this;
  }

  // --- Hosts ---
  Facts& Host(const std::string& name, DnssecStatus s, uint16_t preference = 10) {
    MxHostFacts h;
    h.host = name;
    h.preference = preference;
    h.a = Answer(name, RrType::kA, DnsOutcome::kRecords, s,
                 {ARec(name, "192.0.2." + std::to_string(facts_.hosts.size() + 1))});
    h.aaaa = Answer(name, RrType::kAAAA, DnsOutcome::kNoData, s);
    facts_.hosts.push_back(h);
    return *this;
  }
  Facts& InvalidHost(const std::string& name, const std::string& error) {
    MxHostFacts h;
    h.host = name;
    h.name_error = error;
    facts_.hosts.push_back(h);
    return *this;
  }
  Facts& NoAddress(DnsOutcome outcome, DnssecStatus s) {
    last().a = Answer(last().host, RrType::kA, outcome, s);
    last().aaaa = Answer(last().host, RrType::kAAAA, outcome, s);
    return *this;
  }
  // The host's address records came through a CNAME to `target`.
  Facts& Alias(const std::string& target) {
    last().a.chain = {target};
    last().a.final_name = target;
    return *this;
  }

  // --- TLSA (of the last host) ---
  Facts& Tlsa(DnssecStatus s, std::vector<DnsRecord> records) {
    last().tlsa = Answer("_25._tcp." + last().host, RrType::kTLSA, DnsOutcome::kRecords, s, std::move(records));
    return *this;
  }
  Facts& TlsaNone(DnsOutcome outcome, DnssecStatus s) {
    last().tlsa = Answer("_25._tcp." + last().host, RrType::kTLSA, outcome, s);
    return *this;
  }
  Facts& ExpandedTlsa(DnsOutcome outcome, DnssecStatus s, std::vector<DnsRecord> records = {}) {
    last().tlsa_expanded =
        Answer("_25._tcp." + last().a.chain.back(), RrType::kTLSA, outcome, s, std::move(records));
    return *this;
  }

  // --- MTA-STS ---
  Facts& Sts() { sts(); return *this; }  // considered, no TXT record
  Facts& StsTxt(const std::string& record) {
    sts().txt = Answer("_mta-sts.example.org", RrType::kTXT, DnsOutcome::kRecords, DnssecStatus::kInsecure,
                       {TxtRec("_mta-sts.example.org", record)});
    return *this;
  }
  Facts& StsId(const std::string& id) { return StsTxt("v=STSv1; id=" + id); }
  Facts& StsTxtFailed() {
    sts().txt = Answer("_mta-sts.example.org", RrType::kTXT, DnsOutcome::kFailure, DnssecStatus::kIndeterminate);
    return *this;
  }
  Facts& Cached(const std::string& body, const std::string& id, int64_t fetched_at = kFactsNow - 60) {
    sts().cached = NewCachedStsPolicy("example.org", id, body, Parse(body), fetched_at);
    return *this;
  }
  Facts& CacheUnreadable(const std::string& error) {
    sts().cache_read = Status::IoError(error);
    return *this;
  }
  // The policy fetched now, under the TXT record's id.
  Facts& Fetched(const std::string& body, Status cache_update = Status::Ok()) {
    StsFetchFacts f;
    f.policy = NewCachedStsPolicy("example.org", ReadStsTxtAnswer(sts().txt)->id, body, Parse(body), kFactsNow);
    f.cache_update = cache_update;
    sts().fetch = f;
    return *this;
  }
  Facts& FetchFailed(Status why) {
    sts().fetch = StsFetchFacts{why, std::nullopt, Status::Ok()};
    return *this;
  }

  // --- Local policy table ---
  Facts& Rule(const std::string& policy) {
    auto table = LocalPolicy::Parse("example.org " + policy + "\n", "/etc/mxsec/local-policy");
    REQUIRE_MESSAGE(table.ok(), table.error());
    facts_.local_rule = *table->Find("example.org");
    return *this;
  }

  const PolicyFacts& facts() const { return facts_; }
  DomainPolicy Decide(const PolicyOptions& options = PolicyOptions(), int64_t now = kFactsNow) const {
    return DecidePolicy(facts_, options, now);
  }

 private:
  MxHostFacts& last() {
    REQUIRE(!facts_.hosts.empty());
    return facts_.hosts.back();
  }
  StsFacts& sts() {
    if (!facts_.sts) {
      facts_.sts.emplace();
      facts_.sts->txt = Answer("_mta-sts.example.org", RrType::kTXT, DnsOutcome::kNoData, DnssecStatus::kInsecure);
    }
    return *facts_.sts;
  }
  static StsPolicy Parse(const std::string& body) {
    auto p = ParseStsPolicy(body);
    REQUIRE_MESSAGE(p.ok(), p.error());
    return p.value();
  }

  PolicyFacts facts_;
};

}  // namespace mxsec::testing
