// mta_sts_cache_pg.cc - the MTA-STS policy cache on PostgreSQL and the
// layered cache (shared store over the host's local copy) of a fleet
// (mta_sts_cache_pg.h).
//
// The PostgreSQL cache follows the SQLite one (mta_sts_cache.cc): the text
// is the truth, parsed on every read; the columns beside it are for people
// and for the refresh query. What differs is that many hosts write the same
// row: the upsert replaces a row only with a later fetch (the condition is
// evaluated by the server on the conflicting row, so two hosts storing at
// once cannot interleave a read and a write), and the row says which host
// fetched it.
//
// A removal (Remove) is a row too: the mark of the removal, so that a
// host holding an older copy of the removed policy can tell "removed" from
// "never stored" and does not store its copy again.
//
// The layered cache exists so that a database outage never weakens a
// policy: every policy a host used is in its own SQLite file, and that copy
// answers whenever the shared store does not. While the store answers, the
// store decides and the copy follows it; only an event of this host later
// than the store's (made while it was down) goes the other way.
#include "mxsec/policy/mta_sts_cache_pg.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mxsec/base/pg.h"
#include "mxsec/base/pg_schema.h"

namespace mxsec {
namespace {

// A row is a policy when removed_at is 0, else the mark of its removal
// (StsRemoval, schema version 2; id and text are then the removed
// policy's, for people).
#define MXSEC_STS_COLUMNS                                                                                     \
  "domain, id, text, fetched_at, expires_at, refresh_failures, refresh_last, refresh_next, refresh_error," \
  " fetched_by"
constexpr const char* kGet =
    "SELECT " MXSEC_STS_COLUMNS ", removed_at, removed_by FROM sts_policy WHERE domain = $1";
// A policy is replaced by a later fetch only; a fetch in the same second
// under another id replaces it too (the policy changed within that second:
// either is a policy the domain published, and the host that stored last
// saw the newer TXT record). A removal is replaced by a fetch after it
// only: a fetch in the same second as the removal may be what it removed.
constexpr const char* kPut =
    "INSERT INTO sts_policy (" MXSEC_STS_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    " ON CONFLICT (domain) DO UPDATE SET id = EXCLUDED.id, text = EXCLUDED.text,"
    " fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at,"
    " refresh_failures = EXCLUDED.refresh_failures, refresh_last = EXCLUDED.refresh_last,"
    " refresh_next = EXCLUDED.refresh_next, refresh_error = EXCLUDED.refresh_error,"
    " fetched_by = EXCLUDED.fetched_by, removed_at = 0, removed_by = ''"
    " WHERE (sts_policy.removed_at = 0 AND (sts_policy.fetched_at < EXCLUDED.fetched_at"
    " OR (sts_policy.fetched_at = EXCLUDED.fetched_at AND sts_policy.id <> EXCLUDED.id)))"
    " OR (sts_policy.removed_at <> 0 AND sts_policy.removed_at < EXCLUDED.fetched_at)";
// $1 domain, $2 now, $3 removed_by: the mark is dated now, or at the time
// of what it replaces when that is later (StsCache::Remove).
constexpr const char* kRemove =
    "INSERT INTO sts_policy (domain, id, text, fetched_at, expires_at, removed_at, removed_by)"
    " VALUES ($1, '', '', 0, 0, $2, $3) ON CONFLICT (domain) DO UPDATE SET"
    " removed_at = GREATEST(EXCLUDED.removed_at, sts_policy.fetched_at, sts_policy.removed_at),"
    " removed_by = EXCLUDED.removed_by";
// $1 domain, $2 removed_at, $3 removed_by: only over an earlier event
// (StsCache::RecordRemoval).
constexpr const char* kRecordRemoval =
    "INSERT INTO sts_policy (domain, id, text, fetched_at, expires_at, removed_at, removed_by)"
    " VALUES ($1, '', '', 0, 0, $2, $3) ON CONFLICT (domain) DO UPDATE SET"
    " removed_at = EXCLUDED.removed_at, removed_by = EXCLUDED.removed_by"
    " WHERE (sts_policy.removed_at = 0 AND sts_policy.fetched_at <= EXCLUDED.removed_at)"
    " OR (sts_policy.removed_at <> 0 AND sts_policy.removed_at < EXCLUDED.removed_at)";
// DueForRefresh (mta_sts_cache.cc) in SQL: $1 now, $2 refresh_age, $3 limit.
constexpr const char* kCandidates =
    "SELECT " MXSEC_STS_COLUMNS " FROM sts_policy WHERE removed_at = 0 AND expires_at > $1 AND refresh_next <= $1"
    " AND fetched_at + LEAST($2::bigint, (expires_at - fetched_at) * 3 / 4) <= $1 ORDER BY expires_at LIMIT $3";
constexpr const char* kRecordFailure =
    "UPDATE sts_policy SET refresh_failures = $2, refresh_last = $3, refresh_next = $4, refresh_error = $5"
    " WHERE domain = $1 AND fetched_at = $6 AND removed_at = 0";
#undef MXSEC_STS_COLUMNS

// At most this many rows from one RefreshCandidates query, whatever the
// caller asks: a bound on one result held in memory.
constexpr size_t kMaxCandidateRows = 100000;

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// When a domain's last event happened, in the order both stores keep
// (kPut, kRecordRemoval; the SQLite cache's RecordRemoval): by time, and in
// the same second a removal after a fetch. Neither: before everything.
struct EventTime {
  int64_t at = std::numeric_limits<int64_t>::min();
  int rank = 0;  // 0 nothing, 1 fetch, 2 removal
};

EventTime TimeOf(const StsCacheSlot& slot) {
  if (slot.removal) return {slot.removal->removed_at, 2};
  if (slot.policy) return {slot.policy->fetched_at, 1};
  return {};
}

bool Later(const EventTime& a, const EventTime& b) { return a.at > b.at || (a.at == b.at && a.rank > b.rank); }

// The local copy holds what the store holds: the same fetch (by the same
// host: the copy keeps fetched_by), the same removal, or both nothing. The
// refresh state is not compared: the store's is the fleet's and the one
// answered with; the copy's is used only while the store is down.
bool SameEvent(const StsCacheSlot& s, const StsCacheSlot& l) {
  if (s.policy && l.policy) {
    return s.policy->fetched_at == l.policy->fetched_at && s.policy->id == l.policy->id &&
           s.policy->fetched_by == l.policy->fetched_by;
  }
  if (s.removal && l.removal) return s.removal->removed_at == l.removal->removed_at;
  return !s.policy && !s.removal && !l.policy && !l.removal;
}

class PgStsCache : public StsCache {
 public:
  PgStsCache(Config cfg, std::string host) : cfg_(std::move(cfg)), host_(std::move(host)) {}

