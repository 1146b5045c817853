// requiretls.cc - see requiretls.h.
#include "mxsec/policy/requiretls.h"

#include <algorithm>

#include "mxsec/base/text.h"

namespace mxsec {

const char* MessageTlsName(MessageTls t) {
  switch (t) {
    case MessageTls::kPolicy: return "policy";
    case MessageTls::kRequireTls: return "requiretls";
    case MessageTls::kTlsOptional: return "tls-required-no";
  }
  return "policy";
}

std::optional<MessageTls> ParseMessageTls(std::string_view name) {
  for (MessageTls t : {MessageTls::kPolicy, MessageTls::kRequireTls, MessageTls::kTlsOptional})
    if (name == MessageTlsName(t)) return t;
  return std::nullopt;
}

namespace {

bool StsEnforceLists(const DomainPolicy& policy, const std::string& host) {
  if (!policy.mta_sts || policy.mta_sts->mode != StsMode::kEnforce) return false;
  StsPolicy sts;
  sts.mode = policy.mta_sts->mode;
  sts.mx = policy.mta_sts->mx;
  return StsPolicyMatches(sts, host);
}

}  // namespace

RequireTlsCheck RequireTlsHost(const DomainPolicy& policy, const MxPolicy& mx) {
  const bool mx_secure = policy.dnssec == DnssecStatus::kSecure;
  switch (mx.tls) {
    case HostTls::kDane:
      if (mx_secure) return {true, "DANE"};
      return {false, mx.host + ": DANE without a DNSSEC-secure MX answer"};
    case HostTls::kPkix: {
      const bool names_host = mx.pkix_names.empty() ||
                              std::find(mx.pkix_names.begin(), mx.pkix_names.end(), mx.host) != mx.pkix_names.end();
      if (StsEnforceLists(policy, mx.host)) return {true, "MTA-STS enforce"};
      if (mx_secure && names_host) return {true, "PKIX, DNSSEC-secure MX"};
      return {false, mx.host + ": PKIX, but the MX name is neither DNSSEC-secure nor listed by an MTA-STS policy "
                               "in enforce mode"};
    }
    case HostTls::kEncrypt:
      return {false, mx.host + ": TLS without authentication (encrypt)"};
    case HostTls::kMay:
      return {false, mx.host + ": opportunistic TLS only (no DANE, no MTA-STS enforce)"};
    case HostTls::kSkip:
      return {false, mx.host + ": not used (" + mx.reason + ")"};
  }
  return {false, mx.host + ": unknown TLS requirement"};
}

RequireTlsCheck RequireTlsDomain(const DomainPolicy& policy) {
  if (policy.verdict == Verdict::kDefer || policy.verdict == Verdict::kFail)
    return {false, std::string(VerdictName(policy.verdict)) + ": " + policy.reason};
  std::string why;
  for (const MxPolicy& mx : policy.mx) {
    if (mx.addresses.empty()) continue;
    RequireTlsCheck c = RequireTlsHost(policy, mx);
    if (c.eligible) return {true, mx.host + ": " + c.reason};
    why += (why.empty() ? "" : "; ") + c.reason;
  }
  if (why.empty()) why = "no MX host with an address";
  return {false, "no MX host can be authenticated as REQUIRETLS asks (RFC 8689 section 4.2.1): " + why};
}

bool HasTlsRequiredNo(std::string_view message) {
  std::string_view head = message.substr(0, kMaxHeaderScan);
  bool found = false;
  std::string value;   // of the TLS-Required field being read, unfolded
  bool in_field = false;
  auto finish = [&] {
    if (in_field && EqualsIgnoreCase(TrimWsp(value), "no")) found = true;
    in_field = false;
    value.clear();
  };
  size_t pos = 0;
  while (pos < head.size() && !found) {
    size_t nl = head.find('\n', pos);
    std::string_view line = head.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? head.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the body follows
    if (line[0] == ' ' || line[0] == '\t') {
      if (in_field) value.append(" ").append(line);
      continue;
    }
    finish();
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) break;  // not a header field: the body starts
    if (EqualsIgnoreCase(TrimWsp(line.substr(0, colon)), "tls-required")) {
      in_field = true;
      value.assign(line.substr(colon + 1));
    }
  }
  finish();
  return found;
}

DomainPolicy SetAsideTlsDemands(const DomainPolicy& policy, std::string* demanded) {
  DomainPolicy p = policy;
  std::string set_aside;
  bool any_address = false;
  for (MxPolicy& mx : p.mx) {
    if (mx.addresses.empty()) continue;
    any_address = true;
    if (mx.tls == HostTls::kMay) continue;
    set_aside += (set_aside.empty() ? "" : ", ") + mx.host + " " + HostTlsName(mx.tls);
    mx.tls = HostTls::kMay;
    mx.tlsa.clear();
    mx.pkix_names.clear();
    mx.reason += "; TLS-Required: No (RFC 8689): the sender set this demand aside, TLS only when offered";
  }
  if (any_address && (p.verdict == Verdict::kMustTls || p.verdict == Verdict::kDefer)) {
    if (p.verdict == Verdict::kDefer && set_aside.empty()) set_aside = "defer: " + p.reason;
    p.verdict = Verdict::kOpportunistic;
    p.status_code.clear();
    p.reason = "TLS-Required: No (RFC 8689): " + policy.domain + "'s TLS demands set aside by the sender (" +
               (set_aside.empty() ? std::string(VerdictName(policy.verdict)) : set_aside) + ")";
  }
  if (demanded) *demanded = set_aside;
  return p;
}

}  // namespace mxsec
