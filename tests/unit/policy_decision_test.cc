// policy_decision_test.cc - the pure decision (policy_decision.h), one rule
// at a time, from facts built with policy_facts.h: no resolver, fetcher,
// cache or clock. The engine's schedule and side effects are policy_test.cc's.
#include <doctest/doctest.h>

#include "mxsec/policy/policy_decision.h"
#include "policy_facts.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

constexpr auto kRecords = DnsOutcome::kRecords;
constexpr auto kNoData = DnsOutcome::kNoData;
constexpr auto kFailure = DnsOutcome::kFailure;

const char* kEnforce = "version: STSv1\nmode: enforce\nmx: mx1.example.org\nmx: *.backup.example.org\nmax_age: 86400\n";
const char* kTesting = "version: STSv1\nmode: testing\nmx: mx1.example.org\nmax_age: 86400\n";
const char* kNone = "version: STSv1\nmode: none\nmax_age: 86400\n";

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// --- The MX answer ---

TEST_CASE("decision: a failed MX lookup defers, bogus says the signatures do not validate") {
  DomainPolicy p = Facts().MxAnswer(kFailure, B).Decide();
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.4.3");
  CHECK(p.reason == "MX lookup failed (bogus): SERVFAIL (fake); the domain's DNSSEC signatures do not validate; "
                    "retry later");
  CHECK(Facts().MxAnswer(kFailure, X).Decide().reason == "MX lookup failed (indeterminate): SERVFAIL (fake); retry later");
}

TEST_CASE("decision: NXDOMAIN and a lone null MX fail") {
  DomainPolicy p = Facts().MxAnswer(DnsOutcome::kNxDomain, S).Decide();
  CHECK(p.verdict == Verdict::kFail);
  CHECK(p.reason == "domain example.org does not exist (NXDOMAIN, secure)");
  p = Facts().NullMx().Decide();
  CHECK(p.status_code == "5.1.10");
  CHECK(p.reason == "domain example.org publishes a null MX (RFC 7505): it accepts no mail");
}

TEST_CASE("decision: no MX means the domain itself, worded so") {
  DomainPolicy p = Facts().MxAnswer(kNoData, S).Host("example.org", S).Tlsa(S, {DaneEe()}).Decide();
  CHECK(p.implicit_mx);
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.reason == "every usable host (no MX: the domain itself) requires TLS by DANE (1 of 1 hosts usable)");
}

TEST_CASE("decision: an invalid MX host name is skipped with the parser's reason") {
  DomainPolicy p = Facts().MxStatus(I).InvalidHost("bad_name.example.org", "bad label").Host("mx1.example.org", I).Decide();
  CHECK(p.mx[0].tls == HostTls::kSkip);
  CHECK(p.mx[0].reason == "invalid MX host name: bad label");
  CHECK(p.verdict == Verdict::kOpportunistic);
}

TEST_CASE("decision: the host list's omissions become notes") {
  PolicyFacts f = Facts().MxStatus(I).Host("mx1.example.org", I).facts();
  f.null_mx_ignored = true;
  f.hosts_beyond_limit = 3;
  PolicyOptions o;
  o.max_mx_hosts = 1;
  CHECK(DecidePolicy(f, o, kFactsNow).notes ==
        std::vector<std::string>{"null MX record mixed with other MX records ignored (RFC 7505 §3)",
                                 "3 MX hosts beyond the first 1 ignored"});
}

// --- Addresses ---

TEST_CASE("decision: no address: fail when definite, defer when a lookup failed") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).NoAddress(kNoData, S).Decide();
  CHECK(p.verdict == Verdict::kFail);
  CHECK(p.status_code == "5.4.4");
  CHECK(p.mx[0].reason == "no A or AAAA records (nodata)");
  p = Facts().Host("mx1.example.org", S).NoAddress(kFailure, X).Decide();
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.4.3");
  CHECK(p.mx[0].reason == "A lookup failed: SERVFAIL (fake)");
}

