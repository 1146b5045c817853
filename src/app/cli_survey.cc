// cli_survey.cc - `mxsec survey [--concurrency N] [--rate R/s]
// [--probe|--no-probe] [--out FILE.jsonl] [--json] [--svg FILE] FILE`:
// how the domains of FILE protect inbound mail (report/survey.h does the
// work; this file parses, prints and keeps the output file).
//
// Promises: per-domain JSON lines go to --out FILE (appended, one flushed
// line per domain), or to stdout before the summary without --out; a rerun
// with the same --out skips the domains already in it, and a last line cut
// short by an interrupted run is cut off the file and its domain surveyed
// again. The summary (a table, or with --json one JSON object) is over
// every domain of FILE, from this run and the file. The progress line is
// written to stderr only when stderr is a terminal. Never sends mail.
// Exit 0 when every domain got a record, 64 usage, 65 a bad list (the
// line is named), 66 an unreadable list, 73 an output that cannot be
// written, 78 configuration.
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "cli_internal.h"
#include "mxsec/report/survey.h"

namespace mxsec {

namespace {

struct SurveyArgs {
  SurveyOptions options;
  std::string out_path;
  std::string svg_path;
  std::string list_path;
  bool json = false;
};

std::optional<int> Usage(const std::string& msg) { return Fail(EX_USAGE, "survey: " + msg); }

std::optional<int> ParseConcurrency(const std::string& v, SurveyArgs* out) {
  char* end = nullptr;
  unsigned long n = std::strtoul(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 1 || n > kSurveyMaxConcurrency)
    return Usage("--concurrency must be 1 to " + std::to_string(kSurveyMaxConcurrency));
  out->options.concurrency = n;
  return std::nullopt;
}

// "R" or "R/s": domains started per second.
std::optional<int> ParseRate(std::string v, SurveyArgs* out) {
  if (v.size() > 2 && v.compare(v.size() - 2, 2, "/s") == 0) v.resize(v.size() - 2);
  char* end = nullptr;
  double r = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(r > 0) || r > kSurveyMaxRate)
    return Usage("--rate must be a number of domains per second, above 0 and at most " +
                 std::to_string(static_cast<int>(kSurveyMaxRate)));
  out->options.rate = r;
  return std::nullopt;
}

// An option with a value (--name VALUE or --name=VALUE); true when `a` is it.
bool TakeValue(const std::vector<std::string>& args, size_t* i, const std::string& name, std::string* value) {
  const std::string& a = args[*i];
  if (a.rfind(name + "=", 0) == 0) { *value = a.substr(name.size() + 1); return true; }
  if (a != name) return false;
  *value = *i + 1 < args.size() ? args[++*i] : std::string();
  return true;
}

std::optional<int> ParseSurveyArgs(const std::vector<std::string>& args, SurveyArgs* out) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string v;
    if (a == "--probe") { out->options.probe = true; continue; }
    if (a == "--no-probe") { out->options.probe = false; continue; }
    if (a == "--json") { out->json = true; continue; }
    if (TakeValue(args, &i, "--concurrency", &v)) {
      if (auto bad = ParseConcurrency(v, out)) return bad;
      continue;
    }
    if (TakeValue(args, &i, "--rate", &v)) {
      if (auto bad = ParseRate(v, out)) return bad;
      continue;
    }
    if (TakeValue(args, &i, "--out", &v) || TakeValue(args, &i, "--svg", &v)) {
      if (v.empty()) return Usage(a.substr(0, 5) + " needs a file name");
      (a.rfind("--out", 0) == 0 ? out->out_path : out->svg_path) = v;
      continue;
    }
    if (a.size() > 1 && a[0] == '-') return Usage("unknown option \"" + a + "\"");
    if (!out->list_path.empty()) return Usage("one list FILE only");
    out->list_path = a;
  }
  if (out->list_path.empty()) return Usage("no list FILE given\n" + std::string(kUsage));
  return std::nullopt;
}

// The list's domains; an exit code (printed) when it cannot be read or parsed.
std::optional<int> ReadList(const std::string& path, std::vector<std::string>* domains) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return Fail(EX_NOINPUT, "survey: " + path + ": " + strerror(errno));
  if (static_cast<uint64_t>(st.st_size) > kSurveyMaxInputBytes)
    return Fail(EX_DATAERR, "survey: " + path + ": larger than " + std::to_string(kSurveyMaxInputBytes) + " octets");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) return Fail(EX_NOINPUT, "survey: " + path + ": cannot be read");
  Result<std::vector<std::string>> parsed = ParseSurveyInput(text.str());
  if (!parsed.ok()) return Fail(EX_DATAERR, "survey: " + path + ": " + parsed.error());
  *domains = std::move(parsed.value());
  return std::nullopt;
}

// The records already in --out (for the domains of the list), with an
// incomplete last line cut off the file.
std::optional<int> ResumeFrom(const std::string& path, const std::unordered_set<std::string>& wanted,
                              std::vector<SurveyRecord>* records) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;  // a new file
  std::ostringstream text;
  text << in.rdbuf();
  Result<SurveyOutput> done = ReadSurveyOutput(text.str());
  if (!done.ok()) return Fail(EX_DATAERR, "survey: " + path + ": " + done.error() + " (not a survey output file?)");
  if (done->truncated_last_line) {
    if (truncate(path.c_str(), static_cast<off_t>(done->complete_size)) != 0)
      return Fail(EX_CANTCREAT, "survey: " + path + ": " + strerror(errno));
    std::cerr << "mxsec: survey: " << path << ": the last line was incomplete (interrupted run): removed, "
              << "that domain is surveyed again\n";
  }
  std::unordered_set<std::string> seen;
  for (SurveyRecord& r : done->records)
    if (wanted.count(r.domain) && seen.insert(r.domain).second) records->push_back(std::move(r));
  return std::nullopt;
}