  // Under mu_: connects; on failure no new attempt before the interval.
  Status ConnectLocked() {
    Result<PgConnection> c = ConnectPgState(cfg_);
    if (!c.ok()) {
      conn_.reset();
      down_error_ = c.error();
      next_attempt_ = Now() + kPgStsReconnectInterval;
      return c.status();
    }
    conn_.emplace(std::move(c).value());
    down_error_.clear();
    return Status::Ok();
  }

  Result<std::optional<CachedStsPolicy>> Lookup(const std::string& domain) override {
    Result<StsCacheSlot> slot = Read(domain);
    if (!slot.ok()) return slot.status();
    return std::move(slot->policy);
  }

  Result<StsCacheSlot> Read(const std::string& domain) override {
    const std::string key = StsCacheKey(domain);
    std::lock_guard<std::mutex> lock(mu_);
    Status ready = ReadyLocked();
    if (!ready.ok()) return ready;
    Result<PgResult> r = conn_->Query(kGet, {key});
    if (!r.ok()) return FailedLocked("read policy for " + key, r.status());
    StsCacheSlot slot;
    if (r->rows() == 0) return slot;
    Result<int64_t> removed_at = r->Int64(0, 10);
    // A mark whose time cannot be read is damage: read as no policy, as a
    // policy whose text no longer parses is.
    if (!removed_at.ok()) return slot;
    if (*removed_at != 0) {
      slot.removal = StsRemoval{key, *removed_at, r->Text(0, 11)};
      return slot;
    }
    slot.policy = ReadRow(*r, 0);
    return slot;
  }