TEST_CASE("decision: one failed address family is noted, the other used") {
  Facts f;
  f.MxStatus(I).Host("mx1.example.org", I);
  PolicyFacts facts = f.facts();
  facts.hosts[0].aaaa = Answer("mx1.example.org", RrType::kAAAA, kFailure, X);
  DomainPolicy p = DecidePolicy(facts, PolicyOptions(), kFactsNow);
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(Contains(p.mx[0].reason, "AAAA lookup failed: SERVFAIL (fake); using the other address family. no DANE"));
}

// --- DANE (RFC 7672) ---

TEST_CASE("decision: usable TLSA records on a secure host: DANE, must-tls") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe(), PkixEe()}).Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK(p.mx[0].tls == HostTls::kDane);
  CHECK(p.mx[0].tlsa.size() == 2);
  CHECK(p.mx[0].reason == "DANE: 1 usable TLSA record at _25._tcp.mx1.example.org (DNSSEC secure), 1 unusable ignored");
}

TEST_CASE("decision: secure TLSA with no usable record: encrypt") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {PkixEe()}).Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mx[0].tls == HostTls::kEncrypt);
  CHECK(Contains(p.mx[0].reason, "are secure but none is usable"));
}

TEST_CASE("decision: a bogus or indeterminate TLSA answer takes the host out of use") {
  for (DnssecStatus st : {B, X}) {
    DomainPolicy p = Facts().Host("mx1.example.org", S).TlsaNone(kFailure, st).Decide();
    CHECK(p.mx[0].tls == HostTls::kSkip);
    CHECK(p.mx[0].tlsa_dnssec == st);
    CHECK(p.verdict == Verdict::kDefer);
    CHECK(p.mechanism == Mechanism::kDane);
    CHECK(p.reason == "no usable MX host: TLSA lookups failed (DNSSEC bogus or indeterminate); retry later");
  }
}

TEST_CASE("decision: a TLSA answer missing from the facts is a failure, never 'no DANE'") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Decide();
  CHECK(p.mx[0].tls == HostTls::kSkip);
  CHECK(p.verdict == Verdict::kDefer);
}

TEST_CASE("decision: insecure or absent TLSA records: may") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(I, {DaneEe()}).Decide();
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(p.mx[0].reason == "no DANE: TLSA records at _25._tcp.mx1.example.org are insecure and ignored");
  p = Facts().Host("mx1.example.org", S).TlsaNone(kNoData, S).Decide();
  CHECK(p.mx[0].reason == "no DANE: no TLSA records at _25._tcp.mx1.example.org (nodata, secure)");
  CHECK(p.reason == "no DANE (no usable TLSA records) and no MTA-STS policy: STARTTLS when offered, without "
                    "authentication");
}

TEST_CASE("decision: DANE needs a secure MX RRset, secure addresses, DANE on and a trusted resolver") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Decide();
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(p.mx[0].reason ==
        "no DANE: the MX records of example.org are insecure: DANE needs a DNSSEC-secure MX RRset (RFC 7672 §2.2.1)");
  p = Facts().Host("mx1.example.org", I).Tlsa(S, {DaneEe()}).Decide();
  CHECK(p.mx[0].reason == "no DANE: the address records of mx1.example.org are insecure (RFC 7672 §2.2.3)");
  p = Facts().Untrusted("resolver not trusted (fake)").Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Decide();
  CHECK(p.mx[0].reason == "no DANE: resolver not trusted (fake)");
  PolicyOptions off;
  off.dane = false;
  p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Decide(off);
  CHECK(p.mx[0].reason == "no DANE: DANE is switched off (dane = no)");
}

TEST_CASE("decision: an alias's TLSA base: the expanded name when secure or failed, else the alias") {
  auto alias = [] { return Facts().Host("mx1.example.org", S).Alias("real.example.net").Tlsa(S, {DaneEe()}); };
  DomainPolicy p = alias().ExpandedTlsa(kRecords, S, {DaneEe()}).Decide();
  CHECK(p.mx[0].tlsa_base == "real.example.net");
  p = alias().ExpandedTlsa(kNoData, S).Decide();
  CHECK(p.mx[0].tlsa_base == "mx1.example.org");
  CHECK(p.mx[0].tls == HostTls::kDane);
  p = alias().ExpandedTlsa(kFailure, B).Decide();
  CHECK(p.mx[0].tls == HostTls::kSkip);
}

