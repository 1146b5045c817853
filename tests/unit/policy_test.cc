// policy_test.cc - the decision table (man/mxsec.8, POLICY), with a fake resolver,
// a fake MTA-STS server and a fake clock.
#include <doctest/doctest.h>

#include "fakes.h"
#include "mxsec/base/clock.h"
#include "mxsec/policy/policy.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

constexpr auto S = DnssecStatus::kSecure;
constexpr auto I = DnssecStatus::kInsecure;
constexpr auto B = DnssecStatus::kBogus;
constexpr auto X = DnssecStatus::kIndeterminate;

const char* kEnforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmx: *.backup.example.org\r\nmax_age: 86400\r\n";

struct Bed {
  FakeResolver dns;
  FakeStsServer web;
  FakeClock clock{1700000000};
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  PolicyOptions options;

  DomainPolicy Run(const std::string& domain) {
    PolicyEngine engine(&dns, [this] { return std::make_unique<FakeStsFetcher>(&web); }, cache.get(), &clock,
                        options);
    return engine.Resolve(domain);
  }
  // example.org with one MX host mx1.example.org.
  void OneMx(DnssecStatus mx_status, DnssecStatus host_status) {
    dns.Records("example.org", RrType::kMX, mx_status, {MxRec("example.org", 10, "mx1.example.org")});
    dns.Host("mx1.example.org", "192.0.2.1", host_status);
  }
  void StsTxt(const std::string& id) {
    dns.Records("_mta-sts.example.org", RrType::kTXT, I, {TxtRec("_mta-sts.example.org", "v=STSv1; id=" + id)});
    dns.Host("mta-sts.example.org", "192.0.2.80", I);
  }
};

}  // namespace

TEST_CASE("policy: DANE-EE on a secure domain requires TLS by DANE") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK(p.dnssec == S);
  REQUIRE(p.mx.size() == 1);
  CHECK(p.mx[0].tls == HostTls::kDane);
  CHECK(p.mx[0].tlsa_base == "mx1.example.org");
  CHECK(p.mx[0].addresses == std::vector<std::string>{"192.0.2.1"});
  CHECK(b.dns.batches == 2);  // MX+TXT, then addresses+TLSA together
}

TEST_CASE("policy: secure TLSA with only unusable records means encrypt") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S,
                {TlsaRec("_25._tcp.mx1.example.org", 1, 1, 1), TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1, 31)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK(p.mx[0].tls == HostTls::kEncrypt);
  CHECK(p.mx[0].tlsa.size() == 2);
}

TEST_CASE("policy: bogus or indeterminate MX defers the domain") {
  for (DnssecStatus st : {B, X}) {
    Bed b;
    b.dns.Fail("example.org", RrType::kMX, st);
    DomainPolicy p = b.Run("example.org");
    CHECK(p.verdict == Verdict::kDefer);
    CHECK(p.status_code == "4.4.3");
    CHECK(p.dnssec == st);
    CHECK(p.mx.empty());
  }
}

TEST_CASE("policy: NXDOMAIN fails, null MX fails without address lookups") {
  Bed b;
  DomainPolicy p = b.Run("nosuch.example");
  CHECK(p.verdict == Verdict::kFail);
  CHECK(p.status_code == "5.1.2");

  b.dns.Records("null.example", RrType::kMX, S, {MxRec("null.example", 0, "")});
  p = b.Run("null.example");
  CHECK(p.verdict == Verdict::kFail);
  CHECK(p.status_code == "5.1.10");
  CHECK_FALSE(b.dns.Asked("null.example", RrType::kA));
}

TEST_CASE("policy: a null MX mixed with real MX records is ignored") {
  Bed b;
  b.dns.Records("example.org", RrType::kMX, I,
                {MxRec("example.org", 0, ""), MxRec("example.org", 10, "mx1.example.org")});
  b.dns.Host("mx1.example.org", "192.0.2.1", I);
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mx.size() == 1);
  CHECK(p.notes.size() == 1);
}

