// local_policy_test.cc - the local_policy_file parser, and what its rules do
// to the decision of the policy engine (fake resolver, fake MTA-STS server)
// and to the Postfix socketmap reply.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#ifndef MXSEC_TEST_DATA_DIR
#error "MXSEC_TEST_DATA_DIR must be the absolute path of tests/unit/data"
#endif

#include "fakes.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/policy/policy.h"
#include "mxsec/serve/socketmap.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

constexpr auto S = DnssecStatus::kSecure;
constexpr auto I = DnssecStatus::kInsecure;
constexpr auto X = DnssecStatus::kIndeterminate;

Result<LocalPolicy> P(const std::string& text) { return LocalPolicy::Parse(text, "lp"); }

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("local policy: valid table, comments, blank lines, normal form") {
  auto t = P("# partners\n\n  Example.ORG.  verify match=MX1.example.org:mx2.example.org  # comment\n"
             ".example.net encrypt\r\nexample.com\tmay\n.sub.example.net dane-only\n");
  REQUIRE(t.ok());
  CHECK(t->size() == 4);
  const LocalRule* r = t->Find("example.org");
  REQUIRE(r);
  CHECK(r->policy == LocalTls::kVerify);
  CHECK(r->domain == "example.org");
  CHECK_FALSE(r->subdomains);
  CHECK(r->match == std::vector<std::string>{"mx1.example.org", "mx2.example.org"});
  CHECK(r->source == "lp:3");
  REQUIRE(t->Find("example.com"));
  CHECK(t->Find("example.com")->policy == LocalTls::kMay);
  CHECK(t->Find("example.com")->source == "lp:5");
  CHECK(LocalTlsName(LocalTls::kDaneOnly) == std::string("dane-only"));
}

TEST_CASE("local policy: exact wins, parent rules cover subdomains only, longest suffix wins") {
  auto t = P(".example.net encrypt\n.sub.example.net dane-only\nexact.sub.example.net may\n");
  REQUIRE(t.ok());
  CHECK(t->Find("example.net") == nullptr);  // ".example.net" is not example.net itself
  REQUIRE(t->Find("a.example.net"));
  CHECK(t->Find("a.example.net")->policy == LocalTls::kEncrypt);
  CHECK(t->Find("a.example.net")->Key() == ".example.net");
  REQUIRE(t->Find("sub.example.net"));
  CHECK(t->Find("sub.example.net")->policy == LocalTls::kEncrypt);  // sub.example.net is under .example.net
  REQUIRE(t->Find("x.y.sub.example.net"));
  CHECK(t->Find("x.y.sub.example.net")->policy == LocalTls::kDaneOnly);
  REQUIRE(t->Find("exact.sub.example.net"));
  CHECK(t->Find("exact.sub.example.net")->policy == LocalTls::kMay);
  CHECK(t->Find("example.org") == nullptr);
  CHECK(t->Find("xexample.net") == nullptr);
}

