// tls_resume_test.cc - TLS session resumption of RunSmtpSessionCached
// (tls_session_store.h) against an SMTP server with STARTTLS on a loopback
// socket (tls_test_server.h). What is stored, when a stored session is
// offered, and that a resumed session is authenticated again.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "tls_test_server.h"

using namespace mxsec;
using namespace mxsec_test;

TEST_CASE("tls_resume: DANE: the first session stores its TLS session, the next ones resume and verify again") {
  for (const char* priority : {"NORMAL", "NORMAL:-VERS-TLS1.3"}) {
    CAPTURE(priority);
    TestCert cert(30);
    TlsServer server(cert, 3, priority);
    SessionCache cache;
    SessionOptions o = Dane(cert, "example.org");
    o.describe_chain = true;
    SessionResult r1 = Deliver(cache, server.port, o);
    REQUIRE(Delivered(r1));
    CHECK(r1.tls.verified);
    CHECK_FALSE(r1.tls.resumed);
    CHECK(cache.tls_sessions().size() == 1);
    for (int i = 0; i < 2; ++i) {
      SessionResult r = Deliver(cache, server.port, o);
      REQUIRE(Delivered(r));
      CHECK(r.tls.resumed);
      // Verified again, on the chain of the first handshake that GnuTLS keeps in the session data.
      CHECK(r.tls.verified);
      CHECK(r.tls.verification == "dane");
      REQUIRE(r.tls.chain.size() == 1);
      CHECK(r.tls.chain[0].cert_sha256 == r1.tls.chain[0].cert_sha256);
      CHECK(r.tls.detail == r1.tls.detail);
      CHECK(cache.tls_sessions().size() == 1);  // its own session stored in turn
    }
    CHECK(server.Resumed() == std::vector<bool>{false, true, true});
  }
}

TEST_CASE("tls_resume: never across keys: another domain on the same server and certificate, another TLSA set") {
  TestCert cert(30);
  TlsServer server(cert, 4);
  SessionCache cache;
  REQUIRE(Delivered(Deliver(cache, server.port, Dane(cert, "a.example"))));
  SessionResult other = Deliver(cache, server.port, Dane(cert, "b.example"));
  REQUIRE(Delivered(other));
  CHECK_FALSE(other.tls.resumed);
  SessionOptions more_tlsa = Dane(cert, "a.example");
  TlsaRecord extra = cert.Tlsa311();
  extra.selector = 0;  // another (usage, selector) group: digest agility leaves 3 1 1 in use
  extra.data.assign(32, 0xab);
  more_tlsa.tlsa.push_back(extra);
  SessionResult changed = Deliver(cache, server.port, more_tlsa);
  REQUIRE(Delivered(changed));
  CHECK_FALSE(changed.tls.resumed);
  SessionResult again = Deliver(cache, server.port, Dane(cert, "a.example"));
  REQUIRE(Delivered(again));
  CHECK(again.tls.resumed);
  CHECK(server.Resumed() == std::vector<bool>{false, false, false, true});
}

TEST_CASE("tls_resume: an unauthenticated session (may, encrypt) is never stored, so never resumed") {
  TestCert cert(30);
  TlsServer server(cert, 4);
  SessionCache cache;
  for (HostTls t : {HostTls::kMay, HostTls::kEncrypt}) {
    for (int i = 0; i < 2; ++i) {
      SessionResult r = Deliver(cache, server.port, Options(t));
      REQUIRE(Delivered(r));
      CHECK(r.tls.used);
      CHECK_FALSE(r.tls.verified);
      CHECK_FALSE(r.tls.resumed);
      CHECK(cache.tls_sessions().size() == 0);
    }
  }
  CHECK(server.Resumed() == std::vector<bool>{false, false, false, false});
}

TEST_CASE("tls_resume: a failed verification stores nothing; a resumed session that no longer verifies fails") {
  TestCert cert(30);
  char path[] = "/tmp/mxsec-resume-ca.XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(path) << cert.pem;
  TlsServer server(cert, 4);
  SessionCache cache;
  SessionOptions o = Options(HostTls::kPkix);
  o.ca_file = path;

  // A name the certificate does not have: verification fails, nothing stored.
  SessionOptions wrong = o;
  wrong.pkix_host = "other.test";
  SessionResult bad = Deliver(cache, server.port, wrong);
  CHECK(bad.host_failed);
  CHECK(bad.failure_type == "certificate-host-mismatch");
  CHECK(cache.tls_sessions().size() == 0);

  SessionResult r1 = Deliver(cache, server.port, o);
  REQUIRE(Delivered(r1));
  CHECK(r1.tls.verified);
  CHECK(cache.tls_sessions().size() == 1);
  // The same key (address, port, policy, CA file name) later, when the certificate has expired: the
  // session resumes, the check runs again with the time of this session, and fails like after a
  // full handshake. Nothing is sent after EHLO; the stored session is gone.
  SessionResult late = Deliver(cache, server.port, o, cert.not_after + kDay);
  CHECK(late.tls.resumed);
  CHECK_FALSE(late.tls.verified);
  CHECK(late.host_failed);
  CHECK(late.failure_type == "certificate-expired");
  CHECK(late.recipients.empty());
  CHECK(cache.tls_sessions().size() == 0);
  // So the next session is a full handshake again.
  SessionResult r3 = Deliver(cache, server.port, o);
  REQUIRE(Delivered(r3));
  CHECK_FALSE(r3.tls.resumed);
  CHECK(server.Resumed() == std::vector<bool>{false, false, true, false});
  std::remove(path);
}

TEST_CASE("tls_resume: smtp_tls_session_cache = no (resume_tls false): nothing stored, nothing offered") {
  TestCert cert(30);
  TlsServer server(cert, 2);
  SessionCache cache;
  SessionOptions o = Dane(cert, "example.org");
  o.resume_tls = false;
  for (int i = 0; i < 2; ++i) {
    SessionResult r = Deliver(cache, server.port, o);
    REQUIRE(Delivered(r));
    CHECK_FALSE(r.tls.resumed);
  }
  CHECK(cache.tls_sessions().size() == 0);
  CHECK(server.Resumed() == std::vector<bool>{false, false});
}

TEST_CASE("tls_resume: a session that fails after offering the stored session forgets it") {
  TestCert cert(30);
  TlsServer server(cert, 3, "NORMAL", 1);
  SessionCache cache;
  const SessionOptions o = Dane(cert, "example.org");
  REQUIRE(Delivered(Deliver(cache, server.port, o)));
  CHECK(cache.tls_sessions().size() == 1);
  SessionResult broken = Deliver(cache, server.port, o);  // the handshake fails
  CHECK(broken.host_failed);
  CHECK(cache.tls_sessions().size() == 0);
  SessionResult r3 = Deliver(cache, server.port, o);
  REQUIRE(Delivered(r3));
  CHECK_FALSE(r3.tls.resumed);
  CHECK(server.Resumed() == std::vector<bool>{false, false, false});
}
