// resolver_check_test.cc - the resolver-mode self-check (does the resolver
// validate DNSSEC?) and what the policy decides when it does not, with a
// fake DNS transport playing a validating or a non-validating resolver.
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <mutex>

#include "fakes.h"
#include "mxsec/base/clock.h"
#include "mxsec/base/config.h"
#include "mxsec/policy/policy.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

// `answer`: the answer section in zone-file form.
DnsResponse Reply(DnsRcode rcode, bool ad, const std::string& answer = "") {
  DnsResponse r;
  r.answered = true;
  r.rcode = rcode;
  r.ad = ad;
  r.answer_rrs = Section(answer);
  r.server = "127.0.0.1:53";
  return r;
}

std::string Soa(const std::string& owner) {
  return (owner.empty() ? "." : owner + ".") + " 300 IN SOA ns.test. h.test. 1 7200 3600 1209600 300\n";
}

DnsResponse Timeout() {
  DnsResponse r;
  r.answered = false;
  r.error = "timeout: no answer from 127.0.0.1:53";
  return r;
}

// A resolver over a zone example.org (signed) with one DANE MX host, and the
// bogus name probe.bogus.example. `validating` decides how it behaves:
// validating: AD on everything signed, SERVFAIL for the bogus name;
// not validating: the same data, never AD, the bogus name answered.
class FakeTransport : public DnsTransport {
 public:
  bool validating = true;
  bool dead = false;         // every question times out
  int probe_asked = 0;

  std::vector<DnsResponse> QueryMany(const std::vector<DnsQuestion>& qs, bool cd) override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<DnsResponse> out;
    for (const DnsQuestion& q : qs) out.push_back(Answer(q, cd));
    return out;
  }

 private:
  DnsResponse Answer(const DnsQuestion& q, bool cd) {
    if (dead) return Timeout();
    const bool ad = validating && !cd;
    if (q.name == "probe.bogus.example") {
      ++probe_asked;
      if (validating && !cd) return Reply(DnsRcode::kServFail, false);
      return Reply(DnsRcode::kNoError, false, q.name + ". 300 IN A 192.0.2.66\n");
    }
    if (q.name == "" && q.type == RrType::kSOA) return Reply(DnsRcode::kNoError, ad, Soa(""));
    if (q.name == "example.org" && q.type == RrType::kSOA)
      return Reply(DnsRcode::kNoError, ad, Soa("example.org"));
    if (q.name == "example.org" && q.type == RrType::kMX)
      return Reply(DnsRcode::kNoError, ad, "example.org. 300 IN MX 10 mx1.example.org.\n");
    if (q.name == "mx1.example.org" && q.type == RrType::kA)
      return Reply(DnsRcode::kNoError, ad, "mx1.example.org. 300 IN A 192.0.2.1\n");
    if (q.name == "_25._tcp.mx1.example.org" && q.type == RrType::kTLSA)
      return Reply(DnsRcode::kNoError, ad, "_25._tcp.mx1.example.org. 300 IN TLSA 3 1 1 " + std::string(64, 'a') + "\n");
    if (q.name == "mx1.example.org" || q.name == "example.org") return Reply(DnsRcode::kNoError, ad);  // NODATA
    return Reply(DnsRcode::kNxDomain, ad);
  }
  std::mutex mu_;
};

struct Bed {
  FakeTransport transport;
  FakeClock clock{1700000000};
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  std::unique_ptr<ResolverModeResolver> resolver;