TEST_CASE("local policy: every error names the file and line") {
  struct Case {
    std::string text, want;
  } cases[] = {
      {"example.org\n", "lp:1: \"example.org\" has no policy"},
      {"# c\nexample.org none\n", "lp:2: unknown policy \"none\""},
      {"example.org secure\n", "lp:1: unknown policy \"secure\""},
      {"example.org plaintext\n", "lp:1: unknown policy"},
      {"exa_mple.org may\n", "lp:1: bad domain \"exa_mple.org\""},
      {"..example.org may\n", "lp:1: bad domain"},
      {". may\n", "lp:1: bad domain"},
      {"[192.0.2.1] may\n", "lp:1: bad domain"},
      {"example.org encrypt match=mx.example.org\n", "lp:1: match= is only valid with the policy verify, not encrypt"},
      {"example.org may match=mx.example.org\n", "lp:1: match= is only valid with the policy verify"},
      {"example.org verify match=\n", "lp:1: match= without a name"},
      {"example.org verify match=a.example.org::b.example.org\n", "lp:1: bad name \"\" in match="},
      {"example.org verify match=bad_name.org\n", "lp:1: bad name \"bad_name.org\""},
      {"example.org verify servername=x\n", "lp:1: unknown attribute \"servername=x\""},
      {"example.org may\n\nEXAMPLE.org. encrypt\n", "lp:3: duplicate domain \"example.org\" (first at lp:1)"},
      {".example.org may\n.example.org may\n", "lp:2: duplicate domain \".example.org\""},
      {"a.org may\n" + std::string(1001, 'x') + "\n", "lp:2: line is longer than 1000 characters"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto t = P(c.text);
    REQUIRE_FALSE(t.ok());
    CHECK(Contains(t.error(), c.want));
  }
  // Exactly 1000 characters is allowed (a comment line).
  CHECK(P("#" + std::string(999, 'x') + "\n").ok());
  // ".example.org" and "example.org" are different rules, not duplicates.
  CHECK(P("example.org may\n.example.org encrypt\n").ok());
}

TEST_CASE("local policy: file size limit and unreadable files") {
  std::string big(kLocalPolicyMaxFile + 1, '\n');
  auto t = P(big);
  REQUIRE_FALSE(t.ok());
  CHECK(Contains(t.error(), "lp: file is larger than 1048576 bytes"));
  CHECK(P(std::string(kLocalPolicyMaxFile, '\n')).ok());

  char dir[] = "/tmp/mxsec-lp-test.XXXXXX";
  REQUIRE(mkdtemp(dir));
  const std::string path = std::string(dir) + "/policy";
  auto missing = LocalPolicy::Load(path);
  REQUIRE_FALSE(missing.ok());
  CHECK(Contains(missing.error(), path + ": cannot open the local policy file"));
  {
    std::ofstream f(path);
    f << "example.org may\nexample.org bogus\n";
  }
  auto bad = LocalPolicy::Load(path);
  REQUIRE_FALSE(bad.ok());
  CHECK(Contains(bad.error(), path + ":2: unknown policy \"bogus\""));
  {
    std::ofstream f(path);
    f << std::string(kLocalPolicyMaxFile + 10, '#');
  }
  auto huge = LocalPolicy::Load(path);
  REQUIRE_FALSE(huge.ok());
  CHECK(Contains(huge.error(), "larger than 1048576 bytes"));
  {
    std::ofstream f(path);
    f << "example.org encrypt\n";
  }
  auto good = LocalPolicy::Load(path);
  REQUIRE(good.ok());
  REQUIRE(good->Find("example.org"));
  CHECK(good->Find("example.org")->source == path + ":1");
  // A directory cannot be read as a table.
  auto isdir = LocalPolicy::Load(dir);
  CHECK_FALSE(isdir.ok());
  unlink(path.c_str());
  rmdir(dir);
}

namespace {

const char* kEnforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmax_age: 86400\r\n";

struct Bed {
  FakeResolver dns;
  FakeStsServer web;
  FakeClock clock{1700000000};
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  PolicyOptions options;

  DomainPolicy Run(const std::string& table, const std::string& domain = "example.org") {
    auto t = LocalPolicy::Parse(table, "/etc/mxsec/local-policy", &clock);
    REQUIRE(t.ok());
    options.local_policy = std::make_shared<const LocalPolicy>(std::move(t.value()));
    PolicyEngine engine(&dns, [this] { return std::make_unique<FakeStsFetcher>(&web); }, cache.get(), &clock,
                        options);
    return engine.Resolve(domain);
  }
  void OneMx(DnssecStatus mx_status, DnssecStatus host_status, const std::string& host = "mx1.example.org") {
    dns.Records("example.org", RrType::kMX, mx_status, {MxRec("example.org", 10, host)});
    dns.Host(host, "192.0.2.1", host_status);
  }
  void Dane() {
    OneMx(S, S);
    dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  }
  void StsEnforce() {
    OneMx(I, I);
    dns.Records("_mta-sts.example.org", RrType::kTXT, I, {TxtRec("_mta-sts.example.org", "v=STSv1; id=e1")});
    dns.Host("mta-sts.example.org", "192.0.2.80", I);
    web.Serve("example.org", kEnforce);
  }
};

}  // namespace

TEST_CASE("local policy engine: no rule for the domain changes nothing") {
  Bed b;
  b.Dane();
  DomainPolicy p = b.Run("other.example may\n.example.org may\n");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK_FALSE(p.local);
  CHECK(p.override_warning.empty());
  CHECK_FALSE(Contains(p.reason, "local_policy_file"));
}

TEST_CASE("local policy engine: dane-only keeps DANE hosts, skips the others, defers when none is left") {
  {
    Bed b;
    b.Dane();
    DomainPolicy p = b.Run("example.org dane-only\n");
    CHECK(p.verdict == Verdict::kMustTls);
    CHECK(p.mechanism == Mechanism::kDane);
    REQUIRE(p.mx.size() == 1);
    CHECK(p.mx[0].tls == HostTls::kDane);
    CHECK(Contains(p.reason, "local_policy_file /etc/mxsec/local-policy:1"));
    CHECK(Contains(p.mx[0].reason, "local_policy_file /etc/mxsec/local-policy:1"));
    CHECK(p.override_warning.empty());
    CHECK(PostfixPolicyReply(p) == "OK dane-only");
  }
  {
    // Secure MX, one host with DANE, one without TLSA, one with unusable TLSA.
    Bed b;
    b.dns.Records("example.org", RrType::kMX, S,
                  {MxRec("example.org", 10, "mx1.example.org"), MxRec("example.org", 20, "mx2.example.org"),
                   MxRec("example.org", 30, "mx3.example.org")});
    b.dns.Host("mx1.example.org", "192.0.2.1", S);
    b.dns.Host("mx2.example.org", "192.0.2.2", S);
    b.dns.Host("mx3.example.org", "192.0.2.3", S);
    b.dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
    b.dns.Records("_25._tcp.mx3.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx3.example.org", 1, 1, 1)});
    DomainPolicy p = b.Run("# x\n.org encrypt\nexample.org dane-only\n");
    CHECK(p.verdict == Verdict::kMustTls);  // without the rule: opportunistic (mx2 has no DANE)
    CHECK(p.mechanism == Mechanism::kDane);
    CHECK(p.mx[0].tls == HostTls::kDane);
    CHECK(p.mx[1].tls == HostTls::kSkip);
    CHECK(p.mx[2].tls == HostTls::kSkip);
    CHECK(Contains(p.mx[1].reason, "local policy dane-only (local_policy_file /etc/mxsec/local-policy:3) requires DANE"));
    CHECK(Contains(p.reason, "1 of 3 hosts usable"));
  }
  {
    Bed b;
    b.OneMx(I, I);  // no DANE possible
    b.dns.Records("_mta-sts.example.org", RrType::kTXT, I, {TxtRec("_mta-sts.example.org", "v=STSv1; id=e1")});
    b.web.Serve("example.org", kEnforce);
    DomainPolicy p = b.Run("example.org dane-only\n");
    CHECK(p.verdict == Verdict::kDefer);
    CHECK(p.mechanism == Mechanism::kDane);
    CHECK(p.status_code == "4.7.5");
    CHECK(p.mx[0].tls == HostTls::kSkip);
    CHECK(Contains(p.reason, "local_policy_file /etc/mxsec/local-policy:1"));
    CHECK_FALSE(p.mta_sts);  // MTA-STS is not consulted under dane-only
    CHECK(b.web.fetches.empty());
    CHECK_FALSE(b.dns.Asked("_mta-sts.example.org", RrType::kTXT));
    CHECK(PostfixPolicyReply(p).rfind("TEMP 4.7.5 ", 0) == 0);
  }
}

