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
// Promises: a malformed or oversized netstring, or a client that takes
// longer than kRequestTimeout to send one request, closes that connection
// and nothing else; a lookup slower than kLookupTimeout is answered TEMP
// (Postfix defers, never sends in clear); SIGHUP reloads the configuration
// (a bad one is logged and the old one kept); SIGTERM/SIGINT stop cleanly.
// In resolver mode the resolver's self-check (does it validate DNSSEC?)
// runs at start, on SIGHUP and every kResolverCheckInterval seconds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "cli_internal.h"
#include "mxsec/domain_name.h"
#include "mxsec/socketmap.h"

namespace mxsec {
namespace {

constexpr int kAnswerTtl = 300;        // seconds an answer is served from memory
constexpr int kRefreshBefore = 60;     // refresh answers this long before they expire
constexpr int kTempAnswerTtl = 15;     // TEMP answers are retried soon
constexpr int kRequestTimeout = 10;    // seconds to receive one whole request
constexpr int kIdleTimeout = 300;      // seconds a connection may sit idle between requests
constexpr int kLookupTimeout = 20;     // seconds before a waiting request gets TEMP
constexpr size_t kMaxConnections = 4096;
constexpr size_t kWorkers = 16;
constexpr int kResolverCheckInterval = 300;  // seconds between self-checks of the resolver
constexpr int kStsRefreshInterval = 3600;    // seconds between MTA-STS cache refresh runs (mta_sts_refresh.h)

using Clock = std::chrono::steady_clock;
int64_t NowSec() { return std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count(); }

void Log(const std::string& s) {
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  std::cerr << "mxsec: serve: " << s << std::endl;
}

struct Listener {
  std::string spec;
  int fd = -1;
};

Result<Listener> OpenListener(const std::string& spec) {
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
    if (l.fd < 0 || bind(l.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(l.fd, 1024) != 0)
      return Status::Error(spec + ": " + strerror(errno));
    chmod(path.c_str(), 0666);  // Postfix's smtp runs as another user; the map answers public facts
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

  // Queues a lookup unless one for the domain is already under way; the
  // answer comes back through TakeFinished() after a write to the eventfd.
  void Request(const std::string& domain) {
    std::lock_guard<std::mutex> l(mu_);
    if (!inflight_.insert(domain).second) return;
    queue_.push_back(domain);
    work_cv_.notify_one();
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
        work_cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        domain = queue_.front();
        queue_.pop_front();
        rt = rt_;
      }
      DomainPolicy p = rt->engine->Resolve(domain);
      if (!p.override_warning.empty()) Log("warning: " + p.override_warning);
      std::string reply = PostfixPolicyReply(p);
      {
        std::lock_guard<std::mutex> l(mu_);
        // Decided under a configuration that SIGHUP replaced meanwhile: the
        // clients waiting for it get it, but it is not kept as an answer.
        if (rt_ == rt) {
          Answer& a = answers_[domain];
          a.reply = reply;
          a.expires = NowSec() + (reply.rfind("TEMP", 0) == 0 ? kTempAnswerTtl : kAnswerTtl);
          a.used_since_refresh = false;
        }
        inflight_.erase(domain);
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
            if (it->second.used_since_refresh && !inflight_.count(it->first)) {
              inflight_.insert(it->first);
              queue_.push_back(it->first);
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
  std::set<std::string> inflight_;
  std::deque<std::string> queue_;
  std::vector<std::pair<std::string, std::string>> finished_;
  std::vector<std::thread> workers_;
  std::thread refresher_;
  std::thread sts_refresher_;
  int wake_fd_ = -1;
  bool stop_ = false;
  int64_t last_check_ = NowSec();  // RunServe checks before the first lookup
};

struct Conn {
  int fd = -1;
  NetstringReader reader;
  std::string out;
  std::deque<std::pair<std::string, int64_t>> waiting;  // domains awaited, in request order, with deadline
  std::deque<std::string> ready;                        // replies ready, in request order (aligned with waiting)
  int64_t request_started = 0;                          // when the current partial request began (0: none)
  int64_t last_activity = 0;
  bool closing = false;
};

// Builds the reply for a request key, or marks that it needs a lookup.
// Returns the reply, or nullopt with *domain set for a lookup.
std::optional<std::string> ImmediateReply(const std::string& key, std::string* domain) {
  // Only next-hop domains: parent-domain probes (".example.org"), bracketed
  // hosts and host:port forms get no policy from us.
  if (key.empty() || key[0] == '.' || key[0] == '[' || key.find(':') != std::string::npos) return "NOTFOUND ";
  auto n = NormalizeHostName(key);
  if (!n.ok()) return "NOTFOUND ";
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
  // descriptor the hard limit allows.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  auto rt = std::make_shared<Runtime>();
  Status built = BuildRuntime(cfg_in, rt.get());
  if (!built.ok()) return Fail(EX_CONFIG, built.message());
  CheckResolver(rt.get(), "serve: ", g.verbose > 0);

  std::vector<Listener> listeners;
  for (const std::string& s : specs) {
    auto l = OpenListener(s);
    if (!l.ok()) return Fail(EX_UNAVAILABLE, "serve: cannot listen on " + l.error());
    listeners.push_back(l.value());
  }

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

  std::map<int, std::unique_ptr<Conn>> conns;
  std::map<std::string, std::set<int>> awaiting;  // domain -> connections waiting for it

  auto close_conn = [&](int fd, const std::string& why) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    if (!why.empty() && g.verbose) Log("connection closed: " + why);
    for (auto& [d, w] : it->second->waiting) awaiting[d].erase(fd);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(it);
  };
  auto flush = [&](Conn& c) {
    // Move replies that are ready, in order, to the output buffer.
    while (!c.waiting.empty() && !c.ready.empty() && !c.ready.front().empty()) {
      c.out += EncodeNetstring(c.ready.front());
      c.ready.pop_front();
      c.waiting.pop_front();
    }
    while (!c.out.empty()) {
      ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      return false;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | (c.out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
    ev.data.fd = c.fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
    return true;
  };
  auto deliver_answer = [&](const std::string& domain, const std::string& reply) {
    auto it = awaiting.find(domain);
    if (it == awaiting.end()) return;
    std::set<int> fds = std::move(it->second);
    awaiting.erase(it);
    for (int fd : fds) {
      auto c = conns.find(fd);
      if (c == conns.end()) continue;
      for (size_t k = 0; k < c->second->waiting.size(); ++k)
        if (c->second->waiting[k].first == domain && c->second->ready[k].empty()) c->second->ready[k] = reply;
      if (!flush(*c->second)) close_conn(fd, "write failed");
    }
  };

  bool running = true;
  int64_t last_sweep = NowSec();
  while (running) {
    epoll_event events[256];
    int n = epoll_wait(ep, events, 256, 1000);
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
          if (c < 0) break;
          if (conns.size() >= kMaxConnections) {
            close(c);
            continue;
          }
          auto conn = std::make_unique<Conn>();
          conn->fd = c;
          conn->last_activity = NowSec();
          conns[c] = std::move(conn);
          add(c, EPOLLIN);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      if (events[i].events & (EPOLLERR | EPOLLHUP) && !(events[i].events & EPOLLIN)) {
        close_conn(fd, "hangup");
        continue;
      }
      if (events[i].events & EPOLLOUT) {
        if (!flush(c)) {
          close_conn(fd, "write failed");
          continue;
        }
      }
      if (!(events[i].events & EPOLLIN)) continue;
      char buf[4096];
      ssize_t got = recv(fd, buf, sizeof buf, 0);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        close_conn(fd, "");
        continue;
      }
      if (got < 0) continue;
      c.last_activity = NowSec();
      if (c.request_started == 0) c.request_started = c.last_activity;
      c.reader.Feed(std::string_view(buf, static_cast<size_t>(got)));
      bool bad = false;
      for (;;) {
        auto next = c.reader.Next();
        if (!next.ok()) {
          Log("malformed request, closing the connection: " + next.error());
          bad = true;
          break;
        }
        if (!next.value()) break;
        c.request_started = c.reader.buffered() ? NowSec() : 0;
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
          c.waiting.emplace_back("", 0);
          c.ready.push_back(*reply);
        } else {
          c.waiting.emplace_back(domain, NowSec() + kLookupTimeout);
          c.ready.emplace_back();
          awaiting[domain].insert(fd);
          resolver.Request(domain);
        }
      }
      if (bad) {
        close_conn(fd, "malformed");
        continue;
      }
      if (!flush(c)) close_conn(fd, "write failed");
    }

    // Timeouts: slow senders, idle connections, lookups that take too long.
    int64_t now = NowSec();
    if (now != last_sweep) {
      last_sweep = now;
      std::vector<int> doomed;
      for (auto& [fd, c] : conns) {
        if (c->request_started && now - c->request_started > kRequestTimeout && c->reader.buffered()) {
          doomed.push_back(fd);
          continue;
        }
        if (c->waiting.empty() && c->out.empty() && now - c->last_activity > kIdleTimeout) {
          doomed.push_back(fd);
          continue;
        }
        bool changed = false;
        for (size_t k = 0; k < c->waiting.size(); ++k) {
          if (c->ready[k].empty() && c->waiting[k].second && now > c->waiting[k].second) {
            c->ready[k] = "TEMP policy lookup for " + c->waiting[k].first + " timed out";
            changed = true;
          }
        }
        if (changed && !flush(*c)) doomed.push_back(fd);
      }
      for (int fd : doomed) close_conn(fd, "timeout");
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
