// survey_test.cc - `mxsec survey`'s library (report/survey.h): the list
// parser, the record of a domain from a policy, TLS-RPT and probes (with a
// fake resolver and a fake SMTP session), the JSON lines and the resume,
// the shares and their SVG chart.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <map>
#include <set>
#include <thread>

#include "fakes.h"
#include "mxsec/dns/dane.h"
#include "mxsec/report/survey.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

MxPolicy Host(const std::string& name, HostTls tls, std::vector<std::string> addresses = {"192.0.2.1"}) {
  MxPolicy m;
  m.host = name;
  m.preference = 10;
  m.dnssec = DnssecStatus::kSecure;
  m.addresses = std::move(addresses);
  m.tls = tls;
  return m;
}

MxPolicy DaneHost(const std::string& name) {
  MxPolicy m = Host(name, HostTls::kDane);
  m.tlsa_looked_up = true;
  m.tlsa_dnssec = DnssecStatus::kSecure;
  m.tlsa.push_back(TlsaRecord{3, 1, 1, std::vector<uint8_t>(32, 0xab)});
  return m;
}

DomainPolicy Policy(const std::string& domain, Verdict v, std::vector<MxPolicy> hosts,
                    DnssecStatus dnssec = DnssecStatus::kSecure) {
  DomainPolicy p;
  p.domain = domain;
  p.verdict = v;
  p.dnssec = dnssec;
  p.mx = std::move(hosts);
  return p;
}

StsState Sts(StsMode mode, std::vector<std::string> mx, StsProblem problem = StsProblem::kNone) {
  StsState s;
  s.mode = mode;
  s.mx = std::move(mx);
  s.problem = problem;
  if (problem != StsProblem::kNone) s.error = "fetch failed (fake)";
  return s;
}

SessionResult Session(bool starttls, bool tls, std::optional<bool> pkix, std::optional<bool> dane,
                      bool requiretls = false) {
  SessionResult s;
  s.connected = true;
  s.starttls_offered = starttls;
  s.tls.used = tls;
  if (tls) s.tls.version = "TLS1.3";
  if (pkix) s.tls.survey_pkix = VerifyResult{*pkix, "", std::nullopt, -1, ""};
  if (dane) s.tls.survey_dane = VerifyResult{*dane, "", std::nullopt, -1, ""};
  if (tls && requiretls) s.ehlo = {"PIPELINING", "REQUIRETLS"};
  return s;
}

}  // namespace

TEST_CASE("survey: a list is a domain per line or Tranco's rank,domain, in normal form, each once") {
  auto d = ParseSurveyInput("rank,domain\n1,Example.ORG\n2, example.net \n\n# comment\nexample.org\nb.test.\r\n");
  REQUIRE(d.ok());
  CHECK(*d == std::vector<std::string>{"example.org", "example.net", "b.test"});
  auto plain = ParseSurveyInput("a.test\nb.test");
  REQUIRE(plain.ok());
  CHECK(plain->size() == 2);
}

