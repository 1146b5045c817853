// queue_concurrency_test.cc - the two bounds of a queue run: deliveries at
// once to one destination domain (DestinationLimiter,
// default_destination_concurrency_limit) and delivery threads in total
// (WorkerBudget, queue_run_concurrency), for messages to one domain, to many
// domains, and to several domains each. A fake deliverer measures what runs
// at once, per domain and in total; a thread starter counts the threads.
// Across processes (DestinationSlotFiles): two limiters with slot files over
// one queue directory stand for two processes, as a lock of a MemEnv
// conflicts with every other FileLock, as flock(2) between processes does.
// In memory (MemEnv).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "temp_queue_dir.h"
#include "mxsec/base/config.h"
#include "mxsec/queue/queue.h"

using namespace mxsec;

namespace {

struct MemQueue : mxsec_test::MemQueueDir {
  Result<Queue> Open() { return Queue::Open(path, true, &env); }
};

QueueSettings RunSettings() {
  QueueSettings s;
  s.reporting_mta = "mta.client.test";
  s.bounce_domain = "client.test";
  return s;
}

void RaiseTo(std::atomic<int>* max, int now) {
  int prev = max->load();
  while (now > prev && !max->compare_exchange_weak(prev, now)) {
  }
}

// Real threads, counted: the most alive at once.
struct CountingStarter : ThreadStarter {
  std::atomic<int> alive{0}, max_alive{0}, started{0};
  bool Start(std::function<void()> fn, std::thread* out, std::string*) override {
    ++started;
    RaiseTo(&max_alive, ++alive);
    *out = std::thread([this, fn = std::move(fn)] {
      fn();
      --alive;
    });
    return true;
  }
};

// Delivers every recipient after a pause (a session's round trips), and records the most
// deliveries running at once, per domain and in total.
struct ConcurrencyRecorder {
  std::chrono::microseconds pause{2000};
  std::mutex mu;
  std::map<std::string, int> running, max_running;  // per domain
  std::atomic<int> total{0}, max_total{0}, calls{0};

  DomainDeliverer Fn() {
    return [this](const std::string& domain, const Mailbox&, const std::vector<Mailbox>& rcpts,
                  const PreparedMessage&, const DsnRequest&, MessageTls) {
      ++calls;
      RaiseTo(&max_total, ++total);
      {
        std::lock_guard<std::mutex> l(mu);
        int now = ++running[domain];
        max_running[domain] = std::max(max_running[domain], now);
      }
      std::this_thread::sleep_for(pause);
      {
        std::lock_guard<std::mutex> l(mu);
        --running[domain];
      }
      --total;
      std::vector<RecipientOutcome> out;
      for (const Mailbox& m : rcpts) {
        RecipientOutcome o;
        o.recipient = m;
        o.status = RcptStatus::kDelivered;
        o.code = "2.0.0";
        o.reply = "250 2.0.0 ok";
        out.push_back(o);
      }
      return out;
    };
  }
  int MaxFor(const std::string& domain) {
    std::lock_guard<std::mutex> l(mu);
    return max_running[domain];
  }
  int MaxAnyDomain() {
    std::lock_guard<std::mutex> l(mu);
    int m = 0;
    for (const auto& [d, n] : max_running) m = std::max(m, n);
    return m;
  }
};

// Queues `n` messages; message i goes to the recipients `rcpts_of(i)` returns.
template <typename F>
std::vector<std::string> QueueMessages(Queue& q, size_t n, F rcpts_of) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < n; ++i) {
    QueuedEnvelope e;
    e.sender = "a@client.test";
    for (const std::string& r : rcpts_of(i)) e.recipients.push_back(QueuedRecipient{r});
    auto id = q.Submit("From: a@client.test\nSubject: hi\n\nbody\n", e, SystemClock(), nullptr);
    REQUIRE(id.ok());
    ids.push_back(id.value());
  }
  return ids;
}

