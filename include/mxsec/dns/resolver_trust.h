// resolver_trust.h - whether the DNSSEC statuses of the configured resolvers
// can be believed, and so whether DANE (RFC 7672) can be used at all.
//
// The rule (man/mxsec.conf.5, dnssec_validation, dnssec_trust_remote_resolver):
//   - dnssec_validation = off: no DNSSEC, so no DANE; the AD bit is ignored.
//   - dnssec_validation = resolver: the AD bit of the resolvers' replies is
//     believed only when every resolver is on loopback, since on any other
//     path it travels unauthenticated and can be forged (RFC 4035 §4.9.3);
//     dnssec_trust_remote_resolver = yes believes it anyway.
//     An untrusted AD bit makes every answer read as insecure, so DANE is
//     off in effect, while the `dane` key stays as configured.
//   - dnssec_validation = local: signatures are checked in this process
//     (local_validator.h) and the AD bit is never read, so where the
//     resolvers run does not matter.
//   - dane = no switches DANE off whatever the validation.
// DecideResolverTrust is pure: it reads no file and asks no server.
#pragma once

#include <string>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/base/net_address.h"

namespace mxsec {

// The configuration the rule reads.
struct ResolverTrustSettings {
  std::vector<ResolverAddress> resolvers;  // as configured or read from /etc/resolv.conf
  DnssecValidation validation = DnssecValidation::kResolver;
  bool trust_remote_resolver = false;      // dnssec_trust_remote_resolver
  bool dane = true;                        // the `dane` key
  std::string config_source;               // the file `dane` came from, named in the reason
};

struct ResolverTrust {
  // The resolvers as the reasons and descriptions name them:
  // "127.0.0.1:53, [::1]:53".
  std::string resolver_names;
  // Whether the AD bit is believed; when it is not, `ad_untrusted_reason`
  // says why. With local validation nothing rests on it: true, no reason.
  bool ad_trusted = true;
  std::string ad_untrusted_reason;
  // The policy engine's DANE switch (PolicyOptions::dane); when off,
  // `dane_off_reason` says why. An untrusted AD bit leaves it on: the
  // engine then finds the resolver untrusted and names
  // `ad_untrusted_reason` as the reason DANE is off.
  bool dane = true;
  std::string dane_off_reason;
};

ResolverTrust DecideResolverTrust(const ResolverTrustSettings& settings);

}  // namespace mxsec
