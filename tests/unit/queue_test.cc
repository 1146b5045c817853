// queue_test.cc - the durable queue: submission files and modes, locking,
// per-recipient state, backoff and lifetime with a fake clock, DSNs; and
// what a power loss at any instant leaves (MemEnv). All in memory but the
// first test, which checks the files on the real file system.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "temp_queue_dir.h"
#include "mxsec/base/config.h"
#include "mxsec/base/mem_env.h"
#include "mxsec/queue/dsn.h"
#include "mxsec/queue/queue.h"

using namespace mxsec;

namespace {

// The queue of every test here but the first: a MemEnv.
struct TempDir : mxsec_test::MemQueueDir {
  Result<Queue> Open() { return Queue::Open(path, true, &env); }
  std::vector<std::string> Files() const { return MemQueueDir::Files(); }
};

// The first test's: the real file system, for the modes as the system makes them under a umask.
struct RealDir : mxsec_test::TempQueueDir {
  RealDir() : TempQueueDir("mxsec-queue-test") {}
  Result<Queue> Open() { return Queue::Open(path, true); }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
    return out;
  }
};

QueuedEnvelope MakeEnvelope(const std::string& sender, std::vector<std::string> rcpts) {
  QueuedEnvelope e;
  e.sender = sender;
  for (auto& r : rcpts) e.recipients.push_back(QueuedRecipient{r});
  return e;
}

const char* kMsg = "From: a@client.test\nTo: x@one.test\nSubject: hi\n\nbody line\n";

// A deliverer that answers per local part: ok* delivered, defer* deferred, reject* bounced 5.1.1.
struct FakeDeliverer {
  std::atomic<int> calls{0};
  std::map<std::string, int> per_rcpt;
  std::mutex mu;
  std::vector<std::string> senders;
  std::vector<DsnRequest> dsn_requests;
  std::vector<MessageTls> message_tls_seen;
  bool defer_all = false;
  // Domains whose server announces DSN: a NOTIFY= list is passed on there.
  std::vector<std::string> dsn_domains;
  DomainDeliverer Fn() {
    return [this](const std::string& domain, const Mailbox& sender, const std::vector<Mailbox>& rcpts,
                  const PreparedMessage&, const DsnRequest& dsn, MessageTls message_tls) {
      ++calls;
      std::vector<RecipientOutcome> out;
      std::lock_guard<std::mutex> l(mu);
      senders.push_back(sender.ToString());
      message_tls_seen.push_back(message_tls);
      dsn_requests.push_back(dsn);
      bool passed = !dsn.notify.empty() &&
                    std::find(dsn_domains.begin(), dsn_domains.end(), domain) != dsn_domains.end();
      for (const Mailbox& m : rcpts) {
        ++per_rcpt[m.ToString()];
        RecipientOutcome o;
        o.recipient = m;
        o.dsn_passed = passed;
        if (!defer_all && m.local.rfind("ok", 0) == 0) {
          o.status = RcptStatus::kDelivered;
          o.code = "2.0.0";
          o.reply = "250 2.0.0 ok";
          o.relay_host = "mx." + m.domain;
          o.relay_address = "127.0.0.9";
          o.relay_port = 25;
        } else if (!defer_all && m.local.rfind("reject", 0) == 0) {
          o.status = RcptStatus::kBounced;
          o.code = "5.1.1";
          o.reply = "550 5.1.1 no such user";
          o.relay_host = "mx." + m.domain;
          o.relay_address = "127.0.0.9";
          o.relay_port = 25;
        } else if (m.local.rfind("norequiretls", 0) == 0) {
          o.status = RcptStatus::kDeferred;
          o.code = "4.7.30";
          o.reply = "REQUIRETLS support required: no MX host can be authenticated";
        } else {
          o.status = RcptStatus::kDeferred;
          o.code = "4.2.0";
          o.reply = "451 4.2.0 try later";
        }
        out.push_back(o);
      }
      return out;
    };
  }
};

QueueSettings Settings() {
  QueueSettings s;
  s.lifetime = 5 * 86400;
  s.retry_min = 300;
  s.retry_max = 4000;
  s.reporting_mta = "mta.client.test";
  s.bounce_domain = "client.test";
  return s;
}

}  // namespace

TEST_CASE("queue: submission writes message and envelope, mode 0640, nothing temporary left") {
  RealDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE_MESSAGE(q.ok(), q.error());
  struct stat st{};
  REQUIRE(stat(t.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"x@one.test"}), &clock, nullptr);
  REQUIRE_MESSAGE(id.ok(), id.error());
  CHECK(ValidQueueId(id.value()));
  auto files = t.Files();
  CHECK(files.size() == 2);
  for (const auto& f : files) {
    CHECK(f.rfind(".tmp", 0) != 0);
    REQUIRE(stat((t.path + "/" + f).c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
  }
  CHECK(q->Ids() == std::vector<std::string>{id.value()});
  auto env = q->ReadEnvelope(id.value());
  REQUIRE(env.ok());
  CHECK(env->queued_at == 1700000000);
  CHECK(env->size == strlen(kMsg));
  CHECK(env->recipients[0].state == RecipientState::kPending);
  CHECK(q->ReadMessage(id.value()).value() == kMsg);
}

TEST_CASE("queue: a world-writable queue directory is refused") {
  TempDir t;
  REQUIRE(t.env.CreateDir(t.path, 0777).ok());
  auto q = t.Open();
  REQUIRE_FALSE(q.ok());
  CHECK(q.error().find("world-writable") != std::string::npos);
}

TEST_CASE("queue: envelope JSON round trip and errors") {
  QueuedEnvelope e = MakeEnvelope("", {"a@b.test"});
  e.id = "0123456789ABCDEF0";
  e.is_bounce = true;
  e.attempts = 3;
  e.envid = "x1";
  auto back = EnvelopeFromJson(EnvelopeToJson(e));
  REQUIRE(back.ok());
  CHECK(back->sender.empty());
  CHECK(back->is_bounce);
  CHECK(back->attempts == 3);
  CHECK(back->envid == "x1");
  CHECK_FALSE(EnvelopeFromJson("{").ok());
  auto bad = EnvelopeFromJson(R"({"id":"x","sender":"","queued_at":1,"next_retry":1,"attempts":0,"size":1,
      "recipients":[{"address":"a@b","state":"weird"}]})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().find("weird") != std::string::npos);
}

