// cli_tlsrpt.cc - `mxsec tlsrpt [--day YYYY-MM-DD] [--dry-run] [DOMAIN...]`:
// the daily SMTP TLS reports (RFC 8460) of the attempt log.
//
// Promises: the reports cover one UTC day (default: yesterday) of
// `<state_dir>/delivery.sqlite`; --dry-run prints one JSON report per line
// and sends nothing. Otherwise the reports go out through the sender of
// report/tlsrpt_send.h (rua URIs from each domain's `_smtp._tls` TXT record
// through the configured resolver; https through the hardened client,
// mailto into mxsec's own queue; at most kTlsRptMaxRuaPerDomain URIs; sent
// once per (day, domain, URI), remembered in `<state_dir>/tlsrpt.sqlite`),
// one line per step: results on stdout, problems on stderr.
//
// With state_backend = postgresql://... (a fleet, report/fleet_state.h):
// this host first forwards its own attempt log, then the reports are built
// from the shared log of every host, and the sent-once store is the shared
// one, so hosts running `tlsrpt` at once send each (day, domain, URI) once.
// When the shared state cannot be used nothing is sent (a report from this
// host's rows alone would be a wrong report, and sent once): exit 75, and
// the next run tries again.
//
// Exit 0 when
// every report went out (or there was nothing to send), 75 when something
// must be retried, 78 on a configuration error, 64 on bad arguments, 70 on
// an internal error.
#include <sysexits.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "cli_internal.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/base/pg.h"
#include "mxsec/base/pg_schema.h"
#include "mxsec/report/fleet_state.h"
#include "mxsec/report/tlsrpt.h"
#include "mxsec/report/tlsrpt_send.h"

namespace mxsec {

namespace {

struct TlsrptArgs {
  bool dry_run = false;
  std::string day;             // --day, "" for yesterday
  std::set<std::string> only;  // the domains named, normal form
};

// Parses the arguments; an exit code (with the message printed) on error.
std::optional<int> ParseTlsrptArgs(const std::vector<std::string>& args, TlsrptArgs* out) {
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!options_done && a == "--dry-run") { out->dry_run = true; continue; }
    if (!options_done && a == "--day") {
      if (i + 1 >= args.size()) return Fail(EX_USAGE, "tlsrpt: --day needs YYYY-MM-DD");
      out->day = args[++i];
      continue;
    }
    if (!options_done && a.rfind("--day=", 0) == 0) { out->day = a.substr(6); continue; }
    if (!options_done && a == "--") { options_done = true; continue; }
    if (!options_done && a.size() > 1 && a[0] == '-') return Fail(EX_USAGE, "tlsrpt: unknown option \"" + a + "\"");
    auto n = NormalizeHostName(a);
    if (!n.ok()) return Fail(EX_USAGE, "tlsrpt: invalid domain argument: " + n.error());
    out->only.insert(n.value());
  }
  return std::nullopt;
}

// Who the reports come from (organization, contact, the messages' From:),
// from the configuration; an exit code on a configuration error.
std::optional<int> ReportIdentity(const Config& cfg, int64_t day_start, ReportMeta* meta,
                                  TlsRptSendSettings* settings) {
  const std::string helo = cfg.helo_name.empty() ? DefaultHeloName() : cfg.helo_name;
  const std::string from = cfg.tlsrpt_from.empty() ? "postmaster@" + helo : cfg.tlsrpt_from;
  auto from_box = ParseMailbox(from, false);
  if (!from_box.ok()) return Fail(EX_CONFIG, "tlsrpt: tlsrpt_from \"" + from + "\": " + from_box.error());
  meta->organization = cfg.tlsrpt_organization.empty() ? helo : cfg.tlsrpt_organization;
  meta->contact = cfg.tlsrpt_contact.empty() ? from : cfg.tlsrpt_contact;
  meta->day_start = day_start;
  meta->id_suffix = RandomHexId(8) + "@" + helo;
  settings->from = from_box->ToString();
  settings->submitter = helo;
  settings->day_start = day_start;
  return std::nullopt;
}

int PrintDryRun(const std::vector<TlsReport>& reports) {
  for (const TlsReport& r : reports) std::cout << r.json.dump() << "\n";
  std::cout.flush();
  return std::cout ? EX_OK : Fail(EX_IOERR, "tlsrpt: cannot write the output");
}

void PrintEvent(const TlsRptEvent& e) {
  if (IsTlsRptWarning(e.kind))
    std::cerr << "mxsec: tlsrpt: " << DescribeTlsRptEvent(e) << "\n";
  else
    std::cout << DescribeTlsRptEvent(e) << "\n";
}

