// policy_json.cc - the two faces of a DomainPolicy: the JSON Lines object
// of man/mxsec.8 (a contract other programs parse: field names and value
// words change only on purpose) and the table an administrator reads.
#include <nlohmann/json.hpp>
#include <sstream>

#include "mxsec/policy/policy.h"
#include "mxsec/policy/requiretls.h"

namespace mxsec {

namespace {

using nlohmann::json;

json MxToJson(const MxPolicy& m) {
  json o;
  o["host"] = m.host;
  o["preference"] = m.preference;
  o["dnssec"] = DnssecStatusName(m.dnssec);
  o["addresses"] = m.addresses;
  o["tls"] = HostTlsName(m.tls);
  json tl = json::array();
  for (const TlsaRecord& t : m.tlsa) {
    tl.push_back({{"usage", t.usage}, {"selector", t.selector}, {"matching", t.matching}, {"data", t.DataHex()}});
  }
  o["tlsa"] = tl;
  if (!m.tlsa_base.empty()) o["tlsa_base"] = m.tlsa_base;
  if (m.tlsa_looked_up) o["tlsa_dnssec"] = DnssecStatusName(m.tlsa_dnssec);
  if (!m.cname_chain.empty()) o["cname_chain"] = m.cname_chain;
  o["reason"] = m.reason;
  return o;
}

json LookupsToJson(const std::vector<LookupTrace>& lookups) {
  json out = json::array();
  for (const LookupTrace& t : lookups) {
    out.push_back({{"name", t.name}, {"type", t.type}, {"outcome", t.outcome},
                   {"dnssec", DnssecStatusName(t.dnssec)}, {"mode", t.mode}, {"how", t.how}});
  }
  return out;
}

json StsToJson(const std::optional<StsState>& state) {
  if (!state) return nullptr;
  const StsState& s = *state;
  json o;
  o["mode"] = StsModeName(s.mode);
  o["id"] = s.id;
  o["max_age"] = s.max_age;
  o["mx"] = s.mx;
  o["source"] = s.source;
  o["error"] = s.error ? json(*s.error) : json(nullptr);
  if (s.expires_at) o["expires_at"] = s.expires_at;
  return o;
}

json ResolverCheckToJson(const std::optional<ResolverCheck>& check) {
  if (!check) return nullptr;
  const ResolverCheck& c = *check;
  json o;
  o["status"] = ResolverCheckStatusName(c.status);
  o["summary"] = c.summary;
  o["probe"] = c.probe_name.empty() ? json(nullptr)
                                    : json{{"name", c.probe_name}, {"result", c.probe_result}, {"ok", c.probe_ok}};
  o["secure"] = c.secure_name.empty()
                    ? json(nullptr)
                    : json{{"name", c.secure_name}, {"result", c.secure_result}, {"ok", c.secure_ok}};
  o["checked_at"] = c.checked_at;
  return o;
}

json LocalRuleToJson(const std::optional<LocalRule>& rule) {
  if (!rule) return nullptr;
  return {{"policy", LocalTlsName(rule->policy)}, {"domain", rule->Key()}, {"source", rule->source},
          {"match", rule->match},
          {"until", rule->until.empty() ? json(nullptr) : json(rule->until)},
          {"reason", rule->reason.empty() ? json(nullptr) : json(rule->reason)}};
}

// The text report's line for the local rule applied.
std::string LocalRuleLine(const LocalRule& rule) {
  std::string line = "  local policy: " + rule.Key() + " " + LocalTlsName(rule.policy) + " (" + rule.source + ")";
  if (!rule.until.empty()) line += " until " + rule.until + " (end of day UTC)";
  if (!rule.reason.empty()) line += ": " + rule.reason;
  return line + "\n";
}

}  // namespace

std::string PolicyToJsonLine(const DomainPolicy& p) {
  json j;
  j["domain"] = p.domain;
  j["policy"] = VerdictName(p.verdict);
  j["mechanism"] = MechanismName(p.mechanism);
  j["reason"] = p.reason;
  j["dnssec"] = DnssecStatusName(p.dnssec);
  j["dnssec_source"] = p.dnssec_source;
  if (!p.status_code.empty()) j["status_code"] = p.status_code;
  j["implicit_mx"] = p.implicit_mx;
  if (!p.mx_chain.empty()) j["mx_cname_chain"] = p.mx_chain;
  json mxs = json::array();
  for (const MxPolicy& m : p.mx) mxs.push_back(MxToJson(m));
  j["mx"] = mxs;
  j["lookups"] = LookupsToJson(p.lookups);
  j["mta_sts"] = StsToJson(p.mta_sts);
  j["resolver_check"] = ResolverCheckToJson(p.resolver_check);
  j["local_policy"] = LocalRuleToJson(p.local);
  const RequireTlsCheck requiretls = RequireTlsDomain(p);
  j["requiretls"] = {{"possible", requiretls.eligible}, {"reason", requiretls.reason}};
  if (!p.notes.empty()) j["notes"] = p.notes;
  // Hostile DNS data may hold invalid UTF-8: replace it rather than fail.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string PolicyToText(const DomainPolicy& p) {
  std::ostringstream o;
  o << p.domain << ": " << VerdictName(p.verdict);
  if (p.mechanism != Mechanism::kNone) o << " (" << MechanismName(p.mechanism) << ")";
  if (!p.status_code.empty()) o << " [" << p.status_code << "]";
  o << "\n  reason: " << p.reason << "\n";
  o << "  dnssec: " << DnssecStatusName(p.dnssec);
  if (!p.mx_chain.empty()) {
    o << " (via CNAME";
    for (const auto& c : p.mx_chain) o << " " << c;
    o << ")";
  }
  o << "\n";
  for (const MxPolicy& m : p.mx) {
    o << "  mx " << m.preference << " " << m.host << " [";
    for (size_t i = 0; i < m.addresses.size(); ++i) o << (i ? " " : "") << m.addresses[i];
    o << "] dnssec=" << DnssecStatusName(m.dnssec) << " tls=" << HostTlsName(m.tls) << "\n";
    for (const TlsaRecord& t : m.tlsa) o << "      TLSA _25._tcp." << m.tlsa_base << " " << t.ToString() << "\n";
    o << "      " << m.reason << "\n";
  }
  if (p.mta_sts) {
    const StsState& s = *p.mta_sts;
    o << "  mta-sts: mode " << StsModeName(s.mode);
    if (!s.id.empty()) o << ", id " << s.id;
    if (s.max_age) o << ", max_age " << s.max_age;
    if (!s.mx.empty()) {
      o << ", mx";
      for (const auto& x : s.mx) o << " " << x;
    }
    o << " (" << s.source << ")";
    if (s.error) o << "\n      " << *s.error;
    o << "\n";
  } else {
    o << "  mta-sts: none\n";
  }
  // A resolver that does not validate, or could not be checked, is worth a
  // line on every domain: the statuses above depend on it.
  if (p.resolver_check && p.resolver_check->status != ResolverCheckStatus::kValidates)
    o << "  resolver check: " << ResolverCheckStatusName(p.resolver_check->status) << ": "
      << p.resolver_check->summary << "\n";
  if (p.local) o << LocalRuleLine(*p.local);
  const RequireTlsCheck requiretls = RequireTlsDomain(p);
  o << "  requiretls: " << (requiretls.eligible ? "possible, " : "not possible: ") << requiretls.reason << "\n";
  for (const auto& n : p.notes) o << "  note: " << n << "\n";
  return o.str();
}

}  // namespace mxsec
