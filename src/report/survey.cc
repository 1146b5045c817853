// survey.cc - see survey.h: the facts of each domain, the JSON lines, the
// resume, and the shares (survey_summary.cc draws them).
#include "mxsec/report/survey.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "mxsec/base/domain_name.h"
#include "mxsec/dns/dane.h"
#include "mxsec/report/tlsrpt.h"
#include "mxsec/smtp/probe.h"

namespace mxsec {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Status LineError(size_t line, const std::string& what) {
  return Status::Invalid("line " + std::to_string(line) + ": " + what);
}

// The domain of one list line ("" for a line to skip).
Result<std::string> DomainOfLine(std::string_view line, size_t number) {
  line = Trim(line);
  if (line.empty() || line.front() == '#') return std::string();
  if (size_t comma = line.find(','); comma != std::string_view::npos) {
    std::string_view rank = Trim(line.substr(0, comma));
    std::string_view rest = Trim(line.substr(comma + 1));
    if (number == 1 && AsciiLower(rank) == "rank" && AsciiLower(rest) == "domain") return std::string();
    if (!AllDigits(rank) || rest.find(',') != std::string_view::npos)
      return LineError(number, "expected a domain or \"rank,domain\"");
    line = rest;
  }
  Result<std::string> name = NormalizeHostName(line);
  if (!name.ok()) return LineError(number, name.error());
  return name.value();
}

}  // namespace

Result<std::vector<std::string>> ParseSurveyInput(std::string_view text) {
  if (text.size() > kSurveyMaxInputBytes)
    return Status::Limit("the list is larger than " + std::to_string(kSurveyMaxInputBytes) + " octets");
  std::vector<std::string> domains;
  std::unordered_set<std::string> seen;
  size_t number = 0;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (line.size() > kSurveyMaxLineLength)
      return LineError(number, "longer than " + std::to_string(kSurveyMaxLineLength) + " octets");
    Result<std::string> domain = DomainOfLine(line, number);
    if (!domain.ok()) return domain.status();
    if (domain->empty() || !seen.insert(*domain).second) continue;
    if (domains.size() == kSurveyMaxDomains)
      return LineError(number, "more than " + std::to_string(kSurveyMaxDomains) + " domains");
    domains.push_back(std::move(domain.value()));
  }
  return domains;
}

// --- The facts of one domain ---

namespace {

bool HasSecureUsableTlsa(const MxPolicy& mx) {
  return mx.tlsa_looked_up && mx.tlsa_dnssec == DnssecStatus::kSecure &&
         std::any_of(mx.tlsa.begin(), mx.tlsa.end(), IsUsableTlsa);
}

std::string TlsaState(const MxPolicy& mx) {
  if (!mx.tlsa_looked_up) return "none";
  if (mx.tlsa_dnssec == DnssecStatus::kBogus || mx.tlsa_dnssec == DnssecStatus::kIndeterminate) return "failed";
  if (mx.tlsa_dnssec != DnssecStatus::kSecure || mx.tlsa.empty()) return "none";
  return HasSecureUsableTlsa(mx) ? "usable" : "unusable";
}

std::string MxState(const DomainPolicy& p) {
  if (p.status_code == "5.1.10") return "null";
  if (p.status_code == "5.1.2") return "nxdomain";
  if (p.mx.empty()) return "error";
  bool any_address = std::any_of(p.mx.begin(), p.mx.end(), [](const MxPolicy& m) { return !m.addresses.empty(); });
  if (!any_address) return "no-address";
  return p.implicit_mx ? "implicit" : "mx";
}

bool StsInForce(const StsState& sts) {
  return sts.problem == StsProblem::kNone || sts.problem == StsProblem::kCacheFallback;
}

void SetMtaSts(const DomainPolicy& p, SurveyRecord* r) {
  if (!p.mta_sts) return;
  const StsState& sts = *p.mta_sts;
  r->mta_sts_error = sts.error.value_or("");
  if (!StsInForce(sts)) {
    r->mta_sts = "broken";
    return;
  }
  r->mta_sts = StsModeName(sts.mode);
  if (sts.mode == StsMode::kNone) return;
  bool all = true;
  for (SurveyHost& h : r->hosts) {
    h.sts_listed = std::any_of(sts.mx.begin(), sts.mx.end(),
                               [&](const std::string& pattern) { return StsMxMatches(pattern, h.host); });
    all = all && h.sts_listed;
  }
  r->mta_sts_covers_mx = all;
}

SurveyHost HostFromPolicy(const MxPolicy& mx) {
  SurveyHost h;
  h.host = mx.host;
  h.preference = mx.preference;
  h.dnssec = DnssecStatusName(mx.dnssec);
  h.addresses = mx.addresses;
  h.tls = HostTlsName(mx.tls);
  h.tlsa = TlsaState(mx);
  return h;
}

}  // namespace

