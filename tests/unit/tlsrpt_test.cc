// tlsrpt_test.cc - SMTP TLS Reporting (RFC 8460): the TXT record parser
// (including hostile input), daily aggregation and the report JSON, the
// report message, and the attempt log's report columns (migration of an
// older table included).
#include <doctest/doctest.h>

#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <string>

#include "mxsec/base/sqlite.h"
#include "mxsec/smtp/delivery.h"
#include "mxsec/policy/requiretls.h"
#include "mxsec/report/tlsrpt.h"

using namespace mxsec;

namespace {

std::string Gunzip(const std::string& gz) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&z, Z_FINISH);
  out.resize(out.size() - z.avail_out);
  inflateEnd(&z);
  REQUIRE(rc == Z_STREAM_END);
  return out;
}

const int64_t kDay = 1763856000;  // 2025-11-23T00:00:00Z

AttemptRecord Rec(const std::string& domain, const std::string& mx, const std::string& ip, const std::string& type,
                  const std::string& failure, int64_t offset = 3600) {
  AttemptRecord r;
  r.time = kDay + offset;
  r.domain = domain;
  r.mx = mx;
  r.address = ip;
  r.policy_type = type;
  if (type == "sts") {
    r.policy_strings = {"version: STSv1", "mode: enforce", "mx: *.example.org", "max_age: 86400"};
    r.mx_patterns = {"*.example.org"};
  } else if (type == "tlsa") {
    r.policy_strings = {"3 1 1 abcd"};
    r.mx_patterns = {mx};
  }
  r.failure_type = failure;
  if (failure.empty()) {
    r.tls_version = "TLS1.3";
    r.outcome = "delivered";
  } else {
    r.outcome = "host-failed";
  }
  return r;
}

}  // namespace

TEST_CASE("tlsrpt: record parser accepts the RFC 8460 grammar") {
  auto r = ParseTlsRptRecord("v=TLSRPTv1; rua=mailto:reports@example.org");
  REQUIRE(r.ok());
  CHECK(r->rua == std::vector<std::string>{"mailto:reports@example.org"});

  r = ParseTlsRptRecord("v=TLSRPTv1;rua=mailto:a@example.org,https://r.example.org/v1/tlsrpt;");
  REQUIRE(r.ok());
  CHECK(r->rua == std::vector<std::string>{"mailto:a@example.org", "https://r.example.org/v1/tlsrpt"});

  // Whitespace around ";" and ",", unknown extensions ignored, other schemes set aside.
  r = ParseTlsRptRecord("v=TLSRPTv1 ;\trua=mailto:a@example.org , ftp://x.example/y ; ext-1.a=some:value");
  REQUIRE(r.ok());
  CHECK(r->rua == std::vector<std::string>{"mailto:a@example.org"});
  CHECK(r->ignored == std::vector<std::string>{"ftp://x.example/y"});

  // Percent-encoded address in mailto, query part dropped.
  auto a = MailtoAddress("mailto:tls%2Brpt@example.org?subject=x");
  REQUIRE(a.ok());
  CHECK(a.value() == "tls+rpt@example.org");
}

