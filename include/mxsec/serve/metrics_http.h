// metrics_http.h - the HTTP listener of `serve --metrics`: answers
// "GET /metrics" with the Prometheus text exposition, for scrapers.
//
// It is not a web server: one connection at a time on a thread of its own,
// a request head of at most kMetricsMaxRequestHead bytes, the whole exchange
// within kMetricsExchangeTimeout, then the connection is closed. Anything
// else gets 400, 404 or 405 and is closed too. A slow or hostile scraper
// delays other scrapes by at most kMetricsExchangeTimeout and never the
// socketmap service.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "mxsec/base/status.h"
#include "mxsec/serve/listener.h"

namespace mxsec {

inline constexpr size_t kMetricsMaxRequestHead = 8192;  // bytes up to the blank line
inline constexpr int kMetricsExchangeTimeout = 5;       // seconds per connection, reading and writing

// The whole HTTP/1.0 response to a request head (request line and header
// fields, the blank line excluded); `body` is called only for GET /metrics.
std::string MetricsHttpResponse(std::string_view head, const std::function<std::string()>& body);

class MetricsEndpoint {
 public:
  MetricsEndpoint(Listener listener, std::function<std::string()> body, std::function<void(const std::string&)> log);
  ~MetricsEndpoint();  // Stop()
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  Status Start();
  void Stop();

 private:
  void Serve();
  void Exchange(int fd);

  Listener listener_;
  std::function<std::string()> body_;
  std::function<void(const std::string&)> log_;
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace mxsec