TEST_CASE("queue: a held lock makes other runners skip; released, the message is delivered once") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  QueueLock held;
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test"}), &clock, &held);
  REQUIRE(id.ok());
  REQUIRE(held.held());
  QueueLock other;
  CHECK(q->TryLock(id.value(), &other) == LockState::kBusy);
  FakeDeliverer fake;
  ProcessReport skipped = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock,
                                               Settings(), nullptr);
  CHECK(skipped.skipped);
  CHECK(fake.calls == 0);
  held.Release();
  ProcessReport done = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, Settings(),
                                            nullptr);
  CHECK(done.removed);
  CHECK(fake.calls == 1);
  CHECK(t.Files().empty());
  CHECK(q->TryLock(id.value(), &other) == LockState::kGone);
  ProcessReport again = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                             nullptr);
  CHECK(again.skipped);
  CHECK(fake.calls == 1);
}

TEST_CASE("queue: delivered recipients are never retried; backoff doubles up to the cap") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test", "defer@two.test"}), &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  QueueSettings s = Settings();
  ProcessReport r1 = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
  CHECK(r1.delivered == 1);
  CHECK(r1.deferred == 1);
  CHECK_FALSE(r1.removed);
  auto env = q->ReadEnvelope(id.value());
  REQUIRE(env.ok());
  CHECK(env->attempts == 1);
  CHECK(env->next_retry == 1700000000 + 300);
  CHECK(env->last_reason.find("451") != std::string::npos);

  // Not due yet: `queue run` skips it.
  clock.Advance(299);
  ProcessReport early = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
  CHECK(early.skipped);
  // Due: only the deferred recipient is tried.
  std::vector<int64_t> delays;
  for (int i = 0; i < 6; ++i) {
    clock.Set(q->ReadEnvelope(id.value())->next_retry);
    int64_t before = clock.Now();
    ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
    delays.push_back(q->ReadEnvelope(id.value())->next_retry - before);
  }
  CHECK(delays == std::vector<int64_t>{600, 1200, 2400, 4000, 4000, 4000});
  CHECK(fake.per_rcpt["ok@one.test"] == 1);
  CHECK(fake.per_rcpt["defer@two.test"] == 7);
}

TEST_CASE("queue: RetryDelay") {
  QueueSettings s = Settings();
  CHECK(RetryDelay(1, s) == 300);
  CHECK(RetryDelay(2, s) == 600);
  CHECK(RetryDelay(5, s) == 4000);
  CHECK(RetryDelay(1000, s) == 4000);
  s.retry_max = 100;  // a cap below the minimum: the minimum wins
  CHECK(RetryDelay(3, s) == 300);
}

TEST_CASE("queue: a permanent failure queues a DSN to the sender from the null sender") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test", "reject@one.test"}), &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                         nullptr);
  CHECK(r.removed);
  REQUIRE_FALSE(r.dsn_id.empty());
  auto env = q->ReadEnvelope(r.dsn_id);
  REQUIRE(env.ok());
  CHECK(env->sender.empty());
  CHECK(env->is_bounce);
  REQUIRE(env->recipients.size() == 1);
  CHECK(env->recipients[0].address == "a@client.test");
  std::string dsn = q->ReadMessage(r.dsn_id).value();
  CHECK(dsn.find("Content-Type: multipart/report; report-type=delivery-status;") != std::string::npos);
  CHECK(dsn.find("Final-Recipient: rfc822; reject@one.test") != std::string::npos);
  CHECK(dsn.find("Status: 5.1.1") != std::string::npos);
  CHECK(dsn.find("Remote-MTA: dns; mx.one.test") != std::string::npos);
  CHECK(dsn.find("Diagnostic-Code: smtp; 550 5.1.1 no such user") != std::string::npos);
  CHECK(dsn.find("ok@one.test") == std::string::npos);  // delivered: not reported
  CHECK(dsn.find("Subject: hi") != std::string::npos);   // the returned message
  CHECK(PrepareMessage(dsn, MessageOptions{}).ok());

  // The DSN itself bounces: dropped, never bounced.
  QueuedEnvelope bounce = MakeEnvelope("", {"reject@client.test"});
  bounce.is_bounce = true;
  auto bid = q->Submit(dsn, bounce, &clock, nullptr);
  REQUIRE(bid.ok());
  std::vector<std::string> lines;
  ProcessReport rb = ProcessQueuedMessage(q.value(), bid.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                          [&](const std::string& l) { lines.push_back(l); });
  CHECK(rb.removed);
  CHECK(rb.dsn_id.empty());
  CHECK(q->Ids() == std::vector<std::string>{r.dsn_id});
  bool dropped = false;
  for (auto& l : lines) dropped = dropped || l.find("never bounced") != std::string::npos;
  CHECK(dropped);
}