TEST_CASE("local policy engine: verify requires PKIX for the MX name or the match= names") {
  {
    Bed b;
    b.OneMx(I, I);
    DomainPolicy p = b.Run("example.org verify\n");
    CHECK(p.verdict == Verdict::kMustTls);
    CHECK(p.mechanism == Mechanism::kLocal);
    CHECK(p.mx[0].tls == HostTls::kPkix);
    CHECK(p.mx[0].pkix_names.empty());
    CHECK(Contains(p.reason, "local policy verify (local_policy_file /etc/mxsec/local-policy:1)"));
    CHECK(p.override_warning.empty());  // opportunistic before: nothing weakened
    CHECK(PostfixPolicyReply(p) == "OK secure match=hostname servername=hostname");
  }
  {
    Bed b;
    b.OneMx(I, I);
    DomainPolicy p = b.Run(".org may\nexample.org verify match=mx.example.net:backup.example.net\n");
    CHECK(p.mechanism == Mechanism::kLocal);
    CHECK(p.mx[0].tls == HostTls::kPkix);
    CHECK(p.mx[0].pkix_names == std::vector<std::string>{"mx.example.net", "backup.example.net"});
    CHECK(Contains(p.reason, "one of mx.example.net, backup.example.net"));
    CHECK(Contains(p.reason, "local-policy:2"));
    CHECK(PostfixPolicyReply(p) == "OK secure match=mx.example.net:backup.example.net servername=hostname");
  }
}