  Status Put(const CachedStsPolicy& entry) override {
    CachedStsPolicy e = entry;
    e.domain = StsCacheKey(entry.domain);
    if (e.domain.empty()) return Status::Error("sts cache: empty domain");
    Result<StsPolicy> parsed = ParseStsPolicy(e.text);
    if (!parsed.ok()) return Status::Error("sts cache: policy for " + e.domain + " does not parse: " + parsed.error());
    e.expires_at = e.fetched_at + parsed->max_age;
    std::lock_guard<std::mutex> lock(mu_);
    Status ready = ReadyLocked();
    if (!ready.ok()) return ready;
    // affected() == 0 means a later fetch is stored: nothing to do.
    Status s = conn_->Run(kPut, {e.domain, e.id, e.text, PgInt(e.fetched_at), PgInt(e.expires_at),
                                 PgInt(e.refresh_failures), PgInt(e.refresh_last), PgInt(e.refresh_next),
                                 e.refresh_error, e.fetched_by.empty() ? host_ : e.fetched_by});
    return s.ok() ? s : FailedLocked("store policy for " + e.domain, s);
  }

  Status Remove(const std::string& domain) override {
    const std::string key = StsCacheKey(domain);
    if (key.empty()) return Status::Error("sts cache: empty domain");
    std::lock_guard<std::mutex> lock(mu_);
    Status ready = ReadyLocked();
    if (!ready.ok()) return ready;
    Status s = conn_->Run(kRemove, {key, PgInt(Now()), host_});
    return s.ok() ? s : FailedLocked("remove policy for " + key, s);
  }

  Status RecordRemoval(const StsRemoval& removal) override {
    const std::string key = StsCacheKey(removal.domain);
    if (key.empty()) return Status::Error("sts cache: empty domain");
    std::lock_guard<std::mutex> lock(mu_);
    Status ready = ReadyLocked();
    if (!ready.ok()) return ready;
    // affected() == 0 means a later event is stored: nothing to do.
    Status s = conn_->Run(kRecordRemoval, {key, PgInt(removal.removed_at),
                                           removal.removed_by.empty() ? host_ : removal.removed_by});
    return s.ok() ? s : FailedLocked("record the removal of the policy for " + key, s);
  }

  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t refresh_age, size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    Status ready = ReadyLocked();
    if (!ready.ok()) return ready;
    const auto rows = static_cast<int64_t>(std::min(limit, kMaxCandidateRows));
    Result<PgResult> r = conn_->Query(kCandidates, {PgInt(now), PgInt(refresh_age), PgInt(rows)});
    if (!r.ok()) return FailedLocked("list policies to refresh", r.status());
    std::vector<CachedStsPolicy> out;
    for (int i = 0; i < r->rows(); ++i) {
      std::optional<CachedStsPolicy> e = ReadRow(*r, i);
      if (e) out.push_back(std::move(*e));  // a row that no longer parses is not refreshed
    }
    return out;
  }

  Status RecordRefreshFailure(const CachedStsPolicy& state) override {
    const std::string key = StsCacheKey(state.domain);
    std::lock_guard<std::mutex> lock(mu_);
    Status ready = ReadyLocked();
    if (!ready.ok()) return ready;
    Status s = conn_->Run(kRecordFailure, {key, PgInt(state.refresh_failures), PgInt(state.refresh_last),
                                           PgInt(state.refresh_next), state.refresh_error, PgInt(state.fetched_at)});
    return s.ok() ? s : FailedLocked("record refresh failure for " + key, s);
  }

