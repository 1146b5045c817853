// queue_run_test.cc - one delivery attempt of a message to many domains:
// the bounded delivery threads (WorkerBudget, a ThreadStarter that fails on
// demand), the per-attempt domain bound, and the envelope written after each
// domain that took the message (a crash between two domains, as a forked
// child killed with SIGKILL, repeats neither). In memory (MemEnv) but the
// SIGKILL test, which needs a file system that outlives a process.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
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

// The queue of every test here but the one killed with SIGKILL: a MemEnv.
struct MemQueue : mxsec_test::MemQueueDir {
  Result<Queue> Open() { return Queue::Open(path, true, &env); }
};

// That one's: the real file system, which outlives a process that dies with its locks.
struct RealQueue : mxsec_test::TempQueueDir {
  RealQueue() : mxsec_test::TempQueueDir("mxsec-queue-run-test") {}
  Result<Queue> Open() { return Queue::Open(path, true); }
};

const char* kBody = "From: a@client.test\nTo: x@one.test\nSubject: hi\n\nbody line\n";

QueueSettings RunSettings() {
  QueueSettings s;
  s.reporting_mta = "mta.client.test";
  s.bounce_domain = "client.test";
  return s;
}

// Starts real threads while `allow` lasts (-1: always), then fails as pthread_create does when the
// process is out of threads; counts the threads alive at once.
struct FlakyStarter : ThreadStarter {
  std::atomic<int> allow{-1};
  std::atomic<int> asked{0}, started{0}, alive{0}, max_alive{0};
  bool Start(std::function<void()> fn, std::thread* out, std::string* error) override {
    ++asked;
    if (allow.load() == 0) {
      *error = "Resource temporarily unavailable";
      return false;
    }
    if (allow.load() > 0) --allow;
    ++started;
    int now = ++alive;
    int prev = max_alive.load();
    while (now > prev && !max_alive.compare_exchange_weak(prev, now)) {
    }
    *out = std::thread([this, fn = std::move(fn)] {
      fn();
      --alive;
    });
    return true;
  }
};

// Answers per local part (ok*: delivered, else deferred) and measures the calls running at once.
struct CountingDeliverer {
  std::atomic<int> running{0}, max_running{0}, calls{0};
  std::mutex mu;
  std::map<std::string, int> per_domain;
  std::chrono::microseconds pause{0};
  DomainDeliverer Fn() {
    return [this](const std::string& domain, const Mailbox&, const std::vector<Mailbox>& rcpts,
                  const PreparedMessage&, const DsnRequest&, MessageTls) {
      int now = ++running;
      int prev = max_running.load();
      while (now > prev && !max_running.compare_exchange_weak(prev, now)) {
      }
      ++calls;
      {
        std::lock_guard<std::mutex> l(mu);
        ++per_domain[domain];
      }
      if (pause.count()) std::this_thread::sleep_for(pause);
      std::vector<RecipientOutcome> out;
      for (const Mailbox& m : rcpts) {
        RecipientOutcome o;
        o.recipient = m;
        if (m.local.rfind("ok", 0) == 0) {
          o.status = RcptStatus::kDelivered;
          o.code = "2.0.0";
          o.reply = "250 2.0.0 ok";
        } else {
          o.status = RcptStatus::kDeferred;
          o.code = "4.2.0";
          o.reply = "451 4.2.0 try later";
        }
        out.push_back(o);
      }
      --running;
      return out;
    };
  }
};

QueuedEnvelope ManyDomains(size_t n, const std::string& local_ok_every) {
  QueuedEnvelope e;
  e.sender = "a@client.test";
  for (size_t i = 0; i < n; ++i) {
    // Every other recipient is delivered when asked ("ok"), the rest deferred.
    bool ok = local_ok_every == "half" ? i % 2 == 0 : local_ok_every == "all";
    e.recipients.push_back(QueuedRecipient{std::string(ok ? "ok" : "defer") + "@d" + std::to_string(i) + ".test"});
  }
  return e;
}

std::map<std::string, size_t> States(const QueuedEnvelope& e) {
  std::map<std::string, size_t> n;
  for (const QueuedRecipient& r : e.recipients) ++n[RecipientStateName(r.state)];
  return n;
}

}  // namespace

