// delivery_test.cc - MX iteration and per-recipient outcomes of
// DeliverDomain, with a fake SMTP session.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include <unistd.h>

#include <cstdlib>
#include <map>

#include "mxsec/base/sqlite.h"
#include "mxsec/smtp/delivery.h"
#include "mxsec/smtp/probe.h"

using namespace mxsec;

namespace {

MxPolicy Host(const std::string& name, uint16_t pref, HostTls tls, std::vector<std::string> addrs) {
  MxPolicy m;
  m.host = name;
  m.preference = pref;
  m.tls = tls;
  m.addresses = std::move(addrs);
  return m;
}

Mailbox Box(const std::string& local, const std::string& domain = "example.org") {
  Mailbox m;
  m.local = local;
  m.domain = domain;
  return m;
}

struct Call {
  std::string address;
  SessionOptions options;
  size_t recipients;
};

// Scripted sessions keyed by address.
struct FakeSessions {
  std::map<std::string, std::function<SessionResult(const SessionOptions&, const Envelope*)>> by_address;
  std::vector<Call> calls;
  SessionRunner Runner() {
    return [this](const std::string& a, uint16_t, const SessionOptions& o, const Envelope* e, int64_t) {
      calls.push_back({a, o, e ? e->recipients.size() : 0});
      auto it = by_address.find(a);
      if (it == by_address.end()) {
        SessionResult r;
        r.host_failed = true;
        r.code = "4.4.1";
        r.error = "connect: Connection refused";
        return r;
      }
      return it->second(o, e);
    };
  }
};

SessionResult AllDelivered(const Envelope* e) {
  SessionResult r;
  r.connected = true;
  r.tls.used = true;
  r.tls.version = "TLS1.3";
  for (size_t i = 0; i < e->recipients.size(); ++i)
    r.recipients.push_back({RcptStatus::kDelivered, "2.0.0", "250 2.0.0 Ok", false});
  return r;
}

class MemoryLog : public AttemptLog {
 public:
  Status Record(const AttemptRecord& r) override {
    records.push_back(r);
    return Status::Ok();
  }
  Status RecordMessage(const MessageRecord& m) override {
    messages.push_back(m);
    return Status::Ok();
  }
  std::vector<AttemptRecord> records;
  std::vector<MessageRecord> messages;
};

struct Run {
  DomainPolicy policy;
  FakeSessions fake;
  MemoryLog log;
  FakeClock clock;
  PreparedMessage msg;
  std::vector<RecipientOutcome> Go(std::vector<Mailbox> rcpts) {
    DeliveryOptions o;
    o.helo_name = "client.example";
    o.session = fake.Runner();
    o.shuffle_equal_preferences = false;
    policy.domain = "example.org";
    policy.verdict = Verdict::kMustTls;
    return DeliverDomain(policy, Box("sender"), rcpts, msg, o, &log, &clock);
  }
};

}  // namespace

TEST_CASE("delivery: a failed preferred host moves on to the backup, every address tried") {
  Run r;
  r.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1", "192.0.2.2"}),
                 Host("mx2.example.org", 20, HostTls::kDane, {"192.0.2.3"})};
  r.fake.by_address["192.0.2.3"] = [](const SessionOptions&, const Envelope* e) { return AllDelivered(e); };
  auto out = r.Go({Box("a")});
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == RcptStatus::kDelivered);
  CHECK(out[0].relay_host == "mx2.example.org");
  CHECK(r.fake.calls.size() == 3);
  CHECK(r.log.records.size() == 3);
  CHECK(r.log.records[0].outcome == "host-failed");
  CHECK(r.log.records[2].outcome == "delivered");
}

TEST_CASE("delivery: TLS failure on a must-TLS host is never retried in plaintext") {
  Run r;
  r.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"})};
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope*) {
    SessionResult s;
    s.connected = true;
    s.host_failed = true;
    s.retry_plaintext = true;  // even if a session said so
    s.code = "4.7.5";
    s.error = "TLS handshake failed";
    s.failure_type = "validation-failure";
    return s;
  };
  auto out = r.Go({Box("a")});
  CHECK(out[0].status == RcptStatus::kDeferred);
  CHECK(out[0].code == "4.7.5");
  CHECK(out[0].reply.find("TLS handshake failed") != std::string::npos);
  CHECK(r.fake.calls.size() == 1);
  CHECK(r.log.records[0].failure_type == "validation-failure");
}

