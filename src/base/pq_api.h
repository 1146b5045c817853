// pq_api.h - the libpq functions of pg.cc, loaded the first time a
// PostgreSQL state backend is used instead of at program start.
//
// Most hosts keep their state in SQLite and never talk to PostgreSQL, and
// a program linked with libpq maps and relocates it, and what it needs
// (Kerberos, GSSAPI, LDAP, SASL), in every run: a dozen libraries for every
// `deliver` (the cost curl_api.h removed for libcurl). So libpq is opened
// with dlopen(3) by its soname, as the dynamic linker would have found it.
// Promises:
//   - LoadPq loads at most once per process, from any thread; later calls
//     return the same table or the same error;
//   - a library without a function of the table is refused with the reason,
//     never half-used;
//   - the library stays loaded until the process ends.
#pragma once

#include <libpq-fe.h>

#include <string>

namespace mxsec {

struct PqApi {
  PQconninfoOption* (*conninfoParse)(const char* conninfo, char** errmsg);
  void (*conninfoFree)(PQconninfoOption* options);
  void (*freemem)(void* p);
  PGconn* (*connectdbParams)(const char* const* keywords, const char* const* values, int expand_dbname);
  void (*finish)(PGconn* c);
  ConnStatusType (*status)(const PGconn* c);
  char* (*errorMessage)(const PGconn* c);
  char* (*host)(const PGconn* c);
  char* (*port)(const PGconn* c);
  char* (*db)(const PGconn* c);
  PGresult* (*execParams)(PGconn* c, const char* command, int n, const Oid* types, const char* const* values,
                          const int* lengths, const int* formats, int result_format);
  ExecStatusType (*resultStatus)(const PGresult* r);
  char* (*resultErrorField)(const PGresult* r, int field);
  char* (*resultErrorMessage)(const PGresult* r);
  void (*clear)(PGresult* r);
  int (*ntuples)(const PGresult* r);
  int (*nfields)(const PGresult* r);
  char* (*fname)(const PGresult* r, int column);
  int (*getisnull)(const PGresult* r, int row, int column);
  char* (*getvalue)(const PGresult* r, int row, int column);
  int (*getlength)(const PGresult* r, int row, int column);
  char* (*cmdStatus)(PGresult* r);
  char* (*cmdTuples)(PGresult* r);
};

// libpq, loaded; null with the reason in `*error` ("cannot load
// libpq.so.5: ...").
const PqApi* LoadPq(std::string* error);

}  // namespace mxsec
