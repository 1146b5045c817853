// https_client.cc - the hardened libcurl HTTPS client (https_client.h).
//
// libcurl is loaded the first time a request is made (curl_api.h), so a
// run that makes none does not pay for it. One curl easy handle per request, all on a private multi handle, so that
// the requests of one PerformMany run concurrently and share nothing: no
// connection cache entry, no DNS cache entry, no pinned address. Every
// handle is owned by an RAII wrapper and removed from the multi handle
// before either is freed.
#include "mxsec/policy/https_client.h"

#include <arpa/inet.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "curl_api.h"
#include "mxsec/base/text.h"

namespace mxsec {
namespace {

using SteadyClock = std::chrono::steady_clock;

// libcurl's functions: every use below comes after PerformMany loaded them.
const CurlApi& Curl() { return *LoadCurl(nullptr); }

// Below this much time left, another address could not even complete a
// TCP handshake on a slow path; report the failure we have instead.
constexpr long kMinAttemptMs = 50;

struct EasyDeleter {
  void operator()(CURL* h) const { Curl().easy_cleanup(h); }
};
struct MultiDeleter {
  void operator()(CURLM* m) const { Curl().multi_cleanup(m); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { Curl().slist_free_all(l); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// Server-influenced text (curl's error buffer quotes certificate names and
// TLS alerts) goes into logs and reports: keep it to one printable line of
// bounded length.
std::string Printable(std::string_view s, size_t max = 200) {
  std::string out = PrintableAscii(s, max);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}


bool IsPlainPath(std::string_view p) {
  if (p.empty() || p.front() != '/' || p.size() > 2048) return false;
  for (unsigned char c : p) {
    if (c <= 0x20 || c >= 0x7f || c == '#') return false;
  }
  return true;
}

// Only IP literals: a name here would make curl resolve it with the system
// resolver, outside the DNS view the caller decided on.
bool ConnectTarget(std::string_view addr, std::string* target) {
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  if (addr.empty() || addr.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, addr.data(), addr.size());
  buf[addr.size()] = '\0';
  unsigned char bin[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, buf, bin) == 1) {
    *target = buf;
    return true;
  }
  if (inet_pton(AF_INET6, buf, bin) == 1) {
    *target = std::string("[") + buf + "]";
    return true;
  }
  return false;
}

bool IsTlsError(CURLcode rc) {
  switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
      return true;
    default:
      return false;
  }
}

bool Is2xx(long code) { return code >= 200 && code < 300; }

struct Transfer {
  ~Transfer() {
    if (attached != nullptr) Curl().multi_remove_handle(attached, easy.get());
  }

  const HttpsRequest* request = nullptr;
  Result<HttpsResponse>* result = nullptr;
  size_t max_body = 0;
  size_t tries = 0;                                 // addresses that will be tried (capped)
  size_t address_index = 0;                         // the address being tried
  SlistPtr connect_to;                              // must outlive the transfer using it
  SlistPtr headers;
  EasyPtr easy;                                     // declared after the lists: destroyed first
  CURLM* attached = nullptr;
  std::string body;
  size_t header_bytes = 0;
  bool too_large = false;
  bool headers_too_large = false;
  char errbuf[CURL_ERROR_SIZE] = {};
};

void Fail(Transfer& t, std::string error) { *t.result = Status::Error(std::move(error)); }

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  long code = 0;
  Curl().easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &code);
  // Abort early: a body nobody reads would let a server keep us busy
  // until the deadline.
  if (!Is2xx(code) || !t->request->want_body) return 0;
  // MAXFILESIZE only sees Content-Length; chunked bodies are capped here.
  if (n > t->max_body - t->body.size()) {
    t->too_large = true;
    return 0;
  }
  t->body.append(data, n);
  return n;
}

size_t CountHeader(char*, size_t size, size_t nitems, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nitems;
  t->header_bytes += n;
  if (t->header_bytes > kHttpsMaxHeaderBytes) {
    t->headers_too_large = true;
    return 0;
  }
  return n;
}

class Runner {
 public:
  explicit Runner(const HttpsOptions& o) : o_(o) {}
  bool Setup(Transfer& t);
  bool StartAttempt(Transfer& t, CURLM* multi, SteadyClock::time_point deadline);
  bool Finish(Transfer& t, CURLcode rc, CURLM* multi, SteadyClock::time_point deadline);