TEST_CASE("delivery: opportunistic host with a failed handshake gets one plaintext connection") {
  Run r;
  r.policy.verdict = Verdict::kOpportunistic;
  r.policy.mx = {Host("mx1.example.org", 10, HostTls::kMay, {"192.0.2.1"})};
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions& o, const Envelope* e) {
    if (!o.no_tls) {
      SessionResult s;
      s.connected = true;
      s.host_failed = true;
      s.retry_plaintext = true;
      s.code = "4.7.5";
      s.error = "TLS handshake failed";
      return s;
    }
    SessionResult s = AllDelivered(e);
    s.tls.used = false;
    return s;
  };
  DeliveryOptions o;
  o.session = r.fake.Runner();
  o.shuffle_equal_preferences = false;
  r.policy.domain = "example.org";
  auto out = DeliverDomain(r.policy, Box("s"), {Box("a")}, r.msg, o, &r.log, &r.clock);
  CHECK(out[0].status == RcptStatus::kDelivered);
  REQUIRE(r.fake.calls.size() == 2);
  CHECK(r.fake.calls[1].options.no_tls);
}

TEST_CASE("delivery: per-recipient outcomes; 4xx recipients try the next host, 5xx are final") {
  Run r;
  r.policy.mx = {Host("mx1.example.org", 10, HostTls::kPkix, {"192.0.2.1"}),
                 Host("mx2.example.org", 20, HostTls::kPkix, {"192.0.2.2"})};
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) {
    SessionResult s;
    s.connected = true;
    for (const Mailbox& m : e->recipients) {
      if (m.local == "ok") s.recipients.push_back({RcptStatus::kDelivered, "2.0.0", "250 ok", false});
      else if (m.local == "busy") s.recipients.push_back({RcptStatus::kDeferred, "4.2.0", "451 busy", true});
      else s.recipients.push_back({RcptStatus::kBounced, "5.1.1", "550 no such user", false});
    }
    return s;
  };
  auto out = r.Go({Box("ok"), Box("busy"), Box("nobody")});
  CHECK(out[0].status == RcptStatus::kDelivered);
  CHECK(out[1].status == RcptStatus::kDeferred);
  CHECK(out[1].code == "4.2.0");  // the server's word, not the backup's connection error
  CHECK(out[2].status == RcptStatus::kBounced);
  REQUIRE(r.fake.calls.size() == 2);
  CHECK(r.fake.calls[1].recipients == 1);  // only "busy" went on to mx2
}

TEST_CASE("delivery: defer and fail policies settle every recipient without a connection") {
  Run r;
  r.policy.domain = "example.org";
  DeliveryOptions o;
  o.session = r.fake.Runner();
  r.policy.verdict = Verdict::kFail;
  r.policy.status_code = "5.1.10";
  r.policy.reason = "null MX";
  auto out = DeliverDomain(r.policy, Box("s"), {Box("a"), Box("b")}, r.msg, o, &r.log, &r.clock);
  CHECK(out[0].status == RcptStatus::kBounced);
  CHECK(out[1].code == "5.1.10");
  r.policy.verdict = Verdict::kDefer;
  r.policy.status_code = "4.7.5";
  out = DeliverDomain(r.policy, Box("s"), {Box("a")}, r.msg, o, &r.log, &r.clock);
  CHECK(out[0].status == RcptStatus::kDeferred);
  CHECK(r.fake.calls.empty());
}