TEST_CASE("queue run: no thread can be started: no crash, the calling thread delivers, a second run too") {
  MemQueue t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kBody, ManyDomains(40, "half"), &clock, nullptr);
  REQUIRE(id.ok());
  FlakyStarter starter;
  starter.allow = 0;
  WorkerBudget budget(10, &starter);
  QueueSettings s = RunSettings();
  s.workers = &budget;
  CountingDeliverer d;
  std::vector<std::string> lines;
  auto log = [&](const std::string& l) { lines.push_back(l); };
  ProcessReport r1 = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, d.Fn(), &clock, s, log);
  CHECK(starter.asked >= 1);
  CHECK(starter.started == 0);
  CHECK(r1.error.empty());
  CHECK(r1.delivered == 20);
  CHECK(r1.deferred == 20);
  CHECK(d.calls == 40);
  CHECK(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("cannot start a delivery thread (Resource temporarily unavailable)") != std::string::npos;
  }));
  auto env = q->ReadEnvelope(id.value());
  REQUIRE(env.ok());
  CHECK(States(env.value()) == std::map<std::string, size_t>{{"delivered", 20}, {"pending", 20}});
  CHECK(env->attempts == 1);

  // The next run, threads still failing: only the deferred domains again, no crash.
  clock.Set(env->next_retry);
  ProcessReport r2 = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, d.Fn(), &clock, s, log);
  CHECK_FALSE(r2.skipped);
  CHECK(d.calls == 60);
  CHECK(q->ReadEnvelope(id.value())->attempts == 2);
  for (const auto& [domain, n] : d.per_domain) CHECK_MESSAGE(n == (domain.find('d') == 0 && std::stoi(domain.substr(1)) % 2 == 0 ? 1 : 2), domain);
}

TEST_CASE("queue run: thread creation failing half-way: the threads already running finish the work") {
  MemQueue t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kBody, ManyDomains(200, "all"), &clock, nullptr);
  REQUIRE(id.ok());
  FlakyStarter starter;
  starter.allow = 3;
  WorkerBudget budget(10, &starter);
  QueueSettings s = RunSettings();
  s.workers = &budget;
  CountingDeliverer d;
  d.pause = std::chrono::microseconds(200);
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, d.Fn(), &clock, s, nullptr);
  CHECK(starter.started == 3);
  CHECK(r.removed);
  CHECK(r.delivered == 200);
  CHECK(d.calls == 200);
  CHECK(d.max_running <= 4);
}

TEST_CASE("queue run: 20000 distinct domains are delivered with at most queue_run_concurrency threads") {
  MemQueue t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  const size_t n = 20000;
  auto id = q->Submit(kBody, ManyDomains(n, "none"), &clock, nullptr);
  REQUIRE(id.ok());
  FlakyStarter starter;
  const size_t k = 10;
  WorkerBudget budget(k, &starter);
  QueueSettings s = RunSettings();
  s.workers = &budget;
  s.max_domains_per_attempt = n;
  CountingDeliverer d;
  d.pause = std::chrono::microseconds(50);
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, d.Fn(), &clock, s, nullptr);
  CHECK(r.error.empty());
  CHECK(d.calls == static_cast<int>(n));
  CHECK(r.deferred == n);
  CHECK(starter.started <= static_cast<int>(k));
  CHECK(starter.max_alive <= static_cast<int>(k));
  // The helpers and the calling thread.
  CHECK(d.max_running <= static_cast<int>(k + 1));
  CHECK(d.max_running >= 2);  // the helpers did take part
}

TEST_CASE("queue run: at most queue_max_domains_per_attempt domains per attempt; the others at the next run") {
  MemQueue t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  auto id = q->Submit(kBody, ManyDomains(25, "none"), &clock, nullptr);
  REQUIRE(id.ok());
  QueueSettings s = RunSettings();
  s.max_domains_per_attempt = 10;
  CountingDeliverer d;
  std::vector<std::string> lines;
  auto log = [&](const std::string& l) { lines.push_back(l); };
  ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, d.Fn(), &clock, s, log);
  CHECK(d.calls == 10);
  CHECK(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("15 of 25 domains left for the next run") != std::string::npos;
  }));
  // Due at once, and the next attempts take the domains not tried yet.
  CHECK(q->ReadEnvelope(id.value())->next_retry == clock.Now());
  clock.Advance(1);
  ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, d.Fn(), &clock, s, nullptr);
  CHECK(q->ReadEnvelope(id.value())->next_retry == clock.Now());
  clock.Advance(1);
  ProcessQueuedMessage(q.value(), id.value(), QueueLock(), false, d.Fn(), &clock, s, nullptr);
  CHECK(d.calls == 30);
  for (int i = 0; i < 25; ++i) CHECK_MESSAGE(d.per_domain["d" + std::to_string(i) + ".test"] >= 1, i);
  // Every domain had its turn: the backoff applies again.
  CHECK(q->ReadEnvelope(id.value())->next_retry > clock.Now());
}