  explicit Bed(std::string probe = "probe.bogus.example", std::string secure = "example.org") {
    ResolverModeOptions o;
    o.description = "resolver 127.0.0.1:53 (AD bit)";
    o.probe_name = std::move(probe);
    o.secure_name = std::move(secure);
    resolver = NewResolverModeResolver(&transport, o);
  }
  DomainPolicy Run(const std::string& domain) {
    PolicyOptions po;
    po.mta_sts = false;
    PolicyEngine engine(resolver.get(), nullptr, cache.get(), &clock, po);
    return engine.Resolve(domain);
  }
};

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("resolver check: evaluation of the two answers") {
  DnsResponse servfail = Reply(DnsRcode::kServFail, false);
  servfail.ede = "7 Signature Expired";
  DnsResponse data = Reply(DnsRcode::kNoError, false, "probe.test. 300 IN A 192.0.2.1\n");
  DnsResponse secure = Reply(DnsRcode::kNoError, true, Soa("test"));
  DnsResponse plain = Reply(DnsRcode::kNoError, false, Soa("test"));
  DnsResponse refused = Reply(DnsRcode::kRefused, false);
  DnsResponse timeout = Timeout();

  ResolverCheck c = EvaluateResolverCheck("127.0.0.1:53", "probe.test", &servfail, "test", &secure);
  CHECK(c.status == ResolverCheckStatus::kValidates);
  CHECK(c.probe_ok);
  CHECK(c.secure_ok);
  CHECK(Contains(c.probe_result, "SERVFAIL"));
  CHECK(Contains(c.probe_result, "Signature Expired"));
  CHECK(Contains(c.secure_result, "AD"));

  // Data for the bogus name: proven not to validate, whatever AD says.
  c = EvaluateResolverCheck("127.0.0.1:53", "probe.test", &data, "test", &secure);
  CHECK(c.status == ResolverCheckStatus::kNotValidating);
  CHECK_FALSE(c.probe_ok);
  CHECK(Contains(c.summary, "resolver does not validate"));
  CHECK(Contains(c.summary, "probe.test"));
  DnsResponse data_ad = data;
  data_ad.ad = true;  // a forwarder copying AD from somewhere
  CHECK(EvaluateResolverCheck("r", "probe.test", &data_ad, "test", &secure).status ==
        ResolverCheckStatus::kNotValidating);
  DnsResponse nx = Reply(DnsRcode::kNxDomain, false);
  CHECK(EvaluateResolverCheck("r", "probe.test", &nx, "", nullptr).status == ResolverCheckStatus::kNotValidating);

  // No AD on the secure name: proven not to validate.
  c = EvaluateResolverCheck("127.0.0.1:53", "probe.test", &servfail, "test", &plain);
  CHECK(c.status == ResolverCheckStatus::kNotValidating);
  CHECK_FALSE(c.secure_ok);
  CHECK(Contains(c.summary, "without AD"));
  // Both wrong: both reasons are named.
  c = EvaluateResolverCheck("127.0.0.1:53", "probe.test", &data, "test", &plain);
  CHECK(c.status == ResolverCheckStatus::kNotValidating);
  CHECK(Contains(c.summary, "probe.test"));
  CHECK(Contains(c.summary, "without AD"));

  // Nothing learnt: timeouts, REFUSED, SERVFAIL for the secure name.
  CHECK(EvaluateResolverCheck("r", "probe.test", &timeout, "test", &secure).status ==
        ResolverCheckStatus::kInconclusive);
  CHECK(EvaluateResolverCheck("r", "probe.test", &refused, "test", &secure).status ==
        ResolverCheckStatus::kInconclusive);
  c = EvaluateResolverCheck("r", "probe.test", &servfail, "test", &servfail);
  CHECK(c.status == ResolverCheckStatus::kInconclusive);
  CHECK(Contains(c.summary, "inconclusive"));
  // ... but a proof wins over an inconclusive half.
  CHECK(EvaluateResolverCheck("r", "probe.test", &data, "test", &timeout).status ==
        ResolverCheckStatus::kNotValidating);

  // One name only.
  CHECK(EvaluateResolverCheck("r", "", nullptr, "test", &secure).status == ResolverCheckStatus::kValidates);
  CHECK(EvaluateResolverCheck("r", "", nullptr, "test", &plain).status == ResolverCheckStatus::kNotValidating);
  CHECK(EvaluateResolverCheck("r", "probe.test", &servfail, "", nullptr).status == ResolverCheckStatus::kValidates);
}

TEST_CASE("resolver check: a validating resolver changes nothing") {
  Bed b;
  auto c = b.resolver->RunSelfCheck(1700000000);
  REQUIRE(c);
  CHECK(c->status == ResolverCheckStatus::kValidates);
  CHECK(c->checked_at == 1700000000);
  CHECK(b.resolver->dnssec_trusted());
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK(p.dnssec == DnssecStatus::kSecure);
  REQUIRE(p.resolver_check);
  CHECK(p.resolver_check->status == ResolverCheckStatus::kValidates);
  std::string j = PolicyToJsonLine(p);
  CHECK(Contains(j, "\"resolver_check\":{"));
  CHECK(Contains(j, "\"status\":\"validates\""));
  CHECK_FALSE(Contains(PolicyToText(p), "resolver check"));
}

