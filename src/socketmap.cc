// socketmap.cc - netstrings and the mxsec -> Postfix TLS policy mapping.
#include "mxsec/socketmap.h"

#include <algorithm>
#include <set>

#include "mxsec/domain_name.h"

namespace mxsec {

Result<std::optional<std::string>> NetstringReader::Next() {
  using Out = std::optional<std::string>;
  if (buf_.empty()) return Out();
  size_t colon = buf_.find(':');
  size_t digits = colon == std::string::npos ? buf_.size() : colon;
  if (digits == 0) return Status::Error("netstring without a length");
  if (digits > 10) return Status::Error("netstring length too long");
  for (size_t i = 0; i < digits; ++i)
    if (buf_[i] < '0' || buf_[i] > '9') return Status::Error("netstring length is not a number");
  if (digits > 1 && buf_[0] == '0') return Status::Error("netstring length with a leading zero");
  if (colon == std::string::npos) return Out();
  size_t len = std::stoull(buf_.substr(0, digits));
  if (len > max_len_) return Status::Error("netstring of " + std::to_string(len) + " bytes, limit " +
                                           std::to_string(max_len_));
  if (buf_.size() < colon + 1 + len + 1) return Out();
  if (buf_[colon + 1 + len] != ',') return Status::Error("netstring not terminated by a comma");
  std::string payload = buf_.substr(colon + 1, len);
  buf_.erase(0, colon + 1 + len + 1);
  return Out(std::move(payload));
}

std::string EncodeNetstring(std::string_view payload) {
  return std::to_string(payload.size()) + ":" + std::string(payload) + ",";
}

Result<std::string> SocketmapKey(std::string_view request) {
  size_t sp = request.find(' ');
  if (sp == std::string_view::npos || sp == 0) return Status::Error("request is not \"<map> <key>\"");
  std::string key(request.substr(sp + 1));
  if (key.empty()) return Status::Error("empty key");
  for (char c : key) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return Status::Error("control character in key");
  }
  return key;
}

std::string PostfixPolicyReply(const DomainPolicy& p) {
  switch (p.verdict) {
    case Verdict::kDefer: {
      std::string reason = p.reason;
      for (char& c : reason)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
      if (reason.size() > 400) reason.resize(400);
      return "TEMP " + (p.status_code.empty() ? std::string() : p.status_code + " ") + reason;
    }
    case Verdict::kFail:
      return "NOTFOUND ";
    case Verdict::kOpportunistic:
      // A local `may` is an answer of its own: it overrides whatever
      // DANE/MTA-STS policy Postfix would otherwise apply.
      if (p.local && p.local->policy == LocalTls::kMay) return "OK may";
      return "NOTFOUND ";
    case Verdict::kMustTls:
      break;
  }
  if (p.local) {
    // The local_policy_file rule decided (defer and fail were answered above).
    switch (p.local->policy) {
      case LocalTls::kDaneOnly: return "OK dane-only";
      case LocalTls::kEncrypt: return "OK encrypt";
      case LocalTls::kMay: return "OK may";
      case LocalTls::kVerify: {
        std::string match;
        for (const std::string& n : p.local->match) match += (match.empty() ? "" : ":") + n;
        return "OK secure match=" + (match.empty() ? std::string("hostname") : match) + " servername=hostname";
      }
    }
  }
  if (p.mechanism == Mechanism::kDane) {
    bool any_dane = false;
    for (const MxPolicy& m : p.mx) any_dane = any_dane || m.tls == HostTls::kDane;
    return any_dane ? "OK dane-only" : "OK encrypt";
  }
  if (p.mechanism == Mechanism::kMtaSts && p.mta_sts) {
    std::vector<std::string> names;
    std::set<std::string> seen;
    auto add = [&](const std::string& n) {
      if (seen.insert(n).second) names.push_back(n);
    };
    StsPolicy pol;
    pol.mode = p.mta_sts->mode;
    for (const std::string& pattern : p.mta_sts->mx) {
      if (pattern.rfind("*.", 0) != 0) add(pattern);
    }
    for (const MxPolicy& m : p.mx) {
      for (const std::string& pattern : p.mta_sts->mx) {
        if (pattern.rfind("*.", 0) == 0 && StsMxMatches(pattern, m.host)) add(m.host);
      }
    }
    if (names.empty()) return "TEMP 4.7.5 no MX host of " + p.domain + " matches its MTA-STS policy";
    std::string match;
    for (const std::string& n : names) match += (match.empty() ? "" : ":") + n;
    return "OK secure match=" + match + " servername=hostname";
  }
  // must-tls by something Postfix has no word for: the safest common
  // ground is mandatory, verified TLS to the MX names.
  return "OK secure match=hostname servername=hostname";
}

}  // namespace mxsec
