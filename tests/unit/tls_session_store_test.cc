// tls_session_store_test.cc - TlsSessionStore with a fake clock: which
// caller gets stored session data, and when it is dropped instead.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mxsec/smtp/session_cache.h"
#include "mxsec/smtp/tls_session_store.h"

using namespace mxsec;

namespace {

struct FakeClock {
  int64_t now = 1000000;
  std::function<int64_t()> Fn() {
    return [this] { return now; };
  }
};

}  // namespace

TEST_CASE("tls_session_store: data goes to one taker, only under its own key") {
  FakeClock clock;
  TlsSessionStore store({}, clock.Fn());
  CHECK(store.Put("key-a", "ticket-a"));
  CHECK_FALSE(store.Take("key-b").has_value());
  CHECK_FALSE(store.Take("key-a;").has_value());
  CHECK(store.Take("key-a").value_or("") == "ticket-a");
  // Used once (RFC 8446 §C.4): gone for the next caller until put back.
  CHECK_FALSE(store.Take("key-a").has_value());
  CHECK(store.size() == 0);
}

TEST_CASE("tls_session_store: Put replaces the entry of its key; Forget removes it") {
  FakeClock clock;
  TlsSessionStore store({}, clock.Fn());
  CHECK(store.Put("k", "old"));
  CHECK(store.Put("k", "new"));
  CHECK(store.size() == 1);
  CHECK(store.Take("k").value_or("") == "new");
  CHECK(store.Put("k", "x"));
  store.Forget("k");
  store.Forget("never there");
  CHECK_FALSE(store.Take("k").has_value());
}

TEST_CASE("tls_session_store: entries older than max_age_ms are never handed out") {
  FakeClock clock;
  TlsSessionStore store({}, clock.Fn());
  CHECK(TlsSessionStoreLimits::kMaxAgeMs == 3600 * 1000);
  CHECK(store.Put("k", "t"));
  clock.now += TlsSessionStoreLimits::kMaxAgeMs;
  CHECK(store.Take("k").value_or("") == "t");  // exactly the lifetime: still good
  CHECK(store.Put("k", "t"));
  clock.now += TlsSessionStoreLimits::kMaxAgeMs + 1;
  CHECK_FALSE(store.Take("k").has_value());
  CHECK(store.size() == 0);
}

TEST_CASE("tls_session_store: at most max_entries, the oldest goes first; expired ones go before") {
  FakeClock clock;
  TlsSessionStoreLimits limits;
  limits.max_entries = 3;
  limits.max_age_ms = 1000;
  TlsSessionStore store(limits, clock.Fn());
  for (const char* k : {"a", "b", "c"}) {
    CHECK(store.Put(k, std::string("t-") + k));
    clock.now += 10;
  }
  CHECK(store.Put("d", "t-d"));
  CHECK(store.size() == 3);
  CHECK_FALSE(store.Take("a").has_value());
  CHECK(store.Take("b").value_or("") == "t-b");
  CHECK(store.Put("b", "t-b2"));  // b is now the newest
  CHECK(store.Put("e", "t-e"));   // evicts c, the oldest
  CHECK_FALSE(store.Take("c").has_value());
  CHECK(store.Take("d").value_or("") == "t-d");
  // Expired entries are dropped when there is a Put, not only when taken.
  clock.now += 2000;
  CHECK(store.Put("f", "t-f"));
  CHECK(store.size() == 1);
  CHECK(store.Take("f").value_or("") == "t-f");
}

TEST_CASE("tls_session_store: empty or oversized data is not stored, and clears the key") {
  FakeClock clock;
  TlsSessionStoreLimits limits;
  limits.max_bytes = 8;
  TlsSessionStore store(limits, clock.Fn());
  CHECK(store.Put("k", "12345678"));
  CHECK_FALSE(store.Put("k", "123456789"));
  CHECK_FALSE(store.Take("k").has_value());  // the older data is not kept behind a failed Put
  CHECK_FALSE(store.Put("k", ""));
  CHECK(store.size() == 0);
  TlsSessionStoreLimits none;
  none.max_entries = 0;
  TlsSessionStore off(none, clock.Fn());
  CHECK_FALSE(off.Put("k", "t"));
  CHECK(off.size() == 0);
  CHECK(TlsSessionStoreLimits::kMaxEntries == 1000);
  CHECK(TlsSessionStoreLimits::kMaxBytes == 32768);
}

TEST_CASE("tls_session_store: concurrent takers of one entry: exactly one gets it") {
  TlsSessionStore store;
  for (int round = 0; round < 50; ++round) {
    REQUIRE(store.Put("k", "ticket"));
    std::atomic<int> got{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
      threads.emplace_back([&] {
        if (store.Take("k")) ++got;
      });
    for (auto& t : threads) t.join();
    CHECK(got == 1);
  }
}

TEST_CASE("tls_session_store: the connection cache holds one store on its own clock") {
  FakeClock clock;
  TlsSessionStoreLimits limits;
  limits.max_age_ms = 100;
  SessionCache cache({}, clock.Fn(), limits);
  CHECK(cache.tls_sessions().Put("k", "t"));
  clock.now += 101;
  CHECK_FALSE(cache.tls_sessions().Take("k").has_value());
}
