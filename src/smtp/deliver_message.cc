// deliver_message.cc - decide the domain's policy, report a weakening local
// rule, deliver (see deliver_message.h).
#include "mxsec/smtp/deliver_message.h"

#include "mxsec/base/domain_name.h"

namespace mxsec {

namespace {

std::vector<RecipientOutcome> BounceInvalidDomain(const std::vector<Mailbox>& recipients, const std::string& why) {
  std::vector<RecipientOutcome> out(recipients.size());
  for (size_t i = 0; i < recipients.size(); ++i) {
    out[i].recipient = recipients[i];
    out[i].status = RcptStatus::kBounced;
    out[i].code = "5.1.2";
    out[i].reply = "invalid recipient domain: " + why;
  }
  return out;
}

}  // namespace

std::vector<RecipientOutcome> ResolveAndDeliver(const DomainDeliveryContext& context, const std::string& domain,
                                                const Mailbox& sender, const std::vector<Mailbox>& recipients,
                                                const PreparedMessage& message, const DsnRequest* dsn,
                                                MessageTls message_tls) {
  auto host = NormalizeHostName(domain);
  if (!host.ok()) return BounceInvalidDomain(recipients, host.error());
  DomainPolicy policy = context.engine->Resolve(host.value());
  if (!policy.override_warning.empty()) context.warn(policy.override_warning);
  if (message_tls == MessageTls::kTlsOptional) {
    std::string demanded;
    (void)SetAsideTlsDemands(policy, &demanded);
    if (!demanded.empty())
      context.warn(policy.domain + ": policy override: TLS-Required: No (RFC 8689) from the sender sets aside " +
                   demanded + "; delivering with opportunistic TLS");
  }
  return DeliverDomain(policy, sender, recipients, message, *context.options, context.attempts, context.clock, dsn,
                       message_tls);
}

}  // namespace mxsec
