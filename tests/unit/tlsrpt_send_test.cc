// tlsrpt_send_test.cc - the TLS-RPT sender (report/tlsrpt_send.h) with a
// fake resolver, poster and queue and a real sent-once store in a scratch
// directory: https vs mailto routing, sent once (a second run sends
// nothing, a failed send is retried with the same report-id), failures
// reported with their reason, and what a record cannot make us do.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fakes.h"
#include "mxsec/report/tlsrpt_send.h"
#include "temp_queue_dir.h"

using namespace mxsec;
using mxsec::testing::FakeResolver;
using mxsec::testing::TxtRec;
using mxsec_test::TempQueueDir;

namespace {

const int64_t kDay = 1763856000;  // 2025-11-23T00:00:00Z

class FakePoster : public ReportPoster {
 public:
  Status Post(const std::string& uri, const std::string& gzip_body) override {
    posts.push_back({uri, gzip_body});
    auto it = failures.find(uri);
    return it == failures.end() ? Status::Ok() : it->second;
  }
  std::vector<std::pair<std::string, std::string>> posts;  // (uri, body)
  std::map<std::string, Status> failures;                  // uri -> what Post returns
};

class FakeQueue : public ReportQueue {
 public:
  struct Submitted {
    std::string message, sender, recipient;
  };
  Result<std::string> Submit(const std::string& message, const std::string& sender,
                             const std::string& recipient) override {
    if (!failure.ok()) return failure;
    submitted.push_back({message, sender, recipient});
    return "Q" + std::to_string(submitted.size());
  }
  std::vector<Submitted> submitted;
  Status failure;
};

TlsReport Report(const std::string& domain, const std::string& suffix) {
  TlsReport r;
  r.domain = domain;
  r.report_id = FormatUtcDay(kDay) + "." + domain + "." + suffix;
  r.json = {{"report-id", r.report_id}, {"organization-name", "sender.example"}};
  r.successes = 3;
  r.failures = 1;
  return r;
}

// One sender run over fresh copies of the reports, as `mxsec tlsrpt` does
// each time it is started.
struct Harness {
  Harness() : dir("mxsec-tlsrpt-send-test") {
    std::filesystem::create_directories(dir.path);
    settings.from = "postmaster@sender.example";
    settings.submitter = "sender.example";
    settings.day_start = kDay;
    settings.now = kDay + 86400 + 60;
  }

  void Txt(const std::string& domain, const std::string& text) {
    resolver.Records("_smtp._tls." + domain, RrType::kTXT, DnssecStatus::kInsecure,
                     {TxtRec("_smtp._tls." + domain, text)});
  }

  TlsRptSender::Summary Run(std::vector<TlsReport> reports) {
    Result<TlsRptSentLog> sent = TlsRptSentLog::Open(dir.path + "/tlsrpt.sqlite");
    REQUIRE_MESSAGE(sent.ok(), sent.error());
    events.clear();
    TlsRptSender sender(settings, &resolver, &poster, &queue, &sent.value());
    last_reports = std::move(reports);
    return sender.Send(last_reports, [this](const TlsRptEvent& e) { events.push_back(e); });
  }

  std::vector<TlsRptEvent> Of(TlsRptEventKind kind) const {
    std::vector<TlsRptEvent> out;
    for (const auto& e : events)
      if (e.kind == kind) out.push_back(e);
    return out;
  }

  TempQueueDir dir;
  TlsRptSendSettings settings;
  FakeResolver resolver;
  FakePoster poster;
  FakeQueue queue;
  std::vector<TlsRptEvent> events;
  std::vector<TlsReport> last_reports;
};

}  // namespace

