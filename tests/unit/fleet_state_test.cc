// fleet_state_test.cc - a fleet's shared state without a server: the
// forwarding of the local attempt log (smtp/delivery.h ForwardAttempts)
// into a fake shared store (the mark moves only after a commit, a batch
// sent again is stored once, a crash between the commit and the mark
// counts nothing twice, a recreated log gets a new id, the per-call bound),
// the report built from several hosts' rows (report/tlsrpt.h), and the
// sender with a shared sent-once store that cannot be locked or read.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fakes.h"
#include "mxsec/base/sqlite.h"
#include "mxsec/report/tlsrpt.h"
#include "mxsec/report/tlsrpt_send.h"
#include "mxsec/smtp/delivery.h"
#include "temp_queue_dir.h"

using namespace mxsec;
using mxsec::testing::FakeResolver;
using mxsec::testing::TxtRec;
using mxsec_test::TempQueueDir;

namespace {

const int64_t kDay = 1763856000;  // 2025-11-23T00:00:00Z

// The shared log: keyed like the PostgreSQL table, all or nothing per call.
class FakeSharedStore : public SharedAttemptStore {
 public:
  Status InsertOnce(const std::string& log_id, const std::vector<ForwardedAttempt>& rows) override {
    ++calls;
    if (!fail.ok()) return fail;
    batch_sizes.push_back(rows.size());
    for (const ForwardedAttempt& r : rows) {
      auto inserted = stored.emplace(std::make_pair(log_id, r.local_id), r.record);
      if (!inserted.second) ++ignored;
    }
    // Committed; what the caller hears may still be a failure (a crash
    // after the commit, before the mark).
    return fail_after_commit;
  }
  std::map<std::pair<std::string, int64_t>, AttemptRecord> stored;
  size_t calls = 0, ignored = 0;
  std::vector<size_t> batch_sizes;
  Status fail;               // before anything is stored
  Status fail_after_commit;  // stored, then "the process died"
};

AttemptRecord Row(const std::string& domain, int64_t n) {
  AttemptRecord r;
  r.time = kDay + n;
  r.domain = domain;
  r.mx = "mx." + domain;
  r.address = "192.0.2." + std::to_string(n % 250 + 1);
  r.outcome = "delivered";
  r.tls_version = "TLS1.3";
  r.policy_type = "tlsa";
  r.policy_strings = {"3 1 1 abcd"};
  r.mx_patterns = {r.mx};
  return r;
}

struct LocalLog {
  LocalLog() : dir("mxsec-fleet-test") {
    std::filesystem::create_directories(dir.path);
    path = dir.path + "/delivery.sqlite";
  }
  void Record(size_t n, AttemptLogWrites writes = AttemptLogWrites::kEach) {
    auto log = OpenSqliteAttemptLog(path, writes);
    REQUIRE_MESSAGE(log.ok(), log.error());
    for (size_t i = 0; i < n; ++i) REQUIRE((*log)->Record(Row("example.org", next++)).ok());
    REQUIRE((*log)->Flush().ok());
  }
  ForwardMark Mark() {
    auto m = ReadForwardMark(path);
    REQUIRE_MESSAGE(m.ok(), m.error());
    return m.value();
  }
  TempQueueDir dir;
  std::string path;
  int64_t next = 0;
};

}  // namespace

TEST_CASE("forward: rows after the mark go to the store, then the mark moves; nothing twice") {
  LocalLog local;
  FakeSharedStore store;
  local.Record(3);
  CHECK(local.Mark().forwarded_up_to == 0);
  CHECK(local.Mark().last_id == 3);
  auto done = ForwardAttempts(local.path, &store);
  REQUIRE_MESSAGE(done.ok(), done.error());
  CHECK(done->rows == 3);
  CHECK_FALSE(done->more);
  CHECK(local.Mark().forwarded_up_to == 3);
  CHECK(store.stored.size() == 3);
  const std::string log_id = local.Mark().log_id;
  CHECK(log_id.size() == 32);
  CHECK(store.stored.count({log_id, 1}) == 1);
  CHECK(store.stored.at({log_id, 3}).domain == "example.org");
  CHECK(store.stored.at({log_id, 3}).policy_strings == std::vector<std::string>{"3 1 1 abcd"});

  local.Record(2);
  done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 2);
  CHECK(store.stored.size() == 5);
  CHECK(store.ignored == 0);
  // Nothing new: nothing sent.
  const size_t calls = store.calls;
  done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 0);
  CHECK(store.calls == calls);
}

