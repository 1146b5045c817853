// survey.h - `mxsec survey`: how a list of domains protects inbound mail,
// measured with the same engine that enforces the policies (man/mxsec.8,
// SURVEY).
//
// The pieces, each usable alone (and unit-tested with fakes):
//   - ParseSurveyInput: the list, a domain per line or Tranco's
//     "rank,domain" CSV; bounded (kSurveyMaxInputBytes, kSurveyMaxDomains,
//     kSurveyMaxLineLength); every error names its line.
//   - SurveyOneDomain: the facts of one domain as a SurveyRecord: the
//     policy engine's decision (MX, DNSSEC, TLSA, MTA-STS), the TLS-RPT
//     record (RFC 8460 §3), and with `probe` one session per MX host with
//     an address (the first address that answers): STARTTLS offered, TLS
//     version, PKIX-valid for the MX name, DANE match when the host has
//     usable TLSA records, REQUIRETLS announced after STARTTLS (RFC 8689).
//     Hosts are probed whatever the policy says of them (a survey measures;
//     it delivers nothing): EHLO, STARTTLS, handshake, QUIT, never MAIL.
//   - RunSurvey: SurveyOneDomain over a list with at most `concurrency`
//     domains in flight and at most `rate` domains started per second.
//   - SurveyRecordToJsonLine / SurveyRecordFromJson: one JSON line per
//     domain, read back for a resume (ReadSurveyOutput: a last line cut
//     short by an interrupted run is ignored and reported).
//   - Summarize: the shares with counts and denominators; SummaryToText,
//     SummaryToJson, SummaryToSvg (a bar chart, one bar per share).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxsec/base/status.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/policy.h"
#include "mxsec/smtp/delivery.h"