// One pass over the whole queue with `threads` and `per_destination`; every message must leave it.
void RunAll(Queue& q, ConcurrencyRecorder& rec, CountingStarter& starter, size_t threads, size_t per_destination) {
  WorkerBudget budget(threads, &starter);
  DestinationLimiter destinations(per_destination);
  QueueSettings s = RunSettings();
  s.workers = &budget;
  s.destinations = &destinations;
  std::atomic<size_t> removed{0}, errors{0};
  QueueRunHooks hooks;
  hooks.done = [&](const ProcessReport& rep) {
    if (rep.removed) ++removed;
    if (!rep.error.empty() || rep.skipped) ++errors;
  };
  const std::vector<std::string> ids = q.Ids();
  RunQueuePass(q, ids, true, rec.Fn(), SystemClock(), s, hooks);
  CHECK(removed.load() == ids.size());
  CHECK(errors.load() == 0);
  CHECK(q.Ids().empty());
}

}  // namespace

TEST_CASE("destination limiter: at most `limit` slots per domain, case-insensitively; others unaffected") {
  DestinationLimiter lim(2);
  DestinationLimiter::Slot a = lim.Acquire("one.test").value();
  DestinationLimiter::Slot b = lim.Acquire("ONE.test").value();
  CHECK(lim.InUse("one.test") == 2);
  DestinationLimiter::Slot c = lim.Acquire("two.test").value();  // another domain: does not wait
  CHECK(lim.InUse("two.test") == 1);
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    DestinationLimiter::Slot d = lim.Acquire("one.TEST").value();
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(got.load());  // the third slot of one.test waits ...
  a.Release();
  waiter.join();  // ... until one is given back
  CHECK(got.load());
  CHECK(lim.InUse("one.test") == 1);  // the waiter's slot went back when it ended
  b = DestinationLimiter::Slot();     // move-assigning releases the slot held
  CHECK(lim.InUse("one.test") == 0);
  c.Release();
  c.Release();  // twice: once only
  CHECK(lim.InUse("two.test") == 0);
  CHECK(DestinationLimiter(0).limit() == 1);  // never a limit that admits nobody
}

TEST_CASE("queue run: 300 messages to one domain never exceed the per-destination limit, and reach it") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  QueueMessages(q.value(), 300,
                [](size_t i) { return std::vector<std::string>{"u" + std::to_string(i) + "@one.test"}; });
  ConcurrencyRecorder rec;
  CountingStarter starter;
  RunAll(q.value(), rec, starter, 40, 4);
  CHECK(rec.calls.load() == 300);
  CHECK(rec.MaxFor("one.test") <= 4);
  CHECK(rec.MaxFor("one.test") >= 2);  // the limit is not one in disguise: deliveries ran side by side
  // No thread per run beyond what the destination takes: the runs of one destination are at most its limit.
  CHECK(starter.started.load() <= 4);
}

TEST_CASE("queue run: 200 messages over 200 domains never exceed the total, and use more than one thread") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  QueueMessages(q.value(), 200,
                [](size_t i) { return std::vector<std::string>{"u@d" + std::to_string(i) + ".test"}; });
  ConcurrencyRecorder rec;
  CountingStarter starter;
  RunAll(q.value(), rec, starter, 8, 20);
  CHECK(rec.calls.load() == 200);
  CHECK(rec.max_total.load() <= 8);
  CHECK(starter.max_alive.load() <= 8);
  CHECK(rec.max_total.load() >= 2);
  CHECK(rec.MaxAnyDomain() == 1);  // one message per domain
}

TEST_CASE("queue run: messages to several domains each: both bounds hold, domain helpers included") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  // Every message to the same two busy domains plus one of its own: the helpers of each message
  // compete with the other messages' deliveries for the two busy domains.
  QueueMessages(q.value(), 120, [](size_t i) {
    return std::vector<std::string>{"a" + std::to_string(i) + "@busy1.test", "b" + std::to_string(i) + "@busy2.test",
                                    "c@own" + std::to_string(i) + ".test"};
  });
  ConcurrencyRecorder rec;
  CountingStarter starter;
  RunAll(q.value(), rec, starter, 12, 3);
  CHECK(rec.calls.load() == 360);
  CHECK(rec.MaxFor("busy1.test") <= 3);
  CHECK(rec.MaxFor("busy2.test") <= 3);
  CHECK(rec.max_total.load() <= 12);
  CHECK(starter.max_alive.load() <= 12);
  CHECK(rec.max_total.load() >= 2);
}

