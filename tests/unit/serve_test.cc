// serve_test.cc - the socketmap server (serve/server.h) over a UNIX socket
// with a fake PolicySource, and its answer cache (serve/answer_cache.h).
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <mutex>
#include <thread>

#include "mxsec/serve/answer_cache.h"
#include "mxsec/serve/metrics.h"
#include "mxsec/serve/metrics_http.h"
#include "mxsec/serve/server.h"

using namespace mxsec;

namespace {

// Decides by the domain's first label: "dane*" must use DANE, "sts*" is
// opportunistic, "slow*" waits until Release(), anything else defers.
class FakeSource : public PolicySource {
 public:
  explicit FakeSource(std::string dane_answer_host = "mx.example") : mx_host_(std::move(dane_answer_host)) {}
  DomainPolicy Resolve(const std::string& domain) override {
    {
      std::unique_lock<std::mutex> l(mu_);
      ++calls_[domain];
      if (domain.rfind("slow", 0) == 0) cv_.wait(l, [&] { return released_; });
    }
    DomainPolicy p;
    p.domain = domain;
    if (domain.rfind("dane", 0) == 0) {
      p.verdict = Verdict::kMustTls;
      p.mechanism = Mechanism::kDane;
      MxPolicy m;
      m.host = mx_host_;
      m.tls = encrypt_only_ ? HostTls::kEncrypt : HostTls::kDane;
      p.mx = {m};
    } else if (domain.rfind("sts", 0) == 0) {
      p.verdict = Verdict::kOpportunistic;
    } else {
      p.verdict = Verdict::kDefer;
      p.status_code = "4.4.3";
      p.reason = "no answer";
    }
    return p;
  }
  StsRefreshReport RefreshStsCache() override { return {}; }
  std::optional<ResolverCheck> LastResolverCheck() override { return std::nullopt; }
  std::optional<ResolverCheck> CheckResolver(std::time_t) override { return std::nullopt; }

