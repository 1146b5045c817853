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

std::optional<DomainPolicy> RecentPolicies::Get(const std::string& domain, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_domain_.find(domain);
  if (it == by_domain_.end()) return std::nullopt;
  // A clock set back counts as expired too: never older than max_age, whichever way.
  if (now - it->second.first >= max_age_ || now < it->second.first) {
    by_domain_.erase(it);
    return std::nullopt;
  }
  return it->second.second;
}

void RecentPolicies::Put(const std::string& domain, const DomainPolicy& policy, int64_t now) {
  if (policy.verdict == Verdict::kDefer) return;
  std::lock_guard<std::mutex> l(mu_);
  if (by_domain_.size() >= max_domains_ && !by_domain_.count(domain)) {
    std::erase_if(by_domain_, [&](const auto& e) { return now - e.second.first >= max_age_ || now < e.second.first; });
    if (by_domain_.size() >= max_domains_) return;
  }
  by_domain_.insert_or_assign(domain, std::make_pair(now, policy));
}

std::vector<RecipientOutcome> ResolveAndDeliver(const DomainDeliveryContext& context, const std::string& domain,
                                                const Mailbox& sender, const std::vector<Mailbox>& recipients,
                                                const PreparedMessage& message, const DsnRequest* dsn,
                                                MessageTls message_tls) {
  auto host = NormalizeHostName(domain);
  if (!host.ok()) return BounceInvalidDomain(recipients, host.error());
  std::optional<DomainPolicy> recent;
  if (context.recent) recent = context.recent->Get(host.value(), context.clock->Now());
  DomainPolicy policy = recent ? std::move(*recent) : context.engine->Resolve(host.value());
  if (context.recent && !recent) context.recent->Put(host.value(), policy, context.clock->Now());
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
