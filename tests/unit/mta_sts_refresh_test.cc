// mta_sts_refresh_test.cc - proactive refresh of cached MTA-STS policies
// (mta_sts_refresh.h) with a fake clock, resolver and policy server: what
// is due, what a success and a failure leave in the cache, the back-off,
// the per-run bound, and that a refreshed policy outlives a fetch that is
// blocked when the old one would have expired.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include <unistd.h>

#include "fakes.h"
#include "mxsec/base/sqlite.h"
#include "mxsec/policy/mta_sts_refresh.h"
#include "mxsec/policy/policy.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

constexpr int64_t kWeek = 604800;
constexpr DnssecStatus I = DnssecStatus::kInsecure;

std::string Body(const std::string& mode, int64_t max_age) {
  return "version: STSv1\nmode: " + mode + "\nmx: mx.example.org\nmax_age: " + std::to_string(max_age) + "\n";
}

struct Bed {
  FakeClock clock{1700000000};
  FakeResolver dns;
  FakeStsServer web;
  FakeStsFetcher fetcher{&web};
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  StsRefreshOptions opt;

  Bed() { dns.default_status = I; }
  // example.org published with TXT id `id` and a policy host.
  void Publish(const std::string& domain, const std::string& id) {
    dns.Records("_mta-sts." + domain, RrType::kTXT, I, {TxtRec("_mta-sts." + domain, "v=STSv1; id=" + id)});
    dns.Host("mta-sts." + domain, "192.0.2.80", I);
  }
  // A cached policy fetched `age` seconds ago.
  void Cache(const std::string& domain, const std::string& id, const std::string& body, int64_t age) {
    CachedStsPolicy e;
    e.domain = domain;
    e.id = id;
    e.text = body;
    e.policy = ParseStsPolicy(body).value();
    e.fetched_at = clock.Now() - age;
    e.expires_at = e.fetched_at + e.policy.max_age;
    REQUIRE(cache->Put(e).ok());
  }
  StsRefreshReport Run() { return RefreshStsPolicies(&dns, &fetcher, cache.get(), &clock, opt); }
};

}  // namespace

TEST_CASE("sts refresh: a policy at 80% of its max_age is fetched again and its max_age restarts") {
  Bed b;
  b.Publish("example.org", "v1");
  b.web.Serve("example.org", Body("enforce", kWeek));
  b.Cache("example.org", "v1", Body("enforce", kWeek), kWeek * 8 / 10);
  StsRefreshReport r = b.Run();
  REQUIRE(r.domains.size() == 1);
  CHECK(r.domains[0].refreshed);
  CHECK(r.failed() == 0);
  CHECK(b.web.fetches["example.org"] == 1);
  auto e = b.cache->Get("example.org");
  REQUIRE(e);
  CHECK(e->fetched_at == b.clock.Now());
  CHECK(e->expires_at == b.clock.Now() + kWeek);
  CHECK(e->refresh_failures == 0);
  // Just refreshed: the next run has nothing to do.
  CHECK(b.Run().domains.empty());
  CHECK(b.web.fetches["example.org"] == 1);
}

TEST_CASE("sts refresh: what is due") {
  Bed b;
  for (const char* d : {"young.example", "day.example", "short.example", "expired.example"}) b.Publish(d, "x");
  b.Cache("young.example", "x", Body("enforce", kWeek), 3600);               // an hour old: not due
  b.Cache("day.example", "x", Body("enforce", kWeek), 86400);                 // a day old: due (RFC 8461 §3.3)
  b.Cache("short.example", "x", Body("enforce", 3600), 3600 * 3 / 4);         // 3/4 of a short max_age: due
  b.Cache("expired.example", "x", Body("enforce", 3600), 3601);               // expired: not refreshed
  for (const char* d : {"young.example", "day.example", "short.example", "expired.example"})
    b.web.Serve(d, Body("enforce", kWeek));
  StsRefreshReport r = b.Run();
  std::vector<std::string> done;
  for (const auto& d : r.domains) done.push_back(d.domain);
  // The soonest to expire first.
  CHECK(done == std::vector<std::string>{"short.example", "day.example"});
}

