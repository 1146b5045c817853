// cli_serve.cc - `mxsec serve`: a socketmap server answering Postfix's
// smtp_tls_policy_maps lookups with mxsec's decision.
//
// One thread runs the event loop (epoll) over every listening socket and
// client connection: reading netstrings, writing replies, enforcing
// per-connection limits. Lookups that need the network go to a pool of
// worker threads; their answers come back through an eventfd. Answers are
// kept in memory for kAnswerTtl seconds and refreshed in the background
// when they have been used and are about to expire, so a busy domain is
// answered from memory. MTA-STS policies live in the shared SQLite cache
// of state_dir, like every other mxsec process; a thread of their own
// refreshes them before they expire every kStsRefreshInterval seconds
// (mta_sts_refresh.h).
//
// Promises: a malformed netstring, one longer than serve_max_query_size, or
// a client that takes longer than kRequestTimeout to send one request,
// closes that connection (logged) and nothing else; a lookup slower than
// kLookupTimeout is answered TEMP (Postfix defers, never sends in clear).
// Every connection is bounded (SocketmapConnection, socketmap.h): at most
// serve_max_pending_requests requests and serve_max_output_buffer bytes of
// replies outstanding, beyond which it is not read (a client that sends
// without reading only fills its own socket buffers); closed after
// serve_idle_timeout without traffic. At most serve_max_connections are
// open (fewer if RLIMIT_NOFILE allows fewer); more are closed at once. The
// workers take lookups round-robin per connection (LookupQueue), so one
// client's pipelined requests cannot hold back another's. UNIX sockets are
// created with serve_socket_mode/_owner/_group and are never reachable by
// anyone else meanwhile. SIGHUP reloads the configuration (a bad one is
// logged and the old one kept; the limits apply to new connections, the
// sockets keep their mode); SIGTERM/SIGINT stop cleanly.
// In resolver mode the resolver's self-check (does it validate DNSSEC?)
// runs at start, on SIGHUP and every kResolverCheckInterval seconds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "cli_internal.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/serve/socketmap.h"

namespace mxsec {
namespace {

constexpr int kAnswerTtl = 300;        // seconds an answer is served from memory
constexpr int kRefreshBefore = 60;     // refresh answers this long before they expire
constexpr int kTempAnswerTtl = 15;     // TEMP answers are retried soon
constexpr int kRequestTimeout = 10;    // seconds to receive one whole request
constexpr int kLookupTimeout = 20;     // seconds before a waiting request gets TEMP
constexpr size_t kWorkers = 16;
// Descriptors kept free of client connections: listeners, the event loop's
// own, and each worker's DNS sockets, HTTPS connection and SQLite files.
constexpr size_t kReservedFds = 64 + kWorkers * 8;
constexpr int kMaxLogLinesPerSecond = 20;  // about clients; the rest are counted
constexpr size_t kReadChunk = 4096;        // bytes read from a client per event
constexpr size_t kRequestsPerTurn = 8;     // requests of one connection per turn
constexpr auto kBusySlice = std::chrono::microseconds(1000);  // per loop, for busy connections' turns
constexpr int kResolverCheckInterval = 300;  // seconds between self-checks of the resolver
constexpr int kStsRefreshInterval = 3600;    // seconds between MTA-STS cache refresh runs (mta_sts_refresh.h)

using Clock = std::chrono::steady_clock;
int64_t NowSec() { return std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count(); }

void Log(const std::string& s) {
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  std::cerr << "mxsec: serve: " << s << std::endl;
}

// Logs about clients, which a flood of them must not turn into a flood of
// lines: kMaxLogLinesPerSecond, then a count of the ones left out.
class ClientLog {
 public:
  void operator()(const std::string& s) {
    int64_t now = NowSec();
    if (now != second_) {
      if (dropped_) Log(std::to_string(dropped_) + " more messages about clients in the last second not logged");
      second_ = now;
      lines_ = dropped_ = 0;
    }
    if (lines_++ < kMaxLogLinesPerSecond) {
      Log(s);
    } else {
      ++dropped_;
    }
  }

