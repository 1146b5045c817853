// cli_tlsrpt.cc - `mxsec tlsrpt [--day YYYY-MM-DD] [--dry-run] [DOMAIN...]`:
// the daily SMTP TLS reports (RFC 8460) of the attempt log.
//
// Promises: the reports cover one UTC day (default: yesterday) of
// `<state_dir>/delivery.sqlite`; --dry-run prints one JSON report per line
// and sends nothing. Otherwise each domain's `_smtp._tls` TXT record is
// looked up through the configured resolver and the report goes to every
// rua URI: mailto → a §5.3 message submitted to mxsec's own queue (sent by
// the next `mxsec queue run`), https → a POST of the gzip'd JSON (PKIX
// verified, addresses from the configured resolver, no redirects, timeouts
// and a response size cap). At most 8 URIs of a record are used. What was
// delivered is remembered per (day, domain, URI) in
// `<state_dir>/tlsrpt.sqlite` and never sent again; a URI that failed
// temporarily is tried again by the next run, with the same report-id. Exit 0 when every
// report went out (or there was nothing to send), 75 when something must be
// retried, 78 on a configuration error, 64 on bad arguments.
#include <curl/curl.h>
#include <sqlite3.h>
#include <sysexits.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <set>

#include "cli_internal.h"
#include "mxsec/domain_name.h"
#include "mxsec/queue.h"
#include "mxsec/tlsrpt.h"

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

size_t DiscardBody(char*, size_t size, size_t n, void* userdata) {
  size_t* total = static_cast<size_t*>(userdata);
  *total += size * n;
  return *total > kMaxResponseBytes ? 0 : size * n;  // 0 aborts the transfer
}

// POSTs `body` to `url` (https only), connecting to an address of the URL's
// host from `resolver` (the DNS view mxsec decides with). The certificate
// must be valid for the host (PKIX, ca_file or the system store).
Status PostReport(const std::string& url, const std::string& body, const Config& cfg, Resolver* resolver) {
  auto target = HttpsAuthority(url);
  if (!target.ok()) return Status::Error(target.error());
  const std::string& host = target->host;
  const std::string& port = target->port;
  std::vector<DnsAnswer> answers =
      resolver->LookupMany({DnsQuestion{host, RrType::kA}, DnsQuestion{host, RrType::kAAAA}});
  std::vector<std::string> addresses;
  std::string why;
  for (const DnsAnswer& a : answers) {
    if (a.failed()) why = a.reason;
    for (const DnsRecord& r : a.records) addresses.push_back(r.text);
  }
  if (addresses.empty())
    return Status::Error("no address for " + host + (why.empty() ? "" : " (" + why + ")"));

  std::string last_error;
  for (const std::string& addr : addresses) {
    std::unique_ptr<CURL, void (*)(CURL*)> h(curl_easy_init(), curl_easy_cleanup);
    if (!h) return Status::Error("curl_easy_init failed");
    const std::string target = addr.find(':') != std::string::npos ? "[" + addr + "]" : addr;
    // Empty host and port match this handle's one URL (whatever case it
    // spells its host in): connect to the address we resolved.
    const std::string entry = "::" + target + ":" + port;
    std::unique_ptr<curl_slist, void (*)(curl_slist*)> connect_to(curl_slist_append(nullptr, entry.c_str()),
                                                                  curl_slist_free_all);
    std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers(
        curl_slist_append(nullptr, "Content-Type: application/tlsrpt+gzip"), curl_slist_free_all);
    char errbuf[CURL_ERROR_SIZE] = "";
    size_t received = 0;
    CURL* c = h.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!cfg.ca_file.empty()) {
      curl_easy_setopt(c, CURLOPT_CAINFO, cfg.ca_file.c_str());
      curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
    }
    curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to.get());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg.mta_sts_connect_timeout * 1000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg.mta_sts_fetch_timeout * 1000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, DiscardBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &received);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mxsec");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status >= 200 && status < 300) return Status::Ok();
    if (rc == CURLE_WRITE_ERROR && status >= 200 && status < 300) return Status::Ok();  // a long answer, cut off
    last_error = addr + ": " +
                 (rc != CURLE_OK ? std::string(*errbuf ? errbuf : curl_easy_strerror(rc))
                                 : "HTTP status " + std::to_string(status));
  }
  return Status::Error(last_error);
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