TEST_CASE("queue run: one message to many domains alone (sendmail's delivery): caller and helpers within the total") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  std::vector<std::string> rcpts;
  for (int d = 0; d < 60; ++d) rcpts.push_back("u@m" + std::to_string(d) + ".test");
  auto ids = QueueMessages(q.value(), 1, [&](size_t) { return rcpts; });
  ConcurrencyRecorder rec;
  CountingStarter starter;
  // As DeliverNow: the calling thread delivers too, so the budget lends one thread less than the total.
  const size_t total = 6;
  WorkerBudget budget(total - 1, &starter);
  DestinationLimiter destinations(20);
  QueueSettings s = RunSettings();
  s.workers = &budget;
  s.destinations = &destinations;
  ProcessReport rep =
      ProcessQueuedMessage(q.value(), ids[0], QueueLock(), true, rec.Fn(), SystemClock(), s, nullptr);
  CHECK(rep.removed);
  CHECK(rec.calls.load() == 60);
  CHECK(rec.max_total.load() <= static_cast<int>(total));
  CHECK(rec.max_total.load() >= 2);
}

TEST_CASE("queue: DestinationRuns cuts one destination into at most per_destination runs") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  auto ids = QueueMessages(q.value(), 100,
                           [](size_t i) { return std::vector<std::string>{"u" + std::to_string(i) + "@one.test"}; });
  auto runs = DestinationRuns(q.value(), ids, 75, 20);
  CHECK(runs.size() == 20);
  size_t n = 0;
  for (const auto& r : runs) n += r.size();
  CHECK(n == 100);
  CHECK(DestinationRuns(q.value(), ids, 75).size() == 50);  // without the bound: a worker's share, 2 each
  CHECK(DestinationRuns(q.value(), ids, 4, 20).size() == 4);  // the workers bound it first
}

TEST_CASE("config: default_destination_concurrency_limit (20) and queue_run_concurrency (100), with their ranges") {
  Config c;
  CHECK(c.default_destination_concurrency_limit == 20);
  CHECK(c.queue_run_concurrency == 100);
  CHECK(ApplyConfigSetting("default_destination_concurrency_limit", "5", "test", &c).ok());
  CHECK(c.default_destination_concurrency_limit == 5);
  for (const char* bad : {"0", "257", "x", ""})
    CHECK_FALSE(ApplyConfigSetting("default_destination_concurrency_limit", bad, "test", &c).ok());
  CHECK(c.default_destination_concurrency_limit == 5);
}

// ---------------------------------------------------------------------------------------------------
// The limit across processes: slot files in the queue directory.