TEST_CASE("decision: one host without a TLS demand makes the domain opportunistic") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Host("mx2.example.net", I, 20).Decide();
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.reason == "1 of 2 usable MX hosts require TLS, but mx2.example.net does not: an attacker can steer mail "
                    "to it, so TLS is opportunistic for the domain");
}

TEST_CASE("decision: a failed TLSA host beside a DANE host: must-tls, said so") {
  DomainPolicy p =
      Facts().Host("mx1.example.org", S).TlsaNone(kFailure, X).Host("mx2.example.org", S, 20).Tlsa(S, {DaneEe()}).Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(Contains(p.reason, "(1 of 2 hosts usable); some hosts are skipped because their TLSA lookup failed"));
}

// --- MTA-STS (RFC 8461) ---

TEST_CASE("decision: MTA-STS enforce: listed hosts need PKIX, others are not used") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).Host("mx.other.example", I, 20)
                       .StsId("abc").Fetched(kEnforce).Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kMtaSts);
  CHECK(p.mx[0].tls == HostTls::kPkix);
  CHECK(p.mx[1].tls == HostTls::kSkip);
  CHECK(p.mx[1].reason == "no DANE: the MX records of example.org are insecure: DANE needs a DNSSEC-secure MX RRset "
                          "(RFC 7672 §2.2.1); not listed in the MTA-STS policy of example.org (mode enforce): not used");
  CHECK(p.reason == "MTA-STS policy (mode enforce, id abc) requires TLS with a valid certificate for 1 MX host");
  CHECK(p.mta_sts->source == "fetched");
  CHECK(p.mta_sts->expires_at == kFactsNow + 86400);
  CHECK(p.mta_sts->problem == StsProblem::kNone);
}

TEST_CASE("decision: MTA-STS enforce with no listed host defers") {
  DomainPolicy p = Facts().MxStatus(I).Host("evil.example.net", I).StsId("x").Fetched(kEnforce).Decide();
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.7.5");
  CHECK(p.reason == "no MX host matches the MTA-STS policy of example.org (mode enforce)");
}

TEST_CASE("decision: MTA-STS testing and none change nothing on the wire") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).StsId("t").Fetched(kTesting).Decide();
  CHECK(p.mx[0].tls == HostTls::kMay);
  CHECK(Contains(p.mx[0].reason, "; MTA-STS testing: TLS failures would only be reported"));
  CHECK(Contains(p.reason, "MTA-STS policy in testing mode (reports only)"));
  p = Facts().MxStatus(I).Host("mx1.example.org", I).StsId("n").Fetched(kNone).Decide();
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(Contains(p.reason, "and MTA-STS policy mode none:"));
}

TEST_CASE("decision: DANE wins over MTA-STS; both demands add up") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).StsId("x").Fetched(kEnforce).Decide();
  CHECK(p.mechanism == Mechanism::kDane);
  CHECK(p.mx[0].tls == HostTls::kDane);
  p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Host("a.backup.example.org", I, 20)
          .StsId("x").Fetched(kEnforce).Decide();
  CHECK(p.reason == "every usable MX host requires TLS: 1 by DANE, 1 by MTA-STS");
}

TEST_CASE("decision: an unexpired cached policy under the TXT id applies as it is") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).StsId("one").Cached(kEnforce, "one").Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mta_sts->source == "cache");
  CHECK_FALSE(p.mta_sts->error);
  CHECK(p.mta_sts->problem == StsProblem::kNone);
}

TEST_CASE("decision: a failed fetch falls back on the unexpired cached policy") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).StsId("two").Cached(kEnforce, "one")
                       .FetchFailed(Status::Unavailable("HTTP status 500")).Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mta_sts->id == "one");
  CHECK(*p.mta_sts->error == "policy fetch failed, cached policy (id one) still applies: HTTP status 500");
  CHECK(p.mta_sts->problem == StsProblem::kCacheFallback);
}

