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
// Both caches serialize their operations with a mutex and may be shared
// between threads.
#include "mxsec/policy/mta_sts.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mxsec/base/sqlite.h"

namespace mxsec {
namespace {

std::string NormalDomain(std::string d) {
  if (!d.empty() && d.back() == '.') d.pop_back();
  for (char& c : d) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return d;
}

// The stored copy always carries the parsed form of its own text, never a
// caller's possibly inconsistent one.
Result<CachedStsPolicy> Normalize(const CachedStsPolicy& entry) {
  CachedStsPolicy copy = entry;
  copy.domain = NormalDomain(entry.domain);
  if (copy.domain.empty()) return Status::Error("sts cache: empty domain");
  Result<StsPolicy> parsed = ParseStsPolicy(copy.text);
  if (!parsed.ok()) {
    return Status::Error("sts cache: policy for " + copy.domain + " does not parse: " + parsed.error());
  }
  copy.policy = std::move(parsed).value();
  copy.expires_at = copy.fetched_at + copy.policy.max_age;
  return copy;
}

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
    auto it = entries_.find(NormalDomain(domain));
    if (it == entries_.end()) return std::optional<CachedStsPolicy>();
    return std::optional<CachedStsPolicy>(it->second);
  }

  Status Put(const CachedStsPolicy& entry) override {
    Result<CachedStsPolicy> copy = Normalize(entry);
    if (!copy.ok()) return copy.status();
    std::lock_guard<std::mutex> lock(mu_);
    std::string key = copy->domain;
    entries_[key] = std::move(copy).value();
    return Status::Ok();
  }

  Status Remove(const std::string& domain) override {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(NormalDomain(domain));
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
    auto it = entries_.find(NormalDomain(state.domain));
    if (it == entries_.end() || it->second.fetched_at != state.fetched_at) return Status::Ok();
    it->second.refresh_failures = state.refresh_failures;
    it->second.refresh_last = state.refresh_last;
    it->second.refresh_next = state.refresh_next;
    it->second.refresh_error = state.refresh_error;
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  std::map<std::string, CachedStsPolicy> entries_;
};

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS sts_policy ("
    "domain TEXT PRIMARY KEY, id TEXT, text TEXT, fetched_at INTEGER, expires_at INTEGER,"
    " refresh_failures INTEGER NOT NULL DEFAULT 0, refresh_last INTEGER NOT NULL DEFAULT 0,"
    " refresh_next INTEGER NOT NULL DEFAULT 0, refresh_error TEXT NOT NULL DEFAULT '')";
// Columns a file of an older version lacks, added on open: name, declaration.
constexpr const char* kAddColumns[][2] = {
    {"refresh_failures", "INTEGER NOT NULL DEFAULT 0"},
    {"refresh_last", "INTEGER NOT NULL DEFAULT 0"},
    {"refresh_next", "INTEGER NOT NULL DEFAULT 0"},
    {"refresh_error", "TEXT NOT NULL DEFAULT ''"},
};
#define MXSEC_STS_COLUMNS \
  "domain, id, text, fetched_at, expires_at, refresh_failures, refresh_last, refresh_next, refresh_error"
constexpr const char* kGet = "SELECT " MXSEC_STS_COLUMNS " FROM sts_policy WHERE domain = ?1";
constexpr const char* kPut =
    "INSERT OR REPLACE INTO sts_policy (" MXSEC_STS_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
constexpr const char* kRemove = "DELETE FROM sts_policy WHERE domain = ?1";
// DueForRefresh in SQL: ?1 now, ?2 refresh_age, ?3 limit.
constexpr const char* kCandidates =
    "SELECT " MXSEC_STS_COLUMNS " FROM sts_policy WHERE expires_at > ?1 AND refresh_next <= ?1"
    " AND fetched_at + MIN(?2, (expires_at - fetched_at) * 3 / 4) <= ?1 ORDER BY expires_at LIMIT ?3";
constexpr const char* kRecordFailure =
    "UPDATE sts_policy SET refresh_failures = ?2, refresh_last = ?3, refresh_next = ?4, refresh_error = ?5"
    " WHERE domain = ?1 AND fetched_at = ?6";
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
    const std::string key = NormalDomain(domain);
    std::lock_guard<std::mutex> lock(mu_);
    SqliteResetOnExit use(get_);
    // A lock held past the busy timeout or a damaged file is an error, not
    // "no cached policy": the caller decides conservatively.
    Result<bool> row = get_.BindText(1, key).Step();
    if (!row.ok()) return Error("read policy for " + key, row.status());
    if (!*row) return Found();
    return ReadRow(get_);
  }