TEST_CASE("survey: a bad list line is an error that names the line") {
  auto bad = ParseSurveyInput("a.test\nx,b.test\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().rfind("line 2: ", 0) == 0);
  auto ip = ParseSurveyInput("a.test\n\n192.0.2.1\n");
  REQUIRE_FALSE(ip.ok());
  CHECK(ip.error().rfind("line 3: ", 0) == 0);
  auto three = ParseSurveyInput("1,a.test,extra\n");
  REQUIRE_FALSE(three.ok());
  CHECK(three.error().rfind("line 1: ", 0) == 0);
}

TEST_CASE("survey: the list's bounds: line length, size") {
  auto long_line = ParseSurveyInput("a.test\n" + std::string(kSurveyMaxLineLength + 1, 'a') + "\n");
  REQUIRE_FALSE(long_line.ok());
  CHECK(long_line.error().rfind("line 2: longer than", 0) == 0);
  std::string big(kSurveyMaxInputBytes + 1, '\n');
  auto too_big = ParseSurveyInput(big);
  REQUIRE_FALSE(too_big.ok());
  CHECK(too_big.status().IsLimit());
}

TEST_CASE("survey: the record of a policy: MX state, TLSA, MTA-STS mode and coverage") {
  SurveyRecord dane = RecordFromPolicy(Policy("d.test", Verdict::kMustTls, {DaneHost("mx.d.test")}));
  CHECK(dane.mx == "mx");
  CHECK(dane.dnssec == "secure");
  REQUIRE(dane.hosts.size() == 1);
  CHECK(dane.hosts[0].tlsa == "usable");
  CHECK(dane.mta_sts.empty());

  MxPolicy unusable = DaneHost("mx.u.test");
  unusable.tlsa = {TlsaRecord{1, 1, 1, std::vector<uint8_t>(32, 1)}};
  CHECK(RecordFromPolicy(Policy("u.test", Verdict::kMustTls, {unusable})).hosts[0].tlsa == "unusable");
  MxPolicy failed = DaneHost("mx.f.test");
  failed.tlsa_dnssec = DnssecStatus::kIndeterminate;
  failed.tlsa.clear();
  CHECK(RecordFromPolicy(Policy("f.test", Verdict::kDefer, {failed})).hosts[0].tlsa == "failed");

  DomainPolicy sts = Policy("s.test", Verdict::kMustTls,
                            {Host("mx1.s.test", HostTls::kPkix), Host("other.test", HostTls::kSkip)},
                            DnssecStatus::kInsecure);
  sts.mta_sts = Sts(StsMode::kEnforce, {"*.s.test"});
  SurveyRecord s = RecordFromPolicy(sts);
  CHECK(s.mta_sts == "enforce");
  CHECK(s.hosts[0].sts_listed);
  CHECK_FALSE(s.hosts[1].sts_listed);
  CHECK(s.mta_sts_covers_mx == false);
  sts.mta_sts = Sts(StsMode::kNone, {}, StsProblem::kFetchFailed);
  CHECK(RecordFromPolicy(sts).mta_sts == "broken");
  sts.mta_sts = Sts(StsMode::kEnforce, {"*.s.test"}, StsProblem::kCacheFallback);
  CHECK(RecordFromPolicy(sts).mta_sts == "enforce");
}

TEST_CASE("survey: null MX, NXDOMAIN, a failed MX lookup, implicit MX, no address") {
  DomainPolicy null_mx = Policy("n.test", Verdict::kFail, {});
  null_mx.status_code = "5.1.10";
  CHECK(RecordFromPolicy(null_mx).mx == "null");
  DomainPolicy nx = Policy("x.test", Verdict::kFail, {});
  nx.status_code = "5.1.2";
  CHECK(RecordFromPolicy(nx).mx == "nxdomain");
  DomainPolicy servfail = Policy("e.test", Verdict::kDefer, {}, DnssecStatus::kIndeterminate);
  servfail.status_code = "4.4.3";
  CHECK(RecordFromPolicy(servfail).mx == "error");
  DomainPolicy implicit = Policy("i.test", Verdict::kOpportunistic, {Host("i.test", HostTls::kMay)});
  implicit.implicit_mx = true;
  CHECK(RecordFromPolicy(implicit).mx == "implicit");
  CHECK(RecordFromPolicy(Policy("a.test", Verdict::kFail, {Host("mx.a.test", HostTls::kSkip, {})})).mx ==
        "no-address");
}

TEST_CASE("survey: the TLS-RPT record: valid, invalid (two records), none, lookup failed") {
  auto txt = [](DnsOutcome outcome, std::vector<std::string> texts) {
    DnsAnswer a;
    a.outcome = outcome;
    for (const std::string& t : texts) a.records.push_back(TxtRec("_smtp._tls.a.test", t));
    if (outcome == DnsOutcome::kFailure) a.reason = "SERVFAIL";
    return a;
  };
  SurveyRecord r;
  SetTlsRpt(txt(DnsOutcome::kRecords, {"v=TLSRPTv1; rua=mailto:r@a.test"}), &r);
  CHECK(r.tlsrpt == "valid");
  SetTlsRpt(txt(DnsOutcome::kRecords, {"v=TLSRPTv1; rua=mailto:a@a.test", "v=TLSRPTv1; rua=mailto:b@a.test"}), &r);
  CHECK(r.tlsrpt == "invalid");
  SetTlsRpt(txt(DnsOutcome::kRecords, {"v=spf1 -all"}), &r);
  CHECK(r.tlsrpt == "none");
  SetTlsRpt(txt(DnsOutcome::kNxDomain, {}), &r);
  CHECK(r.tlsrpt == "none");
  SetTlsRpt(txt(DnsOutcome::kFailure, {}), &r);
  CHECK(r.tlsrpt == "error");
  CHECK(r.tlsrpt_detail == "SERVFAIL");
}

TEST_CASE("survey: probe sessions are opportunistic, report both checks, QUIT before MAIL, capped timeouts") {
  SurveyOptions o;
  o.helo_name = "survey.example";
  o.timeouts.greeting = 300000;
  DomainPolicy p = Policy("d.test", Verdict::kMustTls, {DaneHost("mx.d.test"), Host("mx2.d.test", HostTls::kSkip)});
  SessionOptions dane = SurveySessionOptions(o, p, p.mx[0]);
  CHECK(dane.tls == HostTls::kMay);
  CHECK(dane.probe_only);
  CHECK(dane.report_verification);
  CHECK(dane.tlsa.size() == 1);
  CHECK(dane.sni == "mx.d.test");
  CHECK(dane.pkix_host == "mx.d.test");
  CHECK(dane.helo_name == "survey.example");
  CHECK(dane.timeouts.greeting == kSurveyMaxStageTimeoutMs);
  SessionOptions skip = SurveySessionOptions(o, p, p.mx[1]);
  CHECK(skip.tls == HostTls::kMay);
  CHECK(skip.tlsa.empty());
}

TEST_CASE("survey: a probe reports STARTTLS, TLS version, PKIX, DANE (only where TLSA is usable), REQUIRETLS") {
  SurveyProbe p = ProbeFromSession("192.0.2.1", Session(true, true, true, false, true), true);
  CHECK(p.starttls);
  CHECK(p.tls_version == "TLS1.3");
  CHECK(p.pkix_valid == true);
  CHECK(p.dane_match == false);
  CHECK(p.requiretls);
  SurveyProbe no_dane = ProbeFromSession("192.0.2.1", Session(true, true, false, true), false);
  CHECK_FALSE(no_dane.dane_match.has_value());
  SurveyProbe plain = ProbeFromSession("192.0.2.1", Session(false, false, std::nullopt, std::nullopt, true), true);
  CHECK_FALSE(plain.starttls);
  CHECK(plain.tls_version.empty());
  CHECK_FALSE(plain.pkix_valid.has_value());
  CHECK_FALSE(plain.requiretls);  // REQUIRETLS counts only after STARTTLS
}

TEST_CASE("survey: SurveyOneDomain asks the policy, TLS-RPT, and probes every host with an address") {
  FakeResolver resolver;
  resolver.Records("_smtp._tls.d.test", RrType::kTXT, DnssecStatus::kSecure,
                   {TxtRec("_smtp._tls.d.test", "v=TLSRPTv1; rua=mailto:r@d.test")});
  std::mutex mu;
  std::vector<std::string> contacted;
  SurveyServices services;
  services.resolve = [](const std::string& d) {
    return Policy(d, Verdict::kMustTls,
                  {DaneHost("mx.d.test"), Host("mx2.d.test", HostTls::kSkip, {"192.0.2.2", "192.0.2.3"}),
                   Host("noaddr.d.test", HostTls::kSkip, {})});
  };
  services.resolver = &resolver;
  FakeClock clock;
  services.clock = &clock;
  services.session = [&](const std::string& address, uint16_t, const SessionOptions& so, const Envelope* env,
                         int64_t) {
    CHECK(env == nullptr);
    CHECK(so.probe_only);
    std::lock_guard<std::mutex> l(mu);
    contacted.push_back(address);
    SessionResult s = Session(true, true, true, !so.tlsa.empty() ? std::optional<bool>(true) : std::nullopt);
    s.connected = address != "192.0.2.2";  // the first address of mx2 does not answer
    return s;
  };
  SurveyOptions o;
  SurveyRecord plain = SurveyOneDomain("d.test", o, services);
  CHECK(plain.tlsrpt == "valid");
  CHECK_FALSE(plain.probed);
  CHECK(contacted.empty());
  o.probe = true;
  SurveyRecord r = SurveyOneDomain("d.test", o, services);
  CHECK(r.probed);
  CHECK(contacted == std::vector<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.3"});
  REQUIRE(r.hosts[0].probe);
  CHECK(r.hosts[0].probe->dane_match == true);
  REQUIRE(r.hosts[1].probe);
  CHECK(r.hosts[1].probe->address == "192.0.2.3");
  CHECK_FALSE(r.hosts[1].probe->dane_match.has_value());
  CHECK_FALSE(r.hosts[2].probe.has_value());
}

TEST_CASE("survey: RunSurvey keeps within its concurrency and rate and reports every domain once") {
  FakeResolver resolver;
  std::atomic<int> in_flight{0}, most{0};
  SurveyServices services;
  services.resolver = &resolver;
  services.resolve = [&](const std::string& d) {
    int now = ++in_flight;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {}
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    --in_flight;
    return Policy(d, Verdict::kOpportunistic, {Host("mx." + d, HostTls::kMay)});
  };
  std::vector<std::string> domains;
  for (int i = 0; i < 40; ++i) domains.push_back("d" + std::to_string(i) + ".test");
  SurveyOptions o;
  o.concurrency = 3;
  std::multiset<std::string> done;
  RunSurvey(domains, o, services, [&](const SurveyRecord& r) { done.insert(r.domain); });
  CHECK(done.size() == 40);
  CHECK(std::set<std::string>(done.begin(), done.end()).size() == 40);
  CHECK(most.load() <= 3);

  o.concurrency = 8;
  o.rate = 100;  // 10 domains: at least 90 ms
  auto start = std::chrono::steady_clock::now();
  RunSurvey(std::vector<std::string>(domains.begin(), domains.begin() + 10), o, services, [](const SurveyRecord&) {});
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(85));
}

TEST_CASE("survey: a record survives its JSON line; a cut last line is left out of a resume") {
  DomainPolicy p = Policy("d.test", Verdict::kMustTls, {DaneHost("mx.d.test")});
  p.mta_sts = Sts(StsMode::kTesting, {"mx.d.test"});
  SurveyRecord r = RecordFromPolicy(p);
  r.tlsrpt = "valid";
  r.probed = true;
  r.hosts[0].probe = ProbeFromSession("192.0.2.1", Session(true, true, false, true, true), true);
  std::string line = SurveyRecordToJsonLine(r);
  CHECK(line.find('\n') == std::string::npos);
  auto back = SurveyRecordFromJson(line);
  REQUIRE(back.ok());
  CHECK(SurveyRecordToJsonLine(*back) == line);

  SurveyRecord other = RecordFromPolicy(Policy("e.test", Verdict::kOpportunistic, {Host("mx.e.test", HostTls::kMay)}));
  std::string file = line + "\n" + SurveyRecordToJsonLine(other) + "\n";
  auto whole = ReadSurveyOutput(file);
  REQUIRE(whole.ok());
  CHECK(whole->records.size() == 2);
  CHECK_FALSE(whole->truncated_last_line);
  CHECK(whole->complete_size == file.size());
  std::string cut = file + line.substr(0, 20);
  auto resumed = ReadSurveyOutput(cut);
  REQUIRE(resumed.ok());
  CHECK(resumed->records.size() == 2);
  CHECK(resumed->truncated_last_line);
  CHECK(resumed->complete_size == file.size());
  auto bad = ReadSurveyOutput(line + "\n{\"no\": 1}\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().rfind("line 2: ", 0) == 0);
}

TEST_CASE("survey: the shares count what they say, over their denominators") {
  std::vector<SurveyRecord> records;
  auto add = [&](DomainPolicy p, std::vector<SessionResult> sessions, const std::string& tlsrpt = "none") {
    SurveyRecord r = RecordFromPolicy(p);
    r.tlsrpt = tlsrpt;
    r.probed = true;
    for (size_t i = 0; i < sessions.size(); ++i)
      r.hosts[i].probe = ProbeFromSession("192.0.2.1", sessions[i], r.hosts[i].tlsa == "usable");
    records.push_back(r);
  };
  add(Policy("dane.test", Verdict::kMustTls, {DaneHost("mx.dane.test")}),
      {Session(true, true, true, true, true)}, "valid");
  add(Policy("stale.test", Verdict::kMustTls, {DaneHost("mx.stale.test")}), {Session(true, true, true, false)});
  DomainPolicy sts = Policy("sts.test", Verdict::kMustTls,
                            {Host("mx1.sts.test", HostTls::kPkix), Host("mx2.sts.test", HostTls::kPkix)},
                            DnssecStatus::kInsecure);
  sts.mta_sts = Sts(StsMode::kEnforce, {"*.sts.test"});
  add(sts, {Session(true, true, true, std::nullopt), Session(false, false, std::nullopt, std::nullopt)});
  DomainPolicy broken = Policy("broken.test", Verdict::kOpportunistic, {Host("mx.broken.test", HostTls::kMay)},
                               DnssecStatus::kInsecure);
  broken.mta_sts = Sts(StsMode::kNone, {}, StsProblem::kPolicyInvalid);
  add(broken, {Session(true, true, false, std::nullopt)});
  DomainPolicy null_mx = Policy("null.test", Verdict::kFail, {});
  null_mx.status_code = "5.1.10";
  add(null_mx, {});

  SurveySummary s = Summarize(records, true);
  CHECK(s.domains == 5);
  std::map<std::string, std::pair<size_t, size_t>> got;
  for (const SurveyShare& share : s.shares) got[share.key] = {share.count, share.of};
  CHECK(got["mx"] == std::pair<size_t, size_t>{4, 5});
  CHECK(got["dnssec_mx"] == std::pair<size_t, size_t>{2, 4});
  CHECK(got["dane_usable"] == std::pair<size_t, size_t>{2, 4});
  CHECK(got["mta_sts_enforce"] == std::pair<size_t, size_t>{1, 4});
  CHECK(got["mta_sts_testing"] == std::pair<size_t, size_t>{0, 4});
  CHECK(got["mta_sts_broken"] == std::pair<size_t, size_t>{1, 4});
  CHECK(got["tlsrpt"] == std::pair<size_t, size_t>{1, 4});
  CHECK(got["starttls_hosts"] == std::pair<size_t, size_t>{4, 5});
  CHECK(got["starttls_all"] == std::pair<size_t, size_t>{3, 4});
  CHECK(got["dane_match"] == std::pair<size_t, size_t>{1, 2});
  CHECK(got["requiretls"] == std::pair<size_t, size_t>{1, 4});
  CHECK(Summarize(records, false).shares.size() == 7);

  std::string text = SummaryToText(s);
  CHECK(text.find("Domains with MX") != std::string::npos);
  CHECK(text.find("80.0%") != std::string::npos);
  nlohmann::json j = SummaryToJson(s);
  CHECK(j["shares"]["mx"]["count"] == 4);
  CHECK(j["shares"]["mx"]["of"] == 5);
}

TEST_CASE("survey: the SVG chart has one bar per share, labels escaped") {
  SurveySummary s;
  s.domains = 3;
  s.shares = {{"a", "A & <b>", 1, 2, "domains"}, {"b", "B", 0, 0, "domains"}};
  std::string svg = SummaryToSvg(s);
  CHECK(svg.rfind("<?xml", 0) == 0);
  size_t bars = 0;
  for (size_t at = svg.find("class=\"bar\""); at != std::string::npos; at = svg.find("class=\"bar\"", at + 1)) ++bars;
  CHECK(bars == 2);
  CHECK(svg.find("A &amp; &lt;b&gt;") != std::string::npos);
  CHECK(svg.find("<b>") == std::string::npos);
}