TEST_CASE("tlsrpt: record parser refuses what RFC 8460 does not allow") {
  struct Bad { const char* text; const char* why; };
  const Bad cases[] = {
      {"", "does not start"},
      {"v=TLSRPTv2; rua=mailto:a@example.org", "does not start"},
      {" v=TLSRPTv1; rua=mailto:a@example.org", "does not start"},
      {"v=tlsrptv1; rua=mailto:a@example.org", "does not start"},
      {"v=TLSRPTv1", "no rua"},
      {"v=TLSRPTv1;", "no rua"},
      {"v=TLSRPTv1; ext=1", "no rua"},
      {"v=TLSRPTv1; rua=mailto:a@example.org; rua=mailto:b@example.org", "twice"},
      {"v=TLSRPTv1; rua=", "empty URI"},
      {"v=TLSRPTv1; rua=mailto:a@example.org,", "empty URI"},
      {"v=TLSRPTv1; rua=ftp://x.example/", "no mailto: or https:"},
      {"v=TLSRPTv1; rua=reports@example.org", "no scheme"},
      {"v=TLSRPTv1; rua=mailto:not an address", "percent-encoded"},
      {"v=TLSRPTv1; rua=mailto:a@example.org;; x=y", "empty field"},
      {"v=TLSRPTv1; rua=mailto:a@example.org; noequals", "no \"=\""},
      {"v=TLSRPTv1; rua=mailto:a@example.org; -bad=1", "invalid field name"},
      {"v=TLSRPTv1; rua=mailto:a@example.org; x=", "invalid value"},
      {"v=TLSRPTv1; rua=mailto:a@example.org; x=a=b", "invalid value"},
      {"v=TLSRPTv1; rua=mailto:a@example.org; v=TLSRPTv1", "twice"},
      {"v=TLSRPTv1; rua=mailto:", "invalid address"},
      {"v=TLSRPTv1; rua=mailto:nodomain", "invalid address"},
      {"v=TLSRPTv1; rua=mailto:a%4", "percent"},
      {"v=TLSRPTv1; rua=mailto:a%2Cb@example.org", "more than one"},
      {"v=TLSRPTv1; rua=mailto:a@example.org\x01", "percent-encoded"},
      {"v=TLSRPTv1; rua=mailto:a@\xc3\xa9xample.org", "percent-encoded"},
  };
  for (const Bad& b : cases) {
    const std::string text = b.text;
    CAPTURE(text);
    auto r = ParseTlsRptRecord(text);
    REQUIRE_FALSE(r.ok());
    const std::string error = r.error();
    CAPTURE(error);
    CHECK(error.find(b.why) != std::string::npos);
  }
  // Hostile sizes: a long list is parsed without trouble, a NUL byte is refused.
  std::string many = "v=TLSRPTv1; rua=";
  for (int i = 0; i < 2000; ++i) many += (i ? "," : "") + std::string("mailto:r") + std::to_string(i) + "@example.org";
  auto r = ParseTlsRptRecord(many);
  REQUIRE(r.ok());
  CHECK(r->rua.size() == 2000);
  static const char kNul[] = "v=TLSRPTv1; rua=mailto:a@example.org\0x";
  const std::string with_nul(kNul, sizeof kNul - 1);
  REQUIRE(with_nul.size() == 38);
  CHECK_FALSE(ParseTlsRptRecord(with_nul).ok());
}

