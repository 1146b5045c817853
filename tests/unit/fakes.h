// fakes.h - test doubles behind the library's interfaces: a resolver that
// answers from a table, an MTA-STS fetcher that serves canned bodies.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "mxsec/dns/dns.h"
#include "mxsec/dns/dnssec.h"
#include "mxsec/policy/mta_sts.h"

namespace mxsec::testing {

inline DnsRecord MxRec(const std::string& owner, uint16_t pref, const std::string& exchange) {
  DnsRecord r;
  r.owner = owner;
  r.type = RrType::kMX;
  r.preference = pref;
  r.exchange = exchange;
  r.ttl = 300;
  return r;
}

inline DnsRecord ARec(const std::string& owner, const std::string& addr, RrType t = RrType::kA) {
  DnsRecord r;
  r.owner = owner;
  r.type = t;
  r.text = addr;
  r.ttl = 300;
  return r;
}

inline DnsRecord TxtRec(const std::string& owner, const std::string& text) {
  DnsRecord r;
  r.owner = owner;
  r.type = RrType::kTXT;
  r.text = text;
  return r;
}

inline DnsRecord TlsaRec(const std::string& owner, uint8_t u, uint8_t s, uint8_t m, size_t len = 32) {
  DnsRecord r;
  r.owner = owner;
  r.type = RrType::kTLSA;
  r.tlsa.usage = u;
  r.tlsa.selector = s;
  r.tlsa.matching = m;
  r.tlsa.data.assign(len, 0xab);
  return r;
}

// A section of a DnsResponse (answer_rrs, authority_rrs) from records in
// zone-file form, one per line, names absolute: the one list of records a
// parsed reply carries.
inline std::shared_ptr<const RrList> Section(const std::string& zone_text) {
  auto parsed = RrList::FromText(zone_text, "test section");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  return std::make_shared<const RrList>(std::move(parsed.value()));
}

// Answers from a table keyed by (name, type). Unknown questions get
// NXDOMAIN with the default status. Records every question asked.
class FakeResolver : public Resolver {
 public:
  void Set(const std::string& name, RrType type, DnsOutcome outcome, DnssecStatus status,
           std::vector<DnsRecord> records = {}, std::vector<std::string> chain = {}) {
    DnsAnswer a;
    a.question = {name, type};
    a.outcome = outcome;
    a.dnssec = status;
    a.records = std::move(records);
    a.chain = std::move(chain);
    a.final_name = a.chain.empty() ? name : a.chain.back();
    if (outcome == DnsOutcome::kFailure) a.reason = "SERVFAIL (fake)";
    std::lock_guard<std::mutex> l(mu_);
    table_[{name, type}] = a;
  }
  void Records(const std::string& name, RrType type, DnssecStatus status, std::vector<DnsRecord> records,
               std::vector<std::string> chain = {}) {
    Set(name, type, DnsOutcome::kRecords, status, std::move(records), std::move(chain));
  }
  void NoData(const std::string& name, RrType type, DnssecStatus status) {
    Set(name, type, DnsOutcome::kNoData, status);
  }
  void Fail(const std::string& name, RrType type, DnssecStatus status) {
    Set(name, type, DnsOutcome::kFailure, status);
  }
  // A host with one IPv4 address (AAAA: NODATA) of the given status.
  void Host(const std::string& name, const std::string& addr, DnssecStatus status) {
    Records(name, RrType::kA, status, {ARec(name, addr)});
    NoData(name, RrType::kAAAA, status);
  }

  std::vector<DnsAnswer> LookupMany(const std::vector<DnsQuestion>& questions) override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<DnsAnswer> out;
    for (const DnsQuestion& q : questions) {
      asked_.push_back(q);
      auto it = table_.find({q.name, q.type});
      if (it != table_.end()) {
        out.push_back(it->second);
      } else {
        DnsAnswer a;
        a.question = q;
        a.final_name = q.name;
        a.outcome = DnsOutcome::kNxDomain;
        a.dnssec = default_status;
        out.push_back(a);
      }
    }
    ++batches;
    return out;
  }
  bool dnssec_trusted() const override { return trusted; }
  std::string dnssec_untrusted_reason() const override { return "resolver not trusted (fake)"; }
  std::string describe() const override { return "fake resolver"; }

  bool Asked(const std::string& name, RrType type) const {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& q : asked_)
      if (q.name == name && q.type == type) return true;
    return false;
  }

  DnssecStatus default_status = DnssecStatus::kSecure;
  bool trusted = true;
  int batches = 0;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, RrType>, DnsAnswer> table_;
  std::vector<DnsQuestion> asked_;
};

// Serves canned policy bodies per domain; shared by all fetchers a
// factory hands out.
class FakeStsServer {
 public:
  void Serve(const std::string& domain, const std::string& body) {
    std::lock_guard<std::mutex> l(mu_);
    StsFetchResult r;
    r.ok = true;
    r.body = body;
    results_[domain] = r;
  }
  void Break(const std::string& domain, const std::string& error) {
    std::lock_guard<std::mutex> l(mu_);
    StsFetchResult r;
    r.ok = false;
    r.error = error;
    results_[domain] = r;
  }
  StsFetchResult Fetch(const StsFetchRequest& req) {
    std::lock_guard<std::mutex> l(mu_);
    ++fetches[req.domain];
    last_addresses = req.addresses;
    auto it = results_.find(req.domain);
    if (it == results_.end()) return StsFetchResult{false, "", "HTTP status 404"};
    return it->second;
  }
  std::map<std::string, int> fetches;
  std::vector<std::string> last_addresses;

 private:
  std::mutex mu_;
  std::map<std::string, StsFetchResult> results_;
};

class FakeStsFetcher : public StsFetcher {
 public:
  explicit FakeStsFetcher(FakeStsServer* server) : server_(server) {}
  std::vector<StsFetchResult> FetchMany(const std::vector<StsFetchRequest>& requests) override {
    std::vector<StsFetchResult> out;
    for (const auto& r : requests) out.push_back(server_->Fetch(r));
    return out;
  }

 private:
  FakeStsServer* server_;
};

}  // namespace mxsec::testing
