// cli_tlsrpt.cc - `mxsec tlsrpt [--day YYYY-MM-DD] [--dry-run] [DOMAIN...]`:
// the daily SMTP TLS reports (RFC 8460) of the attempt log.
//
// Promises: the reports cover one UTC day (default: yesterday) of
// `<state_dir>/delivery.sqlite`; --dry-run prints one JSON report per line
// and sends nothing. Otherwise each domain's `_smtp._tls` TXT record is
// looked up through the configured resolver and the report goes to every
// rua URI: mailto → a §5.3 message submitted to mxsec's own queue (sent by
// the next `mxsec queue run`), https → a POST of the gzip'd JSON through
// the hardened client of https_client.h (PKIX verified, addresses from the
// configured resolver, at most kHttpsMaxAddresses tried, no redirects, one
// deadline of mta_sts_fetch_timeout for the whole POST). At most 8 URIs of a record are used. What was
// delivered is remembered per (day, domain, URI) in
// `<state_dir>/tlsrpt.sqlite` and never sent again; a URI that failed
// temporarily is tried again by the next run, with the same report-id. Exit 0 when every
// report went out (or there was nothing to send), 75 when something must be
// retried, 78 on a configuration error, 64 on bad arguments.
#include <sqlite3.h>
#include <sysexits.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <set>

#include "cli_internal.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/policy/https_client.h"
#include "mxsec/queue/queue.h"
#include "mxsec/report/tlsrpt.h"

namespace mxsec {

namespace {

constexpr size_t kMaxResponseBytes = 64 * 1024;  // what we read of an https endpoint's answer
constexpr size_t kMaxRuaPerDomain = 8;           // a record cannot make us send more reports than this

bool HasSchemeNoCase(const std::string& uri, const char* scheme) {
  const size_t n = strlen(scheme);
  if (uri.size() < n) return false;
  for (size_t i = 0; i < n; ++i)
    if (tolower(static_cast<unsigned char>(uri[i])) != scheme[i]) return false;
  return true;
}

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

struct DbClose { void operator()(sqlite3* d) const { sqlite3_close_v2(d); } };

// Which (day, domain, URI) were delivered: a report is never sent twice.
class SentLog {
 public:
  Status Open(const std::string& path) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) return Status::Error(path + ": " + (raw ? sqlite3_errmsg(raw) : "cannot open"));
    sqlite3_busy_timeout(db_.get(), 5000);
    char* err = nullptr;
    rc = sqlite3_exec(db_.get(),
                      "CREATE TABLE IF NOT EXISTS sent (day TEXT, domain TEXT, uri TEXT, report_id TEXT,"
                      " time INTEGER, PRIMARY KEY (day, domain, uri));"
                      "CREATE TABLE IF NOT EXISTS report_ids (day TEXT, domain TEXT, report_id TEXT,"
                      " PRIMARY KEY (day, domain));",
                      nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = path + ": " + (err ? err : "cannot create table");
      sqlite3_free(err);
      return Status::Error(msg);
    }
    return Status::Ok();
  }
  // The report id already sent to `uri`, or "".
  std::string Sent(const std::string& day, const std::string& domain, const std::string& uri) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_.get(), "SELECT report_id FROM sent WHERE day=?1 AND domain=?2 AND uri=?3", -1, &st,
                           nullptr) != SQLITE_OK)
      return "";
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
    sqlite3_bind_text(st, 1, day.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, domain.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, uri.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) return "";
    const unsigned char* t = sqlite3_column_text(st, 0);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string("?");
  }
  Status Mark(const std::string& day, const std::string& domain, const std::string& uri, const std::string& id,
              int64_t now) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_.get(), "INSERT OR REPLACE INTO sent VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, nullptr) !=
        SQLITE_OK)
      return Status::Error(sqlite3_errmsg(db_.get()));
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
    sqlite3_bind_text(st, 1, day.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, domain.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, uri.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, now);
    if (sqlite3_step(st) != SQLITE_DONE) return Status::Error(sqlite3_errmsg(db_.get()));
    return Status::Ok();
  }
  // The report-id of (day, domain): `proposed` the first time, then always
  // that one, so that a report retried for a URI keeps its id. "" on error.
  std::string ReportId(const std::string& day, const std::string& domain, const std::string& proposed) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_.get(), "INSERT OR IGNORE INTO report_ids VALUES (?1, ?2, ?3)", -1, &st, nullptr) !=
        SQLITE_OK)
      return "";
    sqlite3_bind_text(st, 1, day.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, domain.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, proposed.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return "";
    if (sqlite3_prepare_v2(db_.get(), "SELECT report_id FROM report_ids WHERE day=?1 AND domain=?2", -1, &st,
                           nullptr) != SQLITE_OK)
      return "";
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
    sqlite3_bind_text(st, 1, day.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, domain.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) return "";
    const unsigned char* t = sqlite3_column_text(st, 0);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  }

 private:
  std::unique_ptr<sqlite3, DbClose> db_;
};

