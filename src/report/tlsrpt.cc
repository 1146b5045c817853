// tlsrpt.cc - SMTP TLS Reporting (RFC 8460): record parser, daily
// aggregation into report JSON, gzip and the report message (see tlsrpt.h
// for the promises).
#include "mxsec/report/tlsrpt.h"

#include <zlib.h>

#include <cctype>
#include <ctime>
#include <map>
#include <set>
#include <tuple>

#include "mxsec/base/domain_name.h"
#include "mxsec/base/text.h"
#include "mxsec/queue/dsn.h"
#include "mxsec/smtp/smtp_proto.h"

namespace mxsec {

namespace {

// §3 ext-name: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool ValidExtName(std::string_view n) {
  if (n.empty() || n.size() > 32 || !isalnum(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// §3 ext-value: 1*(%x21-3A / %x3C / %x3E-7E)
bool ValidExtValue(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || u == 0x3b || u == 0x3d) return false;
  }
  return true;
}

// A URI in the rua list: printable ASCII without spaces, "," or ";"
// (RFC 8460 §3: those must be percent-encoded), with a scheme.
Status CheckUri(std::string_view uri) {
  if (uri.empty()) return Status::Error("empty URI in rua");
  for (char c : uri) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == ',' || c == ';')
      return Status::Error("rua URI \"" + std::string(uri) + "\" contains a character that must be percent-encoded");
  }
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 || !isalpha(static_cast<unsigned char>(uri[0])))
    return Status::Error("rua entry \"" + std::string(uri) + "\" is not a URI (no scheme)");
  for (size_t i = 0; i < colon; ++i) {
    char c = uri[i];
    if (!isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return Status::Error("rua entry \"" + std::string(uri) + "\" has an invalid scheme");
  }
  return Status::Ok();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Base64Lines(std::string_view in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out, line;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    line += kAlphabet[(v >> 18) & 63];
    line += kAlphabet[(v >> 12) & 63];
    line += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    line += i + 2 < in.size() ? kAlphabet[v & 63] : '=';
    if (line.size() >= 76) {
      out += line + "\r\n";
      line.clear();
    }
  }
  if (!line.empty()) out += line + "\r\n";
  return out;
}

}  // namespace

Result<TlsRptRecord> ParseTlsRptRecord(std::string_view text) {
  // Split on ";" (a URI or extension value never contains one).
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (;;) {
    size_t semi = text.find(';', start);
    fields.push_back(TrimWsp(text.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start)));
    if (semi == std::string_view::npos) break;
    start = semi + 1;
  }
  // The version comes first, exactly, with no whitespace before it.
  if (text.substr(0, 10) != "v=TLSRPTv1" || fields.front() != "v=TLSRPTv1")
    return Status::Error("the record does not start with \"v=TLSRPTv1\"");
  if (fields.size() > 1 && fields.back().empty()) fields.pop_back();  // optional trailing ";"
  TlsRptRecord rec;
  bool have_rua = false;
  for (size_t i = 1; i < fields.size(); ++i) {
    std::string_view f = fields[i];
    if (f.empty()) return Status::Error("empty field (\";;\") in the record");
    size_t eq = f.find('=');
    if (eq == std::string_view::npos) return Status::Error("field \"" + std::string(f) + "\" has no \"=\"");
    std::string_view name = f.substr(0, eq), value = f.substr(eq + 1);
    if (name == "rua") {
      if (have_rua) return Status::Error("rua appears twice");
      have_rua = true;
      size_t p = 0;
      for (;;) {
        size_t comma = value.find(',', p);
        std::string_view uri = TrimWsp(value.substr(p, comma == std::string_view::npos ? std::string_view::npos : comma - p));
        Status ok = CheckUri(uri);
        if (!ok.ok()) return ok;
        if (StartsWithIgnoreCase(uri, "mailto:")) {
          auto addr = MailtoAddress(uri);
          if (!addr.ok()) return Status::Error("rua " + std::string(uri) + ": " + addr.error());
          rec.rua.emplace_back(uri);
        } else if (StartsWithIgnoreCase(uri, "https://") && uri.size() > 8) {
          rec.rua.emplace_back(uri);
        } else {
          rec.ignored.emplace_back(uri);
        }
        if (comma == std::string_view::npos) break;
        p = comma + 1;
      }
      continue;
    }
    if (name == "v") return Status::Error("v= appears twice");
    if (!ValidExtName(name)) return Status::Error("invalid field name \"" + std::string(name) + "\"");
    if (!ValidExtValue(value)) return Status::Error("invalid value of field \"" + std::string(name) + "\"");
    // An extension: ignored (§3).
  }
  if (!have_rua) return Status::Error("no rua= field");
  if (rec.rua.empty()) return Status::Error("no mailto: or https: URI in rua");
  return rec;
}