namespace {

using std::chrono::milliseconds;

// What one delivering process of the queue directory has: its slot files and its limiter.
struct Process {
  Process(MemEnv* env, const std::string& dir, size_t limit, milliseconds wait,
          DestinationSlotFiles::Share share = DestinationSlotFiles::Share::kAll)
      : files(env, dir, limit, share), limiter(limit, &files, wait) {}
  DestinationSlotFiles files;
  DestinationLimiter limiter;
};

std::vector<std::string> SlotFiles(const MemQueue& mq) {
  std::vector<std::string> out;
  for (const std::string& n : mq.Files())
    if (DestinationSlotFiles::IsSlotFileName(n)) out.push_back(n);
  return out;
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("slot files: names of bounded length from a hash, never a path from the domain") {
  const std::string a = DestinationSlotFiles::FileName("one.test", 0);
  CHECK(a.size() == 6 + 32 + 2);
  CHECK(a.rfind(".slot-", 0) == 0);
  CHECK(DestinationSlotFiles::IsSlotFileName(a));
  CHECK(DestinationSlotFiles::IsSlotFileName(DestinationSlotFiles::FileName("one.test", 255)));
  CHECK(DestinationSlotFiles::FileName("one.test", 1) != a);
  CHECK(DestinationSlotFiles::FileName("two.test", 0) != a);
  const std::string evil = DestinationSlotFiles::FileName("../../etc/passwd\n" + std::string(300, 'x'), 3);
  CHECK(evil.size() == a.size());
  CHECK(evil.find('/') == std::string::npos);
  CHECK(DestinationSlotFiles::IsSlotFileName(evil));
  for (const char* other : {"", ".slot-", ".slot-xyz-1", "0123456789ABCDEF.env", ".tmp-msg-1-00000000",
                            ".run-request"})
    CHECK_FALSE(DestinationSlotFiles::IsSlotFileName(other));
  CHECK_FALSE(DestinationSlotFiles::IsSlotFileName(a + "0000"));
  CHECK_FALSE(DestinationSlotFiles::IsSlotFileName(a.substr(0, 6) + std::string(32, 'G') + "-0"));
}

TEST_CASE("slot files: two processes share a destination's `limit` slots; others unaffected; given back") {
  MemQueue mq;
  REQUIRE(mq.Open().ok());
  Process p1(&mq.env, mq.path, 2, milliseconds(0));
  Process p2(&mq.env, mq.path, 2, milliseconds(0));
  auto a = p1.limiter.Acquire("one.test");
  REQUIRE(a.ok());
  auto b = p2.limiter.Acquire("ONE.TEST");  // the same destination, whatever the case
  REQUIRE(b.ok());
  // Each process has one delivery of its own, under its own limit of 2; together they have 2.
  auto c = p1.limiter.Acquire("one.test");
  CHECK(c.status().IsUnavailable());
  CHECK(c.error().find("all 2 of its delivery slots are taken") != std::string::npos);
  CHECK(c.error().find("default_destination_concurrency_limit 2") != std::string::npos);
  CHECK(p1.limiter.InUse("one.test") == 1);  // the refused one gave its own slot back
  CHECK(p2.limiter.Acquire("one.test").status().IsUnavailable());
  auto d = p2.limiter.Acquire("two.test");  // another destination has slots of its own
  CHECK(d.ok());
  // At most `limit` files per destination, one per slot taken so far.
  CHECK(SlotFiles(mq).size() == 3);
  std::move(a).value().Release();
  auto e = p2.limiter.Acquire("one.test");  // the slot p1 gave back
  CHECK(e.ok());
  CHECK(p2.limiter.InUse("one.test") == 2);
  CHECK(SlotFiles(mq).size() == 3);  // made once, used again
}

TEST_CASE("slot files: a delivery waits at most `wait` for another process's slot, and takes one freed meanwhile") {
  MemQueue mq;
  REQUIRE(mq.Open().ok());
  Process holder(&mq.env, mq.path, 2, milliseconds(0));
  auto h1 = holder.limiter.Acquire("one.test");
  auto h2 = holder.limiter.Acquire("one.test");
  REQUIRE((h1.ok() && h2.ok()));

  Process impatient(&mq.env, mq.path, 2, milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  auto refused = impatient.limiter.Acquire("one.test");
  CHECK(refused.status().IsUnavailable());
  CHECK(SecondsSince(start) >= 0.29);
  CHECK(SecondsSince(start) < 3);
  CHECK(refused.error().find("waited") == std::string::npos);  // under a second: no "waited 0 s"

  Process patient(&mq.env, mq.path, 2, milliseconds(10000));
  std::thread release([&] {
    std::this_thread::sleep_for(milliseconds(200));
    std::move(h1).value().Release();
  });
  start = std::chrono::steady_clock::now();
  auto got = patient.limiter.Acquire("one.test");
  release.join();
  CHECK(got.ok());
  CHECK(SecondsSince(start) >= 0.19);
  CHECK(SecondsSince(start) < 5);  // well before the wait's end: tried again at most a second apart
}

TEST_CASE("slot files: a submitter's process takes at most half of a destination's slots, never the runner's") {
  MemQueue mq;
  REQUIRE(mq.Open().ok());
  Process submitter(&mq.env, mq.path, 4, milliseconds(0), DestinationSlotFiles::Share::kSubmitter);
  Process runner(&mq.env, mq.path, 4, milliseconds(0));
  auto s1 = submitter.limiter.Acquire("one.test");
  auto s2 = submitter.limiter.Acquire("one.test");
  REQUIRE((s1.ok() && s2.ok()));
  auto s3 = submitter.limiter.Acquire("one.test");
  CHECK(s3.status().IsUnavailable());
  CHECK(s3.error().find("all 2 of its delivery slots a submitter may take are taken") != std::string::npos);
  // Stopped submitters hold what they hold: the runner still has the other half.
  auto r1 = runner.limiter.Acquire("one.test");
  auto r2 = runner.limiter.Acquire("one.test");
  CHECK((r1.ok() && r2.ok()));
  CHECK(runner.limiter.Acquire("one.test").status().IsUnavailable());  // 4 in all

  // With a limit of 1 a submitter takes none, at once rather than after its wait.
  Process lone(&mq.env, mq.path, 1, milliseconds(5000), DestinationSlotFiles::Share::kSubmitter);
  const auto start = std::chrono::steady_clock::now();
  auto none = lone.limiter.Acquire("two.test");
  CHECK(none.status().IsUnavailable());
  CHECK(none.error().find("kept for the queue runner") != std::string::npos);
  CHECK(SecondsSince(start) < 1);
  Process root(&mq.env, mq.path, 1, milliseconds(0));
  CHECK(root.limiter.Acquire("two.test").ok());
}

TEST_CASE("slot files: a slot file that cannot be made is an error, never a delivery without a slot") {
  MemQueue mq;  // the queue directory is never made: no slot file can be
  Process p(&mq.env, mq.path, 2, milliseconds(1000));
  const auto start = std::chrono::steady_clock::now();
  auto got = p.limiter.Acquire("one.test");
  REQUIRE_FALSE(got.ok());
  CHECK_FALSE(got.status().IsUnavailable());
  CHECK(got.error().find("delivery slot of one.test") != std::string::npos);
  CHECK(SecondsSince(start) < 0.5);  // not waited for: trying again would not help
  CHECK(p.limiter.InUse("one.test") == 0);
}

TEST_CASE("slot files: Queue::Clean removes the old ones nobody holds, keeps held ones, and they come back") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  Process p(&mq.env, mq.path, 3, milliseconds(0));
  {
    auto gone1 = p.limiter.Acquire("one.test");
    auto gone2 = p.limiter.Acquire("two.test");
    REQUIRE((gone1.ok() && gone2.ok()));
  }  // as a process killed while delivering: its locks end, its files stay
  auto held = p.limiter.Acquire("three.test");
  REQUIRE(held.ok());
  CHECK(SlotFiles(mq).size() == 3);
  q->Clean(SystemClock(), 3600);  // all younger than an hour
  CHECK(SlotFiles(mq).size() == 3);
  FakeClock later(SystemClock()->Now() + 7200);
  q->Clean(&later, 3600);
  CHECK(SlotFiles(mq) == std::vector<std::string>{DestinationSlotFiles::FileName("three.test", 2)});
  // The slot works as before: its file made again.
  auto again = p.limiter.Acquire("one.test");
  CHECK(again.ok());
  CHECK(SlotFiles(mq).size() == 2);
  // The held slot was left alone: another process gets the two others of three.test, not a third.
  Process other(&mq.env, mq.path, 3, milliseconds(0));
  auto o1 = other.limiter.Acquire("three.test");
  auto o2 = other.limiter.Acquire("three.test");
  CHECK((o1.ok() && o2.ok()));
  CHECK(other.limiter.Acquire("three.test").status().IsUnavailable());
}

TEST_CASE("slot files: a message whose only destination is busy elsewhere is left exactly as it was, due") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  auto ids = QueueMessages(q.value(), 1, [](size_t) { return std::vector<std::string>{"u@one.test"}; });
  const std::string env_path = mq.path + "/" + ids[0] + ".env";
  const std::string before = mq.env.ReadFile(env_path, 1 << 20).value();
  Process other(&mq.env, mq.path, 2, milliseconds(0));
  auto o1 = other.limiter.Acquire("one.test");
  auto o2 = other.limiter.Acquire("one.test");
  REQUIRE((o1.ok() && o2.ok()));

  ConcurrencyRecorder rec;
  Process me(&mq.env, mq.path, 2, milliseconds(100));
  QueueSettings s = RunSettings();
  s.destinations = &me.limiter;
  std::vector<std::string> log;
  ProcessReport rep = ProcessQueuedMessage(q.value(), ids[0], QueueLock(), false, rec.Fn(), SystemClock(), s,
                                           [&](const std::string& l) { log.push_back(l); });
  CHECK(rep.skipped);
  CHECK(rep.waiting == 1);
  CHECK(rep.error.empty());
  CHECK(rec.calls.load() == 0);
  CHECK(mq.env.ReadFile(env_path, 1 << 20).value() == before);  // not rewritten: no attempt counted
  REQUIRE(log.size() == 1);
  CHECK(log[0].find("one.test: not delivered now, left in the queue for the next run") != std::string::npos);
  QueueLock lock;
  CHECK(q->TryLock(ids[0], &lock) == LockState::kLocked);  // and not held
  lock.Release();

  std::move(o1).value().Release();
  rep = ProcessQueuedMessage(q.value(), ids[0], QueueLock(), false, rec.Fn(), SystemClock(), s, nullptr);
  CHECK(rep.removed);
  CHECK(rec.calls.load() == 1);
}

TEST_CASE("slot files: of a message to two domains, the free one is delivered, the busy one is due again at once") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  auto ids = QueueMessages(q.value(), 1, [](size_t) { return std::vector<std::string>{"u@one.test", "v@two.test"}; });
  Process other(&mq.env, mq.path, 1, milliseconds(0));
  auto busy = other.limiter.Acquire("two.test");
  REQUIRE(busy.ok());
  ConcurrencyRecorder rec;
  Process me(&mq.env, mq.path, 1, milliseconds(0));
  QueueSettings s = RunSettings();
  s.destinations = &me.limiter;
  FakeClock clock(SystemClock()->Now());
  ProcessReport rep = ProcessQueuedMessage(q.value(), ids[0], QueueLock(), false, rec.Fn(), &clock, s, nullptr);
  CHECK_FALSE(rep.skipped);
  CHECK(rep.delivered == 1);
  CHECK(rep.waiting == 1);
  CHECK(rep.deferred == 1);
  auto env = q->ReadEnvelope(ids[0]);
  REQUIRE(env.ok());
  CHECK(env->attempts == 1);
  CHECK(env->next_retry == clock.Now());  // not a failure: no backoff
  CHECK(env->recipients[0].state == RecipientState::kDelivered);
  CHECK(env->recipients[1].state == RecipientState::kPending);
  CHECK(env->recipients[1].code.empty());  // untouched
  std::move(busy).value().Release();
  rep = ProcessQueuedMessage(q.value(), ids[0], QueueLock(), false, rec.Fn(), &clock, s, nullptr);
  CHECK(rep.removed);
  CHECK(rec.calls.load() == 2);  // each domain once
}

