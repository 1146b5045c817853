// server.cc - see server.h. The event loop; the lookups are lookup_pool.cc.
#include "mxsec/serve/server.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include "lookup_pool.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/serve/metrics.h"
#include "mxsec/serve/metrics_http.h"

namespace mxsec {
namespace {

constexpr int kRequestTimeout = 10;        // seconds to receive one whole request
constexpr int kMaxLogLinesPerSecond = 20;  // about clients; the rest are counted
constexpr size_t kReadChunk = 4096;        // bytes read from a client per event
constexpr size_t kRequestsPerTurn = 8;     // requests of one connection per turn
constexpr auto kBusySlice = std::chrono::microseconds(1000);  // per loop, for busy connections' turns
constexpr int kMaxEventsPerWait = 256;

// Logs about clients, which a flood of them must not turn into a flood of
// lines: kMaxLogLinesPerSecond, then a count of the ones left out.
class ClientLog {
 public:
  explicit ClientLog(std::function<void(const std::string&)> log) : log_(std::move(log)) {}
  void operator()(const std::string& s) {
    int64_t now = ServeNow();
    if (now != second_) {
      if (dropped_) log_(std::to_string(dropped_) + " more messages about clients in the last second not logged");
      second_ = now;
      lines_ = dropped_ = 0;
    }
    if (lines_++ < kMaxLogLinesPerSecond) {
      log_(s);
    } else {
      ++dropped_;
    }
  }

 private:
  std::function<void(const std::string&)> log_;
  int64_t second_ = 0;
  int lines_ = 0;
  int dropped_ = 0;
};

struct Conn {
  Conn(int f, uint64_t i, const SocketmapLimits& limits) : fd(f), id(i), sc(limits, ServeNow()) {}
  int fd;
  uint64_t id;  // the owner of its lookups in the queue (descriptors are reused)
  SocketmapConnection sc;
  uint32_t events = EPOLLIN;  // what epoll watches for it
  bool busy = false;          // requests already read wait for their turn
};

// The reply for a request key that needs no lookup, or nullopt with
// *domain set to the domain to look up.
std::optional<std::string> ImmediateReply(const std::string& key, std::string* domain) {
  // Only next-hop domains: parent-domain probes (".example.org"), bracketed
  // hosts and host:port forms get no policy from us.
  if (key.empty() || key[0] == '.' || key[0] == '[' || key.find(':') != std::string::npos)
    return SocketmapAnswer::NotFound().Encode();
  auto n = NormalizeHostName(key);
  if (!n.ok()) return SocketmapAnswer::NotFound().Encode();
  *domain = n.value();
  return std::nullopt;
}

// A descriptor closed when its owner goes.
class OwnedFd {
 public:
  explicit OwnedFd(int fd = -1) : fd_(fd) {}
  ~OwnedFd() {
    if (fd_ >= 0) close(fd_);
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

}  // namespace

ServeSettings ServeSettingsFrom(const Config& cfg, const std::function<void(const std::string&)>& log) {
  ServeSettings s;
  s.limits.max_query_size = static_cast<size_t>(cfg.serve_max_query_size);
  s.limits.max_pending_requests = static_cast<size_t>(cfg.serve_max_pending_requests);
  s.limits.max_output_buffer = static_cast<size_t>(cfg.serve_max_output_buffer);
  s.limits.request_timeout = kRequestTimeout;
  s.limits.idle_timeout = cfg.serve_idle_timeout;
  // Past the descriptor limit accept() would fail with EMFILE and workers
  // could not open their sockets.
  size_t want = static_cast<size_t>(cfg.serve_max_connections);
  s.max_connections = want;
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return s;
  size_t nofile = static_cast<size_t>(rl.rlim_cur);
  size_t room = nofile > 2 * kServeReservedFds ? nofile - kServeReservedFds : nofile / 2;
  if (want > room) {
    log("warning: serve_max_connections = " + std::to_string(want) + " but RLIMIT_NOFILE is " +
        std::to_string(nofile) + ": at most " + std::to_string(room) + " connections");
    s.max_connections = room;
  }
  return s;
}

class SocketmapServer::Loop {
 public:
  Loop(ServeGeneration initial, ReloadFunction reload, std::function<void(const std::string&)> log, bool verbose)
      : settings_(initial.settings),
        reload_(std::move(reload)),
        log_(std::move(log)),
        verbose_(verbose),
        client_log_(log_),
        control_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        lookups_(std::move(initial.source), initial.settings, log_, &metrics_) {}

  Status Run(std::vector<Listener> listeners, std::optional<Listener> metrics_listener);
  void RequestStop() {
    stop_requested_ = true;
    Poke();
  }
  void RequestReload() {
    reload_requested_ = true;
    Poke();
  }

