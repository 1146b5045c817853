// session_cache_test.cc - SessionCache with fake sessions and a fake clock:
// who gets a parked session, and when one is closed or dropped instead.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "mxsec/smtp/session_cache.h"

using namespace mxsec;

namespace {

// What happened to the fake sessions, by name.
struct Journal {
  std::vector<std::string> events;
};

class FakeSession : public ReusableSession {
 public:
  FakeSession(std::string name, Journal* j, bool reset_ok = true) : name(std::move(name)), j_(j), reset_ok_(reset_ok) {}
  bool Reset() override {
    j_->events.push_back("RSET " + name);
    return reset_ok_;
  }
  void Close() override { j_->events.push_back("QUIT " + name); }
  const std::string name;

 private:
  Journal* j_;
  bool reset_ok_;
};

std::unique_ptr<ReusableSession> Fake(const std::string& name, Journal* j, bool reset_ok = true) {
  return std::make_unique<FakeSession>(name, j, reset_ok);
}

std::string NameOf(const std::unique_ptr<ReusableSession>& s) {
  return s ? static_cast<FakeSession*>(s.get())->name : std::string("(none)");
}

struct Fixture {
  Journal j;
  int64_t now = 1000;
  SessionCacheLimits limits;
  std::unique_ptr<SessionCache> cache;
  size_t uses = 0;
  int64_t opened = 0;
  void Start() {
    cache = std::make_unique<SessionCache>(limits, [this] { return now; });
  }
  std::unique_ptr<ReusableSession> Take(const std::string& key) { return cache->Take(key, &uses, &opened); }
};

}  // namespace

TEST_CASE("session_cache: a parked session goes to the next caller with its key only, after RSET") {
  Fixture f;
  f.Start();
  CHECK(f.Take("k1") == nullptr);
  f.cache->Put("k1", Fake("s1", &f.j), 1, 900);
  CHECK(f.Take("k2") == nullptr);
  CHECK(f.cache->parked() == 1);
  std::unique_ptr<ReusableSession> s = f.Take("k1");
  CHECK(NameOf(s) == "s1");
  CHECK(f.uses == 1);
  CHECK(f.opened == 900);
  CHECK(f.cache->parked() == 0);
  CHECK(f.Take("k1") == nullptr);  // handed out once
  CHECK(f.j.events == std::vector<std::string>{"RSET s1"});
}

TEST_CASE("session_cache: a session that fails RSET is dropped without QUIT, the next one is tried") {
  Fixture f;
  f.Start();
  f.cache->Put("k", Fake("dead", &f.j, false), 1, f.now);
  f.cache->Put("k", Fake("alive", &f.j), 1, f.now);
  CHECK(NameOf(f.Take("k")) == "alive");
  CHECK(f.j.events == std::vector<std::string>{"RSET dead", "RSET alive"});
}

TEST_CASE("session_cache: idle and age limits close a session instead of handing it out") {
  Fixture f;
  f.limits.max_idle_ms = 2000;
  f.limits.max_age_ms = 10000;
  f.Start();
  f.cache->Put("k", Fake("idle", &f.j), 1, f.now);
  f.now += 2001;
  CHECK(f.Take("k") == nullptr);
  CHECK(f.j.events == std::vector<std::string>{"QUIT idle"});
  f.j.events.clear();
  f.cache->Put("k", Fake("old", &f.j), 1, f.now - 10001);  // opened too long ago: closed at once
  CHECK(f.cache->parked() == 0);
  CHECK(f.j.events == std::vector<std::string>{"QUIT old"});
}

TEST_CASE("session_cache: uses and the number of parked sessions are bounded") {
  Fixture f;
  f.limits.max_uses = 3;
  f.limits.max_sessions = 2;
  f.Start();
  f.cache->Put("k", Fake("worn", &f.j), 3, f.now);
  CHECK(f.cache->parked() == 0);
  CHECK(f.j.events == std::vector<std::string>{"QUIT worn"});
  f.j.events.clear();
  f.cache->Put("a", Fake("first", &f.j), 1, f.now);
  f.cache->Put("b", Fake("second", &f.j), 1, f.now);
  f.cache->Put("c", Fake("third", &f.j), 1, f.now);
  CHECK(f.cache->parked() == 2);
  CHECK(f.j.events == std::vector<std::string>{"QUIT first"});
}

TEST_CASE("session_cache: the sessions still parked are closed when the cache goes") {
  Fixture f;
  f.Start();
  f.cache->Put("a", Fake("s1", &f.j), 1, f.now);
  f.cache->Put("b", Fake("s2", &f.j), 1, f.now);
  f.cache.reset();
  CHECK(f.j.events == std::vector<std::string>{"QUIT s1", "QUIT s2"});
}