SurveyRecord RecordFromPolicy(const DomainPolicy& p) {
  SurveyRecord r;
  r.domain = p.domain;
  r.mx = MxState(p);
  r.dnssec = DnssecStatusName(p.dnssec);
  r.policy = VerdictName(p.verdict);
  r.mechanism = MechanismName(p.mechanism);
  r.reason = p.reason;
  for (const MxPolicy& mx : p.mx) r.hosts.push_back(HostFromPolicy(mx));
  SetMtaSts(p, &r);
  return r;
}

void SetTlsRpt(const DnsAnswer& txt, SurveyRecord* r) {
  if (txt.failed()) {
    r->tlsrpt = "error";
    r->tlsrpt_detail = txt.reason;
    return;
  }
  std::vector<std::string> texts;
  for (const DnsRecord& rec : txt.records) texts.push_back(rec.text);
  bool candidate = std::any_of(texts.begin(), texts.end(),
                               [](const std::string& t) { return t.rfind("v=TLSRPTv1", 0) == 0; });
  if (!candidate) {
    r->tlsrpt = "none";
    return;
  }
  Result<TlsRptRecord> record = SelectTlsRptRecord(texts);
  r->tlsrpt = record.ok() ? "valid" : "invalid";
  r->tlsrpt_detail = record.ok() ? "" : record.error();
}

SurveyProbe ProbeFromSession(const std::string& address, const SessionResult& s, bool dane_checked) {
  SurveyProbe p;
  p.address = address;
  p.connected = s.connected;
  p.starttls = s.starttls_offered;
  if (s.tls.used) {
    p.tls_version = s.tls.version;
    if (s.tls.survey_pkix) p.pkix_valid = s.tls.survey_pkix->ok;
    if (dane_checked && s.tls.survey_dane) p.dane_match = s.tls.survey_dane->ok;
  }
  p.requiretls = AnnouncesRequireTls(s);
  if (s.host_failed) p.error = s.error;
  return p;
}

SessionOptions SurveySessionOptions(const SurveyOptions& options, const DomainPolicy& policy, const MxPolicy& host) {
  DeliveryOptions d;
  d.helo_name = options.helo_name;
  d.ca_file = options.ca_file;
  d.timeouts = options.timeouts;
  MxPolicy as_probed = host;
  // SessionOptionsFor sets TLSA, SNI and reference names for a dane host.
  as_probed.tls = HasSecureUsableTlsa(host) ? HostTls::kDane : HostTls::kMay;
  as_probed.pkix_names.clear();
  DomainPolicy without_local = policy;
  without_local.local.reset();
  SessionOptions o = SessionOptionsFor(without_local, as_probed, d);
  o.tls = HostTls::kMay;
  o.probe_only = true;
  o.report_verification = true;
  SmtpTimeouts& t = o.timeouts;
  for (int* stage : {&t.connect, &t.greeting, &t.helo, &t.starttls, &t.quit})
    *stage = std::min(*stage, kSurveyMaxStageTimeoutMs);
  return o;
}

namespace {

// The first of the host's addresses that answers (at most
// kSurveyMaxAddressesPerHost tried).
SurveyProbe ProbeHost(const DomainPolicy& policy, const MxPolicy& mx, const SurveyOptions& options,
                      const SurveyServices& services) {
  SessionOptions so = SurveySessionOptions(options, policy, mx);
  SurveyProbe probe;
  for (size_t i = 0; i < mx.addresses.size() && i < kSurveyMaxAddressesPerHost; ++i) {
    SessionResult s = services.session(mx.addresses[i], options.port, so, nullptr, services.clock->Now());
    probe = ProbeFromSession(mx.addresses[i], s, !so.tlsa.empty());
    if (probe.connected) break;
  }
  return probe;
}

}  // namespace

