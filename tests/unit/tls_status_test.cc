// tls_status_test.cc - the Postfix 3.11 TLS feature status of each outcome
// class, and the security class of a delivered message.
#include <doctest/doctest.h>

#include "mxsec/smtp/tls_status.h"

using namespace mxsec;

namespace {

std::string StatusOf(HostTls demand, TlsProgress progress, bool tls_used) {
  TlsFacts f;
  f.demand = demand;
  f.progress = progress;
  f.tls_used = tls_used;
  return TlsFeatureStatus(f);
}

SessionResult Session(bool host_failed, bool tls_used, const std::string& failure_type = "") {
  SessionResult s;
  s.connected = true;
  s.host_failed = host_failed;
  s.tls.used = tls_used;
  s.failure_type = failure_type;
  return s;
}

}  // namespace

TEST_CASE("tls status: a policy met prints its level alone") {
  CHECK(StatusOf(HostTls::kDane, TlsProgress::kDecided, true) == "dane");
  CHECK(StatusOf(HostTls::kPkix, TlsProgress::kDecided, true) == "secure");
  CHECK(StatusOf(HostTls::kEncrypt, TlsProgress::kDecided, true) == "encrypt");
  CHECK(StatusOf(HostTls::kMay, TlsProgress::kDecided, true) == "may");
}

TEST_CASE("tls status: opportunistic TLS downgraded to plaintext is may:none") {
  CHECK(StatusOf(HostTls::kMay, TlsProgress::kDecided, false) == "may:none");
}

TEST_CASE("tls status: a violated policy is marked with !") {
  CHECK(StatusOf(HostTls::kDane, TlsProgress::kViolated, false) == "dane!");
  CHECK(StatusOf(HostTls::kPkix, TlsProgress::kViolated, true) == "secure!");
  CHECK(StatusOf(HostTls::kEncrypt, TlsProgress::kViolated, false) == "encrypt!");
  // Plaintext under a level that requires TLS can only be a violation.
  CHECK(StatusOf(HostTls::kDane, TlsProgress::kDecided, false) == "dane!");
}

TEST_CASE("tls status: an undecided policy is marked with ?") {
  CHECK(StatusOf(HostTls::kDane, TlsProgress::kUndecided, false) == "dane?");
  CHECK(StatusOf(HostTls::kMay, TlsProgress::kUndecided, false) == "may?");
  CHECK(StatusOf(HostTls::kSkip, TlsProgress::kUndecided, false) == "none?");
}

TEST_CASE("tls status: the facts of a session") {
  // Delivered with TLS, or without under `may`.
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kDane, Session(false, true))) == "dane");
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kMay, Session(false, false))) == "may:none");
  // A TLS failure under a level that requires TLS.
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kDane, Session(true, true, "tlsa-invalid"))) == "dane!");
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kPkix, Session(true, false, "starttls-not-supported"))) ==
        "secure!");
  // Failed before TLS was decided (connection refused, greeting 554).
  SessionResult refused;
  refused.host_failed = true;
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kDane, refused)) == "dane?");
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kMay, Session(true, false))) == "may?");
  // TLS was had, the server failed afterwards (a 4xx to the second EHLO).
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kEncrypt, Session(true, true))) == "encrypt");
  // `may` is never violated: a failed handshake is undecided until the plaintext retry.
  CHECK(TlsFeatureStatus(FactsOfSession(HostTls::kMay, Session(true, false, "validation-failure"))) == "may?");
}

TEST_CASE("tls status: security class of a delivery") {
  TlsInfo t;
  CHECK(std::string(TlsSecurityClass(t)) == "clear");
  t.used = true;
  t.verification = "none";
  CHECK(std::string(TlsSecurityClass(t)) == "encrypted");
  t.verification = "dane";
  CHECK(std::string(TlsSecurityClass(t)) == "encrypted");  // not verified
  t.verified = true;
  CHECK(std::string(TlsSecurityClass(t)) == "dane");
  t.verification = "pkix";
  CHECK(std::string(TlsSecurityClass(t)) == "mta-sts");
}
