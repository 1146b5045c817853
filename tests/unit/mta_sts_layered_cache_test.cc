// The layered MTA-STS cache of a fleet (policy/mta_sts_cache_pg.h): the
// shared store over the local copy, with the shared store a fake that can
// be taken down. The PostgreSQL store itself needs a server: see
// tests/integration/test_fleet.py.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mxsec/policy/mta_sts.h"
#include "mxsec/policy/mta_sts_cache_pg.h"

namespace mxsec {
namespace {

// A cache in memory that fails every call with kUnavailable while `down`.
class DownableCache : public StsCache {
 public:
  bool down = false;
  int puts = 0;  // Put and RecordRemoval calls that reached the cache

  Result<std::optional<CachedStsPolicy>> Lookup(const std::string& domain) override {
    if (down) return Status::Unavailable("server down");
    return inner_->Lookup(domain);
  }
  Result<StsCacheSlot> Read(const std::string& domain) override {
    if (down) return Status::Unavailable("server down");
    return inner_->Read(domain);
  }
  Status Put(const CachedStsPolicy& entry) override {
    if (down) return Status::Unavailable("server down");
    ++puts;
    return inner_->Put(entry);
  }
  Status Remove(const std::string& domain) override {
    if (down) return Status::Unavailable("server down");
    return inner_->Remove(domain);
  }
  Status RecordRemoval(const StsRemoval& removal) override {
    if (down) return Status::Unavailable("server down");
    ++puts;
    return inner_->RecordRemoval(removal);
  }
  // Everything gone, marks of removals included: a new database, or rows
  // deleted by hand.
  void Wipe() { inner_ = NewMemoryStsCache(); }
  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t age, size_t limit) override {
    if (down) return Status::Unavailable("server down");
    return inner_->RefreshCandidates(now, age, limit);
  }
  Status RecordRefreshFailure(const CachedStsPolicy& state) override {
    if (down) return Status::Unavailable("server down");
    return inner_->RecordRefreshFailure(state);
  }

 private:
  std::unique_ptr<StsCache> inner_ = NewMemoryStsCache();
};

// A local copy whose reads fail (a locked or damaged file).
class UnreadableCache : public DownableCache {
 public:
  Result<std::optional<CachedStsPolicy>> Lookup(const std::string&) override {
    return Status::Error("database is locked");
  }
  Result<StsCacheSlot> Read(const std::string&) override { return Status::Error("database is locked"); }
};

CachedStsPolicy Policy(const std::string& id, int64_t fetched_at, const std::string& mode = "enforce") {
  const std::string mx = mode == "none" ? "" : "mx: mx.example.com\n";
  const std::string text = "version: STSv1\nmode: " + mode + "\n" + mx + "max_age: 86400\n";
  return NewCachedStsPolicy("example.com", id, text, ParseStsPolicy(text).value(), fetched_at);
}

StsRemoval Removal(int64_t removed_at, const std::string& by = "hostc") {
  return StsRemoval{"example.com", removed_at, by};
}

struct Fixture {
  DownableCache* shared = nullptr;
  DownableCache* local = nullptr;
  std::vector<std::pair<bool, std::string>> events;
  std::unique_ptr<LayeredStsCache> cache;