 private:
  void Poke() {
    uint64_t one = 1;
    (void)!write(control_.get(), &one, sizeof one);
  }
  void Watch(int fd, uint32_t events);
  void HandleSignals();
  void HandleControl();
  void DoReload();
  void Accept(int listen_fd);
  void OnClientEvent(int fd, uint32_t events);
  bool Service(Conn& c, std::string* why);
  void DeliverAnswer(const std::string& domain, const std::string& reply);
  void CloseConn(int fd, const std::string& why, bool noteworthy);
  void SetAccepting(bool on);
  void BusyTurns();
  void Sweep(int64_t now);
  static bool Noteworthy(const std::string& why) { return why.rfind("malformed", 0) == 0; }

  ServeSettings settings_;  // limits and max_connections change on reload
  ReloadFunction reload_;
  std::function<void(const std::string&)> log_;
  bool verbose_;
  ClientLog client_log_;
  OwnedFd control_;  // Stop() and Reload() from other threads
  OwnedFd signals_;
  OwnedFd wake_;     // the lookup pool: answers finished
  OwnedFd epoll_;
  ServeMetrics metrics_;
  LookupPool lookups_;  // after wake_ and metrics_: its threads stop before they go
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> reload_requested_{false};
  bool running_ = true;
  std::set<int> listen_fds_;
  std::map<int, std::unique_ptr<Conn>> conns_;
  std::map<std::string, std::set<int>> awaiting_;  // domain -> connections waiting for it
  uint64_t next_id_ = kRefreshOwner + 1;
  std::deque<std::pair<int, uint64_t>> busy_;  // (fd, id) of connections with requests read, in turn order
  bool accepting_ = true;  // false: listeners out of epoll until the next sweep (no descriptors)
};

void SocketmapServer::Loop::Watch(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
}

Status SocketmapServer::Loop::Run(std::vector<Listener> listeners, std::optional<Listener> metrics_listener) {
  if (settings_.handle_signals) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, nullptr);  // before threads start: they inherit it
    signal(SIGPIPE, SIG_IGN);
    signals_.Reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (signals_.get() < 0) return Status::Unavailable(std::string("signalfd: ") + strerror(errno));
  }
  wake_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  epoll_.Reset(epoll_create1(EPOLL_CLOEXEC));
  if (wake_.get() < 0 || epoll_.get() < 0 || control_.get() < 0)
    return Status::Unavailable(std::string("cannot set up the event loop: ") + strerror(errno));
  if (Status s = lookups_.Start(wake_.get()); !s.ok()) return s;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;
  if (metrics_listener) {
    auto body = [this] {
      metrics_.SetCacheEntries(lookups_.CacheSize());
      return metrics_.Exposition();
    };
    metrics_endpoint = std::make_unique<MetricsEndpoint>(std::move(*metrics_listener), body, log_);
    if (Status s = metrics_endpoint->Start(); !s.ok()) {
      lookups_.Stop();
      return s;
    }
  }

  for (const Listener& l : listeners) {
    Watch(l.fd(), EPOLLIN);
    listen_fds_.insert(l.fd());
    log_("listening on " + l.spec());
  }
  if (signals_.get() >= 0) Watch(signals_.get(), EPOLLIN);
  Watch(wake_.get(), EPOLLIN);
  Watch(control_.get(), EPOLLIN);

  int64_t last_sweep = ServeNow();
  while (running_) {
    epoll_event events[kMaxEventsPerWait];
    int n = epoll_wait(epoll_.get(), events, kMaxEventsPerWait, busy_.empty() ? 1000 : 0);
    if (n < 0 && errno != EINTR) {
      log_(std::string("epoll: ") + strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == signals_.get()) {
        HandleSignals();
      } else if (fd == control_.get()) {
        HandleControl();
      } else if (fd == wake_.get()) {
        uint64_t v;
        while (read(wake_.get(), &v, sizeof v) == sizeof v) {
        }
        for (auto& [d, reply] : lookups_.TakeFinished()) DeliverAnswer(d, reply);
      } else if (listen_fds_.count(fd)) {
        Accept(fd);
      } else {
        OnClientEvent(fd, events[i].events);
      }
    }
    BusyTurns();
    int64_t now = ServeNow();
    if (now != last_sweep) {
      last_sweep = now;
      Sweep(now);
    }
  }