TEST_CASE("queue run: killed after the first domain took the message, a rerun delivers only the second") {
  RealQueue t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  QueuedEnvelope e;
  e.sender = "a@client.test";
  e.recipients = {QueuedRecipient{"ok@one.test"}, QueuedRecipient{"ok@two.test"}};
  auto id = q->Submit(kBody, e, &clock, nullptr);
  REQUIRE(id.ok());
  QueueSettings s = RunSettings();  // no helpers: one.test, then two.test, in order
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    CountingDeliverer ok;
    DomainDeliverer inner = ok.Fn();
    DomainDeliverer deliver = [&](const std::string& domain, const Mailbox& from, const std::vector<Mailbox>& to,
                                  const PreparedMessage& m, const DsnRequest& dsn, MessageTls t) {
      // The first transaction ended with 250; the runner dies before the second one's reply.
      if (domain == "two.test") raise(SIGKILL);
      return inner(domain, from, to, m, dsn, t);
    };
    ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, deliver, &clock, s, nullptr);
    _exit(3);  // never reached when the kill came
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  auto env = q->ReadEnvelope(id.value());
  REQUIRE(env.ok());
  CHECK(env->recipients[0].state == RecipientState::kDelivered);
  CHECK(env->recipients[1].state == RecipientState::kPending);
  CountingDeliverer d;
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, d.Fn(), &clock, s, nullptr);
  CHECK(r.removed);
  CHECK(d.per_domain == std::map<std::string, int>{{"two.test", 1}});
}

TEST_CASE("config: queue_run_concurrency and queue_max_domains_per_attempt, with their ranges") {
  Config c;
  CHECK(c.queue_run_concurrency == 100);
  CHECK(c.queue_max_domains_per_attempt == 1000);
  CHECK(ApplyConfigSetting("queue_run_concurrency", "4", "test", &c).ok());
  CHECK(c.queue_run_concurrency == 4);
  CHECK(ApplyConfigSetting("queue_max_domains_per_attempt", "50", "test", &c).ok());
  CHECK(c.queue_max_domains_per_attempt == 50);
  for (const char* bad : {"0", "257", "x", ""}) CHECK_FALSE(ApplyConfigSetting("queue_run_concurrency", bad, "test", &c).ok());
  for (const char* bad : {"0", "1000001", "-1"})
    CHECK_FALSE(ApplyConfigSetting("queue_max_domains_per_attempt", bad, "test", &c).ok());
  CHECK(c.queue_run_concurrency == 4);
}

TEST_CASE("queue run: a delivery that cannot be recorded stops the attempt before the next domain") {
  MemQueue t;
  FakeClock clock;
  auto q = t.Open();
  REQUIRE(q.ok());
  QueuedEnvelope e;
  e.sender = "a@client.test";
  e.recipients = {QueuedRecipient{"ok@one.test"}, QueuedRecipient{"ok@two.test"}};
  auto id = q->Submit(kBody, e, &clock, nullptr);
  REQUIRE(id.ok());
  CountingDeliverer ok;
  DomainDeliverer inner = ok.Fn();
  std::atomic<bool> disk_failed{false};
  t.env.SetChangeHook([&](std::string_view op, const std::string& path) {
    return disk_failed ? Status::IoError(path + ": " + std::string(op) + ": Input/output error") : Status::Ok();
  });
  DomainDeliverer deliver = [&](const std::string& domain, const Mailbox& from, const std::vector<Mailbox>& to,
                                const PreparedMessage& m, const DsnRequest& dsn, MessageTls t) {
    // The disk refuses every write from here on (full or failing).
    if (domain == "one.test") disk_failed = true;
    return inner(domain, from, to, m, dsn, t);
  };
  std::vector<std::string> lines;
  ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, deliver, &clock, RunSettings(),
                                         [&](const std::string& l) { lines.push_back(l); });
  CHECK(ok.per_domain == std::map<std::string, int>{{"one.test", 1}});
  CHECK_FALSE(r.error.empty());
  CHECK(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("cannot record the deliveries so far") != std::string::npos &&
           l.find("the other domains wait for the next run") != std::string::npos;
  }));
  disk_failed = false;
  auto env = q->ReadEnvelope(id.value());
  REQUIRE(env.ok());
  CHECK(env->recipients[1].state == RecipientState::kPending);
}
