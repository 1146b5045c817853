// metrics_http.cc - see metrics_http.h.
#include "mxsec/serve/metrics_http.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

namespace mxsec {
namespace {

std::string Response(const char* status, const std::string& type, const std::string& body) {
  return std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::string Plain(const char* status) { return Response(status, "text/plain; charset=utf-8", std::string(status) + "\n"); }

using Deadline = std::chrono::steady_clock::time_point;

// Milliseconds left until `deadline` (0 when past).
int MillisLeft(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

bool WaitFor(int fd, short events, Deadline deadline) {
  pollfd p{fd, events, 0};
  int left;
  while ((left = MillisLeft(deadline)) > 0) {
    int n = poll(&p, 1, left);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
  return false;
}

}  // namespace

std::string MetricsHttpResponse(std::string_view head, const std::function<std::string()>& body) {
  std::string_view line = head.substr(0, head.find("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0)
    return Plain("400 Bad Request");
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (target != "/metrics" && target.rfind("/metrics?", 0) != 0) return Plain("404 Not Found");
  if (method != "GET" && method != "HEAD") return Plain("405 Method Not Allowed");
  std::string r = Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body());
  if (method == "HEAD") r.resize(r.find("\r\n\r\n") + 4);
  return r;
}

MetricsEndpoint::MetricsEndpoint(Listener listener, std::function<std::string()> body,
                                 std::function<void(const std::string&)> log)
    : listener_(std::move(listener)), body_(std::move(body)), log_(std::move(log)) {}

MetricsEndpoint::~MetricsEndpoint() {
  Stop();
  if (stop_fd_ >= 0) close(stop_fd_);
}

Status MetricsEndpoint::Start() {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return Status::Unavailable(std::string("metrics: eventfd: ") + strerror(errno));
  try {
    thread_ = std::thread([this] { Serve(); });
  } catch (const std::system_error& e) {
    return Status::Unavailable(std::string("metrics: cannot start its thread: ") + e.what());
  }
  log_("metrics on " + listener_.spec());
  return Status::Ok();
}

void MetricsEndpoint::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof one);
  thread_.join();
}

void MetricsEndpoint::Serve() {
  for (;;) {
    pollfd p[2] = {{stop_fd_, POLLIN, 0}, {listener_.fd(), POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log_(std::string("metrics: poll: ") + strerror(errno));
      return;
    }
    if (p[0].revents) return;
    int fd = accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      // Out of descriptors and the like: let the moment pass rather than spin.
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) usleep(100000);
      continue;
    }
    Exchange(fd);
    close(fd);
  }
}

void MetricsEndpoint::Exchange(int fd) {
  Deadline deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kMetricsExchangeTimeout);
  std::string head;
  size_t end;
  while ((end = head.find("\r\n\r\n")) == std::string::npos) {
    if (head.size() >= kMetricsMaxRequestHead) {
      head.clear();  // answered 400 below
      end = 0;
      break;
    }
    if (!WaitFor(fd, POLLIN, deadline)) return;
    char buf[1024];
    ssize_t n = recv(fd, buf, std::min(sizeof buf, kMetricsMaxRequestHead - head.size()), 0);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    head.append(buf, static_cast<size_t>(n));
  }
  std::string out = MetricsHttpResponse(std::string_view(head).substr(0, end), body_);
  size_t sent = 0;
  while (sent < out.size()) {
    if (!WaitFor(fd, POLLOUT, deadline)) return;
    ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

}  // namespace mxsec
