// mta_sts_fetch.cc - HTTPS retrieval of MTA-STS policies (RFC 8461 §3.3).
//
// A policy fetch is a GET of https://mta-sts.<domain>/.well-known/mta-sts.txt
// through the shared hardened client (https_client.h), which pins the
// connection to the addresses the caller resolved, speaks only HTTPS with
// TLS >= 1.2 and a verified certificate, follows no redirect, caps what it
// buffers and ends within the total timeout, however many addresses it
// tries. On top of that this module promises that a fetch accepts only
// status 200 with media type text/plain and a body of at most
// kStsMaxPolicyBytes, and reports a failure as one short line.
// All requests of one FetchMany run concurrently, so fetcher objects share
// no mutable state and may be used from any thread.
#include "mxsec/policy/mta_sts.h"

#include <string>
#include <string_view>
#include <vector>

#include "mxsec/base/text.h"
#include "curl_api.h"
#include "mxsec/policy/https_client.h"

namespace mxsec {
namespace {

class CurlStsFetcher : public StsFetcher {
 public:
  explicit CurlStsFetcher(const StsFetchOptions& options) : client_(ClientOptions(options)), port_(options.port) {
    if (port_ == 0) port_ = 443;
  }

  std::vector<StsFetchResult> FetchMany(const std::vector<StsFetchRequest>& requests) override;

 private:
  static HttpsOptions ClientOptions(const StsFetchOptions& o) {
    HttpsOptions h;
    h.ca_file = o.ca_file;
    h.connect_timeout_ms = o.connect_timeout_ms;
    h.total_timeout_ms = o.total_timeout_ms;
    h.max_response_bytes = kStsMaxPolicyBytes;
    return h;
  }

  HttpsClient client_;
  uint16_t port_;
};

StsFetchResult Judge(const Result<HttpsResponse>& got) {
  StsFetchResult out;
  if (!got.ok()) {
    out.error = got.error();
    if (out.error.rfind("response larger than", 0) == 0) {
      out.error = "policy larger than " + std::to_string(kStsMaxPolicyBytes) + " bytes";
    }
    return out;
  }
  const HttpsResponse& r = got.value();
  if (r.status >= 300 && r.status < 400) {
    out.error = "redirect refused (" + std::to_string(r.status) + ")";
    return out;
  }
  if (r.status != 200) {
    out.error = "HTTP status " + std::to_string(r.status);
    return out;
  }
  if (r.content_type.empty()) {
    out.error = "no content type, want text/plain";
    return out;
  }
  std::string_view media(r.content_type);
  media = media.substr(0, media.find(';'));
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  std::string lower(media);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (lower != "text/plain") {
    out.error = "content type " + PrintableAscii(media, 60) + ", want text/plain";
    return out;
  }
  out.ok = true;
  out.body = r.body;
  return out;
}

std::vector<StsFetchResult> CurlStsFetcher::FetchMany(const std::vector<StsFetchRequest>& requests) {
  std::vector<StsFetchResult> results(requests.size());
  if (requests.empty()) return results;
  std::string load_error;
  if (LoadCurl(&load_error) == nullptr) {
    for (auto& r : results) r.error = load_error;
    return results;
  }
  std::vector<HttpsRequest> https;
  std::vector<size_t> index;  // https[k] belongs to requests[index[k]]
  for (size_t i = 0; i < requests.size(); ++i) {
    std::string domain = requests[i].domain;
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    // The domain becomes part of the policy host's name ("mta-sts." + 245
    // octets stays within 253); anything but LDH labels could change what
    // the URL means.
    if (!IsLdhName(domain, 245)) {
      results[i].error = "invalid domain \"" + PrintableAscii(requests[i].domain, 60) + "\"";
      continue;
    }
    HttpsRequest h;
    h.host = "mta-sts." + domain;
    h.port = port_;
    h.path = "/.well-known/mta-sts.txt";
    h.addresses = requests[i].addresses;
    https.push_back(std::move(h));
    index.push_back(i);
  }
  std::vector<Result<HttpsResponse>> got = client_.PerformMany(https);
  for (size_t k = 0; k < got.size(); ++k) results[index[k]] = Judge(got[k]);
  return results;
}

}  // namespace

void InitCurlOnce() { (void)LoadCurl(nullptr); }

std::unique_ptr<StsFetcher> NewCurlStsFetcher(const StsFetchOptions& options) {
  // libcurl is loaded by the first fetch (curl_api.h), not here: most runs make none.
  return std::make_unique<CurlStsFetcher>(options);
}

}  // namespace mxsec