  Status Put(const CachedStsPolicy& entry) override {
    Result<CachedStsPolicy> norm = Normalize(entry);
    if (!norm.ok()) return norm.status();
    const CachedStsPolicy& e = *norm;
    std::lock_guard<std::mutex> lock(mu_);
    SqliteResetOnExit use(put_);
    put_.BindText(1, e.domain).BindText(2, e.id).BindText(3, e.text);
    put_.BindInt64(4, e.fetched_at).BindInt64(5, e.expires_at).BindInt64(6, e.refresh_failures);
    put_.BindInt64(7, e.refresh_last).BindInt64(8, e.refresh_next).BindText(9, e.refresh_error);
    return Error("store policy for " + e.domain, put_.Run());
  }

  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t refresh_age, size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
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
    const std::string key = NormalDomain(state.domain);
    std::lock_guard<std::mutex> lock(mu_);
    SqliteResetOnExit use(record_failure_);
    record_failure_.BindText(1, key).BindInt64(2, state.refresh_failures).BindInt64(3, state.refresh_last);
    record_failure_.BindInt64(4, state.refresh_next).BindText(5, state.refresh_error).BindInt64(6, state.fetched_at);
    return Error("record refresh failure for " + key, record_failure_.Run());
  }

  Status Remove(const std::string& domain) override {
    const std::string key = NormalDomain(domain);
    std::lock_guard<std::mutex> lock(mu_);
    SqliteResetOnExit use(remove_);
    return Error("remove policy for " + key, remove_.BindText(1, key).Run());
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
    Result<StsPolicy> parsed = ParseStsPolicy(entry.text);
    if (!parsed.ok()) return std::nullopt;
    entry.policy = std::move(parsed).value();
    // The expires_at column is kept for people reading the file; the
    // lifetime is the one of the text that is applied.
    entry.expires_at = entry.fetched_at + entry.policy.max_age;
    return entry;
  }

  // `failed` (an error of the wrapper, in SQLite's words) with the file and
  // what was being done; success stays success.
  Status Error(const std::string& what, const Status& failed) const {
    return failed.Prefixed("sts cache " + path_ + ": " + what + ": ");
  }

  Status Init() {
    SqliteOpenOptions options;
    options.create = true;
    options.full_mutex = true;
    options.busy_timeout_ms = 5000;
    Result<SqliteDb> db = SqliteDb::Open(path_, options);
    if (!db.ok()) return Error("open", db.status());
    db_ = std::move(db).value();
    Status s = db_.Exec("PRAGMA journal_mode=WAL");
    if (!s.ok()) return Error("set WAL mode", s);
    s = db_.Exec(kSchema);
    if (!s.ok()) return Error("create table", s);
    for (const auto& column : kAddColumns) {
      s = db_.AddColumn("sts_policy", column[0], column[1]);
      if (!s.ok()) return Error("add refresh columns", s);
    }
    const std::pair<const char*, SqliteStatement*> statements[] = {
        {kGet, &get_}, {kPut, &put_}, {kRemove, &remove_}, {kCandidates, &candidates_},
        {kRecordFailure, &record_failure_}};
    for (auto [sql, out] : statements) {
      Result<SqliteStatement> prepared = db_.Prepare(sql, SqliteDb::Reuse::kPersistent);
      if (!prepared.ok()) return Error("prepare statement", prepared.status());
      *out = std::move(prepared).value();
    }
    return Status::Ok();
  }

  std::string path_;
  std::mutex mu_;
  SqliteDb db_;  // declared before the statements: finalized after them
  SqliteStatement get_;
  SqliteStatement put_;
  SqliteStatement remove_;
  SqliteStatement candidates_;
  SqliteStatement record_failure_;
};

}  // namespace

Result<std::unique_ptr<StsCache>> OpenSqliteStsCache(const std::string& path) {
  return SqliteStsCache::Open(path);
}

std::unique_ptr<StsCache> NewMemoryStsCache() { return std::make_unique<MemoryStsCache>(); }

}  // namespace mxsec