 private:
  int64_t second_ = 0;
  int lines_ = 0;
  int dropped_ = 0;
};

struct Listener {
  std::string spec;
  int fd = -1;
};

// Who may connect to UNIX sockets.
struct SocketAccess {
  mode_t mode = 0660;
  uid_t uid = static_cast<uid_t>(-1);  // -1: unchanged
  gid_t gid = static_cast<gid_t>(-1);
};

Result<SocketAccess> ResolveSocketAccess(const Config& cfg) {
  SocketAccess a;
  a.mode = static_cast<mode_t>(cfg.serve_socket_mode);
  auto numeric = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; };
  if (!cfg.serve_socket_owner.empty()) {
    if (numeric(cfg.serve_socket_owner)) {
      a.uid = static_cast<uid_t>(std::stoul(cfg.serve_socket_owner));
    } else {
      passwd pw, *res = nullptr;
      std::vector<char> buf(16384);
      if (getpwnam_r(cfg.serve_socket_owner.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || !res)
        return Status::Error("serve_socket_owner: no user \"" + cfg.serve_socket_owner + "\"");
      a.uid = pw.pw_uid;
    }
  }
  if (!cfg.serve_socket_group.empty()) {
    if (numeric(cfg.serve_socket_group)) {
      a.gid = static_cast<gid_t>(std::stoul(cfg.serve_socket_group));
    } else {
      group gr, *res = nullptr;
      std::vector<char> buf(65536);
      if (getgrnam_r(cfg.serve_socket_group.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res)
        return Status::Error("serve_socket_group: no group \"" + cfg.serve_socket_group + "\"");
      a.gid = gr.gr_gid;
    }
  }
  return a;
}

Result<Listener> OpenListener(const std::string& spec, const SocketAccess& access) {
  Listener l;
  l.spec = spec;
  if (spec.rfind("unix:", 0) == 0) {
    std::string path = spec.substr(5);
    sockaddr_un sa{};
    if (path.empty() || path.size() >= sizeof sa.sun_path) return Status::Error(spec + ": bad socket path");
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return Status::Error(spec + ": exists and is not a socket");
      unlink(path.c_str());
    }
    l.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l.fd < 0) return Status::Error(spec + ": " + strerror(errno));
    // bind() creates the socket file with the umask's mode: 0600 here, so
    // that no one else can connect before its owner, group and mode are
    // set (no worker thread runs yet to create files meanwhile).
    mode_t old_mask = umask(0177);
    int rc = bind(l.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    int err = errno;
    umask(old_mask);
    if (rc != 0) return Status::Error(spec + ": " + strerror(err));
    if ((access.uid != static_cast<uid_t>(-1) || access.gid != static_cast<gid_t>(-1)) &&
        lchown(path.c_str(), access.uid, access.gid) != 0)
      return Status::Error(spec + ": cannot set the owner or group (serve_socket_owner, serve_socket_group): " +
                           strerror(errno));
    if (chmod(path.c_str(), access.mode) != 0)
      return Status::Error(spec + ": cannot set the mode (serve_socket_mode): " + strerror(errno));
    if (listen(l.fd, 1024) != 0) return Status::Error(spec + ": " + strerror(errno));
    return l;
  }
  if (spec.rfind("inet:", 0) != 0) return Status::Error(spec + ": expected inet:ADDR:PORT or unix:PATH");
  std::string rest = spec.substr(5);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return Status::Error(spec + ": missing port");
  std::string addr = rest.substr(0, colon), port_s = rest.substr(colon + 1);
  if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  int port = atoi(port_s.c_str());
  if (port <= 0 || port > 65535 || port_s.find_first_not_of("0123456789") != std::string::npos)
    return Status::Error(spec + ": bad port");
  sockaddr_storage ss{};
  socklen_t len;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *s4;
  } else if (inet_pton(AF_INET6, addr.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *s6;
  } else {
    return Status::Error(spec + ": \"" + addr + "\" is not an IP address");
  }
  l.fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (l.fd < 0 || bind(l.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(l.fd, 1024) != 0)
    return Status::Error(spec + ": " + strerror(errno));
  return l;
}

struct Answer {
  std::string reply;
  int64_t expires = 0;
  bool used_since_refresh = false;
};

constexpr uint64_t kRefreshOwner = 0;  // connections are numbered from 1

// The shared state between the event loop and the workers.
class Lookups {
 public:
  explicit Lookups(std::shared_ptr<Runtime> rt) : rt_(std::move(rt)) {}

  void SetRuntime(std::shared_ptr<Runtime> rt) {
    std::lock_guard<std::mutex> l(mu_);
    rt_ = std::move(rt);
    answers_.clear();
    last_check_ = NowSec();  // the caller checked the new resolver
  }

  // The cached answer, if fresh.
  std::optional<std::string> Cached(const std::string& domain) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = answers_.find(domain);
    if (it == answers_.end() || it->second.expires <= NowSec()) return std::nullopt;
    it->second.used_since_refresh = true;
    return it->second.reply;
  }

  // Queues a lookup for connection `owner` unless one for the domain is
  // already queued or under way; the answer comes back through
  // TakeFinished() after a write to the eventfd.
  void Request(const std::string& domain, uint64_t owner) {
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.Push(domain, owner)) work_cv_.notify_one();
  }