TEST_CASE("slot files: a queue run does not wait for a destination busy elsewhere, and delivers the others") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  QueueMessages(q.value(), 20, [](size_t i) {
    return std::vector<std::string>{"u" + std::to_string(i) + (i % 2 ? "@one.test" : "@two.test")};
  });
  Process other(&mq.env, mq.path, 2, milliseconds(0));
  auto o1 = other.limiter.Acquire("one.test");
  auto o2 = other.limiter.Acquire("one.test");
  REQUIRE((o1.ok() && o2.ok()));
  ConcurrencyRecorder rec;
  CountingStarter starter;
  WorkerBudget budget(8, &starter);
  Process runner(&mq.env, mq.path, 2, milliseconds(0));
  QueueSettings s = RunSettings();
  s.workers = &budget;
  s.destinations = &runner.limiter;
  std::atomic<size_t> removed{0}, skipped{0}, errors{0};
  QueueRunHooks hooks;
  hooks.done = [&](const ProcessReport& rep) {
    if (rep.removed) ++removed;
    if (rep.skipped && rep.waiting == 1) ++skipped;
    if (!rep.error.empty()) ++errors;
  };
  const auto start = std::chrono::steady_clock::now();
  RunQueuePass(q.value(), q->Ids(), false, rec.Fn(), SystemClock(), s, hooks);
  CHECK(SecondsSince(start) < 5);
  CHECK(removed.load() == 10);  // two.test
  CHECK(skipped.load() == 10);  // one.test, left as they were
  CHECK(errors.load() == 0);
  CHECK(rec.MaxFor("one.test") == 0);
  CHECK(q->Ids().size() == 10);
  o1 = DestinationLimiter::Slot();  // the other process ends
  o2 = DestinationLimiter::Slot();
  RunQueuePass(q.value(), q->Ids(), false, rec.Fn(), SystemClock(), s, hooks);
  CHECK(q->Ids().empty());
  CHECK(rec.calls.load() == 20);  // each message once
  CHECK(rec.MaxFor("one.test") <= 2);
}