 private:
  // A usable connection, reopened when it broke and the interval allows.
  Status ReadyLocked() {
    if (conn_ && conn_->usable()) return Status::Ok();
    if (Now() < next_attempt_) {
      return Status::Unavailable("shared state store: " + down_error_ + " (next connection attempt within " +
                                 std::to_string(kPgStsReconnectInterval) + "s)");
    }
    Status s = ConnectLocked();
    return s.ok() ? s : s.Prefixed("shared state store: ");
  }

  // A statement's failure, named; a broken connection is dropped and the
  // next call may reconnect at once (a server restart costs one failed
  // call, a server still down then waits for the interval).
  Status FailedLocked(const std::string& what, const Status& failed) {
    if (conn_ && !conn_->usable()) {
      down_error_ = failed.message();
      conn_.reset();
      next_attempt_ = 0;
    }
    return failed.Prefixed("shared state store: " + what + ": ");
  }

  // Row `i` of a query selecting the columns of kGet; nullopt when it is
  // damaged or its text no longer parses.
  static std::optional<CachedStsPolicy> ReadRow(const PgResult& r, int i) {
    CachedStsPolicy e;
    e.domain = r.Text(i, 0);
    e.id = r.Text(i, 1);
    e.text = r.Text(i, 2);
    Result<int64_t> fetched_at = r.Int64(i, 3);
    Result<int64_t> failures = r.Int64(i, 5), last = r.Int64(i, 6), next = r.Int64(i, 7);
    if (!fetched_at.ok() || !failures.ok() || !last.ok() || !next.ok()) return std::nullopt;
    e.fetched_at = *fetched_at;
    e.refresh_failures = static_cast<int>(std::clamp<int64_t>(*failures, 0, INT32_MAX));
    e.refresh_last = *last;
    e.refresh_next = *next;
    e.refresh_error = r.Text(i, 8);
    e.fetched_by = r.Text(i, 9);
    Result<StsPolicy> parsed = ParseStsPolicy(e.text);
    if (!parsed.ok()) return std::nullopt;
    e.policy = std::move(parsed).value();
    e.expires_at = e.fetched_at + e.policy.max_age;
    return e;
  }

  const Config cfg_;
  const std::string host_;
  std::mutex mu_;
  std::optional<PgConnection> conn_;
  std::string down_error_;    // why conn_ is empty
  int64_t next_attempt_ = 0;  // no connection attempt before this time
};

class Layered : public LayeredStsCache {
 public:
  Layered(std::unique_ptr<StsCache> shared, std::unique_ptr<StsCache> local, StateStoreListener listener,
          const std::string& initially_down)
      : shared_(std::move(shared)), local_(std::move(local)), listener_(std::move(listener)),
        up_(initially_down.empty()), down_error_(initially_down) {}

  bool StateStoreUp() const override { return up_.load(); }
  std::string StateStoreError() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return up_.load() ? std::string() : down_error_;
  }

