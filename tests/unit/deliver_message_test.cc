// deliver_message_test.cc - ResolveAndDeliver: the policy engine decides
// (fake resolver, fake MTA-STS server), a weakening local rule is reported
// before any session, DeliverDomain enforces (fake SMTP sessions).
#include <doctest/doctest.h>

#include "fakes.h"
#include "mxsec/base/clock.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/smtp/deliver_message.h"

using namespace mxsec;
using namespace mxsec::testing;

namespace {

constexpr auto S = DnssecStatus::kSecure;

struct Session {
  std::string address;
  HostTls tls;
  size_t recipients;
  std::string dsn_notify;
  size_t warnings_before;  // how many warnings had been given when it started
};

struct Bed {
  FakeResolver dns;
  FakeStsServer web;
  FakeClock clock{1700000000};
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  PolicyOptions policy_options;
  std::vector<Session> sessions;
  std::vector<std::string> warnings;
  PreparedMessage message;
  RecentPolicies* recent = nullptr;

  // example.org: one MX host with a DANE-EE TLSA record, all secure.
  void DaneDomain() {
    dns.Records("example.org", RrType::kMX, S, {MxRec("example.org", 10, "mx1.example.org")});
    dns.Host("mx1.example.org", "192.0.2.1", S);
    dns.Records("_25._tcp.mx1.example.org", RrType::kTLSA, S, {TlsaRec("_25._tcp.mx1.example.org", 3, 1, 1)});
  }
  void LocalPolicy(const std::string& table) {
    auto t = LocalPolicy::Parse(table, "/etc/mxsec/local-policy");
    REQUIRE(t.ok());
    policy_options.local_policy = std::make_shared<const mxsec::LocalPolicy>(std::move(t.value()));
  }
  // Delivers to `locals` @ `domain`.
  std::vector<RecipientOutcome> Deliver(const std::string& domain, const std::vector<std::string>& locals,
                                        const DsnRequest* dsn = nullptr) {
    std::vector<Mailbox> rcpts;
    for (const std::string& l : locals) rcpts.push_back(Mailbox{.local = l, .domain = domain});
    PolicyEngine engine(&dns, [this] { return std::make_unique<FakeStsFetcher>(&web); }, cache.get(), &clock,
                        policy_options);
    DeliveryOptions options;
    options.helo_name = "client.example";
    options.shuffle_equal_preferences = false;
    options.session = [this](const std::string& a, uint16_t, const SessionOptions& o, const Envelope* e, int64_t) {
      sessions.push_back({a, o.tls, e ? e->recipients.size() : 0, e ? e->dsn.notify : "", warnings.size()});
      SessionResult r;
      r.connected = true;
      r.tls.used = true;
      for (size_t i = 0; e && i < e->recipients.size(); ++i)
        r.recipients.push_back({RcptStatus::kDelivered, "2.0.0", "250 2.0.0 Ok", false});
      return r;
    };
    DomainDeliveryContext context;
    context.engine = &engine;
    context.options = &options;
    context.clock = &clock;
    context.recent = recent;
    context.warn = [this](const std::string& w) { warnings.push_back(w); };
    const Mailbox sender{.local = "sender", .domain = "sender.example"};
    return ResolveAndDeliver(context, domain, sender, rcpts, message, dsn);
  }
};

}  // namespace

TEST_CASE("deliver message: the domain's policy is enforced and every recipient gets its outcome") {
  Bed b;
  b.DaneDomain();
  std::vector<RecipientOutcome> out = b.Deliver("example.org", {"a", "b"});
  REQUIRE(out.size() == 2);
  CHECK(out[0].status == RcptStatus::kDelivered);
  CHECK(out[1].status == RcptStatus::kDelivered);
  CHECK(out[1].recipient.local == "b");
  REQUIRE(b.sessions.size() == 1);
  CHECK(b.sessions[0].address == "192.0.2.1");
  CHECK(b.sessions[0].tls == HostTls::kDane);
  CHECK(b.sessions[0].recipients == 2);
  CHECK(b.warnings.empty());
}

TEST_CASE("deliver message: the domain is taken as the address spells it, in normal form for the lookup") {
  Bed b;
  b.DaneDomain();
  std::vector<RecipientOutcome> out = b.Deliver("Example.ORG.", {"a"});
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == RcptStatus::kDelivered);
  CHECK(b.dns.Asked("example.org", RrType::kMX));
}