TEST_CASE("slot files: two queue runs at once stay within the limit together; every message once") {
  MemQueue mq;
  auto q1 = mq.Open();
  auto q2 = mq.Open();
  REQUIRE((q1.ok() && q2.ok()));
  QueueMessages(q1.value(), 120, [](size_t i) { return std::vector<std::string>{"u" + std::to_string(i) + "@one.test"}; });
  ConcurrencyRecorder rec;  // sees both "processes"
  rec.pause = std::chrono::microseconds(3000);
  auto run = [&](Queue& q) {
    CountingStarter starter;
    WorkerBudget budget(12, &starter);
    Process p(&mq.env, mq.path, 3, milliseconds(0));
    QueueSettings s = RunSettings();
    s.workers = &budget;
    s.destinations = &p.limiter;
    QueueRunHooks hooks;
    // As `queue run` again and again: until the queue is empty, a bounded number of times.
    for (int pass = 0; pass < 500 && !q.Ids().empty(); ++pass) RunQueuePass(q, q.Ids(), false, rec.Fn(), SystemClock(), s, hooks);
  };
  std::thread a([&] { run(q1.value()); });
  std::thread b([&] { run(q2.value()); });
  a.join();
  b.join();
  CHECK(q1->Ids().empty());
  CHECK(rec.calls.load() == 120);
  CHECK(rec.MaxFor("one.test") <= 3);
  CHECK(rec.MaxFor("one.test") >= 2);
}

TEST_CASE("slot files: background deliveries of many submissions (one process each) stay within the limit") {
  MemQueue mq;
  auto q = mq.Open();
  REQUIRE(q.ok());
  auto ids = QueueMessages(q.value(), 12, [](size_t i) { return std::vector<std::string>{"u" + std::to_string(i) + "@one.test"}; });
  ConcurrencyRecorder rec;
  rec.pause = std::chrono::microseconds(20000);
  std::atomic<size_t> removed{0};
  std::vector<std::thread> submitters;
  for (const std::string& id : ids) {
    submitters.emplace_back([&, id] {  // as DeliverNow in the child of one `sendmail -odb`
      Process p(&mq.env, mq.path, 2, milliseconds(20000));
      QueueSettings s = RunSettings();
      s.destinations = &p.limiter;
      if (ProcessQueuedMessage(q.value(), id, QueueLock(), true, rec.Fn(), SystemClock(), s, nullptr).removed) ++removed;
    });
  }
  for (std::thread& t : submitters) t.join();
  CHECK(removed.load() == 12);  // all within the wait
  CHECK(rec.calls.load() == 12);
  CHECK(rec.MaxFor("one.test") <= 2);
  CHECK(rec.MaxFor("one.test") == 2);
}