TEST_CASE("tlsrpt send: https URIs are posted, mailto URIs queued as a report message") {
  Harness h;
  h.Txt("example.org", "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.example.org/v1/tlsrpt");
  TlsRptSender::Summary s = h.Run({Report("example.org", "aaaa@sender.example")});
  CHECK_FALSE(s.retry);
  CHECK_FALSE(s.internal_error);

  REQUIRE(h.poster.posts.size() == 1);
  CHECK(h.poster.posts[0].first == "https://reports.example.org/v1/tlsrpt");
  auto gz = Gzip(h.last_reports[0].json.dump());
  REQUIRE(gz.ok());
  CHECK(h.poster.posts[0].second == gz.value());

  REQUIRE(h.queue.submitted.size() == 1);
  const FakeQueue::Submitted& m = h.queue.submitted[0];
  CHECK(m.sender == "postmaster@sender.example");
  CHECK(m.recipient == "tlsrpt@example.org");
  CHECK(m.message.find("TLS-Report-Domain: example.org\r\n") != std::string::npos);
  CHECK(m.message.find("TLS-Report-Submitter: sender.example\r\n") != std::string::npos);
  CHECK(m.message.find("application/tlsrpt+gzip") != std::string::npos);

  std::vector<TlsRptEvent> sent = h.Of(TlsRptEventKind::kSent);
  REQUIRE(sent.size() == 2);
  CHECK(DescribeTlsRptEvent(sent[0]) == "example.org: mailto:tlsrpt@example.org: report " +
                                            h.last_reports[0].report_id +
                                            " (3 successful, 1 failed sessions) queued as Q1 for tlsrpt@example.org");
  CHECK(DescribeTlsRptEvent(sent[1]) == "example.org: https://reports.example.org/v1/tlsrpt: report " +
                                            h.last_reports[0].report_id + " (3 successful, 1 failed sessions) posted");
  CHECK_FALSE(IsTlsRptWarning(TlsRptEventKind::kSent));
}

TEST_CASE("tlsrpt send: a second run sends nothing") {
  Harness h;
  h.Txt("example.org", "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.example.org/");
  h.Run({Report("example.org", "first@sender.example")});
  const std::string first_id = h.last_reports[0].report_id;
  REQUIRE(h.poster.posts.size() == 1);
  REQUIRE(h.queue.submitted.size() == 1);

  // The next run builds the report again with another proposed id.
  TlsRptSender::Summary s = h.Run({Report("example.org", "second@sender.example")});
  CHECK_FALSE(s.retry);
  CHECK(h.poster.posts.size() == 1);
  CHECK(h.queue.submitted.size() == 1);
  std::vector<TlsRptEvent> already = h.Of(TlsRptEventKind::kAlreadySent);
  REQUIRE(already.size() == 2);
  CHECK(already[0].report_id == first_id);
  CHECK(DescribeTlsRptEvent(already[1]) ==
        "example.org: https://reports.example.org/: already sent (report " + first_id + ")");
  CHECK(h.Of(TlsRptEventKind::kSent).empty());
}

TEST_CASE("tlsrpt send: a failed send is reported with its reason and retried next run with the same id") {
  Harness h;
  h.Txt("example.org", "v=TLSRPTv1; rua=https://reports.example.org/,mailto:tlsrpt@example.org");
  h.poster.failures["https://reports.example.org/"] = Status::Unavailable("HTTP status 503");
  TlsRptSender::Summary s = h.Run({Report("example.org", "first@sender.example")});
  const std::string first_id = h.last_reports[0].report_id;
  CHECK(s.retry);
  std::vector<TlsRptEvent> failed = h.Of(TlsRptEventKind::kNotSent);
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].uri == "https://reports.example.org/");
  CHECK(failed[0].detail == "HTTP status 503");
  CHECK(IsTlsRptWarning(failed[0].kind));
  CHECK(DescribeTlsRptEvent(failed[0]) == "example.org: https://reports.example.org/: report " + first_id +
                                              " not sent: HTTP status 503; try again later");
  CHECK(h.queue.submitted.size() == 1);  // the other URI got it

  h.poster.failures.clear();
  s = h.Run({Report("example.org", "second@sender.example")});
  CHECK_FALSE(s.retry);
  REQUIRE(h.poster.posts.size() == 2);  // retried once
  CHECK(h.queue.submitted.size() == 1);  // not sent again
  CHECK(h.last_reports[0].report_id == first_id);
  CHECK(h.last_reports[0].json["report-id"] == first_id);
  REQUIRE(h.Of(TlsRptEventKind::kSent).size() == 1);
  CHECK(h.Of(TlsRptEventKind::kAlreadySent).size() == 1);
}

