// tlsrpt_send.cc - the TLS-RPT sender (tlsrpt_send.h): the sent-once store,
// the https poster on the hardened client, the mailto queue, and the loop
// that sends each day's reports to their rua URIs.
#include "mxsec/report/tlsrpt_send.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <random>

#include "mxsec/base/clock.h"
#include "mxsec/base/text.h"
#include "mxsec/policy/https_client.h"
#include "mxsec/policy/requiretls.h"
#include "mxsec/queue/queue.h"

namespace mxsec {
namespace {

constexpr int64_t kDaySeconds = 86400;

TlsRptEvent Event(TlsRptEventKind kind, const std::string& domain, std::string detail = "") {
  TlsRptEvent e;
  e.kind = kind;
  e.domain = domain;
  e.detail = std::move(detail);
  return e;
}

// --- the https poster ---

class HttpsReportPoster : public ReportPoster {
 public:
  HttpsReportPoster(const Config& cfg, Resolver* resolver) : resolver_(resolver) {
    options_.ca_file = cfg.ca_file;
    options_.connect_timeout_ms = cfg.mta_sts_connect_timeout * 1000L;
    options_.total_timeout_ms = cfg.mta_sts_fetch_timeout * 1000L;
    options_.max_response_bytes = kTlsRptMaxResponseBytes;
  }

  Status Post(const std::string& uri, const std::string& gzip_body) override {
    auto target = HttpsAuthority(uri);
    if (!target.ok()) return target.status();
    HttpsRequest req;
    Status resolved = Resolve(target->host, &req.addresses);
    if (!resolved.ok()) return resolved;
    req.host = target->host;
    req.port = static_cast<uint16_t>(std::stoi(target->port));
    req.path = PathOf(uri);
    req.post = true;
    req.body = gzip_body;
    req.content_type = "application/tlsrpt+gzip";
    req.want_body = false;
    Result<HttpsResponse> got = HttpsClient(options_).Perform(req);
    if (!got.ok()) return got.status();
    if (got->status < 200 || got->status >= 300)
      return Status::Unavailable("HTTP status " + std::to_string(got->status));
    return Status::Ok();
  }

 private:
  // The addresses of `host` from our resolver (the DNS view mxsec decides
  // with), never the system's.
  Status Resolve(const std::string& host, std::vector<std::string>* addresses) {
    std::vector<DnsAnswer> answers =
        resolver_->LookupMany({DnsQuestion{host, RrType::kA}, DnsQuestion{host, RrType::kAAAA}});
    std::string why;
    for (const DnsAnswer& a : answers) {
      if (a.failed()) why = a.reason;
      for (const DnsRecord& r : a.records) addresses->push_back(r.text);
    }
    if (addresses->empty())
      return Status::Unavailable("no address for " + host + (why.empty() ? "" : " (" + why + ")"));
    return Status::Ok();
  }

  // What follows the authority (HttpsAuthority checked "https://"), without
  // a fragment, as an absolute path.
  static std::string PathOf(const std::string& uri) {
    std::string rest = uri.substr(std::min(uri.size(), uri.find_first_of("/?#", 8)));
    rest = rest.substr(0, rest.find('#'));
    return rest.empty() || rest[0] != '/' ? "/" + rest : rest;
  }

  Resolver* resolver_;
  HttpsOptions options_;
};

// --- the mailto queue ---

class QueueReportQueue : public ReportQueue {
 public:
  explicit QueueReportQueue(std::string dir) : dir_(std::move(dir)) {}

  Result<std::string> Submit(const std::string& message, const std::string& sender,
                             const std::string& recipient) override {
    auto q = Queue::Open(dir_, true);
    if (!q.ok()) return q.status();
    QueuedEnvelope env;
    env.sender = sender;
    env.recipients.push_back(QueuedRecipient{recipient});
    env.notify_delay = false;
    // As sendmail reads it: the message's own TLS-Required field decides.
    env.message_tls = HasTlsRequiredNo(message) ? MessageTls::kTlsOptional : MessageTls::kPolicy;
    return q->Submit(message, env, SystemClock(), nullptr);
  }

 private:
  std::string dir_;
};

}  // namespace

std::string RandomHexId(size_t bytes) {
  std::random_device rd;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += kHex[v >> 4];
    out += kHex[v & 15];
  }
  return out;
}

Result<TlsRptDay> LoadDayReports(const std::string& log_path, const ReportMeta& meta,
                                 const std::set<std::string>& only) {
  auto records = ReadAttempts(log_path, meta.day_start, meta.day_start + kDaySeconds);
  if (!records.ok()) return records.status();
  return DayReportsOf(records.value(), meta, only);
}