TEST_CASE("delivery: skipped hosts are never contacted; DANE session options carry TLSA, SNI and names") {
  Run r;
  MxPolicy dane = Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"});
  dane.tlsa_base = "real.example.net";
  TlsaRecord t;
  t.usage = 3;
  t.selector = 1;
  t.matching = 1;
  t.data.assign(32, 1);
  dane.tlsa = {t};
  r.policy.mx = {Host("mx0.example.org", 5, HostTls::kSkip, {"192.0.2.9"}), dane};
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) { return AllDelivered(e); };
  auto out = r.Go({Box("a")});
  CHECK(out[0].status == RcptStatus::kDelivered);
  REQUIRE(r.fake.calls.size() == 1);
  const SessionOptions& o = r.fake.calls[0].options;
  CHECK(r.fake.calls[0].address == "192.0.2.1");
  CHECK(o.tls == HostTls::kDane);
  CHECK(o.sni == "real.example.net");
  CHECK(o.tlsa.size() == 1);
  CHECK(o.dane_names == std::vector<std::string>{"real.example.net", "mx1.example.org", "example.org"});
}

TEST_CASE("delivery: a local verify rule passes its match= names and names itself in session options") {
  Run r;
  MxPolicy pkix = Host("mx1.example.org", 10, HostTls::kPkix, {"192.0.2.1"});
  pkix.pkix_names = {"mx.partner.example", "backup.partner.example"};
  r.policy.mx = {pkix};
  r.policy.mechanism = Mechanism::kLocal;
  LocalRule rule;
  rule.domain = "example.org";
  rule.policy = LocalTls::kVerify;
  rule.match = pkix.pkix_names;
  rule.source = "/etc/mxsec/local-policy:7";
  r.policy.local = rule;
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) { return AllDelivered(e); };
  auto out = r.Go({Box("a")});
  CHECK(out[0].status == RcptStatus::kDelivered);
  REQUIRE(r.fake.calls.size() == 1);
  const SessionOptions& o = r.fake.calls[0].options;
  CHECK(o.tls == HostTls::kPkix);
  CHECK(o.pkix_host == "mx1.example.org");
  CHECK(o.pkix_names == std::vector<std::string>{"mx.partner.example", "backup.partner.example"});
  CHECK(o.required_by == "local policy verify (local_policy_file /etc/mxsec/local-policy:7)");
  CHECK(o.sni == "mx1.example.org");
}

namespace {

// `hosts` MX hosts of `per_host` addresses each, 192.0.<host>.<address+1>.
std::vector<MxPolicy> ManyHosts(size_t hosts, size_t per_host) {
  std::vector<MxPolicy> out;
  for (size_t h = 0; h < hosts; ++h) {
    std::vector<std::string> addrs;
    for (size_t a = 0; a < per_host; ++a)
      addrs.push_back("192.0." + std::to_string(h) + "." + std::to_string(a + 1));
    out.push_back(Host("mx" + std::to_string(h) + ".example.org", static_cast<uint16_t>(10 * (h + 1)),
                       HostTls::kDane, addrs));
  }
  return out;
}

SessionResult RcptDeferred(const Envelope* e) {
  SessionResult s;
  s.connected = true;
  s.tls.used = true;
  for (size_t i = 0; i < e->recipients.size(); ++i)
    s.recipients.push_back({RcptStatus::kDeferred, "4.2.0", "451 4.2.0 try later", true});
  return s;
}

}  // namespace

TEST_CASE("delivery: at most smtp_mx_address_limit addresses are tried, in preference order") {
  Run r;
  r.policy.mx = ManyHosts(20, 200);  // nothing answers: every connection is refused
  auto out = r.Go({Box("a"), Box("b")});
  REQUIRE(r.fake.calls.size() == 5);
  // The first host's addresses first, in their order.
  for (size_t i = 0; i < 5; ++i) CHECK(r.fake.calls[i].address == "192.0.0." + std::to_string(i + 1));
  for (const RecipientOutcome& o : out) {
    CHECK(o.status == RcptStatus::kDeferred);
    CHECK(o.code == "4.4.1");
    CHECK_MESSAGE(o.reply.find("smtp_mx_address_limit") != std::string::npos, o.reply);
  }
  CHECK(r.log.records.size() == 5);
}

