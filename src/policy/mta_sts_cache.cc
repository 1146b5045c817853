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

#include <sqlite3.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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

struct DbDeleter {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbDeleter>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

// Returns a statement to its unbound, un-stepped state however the
// function using it ends.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) : s_(s) {}
  ~StmtUse() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;

 private:
  sqlite3_stmt* s_;
};

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS sts_policy ("
    "domain TEXT PRIMARY KEY, id TEXT, text TEXT, fetched_at INTEGER, expires_at INTEGER,"
    " refresh_failures INTEGER NOT NULL DEFAULT 0, refresh_last INTEGER NOT NULL DEFAULT 0,"
    " refresh_next INTEGER NOT NULL DEFAULT 0, refresh_error TEXT NOT NULL DEFAULT '')";
// Columns a file of an older version lacks, added on open.
constexpr const char* kAddColumns[] = {
    "ALTER TABLE sts_policy ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sts_policy ADD COLUMN refresh_last INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sts_policy ADD COLUMN refresh_next INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sts_policy ADD COLUMN refresh_error TEXT NOT NULL DEFAULT ''",
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
    sqlite3_stmt* s = get_.get();
    StmtUse use(s);
    if (sqlite3_bind_text(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
      return Error("read policy for " + key);
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return Found();
    // A lock held past the busy timeout or a damaged file is an error, not
    // "no cached policy": the caller decides conservatively.
    if (rc != SQLITE_ROW) return Error("read policy for " + key);
    return ReadRow(s);
  }

  Status Put(const CachedStsPolicy& entry) override {
    Result<CachedStsPolicy> norm = Normalize(entry);
    if (!norm.ok()) return norm.status();
    const CachedStsPolicy& e = *norm;
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* s = put_.get();
    StmtUse use(s);
    int rc = sqlite3_bind_text(s, 1, e.domain.data(), static_cast<int>(e.domain.size()), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(s, 2, e.id.data(), static_cast<int>(e.id.size()), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(s, 3, e.text.data(), static_cast<int>(e.text.size()), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 4, e.fetched_at);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 5, e.expires_at);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 6, e.refresh_failures);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 7, e.refresh_last);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 8, e.refresh_next);
    if (rc == SQLITE_OK) {
      rc = sqlite3_bind_text(s, 9, e.refresh_error.data(), static_cast<int>(e.refresh_error.size()), SQLITE_TRANSIENT);
    }
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return Error("store policy for " + e.domain);
    return Status::Ok();
  }

  Result<std::vector<CachedStsPolicy>> RefreshCandidates(int64_t now, int64_t refresh_age, size_t limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* s = candidates_.get();
    StmtUse use(s);
    int rc = sqlite3_bind_int64(s, 1, now);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 2, refresh_age);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(std::min<size_t>(limit, INT32_MAX)));
    if (rc != SQLITE_OK) return Error("list policies to refresh");
    std::vector<CachedStsPolicy> out;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      std::optional<CachedStsPolicy> e = ReadRow(s);
      if (e) out.push_back(std::move(*e));  // a row that no longer parses is not refreshed
    }
    if (rc != SQLITE_DONE) return Error("list policies to refresh");
    return out;
  }

  Status RecordRefreshFailure(const CachedStsPolicy& state) override {
    const std::string key = NormalDomain(state.domain);
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* s = record_failure_.get();
    StmtUse use(s);
    int rc = sqlite3_bind_text(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 2, state.refresh_failures);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 3, state.refresh_last);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 4, state.refresh_next);
    if (rc == SQLITE_OK) {
      rc = sqlite3_bind_text(s, 5, state.refresh_error.data(), static_cast<int>(state.refresh_error.size()),
                             SQLITE_TRANSIENT);
    }
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(s, 6, state.fetched_at);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return Error("record refresh failure for " + key);
    return Status::Ok();
  }

  Status Remove(const std::string& domain) override {
    const std::string key = NormalDomain(domain);
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* s = remove_.get();
    StmtUse use(s);
    int rc = sqlite3_bind_text(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return Error("remove policy for " + key);
    return Status::Ok();
  }

 private:
  explicit SqliteStsCache(std::string path) : path_(std::move(path)) {}

  // The entry of the current row of a statement selecting the columns of
  // kGet, or nullopt when it is damaged or its text no longer parses.
  static std::optional<CachedStsPolicy> ReadRow(sqlite3_stmt* s) {
    if (sqlite3_column_type(s, 0) != SQLITE_TEXT || sqlite3_column_type(s, 1) != SQLITE_TEXT ||
        sqlite3_column_type(s, 2) != SQLITE_TEXT || sqlite3_column_type(s, 3) != SQLITE_INTEGER ||
        sqlite3_column_type(s, 4) != SQLITE_INTEGER) {
      return std::nullopt;
    }
    CachedStsPolicy entry;
    entry.domain = ColumnText(s, 0);
    entry.id = ColumnText(s, 1);
    entry.text = ColumnText(s, 2);
    entry.fetched_at = sqlite3_column_int64(s, 3);
    entry.refresh_failures = static_cast<int>(std::min<sqlite3_int64>(sqlite3_column_int64(s, 5), INT32_MAX));
    entry.refresh_last = sqlite3_column_int64(s, 6);
    entry.refresh_next = sqlite3_column_int64(s, 7);
    entry.refresh_error = ColumnText(s, 8);
    Result<StsPolicy> parsed = ParseStsPolicy(entry.text);
    if (!parsed.ok()) return std::nullopt;
    entry.policy = std::move(parsed).value();
    // The expires_at column is kept for people reading the file; the
    // lifetime is the one of the text that is applied.
    entry.expires_at = entry.fetched_at + entry.policy.max_age;
    return entry;
  }

  static std::string ColumnText(sqlite3_stmt* s, int col) {
    const unsigned char* p = sqlite3_column_text(s, col);
    int n = sqlite3_column_bytes(s, col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }

  Status Error(const std::string& what) const {
    const char* msg = db_ ? sqlite3_errmsg(db_.get()) : "out of memory";
    return Status::Error("sts cache " + path_ + ": " + what + ": " + msg);
  }

  Status Init() {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path_.c_str(), &raw,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
    db_.reset(raw);  // sqlite3_open_v2 may hand back a handle even on failure
    if (rc != SQLITE_OK) return Error("open");
    // The busy timeout must be in place before the first statement, which
    // may already meet another process's lock.
    sqlite3_busy_timeout(db_.get(), 5000);
    if (sqlite3_exec(db_.get(), "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Error("set WAL mode");
    }
    if (sqlite3_exec(db_.get(), kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) return Error("create table");
    for (const char* add : kAddColumns) {
      // Fails with "duplicate column name" where the column exists (a new
      // file, or another process migrated it first): that is the goal.
      if (sqlite3_exec(db_.get(), add, nullptr, nullptr, nullptr) != SQLITE_OK &&
          std::string(sqlite3_errmsg(db_.get())).find("duplicate column") == std::string::npos) {
        return Error("add refresh columns");
      }
    }
    if (!Prepare(kGet, &get_) || !Prepare(kPut, &put_) || !Prepare(kRemove, &remove_) ||
        !Prepare(kCandidates, &candidates_) || !Prepare(kRecordFailure, &record_failure_)) {
      return Error("prepare statement");
    }
    return Status::Ok();
  }

  bool Prepare(const char* sql, StmtPtr* out) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    out->reset(raw);
    return rc == SQLITE_OK;
  }

  std::string path_;
  std::mutex mu_;
  DbPtr db_;  // declared before the statements: finalized after them
  StmtPtr get_;
  StmtPtr put_;
  StmtPtr remove_;
  StmtPtr candidates_;
  StmtPtr record_failure_;
};

}  // namespace

Result<std::unique_ptr<StsCache>> OpenSqliteStsCache(const std::string& path) {
  return SqliteStsCache::Open(path);
}

std::unique_ptr<StsCache> NewMemoryStsCache() { return std::make_unique<MemoryStsCache>(); }

}  // namespace mxsec
