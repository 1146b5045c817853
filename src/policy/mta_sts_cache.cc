// mta_sts_cache.cc - persistent and in-memory MTA-STS policy caches.
//
// The cache is what makes MTA-STS secure against an attacker who blocks the
// policy fetch (RFC 8461 §3.3, §10): once seen, a policy keeps applying
// until it expires. Many short-lived mxsec processes deliver in parallel,
// so the persistent cache is an SQLite file in WAL mode with a busy
// timeout; each Put is one statement and therefore atomic.
//
// The stored text is the policy as fetched, and Get parses it again rather
// than trusting stored columns: a row that was damaged, written by another
// version, or edited by hand either parses under today's rules or reads as
// absent. The expiry likewise is fetched_at + the text's max_age, never a
// stored or caller's figure that could disagree with the policy applied.
// Put refuses a text that does not parse, so a caller cannot store what it
// could never read back. Domains are keyed in normal form (lowercase,
// no trailing dot) whatever the caller passes.
//
// Each entry also carries the state of its proactive refresh
// (mta_sts_refresh.h): failures in a row, the last attempt, the earliest
// next one. A successful fetch replaces the entry, which resets that state;
// a failed refresh updates it only while the entry is the one it was read
// as. Files written by a version without those columns get them added on
// open.
//
// Remove leaves the mark of the removal in the removed policy's place (a
// row with removed_at set, reading as no policy): a fleet's layered cache
// (mta_sts_cache_pg.h) keeps its local copy here and must tell a policy
// the fleet removed from one it never had. The mark takes no more room
// than the policy it replaces, and the next Put of the domain replaces it.
//
// Both caches serialize their operations with a mutex and may be shared
// between threads.
#include "mxsec/policy/mta_sts.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mxsec/base/sqlite.h"

namespace mxsec {

std::string StsCacheKey(std::string domain) {
  if (!domain.empty() && domain.back() == '.') domain.pop_back();
  for (char& c : domain) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return domain;
}

namespace {

// The stored copy always carries the parsed form of its own text, never a
// caller's possibly inconsistent one.
Result<CachedStsPolicy> Normalize(const CachedStsPolicy& entry) {
  CachedStsPolicy copy = entry;
  copy.domain = StsCacheKey(entry.domain);
  if (copy.domain.empty()) return Status::Error("sts cache: empty domain");
  Result<StsPolicy> parsed = ParseStsPolicy(copy.text);
  if (!parsed.ok()) {
    return Status::Error("sts cache: policy for " + copy.domain + " does not parse: " + parsed.error());
  }
  copy.policy = std::move(parsed).value();
  copy.expires_at = copy.fetched_at + copy.policy.max_age;
  return copy;
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// The due test of RefreshCandidates; the SQLite query says the same in SQL.
bool DueForRefresh(const CachedStsPolicy& e, int64_t now, int64_t refresh_age) {
  if (e.expires_at <= now || e.refresh_next > now) return false;
  const int64_t age = std::min(refresh_age, (e.expires_at - e.fetched_at) * 3 / 4);
  return e.fetched_at + age <= now;
}

class MemoryStsCache : public StsCache {
 public:
  Result<std::optional<CachedStsPolicy>> Lookup(const std::string& domain) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(StsCacheKey(domain));
    if (it == entries_.end()) return std::optional<CachedStsPolicy>();
    return std::optional<CachedStsPolicy>(it->second);
  }

  Result<StsCacheSlot> Read(const std::string& domain) override {
    const std::string key = StsCacheKey(domain);
    std::lock_guard<std::mutex> lock(mu_);
    StsCacheSlot slot;
    if (auto it = entries_.find(key); it != entries_.end()) slot.policy = it->second;
    if (auto it = removals_.find(key); it != removals_.end()) slot.removal = it->second;
    return slot;
  }

  Status Put(const CachedStsPolicy& entry) override {
    Result<CachedStsPolicy> copy = Normalize(entry);
    if (!copy.ok()) return copy.status();
    std::lock_guard<std::mutex> lock(mu_);
    std::string key = copy->domain;
    removals_.erase(key);
    entries_[key] = std::move(copy).value();
    return Status::Ok();
  }

  Status Remove(const std::string& domain) override {
    StsRemoval removal;
    removal.domain = StsCacheKey(domain);
    removal.removed_at = Now();
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = entries_.find(removal.domain); it != entries_.end()) {
      removal.removed_at = std::max(removal.removed_at, it->second.fetched_at);
    }
    if (auto it = removals_.find(removal.domain); it != removals_.end()) {
      removal.removed_at = std::max(removal.removed_at, it->second.removed_at);
    }
    entries_.erase(removal.domain);
    removals_[removal.domain] = removal;
    return Status::Ok();
  }