TEST_CASE("tlsrpt: one valid record or no reporting") {
  auto r = SelectTlsRptRecord({"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.org"});
  REQUIRE(r.ok());
  CHECK(r->rua.size() == 1);
  r = SelectTlsRptRecord({"v=TLSRPTv1; rua=mailto:a@example.org", "v=TLSRPTv1; rua=mailto:b@example.org"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("2 TXT records") != std::string::npos);
  r = SelectTlsRptRecord({"v=spf1 -all"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("no TLSRPT record") != std::string::npos);
  r = SelectTlsRptRecord({"v=TLSRPTv1; rua=nothing"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("invalid TLSRPT record") != std::string::npos);
}

TEST_CASE("tlsrpt: days in UTC") {
  auto d = ParseUtcDay("2025-11-23");
  REQUIRE(d.ok());
  CHECK(d.value() == kDay);
  CHECK(FormatUtcDay(kDay + 86399) == "2025-11-23");
  CHECK(FormatUtcDateTime(kDay + 86399) == "2025-11-23T23:59:59Z");
  for (const char* bad : {"2025-02-30", "2025-13-01", "2025-1-01", "20251123", "", "abcd-ef-gh", "1969-12-31"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseUtcDay(bad).ok());
  }
}

TEST_CASE("tlsrpt: aggregation per domain and policy, JSON shape of RFC 8460 §4") {
  std::vector<AttemptRecord> recs = {
      Rec("example.org", "mx1.example.org", "192.0.2.1", "sts", ""),
      Rec("example.org", "mx1.example.org", "192.0.2.1", "sts", ""),
      Rec("example.org", "mx2.example.org", "192.0.2.2", "sts", "certificate-host-mismatch"),
      Rec("example.org", "mx2.example.org", "192.0.2.2", "sts", "certificate-host-mismatch"),
      Rec("example.org", "mx3.example.org", "192.0.2.3", "sts", "starttls-not-supported"),
      Rec("dane.example", "mx.dane.example", "192.0.2.9", "tlsa", ""),
      Rec("dane.example", "mx.dane.example", "192.0.2.9", "tlsa", "validation-failure"),
      Rec("plain.example", "mx.plain.example", "192.0.2.7", "no-policy-found", ""),
      // not counted: the day before, the day after, no policy type (probe / old row), no TLS result
      Rec("example.org", "mx1.example.org", "192.0.2.1", "sts", "", -1),
      Rec("example.org", "mx1.example.org", "192.0.2.1", "sts", "", 86400),
      Rec("example.org", "mx1.example.org", "192.0.2.1", "", ""),
  };
  AttemptRecord refused = Rec("example.org", "mx1.example.org", "192.0.2.1", "sts", "");
  refused.tls_version.clear();
  refused.outcome = "host-failed";
  recs.push_back(refused);

  ReportMeta meta;
  meta.organization = "Sender Org";
  meta.contact = "postmaster@sender.example";
  meta.day_start = kDay;
  meta.id_suffix = "x1@sender.example";
  std::vector<TlsReport> reps = AggregateReports(recs, meta);
  REQUIRE(reps.size() == 3);
  CHECK(reps[0].domain == "dane.example");
  CHECK(reps[1].domain == "example.org");
  CHECK(reps[2].domain == "plain.example");

  const nlohmann::json& j = reps[1].json;
  CHECK(j["organization-name"] == "Sender Org");
  CHECK(j["contact-info"] == "postmaster@sender.example");
  CHECK(j["report-id"] == "2025-11-23.example.org.x1@sender.example");
  CHECK(reps[1].report_id == j["report-id"]);
  CHECK(j["date-range"]["start-datetime"] == "2025-11-23T00:00:00Z");
  CHECK(j["date-range"]["end-datetime"] == "2025-11-23T23:59:59Z");
  REQUIRE(j["policies"].size() == 1);
  const nlohmann::json& p = j["policies"][0];
  CHECK(p["policy"]["policy-type"] == "sts");
  CHECK(p["policy"]["policy-domain"] == "example.org");
  CHECK(p["policy"]["policy-string"] ==
        nlohmann::json({"version: STSv1", "mode: enforce", "mx: *.example.org", "max_age: 86400"}));
  CHECK(p["policy"]["mx-host"] == nlohmann::json({"*.example.org"}));
  CHECK(p["summary"]["total-successful-session-count"] == 2);
  CHECK(p["summary"]["total-failure-session-count"] == 3);
  REQUIRE(p["failure-details"].size() == 2);
  CHECK(p["failure-details"][0]["result-type"] == "certificate-host-mismatch");
  CHECK(p["failure-details"][0]["receiving-mx-hostname"] == "mx2.example.org");
  CHECK(p["failure-details"][0]["receiving-ip"] == "192.0.2.2");
  CHECK(p["failure-details"][0]["failed-session-count"] == 2);
  CHECK(p["failure-details"][1]["result-type"] == "starttls-not-supported");
  CHECK(p["failure-details"][1]["failed-session-count"] == 1);
  CHECK(reps[1].successes == 2);
  CHECK(reps[1].failures == 3);

  const nlohmann::json& d = reps[0].json["policies"][0];
  CHECK(d["policy"]["policy-type"] == "tlsa");
  CHECK(d["policy"]["policy-string"] == nlohmann::json({"3 1 1 abcd"}));
  CHECK(d["policy"]["mx-host"] == nlohmann::json({"mx.dane.example"}));
  CHECK(d["summary"]["total-successful-session-count"] == 1);
  CHECK(d["summary"]["total-failure-session-count"] == 1);

  const nlohmann::json& n = reps[2].json["policies"][0];
  CHECK(n["policy"]["policy-type"] == "no-policy-found");
  CHECK_FALSE(n["policy"].contains("policy-string"));
  CHECK_FALSE(n.contains("failure-details"));

  // Two different TLSA RRsets of one domain are two policies.
  AttemptRecord other = Rec("dane.example", "mx2.dane.example", "192.0.2.10", "tlsa", "");
  other.policy_strings = {"2 0 1 ef01"};
  recs.push_back(other);
  reps = AggregateReports(recs, meta);
  CHECK(reps[0].json["policies"].size() == 2);
}

TEST_CASE("tlsrpt: gzip round trip and the RFC 8460 §5.3 message") {
  const std::string json = R"({"report-id":"r1"})";
  auto gz = Gzip(json);
  REQUIRE(gz.ok());
  CHECK(Gunzip(gz.value()) == json);
  CHECK(ReportFileName("sender.example", "example.org", kDay, kDay + 86399, "u1") ==
        "sender.example!example.org!1763856000!1763942399!u1.json.gz");

  ReportMessage m;
  m.from = "postmaster@sender.example";
  m.to = "tlsrpt@example.org";
  m.submitter = "sender.example";
  m.domain = "example.org";
  m.report_id = "r1";
  m.gzip = gz.value();
  m.file_name = "sender.example!example.org!1!2.json.gz";
  m.message_id = "<m1@sender.example>";
  m.date = kDay;
  const std::string msg = BuildReportMessage(m);
  CHECK(msg.find("Subject: Report Domain: example.org Submitter: sender.example Report-ID: <r1>\r\n") !=
        std::string::npos);
  CHECK(msg.find("TLS-Report-Domain: example.org\r\n") != std::string::npos);
  CHECK(msg.find("TLS-Report-Submitter: sender.example\r\n") != std::string::npos);
  CHECK(msg.find("TLS-Required: No\r\n") != std::string::npos);  // delivered even when the domain's TLS is broken
  CHECK(HasTlsRequiredNo(msg));
  CHECK(msg.find("Content-Type: multipart/report; report-type=\"tlsrpt\";") != std::string::npos);
  CHECK(msg.find("Content-Type: application/tlsrpt+gzip\r\n") != std::string::npos);
  CHECK(msg.find("filename=\"sender.example!example.org!1!2.json.gz\"") != std::string::npos);
  // Every line ends in CRLF, is 7-bit and at most 998 octets.
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t eol = msg.find("\r\n", pos);
    REQUIRE(eol != std::string::npos);
    CHECK(eol - pos <= 998);
    for (size_t i = pos; i < eol; ++i) CHECK(static_cast<unsigned char>(msg[i]) < 0x80);
    CHECK(msg.substr(pos, eol - pos).find('\n') == std::string::npos);
    pos = eol + 2;
  }
}

TEST_CASE("tlsrpt: attempt log stores report columns and migrates an old table") {
  char tmpl[] = "/tmp/mxsec-tlsrpt-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string path = std::string(tmpl) + "/delivery.sqlite";
  // A table as written by a version without the report columns, with one row.
  {
    Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions());
    REQUIRE(db.ok());
    CHECK(db->Exec("CREATE TABLE attempts (time INTEGER, domain TEXT, mx TEXT, address TEXT, port INTEGER,"
                   " policy TEXT, mechanism TEXT, host_tls TEXT, tls_version TEXT, tls_cipher TEXT,"
                   " verification TEXT, verified INTEGER, outcome TEXT, code TEXT, detail TEXT, failure_type TEXT);"
                   "INSERT INTO attempts (time, domain, outcome) VALUES (1763859600, 'old.example', 'delivered');")
              .ok());
  }

  auto log = OpenSqliteAttemptLog(path);
  REQUIRE(log.ok());
  AttemptRecord r = Rec("example.org", "mx2.example.org", "192.0.2.2", "sts", "certificate-host-mismatch");
  REQUIRE(log.value()->Record(r).ok());
  log.value().reset();

  auto rows = ReadAttempts(path, kDay, kDay + 86400);
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 2);
  CHECK(rows->at(0).domain == "old.example");
  CHECK(rows->at(0).policy_type.empty());
  CHECK(rows->at(1).policy_type == "sts");
  CHECK(rows->at(1).policy_strings == r.policy_strings);
  CHECK(rows->at(1).mx_patterns == r.mx_patterns);
  CHECK(rows->at(1).failure_type == "certificate-host-mismatch");
  // Opening twice (a second process) keeps working; a missing log is empty.
  CHECK(OpenSqliteAttemptLog(path).ok());
  auto none = ReadAttempts(std::string(tmpl) + "/missing.sqlite", 0, kDay);
  REQUIRE(none.ok());
  CHECK(none->empty());
  std::string cmd = std::string("rm -rf ") + tmpl;
  CHECK(system(cmd.c_str()) == 0);
}