TEST_CASE("decision: a failed fetch without a cached policy: none, typed for TLS reports") {
  auto facts = [] { return Facts().MxStatus(I).Host("mx1.example.org", I).StsId("one"); };
  DomainPolicy p = facts().FetchFailed(Status::Unavailable("HTTP status 404")).Decide();
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(p.mta_sts->mode == StsMode::kNone);
  CHECK(p.mta_sts->id == "one");
  CHECK(*p.mta_sts->error == "policy fetch failed: HTTP status 404");
  CHECK(p.mta_sts->problem == StsProblem::kFetchFailed);
  CHECK(Contains(p.reason, "no MTA-STS policy in force (policy fetch failed: HTTP status 404)"));
  p = facts().FetchFailed(Status::Invalid("invalid policy: policy: mode missing")).Decide();
  CHECK(*p.mta_sts->error == "policy fetch failed: invalid policy: policy: mode missing");
  CHECK(p.mta_sts->problem == StsProblem::kPolicyInvalid);
  // An expired cached policy does not count.
  p = facts().Cached(kEnforce, "one", kFactsNow - 86400).FetchFailed(Status::Unavailable("timeout")).Decide();
  CHECK(p.mta_sts->problem == StsProblem::kFetchFailed);
  CHECK(p.verdict == Verdict::kOpportunistic);
}

TEST_CASE("decision: TXT record gone or failing: the unexpired cached policy still applies") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).Sts().Cached(kEnforce, "one").Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(*p.mta_sts->error == "no _mta-sts TXT record; cached policy still applies");
  CHECK(p.mta_sts->problem == StsProblem::kCacheFallback);
  p = Facts().MxStatus(I).Host("mx1.example.org", I).StsTxtFailed().Cached(kEnforce, "one").Decide();
  CHECK(*p.mta_sts->error == "_mta-sts TXT lookup failed: SERVFAIL (fake); cached policy still applies");
  p = Facts().MxStatus(I).Host("mx1.example.org", I).Sts().Cached(kEnforce, "one").Decide(PolicyOptions(),
                                                                                        kFactsNow + 86400);
  CHECK_FALSE(p.mta_sts);  // expired: no policy any more
}

TEST_CASE("decision: an unusable TXT record without a cached policy is shown, a missing one is not") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).StsTxt("v=STSv1; id=a; id=b").Decide();
  REQUIRE(p.mta_sts);
  CHECK(*p.mta_sts->error == "_mta-sts TXT: TXT record: duplicate id");
  CHECK(p.mta_sts->problem == StsProblem::kTxtUnusable);
  p = Facts().MxStatus(I).Host("mx1.example.org", I).StsTxt("v=spf1 -all").Decide();
  CHECK_FALSE(p.mta_sts);
}

TEST_CASE("decision: an unreadable cache is never 'no policy'; a fresh fetch settles it") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).CacheUnreadable("database is locked").Decide();
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.3.0");
  CHECK(p.reason == "the MTA-STS policy cache cannot be read (database is locked); retry later");
  p = Facts().MxStatus(I).Host("mx1.example.org", I).CacheUnreadable("database is locked").StsId("x")
          .Fetched(kEnforce, Status::IoError("database is locked")).Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.notes == std::vector<std::string>{"MTA-STS cache not updated: database is locked"});
}

// --- The local policy table ---

TEST_CASE("decision: local dane-only keeps DANE hosts and defers without one") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Rule("dane-only").Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(Contains(p.reason, "local policy dane-only (local_policy_file /etc/mxsec/local-policy:1): every usable"));
  p = Facts().MxStatus(I).Host("mx1.example.org", I).Rule("dane-only").Decide();
  CHECK(p.verdict == Verdict::kDefer);
  CHECK(p.status_code == "4.7.5");
  CHECK(p.mx[0].tls == HostTls::kSkip);
}