  Status RecordRemoval(const StsRemoval& removal) override {
    StsRemoval r = removal;
    r.domain = StsCacheKey(removal.domain);
    if (r.domain.empty()) return Status::Error("sts cache: empty domain");
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = entries_.find(r.domain); it != entries_.end() && it->second.fetched_at > r.removed_at) {
      return Status::Ok();
    }
    if (auto it = removals_.find(r.domain); it != removals_.end() && it->second.removed_at >= r.removed_at) {
      return Status::Ok();
    }
    entries_.erase(r.domain);
    removals_[r.domain] = r;
    return Status::Ok();
  }

  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t refresh_age, size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<CachedStsPolicy> out;
    for (const auto& [domain, e] : entries_) {
      if (DueForRefresh(e, now, refresh_age)) out.push_back(e);
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const CachedStsPolicy& a, const CachedStsPolicy& b) { return a.expires_at < b.expires_at; });
    if (out.size() > limit) out.resize(limit);
    return out;
  }

  Status RecordRefreshFailure(const CachedStsPolicy& state) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(StsCacheKey(state.domain));
    if (it == entries_.end() || it->second.fetched_at != state.fetched_at) return Status::Ok();
    it->second.refresh_failures = state.refresh_failures;
    it->second.refresh_last = state.refresh_last;
    it->second.refresh_next = state.refresh_next;
    it->second.refresh_error = state.refresh_error;
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  // A domain is in one of the two maps at most.
  std::map<std::string, CachedStsPolicy> entries_;
  std::map<std::string, StsRemoval> removals_;
};

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS sts_policy ("
    "domain TEXT PRIMARY KEY, id TEXT, text TEXT, fetched_at INTEGER, expires_at INTEGER,"
    " refresh_failures INTEGER NOT NULL DEFAULT 0, refresh_last INTEGER NOT NULL DEFAULT 0,"
    " refresh_next INTEGER NOT NULL DEFAULT 0, refresh_error TEXT NOT NULL DEFAULT '',"
    " fetched_by TEXT NOT NULL DEFAULT '', removed_at INTEGER NOT NULL DEFAULT 0,"
    " removed_by TEXT NOT NULL DEFAULT '')";
// The table's shape as this version makes it (kSchema with kAddColumns),
// stored as the file's user_version once made (SqliteDb::UserVersion).
constexpr int64_t kStsSchema = 1;

// How far the cache's WAL may grow before a commit checkpoints and
// truncates it (SqliteOpenOptions::truncate_wal_at_frames). The WAL is not
// checkpointed and deleted when a process closes the file: every `deliver`
// reads the cache, and making and deleting the -wal and -shm files was a
// cost of each. Nothing is less durable for it: the cache keeps SQLite's
// default synchronous=FULL, so a commit is fsynced in the WAL before Put
// returns, checkpointed or not. The bound is also a cost per process: a
// process that opens the file with no other holding it reads the whole
// WAL (delivery.cc kAttemptLogWalPages has the story).
constexpr int kStsCacheWalPages = 64;

// Columns a file of an older version lacks, added on open: name, declaration.
constexpr const char* kAddColumns[][2] = {
    {"refresh_failures", "INTEGER NOT NULL DEFAULT 0"},
    {"refresh_last", "INTEGER NOT NULL DEFAULT 0"},
    {"refresh_next", "INTEGER NOT NULL DEFAULT 0"},
    {"refresh_error", "TEXT NOT NULL DEFAULT ''"},
    {"fetched_by", "TEXT NOT NULL DEFAULT ''"},
    {"removed_at", "INTEGER NOT NULL DEFAULT 0"},
    {"removed_by", "TEXT NOT NULL DEFAULT ''"},
};
// A row is a policy when removed_at is 0, else the mark of its removal
// (StsRemoval; id and text are then the removed policy's, for people).
#define MXSEC_STS_COLUMNS                                                                                      \
  "domain, id, text, fetched_at, expires_at, refresh_failures, refresh_last, refresh_next, refresh_error," \
  " fetched_by, removed_at, removed_by"
constexpr const char* kGet = "SELECT " MXSEC_STS_COLUMNS " FROM sts_policy WHERE domain = ?1";
constexpr const char* kPut = "INSERT OR REPLACE INTO sts_policy (" MXSEC_STS_COLUMNS
                             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, '')";
