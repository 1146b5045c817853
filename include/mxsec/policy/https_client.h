// https_client.h - the one HTTPS client of mxsec, shared by the MTA-STS
// policy fetch (RFC 8461 §3.3, a GET) and the TLS-RPT report upload
// (RFC 8460 §3, a POST).
//
// Both talk to a server named by a remote party, possibly through an
// attacker on the path, so every request is bounded and pinned. The client
// promises that a request
//   - connects only to the IP literals the caller resolved with its own DNS
//     (CURLOPT_CONNECT_TO: no DNS of its own, no proxy from the environment,
//     no connection reuse between requests or addresses), trying at most
//     options.max_addresses of them, in order, and the next one only when
//     the previous could not be reached (refused, or no TCP+TLS handshake
//     within the connect timeout);
//   - speaks nothing but HTTPS (CURLOPT_PROTOCOLS_STR), TLS >= 1.2, with the
//     certificate verified for the URL's host against the system store or,
//     when configured, only the given CA file;
//   - never follows a redirect (a 3xx is returned as a status), sends no
//     cookies, asks for no content encoding, and buffers at most
//     options.max_response_bytes of body and kHttpsMaxHeaderBytes of headers;
//   - ends within options.total_timeout_ms from its start, however many
//     addresses it tries (the deadline covers them all);
//   - reports a failure as one printable line naming what went wrong
//     ("127.0.0.1: Connection timed out after 1000 milliseconds (3 of 20
//     addresses tried)", "response larger than 65536 bytes", ...).
// Requests given to one PerformMany run concurrently on a private curl multi
// handle; a client object holds no mutable state and may be used from any
// thread. libcurl is loaded by the first request, not at program start; a
// process that cannot load it gets that reason as the error of every request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mxsec/base/status.h"

namespace mxsec {

// Addresses tried per request by default: a host is rarely published with
// more, and each unreachable one costs up to the connect timeout, so more
// would only spend the deadline on a name a remote party can make as long
// as it likes.
inline constexpr size_t kHttpsMaxAddresses = 8;
// All response header lines of one request together; beyond that the
// request fails (a server has no reason to send more to these clients).
inline constexpr size_t kHttpsMaxHeaderBytes = 16384;

struct HttpsRequest {
  std::string host;                    // the URL's host: LDH name, no trailing dot (certificate name)
  uint16_t port = 443;
  std::string path = "/";              // absolute path and query, printable ASCII without spaces
  std::vector<std::string> addresses;  // IP literals of host from our own DNS; tried in order
  bool post = false;                   // false: GET
  std::string body;                    // POST body
  std::string content_type;            // POST Content-Type header
  // false: the body is not wanted (only the status): reading stops at its
  // first byte, which is not an error.
  bool want_body = true;
};

struct HttpsResponse {
  long status = 0;            // HTTP status code
  std::string content_type;   // Content-Type header as sent (may be empty)
  std::string body;           // 2xx and want_body only: the whole body, at most max_response_bytes
};

struct HttpsOptions {
  std::string ca_file;                   // empty: the system trust store
  long connect_timeout_ms = 10000;       // per address: TCP and TLS handshake
  long total_timeout_ms = 60000;         // the whole request, every address included
  size_t max_addresses = kHttpsMaxAddresses;
  size_t max_response_bytes = 65536;
};

class HttpsClient {
 public:
  explicit HttpsClient(const HttpsOptions& options);
  // Result i belongs to request i. A response is returned whatever its
  // status (the caller judges 3xx, 4xx, ...); an error means no complete
  // answer: unreachable, TLS failure, timeout, oversized response.
  std::vector<Result<HttpsResponse>> PerformMany(const std::vector<HttpsRequest>& requests) const;
  Result<HttpsResponse> Perform(const HttpsRequest& request) const { return PerformMany({request}).front(); }
  const HttpsOptions& options() const { return options_; }

 private:
  HttpsOptions options_;
};

}  // namespace mxsec