  explicit Fixture(const std::string& initially_down = "", std::unique_ptr<DownableCache> local_cache = nullptr) {
    auto s = std::make_unique<DownableCache>();
    auto l = local_cache ? std::move(local_cache) : std::make_unique<DownableCache>();
    shared = s.get();
    local = l.get();
    cache = NewLayeredStsCache(
        std::move(s), std::move(l), [this](bool up, const std::string& why) { events.emplace_back(up, why); },
        initially_down);
  }
};

TEST_CASE("layered sts cache: a policy another host stored is found and copied to the local copy") {
  Fixture f;
  REQUIRE(f.shared->Put(Policy("a1", 1000)).ok());
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  REQUIRE(got.value().has_value());
  CHECK(got.value()->id == "a1");
  auto copy = f.local->Get("example.com");
  REQUIRE(copy.has_value());
  CHECK(copy->fetched_at == 1000);
  CHECK(f.cache->StateStoreUp());
  CHECK(f.events.empty());
}

TEST_CASE("layered sts cache: shared store down: the local copy answers, never 'no policy', reported once") {
  Fixture f;
  REQUIRE(f.cache->Put(Policy("a1", 1000)).ok());
  f.shared->down = true;
  for (int i = 0; i < 3; ++i) {
    auto got = f.cache->Lookup("EXAMPLE.com.");
    REQUIRE(got.ok());
    REQUIRE(got.value().has_value());
    CHECK(got.value()->policy.mode == StsMode::kEnforce);
  }
  CHECK_FALSE(f.cache->StateStoreUp());
  CHECK(f.cache->StateStoreError().find("server down") != std::string::npos);
  REQUIRE(f.events.size() == 1);
  CHECK_FALSE(f.events[0].first);

  f.shared->down = false;
  REQUIRE(f.cache->Lookup("example.com").ok());
  CHECK(f.cache->StateStoreUp());
  REQUIRE(f.events.size() == 2);
  CHECK(f.events[1].first);
}

TEST_CASE("layered sts cache: shared store down and local copy unreadable is an error, not 'no policy'") {
  Fixture f("", std::make_unique<UnreadableCache>());
  f.shared->down = true;
  auto got = f.cache->Lookup("example.com");
  CHECK_FALSE(got.ok());
}

TEST_CASE("layered sts cache: local copy unreadable, shared store answers") {
  Fixture f("", std::make_unique<UnreadableCache>());
  REQUIRE(f.shared->Put(Policy("a1", 1000)).ok());
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  REQUIRE(got.value().has_value());
  CHECK(got.value()->id == "a1");
}

TEST_CASE("layered sts cache: the later fetch wins in both directions") {
  Fixture f;
  // Fetched here while the store was down: later than the store's row.
  REQUIRE(f.shared->Put(Policy("old", 1000, "testing")).ok());
  REQUIRE(f.local->Put(Policy("new", 2000)).ok());
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  REQUIRE(got.value().has_value());
  CHECK(got.value()->id == "new");
  CHECK(got.value()->policy.mode == StsMode::kEnforce);
  // ... and offered to the store.
  auto stored = f.shared->Get("example.com");
  REQUIRE(stored.has_value());
  CHECK(stored->id == "new");

  // Another host stored a later fetch: it replaces the local copy.
  REQUIRE(f.shared->Put(Policy("newer", 3000)).ok());
  got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  CHECK(got.value()->id == "newer");
  CHECK(f.local->Get("example.com")->id == "newer");
}

TEST_CASE("layered sts cache: a store that lost its rows (no mark of a removal) gets this host's copy back") {
  Fixture f;
  REQUIRE(f.cache->Put(Policy("a1", 1000)).ok());
  f.shared->Wipe();
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  REQUIRE(got.value().has_value());
  CHECK(got.value()->id == "a1");
  REQUIRE(f.shared->Get("example.com").has_value());
  CHECK(f.shared->Get("example.com")->id == "a1");
}

TEST_CASE("layered sts cache: a policy another host removed is not put back by this host's older copy") {
  Fixture f;
  REQUIRE(f.cache->Put(Policy("a1", 1000)).ok());  // fetched here: in the store and in the local copy
  // Another host removes it (its StsCache::Remove on the shared store).
  REQUIRE(f.shared->Remove("example.com").ok());
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  CHECK_FALSE(got.value().has_value());
  CHECK_FALSE(f.shared->Get("example.com").has_value());
  CHECK_FALSE(f.local->Get("example.com").has_value());
  // The local copy followed the removal: with the store down it is not in force either.
  f.shared->down = true;
  got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  CHECK_FALSE(got.value().has_value());
  f.shared->down = false;
  got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  CHECK_FALSE(got.value().has_value());
  CHECK_FALSE(f.shared->Get("example.com").has_value());
}

TEST_CASE("layered sts cache: the store's removal, copied, is what the local copy enforces while the store is down") {
  Fixture f;
  REQUIRE(f.shared->Put(Policy("a1", 1000)).ok());
  REQUIRE(f.cache->Lookup("example.com").ok());  // copied here
  REQUIRE(f.local->Get("example.com").has_value());
  REQUIRE(f.shared->RecordRemoval(Removal(1500)).ok());
  REQUIRE(f.cache->Lookup("example.com").ok());
  auto mark = f.local->Read("example.com");
  REQUIRE(mark.ok());
  CHECK_FALSE(mark->policy.has_value());
  REQUIRE(mark->removal.has_value());
  CHECK(mark->removal->removed_at == 1500);
  CHECK(mark->removal->removed_by == "hostc");
  // Copied once: a lookup with the copy current writes nothing.
  const int writes = f.local->puts;
  REQUIRE(f.cache->Lookup("example.com").ok());
  CHECK(f.local->puts == writes);
}

TEST_CASE("layered sts cache: a removal and a fetch compare by time, the removal winning within its second") {
  SUBCASE("a fetch here after the store's removal (the store was down) is the later event: offered") {
    Fixture f;
    REQUIRE(f.shared->Put(Policy("a1", 1000)).ok());
    REQUIRE(f.shared->RecordRemoval(Removal(1500)).ok());
    REQUIRE(f.local->Put(Policy("a2", 1600)).ok());
    auto got = f.cache->Lookup("example.com");
    REQUIRE(got.ok());
    REQUIRE(got.value().has_value());
    CHECK(got.value()->id == "a2");
    REQUIRE(f.shared->Get("example.com").has_value());
    CHECK(f.shared->Get("example.com")->id == "a2");
  }
  SUBCASE("a fetch here in the removal's second is not later: the removal stands, here too") {
    Fixture f;
    REQUIRE(f.shared->RecordRemoval(Removal(1500)).ok());
    REQUIRE(f.local->Put(Policy("a1", 1500)).ok());
    auto got = f.cache->Lookup("example.com");
    REQUIRE(got.ok());
    CHECK_FALSE(got.value().has_value());
    CHECK_FALSE(f.shared->Get("example.com").has_value());
    CHECK_FALSE(f.local->Get("example.com").has_value());
  }
  SUBCASE("another host's fetch after the removal replaces it, and the copy") {
    Fixture f;
    REQUIRE(f.cache->Put(Policy("a1", 1000)).ok());
    REQUIRE(f.cache->Remove("example.com").ok());
    CHECK_FALSE(f.shared->Get("example.com").has_value());
    CHECK_FALSE(f.local->Get("example.com").has_value());
    auto mark = f.shared->Read("example.com");
    REQUIRE(mark.ok());
    REQUIRE(mark->removal.has_value());
    REQUIRE(f.shared->Put(Policy("a2", mark->removal->removed_at + 1)).ok());
    auto got = f.cache->Lookup("example.com");
    REQUIRE(got.ok());
    REQUIRE(got.value().has_value());
    CHECK(got.value()->id == "a2");
    CHECK(f.local->Get("example.com")->id == "a2");
  }
}

TEST_CASE("layered sts cache: Remove while the store is down is offered when it is back; its older policy stays "
          "removed") {
  Fixture f;
  REQUIRE(f.cache->Put(Policy("a1", 1000)).ok());
  f.shared->down = true;
  REQUIRE(f.cache->Remove("example.com").ok());
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  CHECK_FALSE(got.value().has_value());  // the local copy followed the removal
  f.shared->down = false;
  got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  CHECK_FALSE(got.value().has_value());
  CHECK_FALSE(f.shared->Get("example.com").has_value());
  auto mark = f.shared->Read("example.com");
  REQUIRE(mark.ok());
  REQUIRE(mark->removal.has_value());
  CHECK_FALSE(f.local->Get("example.com").has_value());
}

TEST_CASE("layered sts cache: RecordRemoval goes to both, over earlier events only") {
  Fixture f;
  REQUIRE(f.cache->Put(Policy("a1", 1000)).ok());
  REQUIRE(f.cache->RecordRemoval(Removal(999)).ok());
  CHECK(f.shared->Get("example.com").has_value());
  CHECK(f.local->Get("example.com").has_value());
  REQUIRE(f.cache->RecordRemoval(Removal(1000)).ok());
  CHECK(f.shared->Read("example.com")->removal.has_value());
  CHECK(f.local->Read("example.com")->removal.has_value());
  f.shared->down = true;
  CHECK(f.cache->RecordRemoval(Removal(1001)).ok());  // the local copy took it
  CHECK_FALSE(f.cache->StateStoreUp());
  CHECK(f.local->Read("example.com")->removal->removed_at == 1001);
}

TEST_CASE("layered sts cache: a policy replaced in the store by a later mode none policy is not put back") {
  Fixture f;
  REQUIRE(f.cache->Put(Policy("enf1", 1000)).ok());
  REQUIRE(f.shared->Put(Policy("none1", 2000, "none")).ok());  // another host fetched the withdrawal
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  REQUIRE(got.value().has_value());
  CHECK(got.value()->policy.mode == StsMode::kNone);
  CHECK(f.shared->Get("example.com")->id == "none1");
  CHECK(f.local->Get("example.com")->id == "none1");
}

TEST_CASE("layered sts cache: the local copy keeps which host fetched the policy") {
  Fixture f;
  CachedStsPolicy p = Policy("a1", 1000);
  p.fetched_by = "hosta";
  REQUIRE(f.shared->Put(p).ok());
  REQUIRE(f.cache->Lookup("example.com").ok());
  CHECK(f.local->Get("example.com")->fetched_by == "hosta");
  f.shared->down = true;
  auto got = f.cache->Lookup("example.com");
  REQUIRE(got.ok());
  REQUIRE(got.value().has_value());
  CHECK(got.value()->fetched_by == "hosta");
}

TEST_CASE("layered sts cache: Put keeps the local copy while the store is down, fails only when the local copy "
          "does") {
  Fixture f;
  f.shared->down = true;
  CHECK(f.cache->Put(Policy("a1", 1000)).ok());
  CHECK(f.local->Get("example.com").has_value());
  CHECK_FALSE(f.cache->StateStoreUp());
  CHECK(f.events.size() == 1);

  f.local->down = true;
  CHECK_FALSE(f.cache->Put(Policy("a2", 2000)).ok());
}

TEST_CASE("layered sts cache: refresh candidates from the store, from the local copy while it is down") {
  Fixture f;
  REQUIRE(f.shared->Put(Policy("shared", 1000)).ok());
  REQUIRE(f.local->Put([] {
                     CachedStsPolicy p = Policy("local", 1000);
                     p.domain = "other.example";
                     return p;
                   }())
              .ok());
  const int64_t now = 1000 + 86000;
  auto from_shared = f.cache->RefreshCandidates(now, 3600, 10);
  REQUIRE(from_shared.ok());
  REQUIRE(from_shared->size() == 1);
  CHECK(from_shared->at(0).id == "shared");
  f.shared->down = true;
  auto from_local = f.cache->RefreshCandidates(now, 3600, 10);
  REQUIRE(from_local.ok());
  REQUIRE(from_local->size() == 1);
  CHECK(from_local->at(0).id == "local");
}

TEST_CASE("layered sts cache: a refresh failure is recorded in both, only on the entry it was read as") {
  Fixture f;
  CachedStsPolicy p = Policy("a1", 1000);
  REQUIRE(f.cache->Put(p).ok());
  p.refresh_failures = 2;
  p.refresh_error = "HTTP status 500";
  REQUIRE(f.cache->RecordRefreshFailure(p).ok());
  CHECK(f.shared->Get("example.com")->refresh_failures == 2);
  CHECK(f.local->Get("example.com")->refresh_failures == 2);
  CachedStsPolicy stale = p;
  stale.fetched_at = 999;
  stale.refresh_failures = 7;
  REQUIRE(f.cache->RecordRefreshFailure(stale).ok());
  CHECK(f.shared->Get("example.com")->refresh_failures == 2);
}

TEST_CASE("layered sts cache: started with the store down: not reported again, reported when it comes back") {
  Fixture f("connection refused");
  CHECK_FALSE(f.cache->StateStoreUp());
  CHECK(f.cache->StateStoreError() == "connection refused");
  f.shared->down = true;
  (void)f.cache->Lookup("example.com");
  CHECK(f.events.empty());
  f.shared->down = false;
  (void)f.cache->Lookup("example.com");
  REQUIRE(f.events.size() == 1);
  CHECK(f.events[0].first);
}

}  // namespace
}  // namespace mxsec
