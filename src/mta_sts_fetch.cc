// mta_sts_fetch.cc - HTTPS retrieval of MTA-STS policies (RFC 8461 §3.3).
//
// A policy fetch is the one place where mxsec talks HTTP, and the server on
// the other end may be hostile or an attacker in the path. This module
// promises that a fetch
//   - connects only to the addresses the caller resolved (CURLOPT_CONNECT_TO
//     with IP literals: no DNS of its own, no pin shared between transfers,
//     no proxy from the environment, no connection reuse);
//   - speaks nothing but HTTPS with TLS >= 1.2 and a certificate verified for
//     mta-sts.<domain> against the system store or, when configured, only
//     the given CA file;
//   - never follows a redirect, accepts only status 200 with media type
//     text/plain, and never buffers more than kStsMaxPolicyBytes;
//   - ends within the total timeout, however many addresses it tries;
//   - reports failures as one short line, not an exception.
// All requests of one FetchMany run concurrently on a private multi handle,
// so fetcher objects share no mutable state and may be used from any thread
// once InitCurlOnce has run.
#include "mxsec/mta_sts.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mxsec {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Below this much time left, another address could not even complete a
// TCP handshake on a slow path; report the failure we have instead.
constexpr long kMinAttemptMs = 50;

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

std::once_flag g_curl_once;
CURLcode g_curl_init_result = CURLE_FAILED_INIT;

// Server-influenced text (curl's error buffer quotes certificate names and
// TLS alerts, Content-Type is the server's) goes into logs and reports: keep
// it to one printable line of bounded length.
std::string Printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The domain becomes part of a URL and of a CONNECT_TO entry; anything but
// LDH labels could change what those mean.
bool IsPlainHostName(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  char prev = '.';
  for (char c : d) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
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

struct Transfer {
  ~Transfer() {
    if (attached != nullptr) curl_multi_remove_handle(attached, easy.get());
  }

  StsFetchResult* result = nullptr;
  std::string host;                                 // mta-sts.<domain>
  const std::vector<std::string>* addresses = nullptr;
  size_t address_index = 0;                         // the address being tried
  SlistPtr connect_to;                              // must outlive the transfer using it
  EasyPtr easy;                                     // declared after connect_to: destroyed first
  CURLM* attached = nullptr;
  std::string body;
  bool too_large = false;
  char errbuf[CURL_ERROR_SIZE] = {};
};

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  long code = 0;
  curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &code);
  // Abort early: a non-200 body is never used, and reading it would let a
  // server keep us busy until the timeout.
  if (code != 200) return 0;
  // MAXFILESIZE only sees Content-Length; chunked bodies are capped here.
  if (n > kStsMaxPolicyBytes - t->body.size()) {
    t->too_large = true;
    return 0;
  }
  t->body.append(data, n);
  return n;
}

class CurlStsFetcher : public StsFetcher {
 public:
  explicit CurlStsFetcher(const StsFetchOptions& options) : options_(options) {
    if (options_.connect_timeout_ms <= 0) options_.connect_timeout_ms = StsFetchOptions().connect_timeout_ms;
    if (options_.total_timeout_ms <= 0) options_.total_timeout_ms = StsFetchOptions().total_timeout_ms;
    if (options_.port == 0) options_.port = 443;
  }

  std::vector<StsFetchResult> FetchMany(const std::vector<StsFetchRequest>& requests) override;

 private:
  // Sets the options that stay the same for every address tried.
  bool Setup(Transfer& t, const std::string& domain);
  // Points the handle at the next address and hands it to the multi handle.
  bool StartAttempt(Transfer& t, CURLM* multi, SteadyClock::time_point deadline);
  // Turns a finished attempt into a result, or starts the next attempt.
  // Returns true when the request is finished.
  bool Finish(Transfer& t, CURLcode rc, CURLM* multi, SteadyClock::time_point deadline);

  StsFetchOptions options_;
};

void Fail(Transfer& t, std::string error) {
  t.result->ok = false;
  t.result->body.clear();
  t.result->error = std::move(error);
}

