// resolver_trust_test.cc - which resolvers' AD bit is believed, and when
// DANE is switched off (resolver_trust.h), with the exact reasons shown.
#include <doctest/doctest.h>

#include "mxsec/dns/resolver_trust.h"

using namespace mxsec;

namespace {

ResolverAddress At(const std::string& address, uint16_t port = 53) {
  ResolverAddress r;
  r.address = address;
  r.port = port;
  return r;
}

ResolverTrustSettings With(std::vector<ResolverAddress> resolvers,
                           DnssecValidation validation = DnssecValidation::kResolver) {
  ResolverTrustSettings s;
  s.resolvers = std::move(resolvers);
  s.validation = validation;
  s.config_source = "/etc/mxsec/mxsec.conf";
  return s;
}

const char* kRemoteReason =
    " is not on loopback: its AD bit could be forged on the path, so DANE is off "
    "(run a validating resolver on 127.0.0.1, or set dnssec_trust_remote_resolver = yes)";

}  // namespace

TEST_CASE("resolver trust: a resolver on IPv4 loopback is believed") {
  ResolverTrust t = DecideResolverTrust(With({At("127.0.0.1")}));
  CHECK(t.resolver_names == "127.0.0.1:53");
  CHECK(t.ad_trusted);
  CHECK(t.ad_untrusted_reason.empty());
  CHECK(t.dane);
  CHECK(t.dane_off_reason.empty());
  // All of 127.0.0.0/8 is loopback.
  CHECK(DecideResolverTrust(With({At("127.0.0.53", 5353)})).ad_trusted);
}

TEST_CASE("resolver trust: a resolver on IPv6 loopback is believed") {
  ResolverTrust t = DecideResolverTrust(With({At("::1")}));
  CHECK(t.resolver_names == "[::1]:53");
  CHECK(t.ad_trusted);
  CHECK(t.dane);
}

TEST_CASE("resolver trust: a remote resolver's AD bit is ignored, the engine's DANE switch stays on") {
  ResolverTrust t = DecideResolverTrust(With({At("192.0.2.53")}));
  CHECK_FALSE(t.ad_trusted);
  CHECK(t.ad_untrusted_reason == std::string("resolver 192.0.2.53:53") + kRemoteReason);
  CHECK(t.dane);
  CHECK(t.dane_off_reason.empty());
  ResolverTrust v6 = DecideResolverTrust(With({At("2001:db8::53")}));
  CHECK_FALSE(v6.ad_trusted);
  CHECK(v6.ad_untrusted_reason == std::string("resolver [2001:db8::53]:53") + kRemoteReason);
}

TEST_CASE("resolver trust: one remote resolver in the list makes the whole list untrusted") {
  ResolverTrust t = DecideResolverTrust(With({At("127.0.0.1"), At("::1"), At("192.0.2.53")}));
  CHECK(t.resolver_names == "127.0.0.1:53, [::1]:53, 192.0.2.53:53");
  CHECK_FALSE(t.ad_trusted);
  CHECK(t.ad_untrusted_reason == "resolver 127.0.0.1:53, [::1]:53, 192.0.2.53:53" + std::string(kRemoteReason));
  CHECK(DecideResolverTrust(With({At("127.0.0.1"), At("::1")})).ad_trusted);
}

TEST_CASE("resolver trust: dnssec_trust_remote_resolver = yes believes a remote resolver") {
  ResolverTrustSettings s = With({At("127.0.0.1"), At("192.0.2.53")});
  s.trust_remote_resolver = true;
  ResolverTrust t = DecideResolverTrust(s);
  CHECK(t.ad_trusted);
  CHECK(t.ad_untrusted_reason.empty());
  CHECK(t.dane);
}

TEST_CASE("resolver trust: dnssec_validation = off switches DANE off, on loopback or not") {
  for (bool trust_remote : {false, true}) {
    for (const char* address : {"127.0.0.1", "192.0.2.53"}) {
      ResolverTrustSettings s = With({At(address)}, DnssecValidation::kOff);
      s.trust_remote_resolver = trust_remote;
      ResolverTrust t = DecideResolverTrust(s);
      const std::string reason = "DNSSEC is switched off (dnssec_validation = off): no DANE";
      CHECK_FALSE(t.ad_trusted);
      CHECK(t.ad_untrusted_reason == reason);
      CHECK_FALSE(t.dane);
      CHECK(t.dane_off_reason == reason);
    }
  }
}

TEST_CASE("resolver trust: local validation does not care where the resolver is") {
  ResolverTrust t = DecideResolverTrust(With({At("192.0.2.53")}, DnssecValidation::kLocal));
  CHECK(t.resolver_names == "192.0.2.53:53");
  CHECK(t.ad_trusted);
  CHECK(t.ad_untrusted_reason.empty());
  CHECK(t.dane);
  CHECK(t.dane_off_reason.empty());
}

TEST_CASE("resolver trust: dane = no switches DANE off and names the file") {
  for (DnssecValidation v : {DnssecValidation::kResolver, DnssecValidation::kLocal}) {
    ResolverTrustSettings s = With({At("127.0.0.1")}, v);
    s.dane = false;
    ResolverTrust t = DecideResolverTrust(s);
    CHECK_FALSE(t.dane);
    CHECK(t.dane_off_reason == "DANE is switched off (dane = no in /etc/mxsec/mxsec.conf)");
    CHECK(t.ad_trusted);
  }
  // dnssec_validation = off says more than dane = no.
  ResolverTrustSettings off = With({At("127.0.0.1")}, DnssecValidation::kOff);
  off.dane = false;
  CHECK(DecideResolverTrust(off).dane_off_reason == "DNSSEC is switched off (dnssec_validation = off): no DANE");
}
