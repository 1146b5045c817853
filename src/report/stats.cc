// stats.cc - the share of outbound mail by TLS security, from the message
// rows of the attempt log (see stats.h for the counting rules).
#include "mxsec/report/stats.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "mxsec/report/tlsrpt.h"

namespace mxsec {

namespace {

constexpr int64_t kMaxStatsDuration = 10LL * 366 * 86400;  // ten years

void Add(StatsCount* c, int64_t recipients) {
  ++c->messages;
  c->recipients += recipients;
}

// The category of a row for top_domains, or "" (deferred/bounced for
// another reason than the TLS policy).
std::string CategoryOf(const MessageRecord& row) {
  if (row.status == "delivered") return row.security;
  if (row.policy_failure.empty()) return "";
  if (row.status == "deferred") return "deferred_policy";
  if (row.status == "bounced") return "bounced_policy";
  return "";
}

std::vector<StatsDomainCount> Top(const std::map<std::string, StatsCount>& by_domain, size_t top) {
  std::vector<StatsDomainCount> v;
  for (const auto& [domain, count] : by_domain) v.push_back({domain, count});
  std::sort(v.begin(), v.end(), [](const StatsDomainCount& a, const StatsDomainCount& b) {
    if (a.count.messages != b.count.messages) return a.count.messages > b.count.messages;
    if (a.count.recipients != b.count.recipients) return a.count.recipients > b.count.recipients;
    return a.domain < b.domain;
  });
  if (v.size() > top) v.resize(top);
  return v;
}

nlohmann::json CountJson(const StatsCount& c) { return {{"messages", c.messages}, {"recipients", c.recipients}}; }

nlohmann::json CountsJson(const std::map<std::string, StatsCount>& counts) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, c] : counts) j[key] = CountJson(c);
  return j;
}

nlohmann::json BucketJson(const StatsBucket& b) {
  return {{"delivered", CountsJson(b.delivered)},
          {"deferred_policy", {{"total", CountJson(b.deferred_policy)},
                               {"by_reason", CountsJson(b.deferred_policy_by_reason)}}},
          {"bounced_policy", {{"total", CountJson(b.bounced_policy)},
                              {"by_reason", CountsJson(b.bounced_policy_by_reason)}}},
          {"deferred_other", CountJson(b.deferred_other)},
          {"bounced_other", CountJson(b.bounced_other)}};
}

}  // namespace

StatsBucket::StatsBucket() {
  for (const char* c : {"dane", "mta-sts", "encrypted", "clear"}) delivered[c] = StatsCount();
}

void StatsBucket::Add(const MessageRecord& row) {
  const bool policy = !row.policy_failure.empty();
  if (row.status == "delivered") {
    mxsec::Add(&delivered[row.security.empty() ? "clear" : row.security], row.recipients);
  } else if (row.status == "deferred" && policy) {
    mxsec::Add(&deferred_policy, row.recipients);
    mxsec::Add(&deferred_policy_by_reason[row.policy_failure], row.recipients);
  } else if (row.status == "bounced" && policy) {
    mxsec::Add(&bounced_policy, row.recipients);
    mxsec::Add(&bounced_policy_by_reason[row.policy_failure], row.recipients);
  } else if (row.status == "deferred") {
    mxsec::Add(&deferred_other, row.recipients);
  } else if (row.status == "bounced") {
    mxsec::Add(&bounced_other, row.recipients);
  }
}

StatsCount StatsBucket::Category(const std::string& category) const {
  if (category == "deferred_policy") return deferred_policy;
  if (category == "bounced_policy") return bounced_policy;
  auto it = delivered.find(category);
  return it == delivered.end() ? StatsCount() : it->second;
}

const std::vector<std::string>& StatsCategories() {
  static const std::vector<std::string> kCategories = {"dane",  "mta-sts",         "encrypted",
                                                       "clear", "deferred_policy", "bounced_policy"};
  return kCategories;
}

StatsReport ComputeStats(const std::vector<MessageRecord>& rows, const StatsOptions& options) {
  StatsReport report;
  report.from = options.from;
  report.to = options.to;
  report.domains = options.domains;
  std::map<std::string, std::map<std::string, StatsCount>> by_category;  // category -> domain -> count
  for (const MessageRecord& row : rows) {
    if (row.time < options.from || row.time >= options.to) continue;
    if (!options.domains.empty() && !options.domains.count(row.domain)) continue;
    report.total.Add(row);
    report.days[FormatUtcDay(row.time)].Add(row);
    const std::string category = CategoryOf(row);
    if (!category.empty()) Add(&by_category[category][row.domain], row.recipients);
  }
  for (const std::string& c : StatsCategories()) report.top_domains[c] = Top(by_category[c], options.top);
  return report;
}