TEST_CASE("resolver check: a resolver that does not validate makes DANE unavailable, never insecure") {
  Bed b;
  b.transport.validating = false;
  // Before any check, an unchecked non-validating resolver reads as
  // insecure: the very failure the check exists for.
  DomainPolicy before = b.Run("example.org");
  CHECK(before.dnssec == DnssecStatus::kInsecure);
  CHECK_FALSE(before.resolver_check);

  auto c = b.resolver->RunSelfCheck(1700000000);
  REQUIRE(c);
  CHECK(c->status == ResolverCheckStatus::kNotValidating);
  CHECK_FALSE(b.resolver->dnssec_trusted());
  CHECK(Contains(b.resolver->dnssec_untrusted_reason(), "resolver does not validate"));

  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mechanism == Mechanism::kNone);
  CHECK(p.dnssec == DnssecStatus::kIndeterminate);
  CHECK(Contains(p.reason, "resolver does not validate"));
  REQUIRE(p.mx.size() == 1);
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(p.mx[0].dnssec == DnssecStatus::kIndeterminate);
  CHECK(Contains(p.mx[0].reason, "resolver does not validate"));
  CHECK_FALSE(p.mx[0].tlsa_looked_up);
  REQUIRE(p.resolver_check);
  CHECK(p.resolver_check->status == ResolverCheckStatus::kNotValidating);
  std::string j = PolicyToJsonLine(p);
  CHECK(Contains(j, "\"status\":\"not-validating\""));
  CHECK(Contains(j, "\"name\":\"probe.bogus.example\""));
  CHECK(Contains(PolicyToText(p), "resolver check: not-validating: resolver does not validate"));

  // A failure stays a failure: NXDOMAIN answers are indeterminate too.
  DomainPolicy nx = b.Run("nosuch.example.org");
  CHECK(nx.verdict == Verdict::kFail);
  CHECK(nx.dnssec == DnssecStatus::kIndeterminate);
}

TEST_CASE("resolver check: an inconclusive re-check keeps a negative verdict, a good one restores trust") {
  Bed b;
  b.transport.validating = false;
  REQUIRE(b.resolver->RunSelfCheck(1)->status == ResolverCheckStatus::kNotValidating);
  b.transport.dead = true;
  auto c = b.resolver->RunSelfCheck(2);
  REQUIRE(c);
  CHECK(c->status == ResolverCheckStatus::kNotValidating);
  CHECK(Contains(c->summary, "inconclusive"));
  CHECK(c->checked_at == 2);
  CHECK_FALSE(b.resolver->dnssec_trusted());
  b.transport.dead = false;
  b.transport.validating = true;
  c = b.resolver->RunSelfCheck(3);
  CHECK(c->status == ResolverCheckStatus::kValidates);
  CHECK(b.resolver->dnssec_trusted());
  CHECK(b.Run("example.org").verdict == Verdict::kMustTls);

  // Inconclusive from the start: the AD bit keeps being trusted (a dead
  // resolver fails every lookup anyway), and the output says so.
  Bed d;
  d.transport.dead = true;
  c = d.resolver->RunSelfCheck(4);
  REQUIRE(c);
  CHECK(c->status == ResolverCheckStatus::kInconclusive);
  CHECK(d.resolver->dnssec_trusted());
  DomainPolicy p = d.Run("example.org");
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(Contains(PolicyToText(p), "resolver check: inconclusive"));
}

TEST_CASE("resolver check: names asked, the root, nothing configured, untrusted resolvers") {
  Bed root("probe.bogus.example", ".");
  auto c = root.resolver->RunSelfCheck(1);
  REQUIRE(c);
  CHECK(c->status == ResolverCheckStatus::kValidates);
  CHECK(c->secure_name == ".");
  CHECK(root.transport.probe_asked == 1);

  Bed none("", "");
  CHECK_FALSE(none.resolver->RunSelfCheck(1));
  CHECK_FALSE(none.resolver->resolver_check());
  CHECK(none.transport.probe_asked == 0);

  FakeTransport t;
  ResolverModeOptions o;
  o.trust_ad = false;
  o.untrusted_reason = "not on loopback";
  o.probe_name = "probe.bogus.example";
  o.secure_name = ".";
  auto r = NewResolverModeResolver(&t, o);
  CHECK_FALSE(r->RunSelfCheck(1));
  CHECK(t.probe_asked == 0);
  CHECK(r->dnssec_untrusted_reason() == "not on loopback");
}

TEST_CASE("resolver check: configuration of the check names") {
  Config c;
  CHECK(c.dnssec_probe.empty());
  CHECK(c.dnssec_probe_secure == ".");
  REQUIRE(ParseConfigText("dnssec_probe = Probe.Bogus.Test.\ndnssec_probe_secure = Test.\n", "t", &c).ok());
  CHECK(c.dnssec_probe == "probe.bogus.test");
  CHECK(c.dnssec_probe_secure == "test");
  REQUIRE(ParseConfigText("dnssec_probe_secure = .\n", "t", &c).ok());
  CHECK(c.dnssec_probe_secure == ".");
  REQUIRE(ParseConfigText("dnssec_probe_secure =\n", "t", &c).ok());
  CHECK(c.dnssec_probe_secure.empty());
  Status bad = ParseConfigText("dnssec_probe_secure = a..b\n", "t", &c);
  CHECK_FALSE(bad.ok());
  CHECK(Contains(bad.message(), "dnssec_probe_secure"));
}
