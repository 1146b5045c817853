// cli_stats.cc - `mxsec stats [--since DURATION] [--json | --prometheus PATH]
// [DOMAIN...]`:
// what share of the outbound mail was authenticated (DANE, MTA-STS),
// encrypted only, or sent in clear text, and what the TLS policy deferred
// or bounced, per UTC day and in total, from the attempt log
// (report/stats.h for the counting).
//
// Promises: reads `<state_dir>/delivery.sqlite` only, changes nothing; the
// window is the last DURATION up to now (default kStatsDefaultSince); with
// --json one JSON object on stdout (fields in mxsec(8)), else a table.
// --prometheus PATH: the counters of the whole log (no --since: counters
// must not go down) in node_exporter's textfile format, written to a
// temporary file in PATH's directory and renamed over PATH, so the
// collector never reads half a file; nothing on stdout.
// Exit 0 with a report (a missing log is an empty one), 64 on bad
// arguments, 66 when the log cannot be read, 73 when PATH cannot be
// written.
#include <stdlib.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli_internal.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/report/stats.h"
#include "mxsec/report/tlsrpt.h"

namespace mxsec {

namespace {

constexpr const char* kStatsDefaultSince = "7d";

struct StatsArgs {
  bool json = false;
  int64_t since = 0;       // seconds
  std::string prometheus;  // --prometheus PATH, or ""
  std::set<std::string> domains;
};

// Parses the arguments; an exit code (with the message printed) on error.
std::optional<int> ParseStatsArgs(const std::vector<std::string>& args, StatsArgs* out) {
  std::string since;  // "" until given
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!options_done && a == "--json") { out->json = true; continue; }
    if (!options_done && a == "--since") {
      if (i + 1 >= args.size()) return Fail(EX_USAGE, "stats: --since needs a duration (7d, 12h)");
      since = args[++i];
      continue;
    }
    if (!options_done && a.rfind("--since=", 0) == 0) { since = a.substr(8); continue; }
    if (!options_done && a == "--prometheus") {
      if (i + 1 >= args.size() || args[i + 1].empty()) return Fail(EX_USAGE, "stats: --prometheus needs a path");
      out->prometheus = args[++i];
      continue;
    }
    if (!options_done && a == "--") { options_done = true; continue; }
    if (!options_done && a.size() > 1 && a[0] == '-') return Fail(EX_USAGE, "stats: unknown option \"" + a + "\"");
    auto n = NormalizeHostName(a);
    if (!n.ok()) return Fail(EX_USAGE, "stats: invalid domain argument: " + n.error());
    out->domains.insert(n.value());
  }
  if (!out->prometheus.empty() && (!since.empty() || out->json))
    return Fail(EX_USAGE, "stats: --prometheus counts the whole log: not with --since or --json");
  Result<int64_t> seconds = ParseStatsDuration(since.empty() ? kStatsDefaultSince : since);
  if (!seconds.ok()) return Fail(EX_USAGE, "stats: --since: " + seconds.error());
  out->since = seconds.value();
  return std::nullopt;
}

std::string Percent(int64_t part, int64_t whole) {
  if (whole == 0) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
  return buf;
}

void Row(std::ostream& o, const std::string& label, const StatsCount& c, const std::string& share = "") {
  o << "  " << std::left << std::setw(32) << label << std::right << std::setw(10) << c.messages << std::setw(12)
    << c.recipients;
  if (!share.empty()) o << std::setw(9) << share;
  o << "\n";
}

void Reasons(std::ostream& o, const std::map<std::string, StatsCount>& by_reason) {
  for (const auto& [reason, c] : by_reason) Row(o, "  " + reason, c);
}

