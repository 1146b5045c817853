// fleet_state.h - the attempt log and the TLS-RPT sent-once log of a fleet
// of mxsec hosts on PostgreSQL (state_backend = postgresql://...; tables of
// base/pg_schema.h): each host forwards its local attempt log
// (smtp/delivery.h ForwardAttempts) to the shared `attempts` table, and
// `mxsec tlsrpt` on any host builds the day's reports from the rows of all
// hosts and sends each (day, domain, URI) once for the fleet.
//
// Promises:
//   - PgAttemptStore::InsertOnce writes a batch in one transaction, INSERT
//     ... ON CONFLICT DO NOTHING on (log_id, local_id): a batch sent again
//     after a crash is stored once. Each row gets this host's name.
//   - ReadPgAttempts returns the rows of every host with from <= time < to,
//     with their host and sending IP, in a stable order.
//   - PgTlsRptSentLog is the sent-once store on the shared tables. Its Lock
//     is a session advisory lock per (day, domain) (pg_advisory_lock), so a
//     lock whose holder died (process or connection) is released by the
//     server at once: no lease to expire. Waiting for it is bounded by the
//     connection's statement timeout (state_backend_statement_timeout); a
//     timeout or a lost connection is an error, and the report waits for the
//     next run. shared() is true: an unreadable store means "not now".
//   - ForwardOwnAttempts forwards `<state_dir>/delivery.sqlite` through a
//     connection it is given; ForwardAttemptsAfterDelivery connects itself
//     (bounded by state_backend_connect_timeout and the statement timeout),
//     forwards, and only warns: a delivery never fails or waits longer for
//     the shared store, its rows wait in the local log.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/base/pg.h"
#include "mxsec/base/status.h"
#include "mxsec/report/tlsrpt_send.h"
#include "mxsec/smtp/delivery.h"

namespace mxsec {

class PgAttemptStore : public SharedAttemptStore {
 public:
  // `c` is not owned and must outlive the store.
  PgAttemptStore(PgConnection* c, std::string host) : c_(c), host_(std::move(host)) {}
  Status InsertOnce(const std::string& log_id, const std::vector<ForwardedAttempt>& rows) override;

 private:
  PgConnection* c_;
  std::string host_;
};

Result<std::vector<AttemptRecord>> ReadPgAttempts(PgConnection& c, int64_t from, int64_t to);

class PgTlsRptSentLog : public TlsRptSentStore {
 public:
  // `c` is not owned and must outlive the store; `host` is recorded with
  // what it sends.
  PgTlsRptSentLog(PgConnection* c, std::string host);
  const std::string& path() const override { return where_; }
  Result<std::optional<std::string>> Sent(const std::string& day, const std::string& domain,
                                          const std::string& uri) override;
  Status Mark(const std::string& day, const std::string& domain, const std::string& uri, const std::string& id,
              int64_t now) override;
  Result<std::string> ReportId(const std::string& day, const std::string& domain,
                               const std::string& proposed) override;
  Status Lock(const std::string& day, const std::string& domain) override;
  void Unlock(const std::string& day, const std::string& domain) override;
  bool shared() const override { return true; }

 private:
  PgConnection* c_;
  std::string host_;
  std::string where_;
};

// The path of a host's local attempt log.
std::string LocalAttemptLogPath(const Config& cfg);

// Forwards this host's local log through `c` (see above).
Result<ForwardResult> ForwardOwnAttempts(const Config& cfg, PgConnection& c);

// For the end of a delivery or a queue run: with a PostgreSQL state_backend,
// connects, forwards, and tells `warn` (at most once per process) when the
// store cannot be used; nothing with state_backend = sqlite.
void ForwardAttemptsAfterDelivery(const Config& cfg, const std::function<void(const std::string&)>& warn);

}  // namespace mxsec