// ?1 domain, ?2 now, ?3 removed_by: the mark is dated now, or at the time
// of what it replaces when that is later (StsCache::Remove).
constexpr const char* kRemove =
    "INSERT INTO sts_policy (domain, id, text, fetched_at, expires_at, removed_at, removed_by)"
    " VALUES (?1, '', '', 0, 0, ?2, ?3) ON CONFLICT (domain) DO UPDATE SET"
    " removed_at = MAX(excluded.removed_at, sts_policy.fetched_at, sts_policy.removed_at),"
    " removed_by = excluded.removed_by";
// ?1 domain, ?2 removed_at, ?3 removed_by: only over an earlier event
// (StsCache::RecordRemoval).
constexpr const char* kRecordRemoval =
    "INSERT INTO sts_policy (domain, id, text, fetched_at, expires_at, removed_at, removed_by)"
    " VALUES (?1, '', '', 0, 0, ?2, ?3) ON CONFLICT (domain) DO UPDATE SET"
    " removed_at = excluded.removed_at, removed_by = excluded.removed_by"
    " WHERE (sts_policy.removed_at = 0 AND sts_policy.fetched_at <= excluded.removed_at)"
    " OR (sts_policy.removed_at <> 0 AND sts_policy.removed_at < excluded.removed_at)";
// DueForRefresh in SQL: ?1 now, ?2 refresh_age, ?3 limit.
constexpr const char* kCandidates =
    "SELECT " MXSEC_STS_COLUMNS " FROM sts_policy WHERE removed_at = 0 AND expires_at > ?1 AND refresh_next <= ?1"
    " AND fetched_at + MIN(?2, (expires_at - fetched_at) * 3 / 4) <= ?1 ORDER BY expires_at LIMIT ?3";
constexpr const char* kRecordFailure =
    "UPDATE sts_policy SET refresh_failures = ?2, refresh_last = ?3, refresh_next = ?4, refresh_error = ?5"
    " WHERE domain = ?1 AND fetched_at = ?6 AND removed_at = 0";
#undef MXSEC_STS_COLUMNS

class SqliteStsCache : public StsCache {
 public:
  static Result<std::unique_ptr<StsCache>> Open(const std::string& path) {
    auto cache = std::unique_ptr<SqliteStsCache>(new SqliteStsCache(path));
    Status s = cache->Init();
    if (!s.ok()) return s;
    return std::unique_ptr<StsCache>(std::move(cache));
  }