TEST_CASE("forward: a store that fails leaves the mark; the rows go on the next call") {
  LocalLog local;
  FakeSharedStore store;
  local.Record(4);
  store.fail = Status::Unavailable("server down");
  auto done = ForwardAttempts(local.path, &store);
  CHECK_FALSE(done.ok());
  CHECK(done.status().code() == Status::Code::kUnavailable);
  CHECK(local.Mark().forwarded_up_to == 0);
  CHECK(store.stored.empty());
  store.fail = Status::Ok();
  done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 4);
  CHECK(store.stored.size() == 4);
  CHECK(local.Mark().forwarded_up_to == 4);
}

TEST_CASE("forward: a crash between the store's commit and the mark re-sends rows the store ignores") {
  LocalLog local;
  FakeSharedStore store;
  local.Record(3);
  store.fail_after_commit = Status::Unavailable("killed after COMMIT");
  CHECK_FALSE(ForwardAttempts(local.path, &store).ok());
  CHECK(store.stored.size() == 3);            // committed
  CHECK(local.Mark().forwarded_up_to == 0);   // but not marked
  store.fail_after_commit = Status::Ok();
  local.Record(1);
  auto done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 4);      // the three again, and the new one
  CHECK(store.ignored == 3);   // stored once
  CHECK(store.stored.size() == 4);
  CHECK(local.Mark().forwarded_up_to == 4);

  // The same through the mark itself going back (a crash of the process
  // that had forwarded, with its mark update lost).
  {
    SqliteOpenOptions o;
    auto db = SqliteDb::Open(local.path, o);
    REQUIRE(db.ok());
    REQUIRE(db->Exec("UPDATE forward_state SET forwarded_up_to = 1").ok());
  }
  done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 3);
  CHECK(store.stored.size() == 4);
  CHECK(store.ignored == 6);
}

TEST_CASE("forward: the mark never moves back when two forwarders overlap") {
  LocalLog local;
  FakeSharedStore store;
  local.Record(5);
  REQUIRE(ForwardAttempts(local.path, &store).ok());
  {
    // A slower process that read the mark at 0 and forwarded rows 1..2
    // finishes last: its mark update must not undo ours.
    SqliteOpenOptions o;
    auto db = SqliteDb::Open(local.path, o);
    REQUIRE(db.ok());
    auto st = db->Prepare("UPDATE forward_state SET forwarded_up_to = max(forwarded_up_to, 2)");
    REQUIRE(st.ok());
    REQUIRE(st->Run().ok());
  }
  CHECK(local.Mark().forwarded_up_to == 5);
}

TEST_CASE("forward: a log made again gets a new id, so its rows never meet the old ones") {
  LocalLog local;
  FakeSharedStore store;
  local.Record(2);
  REQUIRE(ForwardAttempts(local.path, &store).ok());
  const std::string first = local.Mark().log_id;
  std::filesystem::remove(local.path);
  std::filesystem::remove(local.path + "-wal");
  std::filesystem::remove(local.path + "-shm");
  local.Record(2);
  const std::string second = local.Mark().log_id;
  CHECK(first != second);
  auto done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 2);
  CHECK(store.stored.size() == 4);
  CHECK(store.ignored == 0);
}

TEST_CASE("forward: batches of kForwardBatchRows, at most kForwardMaxBatches per call") {
  LocalLog local;
  FakeSharedStore store;
  const size_t per_call = kForwardBatchRows * kForwardMaxBatches;
  local.Record(per_call + 7, AttemptLogWrites::kBatched);
  auto done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == per_call);
  CHECK(done->more);
  CHECK(store.batch_sizes.size() == kForwardMaxBatches);
  for (size_t n : store.batch_sizes) CHECK(n == kForwardBatchRows);
  done = ForwardAttempts(local.path, &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 7);
  CHECK_FALSE(done->more);
  CHECK(store.stored.size() == per_call + 7);
}

