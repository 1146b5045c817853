// stats_test.cc - `mxsec stats` counting (report/stats.h) over message
// rows, from memory and from a real attempt log in a temporary directory.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "mxsec/report/stats.h"

using namespace mxsec;

namespace {

constexpr int64_t kDay1 = 1769904000;  // 2026-02-01T00:00:00Z
constexpr int64_t kDay2 = kDay1 + 86400;

MessageRecord Row(int64_t time, const std::string& domain, const std::string& status, const std::string& security,
                  const std::string& policy_failure, int64_t recipients) {
  MessageRecord m;
  m.time = time;
  m.domain = domain;
  m.status = status;
  m.security = security;
  m.policy_failure = policy_failure;
  m.recipients = recipients;
  return m;
}

std::vector<MessageRecord> SampleRows() {
  return {
      Row(kDay1 + 10, "dane.example", "delivered", "dane", "", 2),
      Row(kDay1 + 20, "dane.example", "delivered", "dane", "", 1),
      Row(kDay1 + 30, "sts.example", "delivered", "mta-sts", "", 1),
      Row(kDay2 + 10, "may.example", "delivered", "encrypted", "", 3),
      Row(kDay2 + 20, "old.example", "delivered", "clear", "", 1),
      Row(kDay2 + 30, "strip.example", "deferred", "", "starttls-not-supported", 1),
      Row(kDay2 + 40, "bogus.example", "deferred", "", "dnssec-invalid", 2),
      Row(kDay2 + 50, "down.example", "deferred", "", "", 1),
      Row(kDay2 + 60, "gone.example", "bounced", "", "", 1),
  };
}

StatsOptions Window(int64_t from, int64_t to) {
  StatsOptions o;
  o.from = from;
  o.to = to;
  return o;
}

}  // namespace

TEST_CASE("stats: messages and recipients per category, per day and in total") {
  StatsReport r = ComputeStats(SampleRows(), Window(kDay1, kDay2 + 86400));
  CHECK(r.total.delivered.at("dane").messages == 2);
  CHECK(r.total.delivered.at("dane").recipients == 3);
  CHECK(r.total.delivered.at("mta-sts").messages == 1);
  CHECK(r.total.delivered.at("encrypted").recipients == 3);
  CHECK(r.total.delivered.at("clear").messages == 1);
  CHECK(r.total.deferred_policy.messages == 2);
  CHECK(r.total.deferred_policy.recipients == 3);
  CHECK(r.total.deferred_policy_by_reason.at("starttls-not-supported").messages == 1);
  CHECK(r.total.deferred_policy_by_reason.at("dnssec-invalid").recipients == 2);
  CHECK(r.total.deferred_other.messages == 1);
  CHECK(r.total.bounced_other.messages == 1);
  CHECK(r.total.bounced_policy.messages == 0);
  REQUIRE(r.days.size() == 2);
  CHECK(r.days.at("2026-02-01").delivered.at("dane").messages == 2);
  CHECK(r.days.at("2026-02-01").deferred_policy.messages == 0);
  CHECK(r.days.at("2026-02-02").delivered.at("encrypted").messages == 1);
  CHECK(r.days.at("2026-02-02").Category("deferred_policy").recipients == 3);
}

TEST_CASE("stats: the window and the domains named select rows") {
  StatsReport r = ComputeStats(SampleRows(), Window(kDay2, kDay2 + 86400));
  CHECK(r.total.delivered.at("dane").messages == 0);
  CHECK(r.days.size() == 1);
  StatsOptions o = Window(kDay1, kDay2 + 86400);
  o.domains = {"dane.example", "strip.example"};
  r = ComputeStats(SampleRows(), o);
  CHECK(r.total.delivered.at("dane").messages == 2);
  CHECK(r.total.delivered.at("encrypted").messages == 0);
  CHECK(r.total.deferred_policy.messages == 1);
  // `to` is exclusive.
  r = ComputeStats(SampleRows(), Window(kDay1, kDay1 + 10));
  CHECK(r.days.empty());
}

TEST_CASE("stats: top destination domains by messages, then recipients, then name") {
  std::vector<MessageRecord> rows = {
      Row(kDay1, "b.example", "delivered", "dane", "", 1), Row(kDay1, "a.example", "delivered", "dane", "", 1),
      Row(kDay1, "c.example", "delivered", "dane", "", 5), Row(kDay1, "d.example", "delivered", "dane", "", 1),
      Row(kDay1, "d.example", "delivered", "dane", "", 1),
  };
  StatsOptions o = Window(kDay1, kDay2);
  o.top = 3;
  StatsReport r = ComputeStats(rows, o);
  const auto& top = r.top_domains.at("dane");
  REQUIRE(top.size() == 3);
  CHECK(top[0].domain == "d.example");
  CHECK(top[0].count.messages == 2);
  CHECK(top[1].domain == "c.example");
  CHECK(top[2].domain == "a.example");
  for (const std::string& c : StatsCategories()) CHECK(r.top_domains.count(c) == 1);
  CHECK(r.top_domains.at("clear").empty());
}