TEST_CASE("delivery: at most smtp_mx_session_limit sessions reach a transaction; failed handshakes do not count") {
  Run r;
  r.policy.mx = ManyHosts(20, 3);
  // mx0: connection refused (no fake), mx1: a handshake failure on its first
  // address, then every session reaches RCPT and is told to come back later.
  for (size_t h = 1; h < 20; ++h)
    for (size_t a = 1; a <= 3; ++a)
      r.fake.by_address["192.0." + std::to_string(h) + "." + std::to_string(a)] =
          [](const SessionOptions&, const Envelope* e) { return RcptDeferred(e); };
  r.fake.by_address["192.0.1.1"] = [](const SessionOptions&, const Envelope*) {
    SessionResult s;
    s.connected = true;
    s.host_failed = true;
    s.code = "4.7.5";
    s.error = "certificate verification failed";
    return s;
  };
  DeliveryOptions o;
  o.session = r.fake.Runner();
  o.shuffle_equal_preferences = false;
  o.mx_address_limit = 1000;
  r.policy.domain = "example.org";
  r.policy.verdict = Verdict::kMustTls;
  auto out = DeliverDomain(r.policy, Box("s"), {Box("a")}, r.msg, o, &r.log, &r.clock);
  // 3 refused + 1 failed handshake + 2 sessions.
  REQUIRE(r.fake.calls.size() == 6);
  CHECK(r.fake.calls[4].address == "192.0.1.2");
  CHECK(r.fake.calls[5].address == "192.0.1.3");
  CHECK(out[0].status == RcptStatus::kDeferred);
  CHECK(out[0].code == "4.2.0");  // the last server's word, with the limit named
  CHECK_MESSAGE(out[0].reply.find("451 4.2.0 try later") != std::string::npos, out[0].reply);
  CHECK_MESSAGE(out[0].reply.find("smtp_mx_session_limit") != std::string::npos, out[0].reply);

  // Both limits at once: the defaults stop at 5 addresses whatever answers.
  Run d;
  d.policy.mx = r.policy.mx;
  d.fake.by_address = r.fake.by_address;
  d.Go({Box("a")});
  CHECK(d.fake.calls.size() == 5);
}

TEST_CASE("delivery: a delivery within the limits names no limit") {
  Run r;
  r.policy.mx = ManyHosts(3, 1);
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) { return AllDelivered(e); };
  auto out = r.Go({Box("a")});
  CHECK(out[0].status == RcptStatus::kDelivered);
  CHECK(r.fake.calls.size() == 3);
  CHECK(out[0].reply.find("limit") == std::string::npos);
}

TEST_CASE("delivery: REQUIRETLS tries only hosts authenticated by DANE or MTA-STS enforce, and asks them for it") {
  Run run;
  run.policy.dnssec = DnssecStatus::kSecure;
  run.policy.mx = {Host("mx1.example.org", 10, HostTls::kEncrypt, {"192.0.2.1"}),
                   Host("mx2.example.org", 20, HostTls::kDane, {"192.0.2.2"})};
  run.fake.by_address["192.0.2.2"] = [](const SessionOptions& o, const Envelope* e) {
    CHECK(o.requiretls);
    return AllDelivered(e);
  };
  DeliveryOptions o;
  o.helo_name = "client.example";
  o.session = run.fake.Runner();
  o.shuffle_equal_preferences = false;
  std::vector<std::string> logged;
  o.log = [&](const std::string& l) { logged.push_back(l); };
  run.policy.domain = "example.org";
  run.policy.verdict = Verdict::kMustTls;
  auto out = DeliverDomain(run.policy, Box("sender"), {Box("a")}, run.msg, o, &run.log, &run.clock, nullptr,
                           MessageTls::kRequireTls);
  REQUIRE(run.fake.calls.size() == 1);
  CHECK(run.fake.calls[0].address == "192.0.2.2");
  CHECK(out[0].status == RcptStatus::kDelivered);
  REQUIRE_FALSE(logged.empty());
  CHECK(logged[0] == "example.org: REQUIRETLS: not trying mx1.example.org: TLS without authentication (encrypt)");
}