SurveyRecord SurveyOneDomain(const std::string& domain, const SurveyOptions& options,
                             const SurveyServices& services) {
  DomainPolicy policy = services.resolve(domain);
  SurveyRecord r = RecordFromPolicy(policy);
  SetTlsRpt(services.resolver->Lookup(DnsQuestion{"_smtp._tls." + domain, RrType::kTXT}), &r);
  if (!options.probe) return r;
  r.probed = true;
  for (size_t i = 0; i < policy.mx.size(); ++i)
    if (!policy.mx[i].addresses.empty()) r.hosts[i].probe = ProbeHost(policy, policy.mx[i], options, services);
  return r;
}

namespace {

// Hands out start times at most `rate` per second (0: at once).
class StartPacer {
 public:
  explicit StartPacer(double rate) : rate_(rate) {}
  void WaitForTurn() {
    if (rate_ <= 0) return;
    const auto interval = std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(1.0 / rate_));
    Steady::time_point turn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      turn = std::max(Steady::now(), next_);
      next_ = turn + interval;
    }
    std::this_thread::sleep_until(turn);
  }

 private:
  using Steady = std::chrono::steady_clock;
  const double rate_;
  std::mutex mu_;
  Steady::time_point next_ = Steady::now();
};

}  // namespace

void RunSurvey(const std::vector<std::string>& domains, const SurveyOptions& options,
               const SurveyServices& services, const std::function<void(const SurveyRecord&)>& done) {
  const size_t workers = std::min(domains.size(), std::clamp<size_t>(options.concurrency, 1, kSurveyMaxConcurrency));
  StartPacer pacer(std::min(options.rate, kSurveyMaxRate));
  std::atomic<size_t> next{0};
  std::mutex done_mu;
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < domains.size(); i = next++) {
        pacer.WaitForTurn();
        SurveyRecord r = SurveyOneDomain(domains[i], options, services);
        std::lock_guard<std::mutex> lock(done_mu);
        done(r);
      }
    });
  }
  for (std::thread& t : threads) t.join();
}

// --- JSON lines ---