Result<StatsReport> ReadStats(const std::string& path, const StatsOptions& options) {
  Result<std::vector<MessageRecord>> rows = ReadMessages(path, options.from, options.to);
  if (!rows.ok()) return rows.status();
  return ComputeStats(rows.value(), options);
}

std::string StatsToJson(const StatsReport& r) {
  nlohmann::json j;
  j["from"] = FormatUtcDateTime(r.from);
  j["to"] = FormatUtcDateTime(r.to);
  j["domains"] = r.domains.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.domains);
  j["total"] = BucketJson(r.total);
  nlohmann::json days = nlohmann::json::array();
  for (const auto& [day, bucket] : r.days) {
    nlohmann::json d = BucketJson(bucket);
    d["day"] = day;
    days.push_back(d);
  }
  j["days"] = days;
  nlohmann::json top = nlohmann::json::object();
  for (const auto& [category, list] : r.top_domains) {
    nlohmann::json l = nlohmann::json::array();
    for (const StatsDomainCount& d : list)
      l.push_back({{"domain", d.domain}, {"messages", d.count.messages}, {"recipients", d.count.recipients}});
    top[category] = l;
  }
  j["top_domains"] = top;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// A label value of the text format: backslash, quote and line feed escaped.
std::string LabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// One counter family: HELP, TYPE, one sample per labelled count.
void Family(std::string* out, const std::string& name, const std::string& help, const std::string& label,
            const std::map<std::string, int64_t>& samples) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n";
  for (const auto& [value, n] : samples) {
    *out += name;
    if (!label.empty()) *out += "{" + label + "=\"" + LabelValue(value) + "\"}";
    *out += " " + std::to_string(n) + "\n";
  }
}

std::map<std::string, int64_t> Messages(const std::map<std::string, StatsCount>& m) {
  std::map<std::string, int64_t> out;
  for (const auto& [k, c] : m) out[k] = c.messages;
  return out;
}

std::map<std::string, int64_t> Recipients(const std::map<std::string, StatsCount>& m) {
  std::map<std::string, int64_t> out;
  for (const auto& [k, c] : m) out[k] = c.recipients;
  return out;
}

}  // namespace

std::string StatsToPrometheus(const StatsReport& r) {
  const StatsBucket& t = r.total;
  std::string out;
  Family(&out, "mxsec_delivered_messages_total",
         "Messages delivered to a destination domain, by TLS security (dane, mta-sts, encrypted, clear).",
         "security", Messages(t.delivered));
  Family(&out, "mxsec_delivered_recipients_total", "Recipients delivered, by TLS security.", "security",
         Recipients(t.delivered));
  const std::pair<const char*, const std::map<std::string, StatsCount>*> policy_failures[] = {
      {"deferred", &t.deferred_policy_by_reason}, {"bounced", &t.bounced_policy_by_reason}};
  for (const auto& [what, by_reason] : policy_failures) {
    const std::string help = std::string(" ") + what + " because the TLS policy could not be met, by RFC 8460 result type.";
    Family(&out, std::string("mxsec_policy_") + what + "_messages_total", "Messages" + help, "reason",
           Messages(*by_reason));
    Family(&out, std::string("mxsec_policy_") + what + "_recipients_total", "Recipients" + help, "reason",
           Recipients(*by_reason));
  }
  Family(&out, "mxsec_other_deferred_messages_total", "Messages deferred for other reasons than the TLS policy.",
         "", {{"", t.deferred_other.messages}});
  Family(&out, "mxsec_other_bounced_messages_total", "Messages bounced for other reasons than the TLS policy.", "",
         {{"", t.bounced_other.messages}});
  return out;
}

Result<int64_t> ParseStatsDuration(const std::string& text) {
  auto bad = [&]() {
    return Status::Invalid("bad duration \"" + text + "\" (a whole number and s, m, h, d or w: 7d, 12h)");
  };
  if (text.size() < 2 || text.size() > 12) return bad();
  int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    default: return bad();
  }
  int64_t n = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return bad();
    n = n * 10 + (text[i] - '0');
    if (n * unit > kMaxStatsDuration) return Status::Invalid("duration \"" + text + "\" is longer than ten years");
  }
  if (n == 0) return bad();
  return n * unit;
}

}  // namespace mxsec
