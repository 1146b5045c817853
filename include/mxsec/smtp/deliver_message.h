// deliver_message.h - one delivery attempt of a message to the recipients
// of one destination domain: the domain's TLS policy is decided
// (policy.h PolicyEngine), a local rule that weakened what DANE or MTA-STS
// demand is reported, and the message is delivered with that policy
// enforced (delivery.h DeliverDomain). What `mxsec deliver` and the
// sendmail queue both do, per domain.
//
// Promises: a domain name that is not a valid host name bounces every
// recipient with 5.1.2 and makes no lookup and no connection; an
// override warning of the policy, and the sender's `TLS-Required: No`
// setting aside what the domain demands, are passed to `warn` before any
// session starts, never dropped; one outcome per recipient, in order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/base/mailbox.h"
#include "mxsec/policy/policy.h"
#include "mxsec/smtp/delivery.h"
#include "mxsec/smtp/smtp_proto.h"

namespace mxsec {

// Policies a queue run decided lately, reused for the next messages to the
// same domain instead of asking DNS (and the MTA-STS cache) again for each,
// as Postfix's smtp(8) reuses a cached session by destination without new
// lookups. Only decided policies are kept (must-tls, opportunistic, fail),
// never a temporary failure, which the next message asks again. Safe for
// several threads. Bounded by age and number: a policy older than
// `max_age` seconds is decided again, and beyond `max_domains` the
// expired entries are dropped, then nothing more is kept (lookups as before).
class RecentPolicies {
 public:
  RecentPolicies(int64_t max_age, size_t max_domains) : max_age_(max_age), max_domains_(max_domains) {}
  RecentPolicies(const RecentPolicies&) = delete;
  RecentPolicies& operator=(const RecentPolicies&) = delete;

  std::optional<DomainPolicy> Get(const std::string& domain, int64_t now);
  void Put(const std::string& domain, const DomainPolicy& policy, int64_t now);

 private:
  const int64_t max_age_;
  const size_t max_domains_;
  std::mutex mu_;
  std::map<std::string, std::pair<int64_t, DomainPolicy>> by_domain_;  // decided at, policy
};

// What a delivery attempt works with. Nothing is owned; all must outlive
// the calls. ResolveAndDeliver may run on several threads at once when
// `warn` and `attempts` may (PolicyEngine and DeliverDomain can).
struct DomainDeliveryContext {
  PolicyEngine* engine = nullptr;
  const DeliveryOptions* options = nullptr;
  AttemptLog* attempts = nullptr;  // may be null: attempts are not recorded
  Clock* clock = nullptr;
  RecentPolicies* recent = nullptr;  // may be null: every call decides the policy
  // Gets DomainPolicy::override_warning (a local rule weakened what the
  // domain demands). Must be set: such an override is never silent.
  std::function<void(const std::string&)> warn;
};

// Delivers `message` from `sender` to `recipients`, all in `domain` (as
// the addresses spell it). `dsn` (may be null): the sender's RFC 3461
// request, passed on to servers that announce DSN. `message_tls`: the
// sender's RFC 8689 request (requiretls.h, delivery.h).
std::vector<RecipientOutcome> ResolveAndDeliver(const DomainDeliveryContext& context, const std::string& domain,
                                                const Mailbox& sender, const std::vector<Mailbox>& recipients,
                                                const PreparedMessage& message, const DsnRequest* dsn = nullptr,
                                                MessageTls message_tls = MessageTls::kPolicy);

}  // namespace mxsec
