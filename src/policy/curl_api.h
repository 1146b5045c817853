// curl_api.h - the libcurl functions of the HTTPS client (https_client.cc),
// loaded the first time an HTTPS request is to be made instead of at
// program start.
//
// Most runs never make one (a `deliver` to a domain with DANE, or with its
// MTA-STS policy cached, or without MTA-STS), and a program linked with
// libcurl maps and relocates it, and the libraries it needs (HTTP/2, SSH,
// LDAP, SASL, Kerberos, IDN, PSL, brotli, ...), in every run. So libcurl's
// GnuTLS build is opened with dlopen(3) by its soname, as the dynamic
// linker would have found it (the same search path; a set-user-ID or
// set-group-ID program ignores LD_LIBRARY_PATH either way), and
// curl_global_init runs right after. Promises:
//   - LoadCurl loads and initialises at most once per process, from any
//     thread (std::call_once); later calls return the same table or the
//     same error;
//   - a library older than the client needs (CURLOPT_PROTOCOLS_STR, 7.85)
//     or without a function of the table is refused with the reason, never
//     half-used;
//   - the library stays loaded until the process ends.
#pragma once

#include <curl/curl.h>

#include <string>

namespace mxsec {

struct CurlApi {
  CURLcode (*global_init)(long flags);
  curl_version_info_data* (*version_info)(CURLversion age);
  CURL* (*easy_init)();
  void (*easy_cleanup)(CURL* h);
  CURLcode (*easy_setopt)(CURL* h, CURLoption option, ...);
  CURLcode (*easy_getinfo)(CURL* h, CURLINFO info, ...);
  const char* (*easy_strerror)(CURLcode rc);
  CURLM* (*multi_init)();
  CURLMcode (*multi_cleanup)(CURLM* m);
  CURLMcode (*multi_add_handle)(CURLM* m, CURL* h);
  CURLMcode (*multi_remove_handle)(CURLM* m, CURL* h);
  CURLMcode (*multi_perform)(CURLM* m, int* running);
  CURLMcode (*multi_poll)(CURLM* m, curl_waitfd extra[], unsigned int n, int timeout_ms, int* numfds);
  CURLMsg* (*multi_info_read)(CURLM* m, int* queued);
  const char* (*multi_strerror)(CURLMcode rc);
  curl_slist* (*slist_append)(curl_slist* list, const char* s);
  void (*slist_free_all)(curl_slist* list);
};

// libcurl, loaded and initialised; null with the reason in `*error` (one
// line: "cannot load libcurl-gnutls.so.4: ...", "curl_global_init: ...").
const CurlApi* LoadCurl(std::string* error);

}  // namespace mxsec