  // The connection is gone: its lookups not yet started are dropped and
  // returned (others may wait for them too: the caller queues them again).
  std::vector<std::string> Cancel(uint64_t owner) {
    std::lock_guard<std::mutex> l(mu_);
    return queue_.Cancel(owner);
  }

  void Start(int wake_fd) {
    wake_fd_ = wake_fd;
    for (size_t i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Work(); });
    refresher_ = std::thread([this] { Refresh(); });
    sts_refresher_ = std::thread([this] { RefreshSts(); });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      work_cv_.notify_all();
      stop_cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    refresher_.join();
    sts_refresher_.join();
  }

  // Answers finished since the last call (domain -> reply).
  std::vector<std::pair<std::string, std::string>> TakeFinished() {
    std::lock_guard<std::mutex> l(mu_);
    auto out = std::move(finished_);
    finished_.clear();
    return out;
  }

 private:
  void Work() {
    for (;;) {
      std::string domain;
      std::shared_ptr<Runtime> rt;
      {
        std::unique_lock<std::mutex> l(mu_);
        work_cv_.wait(l, [&] { return stop_ || queue_.queued() > 0; });
        if (stop_) return;
        domain = *queue_.Pop();
        rt = rt_;
      }
      DomainPolicy p = rt->engine->Resolve(domain);
      if (!p.override_warning.empty()) Log("warning: " + p.override_warning);
      const SocketmapAnswer answer = PostfixPolicyAnswer(p);
      const std::string reply = answer.Encode();
      {
        std::lock_guard<std::mutex> l(mu_);
        // Decided under a configuration that SIGHUP replaced meanwhile: the
        // clients waiting for it get it, but it is not kept as an answer.
        if (rt_ == rt) {
          Answer& a = answers_[domain];
          a.reply = reply;
          a.expires = NowSec() + (answer.kind == SocketmapAnswer::Kind::kTemp ? kTempAnswerTtl : kAnswerTtl);
          a.used_since_refresh = false;
        }
        queue_.Done(domain);
        finished_.emplace_back(domain, reply);
      }
      uint64_t one = 1;
      (void)!write(wake_fd_, &one, sizeof one);
    }
  }