TEST_CASE("sts refresh: a failed refresh keeps the policy and backs off, bounded") {
  Bed b;
  b.Publish("example.org", "v1");
  b.web.Break("example.org", "HTTP status 503");
  const std::string body = Body("enforce", kWeek);
  b.Cache("example.org", "v1", body, kWeek * 8 / 10);
  const int64_t expires = b.cache->Get("example.org")->expires_at;
  b.opt.backoff_min = 300;
  b.opt.backoff_max = 3600;

  int64_t last_delay = 0;
  std::vector<int64_t> delays;
  for (int i = 0; i < 6; ++i) {
    StsRefreshReport r = b.Run();
    REQUIRE(r.domains.size() == 1);
    CHECK_FALSE(r.domains[0].refreshed);
    CHECK(r.domains[0].error.find("503") != std::string::npos);
    auto e = b.cache->Get("example.org");
    REQUIRE(e);
    // The policy is untouched: same text, id, expiry.
    CHECK(e->text == body);
    CHECK(e->id == "v1");
    CHECK(e->expires_at == expires);
    CHECK(e->refresh_failures == i + 1);
    CHECK(e->refresh_last == b.clock.Now());
    const int64_t delay = e->refresh_next - b.clock.Now();
    CHECK(delay >= last_delay);
    delays.push_back(delay);
    last_delay = delay;
    // Not retried before the back-off is over...
    b.clock.Advance(delay - 1);
    CHECK(b.Run().domains.empty());
    // ...and retried once it is.
    b.clock.Advance(1);
  }
  CHECK(delays == std::vector<int64_t>{300, 600, 1200, 2400, 3600, 3600});
  CHECK(b.web.fetches["example.org"] == 6);
  // A success resets the back-off.
  b.web.Serve("example.org", Body("enforce", kWeek));
  StsRefreshReport r = b.Run();
  REQUIRE(r.domains.size() == 1);
  CHECK(r.domains[0].refreshed);
  CHECK(b.cache->Get("example.org")->refresh_failures == 0);
  CHECK(b.cache->Get("example.org")->refresh_next == 0);
}

TEST_CASE("sts refresh: a missing TXT record, or no address, fails without a fetch and keeps the policy") {
  Bed b;
  b.dns.NoData("_mta-sts.gone.example", RrType::kTXT, I);
  b.Publish("noaddr.example", "n1");
  b.dns.Fail("mta-sts.noaddr.example", RrType::kA, I);
  b.dns.Fail("mta-sts.noaddr.example", RrType::kAAAA, I);
  b.Cache("gone.example", "g1", Body("enforce", kWeek), 2 * 86400);
  b.Cache("noaddr.example", "n1", Body("enforce", kWeek), 2 * 86400);
  StsRefreshReport r = b.Run();
  REQUIRE(r.domains.size() == 2);
  CHECK(r.failed() == 2);
  CHECK(b.web.fetches.empty());
  CHECK(b.cache->Get("gone.example")->refresh_failures == 1);
  CHECK(b.cache->Get("noaddr.example")->refresh_error.find("no address") != std::string::npos);
}

TEST_CASE("sts refresh: a changed id is stored with the new policy; at most max_domains per run") {
  Bed b;
  b.opt.max_domains = 3;
  for (int i = 0; i < 5; ++i) {
    const std::string d = "d" + std::to_string(i) + ".example";
    b.Publish(d, "new" + std::to_string(i));
    b.web.Serve(d, Body("testing", kWeek));
    b.Cache(d, "old", Body("enforce", kWeek), 2 * 86400 + i);
  }
  StsRefreshReport r = b.Run();
  CHECK(r.domains.size() == 3);
  CHECK(b.web.fetches.size() == 3);
  // The oldest (soonest to expire) went first.
  CHECK(b.cache->Get("d4.example")->id == "new4");
  CHECK(b.cache->Get("d4.example")->policy.mode == StsMode::kTesting);
  CHECK(b.cache->Get("d0.example")->id == "old");
  CHECK(b.Run().domains.size() == 2);
  CHECK(b.cache->Get("d0.example")->id == "new0");
}