bool CurlStsFetcher::Setup(Transfer& t, const std::string& domain) {
  CURL* h = t.easy.get();
  std::string port;  // not ":" + std::to_string(...): GCC 12 warns falsely (-Wrestrict) about that form
  if (options_.port != 443) {
    port = ":";
    port += std::to_string(options_.port);
  }
  const std::string url = "https://" + t.host + port + "/.well-known/mta-sts.txt";
  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode r) {
    if (rc == CURLE_OK) rc = r;
  };
  set(curl_easy_setopt(h, CURLOPT_URL, url.c_str()));
  set(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L));
  set(curl_easy_setopt(h, CURLOPT_PROXY, ""));
  set(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  // One connection per transfer: a reused or multiplexed connection could
  // belong to another request's pinned address.
  set(curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L));
  set(curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L));
  set(curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
  set(curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!options_.ca_file.empty()) {
    // A configured CA file replaces the system store rather than adding to
    // it (curl's GnuTLS build would otherwise also read /etc/ssl/certs).
    set(curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str()));
    set(curl_easy_setopt(h, CURLOPT_CAPATH, nullptr));
  }
  set(curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kStsMaxPolicyBytes)));
  // No ACCEPT_ENCODING and no decoding: the size cap applies to the bytes
  // the parser sees, and a decompressor is attack surface we do not need.
  set(curl_easy_setopt(h, CURLOPT_HTTP_CONTENT_DECODING, 0L));
  set(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteBody));
  set(curl_easy_setopt(h, CURLOPT_WRITEDATA, &t));
  set(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t.errbuf));
  set(curl_easy_setopt(h, CURLOPT_PRIVATE, &t));
  set(curl_easy_setopt(h, CURLOPT_USERAGENT, "mxsec"));
  if (rc != CURLE_OK) {
    Fail(t, "curl setup for " + domain + ": " + curl_easy_strerror(rc));
    return false;
  }
  return true;
}

bool CurlStsFetcher::StartAttempt(Transfer& t, CURLM* multi, SteadyClock::time_point deadline) {
  const std::string& addr = (*t.addresses)[t.address_index];
  std::string target;
  if (!ConnectTarget(addr, &target)) {
    Fail(t, "invalid address \"" + Printable(addr, 60) + "\" for " + t.host);
    return false;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  if (left <= 0) {
    Fail(t, "timed out before trying " + Printable(addr, 60));
    return false;
  }
  const std::string port = std::to_string(options_.port);
  const std::string entry = t.host + ":" + port + ":" + target + ":" + port;
  SlistPtr list(curl_slist_append(nullptr, entry.c_str()));
  if (!list) {
    Fail(t, "out of memory");
    return false;
  }
  CURL* h = t.easy.get();
  CURLcode rc = curl_easy_setopt(h, CURLOPT_CONNECT_TO, list.get());
  if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
  if (rc == CURLE_OK) {
    rc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, std::min(options_.connect_timeout_ms, static_cast<long>(left)));
  }
  if (rc != CURLE_OK) {
    Fail(t, std::string("curl setup: ") + curl_easy_strerror(rc));
    return false;
  }
  t.connect_to = std::move(list);  // the previous list is no longer referenced
  t.body.clear();
  t.too_large = false;
  t.errbuf[0] = '\0';
  CURLMcode mc = curl_multi_add_handle(multi, h);
  if (mc != CURLM_OK) {
    Fail(t, std::string("curl: ") + curl_multi_strerror(mc));
    return false;
  }
  t.attached = multi;
  return true;
}