 private:
  const HttpsOptions& o_;
};

bool Runner::Setup(Transfer& t) {
  const HttpsRequest& r = *t.request;
  CURL* h = t.easy.get();
  std::string port;  // not ":" + std::to_string(...): GCC 12 warns falsely (-Wrestrict) about that form
  if (r.port != 443) {
    port = ":";
    port += std::to_string(r.port);
  }
  const std::string url = "https://" + r.host + port + r.path;
  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode x) {
    if (rc == CURLE_OK) rc = x;
  };
  set(Curl().easy_setopt(h, CURLOPT_URL, url.c_str()));
  set(Curl().easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https"));
  set(Curl().easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https"));
  set(Curl().easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L));
  // An empty string switches off the proxy environment variables too.
  set(Curl().easy_setopt(h, CURLOPT_PROXY, ""));
  set(Curl().easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  // One connection per attempt: a reused or multiplexed connection could
  // belong to another request's pinned address.
  set(Curl().easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L));
  set(Curl().easy_setopt(h, CURLOPT_FORBID_REUSE, 1L));
  set(Curl().easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
  set(Curl().easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L));
  set(Curl().easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!o_.ca_file.empty()) {
    // A configured CA file replaces the system store rather than adding to
    // it (curl's GnuTLS build would otherwise also read /etc/ssl/certs).
    set(Curl().easy_setopt(h, CURLOPT_CAINFO, o_.ca_file.c_str()));
    set(Curl().easy_setopt(h, CURLOPT_CAPATH, nullptr));
  }
  // A body that is not wanted is never read, so its announced size does
  // not matter.
  if (r.want_body) set(Curl().easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(t.max_body)));
  // No ACCEPT_ENCODING and no decoding: the size cap applies to the bytes
  // the caller sees, and a decompressor is attack surface we do not need.
  // No COOKIEFILE/COOKIEJAR and no NETRC: nothing is remembered or sent
  // that the request does not say.
  set(Curl().easy_setopt(h, CURLOPT_HTTP_CONTENT_DECODING, 0L));
  set(Curl().easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteBody));
  set(Curl().easy_setopt(h, CURLOPT_WRITEDATA, &t));
  set(Curl().easy_setopt(h, CURLOPT_HEADERFUNCTION, CountHeader));
  set(Curl().easy_setopt(h, CURLOPT_HEADERDATA, &t));
  set(Curl().easy_setopt(h, CURLOPT_ERRORBUFFER, t.errbuf));
  set(Curl().easy_setopt(h, CURLOPT_PRIVATE, &t));
  set(Curl().easy_setopt(h, CURLOPT_USERAGENT, "mxsec"));
  if (r.post) {
    std::string ctype = "Content-Type: " + r.content_type;
    t.headers.reset(Curl().slist_append(nullptr, ctype.c_str()));
    if (!t.headers) {
      Fail(t, "out of memory");
      return false;
    }
    set(Curl().easy_setopt(h, CURLOPT_HTTPHEADER, t.headers.get()));
    set(Curl().easy_setopt(h, CURLOPT_POST, 1L));
    set(Curl().easy_setopt(h, CURLOPT_POSTFIELDS, r.body.data()));
    set(Curl().easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size())));
  }
  if (rc != CURLE_OK) {
    Fail(t, "curl setup for " + r.host + ": " + Curl().easy_strerror(rc));
    return false;
  }
  return true;
}