TEST_CASE("tlsrpt send: a queue failure is reported and retried") {
  Harness h;
  h.Txt("example.org", "v=TLSRPTv1; rua=mailto:tlsrpt@example.org");
  h.queue.failure = Status::IoError("/var/spool/mxsec: No space left on device");
  TlsRptSender::Summary s = h.Run({Report("example.org", "x@sender.example")});
  CHECK(s.retry);
  std::vector<TlsRptEvent> failed = h.Of(TlsRptEventKind::kNotSent);
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].detail == "cannot queue the report: /var/spool/mxsec: No space left on device");
  h.queue.failure = Status::Ok();
  s = h.Run({Report("example.org", "y@sender.example")});
  CHECK_FALSE(s.retry);
  CHECK(h.queue.submitted.size() == 1);
}

TEST_CASE("tlsrpt send: lookups that fail are retried, domains without a record get nothing") {
  Harness h;
  h.resolver.Fail("_smtp._tls.broken.example", RrType::kTXT, DnssecStatus::kInsecure);
  h.Txt("norecord.example", "v=spf1 -all");
  TlsRptSender::Summary s = h.Run({Report("broken.example", "a@s"), Report("norecord.example", "b@s")});
  CHECK(s.retry);
  std::vector<TlsRptEvent> lookup = h.Of(TlsRptEventKind::kLookupFailed);
  REQUIRE(lookup.size() == 1);
  CHECK(DescribeTlsRptEvent(lookup[0]) ==
        "broken.example: TXT lookup of _smtp._tls.broken.example failed (SERVFAIL (fake)); try again later");
  std::vector<TlsRptEvent> none = h.Of(TlsRptEventKind::kNoRecord);
  REQUIRE(none.size() == 1);
  CHECK(DescribeTlsRptEvent(none[0]) ==
        "norecord.example: no report sent: no TLSRPT record (no TXT record starts with v=TLSRPTv1)");
  CHECK_FALSE(IsTlsRptWarning(TlsRptEventKind::kNoRecord));
  CHECK(h.poster.posts.empty());
  CHECK(h.queue.submitted.empty());
}

TEST_CASE("tlsrpt send: what a record cannot make us do") {
  Harness h;
  std::string rua = "ftp://x.example/,https://user@reports.example.org/";
  for (int i = 0; i < 10; ++i) rua += ",https://r" + std::to_string(i) + ".example/";
  h.Txt("example.org", "v=TLSRPTv1; rua=" + rua);
  TlsRptSender::Summary s = h.Run({Report("example.org", "a@s")});
  CHECK_FALSE(s.retry);  // nothing here is temporary
  REQUIRE(h.Of(TlsRptEventKind::kIgnoredScheme).size() == 1);
  CHECK(DescribeTlsRptEvent(h.Of(TlsRptEventKind::kIgnoredScheme)[0]) ==
        "example.org: ignoring rua ftp://x.example/ (only mailto: and https: are supported)");
  std::vector<TlsRptEvent> many = h.Of(TlsRptEventKind::kTooManyUris);
  REQUIRE(many.size() == 1);
  CHECK(DescribeTlsRptEvent(many[0]) == "example.org: the record lists 11 URIs; only the first 8 get the report");
  REQUIRE(h.Of(TlsRptEventKind::kIgnoredHttpsUri).size() == 1);
  CHECK(h.Of(TlsRptEventKind::kIgnoredHttpsUri)[0].uri == "https://user@reports.example.org/");
  // Of the first 8 URIs, 1 cannot be used: 7 posts.
  CHECK(h.poster.posts.size() == 7);
  CHECK(h.queue.submitted.empty());
}

TEST_CASE("tlsrpt send: the sent-once store and the https poster name what failed") {
  Result<TlsRptSentLog> sent = TlsRptSentLog::Open("/nonexistent-mxsec-test-dir/tlsrpt.sqlite");
  REQUIRE_FALSE(sent.ok());
  CHECK(sent.status().IsIoError());
  CHECK(sent.error() == "/nonexistent-mxsec-test-dir/tlsrpt.sqlite: unable to open database file");

  // No address for the host: no connection is tried.
  FakeResolver resolver;
  resolver.Fail("reports.example.org", RrType::kA, DnssecStatus::kInsecure);
  resolver.NoData("reports.example.org", RrType::kAAAA, DnssecStatus::kInsecure);
  Config cfg;
  std::unique_ptr<ReportPoster> poster = NewHttpsReportPoster(cfg, &resolver);
  Status s = poster->Post("https://reports.example.org/v1", "gz");
  CHECK(s.IsUnavailable());
  CHECK(s.message() == "no address for reports.example.org (SERVFAIL (fake))");
}