TEST_CASE("delivery: REQUIRETLS to a domain no host of which qualifies defers with 4.7.30, no connection") {
  Run run;
  run.policy.mx = {Host("mx1.example.org", 10, HostTls::kMay, {"192.0.2.1"})};
  run.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) { return AllDelivered(e); };
  DeliveryOptions o;
  o.session = run.fake.Runner();
  run.policy.domain = "example.org";
  run.policy.verdict = Verdict::kOpportunistic;
  auto out = DeliverDomain(run.policy, Box("sender"), {Box("a"), Box("b")}, run.msg, o, &run.log, &run.clock,
                           nullptr, MessageTls::kRequireTls);
  CHECK(run.fake.calls.empty());
  for (const RecipientOutcome& r : out) {
    CHECK(r.status == RcptStatus::kDeferred);
    CHECK(r.code == "4.7.30");
    CHECK(r.reply.find("REQUIRETLS support required: no MX host can be authenticated") == 0);
    CHECK(r.reply.find("mx1.example.org: opportunistic TLS only") != std::string::npos);
  }
}

TEST_CASE("delivery: TLS-Required: No walks a must-TLS domain's hosts as may and keeps those sessions out of reports") {
  Run run;
  run.policy.mechanism = Mechanism::kDane;
  MxPolicy skipped = Host("mx0.example.org", 5, HostTls::kSkip, {"192.0.2.9"});
  skipped.reason = "TLSA lookup bogus";
  MxPolicy dane = Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"});
  TlsaRecord t;
  t.usage = 3;
  t.selector = 1;
  t.matching = 1;
  t.data.assign(32, 1);
  dane.tlsa = {t};
  run.policy.mx = {skipped, dane};
  run.fake.by_address["192.0.2.9"] = [](const SessionOptions& o, const Envelope* e) {
    CHECK(o.tls == HostTls::kMay);
    CHECK(o.tlsa.empty());
    CHECK_FALSE(o.requiretls);
    return AllDelivered(e);
  };
  DeliveryOptions o;
  o.session = run.fake.Runner();
  o.shuffle_equal_preferences = false;
  run.policy.domain = "example.org";
  run.policy.verdict = Verdict::kMustTls;
  auto out = DeliverDomain(run.policy, Box("sender"), {Box("a")}, run.msg, o, &run.log, &run.clock, nullptr,
                           MessageTls::kTlsOptional);
  REQUIRE(run.fake.calls.size() == 1);
  CHECK(out[0].status == RcptStatus::kDelivered);
  bool session_recorded = false;
  for (const AttemptRecord& r : run.log.records) {
    if (r.address != "192.0.2.9") continue;
    session_recorded = true;
    CHECK(r.mechanism == "tls-required-no");
    CHECK(r.policy == "opportunistic");
    CHECK(r.host_tls == "may");
    CHECK(r.policy_type.empty());
  }
  CHECK(session_recorded);
}

TEST_CASE("delivery: TLS feature status and message rows per outcome") {
  SUBCASE("delivered under DANE, authenticated") {
    Run r;
    r.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"})};
    r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) {
      SessionResult s = AllDelivered(e);
      s.tls.verification = "dane";
      s.tls.verified = true;
      return s;
    };
    auto out = r.Go({Box("a"), Box("b")});
    CHECK(out[0].tls_status == "dane");
    REQUIRE(r.log.messages.size() == 1);
    CHECK(r.log.messages[0].status == "delivered");
    CHECK(r.log.messages[0].security == "dane");
    CHECK(r.log.messages[0].tls_status == "dane");
    CHECK(r.log.messages[0].recipients == 2);
    CHECK(r.log.messages[0].domain == "example.org");
  }
  SUBCASE("deferred because DANE could not be met") {
    Run r;
    r.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"})};
    r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope*) {
      SessionResult s;
      s.connected = true;
      s.host_failed = true;
      s.code = "4.7.5";
      s.error = "STARTTLS not offered";
      s.failure_type = "starttls-not-supported";
      return s;
    };
    auto out = r.Go({Box("a")});
    CHECK(out[0].tls_status == "dane!");
    CHECK(out[0].policy_failure == "starttls-not-supported");
    REQUIRE(r.log.messages.size() == 1);
    CHECK(r.log.messages[0].status == "deferred");
    CHECK(r.log.messages[0].security == "");
    CHECK(r.log.messages[0].policy_failure == "starttls-not-supported");
  }
  SUBCASE("no host reached: undecided, not a policy failure") {
    Run r;
    r.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"})};
    auto out = r.Go({Box("a")});
    CHECK(out[0].tls_status == "dane?");
    CHECK(out[0].policy_failure == "");
    REQUIRE(r.log.messages.size() == 1);
    CHECK(r.log.messages[0].policy_failure == "");
  }
  SUBCASE("a verdict of defer after a bogus TLSA lookup") {
    Run r;
    MxPolicy m = Host("mx1.example.org", 10, HostTls::kSkip, {"192.0.2.1"});
    m.tlsa_looked_up = true;
    m.tlsa_dnssec = DnssecStatus::kBogus;
    r.policy.mx = {m};
    r.policy.mechanism = Mechanism::kDane;
    DeliveryOptions o;
    o.session = r.fake.Runner();
    r.policy.domain = "example.org";
    r.policy.verdict = Verdict::kDefer;
    auto out = DeliverDomain(r.policy, Box("sender"), {Box("a")}, r.msg, o, &r.log, &r.clock);
    CHECK(out[0].status == RcptStatus::kDeferred);
    CHECK(out[0].tls_status == "dane?");
    CHECK(out[0].policy_failure == "dnssec-invalid");
    REQUIRE(r.log.messages.size() == 1);
    CHECK(r.log.messages[0].policy_failure == "dnssec-invalid");
  }
}

