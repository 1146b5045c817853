// tls_handshake_test.cc - what smtp_client.cc offers in a TLS handshake and
// what it records of it, against a GnuTLS server on a loopback socket
// (tls_test_server.h): a single key share, X25519, in the ClientHello; a
// server without X25519 still gets a session (HelloRetryRequest); the
// chain is described only when asked.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tls_test_server.h"

using namespace mxsec;
using namespace mxsec_test;

namespace {

constexpr uint16_t kX25519 = 0x001d;  // RFC 8446 §4.2.7 NamedGroup x25519

}  // namespace

TEST_CASE("tls_handshake: the ClientHello carries one key share, X25519, and the server takes it") {
  for (const char* priority : {"NORMAL", "NORMAL:-VERS-TLS1.3"}) {
    CAPTURE(priority);
    TestCert cert(30);
    TlsServer server(cert, 1, priority);
    SessionCache cache;
    SessionResult r = Deliver(cache, server.port, Dane(cert, "example.org"));
    REQUIRE(Delivered(r));
    CHECK(r.tls.verified);
    CHECK(r.tls.description.find("X25519") != std::string::npos);
    const std::vector<ServerHandshake>& seen = server.Handshakes();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].client_hellos == 1);
    CHECK(seen[0].key_shares == std::vector<uint16_t>{kX25519});
    CHECK(seen[0].group == GNUTLS_GROUP_X25519);  // under TLS 1.2 from the supported_groups order
  }
}

TEST_CASE("tls_handshake: a server without X25519 asks for another group and the session is authenticated") {
  TestCert cert(30);
  TlsServer server(cert, 1, "NORMAL:-GROUP-ALL:+GROUP-SECP256R1");
  SessionCache cache;
  SessionResult r = Deliver(cache, server.port, Dane(cert, "example.org"));
  REQUIRE(Delivered(r));
  CHECK(r.tls.verified);
  CHECK(r.tls.version == "TLS1.3");
  const std::vector<ServerHandshake>& seen = server.Handshakes();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].client_hellos == 2);  // the second after the HelloRetryRequest
  CHECK(seen[0].key_shares == std::vector<uint16_t>{kX25519});
  CHECK(seen[0].group == GNUTLS_GROUP_SECP256R1);
}

TEST_CASE("tls_handshake: TlsInfo::chain is filled only with describe_chain, and verification needs neither") {
  TestCert cert(30);
  TlsServer server(cert, 2);
  SessionCache cache;
  SessionOptions o = Dane(cert, "example.org");
  o.resume_tls = false;
  SessionResult plain = Deliver(cache, server.port, o);
  REQUIRE(Delivered(plain));
  CHECK(plain.tls.verified);
  CHECK(plain.tls.chain.empty());
  o.describe_chain = true;
  SessionResult described = Deliver(cache, server.port, o);
  REQUIRE(Delivered(described));
  CHECK(described.tls.verified);
  REQUIRE(described.tls.chain.size() == 1);
  CHECK(described.tls.chain[0].subject.find("mx.test") != std::string::npos);
  CHECK(described.tls.chain[0].spki_sha256 == DescribeChain({cert.der})[0].spki_sha256);
}