TlsRptDay DayReportsOf(const std::vector<AttemptRecord>& records, const ReportMeta& meta,
                       const std::set<std::string>& only) {
  TlsRptDay day;
  day.attempts = records.size();
  day.reports = AggregateReports(records, meta);
  if (!only.empty()) {
    std::erase_if(day.reports, [&](const TlsReport& r) { return only.count(r.domain) == 0; });
  }
  return day;
}

std::unique_ptr<ReportPoster> NewHttpsReportPoster(const Config& cfg, Resolver* resolver) {
  return std::make_unique<HttpsReportPoster>(cfg, resolver);
}

std::unique_ptr<ReportQueue> NewQueueReportQueue(const std::string& queue_dir) {
  return std::make_unique<QueueReportQueue>(queue_dir);
}

// --- the sent-once store ---

Result<TlsRptSentLog> TlsRptSentLog::Open(const std::string& path) {
  SqliteOpenOptions options;
  options.create = true;
  options.busy_timeout_ms = 5000;
  Result<SqliteDb> db = SqliteDb::Open(path, options);
  if (!db.ok()) return db.status().Prefixed(path + ": ");
  Status created = db->Exec(
      "CREATE TABLE IF NOT EXISTS sent (day TEXT, domain TEXT, uri TEXT, report_id TEXT,"
      " time INTEGER, PRIMARY KEY (day, domain, uri));"
      "CREATE TABLE IF NOT EXISTS report_ids (day TEXT, domain TEXT, report_id TEXT,"
      " PRIMARY KEY (day, domain));");
  if (!created.ok()) return created.Prefixed(path + ": ");
  return TlsRptSentLog(path, std::move(db).value());
}

Result<std::optional<std::string>> TlsRptSentLog::Sent(const std::string& day, const std::string& domain,
                                                       const std::string& uri) {
  Result<SqliteStatement> st = db_.Prepare("SELECT report_id FROM sent WHERE day=?1 AND domain=?2 AND uri=?3");
  if (!st.ok()) return st.status();
  Result<bool> row = st->BindText(1, day).BindText(2, domain).BindText(3, uri).Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<std::string>();
  if (st->ColumnType(0) == SqliteStatement::Type::kNull) return std::optional<std::string>("?");
  return std::optional<std::string>(st->ColumnText(0));
}

