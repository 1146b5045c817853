// server.h - the socketmap policy server (`mxsec serve`): Postfix's
// smtp_tls_policy_maps lookups answered with mxsec's decision.
//
// One thread runs the event loop (epoll) over every listener and client
// connection: reading netstrings, writing replies, enforcing per-connection
// limits. Lookups that need the network go to a pool of worker threads;
// their answers come back through an eventfd. Answers are kept in memory
// (AnswerCache, answer_cache.h) and renewed in the background when they
// were used and are about to expire, so a busy domain is answered from
// memory. A thread of its own refreshes the cached MTA-STS policies every
// sts_refresh_interval (mta_sts_refresh.h); another re-runs the resolver's
// self-check every resolver_check_interval.
//
// Promises: a malformed netstring, one longer than serve_max_query_size, or
// a client that takes longer than request_timeout to send one request,
// closes that connection (logged) and nothing else; a lookup slower than
// lookup_timeout is answered TEMP (Postfix defers, never sends in clear).
// Every connection is bounded (SocketmapConnection, socketmap.h): at most
// serve_max_pending_requests requests and serve_max_output_buffer bytes of
// replies outstanding, beyond which it is not read (a client that sends
// without reading only fills its own socket buffers); closed after
// serve_idle_timeout without traffic. At most max_connections are open;
// more are closed at once. The workers take lookups round-robin per
// connection (LookupQueue), so one client's pipelined requests cannot hold
// back another's. Logs about clients are rate-limited. Reload() (SIGHUP)
// asks the ReloadFunction for a new PolicySource and limits: a failure is
// logged and the old ones kept; answers decided under the old source are
// dropped; the new limits apply to new connections. Stop() (SIGTERM,
// SIGINT) ends Run() cleanly.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/base/status.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/mta_sts_refresh.h"
#include "mxsec/policy/policy.h"
#include "mxsec/serve/answer_cache.h"
#include "mxsec/serve/listener.h"
#include "mxsec/serve/socketmap.h"

namespace mxsec {

// What the server asks of the rest of mxsec. Every function may be called
// from several threads at once.
class PolicySource {
 public:
  virtual ~PolicySource() = default;
  // The decision for a domain (in normal form).
  virtual DomainPolicy Resolve(const std::string& domain) = 0;
  // One refresh run over the MTA-STS policy cache.
  virtual StsRefreshReport RefreshStsCache() = 0;
  // Resolver mode: the last self-check of the resolver, and a new one at
  // `now` (nullopt when the check does not apply or cannot run).
  virtual std::optional<ResolverCheck> LastResolverCheck() = 0;
  virtual std::optional<ResolverCheck> CheckResolver(std::time_t now) = 0;
  // With a shared state store (state_backend on PostgreSQL): whether it
  // answered the last time it was asked; nullopt without one.
  virtual std::optional<bool> StateStoreUp() { return std::nullopt; }
};

// Worker threads (lookups in parallel; each may wait for DNS and HTTPS).
inline constexpr size_t kServeWorkers = 16;
// Descriptors kept free of client connections: listeners, the event loop's
// own, and each worker's DNS sockets, HTTPS connection and SQLite files.
inline constexpr size_t kServeReservedFds = 64 + kServeWorkers * 8;

struct ServeSettings {
  SocketmapLimits limits;                // per connection (serve_* keys; request_timeout 10 s)
  size_t max_connections = 4096;         // serve_max_connections, within the descriptor limit
  AnswerCacheTtls answer_ttls;           // answers in memory
  int64_t lookup_timeout = 20;           // seconds before a waiting request gets TEMP
  size_t workers = kServeWorkers;
  int64_t resolver_check_interval = 300;  // seconds between self-checks of the resolver
  int64_t sts_refresh_interval = 3600;    // seconds between MTA-STS cache refresh runs
  bool handle_signals = true;            // SIGHUP reloads, SIGTERM/SIGINT stop (the process's signals)
};

// The settings of `cfg`: limits from its serve_* keys; max_connections
// lowered (with a warning through `log`) when RLIMIT_NOFILE cannot hold
// that many besides kServeReservedFds.
ServeSettings ServeSettingsFrom(const Config& cfg, const std::function<void(const std::string&)>& log);

// A reload: the new source and settings (only limits and max_connections
// of the settings change in a running server), or why there are none.
struct ServeGeneration {
  std::shared_ptr<PolicySource> source;
  ServeSettings settings;
};
using ReloadFunction = std::function<Result<ServeGeneration>()>;

class SocketmapServer {
 public:
  // `log` receives every log line (without a prefix); it is called from
  // several threads, one at a time. `verbose` also logs ordinary closes.
  SocketmapServer(ServeGeneration initial, ReloadFunction reload, std::function<void(const std::string&)> log,
                  bool verbose);
  ~SocketmapServer();
  SocketmapServer(const SocketmapServer&) = delete;
  SocketmapServer& operator=(const SocketmapServer&) = delete;

  // Serves the listeners until Stop(); closes them and every connection
  // before it returns. With `metrics`, serves the Prometheus exposition of
  // its counters there too (metrics.h, metrics_http.h). An error: the event
  // loop could not be set up.
  Status Run(std::vector<Listener> listeners, std::optional<Listener> metrics = std::nullopt);
  // From any thread (or a signal, with handle_signals).
  void Stop();
  void Reload();

 private:
  class Loop;
  std::unique_ptr<Loop> loop_;
};

}  // namespace mxsec