TEST_CASE("tlsrpt: SetReportPolicy names the policy that applied to the host") {
  DomainPolicy p;
  p.domain = "example.org";
  MxPolicy mx;
  mx.host = "mx.example.org";
  mx.tls = HostTls::kDane;
  TlsaRecord t;
  t.usage = 3;
  t.selector = 1;
  t.matching = 1;
  t.data = {0xab, 0xcd};
  mx.tlsa = {t};
  AttemptRecord r;
  SetReportPolicy(&r, p, mx);
  CHECK(r.policy_type == "tlsa");
  CHECK(r.policy_strings == std::vector<std::string>{t.ToString()});
  CHECK(r.mx_patterns == std::vector<std::string>{"mx.example.org"});

  mx.tls = HostTls::kPkix;
  mx.tlsa.clear();
  StsState s;
  s.mode = StsMode::kEnforce;
  s.mx = {"mx.example.org", "*.example.org"};
  s.max_age = 604800;
  p.mta_sts = s;
  SetReportPolicy(&r, p, mx);
  CHECK(r.policy_type == "sts");
  CHECK(r.policy_strings == std::vector<std::string>{"version: STSv1", "mode: enforce", "mx: mx.example.org",
                                                     "mx: *.example.org", "max_age: 604800"});
  CHECK(r.mx_patterns == s.mx);

  p.mta_sts->mode = StsMode::kNone;
  mx.tls = HostTls::kMay;
  SetReportPolicy(&r, p, mx);
  CHECK(r.policy_type == "no-policy-found");
  CHECK(r.policy_strings.empty());
}