Result<TlsRptRecord> SelectTlsRptRecord(const std::vector<std::string>& txt_records) {
  std::vector<const std::string*> candidates;
  for (const std::string& t : txt_records)
    if (t.rfind("v=TLSRPTv1", 0) == 0) candidates.push_back(&t);
  if (candidates.empty()) return Status::Error("no TLSRPT record (no TXT record starts with v=TLSRPTv1)");
  if (candidates.size() > 1)
    return Status::Error(std::to_string(candidates.size()) +
                         " TXT records start with v=TLSRPTv1: RFC 8460 §3 says no reporting then");
  auto rec = ParseTlsRptRecord(*candidates.front());
  if (!rec.ok()) return Status::Error("invalid TLSRPT record \"" + *candidates.front() + "\": " + rec.error());
  return rec;
}

Result<std::string> MailtoAddress(std::string_view uri) {
  if (!StartsWithIgnoreCase(uri, "mailto:")) return Status::Error("not a mailto: URI");
  std::string_view rest = uri.substr(7);
  rest = rest.substr(0, rest.find('?'));
  std::string addr;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '%') {
      int h = i + 2 < rest.size() ? HexValue(rest[i + 1]) : -1, l = i + 2 < rest.size() ? HexValue(rest[i + 2]) : -1;
      if (h < 0 || l < 0) return Status::Error("invalid percent-encoding");
      addr += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      addr += rest[i];
    }
  }
  // One address: RFC 6068 allows a list, a report goes to one mailbox.
  if (addr.find(',') != std::string::npos) return Status::Error("more than one address");
  auto m = ParseMailbox(addr, false);
  if (!m.ok()) return Status::Error("invalid address \"" + addr + "\": " + m.error());
  if (m->domain.empty()) return Status::Error("address \"" + addr + "\" has no domain");
  return m->ToString();
}

Result<HttpsTarget> HttpsAuthority(std::string_view uri) {
  if (!StartsWithIgnoreCase(uri, "https://")) return Status::Error("not an https: URI");
  std::string_view rest = uri.substr(8);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) return Status::Error("user information in an https: URI");
  HttpsTarget t;
  std::string_view host = authority;
  if (size_t colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    std::string_view port = authority.substr(colon + 1);
    if (port.empty() || port.size() > 5) return Status::Error("invalid port in " + std::string(uri));
    for (char c : port)
      if (!isdigit(static_cast<unsigned char>(c))) return Status::Error("invalid port in " + std::string(uri));
    const int n = std::stoi(std::string(port));
    if (n < 1 || n > 65535) return Status::Error("invalid port in " + std::string(uri));
    t.port = std::to_string(n);
  }
  auto name = NormalizeHostName(host);
  if (!name.ok()) return Status::Error("invalid host in " + std::string(uri) + ": " + name.error());
  t.host = name.value();
  return t;
}

