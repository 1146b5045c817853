// queue_concurrency_test.cc - the two bounds of a queue run: deliveries at
// once to one destination domain (DestinationLimiter,
// default_destination_concurrency_limit) and delivery threads in total
// (WorkerBudget, queue_run_concurrency), for messages to one domain, to many
// domains, and to several domains each. A fake deliverer measures what runs
// at once, per domain and in total; a thread starter counts the threads.
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
  DestinationLimiter::Slot a = lim.Acquire("one.test");
  DestinationLimiter::Slot b = lim.Acquire("ONE.test");
  CHECK(lim.InUse("one.test") == 2);
  DestinationLimiter::Slot c = lim.Acquire("two.test");  // another domain: does not wait
  CHECK(lim.InUse("two.test") == 1);
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    DestinationLimiter::Slot d = lim.Acquire("one.TEST");
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
