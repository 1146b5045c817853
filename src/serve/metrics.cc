// metrics.cc - see metrics.h.
#include "mxsec/serve/metrics.h"

#include <cstdio>
#include <sstream>

namespace mxsec {
namespace {

const char* kStsOutcomeNames[kStsLookupOutcomes] = {"fetched",        "cached",        "txt-unusable",
                                                    "fetch-failed",   "policy-invalid", "cache-fallback"};

// A sample value as Prometheus reads it (15 significant digits: bucket bounds as written).
std::string Number(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

class Writer {
 public:
  void Header(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void Sample(const std::string& name, uint64_t v) { out_ << name << " " << v << "\n"; }
  void Sample(const std::string& name, double v) { out_ << name << " " << Number(v) << "\n"; }
  void Metric(const char* name, const char* type, const char* help, uint64_t v) {
    Header(name, type, help);
    Sample(name, v);
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

std::string Labeled(const char* name, const char* label, const char* value) {
  return std::string(name) + "{" + label + "=\"" + value + "\"}";
}

}  // namespace

AnswerLabel AnswerLabelOf(const SocketmapAnswer& answer) {
  if (answer.kind == SocketmapAnswer::Kind::kNotFound) return AnswerLabel::kNotFound;
  if (answer.kind == SocketmapAnswer::Kind::kTemp) return AnswerLabel::kTemp;
  // An OK answer's data is a TLS policy table entry: the level, then attributes.
  std::string level = answer.data.substr(0, answer.data.find(' '));
  if (level == "dane-only") return AnswerLabel::kDaneOnly;
  if (level == "dane") return AnswerLabel::kDane;
  if (level == "encrypt") return AnswerLabel::kEncrypt;
  if (level == "secure") return AnswerLabel::kSecure;
  if (level == "verify") return AnswerLabel::kVerify;
  if (level == "may") return AnswerLabel::kMay;
  if (level == "none") return AnswerLabel::kNone;
  return AnswerLabel::kOther;
}

const char* AnswerLabelName(AnswerLabel label) {
  switch (label) {
    case AnswerLabel::kDaneOnly: return "dane-only";
    case AnswerLabel::kDane: return "dane";
    case AnswerLabel::kEncrypt: return "encrypt";
    case AnswerLabel::kSecure: return "secure";
    case AnswerLabel::kVerify: return "verify";
    case AnswerLabel::kMay: return "may";
    case AnswerLabel::kNone: return "none";
    case AnswerLabel::kNotFound: return "notfound";
    case AnswerLabel::kTemp: return "temp";
    case AnswerLabel::kOther: break;
  }
  return "other";
}

std::optional<StsLookupOutcome> StsLookupOutcomeOf(const DomainPolicy& policy) {
  if (!policy.mta_sts) return std::nullopt;
  switch (policy.mta_sts->problem) {
    case StsProblem::kNone:
      return policy.mta_sts->source == "fetched" ? StsLookupOutcome::kFetched : StsLookupOutcome::kCached;
    case StsProblem::kTxtUnusable: return StsLookupOutcome::kTxtUnusable;
    case StsProblem::kFetchFailed: return StsLookupOutcome::kFetchFailed;
    case StsProblem::kPolicyInvalid: return StsLookupOutcome::kPolicyInvalid;
    case StsProblem::kCacheFallback: return StsLookupOutcome::kCacheFallback;
  }
  return std::nullopt;
}

void ServeMetrics::CountLookup(const SocketmapAnswer& answer, const DomainPolicy& policy, double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  lookups_[static_cast<size_t>(AnswerLabelOf(answer))]++;
  for (size_t i = 0; i < kLookupLatencyBuckets.size(); ++i) {
    if (seconds <= kLookupLatencyBuckets[i]) {
      latency_buckets_[i]++;
      break;
    }
  }
  latency_count_++;
  latency_sum_ += seconds;
  if (auto o = StsLookupOutcomeOf(policy)) sts_lookups_[static_cast<size_t>(*o)]++;
  if (policy.local) local_rule_lookups_++;
  if (!policy.override_warning.empty()) overrides_++;
}

void ServeMetrics::CountStsRefresh(const StsRefreshReport& report) {
  std::lock_guard<std::mutex> l(mu_);
  sts_refresh_runs_++;
  sts_refresh_failed_ += report.failed();
  sts_refreshed_ += report.domains.size() - report.failed();
}

void ServeMetrics::SetResolverCheck(const ResolverCheck& check) {
  std::lock_guard<std::mutex> l(mu_);
  resolver_status_ = check.status;
  resolver_checks_++;
}

std::string ServeMetrics::Exposition() const {
  Writer w;
  w.Metric("mxsec_serve_requests_total", "counter", "Socketmap requests read from clients.", requests_);
  w.Metric("mxsec_serve_answer_cache_hits_total", "counter", "Requests answered from memory.", cache_hits_);
  w.Metric("mxsec_serve_answer_cache_misses_total", "counter", "Requests that needed a policy lookup.",
           cache_misses_);
  w.Metric("mxsec_serve_answer_cache_entries", "gauge", "Answers held in memory.", cache_entries_);
  w.Metric("mxsec_serve_lookup_timeouts_total", "counter",
           "Requests answered TEMP because their lookup took too long.", lookup_timeouts_);
  w.Metric("mxsec_serve_connections_open", "gauge", "Client connections open.", open_);
  w.Metric("mxsec_serve_connections_accepted_total", "counter", "Client connections accepted.", accepted_);
  w.Metric("mxsec_serve_connections_rejected_total", "counter",
           "Client connections closed at once: serve_max_connections reached.", rejected_);
  w.Metric("mxsec_serve_malformed_requests_total", "counter",
           "Connections closed for a malformed or oversized request.", malformed_);
  w.Header("mxsec_serve_reloads_total", "counter", "Configuration reloads (SIGHUP) by result.");
  w.Sample(Labeled("mxsec_serve_reloads_total", "result", "ok"), static_cast<uint64_t>(reloads_ok_));
  w.Sample(Labeled("mxsec_serve_reloads_total", "result", "failed"), static_cast<uint64_t>(reloads_failed_));

  std::lock_guard<std::mutex> l(mu_);
  w.Header("mxsec_serve_lookups_total", "counter", "Policy decisions made, by the answer given to Postfix.");
  for (size_t i = 0; i < kAnswerLabels; ++i)
    w.Sample(Labeled("mxsec_serve_lookups_total", "answer", AnswerLabelName(static_cast<AnswerLabel>(i))),
             lookups_[i]);
  w.Header("mxsec_serve_lookup_duration_seconds", "histogram", "Time to decide a domain's policy.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLookupLatencyBuckets.size(); ++i) {
    cumulative += latency_buckets_[i];
    w.Sample(Labeled("mxsec_serve_lookup_duration_seconds_bucket", "le", Number(kLookupLatencyBuckets[i]).c_str()),
             cumulative);
  }
  w.Sample(Labeled("mxsec_serve_lookup_duration_seconds_bucket", "le", "+Inf"), latency_count_);
  w.Sample("mxsec_serve_lookup_duration_seconds_sum", latency_sum_);
  w.Sample("mxsec_serve_lookup_duration_seconds_count", latency_count_);
  w.Header("mxsec_serve_mta_sts_lookups_total", "counter",
           "Decisions for domains with MTA-STS, by how the policy was obtained.");
  for (size_t i = 0; i < kStsLookupOutcomes; ++i)
    w.Sample(Labeled("mxsec_serve_mta_sts_lookups_total", "outcome", kStsOutcomeNames[i]), sts_lookups_[i]);
  w.Metric("mxsec_serve_local_rule_lookups_total", "counter", "Decisions made by a local_policy_file rule.",
           local_rule_lookups_);
  w.Metric("mxsec_serve_policy_overrides_total", "counter",
           "Decisions where a local_policy_file rule weakened what DANE or MTA-STS demand.", overrides_);
  w.Metric("mxsec_serve_mta_sts_refresh_runs_total", "counter", "Runs of the MTA-STS cache refresh.",
           sts_refresh_runs_);
  w.Header("mxsec_serve_mta_sts_refreshes_total", "counter", "Cached MTA-STS policies refreshed, by outcome.");
  w.Sample(Labeled("mxsec_serve_mta_sts_refreshes_total", "outcome", "refreshed"), sts_refreshed_);
  w.Sample(Labeled("mxsec_serve_mta_sts_refreshes_total", "outcome", "failed"), sts_refresh_failed_);
  w.Metric("mxsec_serve_resolver_checks_total", "counter", "Self-checks of the resolver (resolver mode).",
           resolver_checks_);
  w.Header("mxsec_serve_resolver_status", "gauge",
           "1 for the verdict of the resolver's last self-check (resolver mode; none before the first).");
  for (ResolverCheckStatus s :
       {ResolverCheckStatus::kValidates, ResolverCheckStatus::kNotValidating, ResolverCheckStatus::kInconclusive})
    w.Sample(Labeled("mxsec_serve_resolver_status", "status", ResolverCheckStatusName(s)),
             static_cast<uint64_t>(resolver_status_ == s));
  if (const int up = state_store_up_.load(); up >= 0) {
    w.Metric("mxsec_serve_state_store_up", "gauge",
             "1 when the shared state store (state_backend) answered last, 0 while MTA-STS policies come from the "
             "local copy.",
             static_cast<uint64_t>(up));
  }
  return w.str();
}

}  // namespace mxsec