TEST_CASE("queue: -N never suppresses the DSN") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  QueuedEnvelope e = MakeEnvelope("a@client.test", {"reject@one.test"});
  e.notify_failure = false;
  auto id = q->Submit(kMsg, e, &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                         nullptr);
  CHECK(r.removed);
  CHECK(r.dsn_id.empty());
  CHECK(q->Ids().empty());
}

TEST_CASE("queue: past the lifetime, deferred recipients bounce with 4.4.7") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"defer@one.test"}), &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  QueueSettings s = Settings();
  s.lifetime = 86400;
  ProcessReport r1 = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
  CHECK(r1.deferred == 1);
  clock.Advance(86399);
  ProcessReport r2 = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
  CHECK(r2.deferred == 1);
  CHECK(r2.dsn_id.empty());
  clock.Advance(1);
  ProcessReport r3 = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, s, nullptr);
  CHECK(r3.removed);
  CHECK(r3.bounced == 1);
  REQUIRE_FALSE(r3.dsn_id.empty());
  std::string dsn = q->ReadMessage(r3.dsn_id).value();
  CHECK(dsn.find("Status: 4.4.7") != std::string::npos);
  CHECK(dsn.find("Action: failed") != std::string::npos);
  CHECK(dsn.find("451 4.2.0 try later") != std::string::npos);
  CHECK(dsn.find("delivery time expired") != std::string::npos);

  // lifetime 0: one attempt only.
  s.lifetime = 0;
  auto id2 = q->Submit(kMsg, MakeEnvelope("a@client.test", {"defer@one.test"}), &clock, nullptr);
  REQUIRE(id2.ok());
  ProcessReport r4 = ProcessQueuedMessage(q.value(), id2.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
  CHECK(r4.removed);
  CHECK_FALSE(r4.dsn_id.empty());
}

TEST_CASE("queue: a message file without envelope is debris, removed by Clean; a locked one is kept") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  QueueLock lock;
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test"}), &clock, &lock);
  REQUIRE(id.ok());
  REQUIRE(t.env.RemoveFile(t.path + "/" + id.value() + ".env").ok());
  clock.Set(time(nullptr) + 7200);
  q->Clean(&clock, 3600);
  CHECK(t.Files().size() == 1);  // still locked by its submitter
  lock.Release();
  q->Clean(&clock, 3600);
  CHECK(t.Files().empty());
}

TEST_CASE("dsn: headers-only return and long diagnostics stay within line limits") {
  DsnInput in;
  in.reporting_mta = "mta.client.test";
  in.bounce_domain = "client.test";
  in.original_sender = "a@client.test";
  in.queue_id = "0123456789ABCDEF0";
  in.arrival = 1700000000;
  in.now = 1700000100;
  in.headers_only = true;
  in.message_id = "x@client.test";
  std::string orig = "Subject: s\r\nFrom: a@client.test\r\n\r\nsecret body\r\n";
  in.original = orig;
  in.recipients.push_back(DsnRecipient{"b@one.test", "5.7.1", "550 " + std::string(3000, 'x') + "\x01", "", false});
  std::string d = BuildDsn(in);
  CHECK(d.find("secret body") == std::string::npos);
  CHECK(d.find("text/rfc822-headers") != std::string::npos);
  CHECK(d.find("Subject: s\n") != std::string::npos);
  CHECK(d.find('\x01') == std::string::npos);
  CHECK(d.find("To: <a@client.test>") != std::string::npos);
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
  CHECK(Rfc5322Date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
}

TEST_CASE("config: queue keys and durations") {
  Config c;
  Status s = ParseConfigText(
      "queue_lifetime = 2d\nqueue_retry_min = 90s\nqueue_retry_max = 1h\nmessage_size_limit = 0\n"
      "sender_domain = Example.ORG\n",
      "q.conf", &c);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(c.queue_lifetime == 2 * 86400);
  CHECK(c.queue_retry_min == 90);
  CHECK(c.queue_retry_max == 3600);
  CHECK(c.message_size_limit == 0);
  CHECK(c.sender_domain == "example.org");
  Config d;
  CHECK(d.queue_lifetime == 5 * 86400);
  CHECK(d.message_size_limit == 10240000);
  CHECK(ParseConfigText("queue_lifetime = 0\n", "q.conf", &d).ok());
  CHECK(d.queue_lifetime == 0);
  Status bad = ParseConfigText("queue_lifetime = 5x\n", "q.conf", &d);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().find("q.conf:1") != std::string::npos);
  CHECK(bad.message().find("queue_lifetime") != std::string::npos);
  CHECK_FALSE(ParseConfigText("queue_retry_min = 0\n", "q.conf", &d).ok());
  CHECK_FALSE(ParseConfigText("message_size_limit = 10M\n", "q.conf", &d).ok());
  CHECK_FALSE(ParseConfigText("queue_lifetime = 101d\n", "q.conf", &d).ok());
  CHECK(d.queue_delay_warning == 0);   // off unless configured (Postfix's delay_warning_time = 0h)
  CHECK(ParseConfigText("queue_delay_warning = 4h\n", "q.conf", &d).ok());
  CHECK(d.queue_delay_warning == 4 * 3600);
  CHECK_FALSE(ParseConfigText("queue_delay_warning = soon\n", "q.conf", &d).ok());
}