  for (auto& [fd, c] : conns_) close(fd);
  conns_.clear();
  listeners.clear();  // closes them, removes UNIX sockets' files
  metrics_endpoint.reset();
  lookups_.Stop();
  return Status::Ok();
}

void SocketmapServer::Loop::HandleSignals() {
  signalfd_siginfo si;
  while (read(signals_.get(), &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGHUP) {
      DoReload();
    } else {
      log_("stopping");
      running_ = false;
    }
  }
}

void SocketmapServer::Loop::HandleControl() {
  uint64_t v;
  while (read(control_.get(), &v, sizeof v) == sizeof v) {
  }
  if (reload_requested_.exchange(false)) DoReload();
  if (stop_requested_.exchange(false)) {
    log_("stopping");
    running_ = false;
  }
}

void SocketmapServer::Loop::DoReload() {
  Result<ServeGeneration> fresh = reload_ ? reload_() : Result<ServeGeneration>(Status::Error("no reload"));
  metrics_.CountReload(fresh.ok());
  if (!fresh.ok()) {
    log_("reload failed, keeping the old configuration: " + fresh.error());
    return;
  }
  lookups_.SetSource(std::move(fresh.value().source));
  settings_.limits = fresh.value().settings.limits;
  settings_.max_connections = fresh.value().settings.max_connections;
  log_("configuration reloaded");
}

void SocketmapServer::Loop::Accept(int listen_fd) {
  for (;;) {
    int c = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Level-triggered: the pending connection would wake us at once,
        // again and again. Wait for the next sweep instead.
        client_log_(std::string("cannot accept connections for now: ") + strerror(errno));
        SetAccepting(false);
      }
      return;
    }
    if (conns_.size() >= settings_.max_connections) {
      // Closed at once: left in the backlog it would wait, and hold its
      // client, for nothing.
      close(c);
      metrics_.CountRejected();
      client_log_("connection limit reached (serve_max_connections, at most " +
                  std::to_string(settings_.max_connections) + " connections): new connection closed");
      continue;
    }
    // Kernel buffers as small as the limits: what a client that does not
    // read can make us hold there is bounded too, and the back-pressure
    // starts soon (autotuning would allow megabytes).
    int sndbuf = static_cast<int>(settings_.limits.max_output_buffer);
    int rcvbuf = static_cast<int>(settings_.limits.max_query_size + kReadChunk);
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    conns_[c] = std::make_unique<Conn>(c, next_id_++, settings_.limits);
    metrics_.CountAccepted();
    Watch(c, EPOLLIN);
  }
}

void SocketmapServer::Loop::OnClientEvent(int fd, uint32_t ev) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  bool readable = (ev & EPOLLIN) && c.sc.WantsInput() && !c.busy;
  if ((ev & (EPOLLERR | EPOLLHUP)) && !readable) {
    CloseConn(fd, "hangup", false);
    return;
  }
  if (readable) {
    char buf[kReadChunk];
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      CloseConn(fd, "", false);
      return;
    }
    if (got > 0) c.sc.Receive(std::string_view(buf, static_cast<size_t>(got)), ServeNow());
  }
  std::string why;
  if (!Service(c, &why)) CloseConn(fd, why, Noteworthy(why));
}

// Takes at most kRequestsPerTurn requests, sends what the socket accepts,
// then watches the connection for what it can do next. A connection with
// more requests already read is "busy": it is not read any further and
// takes its next turn after every connection that epoll reports meanwhile
// (one turn each, round-robin, at most kBusySlice per loop), so that a
// client one request at a time (as Postfix's) is served at once however
// much others pipeline. False: close it, for *why.
bool SocketmapServer::Loop::Service(Conn& c, std::string* why) {
  int64_t now = ServeNow();
  size_t taken = 0, sent = 0;
  while (taken < kRequestsPerTurn) {
    auto next = c.sc.NextRequest(now);
    if (!next.ok()) {
      *why = "malformed request: " + next.error();
      metrics_.CountMalformed();
      return false;
    }
    if (!next.value()) break;
    ++taken;
    metrics_.CountRequest();
    auto key = SocketmapKey(*next.value());
    std::string domain;
    std::optional<std::string> reply;
    if (!key.ok()) {
      reply = "PERM " + key.error();
    } else {
      reply = ImmediateReply(key.value(), &domain);
      if (!reply) {
        reply = lookups_.Cached(domain);
        if (reply) {
          metrics_.CountCacheHit();
        } else {
          metrics_.CountCacheMiss();
        }
      }
    }
    if (reply) {
      c.sc.Reply(*reply);
    } else {
      c.sc.Await(domain, now + settings_.lookup_timeout);
      awaiting_[domain].insert(c.fd);
      lookups_.Request(domain, c.id);
    }
  }
  while (!c.sc.Output().empty()) {
    std::string_view out = c.sc.Output();
    ssize_t n = send(c.fd, out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.sc.Sent(static_cast<size_t>(n), now);
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    *why = std::string("write failed: ") + strerror(errno);
    return false;
  }
  // Requests may wait in what was read (or room was just made for them).
  // A turn that neither took nor sent anything found only a partial one.
  bool more = c.sc.WantsInput() && c.sc.buffered_input() > 0 && (taken > 0 || sent > 0);
  if (more && !c.busy) {
    c.busy = true;
    busy_.emplace_back(c.fd, c.id);
  } else if (!more) {
    c.busy = false;  // a stale entry in busy_ is skipped
  }
  uint32_t want = (c.sc.WantsInput() && !c.busy ? EPOLLIN : 0u) |
                  (c.sc.Output().empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
  if (want != c.events) {
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = c.fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd, &ev);
    c.events = want;
  }
  return true;
}

void SocketmapServer::Loop::DeliverAnswer(const std::string& domain, const std::string& reply) {
  auto it = awaiting_.find(domain);
  if (it == awaiting_.end()) return;
  std::set<int> fds = std::move(it->second);
  awaiting_.erase(it);
  for (int fd : fds) {
    auto c = conns_.find(fd);
    if (c == conns_.end() || !c->second->sc.Resolved(domain, reply)) continue;
    std::string why;
    if (!Service(*c->second, &why)) CloseConn(fd, why, false);
  }
}

void SocketmapServer::Loop::CloseConn(int fd, const std::string& why, bool noteworthy) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  if (!why.empty() && (noteworthy || verbose_)) client_log_("connection closed: " + why);
  for (const std::string& d : it->second->sc.Awaited()) {
    auto a = awaiting_.find(d);
    if (a == awaiting_.end()) continue;
    a->second.erase(fd);
    if (a->second.empty()) awaiting_.erase(a);
  }
  // Its lookups not started are dropped, unless someone else waits too.
  for (const std::string& d : lookups_.Cancel(it->second->id)) {
    auto a = awaiting_.find(d);
    if (a == awaiting_.end()) continue;
    auto other = conns_.find(*a->second.begin());
    if (other != conns_.end()) lookups_.Request(d, other->second->id);
  }
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns_.erase(it);
  metrics_.CountClosed();
}