TEST_CASE("local policy engine: encrypt requires TLS without checking, even where a TLSA lookup failed") {
  Bed b;
  b.OneMx(S, S);
  b.dns.Fail("_25._tcp.mx1.example.org", RrType::kTLSA, X);
  DomainPolicy p = b.Run("example.org encrypt\n");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kLocal);
  CHECK(p.mx[0].tls == HostTls::kEncrypt);
  CHECK(p.status_code.empty());
  CHECK(Contains(p.reason, "local policy encrypt (local_policy_file /etc/mxsec/local-policy:1) overrides DANE defer"));
  CHECK_FALSE(p.override_warning.empty());
  CHECK(PostfixPolicyReply(p) == "OK encrypt");
}

TEST_CASE("local policy engine: may overrides DANE and MTA-STS enforce, and says so") {
  {
    Bed b;
    b.Dane();
    DomainPolicy p = b.Run("example.org may\n");
    CHECK(p.verdict == Verdict::kOpportunistic);
    CHECK(p.mechanism == Mechanism::kNone);
    CHECK(p.mx[0].tls == HostTls::kMay);
    CHECK(Contains(p.reason, "local policy may (local_policy_file /etc/mxsec/local-policy:1) overrides DANE must-tls"));
    CHECK(Contains(p.override_warning, "example.org: local policy may"));
    CHECK(Contains(p.override_warning, "overrides DANE must-tls"));
    REQUIRE(p.local);
    CHECK(p.local->policy == LocalTls::kMay);
    CHECK(PostfixPolicyReply(p) == "OK may");
  }
  {
    Bed b;
    b.StsEnforce();
    DomainPolicy p = b.Run(".example.org encrypt\n.org may\n");
    CHECK(p.verdict == Verdict::kOpportunistic);
    CHECK(p.mx[0].tls == HostTls::kMay);
    CHECK(Contains(p.reason, "local policy may (local_policy_file /etc/mxsec/local-policy:2) overrides MTA-STS enforce (id e1) must-tls"));
    CHECK_FALSE(p.override_warning.empty());
    CHECK(PostfixPolicyReply(p) == "OK may");
  }
  {
    // A host that MTA-STS enforce excluded is usable under may.
    Bed b;
    b.StsEnforce();
    b.dns.Records("example.org", RrType::kMX, I, {MxRec("example.org", 10, "other.example.org")});
    b.dns.Host("other.example.org", "192.0.2.9", I);
    DomainPolicy p = b.Run("example.org may\n");
    CHECK(p.verdict == Verdict::kOpportunistic);
    CHECK(p.mx[0].tls == HostTls::kMay);
    CHECK(Contains(p.reason, "overrides MTA-STS enforce"));
  }
  {
    // Nothing demanded: no override, no warning, still named.
    Bed b;
    b.OneMx(I, I);
    DomainPolicy p = b.Run("example.org may\n");
    CHECK(p.verdict == Verdict::kOpportunistic);
    CHECK(p.override_warning.empty());
    CHECK_FALSE(Contains(p.reason, "overrides"));
    CHECK(Contains(p.reason, "local_policy_file /etc/mxsec/local-policy:1"));
  }
}