bool Runner::StartAttempt(Transfer& t, CURLM* multi, SteadyClock::time_point deadline) {
  const HttpsRequest& r = *t.request;
  const std::string& addr = r.addresses[t.address_index];
  std::string target;
  if (!ConnectTarget(addr, &target)) {
    Fail(t, "invalid address \"" + Printable(addr, 60) + "\" for " + r.host);
    return false;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  if (left <= 0) {
    Fail(t, "timed out before trying " + Printable(addr, 60));
    return false;
  }
  const std::string port = std::to_string(r.port);
  const std::string entry = r.host + ":" + port + ":" + target + ":" + port;
  SlistPtr list(Curl().slist_append(nullptr, entry.c_str()));
  if (!list) {
    Fail(t, "out of memory");
    return false;
  }
  CURL* h = t.easy.get();
  CURLcode rc = Curl().easy_setopt(h, CURLOPT_CONNECT_TO, list.get());
  // The time left, not a fresh timeout per address: the deadline bounds
  // the request however many addresses it tries.
  if (rc == CURLE_OK) rc = Curl().easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
  if (rc == CURLE_OK) {
    rc = Curl().easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, std::min(o_.connect_timeout_ms, static_cast<long>(left)));
  }
  if (rc != CURLE_OK) {
    Fail(t, std::string("curl setup: ") + Curl().easy_strerror(rc));
    return false;
  }
  t.connect_to = std::move(list);  // the previous list is no longer referenced
  t.body.clear();
  t.header_bytes = 0;
  t.too_large = t.headers_too_large = false;
  t.errbuf[0] = '\0';
  CURLMcode mc = Curl().multi_add_handle(multi, h);
  if (mc != CURLM_OK) {
    Fail(t, std::string("curl: ") + Curl().multi_strerror(mc));
    return false;
  }
  t.attached = multi;
  return true;
}

bool Runner::Finish(Transfer& t, CURLcode rc, CURLM* multi, SteadyClock::time_point deadline) {
  const HttpsRequest& r = *t.request;
  CURL* h = t.easy.get();
  long code = 0;
  Curl().easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  auto response = [&]() {
    HttpsResponse out;
    out.status = code;
    char* ctype = nullptr;
    Curl().easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
    if (ctype != nullptr) out.content_type = Printable(ctype, 200);
    return out;
  };
  if (t.headers_too_large) {
    Fail(t, "response headers larger than " + std::to_string(kHttpsMaxHeaderBytes) + " bytes");
    return true;
  }
  // A status line was received and the body is not wanted (or not 2xx):
  // the status is the answer, whatever happened after it (reading stopped
  // on purpose, or the server stalled or dropped the connection).
  if (code != 0 && (!Is2xx(code) || !r.want_body)) {
    *t.result = response();
    return true;
  }
  if (rc != CURLE_OK) {
    if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      Fail(t, "response larger than " + std::to_string(t.max_body) + " bytes");
      return true;
    }
    // Another address is worth a try when this one refused or did not get
    // through the connection phase (TCP and TLS handshake) in time. A server
    // that answered with a TLS error has given its answer. A timeout of the
    // whole transfer leaves no time to retry: the deadline bounds all tries.
    const bool unreachable = rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT;
    const std::string& addr = r.addresses[t.address_index];
    std::string what = t.errbuf[0] != '\0' ? Printable(t.errbuf) : Curl().easy_strerror(rc);
    if (rc == CURLE_SSL_CACERT_BADFILE) what = "cannot load CA file " + Printable(o_.ca_file);
    if (IsTlsError(rc)) what = "TLS: " + what;
    if (unreachable) what = Printable(addr, 60) + ": " + what;
    if (unreachable && t.address_index + 1 < t.tries &&
        deadline - SteadyClock::now() > std::chrono::milliseconds(kMinAttemptMs)) {
      ++t.address_index;
      return !StartAttempt(t, multi, deadline);
    }
    if (t.address_index > 0 || t.tries < r.addresses.size()) {
      what += " (" + std::to_string(t.address_index + 1);
      if (t.tries < r.addresses.size()) what += " of " + std::to_string(r.addresses.size());
      what += " addresses tried)";
    }
    Fail(t, what);
    return true;
  }
  if (code == 0) {
    Fail(t, "no HTTP status");
    return true;
  }
  HttpsResponse out = response();
  out.body = std::move(t.body);
  *t.result = std::move(out);
  return true;
}

}  // namespace

HttpsClient::HttpsClient(const HttpsOptions& options) : options_(options) {
  const HttpsOptions defaults;
  if (options_.connect_timeout_ms <= 0) options_.connect_timeout_ms = defaults.connect_timeout_ms;
  if (options_.total_timeout_ms <= 0) options_.total_timeout_ms = defaults.total_timeout_ms;
  if (options_.max_addresses == 0) options_.max_addresses = defaults.max_addresses;
  if (options_.max_response_bytes == 0) options_.max_response_bytes = defaults.max_response_bytes;
}