  Result<std::optional<CachedStsPolicy>> Lookup(const std::string& domain) override {
    Result<StsCacheSlot> shared = shared_->Read(domain);
    if (!shared.ok()) {
      NoteDown(shared.status());
      // Never "no policy" because the store is down: the local copy decides,
      // and a local copy that cannot be read is the caller's error to act on.
      Result<std::optional<CachedStsPolicy>> local = local_->Lookup(domain);
      if (!local.ok()) return local.status().Prefixed("(shared state store down too) ");
      return local;
    }
    NoteUp();
    // Read although the store answered: it finds what this host fetched or
    // removed while the store was down (in any of its processes), and it
    // spares a write when the copy is current (header: why not skipped).
    Result<StsCacheSlot> local = local_->Read(domain);
    if (!local.ok()) return std::move(shared->policy);
    const StsCacheSlot& s = shared.value();
    const StsCacheSlot& l = local.value();
    if (Later(TimeOf(l), TimeOf(s))) {
      // Fetched or removed here after the store's last word on the domain,
      // so while the store was down: offered to the fleet, whose
      // conditional write keeps the later event.
      Status offered = l.policy ? shared_->Put(*l.policy) : shared_->RecordRemoval(*l.removal);
      if (!offered.ok()) NoteDown(offered);
      return l.policy;
    }
    if (!SameEvent(s, l)) {
      // The store's word, copied: the copy that answers when the store is
      // down follows its fetches and its removals. Failing to write it
      // changes nothing now (the shared answer is used) and the next
      // lookup tries again; a local file that cannot be written also makes
      // this host's own fetches fail to store, which the decision notes.
      if (s.policy) (void)local_->Put(*s.policy);
      if (s.removal) (void)local_->RecordRemoval(*s.removal);
    }
    return s.policy;  // same fetch: the shared row carries the fleet's refresh state
  }

  Status Put(const CachedStsPolicy& entry) override {
    Status s = local_->Put(entry);
    if (!s.ok()) return s;
    Status shared = shared_->Put(entry);
    if (!shared.ok()) NoteDown(shared);
    else NoteUp();
    return Status::Ok();
  }

  Status Remove(const std::string& domain) override {
    Status s = local_->Remove(domain);
    if (!s.ok()) return s;
    Status shared = shared_->Remove(domain);
    if (!shared.ok()) NoteDown(shared);
    else NoteUp();
    return Status::Ok();
  }

  Status RecordRemoval(const StsRemoval& removal) override {
    Status s = local_->RecordRemoval(removal);
    if (!s.ok()) return s;
    Status shared = shared_->RecordRemoval(removal);
    if (!shared.ok()) NoteDown(shared);
    else NoteUp();
    return Status::Ok();
  }

  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t refresh_age, size_t limit) override {
    Result<std::vector<CachedStsPolicy>> shared = shared_->RefreshCandidates(now, refresh_age, limit);
    if (shared.ok()) {
      NoteUp();
      return shared;
    }
    NoteDown(shared.status());
    return local_->RefreshCandidates(now, refresh_age, limit);
  }

  Status RecordRefreshFailure(const CachedStsPolicy& state) override {
    Status s = local_->RecordRefreshFailure(state);
    if (!s.ok()) return s;
    Status shared = shared_->RecordRefreshFailure(state);
    if (!shared.ok()) NoteDown(shared);
    else NoteUp();
    return Status::Ok();
  }

 private:
  void NoteDown(const Status& why) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      down_error_ = why.message();
    }
    if (up_.exchange(false) && listener_) listener_(false, why.message());
  }
  void NoteUp() {
    if (!up_.exchange(true) && listener_) listener_(true, "");
  }

  std::unique_ptr<StsCache> shared_;
  std::unique_ptr<StsCache> local_;
  StateStoreListener listener_;
  std::atomic<bool> up_;
  mutable std::mutex mu_;  // down_error_
  std::string down_error_;
};

}  // namespace

Result<std::unique_ptr<StsCache>> OpenPgStsCache(const Config& cfg, const std::string& host, bool allow_down,
                                                 std::string* connect_error) {
  auto cache = std::make_unique<PgStsCache>(cfg, host);
  Status s = cache->ConnectLocked();  // no other thread has it yet
  if (!s.ok()) {
    if (!allow_down || s.code() != Status::Code::kUnavailable) return s;
    if (connect_error) *connect_error = s.message();
  }
  return std::unique_ptr<StsCache>(std::move(cache));
}

std::unique_ptr<LayeredStsCache> NewLayeredStsCache(std::unique_ptr<StsCache> shared, std::unique_ptr<StsCache> local,
                                                    StateStoreListener listener, const std::string& initially_down) {
  return std::make_unique<Layered>(std::move(shared), std::move(local), std::move(listener), initially_down);
}

}  // namespace mxsec