TEST_CASE("policy: no MX means the domain itself, with TLSA at _25._tcp.<domain>") {
  Bed b;
  b.dns.NoData("example.org", RrType::kMX, S);
  b.dns.Host("example.org", "192.0.2.9", S);
  b.dns.Records("_25._tcp.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.implicit_mx);
  REQUIRE(p.mx.size() == 1);
  CHECK(p.mx[0].host == "example.org");
  CHECK(p.mx[0].tls == HostTls::kDane);
  CHECK(p.verdict == Verdict::kMustTls);
}

TEST_CASE("policy: insecure MX RRset means no DANE and no TLSA query") {
  Bed b;
  b.OneMx(I, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mechanism == Mechanism::kNone);
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK_FALSE(b.dns.Asked("_25._tcp.mx1.example.org", RrType::kTLSA));
}

TEST_CASE("policy: secure MX but insecure host addresses means no DANE for that host") {
  Bed b;
  b.OneMx(S, I);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(p.mx[0].reason.find("insecure") != std::string::npos);
}

TEST_CASE("policy: a failed TLSA lookup takes the host out of use") {
  for (DnssecStatus st : {B, X}) {
    Bed b;
    b.OneMx(S, S);
    b.dns.Fail("_25._tcp.mx1.example.org", RrType::kTLSA, st);
    DomainPolicy p = b.Run("example.org");
    CHECK(p.verdict == Verdict::kDefer);
    CHECK(p.mechanism == Mechanism::kDane);
    CHECK(p.status_code == "4.7.5");
    CHECK(p.mx[0].tls == HostTls::kSkip);
    CHECK(p.mx[0].tlsa_dnssec == st);
  }
}

TEST_CASE("policy: preferred host with failed TLSA, backup with DANE: must-tls") {
  Bed b;
  b.dns.Records("example.org", RrType::kMX, S,
                {MxRec("example.org", 10, "mx1.example.org"), MxRec("example.org", 20, "mx2.example.org")});
  b.dns.Host("mx1.example.org", "192.0.2.1", S);
  b.dns.Host("mx2.example.org", "192.0.2.2", S);
  b.dns.Fail("_25._tcp.mx1.example.org", RrType::kTLSA, X);
  b.dns.Records("_25._tcp.mx2.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx2.example.org", 2, 0, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mx[0].tls == HostTls::kSkip);
  CHECK(p.mx[1].tls == HostTls::kDane);
}

TEST_CASE("policy: a backup MX without DANE makes the domain opportunistic") {
  Bed b;
  b.dns.Records("example.org", RrType::kMX, S,
                {MxRec("example.org", 10, "mx1.example.org"), MxRec("example.org", 20, "mx.other.example")});
  b.dns.Host("mx1.example.org", "192.0.2.1", S);
  b.dns.Host("mx.other.example", "192.0.2.2", I);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mx[0].tls == HostTls::kDane);
  CHECK(p.mx[1].tls == HostTls::kMay);
  CHECK(p.reason.find("mx.other.example") != std::string::npos);
}

TEST_CASE("policy: MX host that is a CNAME: TLSA base is the expanded name first, then the alias") {
  SUBCASE("records at the expanded name") {
    Bed b;
    b.OneMx(S, S);
    b.dns.Records("mx1.example.org", RrType::kA, S, {ARec("real.example.net", "192.0.2.7")}, {"real.example.net"});
    b.dns.Records("_25._tcp.real.example.net", RrType::kTLSA, S, {TlsaRec("_25._tcp.real.example.net", 3, 1, 1)});
    DomainPolicy p = b.Run("example.org");
    CHECK(p.mx[0].tls == HostTls::kDane);
    CHECK(p.mx[0].tlsa_base == "real.example.net");
    CHECK(p.mx[0].cname_chain == std::vector<std::string>{"real.example.net"});
  }
  SUBCASE("nothing at the expanded name: fall back to the alias") {
    Bed b;
    b.OneMx(S, S);
    b.dns.Records("mx1.example.org", RrType::kA, S, {ARec("real.example.net", "192.0.2.7")}, {"real.example.net"});
    b.dns.NoData("_25._tcp.real.example.net", RrType::kTLSA, S);
    b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
    DomainPolicy p = b.Run("example.org");
    CHECK(p.mx[0].tls == HostTls::kDane);
    CHECK(p.mx[0].tlsa_base == "mx1.example.org");
  }
  SUBCASE("failure at the expanded name is a failure, not a fallback") {
    Bed b;
    b.OneMx(S, S);
    b.dns.Records("mx1.example.org", RrType::kA, S, {ARec("real.example.net", "192.0.2.7")}, {"real.example.net"});
    b.dns.Fail("_25._tcp.real.example.net", RrType::kTLSA, B);
    b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
    DomainPolicy p = b.Run("example.org");
    CHECK(p.mx[0].tls == HostTls::kSkip);
    CHECK(p.verdict == Verdict::kDefer);
  }
}