TEST_CASE("decision: local verify and encrypt require TLS for every host with an address") {
  DomainPolicy p = Facts().MxStatus(I).Host("mx1.example.org", I).Rule("verify match=mx.example.net").Decide();
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kLocal);
  CHECK(p.mx[0].pkix_names == std::vector<std::string>{"mx.example.net"});
  p = Facts().MxStatus(I).Host("mx1.example.org", I).Rule("encrypt").Decide();
  CHECK(p.mx[0].tls == HostTls::kEncrypt);
  CHECK(p.override_warning.empty());
}

TEST_CASE("decision: a local rule that weakens DANE says so; one over no route changes nothing") {
  DomainPolicy p = Facts().Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Rule("may").Decide();
  CHECK(p.verdict == Verdict::kOpportunistic);
  CHECK(Contains(p.override_warning, "example.org: local policy may (local_policy_file "
                                     "/etc/mxsec/local-policy:1) overrides DANE must-tls:"));
  p = Facts().MxAnswer(DnsOutcome::kNxDomain, S).Rule("verify").Decide();
  CHECK(p.verdict == Verdict::kFail);
  CHECK(Contains(p.reason, "; local policy verify (local_policy_file /etc/mxsec/local-policy:1) does not change that"));
}

// --- Purity and the shared rules ---

TEST_CASE("decision: the same facts, options and time give the same policy, word for word") {
  Facts f;
  f.Host("mx1.example.org", S).Tlsa(S, {DaneEe()}).Host("a.backup.example.org", I, 20).StsId("x").Fetched(kEnforce);
  CHECK(PolicyToJsonLine(f.Decide()) == PolicyToJsonLine(f.Decide()));
}

TEST_CASE("decision rules: the host list, when lookups end, when to fetch, where an alias's TLSA is") {
  PolicyFacts f;
  f.mx = Answer("example.org", RrType::kMX, kRecords, S,
                {MxRec("example.org", 20, "B.example.org"), MxRec("example.org", 10, "b.example.org"),
                 MxRec("example.org", 0, ""), MxRec("example.org", 5, "bad_name.example.org"),
                 MxRec("example.org", 30, "c.example.org")});
  ListMxHosts(2, &f);
  REQUIRE(f.hosts.size() == 2);
  CHECK(f.hosts[0].host == "bad_name.example.org");
  CHECK_FALSE(f.hosts[0].name_error.empty());
  CHECK(f.hosts[1].host == "b.example.org");
  CHECK(f.hosts[1].preference == 10);
  CHECK(f.null_mx_ignored);
  CHECK(f.hosts_beyond_limit == 1);

  CHECK(MxAnswerEndsLookups(Facts().NullMx().facts().mx));
  CHECK(MxAnswerEndsLookups(Answer("example.org", RrType::kMX, kFailure, X)));
  CHECK_FALSE(MxAnswerEndsLookups(Answer("example.org", RrType::kMX, kNoData, S)));

  PolicyOptions o;
  CHECK(ConsidersMtaSts(o, nullptr));
  LocalRule dane_only;
  dane_only.policy = LocalTls::kDaneOnly;
  CHECK_FALSE(ConsidersMtaSts(o, &dane_only));

  CHECK(StsNeedsFetch(*Facts().StsId("one").facts().sts, kFactsNow));
  CHECK_FALSE(StsNeedsFetch(*Facts().StsId("one").Cached(kEnforce, "one").facts().sts, kFactsNow));
  CHECK(StsNeedsFetch(*Facts().StsId("two").Cached(kEnforce, "one").facts().sts, kFactsNow));
  CHECK(StsNeedsFetch(*Facts().StsId("one").Cached(kEnforce, "one").facts().sts, kFactsNow + 86400));
  CHECK_FALSE(StsNeedsFetch(*Facts().Sts().facts().sts, kFactsNow));

  const MxHostFacts alias = Facts().Host("mx1.example.org", S).Alias("real.example.net").facts().hosts[0];
  CHECK(ExpandedTlsaBase(alias, true) == std::optional<std::string>("real.example.net"));
  CHECK_FALSE(ExpandedTlsaBase(alias, false));
  CHECK_FALSE(ExpandedTlsaBase(Facts().Host("mx1.example.org", I).Alias("r.example.net").facts().hosts[0], true));
}