namespace {

// The transfer of `req` (result into `*result`), set up and attached to
// `multi`; null when it failed before any network I/O (the result says
// why).
std::unique_ptr<Transfer> StartTransfer(const HttpsRequest& req, Result<HttpsResponse>* result,
                                        const HttpsOptions& options, Runner& runner, CURLM* multi,
                                        SteadyClock::time_point deadline) {
  auto t = std::make_unique<Transfer>();
  t->request = &req;
  t->result = result;
  t->max_body = options.max_response_bytes;
  t->tries = std::min(req.addresses.size(), options.max_addresses);
  // The host becomes part of a URL and of a CONNECT_TO entry; anything but
  // LDH labels could change what those mean.
  if (!IsLdhName(req.host, 253)) {
    Fail(*t, "invalid host name \"" + Printable(req.host, 60) + "\"");
    return nullptr;
  }
  if (!IsPlainPath(req.path) || req.port == 0) {
    Fail(*t, "invalid path or port for " + req.host);
    return nullptr;
  }
  if (req.addresses.empty()) {
    Fail(*t, "no address for " + req.host);
    return nullptr;
  }
  t->easy.reset(Curl().easy_init());
  if (!t->easy) {
    Fail(*t, "curl: cannot create a handle");
    return nullptr;
  }
  if (!runner.Setup(*t) || !runner.StartAttempt(*t, multi, deadline)) return nullptr;
  return t;
}

// Runs the attached transfers until every one has its result.
void RunTransfers(std::vector<std::unique_ptr<Transfer>>& transfers, Runner& runner, CURLM* multi,
                  SteadyClock::time_point deadline) {
  size_t active = transfers.size();
  auto fail_attached = [&](const std::string& error) {
    for (auto& t : transfers) {
      if (t->attached == nullptr) continue;
      Curl().multi_remove_handle(t->attached, t->easy.get());
      t->attached = nullptr;
      Fail(*t, error);
    }
  };
  while (active > 0) {
    int running = 0;
    CURLMcode mc = Curl().multi_perform(multi, &running);
    if (mc != CURLM_OK) return fail_attached(std::string("curl: ") + Curl().multi_strerror(mc));
    int queued = 0;
    while (CURLMsg* msg = Curl().multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      // msg points into the multi handle: copy what we need before removal.
      CURL* h = msg->easy_handle;
      const CURLcode rc = msg->data.result;
      char* priv = nullptr;
      Curl().easy_getinfo(h, CURLINFO_PRIVATE, &priv);
      auto* t = reinterpret_cast<Transfer*>(priv);
      Curl().multi_remove_handle(multi, h);
      t->attached = nullptr;
      if (runner.Finish(*t, rc, multi, deadline)) --active;
    }
    if (active == 0) break;
    mc = Curl().multi_poll(multi, nullptr, 0, 1000, nullptr);
    if (mc != CURLM_OK) return fail_attached(std::string("curl: ") + Curl().multi_strerror(mc));
  }
}

}  // namespace

std::vector<Result<HttpsResponse>> HttpsClient::PerformMany(const std::vector<HttpsRequest>& requests) const {
  std::vector<Result<HttpsResponse>> results(requests.size(), Result<HttpsResponse>(Status::Error("not run")));
  if (requests.empty()) return results;
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(options_.total_timeout_ms);

  std::string load_error;
  if (LoadCurl(&load_error) == nullptr) {
    for (auto& r : results) r = Status::Error(load_error);
    return results;
  }
  MultiPtr multi(Curl().multi_init());
  if (!multi) {
    for (auto& r : results) r = Status::Error("curl: cannot create a multi handle");
    return results;
  }
  Runner runner(options_);
  // Declared after `multi`, so every easy handle is removed from it and
  // cleaned up before the multi handle goes.
  std::vector<std::unique_ptr<Transfer>> transfers;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto t = StartTransfer(requests[i], &results[i], options_, runner, multi.get(), deadline);
    if (t) transfers.push_back(std::move(t));
  }
  RunTransfers(transfers, runner, multi.get(), deadline);
  return results;
}

}  // namespace mxsec
