// probe.h - what `mxsec probe` does for a domain: one session with every
// address of every usable MX host, with the TLS of the host's policy
// (STARTTLS, DANE or PKIX verification as demanded), QUIT before MAIL FROM.
//
// Promises: hosts the policy skips are not contacted; nothing is ever sent
// after EHLO but QUIT; each session is recorded (outcome "probe-ok" or
// "host-failed") with no report policy, so TLS reports never count probes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/policy/policy.h"
#include "mxsec/smtp/delivery.h"
#include "mxsec/smtp/smtp_client.h"

namespace mxsec {

struct ProbedAddress {
  const MxPolicy* mx = nullptr;  // in the DomainPolicy given
  std::string address;
  uint16_t port = 25;
  SessionResult session;
};

// Probes `policy`'s hosts in order with options.session (the real SMTP
// client, or a fake); `attempts` may be null.
std::vector<ProbedAddress> ProbeMxHosts(const DomainPolicy& policy, const DeliveryOptions& options,
                                        AttemptLog* attempts, Clock* clock);

// Whether the server announced REQUIRETLS where RFC 8689 §4.2.1 counts it:
// in the EHLO reply after STARTTLS.
bool AnnouncesRequireTls(const SessionResult& session);

}  // namespace mxsec
