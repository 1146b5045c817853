// requiretls_test.cc - which MX hosts may take a REQUIRETLS message, and
// what `TLS-Required: No` makes of a policy (policy/requiretls.h).
#include <doctest/doctest.h>

#include "mxsec/policy/requiretls.h"

using namespace mxsec;

namespace {

MxPolicy Host(const std::string& name, HostTls tls) {
  MxPolicy m;
  m.host = name;
  m.tls = tls;
  m.addresses = {"192.0.2.1"};
  m.reason = "why";
  return m;
}

DomainPolicy Domain(Verdict verdict, DnssecStatus mx_dnssec, std::vector<MxPolicy> mx) {
  DomainPolicy p;
  p.domain = "example.org";
  p.verdict = verdict;
  p.dnssec = mx_dnssec;
  p.mx = std::move(mx);
  return p;
}

void Sts(DomainPolicy* p, StsMode mode, std::vector<std::string> mx) {
  StsState s;
  s.mode = mode;
  s.mx = std::move(mx);
  p->mta_sts = s;
}

}  // namespace

TEST_CASE("requiretls: DANE hosts of a secure MX answer qualify; encrypt, may and skip never do") {
  DomainPolicy p = Domain(Verdict::kMustTls, DnssecStatus::kSecure,
                          {Host("a.example.org", HostTls::kDane), Host("b.example.org", HostTls::kEncrypt),
                           Host("c.example.org", HostTls::kMay), Host("d.example.org", HostTls::kSkip)});
  CHECK(RequireTlsHost(p, p.mx[0]).eligible);
  CHECK(RequireTlsHost(p, p.mx[0]).reason == "DANE");
  CHECK(RequireTlsHost(p, p.mx[1]).reason == "b.example.org: TLS without authentication (encrypt)");
  CHECK_FALSE(RequireTlsHost(p, p.mx[2]).eligible);
  CHECK(RequireTlsHost(p, p.mx[3]).reason == "d.example.org: not used (why)");
  CHECK(RequireTlsDomain(p).eligible);
  CHECK(RequireTlsDomain(p).reason == "a.example.org: DANE");
  p.dnssec = DnssecStatus::kInsecure;  // cannot happen with kDane, and still refused
  CHECK_FALSE(RequireTlsHost(p, p.mx[0]).eligible);
}

TEST_CASE("requiretls: PKIX hosts qualify when an MTA-STS policy in enforce mode lists them, or the MX is secure") {
  DomainPolicy p = Domain(Verdict::kMustTls, DnssecStatus::kInsecure,
                          {Host("mx.example.org", HostTls::kPkix), Host("other.example.org", HostTls::kPkix)});
  Sts(&p, StsMode::kEnforce, {"mx.example.org"});
  CHECK(RequireTlsHost(p, p.mx[0]).reason == "MTA-STS enforce");
  CHECK_FALSE(RequireTlsHost(p, p.mx[1]).eligible);
  Sts(&p, StsMode::kTesting, {"mx.example.org"});
  CHECK_FALSE(RequireTlsHost(p, p.mx[0]).eligible);
  // A local verify rule: PKIX for the host name in a signed zone qualifies,
  // PKIX for other names (match=) does not.
  p.mta_sts.reset();
  p.dnssec = DnssecStatus::kSecure;
  CHECK(RequireTlsHost(p, p.mx[0]).reason == "PKIX, DNSSEC-secure MX");
  p.mx[0].pkix_names = {"relay.example.net"};
  CHECK_FALSE(RequireTlsHost(p, p.mx[0]).eligible);
}

