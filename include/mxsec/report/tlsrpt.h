// tlsrpt.h - SMTP TLS Reporting (RFC 8460): the receiver's TXT record, the
// daily aggregate report built from the attempt log (delivery.h), and the
// report's delivery formats, without any network I/O (unit-tested alone).
//
// Promises:
//   - ParseTlsRptRecord accepts exactly the §3 grammar: "v=TLSRPTv1" first,
//     fields separated by ";" (optional whitespace around it, optional
//     trailing ";"), exactly one "rua=" with a comma-separated list of URIs;
//     extensions (name=value with the §3 character sets) are ignored;
//     anything else is an error naming the field. Only mailto: and https:
//     URIs are kept (others are listed in `ignored`); a record with no
//     usable URI is an error.
//   - SelectTlsRptRecord applies §3's rule to the TXT RRset: the records
//     that start with "v=TLSRPTv1" are candidates; not exactly one
//     candidate, or an invalid one, means the domain gets no report (an
//     error saying why).
//   - AggregateReports groups the records of one UTC day by recipient
//     domain, then by policy (type, policy strings, mx patterns), and
//     counts sessions: a session that negotiated TLS without an RFC 8460
//     result type is successful; one with a result type is a failure, detailed
//     per (result type, receiving MX host, receiving IP, sending IP when
//     known: sending-mta-ip). The hosts of a fleet's rows are listed in
//     TlsReport::hosts, and named by the message's text part: §4.4 has no
//     JSON field for a sending host's name. Sessions that
//     carry neither (connection refused, a plaintext opportunistic
//     delivery) are no TLS result and not counted; rows without a policy
//     type (probes, older versions) are skipped. The JSON follows §4.
//   - BuildReportMessage makes the §5.3 message: multipart/report;
//     report-type="tlsrpt" with a text/plain part and the gzip report as an
//     application/tlsrpt+gzip attachment (base64, §5.1 file name), with
//     the Subject, TLS-Report-Domain and TLS-Report-Submitter fields; CRLF
//     line ends, 7-bit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxsec/smtp/delivery.h"
#include "mxsec/base/status.h"

namespace mxsec {

struct TlsRptRecord {
  std::vector<std::string> rua;      // mailto: and https: URIs, as published
  std::vector<std::string> ignored;  // URIs of other schemes
};

Result<TlsRptRecord> ParseTlsRptRecord(std::string_view text);
Result<TlsRptRecord> SelectTlsRptRecord(const std::vector<std::string>& txt_records);

// The addr-spec of a mailto: URI (percent-decoded, "?..." dropped); an
// error when it is not one address.
Result<std::string> MailtoAddress(std::string_view uri);

struct HttpsTarget {
  std::string host;  // normal form
  std::string port = "443";
};
// The host and port of an https: URI ("https://host[:port][/path...]");
// an error for anything else (userinfo, IP literals, a bad port).
Result<HttpsTarget> HttpsAuthority(std::string_view uri);

// "YYYY-MM-DD" → Unix time of its 00:00:00 UTC; strict (real dates only).
Result<int64_t> ParseUtcDay(std::string_view day);
std::string FormatUtcDay(int64_t time);       // "YYYY-MM-DD" of `time` (UTC)
std::string FormatUtcDateTime(int64_t time);  // RFC 3339 "YYYY-MM-DDTHH:MM:SSZ"

struct ReportMeta {
  std::string organization;  // organization-name
  std::string contact;       // contact-info
  int64_t day_start = 0;     // 00:00:00 UTC of the day reported
  // report-id = FormatUtcDay(day_start) + "." + domain + "." + id_suffix
  std::string id_suffix;
};

struct TlsReport {
  std::string domain;
  std::string report_id;
  nlohmann::json json;
  int64_t successes = 0, failures = 0;
  // The hosts whose sessions it counts (AttemptRecord::host; rows of a
  // local log name none), sorted.
  std::vector<std::string> hosts;
};

// One report per recipient domain that had counted sessions that day
// (records outside the day are ignored), domains in sorted order.
std::vector<TlsReport> AggregateReports(const std::vector<AttemptRecord>& records, const ReportMeta& meta);

// gzip (RFC 1952) of `data`.
Result<std::string> Gzip(std::string_view data);

// §5.1: submitter!policy-domain!begin!end!unique-id.json.gz
std::string ReportFileName(const std::string& submitter, const std::string& domain, int64_t begin, int64_t end,
                           const std::string& unique);

struct ReportMessage {
  std::string from, to;        // addr-specs
  std::string submitter;       // the sending organization's domain (TLS-Report-Submitter)
  std::string domain;          // the policy domain (TLS-Report-Domain)
  std::string report_id;
  std::string gzip;            // the gzip'd JSON
  std::string file_name;
  std::string message_id;      // "<...>"
  int64_t date = 0;            // Date:
  std::vector<std::string> hosts;  // named in the text part (TlsReport::hosts)
};

std::string BuildReportMessage(const ReportMessage& m);

}  // namespace mxsec
