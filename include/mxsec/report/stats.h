// stats.h - what share of the outbound mail was authenticated, encrypted
// only, or sent in clear text, from the message rows of the attempt log
// (delivery.h MessageRecord, table `messages` of delivery.sqlite), for
// `mxsec stats`.
//
// Counting: a row is one message to one destination domain in one
// delivery attempt, for a group of its recipients with the same fate. A
// message counts once in each category that holds at least one of its
// recipients; recipients count exactly once per attempt. A message
// deferred and delivered later counts in both attempts' categories.
// Categories: delivered with TLS authenticated by DANE ("dane"), by a PKIX
// certificate as MTA-STS demands ("mta-sts"), encrypted but not
// authenticated ("encrypted"), in clear text ("clear"); deferred or
// bounced because the TLS policy could not be met, by RFC 8460 result type
// ("deferred_policy", "bounced_policy"); deferred or bounced for any other
// reason ("deferred_other", "bounced_other").
//
// Promises: the functions other than ReadStats do no I/O; days are UTC;
// the top domains of a category are ordered by messages, then recipients
// (descending), then name, at most StatsOptions::top of them.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mxsec/base/status.h"
#include "mxsec/smtp/delivery.h"

namespace mxsec {

inline constexpr size_t kStatsDefaultTop = 10;  // top destination domains per category

struct StatsCount {
  int64_t messages = 0, recipients = 0;
};

struct StatsBucket {
  std::map<std::string, StatsCount> delivered;  // "dane", "mta-sts", "encrypted", "clear": always present
  StatsCount deferred_policy, bounced_policy;
  std::map<std::string, StatsCount> deferred_policy_by_reason, bounced_policy_by_reason;
  StatsCount deferred_other, bounced_other;

  StatsBucket();
  void Add(const MessageRecord& row);
  // The count of a category of StatsCategories() (zero for another name).
  StatsCount Category(const std::string& category) const;
};

struct StatsOptions {
  int64_t from = 0, to = 0;           // rows with from <= time < to
  std::set<std::string> domains;      // only these destination domains (normal form); empty: all
  size_t top = kStatsDefaultTop;
};

struct StatsDomainCount {
  std::string domain;
  StatsCount count;
};

struct StatsReport {
  int64_t from = 0, to = 0;
  std::set<std::string> domains;
  StatsBucket total;
  std::map<std::string, StatsBucket> days;  // by "YYYY-MM-DD" (UTC), days with rows only
  // By category ("dane", "mta-sts", "encrypted", "clear", "deferred_policy",
  // "bounced_policy"): the top destination domains; every category present.
  std::map<std::string, std::vector<StatsDomainCount>> top_domains;
};

// The categories of top_domains, in the order reports show them.
const std::vector<std::string>& StatsCategories();

// The report of `rows` (any order) within the options' window and domains.
StatsReport ComputeStats(const std::vector<MessageRecord>& rows, const StatsOptions& options);

// ComputeStats over the message rows of the attempt log at `path` (a
// missing file is an empty log); an error when the log cannot be read.
Result<StatsReport> ReadStats(const std::string& path, const StatsOptions& options);

// The report as one JSON object (fields in mxsec(8), STATS).
std::string StatsToJson(const StatsReport& report);

// The totals of `report` in the Prometheus text exposition format 0.0.4,
// as counters (metric names in mxsec(8), STATS): what node_exporter's
// textfile collector reads. Monotonic only over a window that starts at
// the beginning of the log (report.from == 0).
std::string StatsToPrometheus(const StatsReport& report);

// "30d", "12h", "90m", "3600s", "2w" (a positive whole number and a unit)
// in seconds; an error naming the text otherwise, or above ten years.
Result<int64_t> ParseStatsDuration(const std::string& text);

}  // namespace mxsec