TEST_CASE("policy: insecure TLSA records are ignored") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, I, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(p.verdict == Verdict::kOpportunistic);
}

TEST_CASE("policy: an untrusted resolver turns DANE off and says why") {
  Bed b;
  b.dns.trusted = false;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.reason.find("not trusted") != std::string::npos);
  CHECK_FALSE(b.dns.Asked("_25._tcp.mx1.example.org", RrType::kTLSA));
}

TEST_CASE("policy: MTA-STS enforce: matching hosts need PKIX, others are not used") {
  Bed b;
  b.dns.Records("example.org", RrType::kMX, I,
                {MxRec("example.org", 10, "mx1.example.org"), MxRec("example.org", 20, "a.backup.example.org"),
                 MxRec("example.org", 30, "a.b.backup.example.org")});
  b.dns.Host("mx1.example.org", "192.0.2.1", I);
  b.dns.Host("a.backup.example.org", "192.0.2.2", I);
  b.dns.Host("a.b.backup.example.org", "192.0.2.3", I);
  b.StsTxt("abc");
  b.web.Serve("example.org", kEnforce);
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kMtaSts);
  CHECK(p.mx[0].tls == HostTls::kPkix);
  CHECK(p.mx[1].tls == HostTls::kPkix);
  CHECK(p.mx[2].tls == HostTls::kSkip);
  REQUIRE(p.mta_sts);
  CHECK(p.mta_sts->source == "fetched");
  CHECK(p.mta_sts->id == "abc");
  CHECK(b.web.last_addresses == std::vector<std::string>{"192.0.2.80"});
  auto cached = b.cache->Get("example.org");
  REQUIRE(cached);
  CHECK(cached->expires_at == 1700000000 + 86400);
}

TEST_CASE("policy: MTA-STS testing and none change nothing on the wire") {
  Bed b;
  b.OneMx(I, I);
  b.StsTxt("t1");
  b.web.Serve("example.org", "version: STSv1\nmode: testing\nmx: mx1.example.org\nmax_age: 600\n");
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mechanism == Mechanism::kNone);
  CHECK(p.mx[0].tls == HostTls::kMay);
  REQUIRE(p.mta_sts);
  CHECK(p.mta_sts->mode == StsMode::kTesting);

  b.StsTxt("t2");
  b.web.Serve("example.org", "version: STSv1\nmode: none\nmax_age: 600\n");
  p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mta_sts->mode == StsMode::kNone);
}

TEST_CASE("policy: MTA-STS cache: same id no refetch, new id refetch, failure keeps the cached policy") {
  Bed b;
  b.OneMx(I, I);
  b.StsTxt("one");
  b.web.Serve("example.org", kEnforce);
  CHECK(b.Run("example.org").verdict == Verdict::kMustTls);
  CHECK(b.web.fetches["example.org"] == 1);

  DomainPolicy p = b.Run("example.org");
  CHECK(b.web.fetches["example.org"] == 1);
  CHECK(p.mta_sts->source == "cache");
  CHECK(p.verdict == Verdict::kMustTls);

  b.StsTxt("two");
  b.web.Break("example.org", "HTTP status 500");
  p = b.Run("example.org");
  CHECK(b.web.fetches["example.org"] == 2);
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mta_sts->source == "cache");
  CHECK(p.mta_sts->id == "one");
  REQUIRE(p.mta_sts->error);
  CHECK(p.mta_sts->error->find("HTTP status 500") != std::string::npos);

  b.web.Serve("example.org", "version: STSv1\nmode: none\nmax_age: 600\n");
  p = b.Run("example.org");
  CHECK(b.web.fetches["example.org"] == 3);
  CHECK(p.mta_sts->mode == StsMode::kNone);
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(b.cache->Get("example.org")->policy.mode == StsMode::kNone);
}

TEST_CASE("policy: MTA-STS TXT gone or failing: an unexpired cached policy still applies") {
  Bed b;
  b.OneMx(I, I);
  b.StsTxt("one");
  b.web.Serve("example.org", kEnforce);
  b.Run("example.org");
  b.dns.NoData("_mta-sts.example.org", RrType::kTXT, I);
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mta_sts->source == "cache");
  b.dns.Fail("_mta-sts.example.org", RrType::kTXT, X);
  p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  // Expired: no policy any more.
  b.clock.Advance(86401);
  p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
}