  // Re-runs the resolver's self-check every kResolverCheckInterval: a
  // resolver whose validation is switched off while we run must not turn
  // DANE domains quietly insecure. When the verdict changes, every
  // remembered answer is dropped, since it was decided under the old one.
  void MaybeCheckResolver() {
    std::shared_ptr<Runtime> rt;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (NowSec() - last_check_ < kResolverCheckInterval) return;
      last_check_ = NowSec();
      rt = rt_;
    }
    if (!rt->resolver_mode) return;
    std::optional<ResolverCheck> before = rt->resolver_mode->resolver_check();
    std::optional<ResolverCheck> after = rt->resolver_mode->RunSelfCheck(std::time(nullptr));
    if (!after) return;
    bool changed = !before || before->status != after->status;
    if (changed || after->status != ResolverCheckStatus::kValidates) {
      Log(std::string(after->status == ResolverCheckStatus::kValidates ? "" : "warning: ") + after->summary);
    }
    if (changed) {
      std::lock_guard<std::mutex> l(mu_);
      if (rt_ == rt) answers_.clear();
    }
  }

  // Renews answers that were used and expire soon, so that busy domains
  // never wait for DNS or HTTPS; unused answers are let go.
  void Refresh() {
    for (;;) {
      MaybeCheckResolver();
      {
        std::unique_lock<std::mutex> l(mu_);
        if (stop_cv_.wait_for(l, std::chrono::seconds(5), [&] { return stop_; })) return;
        int64_t now = NowSec();
        for (auto it = answers_.begin(); it != answers_.end();) {
          if (it->second.expires - now < kRefreshBefore) {
            if (it->second.used_since_refresh && !queue_.Busy(it->first)) {
              queue_.Push(it->first, kRefreshOwner);
              work_cv_.notify_one();
            } else if (it->second.expires <= now) {
              it = answers_.erase(it);
              continue;
            }
          }
          ++it;
        }
      }
    }
  }

  // Refreshes cached MTA-STS policies before they expire (RFC 8461 §3.3),
  // on a thread of its own so that a slow policy host never delays answers.
  void RefreshSts() {
    for (;;) {
      std::shared_ptr<Runtime> rt;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stop_) return;
        rt = rt_;
      }
      StsRefreshReport report = rt->engine->RefreshStsCache(StsRefreshOptions());
      if (!report.error.empty()) Log("warning: MTA-STS refresh: " + report.error);
      for (const StsRefreshOutcome& d : report.domains) {
        if (!d.refreshed) Log("MTA-STS policy of " + d.domain + " not refreshed (kept, retried later): " + d.error);
      }
      std::unique_lock<std::mutex> l(mu_);
      if (stop_cv_.wait_for(l, std::chrono::seconds(kStsRefreshInterval), [&] { return stop_; })) return;
    }
  }

  std::mutex mu_;
  // Two condition variables: with one shared by the workers and the
  // refresher, notify_one() for new work could wake the refresher, whose
  // predicate ignores the queue, and the lookup would wait for the next
  // notification (seen as a lookup answered TEMP after kLookupTimeout).
  std::condition_variable work_cv_;  // workers: queue_ not empty, or stop_
  std::condition_variable stop_cv_;  // the refresher: stop_
  std::shared_ptr<Runtime> rt_;
  std::map<std::string, Answer> answers_;
  LookupQueue queue_;  // lookups waiting for a worker or under way
  std::vector<std::pair<std::string, std::string>> finished_;
  std::vector<std::thread> workers_;
  std::thread refresher_;
  std::thread sts_refresher_;
  int wake_fd_ = -1;
  bool stop_ = false;
  int64_t last_check_ = NowSec();  // RunServe checks before the first lookup
};

struct Conn {
  Conn(int f, uint64_t i, const SocketmapLimits& limits) : fd(f), id(i), sc(limits, NowSec()) {}
  int fd;
  uint64_t id;  // the owner of its lookups in the queue (descriptors are reused)
  SocketmapConnection sc;
  uint32_t events = EPOLLIN;  // what epoll watches for it
  bool busy = false;          // requests already read wait for their turn
};

SocketmapLimits LimitsOf(const Config& cfg) {
  SocketmapLimits l;
  l.max_query_size = static_cast<size_t>(cfg.serve_max_query_size);
  l.max_pending_requests = static_cast<size_t>(cfg.serve_max_pending_requests);
  l.max_output_buffer = static_cast<size_t>(cfg.serve_max_output_buffer);
  l.request_timeout = kRequestTimeout;
  l.idle_timeout = cfg.serve_idle_timeout;
  return l;
}