// POSTs `body` to `url` (https only) through the hardened client
// (https_client.h): connected to addresses of the URL's host from
// `resolver` (the DNS view mxsec decides with), at most kHttpsMaxAddresses
// of them, all within mta_sts_fetch_timeout; the certificate must be valid
// for the host (PKIX, ca_file or the system store). Any 2xx status is
// success; the answer's body is not read.
Status PostReport(const std::string& url, const std::string& body, const Config& cfg, Resolver* resolver) {
  auto target = HttpsAuthority(url);
  if (!target.ok()) return Status::Error(target.error());
  const std::string& host = target->host;
  std::vector<DnsAnswer> answers =
      resolver->LookupMany({DnsQuestion{host, RrType::kA}, DnsQuestion{host, RrType::kAAAA}});
  HttpsRequest req;
  std::string why;
  for (const DnsAnswer& a : answers) {
    if (a.failed()) why = a.reason;
    for (const DnsRecord& r : a.records) req.addresses.push_back(r.text);
  }
  if (req.addresses.empty())
    return Status::Error("no address for " + host + (why.empty() ? "" : " (" + why + ")"));
  req.host = host;
  req.port = static_cast<uint16_t>(std::stoi(target->port));
  // What follows the authority (HttpsAuthority checked "https://"), without a fragment.
  std::string rest = url.substr(std::min(url.size(), url.find_first_of("/?#", 8)));
  rest = rest.substr(0, rest.find('#'));
  req.path = rest.empty() || rest[0] != '/' ? "/" + rest : rest;
  req.post = true;
  req.body = body;
  req.content_type = "application/tlsrpt+gzip";
  req.want_body = false;
  HttpsOptions opt;
  opt.ca_file = cfg.ca_file;
  opt.connect_timeout_ms = cfg.mta_sts_connect_timeout * 1000L;
  opt.total_timeout_ms = cfg.mta_sts_fetch_timeout * 1000L;
  opt.max_response_bytes = kMaxResponseBytes;
  Result<HttpsResponse> got = HttpsClient(opt).Perform(req);
  if (!got.ok()) return Status::Error(got.error());
  if (got->status < 200 || got->status >= 300) return Status::Error("HTTP status " + std::to_string(got->status));
  return Status::Ok();
}

}  // namespace