TEST_CASE("stats: JSON fields") {
  StatsOptions o = Window(kDay1, kDay2 + 86400);
  o.domains = {"strip.example"};
  auto j = nlohmann::json::parse(StatsToJson(ComputeStats(SampleRows(), o)));
  CHECK(j["from"] == "2026-02-01T00:00:00Z");
  CHECK(j["to"] == "2026-02-03T00:00:00Z");
  CHECK(j["domains"] == nlohmann::json::array({"strip.example"}));
  CHECK(j["total"]["delivered"]["dane"]["messages"] == 0);
  CHECK(j["total"]["deferred_policy"]["total"]["recipients"] == 1);
  CHECK(j["total"]["deferred_policy"]["by_reason"]["starttls-not-supported"]["messages"] == 1);
  CHECK(j["total"]["bounced_policy"]["by_reason"].empty());
  CHECK(j["total"]["deferred_other"]["messages"] == 0);
  REQUIRE(j["days"].size() == 1);
  CHECK(j["days"][0]["day"] == "2026-02-02");
  CHECK(j["top_domains"]["deferred_policy"][0]["domain"] == "strip.example");
}

TEST_CASE("stats: from a real attempt log; a missing log is empty, a broken one an error") {
  char tmpl[] = "/tmp/mxsec-stats-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  const std::string path = dir + "/delivery.sqlite";
  auto empty = ReadStats(path, Window(0, kDay2));
  REQUIRE(empty.ok());
  CHECK(empty->days.empty());
  {
    auto log = OpenSqliteAttemptLog(path);
    REQUIRE(log.ok());
    for (const MessageRecord& m : SampleRows()) REQUIRE((*log)->RecordMessage(m).ok());
  }
  auto r = ReadStats(path, Window(kDay1, kDay2 + 86400));
  REQUIRE(r.ok());
  CHECK(r->total.delivered.at("dane").recipients == 3);
  CHECK(r->total.deferred_policy_by_reason.at("dnssec-invalid").messages == 1);
  auto first_day = ReadStats(path, Window(kDay1, kDay2));
  REQUIRE(first_day.ok());
  CHECK(first_day->total.delivered.at("encrypted").messages == 0);
  unlink(path.c_str());
  unlink((path + "-wal").c_str());
  unlink((path + "-shm").c_str());
  // A log that is not SQLite cannot be read: an error, never an empty report.
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f);
  fputs("not a database, not at all, really not\n", f);
  fclose(f);
  CHECK_FALSE(ReadStats(path, Window(0, kDay2)).ok());
  unlink(path.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("stats: durations") {
  CHECK(ParseStatsDuration("7d").value() == 7 * 86400);
  CHECK(ParseStatsDuration("12h").value() == 12 * 3600);
  CHECK(ParseStatsDuration("90m").value() == 5400);
  CHECK(ParseStatsDuration("3600s").value() == 3600);
  CHECK(ParseStatsDuration("2w").value() == 14 * 86400);
  for (const char* bad : {"", "d", "7", "0d", "-1d", "1.5d", "7 d", "7D", "7y", "99999999999d", "3700w"}) {
    CAPTURE(bad);
    CHECK_FALSE(ParseStatsDuration(bad).ok());
  }
}

TEST_CASE("stats: Prometheus text format, counters of the totals") {
  std::vector<MessageRecord> rows = SampleRows();
  rows.push_back(Row(kDay2 + 70, "odd.example", "bounced", "", "we\"ird\\type\n", 1));
  const std::string text = StatsToPrometheus(ComputeStats(rows, Window(0, kDay2 + 86400)));
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  CHECK(has("# TYPE mxsec_delivered_messages_total counter"));
  CHECK(has("mxsec_delivered_messages_total{security=\"dane\"} 2"));
  CHECK(has("mxsec_delivered_recipients_total{security=\"dane\"} 3"));
  CHECK(has("mxsec_delivered_messages_total{security=\"clear\"} 1"));
  CHECK(has("mxsec_delivered_messages_total{security=\"mta-sts\"} 1"));
  CHECK(has("mxsec_policy_deferred_messages_total{reason=\"starttls-not-supported\"} 1"));
  CHECK(has("mxsec_policy_deferred_recipients_total{reason=\"dnssec-invalid\"} 2"));
  CHECK(has("mxsec_policy_bounced_messages_total{reason=\"we\\\"ird\\\\type\\n\"} 1"));
  CHECK(has("mxsec_other_deferred_messages_total 1"));
  CHECK(has("mxsec_other_bounced_messages_total 1"));
  // Every sample line names a metric that has HELP and TYPE, and every metric ends in _total.
  size_t samples = 0;
  for (size_t at = 0; at < text.size();) {
    const size_t end = text.find('\n', at);
    REQUIRE(end != std::string::npos);
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line[0] == '#') continue;
    ++samples;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    CHECK(name.size() > 6);
    CHECK(name.compare(name.size() - 6, 6, "_total") == 0);
    CHECK(text.find("# TYPE " + name + " counter\n") != std::string::npos);
  }
  CHECK(samples == 16);
}