TEST_CASE("forward: a missing log has nothing to forward") {
  FakeSharedStore store;
  auto done = ForwardAttempts("/nonexistent-mxsec-test-dir/delivery.sqlite", &store);
  REQUIRE(done.ok());
  CHECK(done->rows == 0);
  CHECK(store.calls == 0);
}

TEST_CASE("fleet report: sessions of several hosts in one report, hosts named, sending IPs detailed") {
  std::vector<AttemptRecord> rows;
  AttemptRecord a = Row("example.org", 10);
  a.host = "hosta";
  AttemptRecord b = Row("example.org", 20);
  b.host = "hostb";
  AttemptRecord fa = Row("example.org", 30);
  fa.host = "hosta";
  fa.failure_type = "certificate-expired";
  fa.tls_version.clear();
  fa.sending_ip = "198.51.100.7";
  AttemptRecord fb = fa;
  fb.host = "hostb";
  fb.sending_ip = "";  // unknown: no sending-mta-ip
  rows = {a, b, fa, fb, fb};
  ReportMeta meta;
  meta.organization = "sender.example";
  meta.contact = "postmaster@sender.example";
  meta.day_start = kDay;
  meta.id_suffix = "x@sender.example";
  std::vector<TlsReport> reports = AggregateReports(rows, meta);
  REQUIRE(reports.size() == 1);
  const TlsReport& r = reports[0];
  CHECK(r.successes == 2);
  CHECK(r.failures == 3);
  CHECK(r.hosts == std::vector<std::string>{"hosta", "hostb"});
  const nlohmann::json& details = r.json["policies"][0]["failure-details"];
  REQUIRE(details.size() == 2);
  int64_t with_ip = 0, without_ip = 0;
  for (const auto& d : details) {
    if (d.contains("sending-mta-ip")) {
      CHECK(d["sending-mta-ip"] == "198.51.100.7");
      with_ip += d["failed-session-count"].get<int64_t>();
    } else {
      without_ip += d["failed-session-count"].get<int64_t>();
    }
    // Only RFC 8460 §4.4 fields.
    for (const auto& [k, v] : d.items()) {
      static const std::set<std::string> kFields = {"result-type", "sending-mta-ip", "receiving-mx-hostname",
                                                    "receiving-ip", "failed-session-count"};
      CHECK_MESSAGE(kFields.count(k) == 1, k);
    }
  }
  CHECK(with_ip == 1);
  CHECK(without_ip == 2);
  CHECK(r.json.dump().find("hosta") == std::string::npos);

  ReportMessage m;
  m.from = "postmaster@sender.example";
  m.to = "tlsrpt@example.org";
  m.submitter = "sender.example";
  m.domain = "example.org";
  m.report_id = r.report_id;
  m.gzip = "x";
  m.file_name = "f.json.gz";
  m.message_id = "<m@sender.example>";
  m.date = kDay;
  m.hosts = r.hosts;
  CHECK(BuildReportMessage(m).find("sending hosts hosta, hostb.") != std::string::npos);
  // A local log's rows name no host: nothing said.
  for (AttemptRecord& x : rows) x.host.clear();
  CHECK(AggregateReports(rows, meta)[0].hosts.empty());
}

