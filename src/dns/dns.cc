// dns.cc - classification of DNS responses and the resolver-mode resolver.
//
// Resolver mode (RFC 4035 §3.2, RFC 6840 §5.8): a validating resolver on loopback sets AD on
// secure answers and returns SERVFAIL for bogus ones. We ask with DO=1 and
// read AD as "secure"; a SERVFAIL is asked again with CD=1: if data comes
// back the zone is bogus, otherwise the answer is indeterminate. Both are
// failures, never "no data": the decision layer must not confuse an attack
// on DNS with the absence of TLSA records.
//
// The AD bit means something only if the resolver validates. The
// self-check (RunSelfCheck) asks a name that must fail validation and one
// that must validate; a resolver shown not to validate makes DANE
// unavailable, with that reason, and every answer indeterminate.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>

#include "mxsec/dns/dns.h"
#include "mxsec/base/domain_name.h"

namespace mxsec {

const char* DnssecStatusName(DnssecStatus s) {
  switch (s) {
    case DnssecStatus::kSecure: return "secure";
    case DnssecStatus::kInsecure: return "insecure";
    case DnssecStatus::kBogus: return "bogus";
    case DnssecStatus::kIndeterminate: return "indeterminate";
  }
  return "?";
}

DnssecStatus WeakerStatus(DnssecStatus a, DnssecStatus b) {
  auto rank = [](DnssecStatus s) {
    switch (s) {
      case DnssecStatus::kSecure: return 0;
      case DnssecStatus::kInsecure: return 1;
      case DnssecStatus::kIndeterminate: return 2;
      case DnssecStatus::kBogus: return 3;
    }
    return 3;
  };
  return rank(a) >= rank(b) ? a : b;
}

const char* DnsOutcomeName(DnsOutcome o) {
  switch (o) {
    case DnsOutcome::kRecords: return "records";
    case DnsOutcome::kNoData: return "nodata";
    case DnsOutcome::kNxDomain: return "nxdomain";
    case DnsOutcome::kFailure: return "failure";
  }
  return "?";
}

std::string RrTypeName(RrType t) {
  switch (t) {
    case RrType::kA: return "A";
    case RrType::kNS: return "NS";
    case RrType::kCNAME: return "CNAME";
    case RrType::kSOA: return "SOA";
    case RrType::kMX: return "MX";
    case RrType::kTXT: return "TXT";
    case RrType::kAAAA: return "AAAA";
    case RrType::kDNAME: return "DNAME";
    case RrType::kDS: return "DS";
    case RrType::kRRSIG: return "RRSIG";
    case RrType::kNSEC: return "NSEC";
    case RrType::kDNSKEY: return "DNSKEY";
    case RrType::kNSEC3: return "NSEC3";
    case RrType::kTLSA: return "TLSA";
  }
  return "TYPE" + std::to_string(static_cast<int>(t));
}

std::string TlsaRecord::DataHex() const {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string TlsaRecord::ToString() const {
  return std::to_string(usage) + " " + std::to_string(selector) + " " + std::to_string(matching) + " " + DataHex();
}

namespace {

constexpr int kMaxChain = 8;

std::string RcodeText(const DnsResponse& r) {
  switch (r.rcode) {
    case DnsRcode::kServFail: return "SERVFAIL";
    case DnsRcode::kRefused: return "REFUSED";
    case DnsRcode::kNxDomain: return "NXDOMAIN";
    case DnsRcode::kNoError: return "NOERROR";
    case DnsRcode::kOther: return "RCODE " + std::to_string(r.rcode_value);
  }
  return "?";
}

// Octets of a name in normal form on the wire: one length octet per label,
// the root's zero octet; an escape (\. or \DDD) is one octet.
size_t WireLength(const std::string& n) {
  if (n.empty()) return 1;
  size_t octets = 0, labels = 1;
  for (size_t i = 0; i < n.size(); ++i) {
    if (n[i] == '.') {
      ++labels;
      continue;
    }
    if (n[i] == '\\') i += (i + 1 < n.size() && n[i + 1] >= '0' && n[i + 1] <= '9') ? 3 : 1;
    ++octets;
  }
  return octets + labels + 1;
}

bool StrictlyBelow(const std::string& name, const std::string& owner) {
  if (owner.empty()) return !name.empty();
  return name.size() > owner.size() + 1 && name.compare(name.size() - owner.size(), owner.size(), owner) == 0 &&
         name[name.size() - owner.size() - 1] == '.';
}

// The DNAME in the answer that redirects `name` (at its deepest ancestor), or null.
const DnsRecord* DnameAbove(const std::vector<DnsRecord>& answer, const std::string& name) {
  const DnsRecord* best = nullptr;
  for (const DnsRecord& rec : answer) {
    if (rec.type != RrType::kDNAME || !StrictlyBelow(name, rec.owner)) continue;
    if (!best || rec.owner.size() > best->owner.size()) best = &rec;
  }
  return best;
}

}  // namespace

Result<std::string> DnameSubstitute(const std::string& name, const std::string& owner, const std::string& target) {
  if (!StrictlyBelow(name, owner))
    return Status::Error("DNAME at " + (owner.empty() ? "." : owner) + " does not apply to " + name);
  std::string prefix = name.substr(0, owner.empty() ? name.size() : name.size() - owner.size() - 1);
  std::string out = target.empty() ? prefix : prefix + "." + target;
  if (WireLength(out) > 255)
    return Status::Error("DNAME " + owner + " -> " + (target.empty() ? "." : target) + " makes " + name +
                         " longer than 255 octets");
  return out;
}

DnsAnswer ClassifyResponse(const DnsQuestion& q, const DnsResponse& r, const DnsResponse* cd_retry, bool trust_ad) {
  DnsAnswer a;
  a.question = q;
  a.final_name = q.name;
  std::string where = r.server.empty() ? "" : " from " + r.server;
  if (!r.answered) {
    a.outcome = DnsOutcome::kFailure;
    a.dnssec = DnssecStatus::kIndeterminate;
    a.reason = r.error.empty() ? "no answer" + where : r.error;
    return a;
  }
  if (r.rcode != DnsRcode::kNoError && r.rcode != DnsRcode::kNxDomain) {
    a.outcome = DnsOutcome::kFailure;
    a.dnssec = DnssecStatus::kIndeterminate;
    a.reason = RcodeText(r) + where;
    if (!r.ede.empty()) a.reason += " (extended error " + r.ede + ")";
    if (r.rcode == DnsRcode::kServFail && cd_retry && cd_retry->answered &&
        (cd_retry->rcode == DnsRcode::kNoError || cd_retry->rcode == DnsRcode::kNxDomain)) {
      // The data exists but the validator rejected it: bogus (RFC 4035 §4.3).
      a.dnssec = DnssecStatus::kBogus;
      a.reason += "; DNSSEC validation failed (data returned with CD=1)";
    }
    return a;
  }

  // Follow the CNAME chain (and DNAME redirections) inside the answer
  // section; only records that belong to the chain count (anything else is ignored, as a resolver
  // could be handed unrelated records by a hostile authority).
  const std::vector<DnsRecord> answer = AnswerRecords(r);
  std::string name = q.name;
  std::set<std::string> seen{name};
  if (q.type != RrType::kCNAME) {
    for (int hop = 0; hop <= kMaxChain; ++hop) {
      std::string next;
      bool found = false;
      for (const DnsRecord& rec : answer) {
        if (rec.type == RrType::kCNAME && rec.owner == name) {
          next = rec.text;
          found = true;
          break;
        }
      }
      const DnsRecord* dname = found ? nullptr : DnameAbove(answer, name);
      if (dname && std::none_of(answer.begin(), answer.end(), [&](const DnsRecord& rec) {
            return rec.type == q.type && rec.owner == name;
          })) {
        // The name is redirected by a DNAME but the answer lacks the CNAME
        // that is only its copy (RFC 6672 §2.2, §3.1): follow the DNAME
        // itself, or a resolver that leaves the CNAME out would make the
        // name read as "no data".
        auto sub = DnameSubstitute(name, dname->owner, dname->text);
        if (!sub.ok()) {
          a.outcome = DnsOutcome::kFailure;
          a.dnssec = DnssecStatus::kIndeterminate;
          a.reason = sub.error();
          return a;
        }
        next = sub.value();
        found = true;
      }
      if (!found) break;
      if (hop == kMaxChain || seen.count(next)) {
        a.outcome = DnsOutcome::kFailure;
        a.dnssec = DnssecStatus::kIndeterminate;
        a.reason = hop == kMaxChain ? "CNAME chain longer than " + std::to_string(kMaxChain) + " hops"
                                    : "CNAME loop at " + next;
        return a;
      }
      seen.insert(next);
      a.chain.push_back(next);
      name = next;
    }
  }
  a.final_name = name;
  bool first = true;
  for (const DnsRecord& rec : answer) {
    if (rec.type == q.type && rec.owner == name) {
      a.records.push_back(rec);
      a.ttl = first ? rec.ttl : std::min(a.ttl, rec.ttl);
      first = false;
    }
  }
  if (!a.records.empty()) {
    a.outcome = DnsOutcome::kRecords;
  } else if (r.rcode == DnsRcode::kNxDomain) {
    a.outcome = DnsOutcome::kNxDomain;
  } else {
    a.outcome = DnsOutcome::kNoData;
  }
  a.dnssec = (trust_ad && r.ad) ? DnssecStatus::kSecure : DnssecStatus::kInsecure;
  return a;
}

const char* ResolverCheckStatusName(ResolverCheckStatus s) {
  switch (s) {
    case ResolverCheckStatus::kValidates: return "validates";
    case ResolverCheckStatus::kNotValidating: return "not-validating";
    case ResolverCheckStatus::kInconclusive: return "inconclusive";
  }
  return "?";
}

namespace {

// "NOERROR, 1 record, AD" / "SERVFAIL (extended error 7 ...)" / "no answer: ..."
std::string DescribeReply(const DnsResponse& r) {
  if (!r.answered) return "no answer: " + (r.error.empty() ? std::string("timeout") : r.error);
  std::string out = RcodeText(r);
  if (r.rcode == DnsRcode::kNoError || r.rcode == DnsRcode::kNxDomain) {
    const size_t n = AnswerRecords(r).size();
    out += ", " + std::to_string(n) + (n == 1 ? " record" : " records");
    out += r.ad ? ", AD" : ", no AD";
  }
  if (!r.ede.empty()) out += " (extended error " + r.ede + ")";
  return out;
}

bool HasData(const DnsResponse& r) {
  return r.answered && (r.rcode == DnsRcode::kNoError || r.rcode == DnsRcode::kNxDomain);
}

}  // namespace

ResolverCheck EvaluateResolverCheck(const std::string& resolver, const std::string& probe_name,
                                    const DnsResponse* probe, const std::string& secure_name,
                                    const DnsResponse* secure) {
  ResolverCheck c;
  c.probe_name = probe ? probe_name : "";
  c.secure_name = secure ? secure_name : "";
  std::vector<std::string> proofs;   // why the resolver does not validate
  std::vector<std::string> unknown;  // checks that could not conclude
  bool all_ok = true;
  if (probe) {
    c.probe_result = DescribeReply(*probe);
    if (probe->answered && probe->rcode == DnsRcode::kServFail) {
      c.probe_ok = true;  // a validator refuses bogus data (RFC 4035 §5.5)
    } else if (HasData(*probe)) {
      all_ok = false;
      proofs.push_back("answered the name " + probe_name + ", which must fail validation (" + c.probe_result +
                       ")");
    } else {
      all_ok = false;
      unknown.push_back("the bogus name " + probe_name + " got " + c.probe_result);
    }
  }
  if (secure) {
    c.secure_result = DescribeReply(*secure);
    if (HasData(*secure) && secure->ad) {
      c.secure_ok = true;
    } else if (HasData(*secure)) {
      all_ok = false;
      proofs.push_back("answered the name " + secure_name + ", which must validate, without AD (" +
                       c.secure_result + ")");
    } else {
      all_ok = false;
      unknown.push_back("the secure name " + secure_name + " got " + c.secure_result);
    }
  }
  if (!proofs.empty()) {
    c.status = ResolverCheckStatus::kNotValidating;
    c.summary = "resolver does not validate DNSSEC: " + resolver + " ";
    for (size_t i = 0; i < proofs.size(); ++i) c.summary += (i ? " and " : "") + proofs[i];
    c.summary += "; DANE is unavailable until it validates";
  } else if (all_ok) {
    c.status = ResolverCheckStatus::kValidates;
    c.summary = "resolver " + resolver + " validates DNSSEC";
    if (probe) c.summary += ": " + probe_name + " failed validation (" + c.probe_result + ")";
    if (secure) c.summary += std::string(probe ? "," : ":") + " " + secure_name + " validated (" + c.secure_result + ")";
  } else {
    c.status = ResolverCheckStatus::kInconclusive;
    c.summary = "resolver check of " + resolver + " inconclusive: ";
    for (size_t i = 0; i < unknown.size(); ++i) c.summary += (i ? "; " : "") + unknown[i];
    c.summary += "; its AD bit is still trusted";
  }
  return c;
}

namespace {

class ResolverModeResolverImpl : public ResolverModeResolver {
 public:
  ResolverModeResolverImpl(DnsTransport* transport, ResolverModeOptions options)
      : transport_(transport), options_(std::move(options)) {}

  std::vector<DnsAnswer> LookupMany(const std::vector<DnsQuestion>& questions) override {
    const bool not_validating = NotValidating();
    std::vector<DnsResponse> responses = transport_->QueryMany(questions, false);
    // Ask the SERVFAILs again with CD=1 to tell bogus from unreachable.
    std::vector<size_t> failed;
    std::vector<DnsQuestion> retry;
    for (size_t i = 0; i < responses.size(); ++i) {
      if (responses[i].answered && responses[i].rcode == DnsRcode::kServFail) {
        failed.push_back(i);
        retry.push_back(questions[i]);
      }
    }
    std::vector<DnsResponse> cd;
    if (!retry.empty()) cd = transport_->QueryMany(retry, true);
    std::vector<DnsAnswer> out;
    out.reserve(questions.size());
    for (size_t i = 0; i < questions.size(); ++i) {
      const DnsResponse* cd_retry = nullptr;
      auto it = std::find(failed.begin(), failed.end(), i);
      if (it != failed.end()) cd_retry = &cd[static_cast<size_t>(it - failed.begin())];
      out.push_back(ClassifyResponse(questions[i], responses[i], cd_retry, options_.trust_ad));
      // Without a validator nobody knows whether the data is signed: the
      // status is indeterminate, never a quiet "insecure".
      if (not_validating && !out.back().failed()) out.back().dnssec = DnssecStatus::kIndeterminate;
    }
    return out;
  }

  bool dnssec_trusted() const override { return options_.trust_ad && !NotValidating(); }
  std::string dnssec_untrusted_reason() const override {
    if (!options_.trust_ad) return options_.untrusted_reason;
    std::lock_guard<std::mutex> l(mu_);
    return check_ ? check_->summary : "";
  }
  std::string describe() const override { return options_.description; }
  std::optional<ResolverCheck> resolver_check() const override {
    std::lock_guard<std::mutex> l(mu_);
    return check_;
  }

  std::optional<ResolverCheck> RunSelfCheck(int64_t now) override {
    // An untrusted resolver has DANE off already; nothing to learn.
    if (!options_.trust_ad) return std::nullopt;
    std::vector<DnsQuestion> qs;
    size_t probe_i = SIZE_MAX, secure_i = SIZE_MAX;
    if (!options_.probe_name.empty()) {
      probe_i = qs.size();
      qs.push_back({QuestionName(options_.probe_name), RrType::kA});
    }
    if (!options_.secure_name.empty()) {
      secure_i = qs.size();
      qs.push_back({QuestionName(options_.secure_name), RrType::kSOA});
    }
    if (qs.empty()) return std::nullopt;
    std::vector<DnsResponse> rs = transport_->QueryMany(qs, false);
    std::string who;
    for (const DnsResponse& r : rs) {
      if (!r.server.empty()) { who = r.server; break; }
    }
    if (who.empty()) who = options_.description;
    ResolverCheck c = EvaluateResolverCheck(who, options_.probe_name, probe_i == SIZE_MAX ? nullptr : &rs[probe_i],
                                            options_.secure_name, secure_i == SIZE_MAX ? nullptr : &rs[secure_i]);
    c.checked_at = now;
    std::lock_guard<std::mutex> l(mu_);
    if (c.status == ResolverCheckStatus::kInconclusive && check_ &&
        check_->status == ResolverCheckStatus::kNotValidating) {
      // A resolver once seen not validating stays so until a check shows
      // otherwise: a timeout proves nothing.
      ResolverCheck kept = *check_;
      kept.summary += " (last re-check inconclusive: " + c.summary + ")";
      kept.checked_at = now;
      check_ = kept;
    } else {
      check_ = c;
    }
    return check_;
  }

 private:
  // "." (the root) is "" in normal form.
  static std::string QuestionName(const std::string& n) { return n == "." ? "" : n; }

  bool NotValidating() const {
    std::lock_guard<std::mutex> l(mu_);
    return check_ && check_->status == ResolverCheckStatus::kNotValidating;
  }

  DnsTransport* transport_;
  ResolverModeOptions options_;
  mutable std::mutex mu_;
  std::optional<ResolverCheck> check_;
};

}  // namespace

std::unique_ptr<ResolverModeResolver> NewResolverModeResolver(DnsTransport* transport,
                                                              const ResolverModeOptions& options) {
  return std::make_unique<ResolverModeResolverImpl>(transport, options);
}

}  // namespace mxsec
