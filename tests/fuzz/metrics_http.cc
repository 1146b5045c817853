// metrics_http.cc - libFuzzer target: the request handling of the metrics
// listener of `mxsec serve` (MetricsHttpResponse, metrics_http.h).
//
// Oracle: no crash or sanitizer report; the response is one of 200, 400,
// 404, 405; 200 only for a request line "GET /metrics..." or
// "HEAD /metrics..." with an HTTP/1.x version, and only then is the body
// asked for; Content-Length is the size of what follows the header (none
// for HEAD).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mxsec/serve/metrics_http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view head(reinterpret_cast<const char*>(data), size);
  if (size > mxsec::kMetricsMaxRequestHead) return 0;  // the listener never reads more
  bool asked = false;
  const std::string body = "mxsec_serve_requests_total 0\n";
  std::string r = mxsec::MetricsHttpResponse(head, [&] {
    asked = true;
    return body;
  });
  const bool ok = r.rfind("HTTP/1.0 200 OK\r\n", 0) == 0;
  if (!ok && r.rfind("HTTP/1.0 400 ", 0) != 0 && r.rfind("HTTP/1.0 404 ", 0) != 0 &&
      r.rfind("HTTP/1.0 405 ", 0) != 0)
    abort();
  if (ok != asked) abort();
  const bool get = head.rfind("GET /metrics", 0) == 0, is_head = head.rfind("HEAD /metrics", 0) == 0;
  if (ok && !get && !is_head) abort();
  size_t end = r.find("\r\n\r\n");
  size_t cl = r.find("Content-Length: ");
  if (end == std::string::npos || cl == std::string::npos || cl > end) abort();
  size_t length = std::strtoul(r.c_str() + cl + 16, nullptr, 10);
  size_t after = r.size() - end - 4;
  if (is_head && ok ? after != 0 : after != length) abort();
  return 0;
}