namespace {

nlohmann::json OptionalBool(const std::optional<bool>& b) { return b ? nlohmann::json(*b) : nlohmann::json(); }

nlohmann::json ProbeToJson(const SurveyProbe& p) {
  return {{"address", p.address},         {"connected", p.connected},
          {"starttls", p.starttls},       {"tls_version", p.tls_version.empty() ? nlohmann::json() : nlohmann::json(p.tls_version)},
          {"pkix_valid", OptionalBool(p.pkix_valid)}, {"dane_match", OptionalBool(p.dane_match)},
          {"requiretls", p.requiretls},   {"error", p.error.empty() ? nlohmann::json() : nlohmann::json(p.error)}};
}

nlohmann::json HostToJson(const SurveyHost& h) {
  return {{"host", h.host}, {"preference", h.preference}, {"dnssec", h.dnssec}, {"addresses", h.addresses},
          {"tls", h.tls},   {"tlsa", h.tlsa},             {"sts_listed", h.sts_listed},
          {"probe", h.probe ? ProbeToJson(*h.probe) : nlohmann::json()}};
}

nlohmann::json MtaStsToJson(const SurveyRecord& r) {
  if (r.mta_sts.empty()) return nlohmann::json();
  return {{"mode", r.mta_sts},
          {"error", r.mta_sts_error.empty() ? nlohmann::json() : nlohmann::json(r.mta_sts_error)},
          {"covers_mx", OptionalBool(r.mta_sts_covers_mx)}};
}

// Field readers that never throw: a missing or mistyped field reads as empty.
std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
bool Bool(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
std::optional<bool> OptBool(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}
const nlohmann::json* Obj(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? &*it : nullptr;
}

SurveyProbe ProbeFromJson(const nlohmann::json& j) {
  SurveyProbe p;
  p.address = Str(j, "address");
  p.connected = Bool(j, "connected");
  p.starttls = Bool(j, "starttls");
  p.tls_version = Str(j, "tls_version");
  p.pkix_valid = OptBool(j, "pkix_valid");
  p.dane_match = OptBool(j, "dane_match");
  p.requiretls = Bool(j, "requiretls");
  p.error = Str(j, "error");
  return p;
}

SurveyHost HostFromJson(const nlohmann::json& j) {
  SurveyHost h;
  h.host = Str(j, "host");
  auto pref = j.find("preference");
  if (pref != j.end() && pref->is_number_unsigned() && pref->get<uint64_t>() <= 65535)
    h.preference = static_cast<uint16_t>(pref->get<uint64_t>());
  h.dnssec = Str(j, "dnssec");
  if (auto a = j.find("addresses"); a != j.end() && a->is_array())
    for (const nlohmann::json& x : *a)
      if (x.is_string()) h.addresses.push_back(x.get<std::string>());
  h.tls = Str(j, "tls");
  h.tlsa = Str(j, "tlsa");
  h.sts_listed = Bool(j, "sts_listed");
  if (const nlohmann::json* p = Obj(j, "probe")) h.probe = ProbeFromJson(*p);
  return h;
}

}  // namespace

nlohmann::json SurveyRecordToJson(const SurveyRecord& r) {
  nlohmann::json hosts = nlohmann::json::array();
  for (const SurveyHost& h : r.hosts) hosts.push_back(HostToJson(h));
  return {{"domain", r.domain},
          {"mx", r.mx},
          {"dnssec", r.dnssec},
          {"policy", r.policy},
          {"mechanism", r.mechanism},
          {"reason", r.reason},
          {"hosts", hosts},
          {"mta_sts", MtaStsToJson(r)},
          {"tlsrpt", {{"status", r.tlsrpt}, {"detail", r.tlsrpt_detail.empty() ? nlohmann::json() : nlohmann::json(r.tlsrpt_detail)}}},
          {"probed", r.probed}};
}

std::string SurveyRecordToJsonLine(const SurveyRecord& r) {
  return SurveyRecordToJson(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<SurveyRecord> SurveyRecordFromJson(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Invalid("not a JSON object");
  SurveyRecord r;
  r.domain = Str(j, "domain");
  if (r.domain.empty()) return Status::Invalid("no \"domain\"");
  r.mx = Str(j, "mx");
  r.dnssec = Str(j, "dnssec");
  r.policy = Str(j, "policy");
  r.mechanism = Str(j, "mechanism");
  r.reason = Str(j, "reason");
  if (auto h = j.find("hosts"); h != j.end() && h->is_array())
    for (const nlohmann::json& x : *h)
      if (x.is_object()) r.hosts.push_back(HostFromJson(x));
  if (const nlohmann::json* sts = Obj(j, "mta_sts")) {
    r.mta_sts = Str(*sts, "mode");
    r.mta_sts_error = Str(*sts, "error");
    r.mta_sts_covers_mx = OptBool(*sts, "covers_mx");
  }
  if (const nlohmann::json* t = Obj(j, "tlsrpt")) {
    r.tlsrpt = Str(*t, "status");
    r.tlsrpt_detail = Str(*t, "detail");
  }
  r.probed = Bool(j, "probed");
  return r;
}

Result<SurveyOutput> ReadSurveyOutput(std::string_view text) {
  SurveyOutput out;
  size_t number = 0;
  size_t offset = 0;
  while (offset < text.size()) {
    size_t end = text.find('\n', offset);
    ++number;
    if (end == std::string_view::npos) {
      out.truncated_last_line = true;
      break;
    }
    std::string_view line = text.substr(offset, end - offset);
    offset = end + 1;
    out.complete_size = offset;
    if (Trim(line).empty()) continue;
    Result<SurveyRecord> r = SurveyRecordFromJson(line);
    if (!r.ok()) return LineError(number, r.error());
    out.records.push_back(std::move(r.value()));
  }
  return out;
}

}  // namespace mxsec