Status TlsRptSentLog::Mark(const std::string& day, const std::string& domain, const std::string& uri,
                           const std::string& id, int64_t now) {
  Result<SqliteStatement> st = db_.Prepare("INSERT OR REPLACE INTO sent VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!st.ok()) return st.status();
  return st->BindText(1, day).BindText(2, domain).BindText(3, uri).BindText(4, id).BindInt64(5, now).Run();
}

Result<std::string> TlsRptSentLog::ReportId(const std::string& day, const std::string& domain,
                                            const std::string& proposed) {
  Result<SqliteStatement> insert = db_.Prepare("INSERT OR IGNORE INTO report_ids VALUES (?1, ?2, ?3)");
  if (!insert.ok()) return insert.status();
  Status inserted = insert->BindText(1, day).BindText(2, domain).BindText(3, proposed).Run();
  if (!inserted.ok()) return inserted;
  Result<SqliteStatement> st = db_.Prepare("SELECT report_id FROM report_ids WHERE day=?1 AND domain=?2");
  if (!st.ok()) return st.status();
  Result<bool> row = st->BindText(1, day).BindText(2, domain).Step();
  if (!row.ok()) return row.status();
  const std::string id = *row ? st->ColumnText(0) : std::string();
  if (id.empty()) return Status::NotFound("no report-id for " + day + " " + domain);
  return id;
}

// --- events ---

bool IsTlsRptWarning(TlsRptEventKind kind) {
  return kind != TlsRptEventKind::kNoRecord && kind != TlsRptEventKind::kAlreadySent &&
         kind != TlsRptEventKind::kSent;
}

std::string DescribeTlsRptEvent(const TlsRptEvent& e) {
  const std::string d = e.domain + ": ";
  switch (e.kind) {
    case TlsRptEventKind::kLookupFailed:
      return d + "TXT lookup of _smtp._tls." + e.domain + " failed (" + e.detail + "); try again later";
    case TlsRptEventKind::kNoRecord:
      return d + "no report sent: " + e.detail;
    case TlsRptEventKind::kIgnoredScheme:
      return d + "ignoring rua " + e.uri + " (only mailto: and https: are supported)";
    case TlsRptEventKind::kIgnoredHttpsUri:
      return d + "ignoring rua " + e.uri + ": " + e.detail;
    case TlsRptEventKind::kIgnoredMailtoUri:
      return d + e.uri + ": " + e.detail;
    case TlsRptEventKind::kStoreFailed:
      return d + "cannot record the report-id in " + e.detail + "; try again later";
    case TlsRptEventKind::kStoreUnavailable:
      return d + "the sent-once store cannot be used (" + e.detail + "); not sent, try again later";
    case TlsRptEventKind::kTooManyUris:
      return d + "the record lists " + std::to_string(e.count) + " URIs; only the first " +
             std::to_string(kTlsRptMaxRuaPerDomain) + " get the report";
    case TlsRptEventKind::kAlreadySent:
      return d + e.uri + ": already sent (report " + e.report_id + ")";
    case TlsRptEventKind::kNotSent:
      return d + e.uri + ": report " + e.report_id + " not sent: " + e.detail + "; try again later";
    case TlsRptEventKind::kNotRemembered:
      return d + "warning: cannot remember the report as sent: " + e.detail;
    case TlsRptEventKind::kSent:
      return d + e.uri + ": report " + e.report_id + " (" + std::to_string(e.successes) + " successful, " +
             std::to_string(e.failures) + " failed sessions) " + e.detail;
    case TlsRptEventKind::kInternalError:
      return d + e.detail;
  }
  return d + e.detail;
}

// --- the sender ---

struct TlsRptSender::Delivery {
  const TlsReport* report;
  std::string gzip;  // the report's JSON, gzip'd
};

TlsRptSender::TlsRptSender(TlsRptSendSettings settings, Resolver* resolver, ReportPoster* poster,
                           ReportQueue* queue, TlsRptSentStore* sent)
    : settings_(std::move(settings)),
      day_(FormatUtcDay(settings_.day_start)),
      resolver_(resolver),
      poster_(poster),
      queue_(queue),
      sent_(sent) {}

TlsRptSender::Summary TlsRptSender::Send(std::vector<TlsReport>& reports, const EventSink& on_event) {
  Summary summary;
  for (TlsReport& report : reports) {
    if (!SendReport(report, &summary, on_event)) break;
  }
  return summary;
}

// Check, send and mark under the store's lock of (day, domain): with a
// shared store, hosts running at once take turns, and each one after the
// first finds the URIs marked. The crash windows: dying before a send
// leaves the URI unmarked, sent by the next run; dying between the send
// and the mark (or the store failing to mark) sends the same report, with
// the same report-id, again next run: a duplicate the receiver can
// recognise, never a report lost. The lock needs no lease: a shared
// store's lock dies with its holder's connection (fleet_state.h).
bool TlsRptSender::SendReport(TlsReport& report, Summary* summary, const EventSink& on_event) {
  Status locked = sent_->Lock(day_, report.domain);
  if (!locked.ok()) {
    on_event(Event(TlsRptEventKind::kStoreUnavailable, report.domain, locked.message()));
    summary->retry = true;
    return true;
  }
  struct Unlocker {
    TlsRptSentStore* store;
    const std::string& day;
    const std::string& domain;
    ~Unlocker() { store->Unlock(day, domain); }
  } unlocker{sent_, day_, report.domain};
  return SendLockedReport(report, summary, on_event);
}

bool TlsRptSender::SendLockedReport(TlsReport& report, Summary* summary, const EventSink& on_event) {
  std::optional<std::vector<std::string>> uris = ReportUris(report, summary, on_event);
  if (!uris) return true;
  auto gz = Gzip(report.json.dump());
  if (!gz.ok()) {
    on_event(Event(TlsRptEventKind::kInternalError, report.domain, gz.error()));
    summary->internal_error = true;
    return false;
  }
  const Delivery d{&report, std::move(gz).value()};
  for (const std::string& uri : *uris) SendToUri(d, uri, summary, on_event);
  return true;
}

// The URIs that get `report` (nullopt: none, said through `on_event`), and
// its report-id as stored: a retried report keeps the id it was first sent
// with.
std::optional<std::vector<std::string>> TlsRptSender::ReportUris(TlsReport& report, Summary* summary,
                                                                 const EventSink& on_event) {
  DnsAnswer txt = resolver_->Lookup(DnsQuestion{"_smtp._tls." + report.domain, RrType::kTXT});
  if (txt.failed()) {
    on_event(Event(TlsRptEventKind::kLookupFailed, report.domain, txt.reason));
    summary->retry = true;
    return std::nullopt;
  }
  std::vector<std::string> texts;
  for (const DnsRecord& r : txt.records) texts.push_back(r.text);
  auto record = SelectTlsRptRecord(texts);
  if (!record.ok()) {
    on_event(Event(TlsRptEventKind::kNoRecord, report.domain, record.error()));
    return std::nullopt;
  }
  for (const std::string& uri : record->ignored) {
    TlsRptEvent e = Event(TlsRptEventKind::kIgnoredScheme, report.domain);
    e.uri = uri;
    on_event(e);
  }
  Result<std::string> id = sent_->ReportId(day_, report.domain, report.report_id);
  if (!id.ok()) {
    on_event(Event(TlsRptEventKind::kStoreFailed, report.domain, sent_->path()));
    summary->retry = true;
    return std::nullopt;
  }
  report.report_id = id.value();
  report.json["report-id"] = id.value();
  std::vector<std::string> uris = std::move(record->rua);
  if (uris.size() > kTlsRptMaxRuaPerDomain) {
    TlsRptEvent e = Event(TlsRptEventKind::kTooManyUris, report.domain);
    e.count = uris.size();
    on_event(e);
    uris.resize(kTlsRptMaxRuaPerDomain);
  }
  return uris;
}

void TlsRptSender::SendToUri(const Delivery& d, const std::string& uri, Summary* summary,
                             const EventSink& on_event) {
  const TlsReport& report = *d.report;
  TlsRptEvent e = Event(TlsRptEventKind::kSent, report.domain);
  e.uri = uri;
  e.report_id = report.report_id;
  // A store that cannot be read counts as "not sent": a report sent twice
  // does less harm than one never sent.
  Result<std::optional<std::string>> before = sent_->Sent(day_, report.domain, uri);
  if (before.ok() && before->has_value()) {
    e.kind = TlsRptEventKind::kAlreadySent;
    e.report_id = **before;
    return on_event(e);
  }
  // A shared store unread: another host may be sending it right now.
  if (!before.ok() && sent_->shared()) {
    on_event(Event(TlsRptEventKind::kStoreUnavailable, report.domain, before.error()));
    summary->retry = true;
    return;
  }
  Status done;
  if (StartsWithIgnoreCase(uri, "mailto:")) {
    auto to = MailtoAddress(uri);
    if (!to.ok()) {
      e.kind = TlsRptEventKind::kIgnoredMailtoUri;
      e.detail = to.error();
      return on_event(e);
    }
    done = QueueMessage(d, to.value(), &e.detail);
  } else if (auto target = HttpsAuthority(uri); !target.ok()) {
    // The record's fault, not a temporary one: not retried.
    e.kind = TlsRptEventKind::kIgnoredHttpsUri;
    e.detail = target.error();
    return on_event(e);
  } else {
    done = poster_->Post(uri, d.gzip);
    e.detail = "posted";
  }
  if (!done.ok()) {
    e.kind = TlsRptEventKind::kNotSent;
    e.detail = done.message();
    summary->retry = true;
    return on_event(e);
  }
  Status marked = sent_->Mark(day_, report.domain, uri, report.report_id, settings_.now);
  if (!marked.ok()) on_event(Event(TlsRptEventKind::kNotRemembered, report.domain, marked.message()));
  e.successes = report.successes;
  e.failures = report.failures;
  on_event(e);
}

Status TlsRptSender::QueueMessage(const Delivery& d, const std::string& to, std::string* how) {
  ReportMessage m;
  m.from = settings_.from;
  m.to = to;
  m.submitter = settings_.submitter;
  m.domain = d.report->domain;
  m.report_id = d.report->report_id;
  m.gzip = d.gzip;
  m.hosts = d.report->hosts;
  const int64_t start = settings_.day_start;
  m.file_name = ReportFileName(m.submitter, m.domain, start, start + kDaySeconds - 1, RandomHexId(4));
  m.message_id = "<tlsrpt." + RandomHexId(8) + "@" + m.submitter + ">";
  m.date = settings_.now;
  Result<std::string> id = queue_->Submit(BuildReportMessage(m), m.from, m.to);
  if (!id.ok()) return id.status().Prefixed("cannot queue the report: ");
  *how = "queued as " + id.value() + " for " + m.to;
  return Status::Ok();
}

}  // namespace mxsec