namespace mxsec {

// Bounds of what a list (user input) can drive.
inline constexpr size_t kSurveyMaxInputBytes = 64u << 20;  // the list file
inline constexpr size_t kSurveyMaxDomains = 1000000;       // domains in a list (Tranco's top 1M)
inline constexpr size_t kSurveyMaxLineLength = 1024;       // octets per line
// Bounds of what the survey does at once.
inline constexpr size_t kSurveyDefaultConcurrency = 16;
inline constexpr size_t kSurveyMaxConcurrency = 256;
inline constexpr double kSurveyMaxRate = 10000;            // domains started per second
// Per stage of a probe session, at most (the configured timeouts may be
// longer; a survey does not wait five minutes for a greeting).
inline constexpr int kSurveyMaxStageTimeoutMs = 30000;
// Addresses of one MX host tried until one answers.
inline constexpr size_t kSurveyMaxAddressesPerHost = 2;

// The domains of a list, in normal form, in order, each once. Empty lines
// and lines starting with '#' are skipped; a line "rank,domain" (rank
// digits) gives its domain; a first line "rank,domain" is a header.
Result<std::vector<std::string>> ParseSurveyInput(std::string_view text);

// One address of one MX host, as the probe found it.
struct SurveyProbe {
  std::string address;
  bool connected = false;
  bool starttls = false;                  // offered in the EHLO reply
  std::string tls_version;                // "" when no TLS was negotiated
  std::optional<bool> pkix_valid;         // TLS only: the chain verifies to ca_file for the MX name
  std::optional<bool> dane_match;         // TLS and usable TLSA only: a record matches
  bool requiretls = false;                // announced after STARTTLS
  std::string error;                      // why the session ended early, or ""
};

struct SurveyHost {
  std::string host;
  uint16_t preference = 0;
  std::string dnssec;                     // of the address records
  std::vector<std::string> addresses;
  std::string tls;                        // the policy's decision (HostTlsName)
  std::string tlsa;                       // "usable", "unusable", "none", "failed" (bogus/indeterminate)
  bool sts_listed = false;                // matches the MTA-STS policy's mx patterns (when there is one)
  std::optional<SurveyProbe> probe;
};

struct SurveyRecord {
  std::string domain;
  std::string mx;                         // "mx", "implicit", "null", "nxdomain", "error", "no-address"
  std::string dnssec;                     // of the MX answer
  std::string policy, mechanism, reason;  // the policy engine's decision
  std::vector<SurveyHost> hosts;
  // MTA-STS: "" (no TXT record), else the mode in force ("enforce",
  // "testing", "none") or "broken" (a TXT record, no usable policy).
  std::string mta_sts;
  std::string mta_sts_error;
  std::optional<bool> mta_sts_covers_mx;  // a policy in force: every MX host matches a pattern
  std::string tlsrpt;                     // "valid", "invalid", "none", "error"
  std::string tlsrpt_detail;
  bool probed = false;
};

// The outcome of the TLS-RPT lookup (`_smtp._tls.<domain>` TXT) in record.
void SetTlsRpt(const DnsAnswer& txt, SurveyRecord* record);
// The record of `policy` without TLS-RPT and probes.
SurveyRecord RecordFromPolicy(const DomainPolicy& policy);
// What one probe session found.
SurveyProbe ProbeFromSession(const std::string& address, const SessionResult& session, bool dane_checked);

struct SurveyOptions {
  size_t concurrency = kSurveyDefaultConcurrency;  // 1..kSurveyMaxConcurrency
  double rate = 0;                                 // domains started per second; 0: no bound
  bool probe = false;
  std::string helo_name;
  uint16_t port = 25;
  SmtpTimeouts timeouts;                           // each stage capped at kSurveyMaxStageTimeoutMs
  std::string ca_file;                             // PKIX trust ("" = system store)
};

// What a survey uses; none owned. `resolve` must be thread-safe
// (PolicyEngine::Resolve is); `session` is the SMTP client or a fake.
struct SurveyServices {
  std::function<DomainPolicy(const std::string&)> resolve;
  Resolver* resolver = nullptr;  // TLS-RPT lookups
  SessionRunner session;         // probes
  Clock* clock = nullptr;        // certificate dates
};

// The session options of a survey probe to `host` of `policy`: opportunistic
// with report_verification, probe only, stage timeouts capped; DANE is
// checked (with RFC 7672's SNI and reference names) when the host has
// secure usable TLSA records, PKIX for the host name.
SessionOptions SurveySessionOptions(const SurveyOptions& options, const DomainPolicy& policy, const MxPolicy& host);

SurveyRecord SurveyOneDomain(const std::string& domain, const SurveyOptions& options,
                             const SurveyServices& services);

// Surveys `domains`; `done` is called once per domain as it finishes, one
// call at a time (from worker threads), in no particular order.
void RunSurvey(const std::vector<std::string>& domains, const SurveyOptions& options,
               const SurveyServices& services, const std::function<void(const SurveyRecord&)>& done);

nlohmann::json SurveyRecordToJson(const SurveyRecord& record);
std::string SurveyRecordToJsonLine(const SurveyRecord& record);  // no trailing newline
Result<SurveyRecord> SurveyRecordFromJson(std::string_view line);

// The records of an output file. Every line must be a record, but a last
// line without its newline (an interrupted write) is left out and
// `complete_size` says where the complete lines end.
struct SurveyOutput {
  std::vector<SurveyRecord> records;
  size_t complete_size = 0;
  bool truncated_last_line = false;
};
Result<SurveyOutput> ReadSurveyOutput(std::string_view text);

struct SurveyShare {
  std::string key;      // "mx", "starttls_hosts", ... (man/mxsec.8)
  std::string label;    // for the table and the chart
  size_t count = 0;
  size_t of = 0;        // the denominator
  std::string of_what;  // "domains", "domains with MX", ...
};

struct SurveySummary {
  size_t domains = 0;
  bool probed = false;
  std::vector<SurveyShare> shares;
};

// With `probe`, the shares that need probes are included (over the
// records that were probed).
SurveySummary Summarize(const std::vector<SurveyRecord>& records, bool probe);
std::string SummaryToText(const SurveySummary& summary);
nlohmann::json SummaryToJson(const SurveySummary& summary);
std::string SummaryToSvg(const SurveySummary& summary);

}  // namespace mxsec
