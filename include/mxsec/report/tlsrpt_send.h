// tlsrpt_send.h - sending the daily SMTP TLS reports (RFC 8460 §3, §5):
// one report per policy domain, to every rua URI of the domain's
// `_smtp._tls` TXT record, each (day, domain, URI) at most once.
//
// Promises:
//   - LoadDayReports reads one UTC day of the attempt log (delivery.h) and
//     builds the reports of tlsrpt.h, only for the given domains if any.
//   - TlsRptSentLog is the sent-once store (an SQLite file, tlsrpt.sqlite
//     in the state directory): which (day, domain, URI) got which report,
//     and the one report-id of each (day, domain), so that a report retried
//     for a URI keeps the id it was first sent with.
//   - TlsRptSender::Send, per report: looks up the TXT record through the
//     resolver (a failed lookup is retried by the next run); no usable
//     record means no report; URIs of other schemes are ignored; at most
//     kTlsRptMaxRuaPerDomain URIs get the report; a URI the store lists as
//     sent is skipped; an https URI gets a POST of the gzip'd JSON through
//     the ReportPoster, a mailto URI a §5.3 message through the ReportQueue;
//     what went out is recorded in the store, what failed is left for the
//     next run (Summary::retry). A URI that cannot be used (an https URI with
//     userinfo or an IP literal, a mailto URI that is not one address) is
//     the record's fault and not retried. Every step is told to the event
//     callback as it happens; DescribeTlsRptEvent words it.
//   - NewHttpsReportPoster posts through the hardened client of
//     policy/https_client.h (addresses from our resolver, at most
//     kHttpsMaxAddresses tried, no redirects, PKIX verified, one deadline of
//     mta_sts_fetch_timeout for the whole POST); any 2xx is success.
//     NewQueueReportQueue submits to mxsec's queue (queue.h), sent by the
//     next queue run, without delay notices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/base/sqlite.h"
#include "mxsec/base/status.h"
#include "mxsec/dns/dns.h"
#include "mxsec/report/tlsrpt.h"

namespace mxsec {

// A record cannot make us send more reports than this per domain.
inline constexpr size_t kTlsRptMaxRuaPerDomain = 8;
// What we read of an https endpoint's answer.
inline constexpr size_t kTlsRptMaxResponseBytes = 64 * 1024;

// `bytes` random bytes in lowercase hex (report-id suffixes, file names,
// Message-IDs).
std::string RandomHexId(size_t bytes);

struct TlsRptDay {
  size_t attempts = 0;              // attempt-log rows of the day
  std::vector<TlsReport> reports;
};
// The reports of the day meta.day_start (only those of `only`'s domains
// unless it is empty) from the attempt log at `log_path`.
Result<TlsRptDay> LoadDayReports(const std::string& log_path, const ReportMeta& meta,
                                 const std::set<std::string>& only);
// The same from records already read (the fleet's shared log, fleet_state.h).
TlsRptDay DayReportsOf(const std::vector<AttemptRecord>& records, const ReportMeta& meta,
                       const std::set<std::string>& only);

// The sent-once store as the sender uses it: TlsRptSentLog on this host,
// PgTlsRptSentLog (fleet_state.h) shared by a fleet.
class TlsRptSentStore {
 public:
  virtual ~TlsRptSentStore() = default;
  // Where the store is, for messages.
  virtual const std::string& path() const = 0;
  // The report-id already sent to `uri` for (day, domain) ("?" when the row
  // has none), or nullopt.
  virtual Result<std::optional<std::string>> Sent(const std::string& day, const std::string& domain,
                                                  const std::string& uri) = 0;
  virtual Status Mark(const std::string& day, const std::string& domain, const std::string& uri,
                      const std::string& id, int64_t now) = 0;
  // The report-id of (day, domain): `proposed` the first time, then always
  // that one.
  virtual Result<std::string> ReportId(const std::string& day, const std::string& domain,
                                       const std::string& proposed) = 0;
  // Held by the sender while it checks, sends and marks the report of
  // (day, domain), so that of several hosts sharing the store one sends it
  // and the others find it sent. Lock waits, as long as the store's own
  // bound allows, for another holder; an error means "try later".
  virtual Status Lock(const std::string& /*day*/, const std::string& /*domain*/) { return Status::Ok(); }
  virtual void Unlock(const std::string& /*day*/, const std::string& /*domain*/) {}
  // True when other hosts send from this store: one that cannot be read
  // then means "try later", not "send" (another host may be sending it).
  virtual bool shared() const { return false; }
};

class TlsRptSentLog : public TlsRptSentStore {
 public:
  // Opens or creates the store (tables created if missing). Errors name the path.
  static Result<TlsRptSentLog> Open(const std::string& path);
  const std::string& path() const override { return path_; }
  Result<std::optional<std::string>> Sent(const std::string& day, const std::string& domain,
                                          const std::string& uri) override;
  Status Mark(const std::string& day, const std::string& domain, const std::string& uri, const std::string& id,
              int64_t now) override;
  Result<std::string> ReportId(const std::string& day, const std::string& domain,
                               const std::string& proposed) override;