namespace {

class CaptureLog : public AttemptLog {
 public:
  Status Record(const AttemptRecord& r) override {
    records.push_back(r);
    return Status::Ok();
  }
  std::vector<AttemptRecord> records;
};

}  // namespace

TEST_CASE("tlsrpt: a host whose TLSA lookup failed is a dnssec-invalid failure without a session") {
  DomainPolicy p;
  p.domain = "example.org";
  p.verdict = Verdict::kDefer;
  MxPolicy bad;
  bad.host = "mx1.example.org";
  bad.tls = HostTls::kSkip;
  bad.tlsa_looked_up = true;
  bad.tlsa_dnssec = DnssecStatus::kIndeterminate;
  bad.addresses = {"192.0.2.1"};
  bad.reason = "TLSA lookup failed: SERVFAIL";
  MxPolicy skipped = bad;  // skipped for another reason (no TLSA lookup): not a DANE failure
  skipped.host = "mx2.example.org";
  skipped.tlsa_looked_up = false;
  p.mx = {bad, skipped};
  int sessions = 0;
  DeliveryOptions o;
  o.session = [&](const std::string&, uint16_t, const SessionOptions&, const Envelope*, int64_t) {
    ++sessions;
    return SessionResult{};
  };
  CaptureLog log;
  FakeClock clock(kDay + 100);
  PreparedMessage msg;
  Mailbox sender, rcpt;
  sender.local = "s";
  sender.domain = "sender.example";
  rcpt.local = "r";
  rcpt.domain = "example.org";
  auto out = DeliverDomain(p, sender, {rcpt}, msg, o, &log, &clock);
  CHECK(sessions == 0);
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == RcptStatus::kDeferred);
  REQUIRE(log.records.size() == 1);
  const AttemptRecord& r = log.records[0];
  CHECK(r.mx == "mx1.example.org");
  CHECK(r.address.empty());
  CHECK(r.outcome == "policy-failed");
  CHECK(r.failure_type == "dnssec-invalid");
  CHECK(r.policy_type == "tlsa");
  CHECK(r.mx_patterns == std::vector<std::string>{"mx1.example.org"});

  ReportMeta meta;
  meta.day_start = kDay;
  auto reps = AggregateReports(log.records, meta);
  REQUIRE(reps.size() == 1);
  const nlohmann::json& pol = reps[0].json["policies"][0];
  CHECK(pol["summary"]["total-failure-session-count"] == 1);
  CHECK(pol["failure-details"][0] ==
        nlohmann::json({{"result-type", "dnssec-invalid"}, {"receiving-mx-hostname", "mx1.example.org"},
                        {"failed-session-count", 1}}));
}