TEST_CASE("dsn: an 8-bit returned message is declared 8bit") {
  DsnInput in;
  in.reporting_mta = "mta.client.test";
  in.bounce_domain = "client.test";
  in.original_sender = "a@client.test";
  in.queue_id = "0123456789ABCDEF0";
  in.message_id = "x@client.test";
  std::string orig = "Subject: s\n\ncaf\xc3\xa9\n";
  in.original = orig;
  in.recipients.push_back(DsnRecipient{"b@one.test", "5.1.1", "550 5.1.1 no", "mx.one.test", false});
  std::string d = BuildDsn(in);
  CHECK(d.find("Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\nSubject: s\n") != std::string::npos);
  in.original = "Subject: s\n\nplain\n";
  CHECK(BuildDsn(in).find("Content-Transfer-Encoding") == std::string::npos);
}

TEST_CASE("queue: a submission prefix names the queue ID it is stored under, and counts in the size") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  int calls = 0;
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"x@one.test"}), &clock, nullptr, nullptr,
                      [&](const std::string& qid) {
                        ++calls;
                        return "Received: by client.test (mxsec, from userid 7)\n\tid " + qid + "; date\n";
                      });
  REQUIRE_MESSAGE(id.ok(), id.error());
  CHECK(calls == 1);
  const std::string want = "Received: by client.test (mxsec, from userid 7)\n\tid " + id.value() + "; date\n" + kMsg;
  CHECK(q->ReadMessage(id.value()).value() == want);
  CHECK(q->ReadEnvelope(id.value())->size == want.size());
  // Without a prefix the message is stored as given.
  auto id2 = q->Submit(kMsg, MakeEnvelope("a@client.test", {"x@one.test"}), &clock, nullptr);
  REQUIRE(id2.ok());
  CHECK(q->ReadMessage(id2.value()).value() == kMsg);
}

namespace {
// The DSNs in the queue other than `except`: (message text) for each.
std::vector<std::string> QueuedDsns(Queue& q, const std::string& except) {
  std::vector<std::string> out;
  for (const std::string& id : q.Ids()) {
    if (id == except) continue;
    auto env = q.ReadEnvelope(id);
    if (env.ok() && env->is_bounce) out.push_back(q.ReadMessage(id).value());
  }
  return out;
}
bool Has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }
}  // namespace

TEST_CASE("queue: -N success: a hop without DSN gets the request not, and the sender a relayed report") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  QueuedEnvelope e = MakeEnvelope("a@client.test", {"ok1@plain.test", "ok2@dsn.test"});
  e.notify_success = true;
  e.notify_delay = false;
  e.dsn_notify = "SUCCESS,FAILURE";
  e.dsn_ret = "HDRS";
  e.envid = "env-1";
  auto id = q->Submit(kMsg, e, &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  fake.dsn_domains = {"dsn.test"};
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                         nullptr);
  CHECK(r.removed);
  CHECK(r.dsn_id.empty());   // no failure
  REQUIRE(r.dsn_ids.size() == 1);
  // The request went to both deliverers as given (whether to send it is the SMTP client's business).
  REQUIRE(fake.dsn_requests.size() == 2);
  for (const DsnRequest& d : fake.dsn_requests) {
    CHECK(d.notify == "SUCCESS,FAILURE");
    CHECK(d.ret == "HDRS");
    CHECK(d.envid == "env-1");
  }
  auto denv = q->ReadEnvelope(r.dsn_ids[0]);
  REQUIRE(denv.ok());
  CHECK(denv->sender.empty());
  CHECK(denv->is_bounce);
  CHECK(denv->recipients[0].address == "a@client.test");
  std::string d = q->ReadMessage(r.dsn_ids[0]).value();
  CHECK(Has(d, "Subject: Successful Mail Delivery Report\n"));
  CHECK(Has(d, "Final-Recipient: rfc822; ok1@plain.test\nAction: relayed\nStatus: 2.0.0\n"));
  CHECK(Has(d, "Remote-MTA: dns; mx.plain.test"));
  CHECK(Has(d, "Original-Envelope-Id: env-1"));
  CHECK_FALSE(Has(d, "ok2@dsn.test"));    // that hop took NOTIFY= and reports itself
  CHECK_FALSE(Has(d, "body line"));       // headers only
  CHECK(Has(d, "text/rfc822-headers"));
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
}

TEST_CASE("queue: no success report without -N success, and never to the null sender") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  FakeDeliverer fake;
  auto plain = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@plain.test"}), &clock, nullptr);
  QueuedEnvelope null_env = MakeEnvelope("", {"ok@plain.test"});
  null_env.notify_success = true;
  null_env.dsn_notify = "SUCCESS";
  auto null_id = q->Submit(kMsg, null_env, &clock, nullptr);
  REQUIRE(plain.ok());
  REQUIRE(null_id.ok());
  ProcessReport r1 = ProcessQueuedMessage(q.value(), plain.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                          nullptr);
  ProcessReport r2 = ProcessQueuedMessage(q.value(), null_id.value(), QueueLock(), true, fake.Fn(), &clock,
                                          Settings(), nullptr);
  CHECK(r1.removed);
  CHECK(r2.removed);
  CHECK(r1.dsn_ids.empty());
  CHECK(r2.dsn_ids.empty());
  CHECK(q->Ids().empty());
  // Nothing asked: nothing passed on.
  REQUIRE(fake.dsn_requests.size() == 2);
  CHECK(fake.dsn_requests[0].notify.empty());
  CHECK(fake.dsn_requests[1].notify.empty());   // the null sender's request is not passed on either
}

