// https_client_test.cc - the limits of the hardened HTTPS client
// (https_client.h) that need no TLS server: the address cap and the one
// deadline for every address of a request, for the MTA-STS GET and the
// TLS-RPT POST alike. The TLS paths run against nginx and a Python server
// in the integration tests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "loopback.h"
#include "mxsec/policy/https_client.h"
#include "mxsec/policy/mta_sts.h"

using namespace mxsec;

namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A TCP server on 127.0.0.1 that accepts every connection, counts it and
// never sends a byte: reachable, silent (the TLS handshake stalls).
class SilentServer {
 public:
  SilentServer() {
    fd_ = mxsec_test::BindLoopback(SOCK_STREAM, &port_);
    REQUIRE(listen(fd_, 64) == 0);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        held_.push_back(c);
        ++accepted;
      }
    });
  }
  ~SilentServer() {
    stop_ = true;
    thread_.join();
    for (int c : held_) close(c);
    close(fd_);
  }
  uint16_t port() const { return port_; }
  std::atomic<int> accepted{0};

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<int> held_;  // only the accept thread touches it until it is joined
  std::thread thread_;
};

}  // namespace

TEST_CASE("https: at most max_addresses addresses are tried, and the error says how many") {
  SilentServer server;
  HttpsOptions opt;
  opt.connect_timeout_ms = 150;
  opt.total_timeout_ms = 20000;
  HttpsRequest req;
  req.host = "tlsrpt.example";
  req.port = server.port();
  req.path = "/v1/report";
  req.post = true;
  req.body = "x";
  req.content_type = "application/tlsrpt+gzip";
  req.want_body = false;
  req.addresses.assign(20, "127.0.0.1");
  Result<HttpsResponse> r = HttpsClient(opt).Perform(req);
  REQUIRE_FALSE(r.ok());
  INFO(r.error());
  CHECK(Contains(r.error(), "(8 of 20 addresses tried)"));
  CHECK(server.accepted.load() == static_cast<int>(kHttpsMaxAddresses));
}

TEST_CASE("https: the MTA-STS fetch tries at most kHttpsMaxAddresses addresses") {
  SilentServer server;
  StsFetchOptions opt;
  opt.port = server.port();
  opt.connect_timeout_ms = 150;
  opt.total_timeout_ms = 20000;
  std::vector<StsFetchResult> r =
      NewCurlStsFetcher(opt)->FetchMany({{"example.com", std::vector<std::string>(20, "127.0.0.1")}});
  REQUIRE(r.size() == 1);
  INFO(r[0].error);
  CHECK_FALSE(r[0].ok);
  CHECK(server.accepted.load() == static_cast<int>(kHttpsMaxAddresses));
}

TEST_CASE("https: one deadline bounds a request over all its addresses") {
  SilentServer server;
  HttpsOptions opt;
  opt.connect_timeout_ms = 5000;  // longer than the deadline: each address could take it all
  opt.total_timeout_ms = 1000;
  HttpsRequest req;
  req.host = "tlsrpt.example";
  req.port = server.port();
  req.post = true;
  req.body = "report";
  req.content_type = "application/tlsrpt+gzip";
  req.addresses = {"127.0.0.1", "127.0.0.1", "127.0.0.1"};
  auto t0 = std::chrono::steady_clock::now();
  Result<HttpsResponse> r = HttpsClient(opt).Perform(req);
  const double elapsed = SecondsSince(t0);
  REQUIRE_FALSE(r.ok());
  INFO(r.error());
  CHECK(elapsed >= 0.9);
  CHECK(elapsed < 2.5);
  CHECK((Contains(r.error(), "timed out") || Contains(r.error(), "Timeout")));
  CHECK(server.accepted.load() == 1);
}

TEST_CASE("https: bad requests fail without network") {
  HttpsClient client{HttpsOptions{}};
  std::vector<HttpsRequest> reqs(4);
  reqs[0].host = "evil.example/x";
  reqs[0].addresses = {"127.0.0.1"};
  reqs[1].host = "ok.example";
  reqs[1].path = "/a b";
  reqs[1].addresses = {"127.0.0.1"};
  reqs[2].host = "ok.example";
  reqs[3].host = "ok.example";
  reqs[3].addresses = {"localhost"};
  auto r = client.PerformMany(reqs);
  REQUIRE(r.size() == 4);
  CHECK(Contains(r[0].error(), "invalid host name"));
  CHECK(Contains(r[1].error(), "invalid path"));
  CHECK(r[2].error() == "no address for ok.example");
  CHECK(r[3].error() == "invalid address \"localhost\" for ok.example");
}