void SocketmapServer::Loop::SetAccepting(bool on) {
  if (on == accepting_) return;
  accepting_ = on;
  for (int l : listen_fds_) {
    if (on) {
      Watch(l, EPOLLIN);
    } else {
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, l, nullptr);
    }
  }
}

// Busy connections' turns, round-robin, for at most kBusySlice.
void SocketmapServer::Loop::BusyTurns() {
  auto slice_end = std::chrono::steady_clock::now() + kBusySlice;
  while (!busy_.empty() && std::chrono::steady_clock::now() < slice_end) {
    auto [fd, id] = busy_.front();
    busy_.pop_front();
    auto it = conns_.find(fd);
    if (it == conns_.end() || it->second->id != id || !it->second->busy) continue;
    it->second->busy = false;
    std::string why;
    if (!Service(*it->second, &why)) CloseConn(fd, why, Noteworthy(why));
  }
}

// Once a second: slow senders, idle or stalled connections, slow lookups;
// listeners back in after a shortage of descriptors.
void SocketmapServer::Loop::Sweep(int64_t now) {
  SetAccepting(true);
  std::vector<std::pair<int, std::string>> doomed;
  for (auto& [fd, c] : conns_) {
    std::vector<std::string> expired = c->sc.ExpireLookups(now);
    if (!expired.empty()) {
      metrics_.CountLookupTimeouts(expired.size());
      // No longer waiting for those (unless another request still is).
      std::vector<std::string> still = c->sc.Awaited();
      for (const std::string& d : expired) {
        auto a = awaiting_.find(d);
        if (a == awaiting_.end() || std::find(still.begin(), still.end(), d) != still.end()) continue;
        a->second.erase(fd);
        if (a->second.empty()) awaiting_.erase(a);
      }
      std::string why;
      if (!Service(*c, &why)) {
        doomed.emplace_back(fd, why);
        continue;
      }
    }
    std::string why = c->sc.TimedOut(now);
    if (!why.empty()) doomed.emplace_back(fd, why);
  }
  for (auto& [fd, why] : doomed) CloseConn(fd, why, why.rfind("idle", 0) != 0);
}

SocketmapServer::SocketmapServer(ServeGeneration initial, ReloadFunction reload,
                                 std::function<void(const std::string&)> log, bool verbose) {
  // One log line at a time, whichever thread writes it.
  auto mu = std::make_shared<std::mutex>();
  auto serialized = [mu, log = std::move(log)](const std::string& s) {
    std::lock_guard<std::mutex> l(*mu);
    log(s);
  };
  loop_ = std::make_unique<Loop>(std::move(initial), std::move(reload), serialized, verbose);
}

SocketmapServer::~SocketmapServer() = default;

Status SocketmapServer::Run(std::vector<Listener> listeners, std::optional<Listener> metrics) {
  return loop_->Run(std::move(listeners), std::move(metrics));
}
void SocketmapServer::Stop() { loop_->RequestStop(); }
void SocketmapServer::Reload() { loop_->RequestReload(); }

}  // namespace mxsec
