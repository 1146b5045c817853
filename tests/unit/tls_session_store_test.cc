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

TEST_CASE("tls_session_store: data only under its own key, offered until replaced") {
  FakeClock clock;
  TlsSessionStore store({}, clock.Fn());
  CHECK(store.Put("key-a", "ticket-a"));
  CHECK_FALSE(store.Get("key-b").has_value());
  CHECK_FALSE(store.Get("key-a;").has_value());
  CHECK_FALSE(store.Get("key-").has_value());
  CHECK(store.Get("key-a").value_or("") == "ticket-a");
  CHECK(store.Get("key-a").value_or("") == "ticket-a");
  CHECK(store.size() == 1);
}

TEST_CASE("tls_session_store: Put replaces the entry of its key; Forget removes it") {
  FakeClock clock;
  TlsSessionStore store({}, clock.Fn());
  CHECK(store.Put("k", "old"));
  CHECK(store.Put("k", "new"));
  CHECK(store.size() == 1);
  CHECK(store.Get("k").value_or("") == "new");
  CHECK(store.Put("k", "x"));
  store.Forget("k");
  CHECK(store.size() == 0);
  store.Forget("never there");
  CHECK_FALSE(store.Get("k").has_value());
}

TEST_CASE("tls_session_store: entries older than max_age_ms are never handed out") {
  FakeClock clock;
  TlsSessionStore store({}, clock.Fn());
  CHECK(TlsSessionStoreLimits::kMaxAgeMs == 3600 * 1000);
  CHECK(store.Put("k", "t"));
  clock.now += TlsSessionStoreLimits::kMaxAgeMs;
  CHECK(store.Get("k").value_or("") == "t");  // exactly the lifetime: still good
  clock.now += 1;  // offered again does not make it younger
  CHECK_FALSE(store.Get("k").has_value());
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
  CHECK_FALSE(store.Get("a").has_value());
  CHECK(store.Get("b").value_or("") == "t-b");
  CHECK(store.Put("b", "t-b2"));  // b is now the newest
  CHECK(store.Get("b").value_or("") == "t-b2");
  CHECK(store.Put("e", "t-e"));   // evicts c, the oldest
  CHECK_FALSE(store.Get("c").has_value());
  CHECK(store.Get("d").value_or("") == "t-d");
  CHECK(store.size() == 3);
  // Expired entries are dropped when there is a Put, not only when taken.
  clock.now += 2000;
  CHECK(store.Put("f", "t-f"));
  CHECK(store.size() == 1);
  CHECK(store.Get("f").value_or("") == "t-f");
}

TEST_CASE("tls_session_store: empty or oversized data is not stored and leaves the entry as it was") {
  FakeClock clock;
  TlsSessionStoreLimits limits;
  limits.max_bytes = 8;
  TlsSessionStore store(limits, clock.Fn());
  CHECK_FALSE(store.Put("j", "123456789"));
  CHECK_FALSE(store.Put("j", ""));
  CHECK_FALSE(store.Get("j").has_value());
  CHECK(store.Put("k", "12345678"));
  CHECK_FALSE(store.Put("k", "123456789"));
  CHECK_FALSE(store.Put("k", ""));  // a resumed session without a new ticket: the old one stays
  CHECK(store.Get("k").value_or("") == "12345678");
  CHECK(store.size() == 1);
  TlsSessionStoreLimits none;
  none.max_entries = 0;
  TlsSessionStore off(none, clock.Fn());
  CHECK_FALSE(off.Put("k", "t"));
  CHECK(off.size() == 0);
  CHECK(TlsSessionStoreLimits::kMaxEntries == 1000);
  CHECK(TlsSessionStoreLimits::kMaxBytes == 32768);
}

TEST_CASE("tls_session_store: concurrent writers and readers: every read is one whole entry of its key") {
  TlsSessionStoreLimits limits;
  limits.max_entries = 8;
  TlsSessionStore store(limits);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string key = "k" + std::to_string((i + t) % 12);
        if (i % 3 == 0) (void)store.Put(key, "data-" + key);
        else if (i % 7 == 0) store.Forget(key);
        else if (auto d = store.Get(key); d && *d != "data-" + key) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(wrong == 0);
  CHECK(store.size() <= 8);
}

TEST_CASE("tls_session_store: the connection cache holds one store on its own clock") {
  FakeClock clock;
  TlsSessionStoreLimits limits;
  limits.max_age_ms = 100;
  SessionCache cache({}, clock.Fn(), limits);
  CHECK(cache.tls_sessions().Put("k", "t"));
  clock.now += 101;
  CHECK_FALSE(cache.tls_sessions().Get("k").has_value());
}