TEST_CASE("deliver message: an invalid domain bounces every recipient with 5.1.2, nothing asked or sent") {
  Bed b;
  std::vector<RecipientOutcome> out = b.Deliver("bad..example", {"a", "b"});
  REQUIRE(out.size() == 2);
  for (const RecipientOutcome& o : out) {
    CHECK(o.status == RcptStatus::kBounced);
    CHECK(o.code == "5.1.2");
    CHECK(o.reply.rfind("invalid recipient domain: ", 0) == 0);
    CHECK(o.reply.size() > std::string("invalid recipient domain: ").size());
  }
  CHECK(out[1].recipient.local == "b");
  CHECK(b.dns.batches == 0);
  CHECK(b.sessions.empty());
  CHECK(b.warnings.empty());
}

TEST_CASE("deliver message: a local rule that weakens DANE is reported before the first session") {
  Bed b;
  b.DaneDomain();
  b.LocalPolicy("example.org may\n");
  std::vector<RecipientOutcome> out = b.Deliver("example.org", {"a"});
  REQUIRE(b.warnings.size() == 1);
  CHECK(b.warnings[0].find("example.org: local policy may") != std::string::npos);
  CHECK(b.warnings[0].find("overrides DANE must-tls") != std::string::npos);
  REQUIRE(b.sessions.size() == 1);
  CHECK(b.sessions[0].warnings_before == 1);
  CHECK(b.sessions[0].tls == HostTls::kMay);
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == RcptStatus::kDelivered);
}

TEST_CASE("deliver message: a local rule that weakens nothing gives no warning") {
  Bed b;
  b.DaneDomain();
  b.LocalPolicy("example.org dane-only\n");
  b.Deliver("example.org", {"a"});
  CHECK(b.warnings.empty());
  REQUIRE(b.sessions.size() == 1);
  CHECK(b.sessions[0].tls == HostTls::kDane);
}

TEST_CASE("deliver message: the sender's DSN request reaches the session") {
  Bed b;
  b.DaneDomain();
  DsnRequest dsn;
  dsn.notify = "SUCCESS,FAILURE";
  b.Deliver("example.org", {"a"}, &dsn);
  REQUIRE(b.sessions.size() == 1);
  CHECK(b.sessions[0].dsn_notify == "SUCCESS,FAILURE");
}

TEST_CASE("deliver message: RecentPolicies: a decided policy serves the next messages for max_age, a deferral none") {
  Bed b;
  b.DaneDomain();
  b.LocalPolicy("example.org may\n");   // an override: still reported for every message
  RecentPolicies recent(30, 1000);
  b.recent = &recent;
  b.Deliver("example.org", {"a"});
  const int first = b.dns.batches;
  CHECK(first > 0);
  b.clock.Advance(29);
  std::vector<RecipientOutcome> out = b.Deliver("example.org", {"b"});
  CHECK(b.dns.batches == first);   // no lookup
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == RcptStatus::kDelivered);
  REQUIRE(b.sessions.size() == 2);
  CHECK(b.sessions[1].tls == HostTls::kMay);
  CHECK(b.warnings.size() == 2);   // the override, once per message
  b.clock.Advance(1);              // 30 s old: decided again
  b.Deliver("example.org", {"c"});
  CHECK(b.dns.batches > first);

  // A temporary failure (MX lookup SERVFAIL): asked again for the next message.
  b.dns.Fail("broken.example", RrType::kMX, S);
  b.Deliver("broken.example", {"a"});
  const int after_first = b.dns.batches;
  b.Deliver("broken.example", {"a"});
  CHECK(b.dns.batches > after_first);
}

TEST_CASE("deliver message: RecentPolicies is bounded: beyond max_domains, expired entries go, then none is kept") {
  RecentPolicies recent(30, 2);
  DomainPolicy p;
  p.verdict = Verdict::kMustTls;
  recent.Put("a.example", p, 100);
  recent.Put("b.example", p, 110);
  recent.Put("c.example", p, 115);   // full, none expired: not kept
  CHECK(recent.Get("a.example", 115).has_value());
  CHECK_FALSE(recent.Get("c.example", 115).has_value());
  recent.Put("c.example", p, 131);   // a.example expired (31 s): dropped, c.example kept
  CHECK(recent.Get("c.example", 131).has_value());
  CHECK(recent.Get("b.example", 131).has_value());
  CHECK_FALSE(recent.Get("a.example", 131).has_value());
  CHECK_FALSE(recent.Get("b.example", 105).has_value());   // a clock set back: not trusted
  DomainPolicy d;
  d.verdict = Verdict::kDefer;
  RecentPolicies fresh(30, 10);
  fresh.Put("d.example", d, 100);
  CHECK_FALSE(fresh.Get("d.example", 100).has_value());
}