TEST_CASE("queue: one failure report and one success report from one attempt") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  QueuedEnvelope e = MakeEnvelope("a@client.test", {"ok@plain.test", "reject@plain.test"});
  e.notify_success = true;
  e.dsn_notify = "SUCCESS,FAILURE";
  auto id = q->Submit(kMsg, e, &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                         nullptr);
  CHECK(r.removed);
  REQUIRE(r.dsn_ids.size() == 2);
  CHECK(r.dsn_ids[0] == r.dsn_id);
  std::string failed = q->ReadMessage(r.dsn_ids[0]).value();
  std::string relayed = q->ReadMessage(r.dsn_ids[1]).value();
  CHECK(Has(failed, "Final-Recipient: rfc822; reject@plain.test\nAction: failed\n"));
  CHECK_FALSE(Has(failed, "ok@plain.test"));
  CHECK(Has(relayed, "Final-Recipient: rfc822; ok@plain.test\nAction: relayed\n"));
  CHECK_FALSE(Has(relayed, "reject@plain.test"));
  // Distinct Message-IDs.
  auto mid = [](const std::string& m) { return m.substr(m.find("Message-ID:"), m.find('\n', m.find("Message-ID:")) - m.find("Message-ID:")); };
  CHECK(mid(failed) != mid(relayed));
}

TEST_CASE("queue: a delayed report once after queue_delay_warning, when asked, never when off") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  QueueSettings s = Settings();
  s.delay_warning = 3600;
  FakeDeliverer fake;
  // Default (no -N): delay warnings on, as Postfix; -N failure: off; null sender: never.
  auto dflt = q->Submit(kMsg, MakeEnvelope("a@client.test", {"defer@one.test", "ok@one.test"}), &clock, nullptr);
  QueuedEnvelope fonly = MakeEnvelope("a@client.test", {"defer@one.test"});
  fonly.notify_delay = false;
  fonly.dsn_notify = "FAILURE";
  auto failure_only = q->Submit(kMsg, fonly, &clock, nullptr);
  auto null_id = q->Submit(kMsg, MakeEnvelope("", {"defer@one.test"}), &clock, nullptr);
  REQUIRE(dflt.ok());
  REQUIRE(failure_only.ok());
  REQUIRE(null_id.ok());
  auto run = [&](const std::string& id, const QueueSettings& st) {
    return ProcessQueuedMessage(q.value(), id, QueueLock(), true, fake.Fn(), &clock, st, nullptr);
  };
  // Before the warning time: nothing.
  clock.Advance(3599);
  CHECK(run(dflt.value(), s).dsn_ids.empty());
  // Past it, but the setting is off (0): nothing.
  clock.Advance(1);
  CHECK(run(dflt.value(), Settings()).dsn_ids.empty());
  CHECK_FALSE(q->ReadEnvelope(dflt.value())->delay_warned);
  // Past it: one report, listing the pending recipient only.
  ProcessReport r = run(dflt.value(), s);
  REQUIRE(r.dsn_ids.size() == 1);
  CHECK(r.dsn_id.empty());
  std::string d = q->ReadMessage(r.dsn_ids[0]).value();
  CHECK(Has(d, "Subject: Delayed Mail (still being retried)\n"));
  CHECK(Has(d, "Final-Recipient: rfc822; defer@one.test\nAction: delayed\nStatus: 4.2.0\n"));
  CHECK(Has(d, "Diagnostic-Code: smtp; 451 4.2.0 try later"));
  CHECK(Has(d, "Will-Retry-Until: " + Rfc5322Date(1700000000 + 5 * 86400)));
  CHECK(Has(d, "THIS IS A WARNING ONLY"));
  CHECK_FALSE(Has(d, "ok@one.test"));   // delivered on the first attempt
  CHECK_FALSE(Has(d, "body line"));
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
  CHECK(q->ReadEnvelope(dflt.value())->delay_warned);
  // Once: later attempts do not repeat it.
  clock.Advance(7200);
  CHECK(run(dflt.value(), s).dsn_ids.empty());
  // -N failure and the null sender: never.
  CHECK(run(failure_only.value(), s).dsn_ids.empty());
  CHECK(run(null_id.value(), s).dsn_ids.empty());
  CHECK(QueuedDsns(q.value(), "").size() == 1);
}

TEST_CASE("queue: an envelope is read only under its own ID, with its own message file") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  auto a = q->Submit(kMsg, MakeEnvelope("a@client.test", {"defer@two.test"}), &clock, nullptr);
  auto b = q->Submit("Subject: b\n\nb\n", MakeEnvelope("b@client.test", {"ok@one.test"}), &clock, nullptr);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  // A's envelope file names B (copied over, restored from a backup...):
  // delivering A with it would write A's state into B's envelope and lose
  // B's recipient. It is refused, and both stay queued as they were.
  QueuedEnvelope wrong = q->ReadEnvelope(a.value()).value();
  wrong.id = b.value();
  REQUIRE(t.env.OverwriteFile(t.path + "/" + a.value() + ".env", EnvelopeToJson(wrong)).ok());
  auto read = q->ReadEnvelope(a.value());
  REQUIRE_FALSE(read.ok());
  CHECK_MESSAGE(read.error().find("names queue ID " + b.value()) != std::string::npos, read.error());
  FakeDeliverer fake;
  ProcessReport r = ProcessQueuedMessage(q.value(), a.value(), QueueLock(), true, fake.Fn(), &clock, Settings(),
                                         nullptr);
  CHECK(fake.calls == 0);
  CHECK_FALSE(r.error.empty());
  auto benv = q->ReadEnvelope(b.value());
  REQUIRE(benv.ok());
  REQUIRE(benv->recipients.size() == 1);
  CHECK(benv->recipients[0].address == "ok@one.test");

  // A message file that is not the size its envelope records (cut short
  // on disk) is not sent as if it were the message: it stays queued.
  REQUIRE(t.env.OverwriteFile(t.path + "/" + b.value() + ".msg", "Subject: b\n").ok());
  r = ProcessQueuedMessage(q.value(), b.value(), QueueLock(), true, fake.Fn(), &clock, Settings(), nullptr);
  CHECK(fake.calls == 0);
  CHECK_FALSE(r.removed);
  CHECK_MESSAGE(r.error.find("11 octets") != std::string::npos, r.error);
  CHECK(q->ReadEnvelope(b.value())->recipients[0].state == RecipientState::kPending);
}