TEST_CASE("policy: expired cache with the same id is fetched again") {
  Bed b;
  b.OneMx(I, I);
  b.StsTxt("one");
  b.web.Serve("example.org", kEnforce);
  b.Run("example.org");
  b.clock.Advance(86401);
  DomainPolicy p = b.Run("example.org");
  CHECK(b.web.fetches["example.org"] == 2);
  CHECK(p.mta_sts->source == "fetched");
}

TEST_CASE("policy: fetch failure without a cached policy: no MTA-STS, error shown") {
  Bed b;
  b.OneMx(I, I);
  b.StsTxt("one");
  b.web.Break("example.org", "redirect refused (301)");
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  REQUIRE(p.mta_sts);
  CHECK(p.mta_sts->mode == StsMode::kNone);
  CHECK(p.mta_sts->error->find("redirect") != std::string::npos);
  CHECK_FALSE(b.cache->Get("example.org"));

  b.web.Serve("example.org", "version: STSv1\nmode: enforce\nmode: enforce\nmx: a.b\nmax_age: 1\n");
  p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mta_sts->error->find("invalid policy") != std::string::npos);
}

TEST_CASE("policy: the MTA-STS problem is typed for the TLS report, whatever the words") {
  Bed b;
  b.OneMx(I, I);
  b.StsTxt("one");
  b.web.Break("example.org", "HTTP status 404");
  CHECK(b.Run("example.org").mta_sts->problem == StsProblem::kFetchFailed);
  b.dns.NoData("mta-sts.example.org", RrType::kA, I);
  b.dns.NoData("mta-sts.example.org", RrType::kAAAA, I);
  DomainPolicy p = b.Run("example.org");
  CHECK(*p.mta_sts->error == "policy fetch failed: no address for mta-sts.example.org (nodata)");
  CHECK(p.mta_sts->problem == StsProblem::kFetchFailed);
  b.StsTxt("one");
  b.web.Serve("example.org", "version: STSv1\nmode: enforced\nmax_age: 1\n");
  CHECK(b.Run("example.org").mta_sts->problem == StsProblem::kPolicyInvalid);
  b.web.Serve("example.org", kEnforce);
  CHECK(b.Run("example.org").mta_sts->problem == StsProblem::kNone);
}

TEST_CASE("policy: an MX host that is a CNAME costs a third round trip, nothing else does") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("mx1.example.org", RrType::kA, S, {ARec("real.example.net", "192.0.2.7")}, {"real.example.net"});
  b.dns.Records("_25._tcp.real.example.net", RrType::kTLSA, S, {TlsaRec("_25._tcp.real.example.net", 3, 1, 1)});
  b.StsTxt("x");
  b.web.Serve("example.org", kEnforce);
  DomainPolicy p = b.Run("example.org");
  CHECK(b.dns.batches == 3);
  CHECK(b.web.fetches["example.org"] == 1);
  CHECK(p.mx[0].tls == HostTls::kDane);
}

TEST_CASE("policy: DANE wins over MTA-STS") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  b.StsTxt("x");
  b.web.Serve("example.org", kEnforce);
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK(p.mx[0].tls == HostTls::kDane);
  CHECK(p.mta_sts->mode == StsMode::kEnforce);
}

TEST_CASE("policy: MTA-STS enforce with no matching host defers") {
  Bed b;
  b.dns.Records("example.org", RrType::kMX, I, {MxRec("example.org", 10, "evil.example.net")});
  b.dns.Host("evil.example.net", "192.0.2.66", I);
  b.StsTxt("x");
  b.web.Serve("example.org", kEnforce);
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.mechanism == Mechanism::kMtaSts);
  CHECK(p.mx[0].tls == HostTls::kSkip);
}

TEST_CASE("policy: hosts without addresses: fail when definite, defer when a lookup failed") {
  Bed b;
  b.dns.Records("example.org", RrType::kMX, S, {MxRec("example.org", 10, "gone.example.org")});
  DomainPolicy p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kFail);
  CHECK(p.status_code == "5.4.4");

  b.dns.Fail("gone.example.org", RrType::kA, X);
  b.dns.Fail("gone.example.org", RrType::kAAAA, X);
  p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.4.3");
}