  Result<std::optional<CachedStsPolicy>> Lookup(const std::string& domain) override {
    using Found = std::optional<CachedStsPolicy>;
    const std::string key = StsCacheKey(domain);
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&get_, kGet); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(get_);
    // A lock held past the busy timeout or a damaged file is an error, not
    // "no cached policy": the caller decides conservatively.
    Result<bool> row = get_.BindText(1, key).Step();
    if (!row.ok()) return Error("read policy for " + key, row.status());
    if (!*row || ReadRemoval(get_)) return Found();
    return ReadRow(get_);
  }

  Result<StsCacheSlot> Read(const std::string& domain) override {
    const std::string key = StsCacheKey(domain);
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&get_, kGet); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(get_);
    Result<bool> row = get_.BindText(1, key).Step();
    if (!row.ok()) return Error("read policy for " + key, row.status());
    StsCacheSlot slot;
    if (!*row) return slot;
    slot.removal = ReadRemoval(get_);
    if (!slot.removal) slot.policy = ReadRow(get_);
    return slot;
  }

  Status Put(const CachedStsPolicy& entry) override {
    Result<CachedStsPolicy> norm = Normalize(entry);
    if (!norm.ok()) return norm.status();
    const CachedStsPolicy& e = *norm;
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&put_, kPut); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(put_);
    put_.BindText(1, e.domain).BindText(2, e.id).BindText(3, e.text);
    put_.BindInt64(4, e.fetched_at).BindInt64(5, e.expires_at).BindInt64(6, e.refresh_failures);
    put_.BindInt64(7, e.refresh_last).BindInt64(8, e.refresh_next).BindText(9, e.refresh_error);
    put_.BindText(10, e.fetched_by);
    return Error("store policy for " + e.domain, put_.Run());
  }

  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t refresh_age, size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&candidates_, kCandidates); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(candidates_);
    const auto max_rows = static_cast<int64_t>(std::min<size_t>(limit, INT32_MAX));
    candidates_.BindInt64(1, now).BindInt64(2, refresh_age).BindInt64(3, max_rows);
    std::vector<CachedStsPolicy> out;
    for (;;) {
      Result<bool> row = candidates_.Step();
      if (!row.ok()) return Error("list policies to refresh", row.status());
      if (!*row) break;
      std::optional<CachedStsPolicy> e = ReadRow(candidates_);
      if (e) out.push_back(std::move(*e));  // a row that no longer parses is not refreshed
    }
    return out;
  }

  Status RecordRefreshFailure(const CachedStsPolicy& state) override {
    const std::string key = StsCacheKey(state.domain);
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&record_failure_, kRecordFailure); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(record_failure_);
    record_failure_.BindText(1, key).BindInt64(2, state.refresh_failures).BindInt64(3, state.refresh_last);
    record_failure_.BindInt64(4, state.refresh_next).BindText(5, state.refresh_error).BindInt64(6, state.fetched_at);
    return Error("record refresh failure for " + key, record_failure_.Run());
  }

  Status Remove(const std::string& domain) override {
    const std::string key = StsCacheKey(domain);
    if (key.empty()) return Status::Error("sts cache: empty domain");
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&remove_, kRemove); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(remove_);
    return Error("remove policy for " + key, remove_.BindText(1, key).BindInt64(2, Now()).BindText(3, "").Run());
  }

  Status RecordRemoval(const StsRemoval& removal) override {
    const std::string key = StsCacheKey(removal.domain);
    if (key.empty()) return Status::Error("sts cache: empty domain");
    std::lock_guard<std::mutex> lock(mu_);
    if (Status unprepared = Ready(&record_removal_, kRecordRemoval); !unprepared.ok()) return unprepared;
    SqliteResetOnExit use(record_removal_);
    record_removal_.BindText(1, key).BindInt64(2, removal.removed_at).BindText(3, removal.removed_by);
    return Error("record the removal of the policy for " + key, record_removal_.Run());
  }

 private:
  explicit SqliteStsCache(std::string path) : path_(std::move(path)) {}

  // The entry of the current row of a statement selecting the columns of
  // kGet, or nullopt when it is damaged or its text no longer parses.
  static std::optional<CachedStsPolicy> ReadRow(const SqliteStatement& s) {
    using Type = SqliteStatement::Type;
    if (s.ColumnType(0) != Type::kText || s.ColumnType(1) != Type::kText || s.ColumnType(2) != Type::kText ||
        s.ColumnType(3) != Type::kInteger || s.ColumnType(4) != Type::kInteger) {
      return std::nullopt;
    }
    CachedStsPolicy entry;
    entry.domain = s.ColumnText(0);
    entry.id = s.ColumnText(1);
    entry.text = s.ColumnText(2);
    entry.fetched_at = s.ColumnInt64(3);
    entry.refresh_failures = static_cast<int>(std::min<int64_t>(s.ColumnInt64(5), INT32_MAX));
    entry.refresh_last = s.ColumnInt64(6);
    entry.refresh_next = s.ColumnInt64(7);
    entry.refresh_error = s.ColumnText(8);
    entry.fetched_by = s.ColumnText(9);
    Result<StsPolicy> parsed = ParseStsPolicy(entry.text);
    if (!parsed.ok()) return std::nullopt;
    entry.policy = std::move(parsed).value();
    // The expires_at column is kept for people reading the file; the
    // lifetime is the one of the text that is applied.
    entry.expires_at = entry.fetched_at + entry.policy.max_age;
    return entry;
  }

  // The mark of a removal when the current row (as ReadRow's) is one.
  static std::optional<StsRemoval> ReadRemoval(const SqliteStatement& s) {
    if (s.ColumnType(10) != SqliteStatement::Type::kInteger || s.ColumnInt64(10) == 0) return std::nullopt;
    StsRemoval removal;
    removal.domain = s.ColumnText(0);
    removal.removed_at = s.ColumnInt64(10);
    removal.removed_by = s.ColumnText(11);
    return removal;
  }

  // `failed` (an error of the wrapper, in SQLite's words) with the file and
  // what was being done; success stays success.
  Status Error(const std::string& what, const Status& failed) const {
    return failed.Prefixed("sts cache " + path_ + ": " + what + ": ");
  }

  Status Init() {
    Result<SqliteDb> db = SqliteDb::Open(path_, SqliteOpenOptions::SharedByProcesses(kStsCacheWalPages));
    if (!db.ok()) return Error("open", db.status());
    db_ = std::move(db).value();
    Status s = db_.Exec("PRAGMA journal_mode=WAL");
    if (!s.ok()) return Error("set WAL mode", s);
    Result<int64_t> version = db_.UserVersion();
    if (!version.ok()) return Error("read schema version", version.status());
    if (*version < kStsSchema) {
      s = db_.Exec(kSchema);
      if (!s.ok()) return Error("create table", s);
      for (const auto& column : kAddColumns) {
        s = db_.AddColumn("sts_policy", column[0], column[1]);
        if (!s.ok()) return Error("add column " + std::string(column[0]), s);
      }
      s = db_.Exec("PRAGMA user_version = " + std::to_string(kStsSchema));
      if (!s.ok()) return Error("write schema version", s);
    }
    // The read names every column: a file whose table lacks one fails here, at open, as before
    // any statement was prepared lazily.
    return Ready(&get_, kGet);
  }

  // Prepares `*slot` from `sql` at its first use (a `deliver` process reads one row and needs no
  // other statement); an error when SQLite cannot.
  Status Ready(SqliteStatement* slot, const char* sql) {
    if (slot->prepared()) return Status::Ok();
    Result<SqliteStatement> prepared = db_.Prepare(sql, SqliteDb::Reuse::kPersistent);
    if (!prepared.ok()) return Error("prepare statement", prepared.status());
    *slot = std::move(prepared).value();
    return Status::Ok();
  }

  std::string path_;
  std::mutex mu_;
  SqliteDb db_;  // declared before the statements: finalized after them
  SqliteStatement get_;
  SqliteStatement put_;
  SqliteStatement remove_;
  SqliteStatement record_removal_;
  SqliteStatement candidates_;
  SqliteStatement record_failure_;
};

}  // namespace

Result<std::unique_ptr<StsCache>> OpenSqliteStsCache(const std::string& path) {
  return SqliteStsCache::Open(path);
}

std::unique_ptr<StsCache> NewMemoryStsCache() { return std::make_unique<MemoryStsCache>(); }

}  // namespace mxsec