TEST_CASE("probe: every address of every usable host, QUIT before MAIL FROM, recorded with no report policy") {
  Run run;
  run.policy.domain = "example.org";
  run.policy.verdict = Verdict::kMustTls;
  run.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1", "192.0.2.2"}),
                   Host("mx2.example.org", 20, HostTls::kSkip, {"192.0.2.3"})};
  TlsaRecord t;
  t.usage = 3;
  t.selector = 1;
  t.matching = 1;
  t.data.assign(32, 7);
  run.policy.mx[0].tlsa = {t};
  run.fake.by_address["192.0.2.1"] = [](const SessionOptions& o, const Envelope* e) {
    CHECK(o.probe_only);
    CHECK(e == nullptr);
    SessionResult r;
    r.connected = true;
    r.tls.used = true;
    r.tls.verification = "dane";
    r.tls.verified = true;
    r.ehlo = {"PIPELINING", "REQUIRETLS"};
    return r;
  };
  DeliveryOptions o;
  o.session = run.fake.Runner();
  auto probed = ProbeMxHosts(run.policy, o, &run.log, &run.clock);
  REQUIRE(probed.size() == 2);  // mx2 is skipped by the policy: never contacted
  CHECK(probed[0].mx->host == "mx1.example.org");
  CHECK(AnnouncesRequireTls(probed[0].session));
  CHECK(probed[1].session.host_failed);
  CHECK_FALSE(AnnouncesRequireTls(probed[1].session));
  REQUIRE(run.log.records.size() == 2);
  CHECK(run.log.records[0].outcome == "probe-ok");
  CHECK(run.log.records[0].verification == "dane");
  CHECK(run.log.records[1].outcome == "host-failed");
  for (const AttemptRecord& r : run.log.records) CHECK(r.policy_type.empty());
  SessionResult plain;
  plain.ehlo = {"REQUIRETLS"};  // before STARTTLS it does not count
  CHECK_FALSE(AnnouncesRequireTls(plain));
}

TEST_CASE("delivery: a batched attempt log holds rows until 64 are waiting, Flush, or its end; then all are there") {
  char tmpl[] = "/tmp/mxsec-attempts-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  const std::string path = dir + "/delivery.sqlite";
  auto rows_in_file = [&] {
    auto a = ReadAttempts(path, 0, 1LL << 40);
    auto m = ReadMessages(path, 0, 1LL << 40);
    REQUIRE(a.ok());
    REQUIRE(m.ok());
    return std::make_pair(a->size(), m->size());
  };
  auto attempt = [](int64_t t) {
    AttemptRecord r;
    r.time = t;
    r.domain = "example.org";
    r.outcome = "delivered";
    return r;
  };
  MessageRecord msg;
  msg.time = 5;
  msg.domain = "example.org";
  msg.status = "delivered";
  {
    auto log = OpenSqliteAttemptLog(path, AttemptLogWrites::kBatched);
    REQUIRE(log.ok());
    REQUIRE((*log)->Record(attempt(1)).ok());
    REQUIRE((*log)->RecordMessage(msg).ok());
    CHECK(rows_in_file() == std::make_pair(size_t{0}, size_t{0}));  // held
    REQUIRE((*log)->Flush().ok());
    CHECK(rows_in_file() == std::make_pair(size_t{1}, size_t{1}));
    for (int i = 0; i < 64; ++i) REQUIRE((*log)->Record(attempt(10 + i)).ok());
    CHECK(rows_in_file().first == 65);  // the 64th row wrote the batch
    REQUIRE((*log)->Record(attempt(100)).ok());
    CHECK(rows_in_file().first == 65);
  }
  CHECK(rows_in_file() == std::make_pair(size_t{66}, size_t{1}));  // written when the log went
  auto all = ReadAttempts(path, 0, 1LL << 40);
  REQUIRE(all.ok());
  CHECK(all->front().time == 1);
  CHECK(all->back().time == 100);
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());
  rmdir(dir.c_str());
}

