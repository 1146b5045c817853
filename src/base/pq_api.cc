// pq_api.cc - libpq loaded on first use (pq_api.h).
#include "pq_api.h"

#include <dlfcn.h>

#include <mutex>

namespace mxsec {
namespace {

constexpr char kPqSoname[] = "libpq.so.5";

std::once_flag g_once;
PqApi g_api;
const PqApi* g_loaded = nullptr;
std::string g_error;

template <typename Fn>
void Bind(void* lib, const char* name, Fn* out, std::string* missing) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
  if (*out == nullptr && missing->empty()) *missing = name;
}

void Load() {
  // RTLD_LOCAL: libpq's symbols serve this table only. Never closed.
  void* lib = dlopen(kPqSoname, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    g_error = std::string("cannot load ") + kPqSoname + " (Debian: libpq5): " + (why ? why : "unknown error");
    return;
  }
  PqApi a{};
  std::string missing;
  Bind(lib, "PQconninfoParse", &a.conninfoParse, &missing);
  Bind(lib, "PQconninfoFree", &a.conninfoFree, &missing);
  Bind(lib, "PQfreemem", &a.freemem, &missing);
  Bind(lib, "PQconnectdbParams", &a.connectdbParams, &missing);
  Bind(lib, "PQfinish", &a.finish, &missing);
  Bind(lib, "PQstatus", &a.status, &missing);
  Bind(lib, "PQerrorMessage", &a.errorMessage, &missing);
  Bind(lib, "PQhost", &a.host, &missing);
  Bind(lib, "PQport", &a.port, &missing);
  Bind(lib, "PQdb", &a.db, &missing);
  Bind(lib, "PQexecParams", &a.execParams, &missing);
  Bind(lib, "PQresultStatus", &a.resultStatus, &missing);
  Bind(lib, "PQresultErrorField", &a.resultErrorField, &missing);
  Bind(lib, "PQresultErrorMessage", &a.resultErrorMessage, &missing);
  Bind(lib, "PQclear", &a.clear, &missing);
  Bind(lib, "PQntuples", &a.ntuples, &missing);
  Bind(lib, "PQnfields", &a.nfields, &missing);
  Bind(lib, "PQfname", &a.fname, &missing);
  Bind(lib, "PQgetisnull", &a.getisnull, &missing);
  Bind(lib, "PQgetvalue", &a.getvalue, &missing);
  Bind(lib, "PQgetlength", &a.getlength, &missing);
  Bind(lib, "PQcmdStatus", &a.cmdStatus, &missing);
  Bind(lib, "PQcmdTuples", &a.cmdTuples, &missing);
  if (!missing.empty()) {
    g_error = std::string(kPqSoname) + " has no " + missing;
    return;
  }
  g_api = a;
  g_loaded = &g_api;
}

}  // namespace

const PqApi* LoadPq(std::string* error) {
  std::call_once(g_once, Load);
  if (g_loaded == nullptr && error) *error = g_error;
  return g_loaded;
}

}  // namespace mxsec
