// resolver_trust.cc - the resolver-trust rule (see resolver_trust.h).
#include "mxsec/dns/resolver_trust.h"

#include "mxsec/base/domain_name.h"

namespace mxsec {

namespace {

std::string JoinNames(const std::vector<ResolverAddress>& resolvers) {
  std::string names;
  for (const ResolverAddress& r : resolvers) names += (names.empty() ? "" : ", ") + r.ToString();
  return names;
}

bool AllOnLoopback(const std::vector<ResolverAddress>& resolvers) {
  for (const ResolverAddress& r : resolvers)
    if (!IsLoopbackAddress(r.address)) return false;
  return true;
}

}  // namespace

ResolverTrust DecideResolverTrust(const ResolverTrustSettings& settings) {
  ResolverTrust t;
  t.resolver_names = JoinNames(settings.resolvers);
  t.dane = settings.dane;
  if (!settings.dane) t.dane_off_reason = "DANE is switched off (dane = no in " + settings.config_source + ")";
  switch (settings.validation) {
    case DnssecValidation::kOff:
      t.dane = false;
      t.dane_off_reason = "DNSSEC is switched off (dnssec_validation = off): no DANE";
      t.ad_trusted = false;
      t.ad_untrusted_reason = t.dane_off_reason;
      break;
    case DnssecValidation::kResolver:
      if (!AllOnLoopback(settings.resolvers) && !settings.trust_remote_resolver) {
        t.ad_trusted = false;
        t.ad_untrusted_reason =
            "resolver " + t.resolver_names +
            " is not on loopback: its AD bit could be forged on the path, so DANE is off "
            "(run a validating resolver on 127.0.0.1, or set dnssec_trust_remote_resolver = yes)";
      }
      break;
    case DnssecValidation::kLocal:
      break;  // signatures are checked here: the resolvers' location does not matter
  }
  return t;
}

}  // namespace mxsec