TEST_CASE("queue: recipient states have one spelling in the envelope, and nothing else is read") {
  for (RecipientState s : {RecipientState::kPending, RecipientState::kDelivered, RecipientState::kBounced})
    CHECK(ParseRecipientState(RecipientStateName(s)) == s);
  CHECK(std::string(RecipientStateName(RecipientState::kPending)) == "pending");
  CHECK(std::string(RecipientStateName(RecipientState::kDelivered)) == "delivered");
  CHECK(std::string(RecipientStateName(RecipientState::kBounced)) == "bounced");
  CHECK_FALSE(ParseRecipientState("deferred").has_value());
  CHECK_FALSE(ParseRecipientState("Pending").has_value());
  CHECK_FALSE(ParseRecipientState("").has_value());
}

namespace {

// A disk as a power loss left it, and the instant: just before which change, in which reading (mem_env.h).
struct LostPower {
  std::string when;
  std::unique_ptr<MemEnv> disk;
};

// The disks a power loss leaves at every instant of `work`: before each change it makes, in both readings.
std::vector<LostPower> PowerLossesDuring(MemEnv& env, const std::function<void()>& work) {
  std::vector<LostPower> losses;
  env.SetChangeHook([&](std::string_view op, const std::string& path) {
    const std::string when = "before " + std::string(op) + " " + path;
    losses.push_back({when + ", pending names lost", env.AfterPowerLoss(PowerLoss::kPendingNamesLost)});
    losses.push_back({when + ", pending names kept", env.AfterPowerLoss(PowerLoss::kPendingNamesKept)});
    return Status::Ok();
  });
  work();
  env.SetChangeHook(nullptr);
  return losses;
}

// Runs `check` on the queue in `dir` of each disk in `losses`, opened as the next process would, with
// the instant named in the output of any assertion that fails.
void ForEachLoss(std::vector<LostPower>& losses, const std::string& dir,
                 const std::function<void(const LostPower&, Queue&)>& check) {
  for (LostPower& loss : losses) {
    INFO("power loss " << loss.when);
    auto after = Queue::Open(dir, false, loss.disk.get());
    REQUIRE(after.ok());
    check(loss, after.value());
  }
}

// A queue run after the power loss: every message still queued, once, to `again`.
void RunAgain(Queue& q, FakeClock* clock, FakeDeliverer* again) {
  for (const std::string& left : q.Ids())
    ProcessQueuedMessage(q, left, QueueLock(), true, again->Fn(), clock, Settings(), nullptr);
}

}  // namespace

TEST_CASE("queue: a power loss during Submit leaves the whole message or, after the next Clean, nothing") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  Result<std::string> id = Status::Error("not submitted");
  std::vector<LostPower> losses = PowerLossesDuring(t.env, [&] {
    id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test"}), &clock, nullptr);
  });
  REQUIRE(id.ok());
  // Message to a temporary name, link to ID.msg, temporary name removed, envelope to a temporary
  // name, renamed to ID.env, directory synced: before each, in both readings.
  REQUIRE(losses.size() == 12);
  FakeClock later(time(nullptr) + 7200);
  size_t debris_removed = 0, queued = 0;
  ForEachLoss(losses, t.path, [&](const LostPower& loss, Queue& after) {
    if (after.Ids().empty()) {
      // The submitter never got an answer; a message file without its envelope is debris.
      for (const std::string& name : mxsec_test::FilesIn(*loss.disk, t.path))
        debris_removed += name == id.value() + ".msg";
      after.Clean(&later, 3600);
      CHECK(mxsec_test::FilesIn(*loss.disk, t.path).empty());
    } else {
      // The envelope was renamed into place (kept by the file system): the whole message is there.
      ++queued;
      CHECK(after.Ids() == std::vector<std::string>{id.value()});
      auto message = after.ReadMessage(id.value());
      auto env = after.ReadEnvelope(id.value());
      REQUIRE(message.ok());
      REQUIRE(env.ok());
      CHECK(message.value() == kMsg);
      CHECK(env->size == strlen(kMsg));
    }
  });
  CHECK(debris_removed > 0);  // a message file linked before its envelope, removed by Clean
  CHECK(queued == 1);         // renamed, not yet synced, kept
  // Once Submit returned, the message survives any power loss.
  std::unique_ptr<MemEnv> disk = t.env.AfterPowerLoss();
  auto reopened = Queue::Open(t.path, false, disk.get());
  REQUIRE(reopened.ok());
  CHECK(reopened->Ids() == std::vector<std::string>{id.value()});
  auto message = reopened->ReadMessage(id.value());
  REQUIRE(message.ok());
  CHECK(message.value() == kMsg);
}