// serve_max_connections, or fewer when the descriptor limit cannot hold
// that many besides kReservedFds: past it accept() would fail with EMFILE
// and workers could not open their sockets.
size_t ConnectionCap(const Config& cfg) {
  size_t want = static_cast<size_t>(cfg.serve_max_connections);
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return want;
  size_t nofile = static_cast<size_t>(rl.rlim_cur);
  size_t room = nofile > 2 * kReservedFds ? nofile - kReservedFds : nofile / 2;
  if (want > room) {
    Log("warning: serve_max_connections = " + std::to_string(want) + " but RLIMIT_NOFILE is " +
        std::to_string(nofile) + ": at most " + std::to_string(room) + " connections");
    return room;
  }
  return want;
}

// Builds the reply for a request key, or marks that it needs a lookup.
// Returns the reply, or nullopt with *domain set for a lookup.
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

}  // namespace

int RunServe(const GlobalOptions& g, const Config& cfg_in, const std::vector<std::string>& args) {
  std::vector<std::string> specs;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--listen" && i + 1 < args.size()) {
      specs.push_back(args[++i]);
    } else if (args[i].rfind("--listen=", 0) == 0) {
      specs.push_back(args[i].substr(9));
    } else {
      return Fail(EX_USAGE, "serve: unknown argument \"" + args[i] + "\" (use --listen inet:ADDR:PORT|unix:PATH)");
    }
  }
  if (specs.empty()) return Fail(EX_USAGE, "serve: no --listen given");

  // Thousands of Postfix processes may hold a connection each: use every
  // descriptor the hard limit allows (ConnectionCap() keeps within it).
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  auto rt = std::make_shared<Runtime>();
  Status built = BuildRuntime(cfg_in, rt.get());
  if (!built.ok()) return Fail(EX_CONFIG, built.message());
  auto access = ResolveSocketAccess(cfg_in);
  if (!access.ok()) return Fail(EX_CONFIG, "serve: " + access.error());
  CheckResolver(rt.get(), "serve: ", g.verbose > 0);

  std::vector<Listener> listeners;
  for (const std::string& s : specs) {
    auto l = OpenListener(s, access.value());
    if (!l.ok()) return Fail(EX_UNAVAILABLE, "serve: cannot listen on " + l.error());
    listeners.push_back(l.value());
  }
  SocketmapLimits limits = LimitsOf(cfg_in);
  size_t max_conns = ConnectionCap(cfg_in);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);  // before threads start: they inherit it
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (sfd < 0 || wake < 0 || ep < 0) return Fail(EX_OSERR, std::string("serve: ") + strerror(errno));

  Lookups resolver(rt);
  resolver.Start(wake);

  auto add = [&](int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  };
  std::set<int> listen_fds;
  for (const Listener& l : listeners) {
    add(l.fd, EPOLLIN);
    listen_fds.insert(l.fd);
    Log("listening on " + l.spec);
  }
  add(sfd, EPOLLIN);
  add(wake, EPOLLIN);

  ClientLog client_log;
  std::map<int, std::unique_ptr<Conn>> conns;
  std::map<std::string, std::set<int>> awaiting;  // domain -> connections waiting for it
  uint64_t next_id = kRefreshOwner + 1;
  std::deque<std::pair<int, uint64_t>> busy;  // (fd, id) of connections with requests read, in turn order
  bool accepting = true;  // false: listeners out of epoll until the next sweep (no descriptors)

  auto close_conn = [&](int fd, const std::string& why, bool noteworthy) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    if (!why.empty() && (noteworthy || g.verbose)) client_log("connection closed: " + why);
    for (const std::string& d : it->second->sc.Awaited()) {
      auto a = awaiting.find(d);
      if (a == awaiting.end()) continue;
      a->second.erase(fd);
      if (a->second.empty()) awaiting.erase(a);
    }
    // Its lookups not started are dropped, unless someone else waits too.
    for (const std::string& d : resolver.Cancel(it->second->id)) {
      auto a = awaiting.find(d);
      if (a == awaiting.end()) continue;
      auto other = conns.find(*a->second.begin());
      if (other != conns.end()) resolver.Request(d, other->second->id);
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(it);
  };

  // Takes at most kRequestsPerTurn requests, sends what the socket
  // accepts, then watches the connection for what it can do next. A
  // connection with more requests already read is "busy": it is not read
  // any further and takes its next turn after every connection that epoll
  // reports meanwhile (one turn each, round-robin, at most kBusySlice per
  // loop), so that a client one request at a time (as Postfix's) is served
  // at once however much others pipeline. False: close it, for *why.
  auto service = [&](Conn& c, std::string* why) {
    int64_t now = NowSec();
    size_t taken = 0, sent = 0;
    while (taken < kRequestsPerTurn) {
      auto next = c.sc.NextRequest(now);
      if (!next.ok()) {
        *why = "malformed request: " + next.error();
        return false;
      }
      if (!next.value()) break;
      ++taken;
      auto key = SocketmapKey(*next.value());
      std::string domain;
      std::optional<std::string> reply;
      if (!key.ok()) {
        reply = "PERM " + key.error();
      } else {
        reply = ImmediateReply(key.value(), &domain);
        if (!reply) reply = resolver.Cached(domain);
      }
      if (reply) {
        c.sc.Reply(*reply);
      } else {
        c.sc.Await(domain, now + kLookupTimeout);
        awaiting[domain].insert(c.fd);
        resolver.Request(domain, c.id);
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
      busy.emplace_back(c.fd, c.id);
    } else if (!more) {
      c.busy = false;  // a stale entry in `busy` is skipped
    }
    uint32_t want = (c.sc.WantsInput() && !c.busy ? EPOLLIN : 0u) |
                    (c.sc.Output().empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
    if (want != c.events) {
      epoll_event ev{};
      ev.events = want;
      ev.data.fd = c.fd;
      epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
      c.events = want;
    }
    return true;
  };

  auto deliver_answer = [&](const std::string& domain, const std::string& reply) {
    auto it = awaiting.find(domain);
    if (it == awaiting.end()) return;
    std::set<int> fds = std::move(it->second);
    awaiting.erase(it);
    for (int fd : fds) {
      auto c = conns.find(fd);
      if (c == conns.end() || !c->second->sc.Resolved(domain, reply)) continue;
      std::string why;
      if (!service(*c->second, &why)) close_conn(fd, why, false);
    }
  };

  auto set_accepting = [&](bool on) {
    if (on == accepting) return;
    accepting = on;
    for (int l : listen_fds) {
      if (on) {
        add(l, EPOLLIN);
      } else {
        epoll_ctl(ep, EPOLL_CTL_DEL, l, nullptr);
      }
    }
  };

  bool running = true;
  int64_t last_sweep = NowSec();
  while (running) {
    epoll_event events[256];
    int n = epoll_wait(ep, events, 256, busy.empty() ? 1000 : 0);
    if (n < 0 && errno != EINTR) {
      Log(std::string("epoll: ") + strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == sfd) {
        signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo == SIGHUP) {
            Config cfg;
            Status s = LoadConfig(g.config_path, g.config_explicit, g.overrides, &cfg);
            auto fresh = std::make_shared<Runtime>();
            if (s.ok()) s = BuildRuntime(cfg, fresh.get());
            if (s.ok()) {
              CheckResolver(fresh.get(), "serve: ", g.verbose > 0);
              resolver.SetRuntime(fresh);
              limits = LimitsOf(cfg);
              max_conns = ConnectionCap(cfg);
              Log("configuration reloaded");
            } else {
              Log("reload failed, keeping the old configuration: " + s.message());
            }
          } else {
            Log("stopping");
            running = false;
          }
        }
        continue;
      }
      if (fd == wake) {
        uint64_t v;
        while (read(wake, &v, sizeof v) == sizeof v) {
        }
        for (auto& [d, reply] : resolver.TakeFinished()) deliver_answer(d, reply);
        continue;
      }
      if (listen_fds.count(fd)) {
        for (;;) {
          int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
              // Level-triggered: the pending connection would wake us at
              // once, again and again. Wait for the next sweep instead.
              client_log(std::string("cannot accept connections for now: ") + strerror(errno));
              set_accepting(false);
            }
            break;
          }
          if (conns.size() >= max_conns) {
            // Closed at once: left in the backlog it would wait, and hold
            // its client, for nothing.
            close(c);
            client_log("connection limit reached (serve_max_connections, at most " + std::to_string(max_conns) +
                       " connections): new connection closed");
            continue;
          }
          // Kernel buffers as small as the limits: what a client that does
          // not read can make us hold there is bounded too, and the
          // back-pressure starts soon (autotuning would allow megabytes).
          int sndbuf = static_cast<int>(limits.max_output_buffer);
          int rcvbuf = static_cast<int>(limits.max_query_size + kReadChunk);
          setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
          setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
          conns[c] = std::make_unique<Conn>(c, next_id++, limits);
          add(c, EPOLLIN);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      uint32_t ev = events[i].events;
      bool readable = (ev & EPOLLIN) && c.sc.WantsInput() && !c.busy;
      if ((ev & (EPOLLERR | EPOLLHUP)) && !readable) {
        close_conn(fd, "hangup", false);
        continue;
      }
      if (readable) {
        char buf[kReadChunk];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          close_conn(fd, "", false);
          continue;
        }
        if (got > 0) c.sc.Receive(std::string_view(buf, static_cast<size_t>(got)), NowSec());
      }
      std::string why;
      if (!service(c, &why)) close_conn(fd, why, why.rfind("malformed", 0) == 0);
    }

    // Busy connections' turns, round-robin, for at most kBusySlice.
    auto slice_end = std::chrono::steady_clock::now() + kBusySlice;
    while (!busy.empty() && std::chrono::steady_clock::now() < slice_end) {
      auto [fd, id] = busy.front();
      busy.pop_front();
      auto it = conns.find(fd);
      if (it == conns.end() || it->second->id != id || !it->second->busy) continue;
      it->second->busy = false;
      std::string why;
      if (!service(*it->second, &why)) close_conn(fd, why, why.rfind("malformed", 0) == 0);
    }

    // Timeouts: slow senders, idle or stalled connections, slow lookups.
    int64_t now = NowSec();
    if (now != last_sweep) {
      last_sweep = now;
      set_accepting(true);
      std::vector<std::pair<int, std::string>> doomed;
      for (auto& [fd, c] : conns) {
        std::vector<std::string> expired = c->sc.ExpireLookups(now);
        if (!expired.empty()) {
          // No longer waiting for those (unless another request still is).
          std::vector<std::string> still = c->sc.Awaited();
          for (const std::string& d : expired) {
            auto a = awaiting.find(d);
            if (a == awaiting.end() || std::find(still.begin(), still.end(), d) != still.end()) continue;
            a->second.erase(fd);
            if (a->second.empty()) awaiting.erase(a);
          }
          std::string why;
          if (!service(*c, &why)) {
            doomed.emplace_back(fd, why);
            continue;
          }
        }
        std::string why = c->sc.TimedOut(now);
        if (!why.empty()) doomed.emplace_back(fd, why);
      }
      for (auto& [fd, why] : doomed) close_conn(fd, why, why.rfind("idle", 0) != 0);
    }
  }

  for (auto& [fd, c] : conns) close(fd);
  for (const Listener& l : listeners) {
    close(l.fd);
    if (l.spec.rfind("unix:", 0) == 0) unlink(l.spec.substr(5).c_str());
  }
  resolver.Stop();
  return EX_OK;
}

}  // namespace mxsec