TEST_CASE("local policy engine: what the rule cannot change is kept, and still named") {
  {
    Bed b;
    b.dns.Fail("example.org", RrType::kMX, X);
    DomainPolicy p = b.Run("example.org may\n");
    CHECK(p.verdict == Verdict::kDefer);
    CHECK(Contains(p.reason, "local_policy_file /etc/mxsec/local-policy:1"));
  }
  {
    Bed b;
    // Nothing set up: the fake answers NXDOMAIN (secure).
    DomainPolicy p = b.Run("example.org encrypt\n");
    CHECK(p.verdict == Verdict::kFail);
    CHECK(p.status_code == "5.1.2");
    CHECK(Contains(p.reason, "local_policy_file /etc/mxsec/local-policy:1"));
    CHECK(PostfixPolicyReply(p) == "NOTFOUND ");
  }
}

TEST_CASE("local policy: the shipped example parses, commented out and with its example rules enabled") {
  const std::string path = std::string(MXSEC_TEST_DATA_DIR) + "/../../../policy/local-policy";
  auto shipped = LocalPolicy::Load(path);
  REQUIRE(shipped.ok());
  CHECK(shipped->size() == 0);  // every rule is an example, commented out
  std::ifstream in(path);
  REQUIRE(in);
  std::string line, enabled;
  size_t rules = 0;
  while (std::getline(in, line)) {
    // "#partner.example  verify": a commented-out rule (comment text has a space after #)
    if (line.size() > 1 && line[0] == '#' && line[1] != ' ' && line[1] != '\t') {
      line.erase(0, 1);
      ++rules;
    }
    enabled += line + "\n";
  }
  auto t = LocalPolicy::Parse(enabled, "local-policy");
  REQUIRE(t.ok());
  CHECK(t->size() == rules);
  CHECK(rules >= 5);
  REQUIRE(t->Find("mail.corp.example"));
  CHECK(t->Find("mail.corp.example")->policy == LocalTls::kEncrypt);
  REQUIRE(t->Find("other-partner.example"));
  CHECK(t->Find("other-partner.example")->match.size() == 2);
}

// --- Rules that expire: until=YYYY-MM-DD, reason="..." ---

namespace {

constexpr int64_t k2026Feb01 = 1769904000;  // 2026-02-01T00:00:00Z

}  // namespace

TEST_CASE("local policy: until= applies to the end of that day in UTC, then the rule is gone") {
  FakeClock clock(k2026Feb01 - 1);  // 2026-01-31T23:59:59Z
  auto t = LocalPolicy::Parse(
      "example.org may until=2026-01-31 reason=\"partner fixes DANE\"\n.example.org encrypt\n", "lp", &clock);
  REQUIRE(t.ok());
  const LocalRule* r = t->Find("example.org");
  REQUIRE(r);
  CHECK(r->until == "2026-01-31");
  CHECK(r->expires_at == k2026Feb01);
  CHECK(r->reason == "partner fixes DANE");
  CHECK(t->ExpiryWarnings().empty());
  clock.Set(k2026Feb01);
  CHECK(t->Find("example.org") == nullptr);
  // An expired rule is as if it were not there: the parent rule applies to subdomains as before.
  REQUIRE(t->Find("mx.example.org"));
  CHECK(t->Find("mx.example.org")->policy == LocalTls::kEncrypt);
  const std::vector<std::string> w = t->ExpiryWarnings();
  REQUIRE(w.size() == 1);
  CHECK(Contains(w[0], "lp:1: the local policy rule for example.org expired at the end of 2026-01-31 (UTC)"));
  CHECK(Contains(w[0], "reason: partner fixes DANE"));
}

TEST_CASE("local policy: an expired exact rule lets a parent rule apply; warnings in file order") {
  FakeClock clock(k2026Feb01);
  auto t = LocalPolicy::Parse(".example.org may until=2026-01-01\na.example.org encrypt until=2025-12-31\n"
                              "b.example.org verify until=2026-02-01\n.org dane-only until=2027-01-01\n",
                              "lp", &clock);
  REQUIRE(t.ok());
  REQUIRE(t->Find("a.example.org"));
  CHECK(t->Find("a.example.org")->Key() == ".org");   // both closer rules expired
  REQUIRE(t->Find("b.example.org"));
  CHECK(t->Find("b.example.org")->policy == LocalTls::kVerify);  // applies all of 2026-02-01
  const std::vector<std::string> w = t->ExpiryWarnings();
  REQUIRE(w.size() == 2);
  CHECK(Contains(w[0], "lp:1: the local policy rule for .example.org expired at the end of 2026-01-01"));
  CHECK(Contains(w[1], "lp:2: the local policy rule for a.example.org expired at the end of 2025-12-31"));
}