TEST_CASE("tlsrpt: the host and port of an https rua") {
  auto t = HttpsAuthority("https://Reports.Example.org/v1/tlsrpt?x=1");
  REQUIRE(t.ok());
  CHECK(t->host == "reports.example.org");
  CHECK(t->port == "443");
  t = HttpsAuthority("https://r.example.org:8443");
  REQUIRE(t.ok());
  CHECK(t->port == "8443");
  for (const char* bad : {"https://user@r.example.org/", "https://r.example.org:0/", "https://r.example.org:99999/",
                          "https://r.example.org:/", "https://r.example.org:8x/", "https:///path", "http://r.example.org/",
                          "https://[::1]/", "https://r..example.org/"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(HttpsAuthority(bad).ok());
  }
}

TEST_CASE("tlsrpt: an MTA-STS policy that could not be fetched or parsed is reported once per attempt") {
  struct Case { const char* error; StsProblem problem; const char* type; };
  for (const Case& c : {Case{"policy fetch failed: HTTP status 404", StsProblem::kFetchFailed, "sts-policy-fetch-error"},
                        Case{"policy fetch failed: invalid policy: line 2: mode", StsProblem::kPolicyInvalid,
                             "sts-policy-invalid"}}) {
    CAPTURE(std::string(c.error));
    DomainPolicy p;
    p.domain = "example.org";
    p.verdict = Verdict::kOpportunistic;
    StsState st;
    st.mode = StsMode::kNone;
    st.id = "id1";
    st.error = std::string(c.error);
    st.problem = c.problem;
    p.mta_sts = st;
    MxPolicy mx;
    mx.host = "mx.example.org";
    mx.tls = HostTls::kMay;
    mx.addresses = {"192.0.2.1"};
    p.mx = {mx};
    DeliveryOptions o;
    o.shuffle_equal_preferences = false;
    o.session = [](const std::string&, uint16_t, const SessionOptions&, const Envelope* e, int64_t) {
      SessionResult r;
      r.connected = true;
      r.tls.used = true;
      r.tls.version = "TLS1.3";
      for (size_t i = 0; i < e->recipients.size(); ++i)
        r.recipients.push_back({RcptStatus::kDelivered, "2.0.0", "250 ok", false});
      return r;
    };
    CaptureLog log;
    FakeClock clock(kDay + 100);
    PreparedMessage msg;
    Mailbox sender, rcpt;
    sender.local = "s";
    sender.domain = "sender.example";
    rcpt.local = "r";
    rcpt.domain = "example.org";
    auto out = DeliverDomain(p, sender, {rcpt}, msg, o, &log, &clock);
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == RcptStatus::kDelivered);
    REQUIRE(log.records.size() == 2);
    CHECK(log.records[0].outcome == "policy-failed");
    CHECK(log.records[0].failure_type == c.type);
    CHECK(log.records[0].policy_type == "sts");
    CHECK(log.records[0].mx.empty());
    CHECK(log.records[1].outcome == "delivered");
    CHECK(log.records[1].policy_type == "no-policy-found");

    ReportMeta meta;
    meta.day_start = kDay;
    auto reps = AggregateReports(log.records, meta);
    REQUIRE(reps.size() == 1);
    REQUIRE(reps[0].json["policies"].size() == 2);
    const nlohmann::json& none = reps[0].json["policies"][0];
    const nlohmann::json& sts = reps[0].json["policies"][1];
    CHECK(none["policy"]["policy-type"] == "no-policy-found");
    CHECK(none["summary"]["total-successful-session-count"] == 1);
    CHECK(sts["policy"]["policy-type"] == "sts");
    CHECK(sts["policy"]["policy-string"] == nlohmann::json::array());
    CHECK(sts["summary"]["total-failure-session-count"] == 1);
    CHECK(sts["failure-details"][0] == nlohmann::json({{"result-type", c.type}, {"failed-session-count", 1}}));
  }
  // A domain without MTA-STS (no TXT id) records nothing of the kind.
  DomainPolicy p;
  p.domain = "example.org";
  p.verdict = Verdict::kDefer;
  StsState st;
  st.mode = StsMode::kNone;
  st.error = std::string("invalid TXT record");
  st.problem = StsProblem::kTxtUnusable;
  p.mta_sts = st;
  CaptureLog log;
  FakeClock clock(kDay);
  PreparedMessage msg;
  DeliveryOptions o;
  DeliverDomain(p, Mailbox{}, {}, msg, o, &log, &clock);
  CHECK(log.records.empty());
}