// Sends the reports for real: the sent-once store (`shared`, or this
// host's own), the resolver, the poster and the queue, then the sender.
int SendReports(const Config& cfg, TlsRptSendSettings settings, std::vector<TlsReport>& reports,
                TlsRptSentStore* shared) {
  std::optional<TlsRptSentLog> local;
  if (shared == nullptr) {
    if (!MakeDirs(cfg.state_dir)) return Fail(EX_TEMPFAIL, "tlsrpt: " + cfg.state_dir + ": " + strerror(errno));
    Result<TlsRptSentLog> sent = TlsRptSentLog::Open(cfg.state_dir + "/tlsrpt.sqlite");
    if (!sent.ok()) return Fail(EX_TEMPFAIL, "tlsrpt: " + sent.error());
    local.emplace(std::move(sent).value());
  }
  TlsRptSentStore* store = shared != nullptr ? shared : &local.value();
  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, "tlsrpt: " + built.message());
  std::unique_ptr<ReportPoster> poster = NewHttpsReportPoster(cfg, rt.resolver.get());
  std::unique_ptr<ReportQueue> queue = NewQueueReportQueue(cfg.queue_dir);
  TlsRptSender sender(std::move(settings), rt.resolver.get(), poster.get(), queue.get(), store);
  TlsRptSender::Summary done = sender.Send(reports, PrintEvent);
  std::cout.flush();
  if (done.internal_error) return EX_SOFTWARE;
  return done.retry ? EX_TEMPFAIL : EX_OK;
}

// The shared state cannot be used: nothing is sent.
int SharedStateDown(const Status& s) {
  const int code = s.code() == Status::Code::kInvalid ? EX_CONFIG : EX_TEMPFAIL;
  return Fail(code, "tlsrpt: the shared state cannot be used: " + s.message() +
                        "; no report sent (this host's rows alone would make a wrong report)" +
                        (code == EX_TEMPFAIL ? ", try again later" : ""));
}

// The fleet's reports of the day: this host's rows forwarded first (all of
// them: ForwardAttempts' per-call bound is for deliveries; this loop ends
// when the local log does), then every host's rows.
Result<TlsRptDay> LoadFleetDay(const Config& cfg, PgConnection& c, const ReportMeta& meta,
                               const std::set<std::string>& only) {
  for (;;) {
    Result<ForwardResult> forwarded = ForwardOwnAttempts(cfg, c);
    if (!forwarded.ok()) return forwarded.status();
    if (!forwarded->more) break;
  }
  Result<std::vector<AttemptRecord>> records = ReadPgAttempts(c, meta.day_start, meta.day_start + 86400);
  if (!records.ok()) return records.status();
  return DayReportsOf(records.value(), meta, only);
}

}  // namespace

int RunTlsrpt(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  TlsrptArgs parsed;
  if (auto code = ParseTlsrptArgs(args, &parsed)) return *code;
  const int64_t now = SystemClock()->Now();
  int64_t day_start = (now / 86400 - 1) * 86400;  // yesterday, UTC
  if (!parsed.day.empty()) {
    auto d = ParseUtcDay(parsed.day);
    if (!d.ok()) return Fail(EX_USAGE, "tlsrpt: --day: " + d.error());
    day_start = d.value();
  }
  ReportMeta meta;
  TlsRptSendSettings settings;
  if (auto code = ReportIdentity(cfg, day_start, &meta, &settings)) return *code;
  settings.now = now;

  const bool fleet = IsPgBackend(cfg.state_backend);
  std::optional<PgConnection> pg;
  if (fleet) {
    Result<PgConnection> c = ConnectPgState(cfg);
    if (!c.ok()) return SharedStateDown(c.status());
    pg.emplace(std::move(c).value());
  }
  auto day = fleet ? LoadFleetDay(cfg, pg.value(), meta, parsed.only)
                   : LoadDayReports(LocalAttemptLogPath(cfg), meta, parsed.only);
  if (!day.ok() && fleet) return SharedStateDown(day.status());
  if (!day.ok()) return Fail(EX_TEMPFAIL, "tlsrpt: cannot read the attempt log: " + day.error());
  if (g.verbose)
    std::cerr << "mxsec: tlsrpt: " << FormatUtcDay(day_start) << ": " << day->attempts << " attempts"
              << (fleet ? " of the fleet" : "") << ", " << day->reports.size() << " reports\n";
  if (parsed.dry_run) return PrintDryRun(day->reports);
  if (day->reports.empty()) return EX_OK;
  if (!fleet) return SendReports(cfg, std::move(settings), day->reports, nullptr);
  PgTlsRptSentLog shared(&pg.value(), StateHostName(cfg));
  return SendReports(cfg, std::move(settings), day->reports, &shared);
}

}  // namespace mxsec