 private:
  TlsRptSentLog(std::string path, SqliteDb db) : path_(std::move(path)), db_(std::move(db)) {}
  std::string path_;
  SqliteDb db_;
};

// Delivers a report to an https: rua URI.
class ReportPoster {
 public:
  virtual ~ReportPoster() = default;
  // POSTs `gzip_body` (Content-Type application/tlsrpt+gzip) to `uri`; an
  // error says why it did not get a 2xx answer.
  virtual Status Post(const std::string& uri, const std::string& gzip_body) = 0;
};

// Hands a report message for a mailto: rua URI to the mail system.
class ReportQueue {
 public:
  virtual ~ReportQueue() = default;
  // Queues `message` from `sender` to `recipient`; returns the queue id.
  virtual Result<std::string> Submit(const std::string& message, const std::string& sender,
                                     const std::string& recipient) = 0;
};

// `resolver` is not owned and must outlive the poster.
std::unique_ptr<ReportPoster> NewHttpsReportPoster(const Config& cfg, Resolver* resolver);
std::unique_ptr<ReportQueue> NewQueueReportQueue(const std::string& queue_dir);

enum class TlsRptEventKind {
  kLookupFailed,     // the TXT lookup failed (detail); retried
  kNoRecord,         // no usable TLSRPT record (detail): no report
  kIgnoredScheme,    // a rua URI of another scheme
  kIgnoredHttpsUri,  // an https URI that cannot be used (detail)
  kIgnoredMailtoUri, // a mailto URI that is not one address (detail)
  kStoreFailed,      // the report-id could not be recorded (detail: the store's path); retried
  kStoreUnavailable, // the shared sent-once store could not be locked or read (detail); retried
  kTooManyUris,      // the record lists `count` URIs; only the first kTlsRptMaxRuaPerDomain are used
  kAlreadySent,      // `uri` got report `report_id` before
  kNotSent,          // sending to `uri` failed (detail); retried
  kNotRemembered,    // sent, but the store could not record it (detail)
  kSent,             // sent to `uri`; detail says how ("posted", "queued as ID for ADDR")
  kInternalError,    // the run stops (detail)
};

struct TlsRptEvent {
  TlsRptEventKind kind = TlsRptEventKind::kSent;
  std::string domain;
  std::string uri;
  std::string report_id;
  std::string detail;
  size_t count = 0;
  int64_t successes = 0, failures = 0;  // kSent: the report's session counts
};

// One line, starting with the domain ("example.org: https://...: report ...
// posted"), without a line end.
std::string DescribeTlsRptEvent(const TlsRptEvent& event);
// Whether the event is a problem (for stderr) rather than a result.
bool IsTlsRptWarning(TlsRptEventKind kind);

struct TlsRptSendSettings {
  std::string from;       // addr-spec the report messages come from
  std::string submitter;  // our host name: TLS-Report-Submitter, file names, Message-IDs
  int64_t day_start = 0;  // 00:00:00 UTC of the day reported
  int64_t now = 0;        // Date: of the messages; when a report was recorded as sent
};

class TlsRptSender {
 public:
  struct Summary {
    bool retry = false;           // something must be tried again by a later run
    bool internal_error = false;  // the run stopped early (a kInternalError event)
  };
  using EventSink = std::function<void(const TlsRptEvent&)>;

  // Nothing is owned; all must outlive the sender.
  TlsRptSender(TlsRptSendSettings settings, Resolver* resolver, ReportPoster* poster, ReportQueue* queue,
               TlsRptSentStore* sent);
  // Sends `reports` (their report-ids may be replaced by the stored ones).
  Summary Send(std::vector<TlsReport>& reports, const EventSink& on_event);

 private:
  struct Delivery;  // one report on its way: its gzip'd JSON and the event template
  bool SendReport(TlsReport& report, Summary* summary, const EventSink& on_event);
  bool SendLockedReport(TlsReport& report, Summary* summary, const EventSink& on_event);
  std::optional<std::vector<std::string>> ReportUris(TlsReport& report, Summary* summary,
                                                     const EventSink& on_event);
  void SendToUri(const Delivery& d, const std::string& uri, Summary* summary, const EventSink& on_event);
  Status QueueMessage(const Delivery& d, const std::string& to, std::string* how);

  TlsRptSendSettings settings_;
  std::string day_;
  Resolver* resolver_;
  ReportPoster* poster_;
  ReportQueue* queue_;
  TlsRptSentStore* sent_;
};

}  // namespace mxsec