TEST_CASE("queue: a power loss while an envelope is replaced leaves the old one or the new one, never neither") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test", "defer@two.test"}), &clock, nullptr);
  REQUIRE(id.ok());
  QueuedEnvelope next = q->ReadEnvelope(id.value()).value();
  next.attempts = 1;
  next.recipients[0].state = RecipientState::kDelivered;
  Status written;
  std::vector<LostPower> losses = PowerLossesDuring(t.env, [&] { written = q->WriteEnvelope(next); });
  REQUIRE(written.ok());
  REQUIRE(losses.size() == 6);  // temporary file, rename, directory sync
  std::set<int> seen;
  ForEachLoss(losses, t.path, [&](const LostPower&, Queue& after) {
    auto env = after.ReadEnvelope(id.value());
    REQUIRE_MESSAGE(env.ok(), env.error());
    const bool is_new = env->attempts == 1 && env->recipients[0].state == RecipientState::kDelivered;
    const bool is_old = env->attempts == 0 && env->recipients[0].state == RecipientState::kPending;
    CHECK((is_old || is_new));
    seen.insert(env->attempts);
  });
  CHECK(seen == std::set<int>{0, 1});
  std::unique_ptr<MemEnv> disk = t.env.AfterPowerLoss();
  auto after = Queue::Open(t.path, false, disk.get());
  REQUIRE(after.ok());
  auto env = after->ReadEnvelope(id.value());
  REQUIRE(env.ok());
  CHECK(env->attempts == 1);
}

TEST_CASE("queue: a power loss while a message is removed never leaves an envelope without its message") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test"}), &clock, nullptr);
  REQUIRE(id.ok());
  Status removed;
  std::vector<LostPower> losses = PowerLossesDuring(t.env, [&] { removed = q->Remove(id.value()); });
  REQUIRE(removed.ok());
  REQUIRE(losses.size() == 6);  // envelope, message, directory sync
  FakeClock later(time(nullptr) + 7200);
  ForEachLoss(losses, t.path, [&](const LostPower& loss, Queue& after) {
    if (!after.Ids().empty()) {
      auto message = after.ReadMessage(id.value());  // still queued, whole
      REQUIRE_MESSAGE(message.ok(), message.error());
      CHECK(message.value() == kMsg);
      return;
    }
    after.Clean(&later, 3600);  // a message file left without its envelope is debris
    CHECK(mxsec_test::FilesIn(*loss.disk, t.path).empty());
  });
  std::unique_ptr<MemEnv> disk = t.env.AfterPowerLoss();
  CHECK(mxsec_test::FilesIn(*disk, t.path).empty());
}

TEST_CASE("queue: a message whose last recipients are delivered is removed with no envelope write after "
          "them; a power loss at any instant sends again at most the one transaction in flight") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test", "ok2@one.test"}), &clock, nullptr);
  REQUIRE(id.ok());
  FakeDeliverer fake;
  ProcessReport r;
  std::vector<LostPower> losses = PowerLossesDuring(t.env, [&] {
    r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, Settings(), nullptr);
  });
  CHECK(r.removed);
  CHECK(fake.calls == 1);
  // The removal only (envelope, message, directory sync): the delivery's own record is the removal.
  REQUIRE(losses.size() == 6);
  ForEachLoss(losses, t.path, [&](const LostPower&, Queue& after) {
    // Still queued: the one transaction in flight is made again, once; else nothing is.
    FakeDeliverer again;
    RunAgain(after, &clock, &again);
    CHECK(again.calls <= 1);
    CHECK(after.Ids().empty());
  });

  // Two domains: each delivery is recorded before the next domain starts (a crash between them
  // must not send the first domain's copy again).
  auto two = q->Submit(kMsg, MakeEnvelope("a@client.test", {"ok@one.test", "ok@two.test"}), &clock, nullptr);
  REQUIRE(two.ok());
  FakeDeliverer fake2;
  std::vector<LostPower> losses2 = PowerLossesDuring(t.env, [&] {
    r = ProcessQueuedMessage(q.value(), two.value(), QueueLock(), true, fake2.Fn(), &clock, Settings(), nullptr);
  });
  CHECK(r.removed);
  CHECK(fake2.calls == 2);
  CHECK(losses2.size() > 6);  // an envelope write after the first domain, then the removal
  // The second (last) domain's outcome is recorded by the removal alone. A power loss before the
  // first domain's write is durable sends that one again (and the second for the first time); from
  // the removal's changes on, only the second domain's, the one in flight, is sent again.
  bool first_recorded = false;
  ForEachLoss(losses2, t.path, [&](const LostPower& loss, Queue& after) {
    if (loss.when.rfind("before remove", 0) == 0) first_recorded = true;
    FakeDeliverer again;
    RunAgain(after, &clock, &again);
    CHECK(again.calls <= 2);
    for (const auto& [rcpt, n] : again.per_rcpt) CHECK(n == 1);
    if (first_recorded) {
      CHECK(again.calls <= 1);
      CHECK(again.per_rcpt.count("ok@one.test") == 0);
    }
    CHECK(after.Ids().empty());
  });
  CHECK(first_recorded);
}