TEST_CASE("sts refresh: a refreshed enforce policy still applies when the fetch is blocked at the old expiry") {
  Bed b;
  PolicyEngine engine(&b.dns, [&b] { return std::make_unique<FakeStsFetcher>(&b.web); }, b.cache.get(), &b.clock,
                      PolicyOptions{});
  b.dns.Records("example.org", RrType::kMX, I, {MxRec("example.org", 10, "mx.example.org")});
  b.dns.Host("mx.example.org", "192.0.2.25", I);
  b.Publish("example.org", "v1");
  b.web.Serve("example.org", Body("enforce", kWeek));
  CHECK(engine.Resolve("example.org").verdict == Verdict::kMustTls);
  b.clock.Advance(kWeek * 8 / 10);
  CHECK(engine.RefreshStsCache(b.opt).domains.size() == 1);
  // The attacker now blocks the policy host and a new id makes the sender fetch.
  b.web.Break("example.org", "connection refused");
  b.Publish("example.org", "v2");
  b.clock.Advance(kWeek * 3 / 10);  // past the expiry of the first fetch
  DomainPolicy p = engine.Resolve("example.org");
  CHECK(p.verdict == Verdict::kMustTls);
  CHECK(p.mechanism == Mechanism::kMtaSts);
  REQUIRE(p.mta_sts);
  CHECK(p.mta_sts->source == "cache");
}

TEST_CASE("sts refresh: the back-off formula") {
  StsRefreshOptions o;
  o.backoff_min = 60;
  o.backoff_max = 1000;
  CHECK(StsRefreshBackoff(o, 1) == 60);
  CHECK(StsRefreshBackoff(o, 2) == 120);
  CHECK(StsRefreshBackoff(o, 5) == 960);
  CHECK(StsRefreshBackoff(o, 6) == 1000);
  CHECK(StsRefreshBackoff(o, 1 << 30) == 1000);
}

TEST_CASE("sts refresh: the SQLite cache keeps the refresh state and adds its columns to an old file") {
  char tmpl[] = "/tmp/mxsec-refresh-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl, path = dir + "/mta-sts.sqlite";
  {
    // The table as an earlier version created it, with one policy.
    Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions());
    REQUIRE(db.ok());
    const std::string body = Body("enforce", kWeek);
    const std::string sql =
        "CREATE TABLE sts_policy (domain TEXT PRIMARY KEY, id TEXT, text TEXT, fetched_at INTEGER,"
        " expires_at INTEGER); INSERT INTO sts_policy VALUES ('example.org', 'v1', '" + body + "', " +
        std::to_string(1700000000 - 2 * 86400) + ", " + std::to_string(1700000000 - 2 * 86400 + kWeek) + ");";
    REQUIRE(db->Exec(sql).ok());
  }
  {
    auto opened = OpenSqliteStsCache(path);
    REQUIRE_MESSAGE(opened.ok(), opened.error());
    Bed b;
    b.cache = std::move(opened.value());
    b.Publish("example.org", "v1");
    b.web.Break("example.org", "HTTP status 500");
    StsRefreshReport r = b.Run();
    REQUIRE(r.domains.size() == 1);
    CHECK_FALSE(r.domains[0].refreshed);
  }
  auto reopened = OpenSqliteStsCache(path);
  REQUIRE(reopened.ok());
  auto e = reopened.value()->Get("example.org");
  REQUIRE(e);
  CHECK(e->id == "v1");
  CHECK(e->refresh_failures == 1);
  CHECK(e->refresh_next == 1700000000 + 300);
  CHECK(e->refresh_error.find("HTTP status 500") != std::string::npos);
  CHECK(reopened.value()->RefreshCandidates(1700000000, 86400, 10).value().empty());
  CHECK(reopened.value()->RefreshCandidates(1700000000 + 300, 86400, 10).value().size() == 1);
  std::filesystem::remove_all(dir);
}
