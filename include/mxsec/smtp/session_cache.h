// session_cache.h - SMTP sessions kept open between mail transactions, so
// that several messages to one destination share one connection and one
// TLS handshake (as Postfix's connection cache, scache(8), does).
//
// The cache knows nothing of SMTP: it holds ReusableSessions under a key
// the caller makes. The SMTP client (smtp_client.h, RunSmtpSessionCached)
// keys a session on everything that decided how it was set up and
// authenticated: address, port, HELO name, the TLS demand and what it was
// checked against (TLSA records and DANE names, PKIX names and CA file),
// who demanded it (a local rule) and REQUIRETLS. So a session is reused only
// by a delivery whose policy would have accepted it exactly as it was, and
// never across domains (the DANE names hold the domain).
// Promises:
//   - Take hands a parked session to one caller only, after Reset
//     succeeded; a session that fails Reset, has been idle longer than
//     max_idle_ms or open longer than max_age_ms is never handed out
//     (a session may defer its RSET into the caller's next write, and the
//     caller then deals with its failure: RunSmtpSessionCached);
//   - a session that has had max_uses transactions is closed, not parked;
//     at most max_sessions are parked at once (the oldest is closed first);
//   - every parked session is closed (QUIT) when the cache is destroyed.
// Thread-safe; Reset and Close run outside the lock.
//
// The cache also holds the TLS sessions of the same keys for resumption on
// a new connection (tls_session_store.h): one object per process that
// delivers, whatever became of the connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "mxsec/smtp/tls_session_store.h"

namespace mxsec {

// An open session between transactions.
class ReusableSession {
 public:
  virtual ~ReusableSession() = default;
  // Makes the session ready for a new transaction (RSET, RFC 5321 §4.1.1.5,
  // and its 250), or, under PIPELINING, arranges for the RSET to lead the
  // next transaction's first write. False: the session is unusable (closed
  // by the server, out of step); the cache drops it without a word to the
  // server.
  virtual bool Reset() = 0;
  // Ends the session politely (QUIT).
  virtual void Close() = 0;
};

// Postfix's defaults where it has them: smtp_connection_cache_time_limit
// (idle, 2 s) and smtp_connection_reuse_time_limit (age, 300 s); uses are
// bounded too (Postfix's smtp_connection_reuse_count_limit is unbounded by
// default) so that one session cannot carry a whole queue; parked sessions
// at most as many as Postfix's per-destination concurrency: an idle session
// holds one of the server's processes (and its per-client connection
// count), so parking many would starve our own new connections.
struct SessionCacheLimits {
  static constexpr size_t kMaxUses = 100;
  static constexpr int64_t kMaxIdleMs = 2000;
  static constexpr int64_t kMaxAgeMs = 300000;
  static constexpr size_t kMaxSessions = 20;
  size_t max_uses = kMaxUses;
  int64_t max_idle_ms = kMaxIdleMs;
  int64_t max_age_ms = kMaxAgeMs;
  size_t max_sessions = kMaxSessions;
};

class SessionCache {
 public:
  // `now_ms`: a monotonic clock in milliseconds (tests pass their own).
  explicit SessionCache(SessionCacheLimits limits = {}, std::function<int64_t()> now_ms = nullptr,
                        TlsSessionStoreLimits tls_limits = {});
  ~SessionCache();
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;

  // A parked session for `key`, reset for a new transaction, or nullptr.
  // `uses` gets the transactions it had; `opened_ms` when it was opened.
  std::unique_ptr<ReusableSession> Take(const std::string& key, size_t* uses, int64_t* opened_ms);
  // Parks `session` under `key` after its `uses`-th transaction (opened at
  // `opened_ms`), or closes it when a limit says so.
  void Put(const std::string& key, std::unique_ptr<ReusableSession> session, size_t uses, int64_t opened_ms);
  // The clock the cache runs on (for `opened_ms`).
  int64_t NowMs() const { return now_ms_(); }
  size_t parked() const;
  // TLS sessions for resumption, under the keys of this cache (on its clock).
  TlsSessionStore& tls_sessions() { return tls_sessions_; }

 private:
  struct Parked {
    std::string key;
    std::unique_ptr<ReusableSession> session;
    size_t uses = 0;
    int64_t opened_ms = 0, parked_ms = 0;
  };
  bool Expired(const Parked& p, int64_t now) const;

  const SessionCacheLimits limits_;
  std::function<int64_t()> now_ms_;
  mutable std::mutex mu_;
  std::list<Parked> parked_;  // oldest first
  TlsSessionStore tls_sessions_;
};

}  // namespace mxsec
