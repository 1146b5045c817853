// curl_api.cc - libcurl loaded on first use (curl_api.h).
#include "curl_api.h"

#include <dlfcn.h>

#include <mutex>

namespace mxsec {
namespace {

// The build mxsec is made for: GnuTLS, as the rest of the program (one TLS
// library's trust store and priorities).
constexpr char kCurlSoname[] = "libcurl-gnutls.so.4";
// CURLOPT_PROTOCOLS_STR and CURLOPT_REDIR_PROTOCOLS_STR, which the client sets.
constexpr unsigned kMinCurlVersion = 0x075500;  // 7.85.0

std::once_flag g_once;
CurlApi g_api;
const CurlApi* g_loaded = nullptr;
std::string g_error;

template <typename Fn>
bool Bind(void* lib, const char* name, Fn* out, std::string* missing) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
  if (*out == nullptr && missing->empty()) *missing = name;
  return *out != nullptr;
}

void Load() {
  // RTLD_LOCAL: libcurl's symbols serve this table only. Never closed.
  void* lib = dlopen(kCurlSoname, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    g_error = std::string("cannot load ") + kCurlSoname + ": " + (why ? why : "unknown error");
    return;
  }
  CurlApi a{};
  std::string missing;
  Bind(lib, "curl_global_init", &a.global_init, &missing);
  Bind(lib, "curl_version_info", &a.version_info, &missing);
  Bind(lib, "curl_easy_init", &a.easy_init, &missing);
  Bind(lib, "curl_easy_cleanup", &a.easy_cleanup, &missing);
  Bind(lib, "curl_easy_setopt", &a.easy_setopt, &missing);
  Bind(lib, "curl_easy_getinfo", &a.easy_getinfo, &missing);
  Bind(lib, "curl_easy_strerror", &a.easy_strerror, &missing);
  Bind(lib, "curl_multi_init", &a.multi_init, &missing);
  Bind(lib, "curl_multi_cleanup", &a.multi_cleanup, &missing);
  Bind(lib, "curl_multi_add_handle", &a.multi_add_handle, &missing);
  Bind(lib, "curl_multi_remove_handle", &a.multi_remove_handle, &missing);
  Bind(lib, "curl_multi_perform", &a.multi_perform, &missing);
  Bind(lib, "curl_multi_poll", &a.multi_poll, &missing);
  Bind(lib, "curl_multi_info_read", &a.multi_info_read, &missing);
  Bind(lib, "curl_multi_strerror", &a.multi_strerror, &missing);
  Bind(lib, "curl_slist_append", &a.slist_append, &missing);
  Bind(lib, "curl_slist_free_all", &a.slist_free_all, &missing);
  if (!missing.empty()) {
    g_error = std::string(kCurlSoname) + " has no " + missing;
    return;
  }
  const curl_version_info_data* v = a.version_info(CURLVERSION_NOW);
  if (v == nullptr || v->version_num < kMinCurlVersion) {
    g_error = std::string(kCurlSoname) + " is version " + (v && v->version ? v->version : "?") +
              "; mxsec needs 7.85.0 or later";
    return;
  }
  if (CURLcode rc = a.global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK) {
    g_error = std::string("curl_global_init: ") + a.easy_strerror(rc);
    return;
  }
  g_api = a;
  g_loaded = &g_api;
}

}  // namespace

const CurlApi* LoadCurl(std::string* error) {
  std::call_once(g_once, Load);
  if (g_loaded == nullptr && error) *error = g_error;
  return g_loaded;
}

}  // namespace mxsec