TEST_CASE("queue: threads removing at once share directory fsyncs; a failed fsync fails every change it covered") {
  TempDir t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  std::vector<std::string> ids;
  for (const char* r : {"ok@one.test", "ok@two.test", "ok@three.test"}) {
    auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", {r}), &clock, nullptr);
    REQUIRE(id.ok());
    ids.push_back(id.value());
  }
  std::mutex mu;
  std::condition_variable cv;
  int syncs = 0;
  bool release = false;
  // The first directory sync is held until released; the second fails (a disk that went away).
  t.env.SetChangeHook([&](std::string_view op, const std::string&) -> Status {
    if (op != "sync") return Status::Ok();
    std::unique_lock<std::mutex> l(mu);
    const int n = ++syncs;
    cv.notify_all();
    if (n == 1) {
      cv.wait(l, [&] { return release; });
      return Status::Ok();
    }
    return Status::Error("sync: Input/output error");
  });
  Status r0, r1, r2;
  std::thread first([&] { r0 = q->Remove(ids[0]); });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return syncs == 1; });
  }
  std::thread second([&] { r1 = q->Remove(ids[1]); });
  std::thread third([&] { r2 = q->Remove(ids[2]); });
  // Both have unlinked (their ids are gone) and then wait for the sync under way, which began before
  // their changes and so covers neither: give them the moment from their unlink to their turn.
  for (int i = 0; i < 500 && !q->Ids().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  {
    std::lock_guard<std::mutex> l(mu);
    CHECK(syncs == 1);
    release = true;
  }
  cv.notify_all();
  first.join();
  second.join();
  third.join();
  t.env.SetChangeHook(nullptr);
  CHECK(r0.ok());
  CHECK(syncs == 2);  // one sync for the two changes that waited
  CHECK_FALSE(r1.ok());
  CHECK_FALSE(r2.ok());
  CHECK(r1.message().find("Input/output error") != std::string::npos);
}

TEST_CASE("queue: a REQUIRETLS message is delivered with it every time, bounces 5.7.30, and no DSN returns it") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  QueuedEnvelope e = MakeEnvelope("a@client.test", {"norequiretls@one.test", "defer@two.test"});
  e.message_tls = MessageTls::kRequireTls;
  auto id = q->Submit(kMsg, e, &clock, nullptr);
  REQUIRE(id.ok());
  auto stored = q->ReadEnvelope(id.value());
  REQUIRE(stored.ok());
  CHECK(stored->message_tls == MessageTls::kRequireTls);
  CHECK(EnvelopeToJson(stored.value()).find("\"message_tls\":\"requiretls\"") != std::string::npos);
  FakeDeliverer fake;
  QueueSettings s = Settings();
  s.lifetime = 86400;
  ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, fake.Fn(), &clock, s, nullptr);
  clock.Advance(86400);
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, fake.Fn(), &clock, s, nullptr);
  CHECK(r.bounced == 2);
  for (MessageTls seen : fake.message_tls_seen) CHECK(seen == MessageTls::kRequireTls);
  CHECK(fake.message_tls_seen.size() == 4);
  REQUIRE_FALSE(r.dsn_id.empty());
  std::string dsn = q->ReadMessage(r.dsn_id).value();
  CHECK(dsn.find("Final-Recipient: rfc822; norequiretls@one.test\nAction: failed\nStatus: 5.7.30") !=
        std::string::npos);
  CHECK(dsn.find("Status: 4.4.7") != std::string::npos);  // the other one: an ordinary expiry
  CHECK(dsn.find("Subject: hi") == std::string::npos);    // nothing of the original, headers neither
  CHECK(dsn.find("text/rfc822-headers") == std::string::npos);
  CHECK(q->ReadEnvelope(r.dsn_id)->message_tls == MessageTls::kPolicy);
}

TEST_CASE("queue: an envelope with an unknown message_tls is not read") {
  QueuedEnvelope e = MakeEnvelope("a@client.test", {"x@one.test"});
  std::string json = EnvelopeToJson(e);
  CHECK(json.find("\"message_tls\":\"policy\"") != std::string::npos);
  const std::string bad = std::string(json).replace(json.find("\"policy\""), 8, "\"maybe\"");
  auto parsed = EnvelopeFromJson(bad);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error() == "envelope: unknown message_tls \"maybe\"");
  json.erase(json.find("\"message_tls\""), std::string("\"message_tls\":\"policy\",").size());
  REQUIRE(EnvelopeFromJson(json).ok());  // written by an older version: the domain's policy
  CHECK(EnvelopeFromJson(json)->message_tls == MessageTls::kPolicy);
}

TEST_CASE("queue: DestinationRuns groups messages by their pending domains, in runs of a worker's share") {
  TempDir t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE(q.ok());
  std::vector<std::string> ids;
  auto submit = [&](std::vector<std::string> rcpts) {
    auto id = q->Submit(kMsg, MakeEnvelope("a@client.test", std::move(rcpts)), &clock, nullptr);
    REQUIRE(id.ok());
    ids.push_back(id.value());
  };
  for (int i = 0; i < 5; ++i) {
    submit({"x@one.test"});
    submit({"y@Two.test", "z@two.test"});
  }
  submit({"x@one.test", "y@two.test"});  // two domains: a destination of its own
  ids.push_back("99999999999999999");    // no envelope: a run of its own, still listed
  // 12 messages, 4 workers: runs of 3 at most. one.test: 5 in 3 + 2; two.test likewise; the
  // mixed one; the unreadable one.
  std::vector<std::vector<std::string>> runs = DestinationRuns(q.value(), ids, 4);
  REQUIRE(runs.size() == 6);
  CHECK(runs[0] == std::vector<std::string>{ids[0], ids[2], ids[4]});
  CHECK(runs[1] == std::vector<std::string>{ids[6], ids[8]});
  CHECK(runs[2] == std::vector<std::string>{ids[1], ids[3], ids[5]});
  CHECK(runs[3] == std::vector<std::string>{ids[7], ids[9]});
  CHECK(runs[4] == std::vector<std::string>{ids[10]});
  CHECK(runs[5] == std::vector<std::string>{ids[11]});
  // One worker: each destination is one run; as many workers as messages: one message each.
  CHECK(DestinationRuns(q.value(), ids, 1).size() == 4);
  CHECK(DestinationRuns(q.value(), ids, 12).size() == 12);
}