int RunTlsrpt(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  bool dry_run = false;
  std::string day_arg;
  std::set<std::string> only;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!options_done && a == "--dry-run") { dry_run = true; continue; }
    if (!options_done && a == "--day") {
      if (i + 1 >= args.size()) return Fail(EX_USAGE, "tlsrpt: --day needs YYYY-MM-DD");
      day_arg = args[++i];
      continue;
    }
    if (!options_done && a.rfind("--day=", 0) == 0) { day_arg = a.substr(6); continue; }
    if (!options_done && a == "--") { options_done = true; continue; }
    if (!options_done && a.size() > 1 && a[0] == '-') return Fail(EX_USAGE, "tlsrpt: unknown option \"" + a + "\"");
    auto n = NormalizeHostName(a);
    if (!n.ok()) return Fail(EX_USAGE, "tlsrpt: invalid domain argument: " + n.error());
    only.insert(n.value());
  }
  const int64_t now = SystemClock()->Now();
  int64_t day_start = (now / 86400 - 1) * 86400;  // yesterday, UTC
  if (!day_arg.empty()) {
    auto d = ParseUtcDay(day_arg);
    if (!d.ok()) return Fail(EX_USAGE, "tlsrpt: --day: " + d.error());
    day_start = d.value();
  }
  const std::string day = FormatUtcDay(day_start);

  const std::string helo = cfg.helo_name.empty() ? DefaultHeloName() : cfg.helo_name;
  const std::string from = cfg.tlsrpt_from.empty() ? "postmaster@" + helo : cfg.tlsrpt_from;
  auto from_box = ParseMailbox(from, false);
  if (!from_box.ok()) return Fail(EX_CONFIG, "tlsrpt: tlsrpt_from \"" + from + "\": " + from_box.error());
  ReportMeta meta;
  meta.organization = cfg.tlsrpt_organization.empty() ? helo : cfg.tlsrpt_organization;
  meta.contact = cfg.tlsrpt_contact.empty() ? from : cfg.tlsrpt_contact;
  meta.day_start = day_start;
  meta.id_suffix = RandomHexId(8) + "@" + helo;

  const std::string log_path = cfg.state_dir + "/delivery.sqlite";
  auto records = ReadAttempts(log_path, day_start, day_start + 86400);
  if (!records.ok()) return Fail(EX_TEMPFAIL, "tlsrpt: cannot read the attempt log: " + records.error());
  std::vector<TlsReport> reports = AggregateReports(records.value(), meta);
  if (!only.empty()) {
    std::vector<TlsReport> kept;
    for (TlsReport& r : reports)
      if (only.count(r.domain)) kept.push_back(std::move(r));
    reports = std::move(kept);
  }
  if (g.verbose)
    std::cerr << "mxsec: tlsrpt: " << day << ": " << records->size() << " attempts, " << reports.size()
              << " reports\n";
  if (dry_run) {
    for (const TlsReport& r : reports) std::cout << r.json.dump() << "\n";
    std::cout.flush();
    return std::cout ? EX_OK : Fail(EX_IOERR, "tlsrpt: cannot write the output");
  }
  if (reports.empty()) return EX_OK;

  if (!MakeDirs(cfg.state_dir)) return Fail(EX_TEMPFAIL, "tlsrpt: " + cfg.state_dir + ": " + strerror(errno));
  SentLog sent;
  Status opened = sent.Open(cfg.state_dir + "/tlsrpt.sqlite");
  if (!opened.ok()) return Fail(EX_TEMPFAIL, "tlsrpt: " + opened.message());
  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, "tlsrpt: " + built.message());
  InitCurlOnce();

  bool retry = false;
  for (TlsReport& rep : reports) {
    const std::string who = "tlsrpt: " + rep.domain + ": ";
    DnsAnswer txt = rt.resolver->Lookup(DnsQuestion{"_smtp._tls." + rep.domain, RrType::kTXT});
    if (txt.failed()) {
      std::cerr << "mxsec: " << who << "TXT lookup of _smtp._tls." << rep.domain << " failed (" << txt.reason
                << "); try again later\n";
      retry = true;
      continue;
    }
    std::vector<std::string> texts;
    for (const DnsRecord& r : txt.records) texts.push_back(r.text);
    auto record = SelectTlsRptRecord(texts);
    if (!record.ok()) {
      std::cout << rep.domain << ": no report sent: " << record.error() << "\n";
      continue;
    }
    for (const std::string& uri : record->ignored)
      std::cerr << "mxsec: " << who << "ignoring rua " << uri << " (only mailto: and https: are supported)\n";
    // A retried report keeps the id it was first sent with.
    const std::string id = sent.ReportId(day, rep.domain, rep.report_id);
    if (id.empty()) {
      std::cerr << "mxsec: " << who << "cannot record the report-id in " << cfg.state_dir
                << "/tlsrpt.sqlite; try again later\n";
      retry = true;
      continue;
    }
    rep.report_id = id;
    rep.json["report-id"] = id;
    if (record->rua.size() > kMaxRuaPerDomain) {
      std::cerr << "mxsec: " << who << "the record lists " << record->rua.size() << " URIs; only the first "
                << kMaxRuaPerDomain << " get the report\n";
      record->rua.resize(kMaxRuaPerDomain);
    }
    const std::string body = rep.json.dump();
    auto gz = Gzip(body);
    if (!gz.ok()) return Fail(EX_SOFTWARE, who + gz.error());
    for (const std::string& uri : record->rua) {
      std::string before = sent.Sent(day, rep.domain, uri);
      if (!before.empty()) {
        std::cout << rep.domain << ": " << uri << ": already sent (report " << before << ")\n";
        continue;
      }
      Status done;
      std::string how;
      if (HasSchemeNoCase(uri, "mailto:")) {
        auto to = MailtoAddress(uri);
        if (!to.ok()) { std::cerr << "mxsec: " << who << uri << ": " << to.error() << "\n"; continue; }
        ReportMessage m;
        m.from = from_box->ToString();
        m.to = to.value();
        m.submitter = helo;
        m.domain = rep.domain;
        m.report_id = rep.report_id;
        m.gzip = gz.value();
        m.file_name = ReportFileName(helo, rep.domain, day_start, day_start + 86400 - 1, RandomHexId(4));
        m.message_id = "<tlsrpt." + RandomHexId(8) + "@" + helo + ">";
        m.date = now;
        auto q = Queue::Open(cfg.queue_dir, true);
        if (!q.ok()) {
          done = Status::Error("cannot queue the report: " + q.error());
        } else {
          QueuedEnvelope env;
          env.sender = m.from;
          env.recipients.push_back(QueuedRecipient{m.to});
          env.notify_delay = false;
          auto id = q->Submit(BuildReportMessage(m), env, SystemClock(), nullptr);
          if (id.ok()) how = "queued as " + id.value() + " for " + m.to;
          else done = Status::Error("cannot queue the report: " + id.error());
        }
      } else {
        if (auto target = HttpsAuthority(uri); !target.ok()) {
          // The record's fault, not a temporary one: not retried.
          std::cerr << "mxsec: " << who << "ignoring rua " << uri << ": " << target.error() << "\n";
          continue;
        }
        done = PostReport(uri, gz.value(), cfg, rt.resolver.get());
        if (done.ok()) how = "posted";
      }
      if (!done.ok()) {
        std::cerr << "mxsec: " << who << uri << ": report " << rep.report_id << " not sent: " << done.message()
                  << "; try again later\n";
        retry = true;
        continue;
      }
      Status marked = sent.Mark(day, rep.domain, uri, rep.report_id, now);
      if (!marked.ok())
        std::cerr << "mxsec: " << who << "warning: cannot remember the report as sent: " << marked.message() << "\n";
      std::cout << rep.domain << ": " << uri << ": report " << rep.report_id << " (" << rep.successes
                << " successful, " << rep.failures << " failed sessions) " << how << "\n";
    }
  }
  std::cout.flush();
  return retry ? EX_TEMPFAIL : EX_OK;
}

}  // namespace mxsec