// The one updating progress line on a terminal.
class Progress {
 public:
  Progress(size_t total, size_t already) : total_(total), done_(already), start_done_(already) {}
  void Done(const SurveyRecord& r) {
    ++done_;
    if (r.mx == "error") ++errors_;
    if (!enabled_) return;
    auto now = Clock::now();
    if (done_ < total_ && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    double seconds = std::chrono::duration<double>(now - start_).count();
    double rate = seconds > 0 ? static_cast<double>(done_ - start_done_) / seconds : 0;
    double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0;
    std::fprintf(stderr, "\r%zu/%zu domains, %.1f/s, %zu errors, ETA %.0f s   ", done_, total_, rate, errors_, eta);
    if (done_ == total_) std::fprintf(stderr, "\n");
  }

 private:
  using Clock = std::chrono::steady_clock;
  const bool enabled_ = isatty(STDERR_FILENO) == 1;
  const size_t total_;
  size_t done_, errors_ = 0;
  const size_t start_done_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
};

SurveyServices ServicesFor(Runtime* rt) {
  SurveyServices s;
  PolicyEngine* engine = rt->engine.get();
  s.resolve = [engine](const std::string& d) { return engine->Resolve(d); };
  s.resolver = rt->resolver.get();
  s.session = RunSmtpSession;
  s.clock = SystemClock();
  return s;
}

std::optional<int> WriteSvg(const std::string& path, const SurveySummary& summary) {
  std::ofstream svg(path, std::ios::binary | std::ios::trunc);
  svg << SummaryToSvg(summary);
  svg.close();
  if (!svg) return Fail(EX_CANTCREAT, "survey: " + path + ": cannot be written");
  return std::nullopt;
}

// Surveys what is not done yet, each record as a line on `lines`.
void SurveyRest(const std::vector<std::string>& todo, const SurveyArgs& args, Runtime* rt, std::FILE* lines,
                std::vector<SurveyRecord>* records, size_t total) {
  Progress progress(total, records->size());
  RunSurvey(todo, args.options, ServicesFor(rt), [&](const SurveyRecord& r) {
    std::string line = SurveyRecordToJsonLine(r) + "\n";
    std::fwrite(line.data(), 1, line.size(), lines);
    std::fflush(lines);
    records->push_back(r);
    progress.Done(r);
  });
}

// The domains of `domains` without a record in `records`, in order.
std::vector<std::string> NotDoneYet(const std::vector<std::string>& domains, const std::vector<SurveyRecord>& records) {
  std::unordered_set<std::string> done;
  for (const SurveyRecord& r : records) done.insert(r.domain);
  std::vector<std::string> todo;
  for (const std::string& d : domains)
    if (!done.count(d)) todo.push_back(d);
  return todo;
}

// What the configuration says of sessions: helo_name, port, timeouts, ca_file.
void TakeSessionSettings(const Config& cfg, SurveyOptions* options) {
  DeliveryOptions d = DeliveryOptionsFrom(cfg);
  options->helo_name = d.helo_name;
  options->port = d.port;
  options->timeouts = d.timeouts;
  options->ca_file = d.ca_file;
}

// Surveys `todo` into --out (appended) or stdout.
std::optional<int> SurveyIntoOutput(const std::vector<std::string>& todo, const SurveyArgs& args, Runtime* rt,
                                    std::vector<SurveyRecord>* records, size_t total) {
  std::FILE* lines = stdout;
  if (!args.out_path.empty() && !(lines = std::fopen(args.out_path.c_str(), "a")))
    return Fail(EX_CANTCREAT, "survey: " + args.out_path + ": " + strerror(errno));
  SurveyRest(todo, args, rt, lines, records, total);
  bool written = !std::ferror(lines);
  if (lines != stdout) written = std::fclose(lines) == 0 && written;
  if (!written)
    return Fail(EX_CANTCREAT, "survey: " + (args.out_path.empty() ? "stdout" : args.out_path) + ": write failed");
  return std::nullopt;
}

int PrintSummary(const SurveyArgs& args, const std::vector<SurveyRecord>& records) {
  SurveySummary summary = Summarize(records, args.options.probe);
  if (!args.svg_path.empty()) {
    if (auto bad = WriteSvg(args.svg_path, summary)) return *bad;
  }
  if (args.json) std::cout << SummaryToJson(summary).dump() << "\n";
  else std::cout << SummaryToText(summary);
  std::cout.flush();
  return std::cout ? EX_OK : EX_IOERR;
}

}  // namespace

int RunSurveyCommand(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& argv) {
  SurveyArgs args;
  if (auto bad = ParseSurveyArgs(argv, &args)) return *bad;
  std::vector<std::string> domains;
  if (auto bad = ReadList(args.list_path, &domains)) return *bad;
  std::vector<SurveyRecord> records;
  if (!args.out_path.empty()) {
    if (auto bad = ResumeFrom(args.out_path, {domains.begin(), domains.end()}, &records)) return *bad;
  }
  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, built.message());
  CheckResolver(&rt, "survey: ", g.verbose > 0);
  TakeSessionSettings(cfg, &args.options);
  if (auto bad = SurveyIntoOutput(NotDoneYet(domains, records), args, &rt, &records, domains.size())) return *bad;
  return PrintSummary(args, records);
}

}  // namespace mxsec