TEST_CASE("policy: hostile MX data: invalid host names are skipped, duplicates merged, count capped") {
  Bed b;
  std::vector<DnsRecord> mx{MxRec("example.org", 10, "bad_name.example.org"), MxRec("example.org", 5, "mx1.example.org"),
                            MxRec("example.org", 50, "mx1.example.org")};
  for (int i = 0; i < 40; ++i) mx.push_back(MxRec("example.org", 100, "h" + std::to_string(i) + ".example.org"));
  b.dns.Records("example.org", RrType::kMX, I, mx);
  b.dns.Host("mx1.example.org", "192.0.2.1", I);
  DomainPolicy p = b.Run("example.org");
  CHECK(p.mx.size() == 20);
  CHECK(p.mx[0].host == "mx1.example.org");
  CHECK(p.mx[0].preference == 5);
  CHECK(p.mx[1].tls == HostTls::kSkip);
  CHECK(p.verdict == Verdict::kOpportunistic);
}

TEST_CASE("policy: ResolveMany answers in order, concurrently") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  PolicyEngine engine(&b.dns, [&] { return std::make_unique<FakeStsFetcher>(&b.web); }, b.cache.get(), &b.clock,
                      b.options);
  std::vector<std::string> domains;
  for (int i = 0; i < 50; ++i) domains.push_back(i % 2 ? "example.org" : "nosuch" + std::to_string(i) + ".example");
  auto out = engine.ResolveMany(domains);
  REQUIRE(out.size() == 50);
  for (int i = 0; i < 50; ++i) {
    CHECK(out[i].domain == domains[i]);
    CHECK(out[i].verdict == (i % 2 ? Verdict::kMustTls : Verdict::kFail));
  }
}

TEST_CASE("policy: JSON line has the documented fields") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  std::string j = PolicyToJsonLine(b.Run("example.org"));
  for (const char* field : {"\"domain\":\"example.org\"", "\"policy\":\"must-tls\"", "\"mechanism\":\"dane\"",
                            "\"dnssec\":\"secure\"", "\"tls\":\"dane\"", "\"usage\":3", "\"mta_sts\":null",
                            "\"preference\":10", "\"addresses\":[\"192.0.2.1\"]"}) {
    CHECK_MESSAGE(j.find(field) != std::string::npos, field);
  }
  CHECK(j.find('\n') == std::string::npos);
}

TEST_CASE("policy: every lookup is listed with its status and mode (provenance)") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  DomainPolicy p = b.Run("example.org");
  auto find = [&](const std::string& name, const std::string& type) -> const LookupTrace* {
    for (const LookupTrace& t : p.lookups)
      if (t.name == name && t.type == type) return &t;
    return nullptr;
  };
  const LookupTrace* mx = find("example.org", "MX");
  REQUIRE(mx != nullptr);
  CHECK(mx->outcome == "records");
  CHECK(mx->dnssec == DnssecStatus::kSecure);
  CHECK(mx->mode == "resolver");
  CHECK(mx->how.empty());
  const LookupTrace* tlsa = find("_25._tcp.mx1.example.org", "TLSA");
  REQUIRE(tlsa != nullptr);
  CHECK(tlsa->dnssec == DnssecStatus::kSecure);
  CHECK(find("mx1.example.org", "A") != nullptr);
  std::string j = PolicyToJsonLine(p);
  CHECK(j.find("\"lookups\":[{") != std::string::npos);
  CHECK(j.find("{\"dnssec\":\"secure\",\"how\":[],\"mode\":\"resolver\",\"name\":\"example.org\","
               "\"outcome\":\"records\",\"type\":\"MX\"}") != std::string::npos);
}

namespace {
// A cache whose reads fail, as a locked or damaged SQLite file does.
class BrokenCache : public StsCache {
 public:
  Result<std::optional<CachedStsPolicy>> Lookup(const std::string&) override {
    return Status::Error("database is locked");
  }
  Status Put(const CachedStsPolicy&) override { return Status::Error("database is locked"); }
  Status Remove(const std::string&) override { return Status::Ok(); }
};
}  // namespace

TEST_CASE("policy: an unreadable MTA-STS cache is never read as 'no policy'") {
  Bed b;
  b.cache = std::make_unique<BrokenCache>();
  b.OneMx(I, I);
  DomainPolicy p = b.Run("example.org");  // no TXT: a cached policy might exist
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.3.0");
  CHECK(p.reason.find("database is locked") != std::string::npos);

  b.StsTxt("x");  // a fresh fetch settles it
  b.web.Serve("example.org", kEnforce);
  p = b.Run("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kMtaSts);
}