bool CurlStsFetcher::Finish(Transfer& t, CURLcode rc, CURLM* multi, SteadyClock::time_point deadline) {
  CURL* h = t.easy.get();
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  // A status line was received: report it even though the write callback
  // aborted the body.
  if (code != 0 && code != 200) {
    if (code >= 300 && code < 400) {
      Fail(t, "redirect refused (" + std::to_string(code) + ")");
    } else {
      Fail(t, "HTTP status " + std::to_string(code));
    }
    return true;
  }
  if (rc != CURLE_OK) {
    if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      Fail(t, "policy larger than " + std::to_string(kStsMaxPolicyBytes) + " bytes");
      return true;
    }
    // Another address is worth a try when this one refused or did not get
    // through the connection phase (TCP and TLS handshake) in time. A server
    // that answered with a TLS error has given its answer. A timeout of the
    // whole transfer leaves no time to retry: the deadline bounds all tries.
    const bool unreachable = rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT;
    const std::string& addr = (*t.addresses)[t.address_index];
    std::string what = t.errbuf[0] != '\0' ? Printable(t.errbuf) : curl_easy_strerror(rc);
    if (rc == CURLE_SSL_CACERT_BADFILE) what = "cannot load CA file " + Printable(options_.ca_file);
    if (IsTlsError(rc)) what = "TLS: " + what;
    if (unreachable) what = Printable(addr, 60) + ": " + what;
    if (unreachable && t.address_index + 1 < t.addresses->size() &&
        deadline - SteadyClock::now() > std::chrono::milliseconds(kMinAttemptMs)) {
      ++t.address_index;
      return !StartAttempt(t, multi, deadline);
    }
    if (t.address_index > 0) what += " (" + std::to_string(t.address_index + 1) + " addresses tried)";
    Fail(t, what);
    return true;
  }
  if (code != 200) {
    Fail(t, "no HTTP status");
    return true;
  }
  char* ctype = nullptr;
  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
  if (ctype == nullptr) {
    Fail(t, "no content type, want text/plain");
    return true;
  }
  std::string_view media(ctype);
  media = media.substr(0, media.find(';'));
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  std::string lower(media);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (lower != "text/plain") {
    Fail(t, "content type " + Printable(media, 60) + ", want text/plain");
    return true;
  }
  t.result->ok = true;
  t.result->error.clear();
  t.result->body = std::move(t.body);
  return true;
}

std::vector<StsFetchResult> CurlStsFetcher::FetchMany(const std::vector<StsFetchRequest>& requests) {
  std::vector<StsFetchResult> results(requests.size());
  if (requests.empty()) return results;
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(options_.total_timeout_ms);

  InitCurlOnce();
  if (g_curl_init_result != CURLE_OK) {
    for (auto& r : results) r.error = std::string("curl_global_init: ") + curl_easy_strerror(g_curl_init_result);
    return results;
  }
  MultiPtr multi(curl_multi_init());
  if (!multi) {
    for (auto& r : results) r.error = "curl: cannot create a multi handle";
    return results;
  }
  // Declared after `multi`, so every easy handle is removed from it and
  // cleaned up before the multi handle goes.
  std::vector<std::unique_ptr<Transfer>> transfers;
  size_t active = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const StsFetchRequest& req = requests[i];
    std::string domain = req.domain;
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    if (!IsPlainHostName(domain)) {
      results[i].error = "invalid domain \"" + Printable(req.domain, 60) + "\"";
      continue;
    }
    auto t = std::make_unique<Transfer>();
    t->result = &results[i];
    t->host = "mta-sts." + domain;
    t->addresses = &req.addresses;
    if (req.addresses.empty()) {
      Fail(*t, "no address for " + t->host);
      continue;
    }
    t->easy.reset(curl_easy_init());
    if (!t->easy) {
      Fail(*t, "curl: cannot create a handle");
      continue;
    }
    if (!Setup(*t, domain) || !StartAttempt(*t, multi.get(), deadline)) continue;
    transfers.push_back(std::move(t));
    ++active;
  }

  auto fail_attached = [&](const std::string& error) {
    for (auto& t : transfers) {
      if (t->attached == nullptr) continue;
      curl_multi_remove_handle(t->attached, t->easy.get());
      t->attached = nullptr;
      Fail(*t, error);
    }
    active = 0;
  };

  while (active > 0) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi.get(), &running);
    if (mc != CURLM_OK) {
      fail_attached(std::string("curl: ") + curl_multi_strerror(mc));
      break;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      // msg points into the multi handle: copy what we need before removal.
      CURL* h = msg->easy_handle;
      const CURLcode rc = msg->data.result;
      char* priv = nullptr;
      curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
      auto* t = reinterpret_cast<Transfer*>(priv);
      curl_multi_remove_handle(multi.get(), h);
      t->attached = nullptr;
      if (Finish(*t, rc, multi.get(), deadline)) --active;
    }
    if (active == 0) break;
    mc = curl_multi_poll(multi.get(), nullptr, 0, 1000, nullptr);
    if (mc != CURLM_OK) {
      fail_attached(std::string("curl: ") + curl_multi_strerror(mc));
      break;
    }
  }
  return results;
}

}  // namespace

void InitCurlOnce() {
  std::call_once(g_curl_once, [] { g_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::unique_ptr<StsFetcher> NewCurlStsFetcher(const StsFetchOptions& options) {
  InitCurlOnce();
  return std::make_unique<CurlStsFetcher>(options);
}

}  // namespace mxsec