void TotalsTable(std::ostream& o, const StatsBucket& t) {
  static const std::pair<const char*, const char*> kDelivered[] = {
      {"dane", "delivered, DANE"}, {"mta-sts", "delivered, MTA-STS (PKIX)"},
      {"encrypted", "delivered, encrypted only"}, {"clear", "delivered, clear text"}};
  int64_t delivered = 0;
  for (const auto& [key, c] : t.delivered) delivered += c.recipients;
  o << "  " << std::left << std::setw(32) << "" << std::right << std::setw(10) << "messages" << std::setw(12)
    << "recipients" << std::setw(9) << "share" << "\n";
  for (const auto& [key, label] : kDelivered) {
    const StatsCount& c = t.delivered.at(key);
    Row(o, label, c, Percent(c.recipients, delivered));
  }
  Row(o, "deferred by TLS policy", t.deferred_policy);
  Reasons(o, t.deferred_policy_by_reason);
  Row(o, "bounced by TLS policy", t.bounced_policy);
  Reasons(o, t.bounced_policy_by_reason);
  Row(o, "deferred, other reasons", t.deferred_other);
  Row(o, "bounced, other reasons", t.bounced_other);
}

void DaysTable(std::ostream& o, const StatsReport& r) {
  o << "\nper day (messages):\n  " << std::left << std::setw(12) << "day" << std::right;
  for (const std::string& c : StatsCategories()) o << std::setw(17) << c;
  o << "\n";
  for (const auto& [day, b] : r.days) {
    o << "  " << std::left << std::setw(12) << day << std::right;
    for (const std::string& c : StatsCategories()) o << std::setw(17) << b.Category(c).messages;
    o << "\n";
  }
}

void TopTable(std::ostream& o, const StatsReport& r) {
  o << "\ntop destination domains (messages/recipients):\n";
  for (const std::string& c : StatsCategories()) {
    const std::vector<StatsDomainCount>& list = r.top_domains.at(c);
    if (list.empty()) continue;
    o << "  " << c << ":";
    for (const StatsDomainCount& d : list)
      o << " " << d.domain << " (" << d.count.messages << "/" << d.count.recipients << ")";
    o << "\n";
  }
}

std::string StatsTable(const StatsReport& r) {
  std::ostringstream o;
  o << "mxsec stats " << FormatUtcDateTime(r.from) << " to " << FormatUtcDateTime(r.to) << ", ";
  if (r.domains.empty()) o << "all domains";
  for (const std::string& d : r.domains) o << (d == *r.domains.begin() ? "" : " ") << d;
  o << "\n";
  TotalsTable(o, r.total);
  if (!r.days.empty()) DaysTable(o, r);
  TopTable(o, r);
  return o.str();
}

// Writes `text` to `path` by a temporary file in the same directory,
// fsync and rename: readers see the old file or the new one, never a part.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const size_t slash = path.rfind('/');
  std::string tmp = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + ".mxsec-stats.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return Status::IoError(tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == text.size() && fchmod(fd, 0644) == 0 && fsync(fd) == 0;
  const int err = errno;
  if (close(fd) != 0 || !ok || rename(tmp.c_str(), path.c_str()) != 0) {
    const int why = ok ? errno : err;
    unlink(tmp.c_str());
    return Status::IoError(path + ": " + std::strerror(why));
  }
  return Status::Ok();
}

}  // namespace

int RunStats(const GlobalOptions&, const Config& cfg, const std::vector<std::string>& args) {
  StatsArgs parsed;
  if (std::optional<int> bad = ParseStatsArgs(args, &parsed)) return *bad;
  StatsOptions options;
  options.to = SystemClock()->Now() + 1;  // up to and including now
  options.from = parsed.prometheus.empty() ? options.to - 1 - parsed.since : 0;
  options.domains = parsed.domains;
  const std::string path = cfg.state_dir + "/delivery.sqlite";
  Result<StatsReport> report = ReadStats(path, options);
  if (!report.ok()) return Fail(EX_NOINPUT, "stats: cannot read the attempt log: " + report.error());
  if (!parsed.prometheus.empty()) {
    Status written = WriteFileAtomically(parsed.prometheus, StatsToPrometheus(report.value()));
    return written.ok() ? EX_OK : Fail(EX_CANTCREAT, "stats: --prometheus: " + written.message());
  }
  std::cout << (parsed.json ? StatsToJson(report.value()) + "\n" : StatsTable(report.value()));
  return EX_OK;
}

}  // namespace mxsec