TEST_CASE("requiretls: a domain that defers, fails or has only opportunistic hosts cannot take it, with the reasons") {
  DomainPolicy defer = Domain(Verdict::kDefer, DnssecStatus::kBogus, {});
  defer.reason = "MX lookup bogus";
  CHECK(RequireTlsDomain(defer).reason == "defer: MX lookup bogus");
  DomainPolicy may = Domain(Verdict::kOpportunistic, DnssecStatus::kInsecure,
                            {Host("a.example.org", HostTls::kMay), Host("b.example.org", HostTls::kEncrypt)});
  RequireTlsCheck c = RequireTlsDomain(may);
  CHECK_FALSE(c.eligible);
  CHECK(c.reason ==
        "no MX host can be authenticated as REQUIRETLS asks (RFC 8689 section 4.2.1): a.example.org: opportunistic TLS "
        "only (no DANE, no MTA-STS enforce); b.example.org: TLS without authentication (encrypt)");
}

TEST_CASE("requiretls: TLS-Required: No makes every host with an address may, and says what it set aside") {
  MxPolicy noaddr = Host("gone.example.org", HostTls::kSkip);
  noaddr.addresses.clear();
  DomainPolicy p = Domain(Verdict::kMustTls, DnssecStatus::kSecure,
                          {Host("a.example.org", HostTls::kDane), Host("b.example.org", HostTls::kSkip), noaddr});
  p.mx[0].tlsa.resize(1);
  std::string demanded;
  DomainPolicy q = SetAsideTlsDemands(p, &demanded);
  CHECK(demanded == "a.example.org dane, b.example.org skip");
  CHECK(q.verdict == Verdict::kOpportunistic);
  CHECK(q.reason.find("TLS-Required: No (RFC 8689): example.org's TLS demands set aside") == 0);
  CHECK(q.mx[0].tls == HostTls::kMay);
  CHECK(q.mx[0].tlsa.empty());
  CHECK(q.mx[1].tls == HostTls::kMay);
  CHECK(q.mx[2].tls == HostTls::kSkip);  // no address: still nothing to try

  // Nothing demanded: nothing set aside, nothing to log.
  DomainPolicy may = Domain(Verdict::kOpportunistic, DnssecStatus::kInsecure, {Host("a.example.org", HostTls::kMay)});
  SetAsideTlsDemands(may, &demanded);
  CHECK(demanded.empty());
  // A DNS failure of the MX lookup is not a TLS demand: still defer.
  DomainPolicy bogus = Domain(Verdict::kDefer, DnssecStatus::kBogus, {});
  bogus.status_code = "4.4.3";
  CHECK(SetAsideTlsDemands(bogus).verdict == Verdict::kDefer);
  CHECK(SetAsideTlsDemands(bogus).status_code == "4.4.3");
}

TEST_CASE("requiretls: the names of the requests, as the queue envelope keeps them") {
  for (MessageTls t : {MessageTls::kPolicy, MessageTls::kRequireTls, MessageTls::kTlsOptional})
    CHECK(ParseMessageTls(MessageTlsName(t)) == t);
  CHECK_FALSE(ParseMessageTls("yes"));
}

TEST_CASE("requiretls: TLS-Required: No is read from the header section only, unfolded, in any case") {
  CHECK(HasTlsRequiredNo("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
  CHECK(HasTlsRequiredNo("tls-required:no\n\n"));
  CHECK(HasTlsRequiredNo("Subject: x\nTLS-Required:\n   NO  \nTo: y\n\nbody"));
  CHECK(HasTlsRequiredNo("TLS-Required: No"));  // headers only, no final newline
  CHECK_FALSE(HasTlsRequiredNo("TLS-Required: Yes\n\n"));
  CHECK_FALSE(HasTlsRequiredNo("TLS-Required: No thanks\n\n"));
  CHECK_FALSE(HasTlsRequiredNo("Subject: x\n\nTLS-Required: No\n"));     // in the body
  CHECK_FALSE(HasTlsRequiredNo("Subject: x\nnot a header\nTLS-Required: No\n\n"));  // the body started
  CHECK_FALSE(HasTlsRequiredNo("X-TLS-Required: No\n\n"));
  CHECK_FALSE(HasTlsRequiredNo(""));
}