TEST_CASE("local policy: until= must be a real date, named by file and line") {
  for (const char* bad : {"2026-02-30", "2025-02-29", "2026-13-01", "2026-00-10", "2026-01-00", "2026-1-01",
                          "20260101", "2026/01/01", "1969-12-31", "", "2026-01-01x", "+026-01-01"}) {
    CAPTURE(bad);
    auto t = P(std::string("# c\nexample.org may until=") + bad + "\n");
    REQUIRE_FALSE(t.ok());
    CHECK(Contains(t.error(), std::string("lp:2: bad date \"") + bad + "\" in until="));
  }
  CHECK(P("example.org may until=2024-02-29\n").ok());  // a leap day
  CHECK(P("example.org may until=2000-02-29\n").ok());
  CHECK_FALSE(P("example.org may until=1900-02-29\n").ok());
  auto twice = P("example.org may until=2026-01-01 until=2026-01-02\n");
  REQUIRE_FALSE(twice.ok());
  CHECK(Contains(twice.error(), "lp:1: until= given twice"));
}

TEST_CASE("local policy: reason= quoting") {
  auto t = P("example.org may reason=\"say \\\"hi\\\" # not a comment \\\\ ok\" # a comment\n"
             "example.net may reason=plain\n"
             "example.com verify match=\"mx.example.com\" reason=\"\"\n");
  REQUIRE(t.ok());
  CHECK(t->Find("example.org")->reason == "say \"hi\" # not a comment \\ ok");
  CHECK(t->Find("example.net")->reason == "plain");
  CHECK(t->Find("example.com")->reason.empty());
  CHECK(t->Find("example.com")->match == std::vector<std::string>{"mx.example.com"});
  struct Case {
    std::string text, want;
  } cases[] = {
      {"example.org may reason=\"open\n", "lp:1: unterminated quote"},
      {"example.org may reason=\"a\tb\"\n", "lp:1: reason= holds a control character"},
      {"example.org may reason=a reason=b\n", "lp:1: reason= given twice"},
      {"example.org may reason\n", "lp:1: unknown attribute \"reason\""},
      {"example.org verify match\n", "lp:1: unknown attribute \"match\""},
      {"example.org verify until\n", "lp:1: unknown attribute \"until\""},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto bad = P(c.text);
    REQUIRE_FALSE(bad.ok());
    CHECK(Contains(bad.error(), c.want));
  }
}

TEST_CASE("local policy engine: an expired rule is ignored, one not yet expired applies with its reason") {
  // The bed's clock: 2023-11-14T22:13:20Z.
  {
    Bed b;
    b.Dane();
    DomainPolicy p = b.Run("example.org may until=2023-11-13 reason=\"waiting for the partner\"\n");
    CHECK(p.verdict == Verdict::kMustTls);
    CHECK(p.mechanism == Mechanism::kDane);
    CHECK_FALSE(p.local);
  }
  {
    Bed b;
    b.Dane();
    DomainPolicy p = b.Run("example.org may until=2023-11-14 reason=\"waiting for the partner\"\n");
    CHECK(p.verdict == Verdict::kOpportunistic);
    REQUIRE(p.local);
    CHECK(p.local->reason == "waiting for the partner");
    CHECK(p.local->until == "2023-11-14");
    const std::string json = PolicyToJsonLine(p);
    CHECK(Contains(json, "\"until\":\"2023-11-14\""));
    CHECK(Contains(json, "\"reason\":\"waiting for the partner\""));
    const std::string text = PolicyToText(p);
    CHECK(Contains(text, "until 2023-11-14 (end of day UTC): waiting for the partner"));
  }
}