namespace {

class NullPoster : public ReportPoster {
 public:
  Status Post(const std::string& uri, const std::string&) override {
    posts.push_back(uri);
    return Status::Ok();
  }
  std::vector<std::string> posts;
};

class NullQueue : public ReportQueue {
 public:
  Result<std::string> Submit(const std::string&, const std::string&, const std::string&) override {
    return Status::Error("no queue in this test");
  }
};

// A shared store in memory, whose lock and reads can be made to fail.
class FakeSharedSentStore : public TlsRptSentStore {
 public:
  const std::string& path() const override { return where; }
  Result<std::optional<std::string>> Sent(const std::string& day, const std::string& domain,
                                          const std::string& uri) override {
    if (!read_fails.ok()) return read_fails;
    auto it = sent.find({day, domain, uri});
    if (it == sent.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status Mark(const std::string& day, const std::string& domain, const std::string& uri, const std::string& id,
              int64_t) override {
    CHECK(locked);
    sent[{day, domain, uri}] = id;
    return Status::Ok();
  }
  Result<std::string> ReportId(const std::string& day, const std::string& domain,
                               const std::string& proposed) override {
    return ids.emplace(std::make_pair(day, domain), proposed).first->second;
  }
  Status Lock(const std::string&, const std::string&) override {
    if (!lock_fails.ok()) return lock_fails;
    locked = true;
    ++locks;
    return Status::Ok();
  }
  void Unlock(const std::string&, const std::string&) override {
    CHECK(locked);
    locked = false;
  }
  bool shared() const override { return true; }

  std::string where = "fake shared store";
  std::map<std::tuple<std::string, std::string, std::string>, std::string> sent;
  std::map<std::pair<std::string, std::string>, std::string> ids;
  Status lock_fails, read_fails;
  bool locked = false;
  int locks = 0;
};

}  // namespace

TEST_CASE("tlsrpt send with a shared store: under its lock, and nothing sent when it cannot be used") {
  FakeResolver resolver;
  resolver.Records("_smtp._tls.example.org", RrType::kTXT, DnssecStatus::kInsecure,
                   {TxtRec("_smtp._tls.example.org", "v=TLSRPTv1; rua=https://reports.example.org/r")});
  NullPoster poster;
  NullQueue queue;
  FakeSharedSentStore store;
  TlsRptSendSettings settings;
  settings.from = "postmaster@sender.example";
  settings.submitter = "sender.example";
  settings.day_start = kDay;
  settings.now = kDay + 86460;
  auto report = [] {
    TlsReport r;
    r.domain = "example.org";
    r.report_id = "2025-11-23.example.org.mine";
    r.json = {{"report-id", r.report_id}};
    return std::vector<TlsReport>{r};
  };
  std::vector<TlsRptEvent> events;
  auto sink = [&](const TlsRptEvent& e) { events.push_back(e); };

  // The lock cannot be had (another host holds it past the timeout, or the server is gone).
  store.lock_fails = Status::Timeout("canceling statement due to statement timeout");
  std::vector<TlsReport> reports = report();
  TlsRptSender::Summary s = TlsRptSender(settings, &resolver, &poster, &queue, &store).Send(reports, sink);
  CHECK(s.retry);
  CHECK(poster.posts.empty());
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == TlsRptEventKind::kStoreUnavailable);

  // Locked, but the store cannot say whether it was sent: not sent.
  store.lock_fails = Status::Ok();
  store.read_fails = Status::Unavailable("server closed the connection");
  events.clear();
  reports = report();
  s = TlsRptSender(settings, &resolver, &poster, &queue, &store).Send(reports, sink);
  CHECK(s.retry);
  CHECK(poster.posts.empty());
  CHECK_FALSE(store.locked);

  // Usable: sent once, marked under the lock, released.
  store.read_fails = Status::Ok();
  reports = report();
  s = TlsRptSender(settings, &resolver, &poster, &queue, &store).Send(reports, sink);
  CHECK_FALSE(s.retry);
  CHECK(poster.posts.size() == 1);
  CHECK_FALSE(store.locked);
  // Another host's run: the id stored first, already sent.
  reports = report();
  reports[0].report_id = "2025-11-23.example.org.theirs";
  events.clear();
  s = TlsRptSender(settings, &resolver, &poster, &queue, &store).Send(reports, sink);
  CHECK(poster.posts.size() == 1);
  REQUIRE(!events.empty());
  CHECK(events.back().kind == TlsRptEventKind::kAlreadySent);
  CHECK(events.back().report_id == "2025-11-23.example.org.mine");
}
