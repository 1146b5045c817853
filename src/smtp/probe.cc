// probe.cc - see probe.h.
#include "mxsec/smtp/probe.h"

#include <algorithm>

namespace mxsec {

std::vector<ProbedAddress> ProbeMxHosts(const DomainPolicy& policy, const DeliveryOptions& options,
                                        AttemptLog* attempts, Clock* clock) {
  std::vector<ProbedAddress> out;
  for (const MxPolicy& mx : policy.mx) {
    if (mx.tls == HostTls::kSkip) continue;
    for (const std::string& address : mx.addresses) {
      SessionOptions so = SessionOptionsFor(policy, mx, options);
      so.probe_only = true;
      so.describe_chain = true;
      ProbedAddress p{&mx, address, options.port, options.session(address, options.port, so, nullptr, clock->Now())};
      if (attempts) {
        AttemptRecord rec = SessionAttemptRecord(policy, mx, address, options.port, clock->Now());
        ClearReportPolicy(&rec);  // a probe is no delivery attempt
        SetAttemptTls(&rec, p.session.tls);
        rec.outcome = p.session.host_failed ? "host-failed" : "probe-ok";
        rec.code = p.session.code;
        rec.detail = p.session.error;
        rec.failure_type = p.session.failure_type;
        (void)attempts->Record(rec);
      }
      out.push_back(std::move(p));
    }
  }
  return out;
}

bool AnnouncesRequireTls(const SessionResult& s) {
  return s.tls.used && std::find(s.ehlo.begin(), s.ehlo.end(), "REQUIRETLS") != s.ehlo.end();
}

}  // namespace mxsec