Result<int64_t> ParseUtcDay(std::string_view day) {
  auto bad = [&]() { return Status::Error("invalid day \"" + std::string(day) + "\" (expected YYYY-MM-DD)"); };
  if (day.size() != 10 || day[4] != '-' || day[7] != '-') return bad();
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!isdigit(static_cast<unsigned char>(day[i]))) return bad();
  auto num = [&](size_t at, size_t n) { return std::stoi(std::string(day.substr(at, n))); };
  struct tm t {};
  t.tm_year = num(0, 4) - 1900;
  t.tm_mon = num(5, 2) - 1;
  t.tm_mday = num(8, 2);
  if (t.tm_year < 70 || t.tm_mon < 0 || t.tm_mon > 11 || t.tm_mday < 1) return bad();
  const int year = t.tm_year, mon = t.tm_mon, mday = t.tm_mday;
  time_t v = timegm(&t);
  // timegm normalizes 2026-02-30 to March 2: a real date comes back unchanged.
  if (v == static_cast<time_t>(-1) || t.tm_year != year || t.tm_mon != mon || t.tm_mday != mday) return bad();
  return static_cast<int64_t>(v);
}

std::string FormatUtcDay(int64_t time) {
  time_t t = static_cast<time_t>(time);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[16];
  strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string FormatUtcDateTime(int64_t time) {
  time_t t = static_cast<time_t>(time);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<TlsReport> AggregateReports(const std::vector<AttemptRecord>& records, const ReportMeta& meta) {
  using PolicyKey = std::tuple<std::string, std::vector<std::string>, std::vector<std::string>>;
  // result type, receiving mx, receiving ip, sending ip ("" unless the
  // fleet's log knows it: RFC 8460 §4.4's sending-mta-ip, the one field
  // that names the sending host)
  using DetailKey = std::tuple<std::string, std::string, std::string, std::string>;
  struct PolicyCounts {
    int64_t ok = 0, failed = 0;
    std::map<DetailKey, int64_t> details;
  };
  std::map<std::string, std::map<PolicyKey, PolicyCounts>> by_domain;
  std::map<std::string, std::set<std::string>> hosts_by_domain;  // the hosts whose sessions are counted
  const int64_t end = meta.day_start + 86400;
  for (const AttemptRecord& r : records) {
    if (r.time < meta.day_start || r.time >= end || r.policy_type.empty()) continue;
    const bool failed = !r.failure_type.empty();
    // TLS was negotiated and nothing in it failed; what the server said
    // afterwards (a 4xx) is no TLS result.
    const bool ok = !failed && !r.tls_version.empty();
    if (!failed && !ok) continue;
    PolicyCounts& pc = by_domain[r.domain][PolicyKey{r.policy_type, r.policy_strings, r.mx_patterns}];
    if (!r.host.empty()) hosts_by_domain[r.domain].insert(r.host);
    if (ok) {
      ++pc.ok;
    } else {
      ++pc.failed;
      ++pc.details[DetailKey{r.failure_type, r.mx, r.address, r.sending_ip}];
    }
  }
  std::vector<TlsReport> out;
  for (const auto& [domain, policies] : by_domain) {
    TlsReport rep;
    rep.domain = domain;
    const std::set<std::string>& hosts = hosts_by_domain[domain];
    rep.hosts.assign(hosts.begin(), hosts.end());
    rep.report_id = FormatUtcDay(meta.day_start) + "." + domain + "." + meta.id_suffix;
    nlohmann::json j;
    j["organization-name"] = meta.organization;
    j["date-range"] = {{"start-datetime", FormatUtcDateTime(meta.day_start)},
                       {"end-datetime", FormatUtcDateTime(end - 1)}};
    j["contact-info"] = meta.contact;
    j["report-id"] = rep.report_id;
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [key, counts] : policies) {
      const auto& [type, strings, mx] = key;
      nlohmann::json p;
      p["policy"]["policy-type"] = type;
      if (type != "no-policy-found") {
        p["policy"]["policy-string"] = strings;
        p["policy"]["mx-host"] = mx;
      }
      p["policy"]["policy-domain"] = domain;
      p["summary"] = {{"total-successful-session-count", counts.ok},
                      {"total-failure-session-count", counts.failed}};
      nlohmann::json details = nlohmann::json::array();
      for (const auto& [dk, n] : counts.details) {
        const auto& [result, host, ip, sending_ip] = dk;
        nlohmann::json d;
        d["result-type"] = result;
        if (!sending_ip.empty()) d["sending-mta-ip"] = sending_ip;
        if (!ip.empty()) d["receiving-ip"] = ip;
        if (!host.empty()) d["receiving-mx-hostname"] = host;
        d["failed-session-count"] = n;
        details.push_back(d);
      }
      if (!details.empty()) p["failure-details"] = details;
      list.push_back(p);
      rep.successes += counts.ok;
      rep.failures += counts.failed;
    }
    j["policies"] = list;
    rep.json = std::move(j);
    out.push_back(std::move(rep));
  }
  return out;
}

Result<std::string> Gzip(std::string_view data) {
  z_stream z{};
  // windowBits 15 + 16: a gzip wrapper instead of zlib's.
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return Status::Error("gzip: deflateInit2 failed");
  std::string out(deflateBound(&z, data.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  size_t produced = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return Status::Error("gzip: deflate failed");
  out.resize(produced);
  return out;
}

std::string ReportFileName(const std::string& submitter, const std::string& domain, int64_t begin, int64_t end,
                           const std::string& unique) {
  std::string name = submitter + "!" + domain + "!" + std::to_string(begin) + "!" + std::to_string(end);
  if (!unique.empty()) name += "!" + unique;
  return name + ".json.gz";
}

std::string BuildReportMessage(const ReportMessage& m) {
  // The boundary cannot occur in base64 or in the text part ("=_" is not base64).
  const std::string boundary = "=_tlsrpt_" + std::to_string(m.date) + "_" + std::to_string(m.gzip.size());
  std::string s;
  s += "From: <" + m.from + ">\r\n";
  s += "To: <" + m.to + ">\r\n";
  s += "Subject: Report Domain: " + m.domain + " Submitter: " + m.submitter + " Report-ID: <" + m.report_id +
       ">\r\n";
  s += "Date: " + Rfc5322Date(m.date) + "\r\n";
  s += "Message-ID: " + m.message_id + "\r\n";
  s += "TLS-Report-Domain: " + m.domain + "\r\n";
  s += "TLS-Report-Submitter: " + m.submitter + "\r\n";
  s += "Auto-Submitted: auto-generated\r\n";
  // A report about a domain's broken TLS must reach it even so (RFC 8689
  // §1, §3): its DANE or MTA-STS demands are set aside for this message.
  s += "TLS-Required: No\r\n";
  s += "MIME-Version: 1.0\r\n";
  s += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"" + boundary + "\"\r\n";
  s += "\r\n";
  s += "This is a multipart message in MIME format.\r\n";
  s += "\r\n--" + boundary + "\r\n";
  s += "Content-Type: text/plain; charset=us-ascii\r\n";
  s += "Content-Transfer-Encoding: 7bit\r\n\r\n";
  s += "This is an aggregate TLS report (RFC 8460) from " + m.submitter + " for " + m.domain + ".\r\n";
  s += "Report-ID: <" + m.report_id + ">\r\n";
  // The JSON has no field for a sending host's name (RFC 8460 §4.4 names
  // a sending MTA by its IP only): the people reading the message get them here.
  if (!m.hosts.empty()) {
    std::string list;
    for (const std::string& h : m.hosts) list += (list.empty() ? "" : ", ") + h;
    s += "It counts the sessions of the sending hosts " + list + ".\r\n";
  }
  s += "\r\n--" + boundary + "\r\n";
  s += "Content-Type: application/tlsrpt+gzip\r\n";
  s += "Content-Transfer-Encoding: base64\r\n";
  s += "Content-Disposition: attachment;\r\n\tfilename=\"" + m.file_name + "\"\r\n\r\n";
  s += Base64Lines(m.gzip);
  s += "\r\n--" + boundary + "--\r\n";
  return s;
}

}  // namespace mxsec