TEST_CASE("delivery: the attempt log's WAL is checkpointed every few dozen pages, however many processes append") {
  char tmpl[] = "/tmp/mxsec-attempts-wal-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string path = std::string(tmpl) + "/delivery.sqlite";
  AttemptRecord r;
  r.domain = "example.org";
  r.outcome = "delivered";
  r.detail = std::string(3000, 'x');  // a page of the WAL per commit at least
  // Every `deliver` opens the log, writes its rows and closes it without a checkpoint.
  for (int process = 0; process < 300; ++process) {
    auto log = OpenSqliteAttemptLog(path);
    REQUIRE(log.ok());
    r.time = process;
    REQUIRE((*log)->Record(r).ok());
  }
  // 300 commits of a page or more; the WAL (never truncated, its size the most it held) stayed near
  // the 64 pages of its bound, which each opening process reads through.
  struct stat wal{};
  REQUIRE(stat((path + "-wal").c_str(), &wal) == 0);
  CHECK(wal.st_size <= 80 * (4096 + 24) + 32);
  auto rows = ReadAttempts(path, 0, 1LL << 40);
  REQUIRE(rows.ok());
  CHECK(rows->size() == 300);

  // A reader in the middle of a long read (`mxsec stats`) holds no delivery up: the checkpoint
  // does not wait for it (the busy timeout is 5 s per commit), the WAL waits instead.
  Result<SqliteDb> reader = SqliteDb::Open(path, SqliteOpenOptions());
  REQUIRE(reader.ok());
  REQUIRE(reader->Exec("BEGIN; SELECT count(*) FROM attempts;").ok());
  const auto start = std::chrono::steady_clock::now();
  for (int process = 300; process < 400; ++process) {
    auto log = OpenSqliteAttemptLog(path);
    REQUIRE(log.ok());
    r.time = process;
    REQUIRE((*log)->Record(r).ok());
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(4));
  REQUIRE(reader->Exec("COMMIT").ok());
  std::filesystem::remove_all(tmpl);
}

TEST_CASE("delivery: each session's record names our end of it (RFC 8460 sending-mta-ip), kept by the SQLite log") {
  Run r;
  r.policy.mx = {Host("mx1.example.org", 10, HostTls::kDane, {"192.0.2.1"})};
  r.fake.by_address["192.0.2.1"] = [](const SessionOptions&, const Envelope* e) {
    SessionResult s = AllDelivered(e);
    s.local_address = "198.51.100.25";
    s.tls.verification = "dane";
    s.tls.verified = true;
    return s;
  };
  r.Go({Box("a")});
  REQUIRE(r.log.records.size() == 1);
  CHECK(r.log.records[0].sending_ip == "198.51.100.25");

  char tmpl[] = "/tmp/mxsec-sending-ip-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string path = std::string(tmpl) + "/delivery.sqlite";
  {
    auto log = OpenSqliteAttemptLog(path);
    REQUIRE(log.ok());
    REQUIRE((*log)->Record(r.log.records[0]).ok());
  }
  auto rows = ReadAttempts(path, 0, 1LL << 40);
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 1);
  CHECK((*rows)[0].sending_ip == "198.51.100.25");
  std::filesystem::remove_all(tmpl);
}