  int Calls(const std::string& d) {
    std::lock_guard<std::mutex> l(mu_);
    return calls_[d];
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool encrypt_only_ = false;

 private:
  std::string mx_host_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::map<std::string, int> calls_;
};

// A server on a UNIX socket in a scratch directory, run on a thread.
class RunningServer {
 public:
  explicit RunningServer(std::shared_ptr<FakeSource> source, ServeSettings settings = TestSettings(),
                         ReloadFunction reload = nullptr, bool with_metrics = false)
      : source_(source) {
    char tmpl[] = "/tmp/mxsec-serve-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/s.sock";
    auto listener = OpenListener("unix:" + path_, SocketAccess());
    REQUIRE(listener.ok());
    auto log = [this](const std::string& s) {
      std::lock_guard<std::mutex> l(log_mu_);
      log_ += s + "\n";
    };
    server_ = std::make_unique<SocketmapServer>(ServeGeneration{source, settings}, reload, log, false);
    std::vector<Listener> ls;
    ls.push_back(std::move(listener).value());
    std::optional<Listener> metrics;
    if (with_metrics) {
      auto m = OpenListener("unix:" + metrics_path(), SocketAccess());
      REQUIRE(m.ok());
      metrics = std::move(m).value();
    }
    thread_ = std::thread([this, ls = std::move(ls), m = std::move(metrics)]() mutable {
      run_status_ = server_->Run(std::move(ls), std::move(m));
    });
    WaitForLog("listening on");
  }
  ~RunningServer() {
    Stop();
    std::filesystem::remove_all(dir_);
  }
  void Stop() {
    if (!thread_.joinable()) return;
    source_->Release();
    server_->Stop();
    thread_.join();
  }
  static ServeSettings TestSettings() {
    ServeSettings s;
    s.handle_signals = false;
    s.workers = 4;
    s.lookup_timeout = 1;
    s.limits.idle_timeout = 30;
    return s;
  }
  SocketmapServer& server() { return *server_; }
  const std::string& path() const { return path_; }
  std::string metrics_path() const { return dir_ + "/metrics.sock"; }
  Status run_status() const { return run_status_; }
  std::string Log() {
    std::lock_guard<std::mutex> l(log_mu_);
    return log_;
  }
  bool WaitForLog(const std::string& text, int max_ms = 5000) {
    for (int i = 0; i < max_ms / 10; ++i) {
      if (Log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  std::shared_ptr<FakeSource> source_;
  std::string dir_, path_;
  std::unique_ptr<SocketmapServer> server_;
  std::thread thread_;
  Status run_status_;
  std::mutex log_mu_;
  std::string log_;
};

// A blocking client with a 5 s receive timeout.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Client() { close(fd_); }
  bool connected() const { return connected_; }
  void SendRaw(const std::string& bytes) { CHECK(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size())); }
  void Ask(const std::string& key) { SendRaw(EncodeNetstring("tls " + key)); }
  // Everything until the server closes the connection.
  std::string ReadAll() {
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd_, buf, sizeof buf, 0)) > 0) all.append(buf, static_cast<size_t>(n));
    return all;
  }
  // The next reply's payload; "<eof>" when the server closed the connection.
  std::string Reply() {
    NetstringReader r;
    for (;;) {
      auto n = r.Next();
      if (!n.ok()) return "<malformed>";
      if (n.value()) return *n.value();
      char c;
      ssize_t got = recv(fd_, &c, 1, 0);
      if (got == 0) return "<eof>";
      if (got < 0) return "<timeout>";
      r.Feed(std::string_view(&c, 1));
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

}  // namespace

TEST_CASE("serve: a lookup is answered, then from memory; keys that are not next-hop domains need no lookup") {
  auto source = std::make_shared<FakeSource>();
  RunningServer s(source);
  Client c(s.path());
  REQUIRE(c.connected());
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK dane-only");
  c.Ask("DANE.example.");  // the same domain, in normal form
  CHECK(c.Reply() == "OK dane-only");
  CHECK(source->Calls("dane.example") == 1);
  c.Ask("sts.example");
  CHECK(c.Reply() == "NOTFOUND ");
  c.Ask("other.example");
  CHECK(c.Reply() == "TEMP 4.4.3 no answer");
  for (const char* key : {".dane.example", "[192.0.2.1]", "dane.example:25", "bad..name"}) {
    c.Ask(key);
    CHECK_MESSAGE(c.Reply() == "NOTFOUND ", key);
  }
  c.SendRaw(EncodeNetstring("nokey"));
  CHECK(c.Reply().rfind("PERM ", 0) == 0);
  CHECK(source->Calls(".dane.example") == 0);
}

TEST_CASE("serve: a malformed request closes that connection and no other") {
  auto source = std::make_shared<FakeSource>();
  RunningServer s(source);
  Client good(s.path()), bad(s.path());
  bad.SendRaw("x:abc,");
  CHECK(bad.Reply() == "<eof>");
  good.Ask("dane.example");
  CHECK(good.Reply() == "OK dane-only");
  CHECK(s.WaitForLog("connection closed: malformed request"));
}

TEST_CASE("serve: a slow lookup is answered TEMP after lookup_timeout; other domains are not held back") {
  auto source = std::make_shared<FakeSource>();
  RunningServer s(source);
  Client slow(s.path()), fast(s.path());
  auto start = std::chrono::steady_clock::now();
  slow.Ask("slow.example");
  fast.Ask("dane.example");
  CHECK(fast.Reply() == "OK dane-only");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(900));
  CHECK(slow.Reply() == "TEMP policy lookup for slow.example timed out");
}

TEST_CASE("serve: Reload takes the new source and drops the answers in memory; a failed reload keeps the old") {
  auto first = std::make_shared<FakeSource>();
  auto second = std::make_shared<FakeSource>();
  second->encrypt_only_ = true;
  int reloads = 0;
  ReloadFunction reload = [&]() -> Result<ServeGeneration> {
    if (++reloads == 1) return Status::Invalid("line 3: unknown key");
    return ServeGeneration{second, RunningServer::TestSettings()};
  };
  RunningServer s(first, RunningServer::TestSettings(), reload);
  Client c(s.path());
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK dane-only");
  s.server().Reload();
  REQUIRE(s.WaitForLog("reload failed, keeping the old configuration: line 3: unknown key"));
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK dane-only");
  CHECK(first->Calls("dane.example") == 1);
  s.server().Reload();
  REQUIRE(s.WaitForLog("configuration reloaded"));
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK encrypt");
  CHECK(second->Calls("dane.example") == 1);
}

TEST_CASE("serve: connections beyond max_connections are closed at once, and logged") {
  auto source = std::make_shared<FakeSource>();
  ServeSettings settings = RunningServer::TestSettings();
  settings.max_connections = 1;
  RunningServer s(source, settings);
  Client first(s.path());
  first.Ask("dane.example");
  CHECK(first.Reply() == "OK dane-only");
  Client second(s.path());
  CHECK(second.Reply() == "<eof>");
  CHECK(s.WaitForLog("connection limit reached (serve_max_connections, at most 1 connections)"));
  first.Ask("dane.example");
  CHECK(first.Reply() == "OK dane-only");
}

TEST_CASE("serve: Stop ends Run, closes connections and removes the socket file") {
  auto source = std::make_shared<FakeSource>();
  RunningServer s(source);
  Client c(s.path());
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK dane-only");
  s.Stop();
  CHECK(s.run_status().ok());
  CHECK(c.Reply() == "<eof>");
  struct stat st;
  CHECK(lstat(s.path().c_str(), &st) != 0);
  CHECK(s.Log().find("stopping") != std::string::npos);
}

TEST_CASE("serve: listeners refuse bad specs and files that are not sockets") {
  CHECK(OpenListener("tcp:1.2.3.4:5", SocketAccess()).error().find("expected inet:ADDR:PORT or unix:PATH") !=
        std::string::npos);
  CHECK(OpenListener("inet:127.0.0.1", SocketAccess()).error().find("missing port") != std::string::npos);
  CHECK(OpenListener("inet:127.0.0.1:99999", SocketAccess()).error().find("bad port") != std::string::npos);
  CHECK(OpenListener("inet:localhost:25", SocketAccess()).error().find("is not an IP address") != std::string::npos);
  char tmpl[] = "/tmp/mxsec-serve-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string file = std::string(tmpl) + "/plain";
  FILE* f = fopen(file.c_str(), "w");
  REQUIRE(f);
  fclose(f);
  CHECK(OpenListener("unix:" + file, SocketAccess()).error().find("exists and is not a socket") != std::string::npos);
  {
    SocketAccess a;
    a.mode = 0640;
    auto l = OpenListener("unix:" + std::string(tmpl) + "/s", a);
    REQUIRE(l.ok());
    struct stat st;
    REQUIRE(lstat((std::string(tmpl) + "/s").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
  }
  struct stat st;
  CHECK(lstat((std::string(tmpl) + "/s").c_str(), &st) != 0);  // removed with its listener
  std::filesystem::remove_all(tmpl);
}

TEST_CASE("serve: answers expire (TEMP ones sooner); used ones are renewed before, unused ones let go") {
  AnswerCacheTtls ttls;  // 300 s, TEMP 15 s, renewed within 60 s of expiry
  AnswerCache cache(ttls);
  cache.Put("a.example", "OK dane-only", false, 1000);
  cache.Put("t.example", "TEMP 4.4.3 x", true, 1000);
  CHECK(cache.Get("t.example", 1014) == "TEMP 4.4.3 x");
  CHECK_FALSE(cache.Get("t.example", 1015));
  CHECK(cache.Get("a.example", 1299) == "OK dane-only");
  CHECK_FALSE(cache.Get("a.example", 1300));

  cache.Clear();
  auto none_busy = [](const std::string&) { return false; };
  cache.Put("used.example", "OK encrypt", false, 2000);
  cache.Put("unused.example", "OK encrypt", false, 2000);
  cache.Put("busy.example", "OK encrypt", false, 2000);
  CHECK(cache.Get("used.example", 2001));
  CHECK(cache.Get("busy.example", 2001));
  CHECK(cache.DueForRefresh(2239, none_busy).empty());  // 61 s left: not yet
  auto busy = [](const std::string& d) { return d == "busy.example"; };
  CHECK(cache.DueForRefresh(2241, busy) == std::vector<std::string>{"used.example"});
  CHECK(cache.DueForRefresh(2300, busy) == std::vector<std::string>{"used.example"});
  // Expired: the one being renewed is kept; the unused one and the one whose
  // lookup is under way anyway (its answer will be stored) are dropped.
  CHECK(cache.size() == 1);
  CHECK_FALSE(cache.Get("unused.example", 2300));
  cache.Put("used.example", "OK dane-only", false, 2300);  // renewed: not used since
  cache.Put("busy.example", "OK dane-only", false, 2300);
  CHECK(cache.DueForRefresh(2560, none_busy).empty());
  CHECK(cache.DueForRefresh(2600, none_busy).empty());
  CHECK(cache.size() == 0);
}

TEST_CASE("serve metrics: GET /metrics gets the exposition; other requests 400, 404, 405; HEAD no body") {
  auto body = [] { return std::string("mxsec_x 1\n"); };
  std::string ok = MetricsHttpResponse("GET /metrics HTTP/1.1\r\nHost: x", body);
  CHECK(ok.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
  CHECK(ok.find("Content-Length: 10\r\n") != std::string::npos);
  CHECK(ok.substr(ok.size() - 10) == "mxsec_x 1\n");
  std::string head = MetricsHttpResponse("HEAD /metrics HTTP/1.0", body);
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
  CHECK(head.find("Content-Length: 10\r\n") != std::string::npos);
  CHECK(MetricsHttpResponse("GET / HTTP/1.1", body).rfind("HTTP/1.0 404 ", 0) == 0);
  CHECK(MetricsHttpResponse("POST /metrics HTTP/1.1", body).rfind("HTTP/1.0 405 ", 0) == 0);
  for (const char* bad : {"", "GET", "GET /metrics", "GET /metrics SPDY/3", "\x16\x03\x01"})
    CHECK_MESSAGE(MetricsHttpResponse(bad, body).rfind("HTTP/1.0 400 ", 0) == 0, bad);
}

TEST_CASE("serve metrics: counters, the answer labels and a cumulative latency histogram") {
  ServeMetrics m;
  DomainPolicy dane;
  dane.verdict = Verdict::kMustTls;
  DomainPolicy sts;
  StsState st;
  st.source = "fetched";
  st.mode = StsMode::kEnforce;
  sts.mta_sts = st;
  m.CountLookup(SocketmapAnswer::Ok("dane-only"), dane, 0.003);
  DomainPolicy relaxed;
  relaxed.local = LocalRule{};
  relaxed.override_warning = "example.org: local policy may overrides DANE";
  m.CountLookup(SocketmapAnswer::Ok("may"), relaxed, 0.001);
  m.CountLookup(SocketmapAnswer::Ok("secure match=mx.example servername=hostname"), sts, 0.3);
  sts.mta_sts->problem = StsProblem::kFetchFailed;
  m.CountLookup(SocketmapAnswer::Temp("4.7.5 x"), sts, 30);
  m.CountRequest();
  m.CountCacheHit();
  m.CountAccepted();
  m.CountAccepted();
  m.CountClosed();
  StsRefreshReport r;
  r.domains.resize(3);
  r.domains[0].refreshed = true;
  m.CountStsRefresh(r);
  ResolverCheck check;
  check.status = ResolverCheckStatus::kNotValidating;
  m.SetResolverCheck(check);
  std::string e = m.Exposition();
  for (const char* line :
       {"# TYPE mxsec_serve_requests_total counter\nmxsec_serve_requests_total 1\n",
        "mxsec_serve_answer_cache_hits_total 1\n", "mxsec_serve_connections_open 1\n",
        "mxsec_serve_connections_accepted_total 2\n", "mxsec_serve_lookups_total{answer=\"dane-only\"} 1\n",
        "mxsec_serve_lookups_total{answer=\"secure\"} 1\n", "mxsec_serve_lookups_total{answer=\"temp\"} 1\n",
        "mxsec_serve_lookups_total{answer=\"notfound\"} 0\n",
        "# TYPE mxsec_serve_lookup_duration_seconds histogram\n",
        "mxsec_serve_lookup_duration_seconds_bucket{le=\"0.005\"} 2\n",
        "mxsec_serve_lookups_total{answer=\"may\"} 1\n", "mxsec_serve_local_rule_lookups_total 1\n",
        "mxsec_serve_policy_overrides_total 1\n",
        "mxsec_serve_lookup_duration_seconds_bucket{le=\"0.25\"} 2\n",
        "mxsec_serve_lookup_duration_seconds_bucket{le=\"0.5\"} 3\n",
        "mxsec_serve_lookup_duration_seconds_bucket{le=\"20\"} 3\n",
        "mxsec_serve_lookup_duration_seconds_bucket{le=\"+Inf\"} 4\n",
        "mxsec_serve_lookup_duration_seconds_sum 30.304\n",
        "mxsec_serve_lookup_duration_seconds_count 4\n",
        "mxsec_serve_mta_sts_lookups_total{outcome=\"fetched\"} 1\n",
        "mxsec_serve_mta_sts_lookups_total{outcome=\"fetch-failed\"} 1\n",
        "mxsec_serve_mta_sts_refresh_runs_total 1\n", "mxsec_serve_mta_sts_refreshes_total{outcome=\"refreshed\"} 1\n",
        "mxsec_serve_mta_sts_refreshes_total{outcome=\"failed\"} 2\n",
        "mxsec_serve_resolver_status{status=\"validates\"} 0\n",
        "mxsec_serve_resolver_status{status=\"not-validating\"} 1\n"})
    CHECK_MESSAGE(e.find(line) != std::string::npos, std::string(line));
  // Every sample line belongs to a metric announced by a TYPE line before it.
  std::istringstream in(e);
  std::string ln, typed;
  while (std::getline(in, ln)) {
    if (ln.rfind("# TYPE ", 0) == 0) {
      typed = ln.substr(7, ln.find(' ', 7) - 7);
    } else if (ln[0] != '#') {
      CHECK_MESSAGE(ln.rfind(typed, 0) == 0, ln);
    }
  }
}

TEST_CASE("serve metrics: a running server counts what it did, scraped over HTTP") {
  auto source = std::make_shared<FakeSource>();
  RunningServer s(source, RunningServer::TestSettings(), nullptr, /*with_metrics=*/true);
  Client c(s.path());
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK dane-only");
  c.Ask("dane.example");
  CHECK(c.Reply() == "OK dane-only");
  c.Ask(".parent.example");
  CHECK(c.Reply() == "NOTFOUND ");
  Client scraper(s.metrics_path());
  scraper.SendRaw("GET /metrics HTTP/1.0\r\n\r\n");
  std::string page = scraper.ReadAll();
  CHECK(page.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  for (const char* line : {"mxsec_serve_requests_total 3\n", "mxsec_serve_answer_cache_hits_total 1\n",
                           "mxsec_serve_answer_cache_misses_total 1\n", "mxsec_serve_answer_cache_entries 1\n",
                           "mxsec_serve_lookups_total{answer=\"dane-only\"} 1\n",
                           "mxsec_serve_connections_open 1\n"})
    CHECK_MESSAGE(page.find(line) != std::string::npos, std::string(line));
  Client slowloris(s.metrics_path());
  slowloris.SendRaw(std::string(kMetricsMaxRequestHead, 'x'));
  CHECK(slowloris.ReadAll().rfind("HTTP/1.0 400 ", 0) == 0);
}
