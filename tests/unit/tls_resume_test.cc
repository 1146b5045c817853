// tls_resume_test.cc - TLS session resumption of RunSmtpSessionCached
// (tls_session_store.h) against an SMTP server with STARTTLS on a loopback
// socket: a GnuTLS server with session tickets and a certificate made for
// the test. What is stored, when a stored session is offered, and that a
// resumed session is authenticated again.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "mxsec/smtp/session_cache.h"
#include "mxsec/smtp/smtp_client.h"
#include "mxsec/smtp/tls_verify.h"

using namespace mxsec;

namespace {

constexpr int64_t kDay = 86400;

// A self-signed ECDSA certificate for mx.test (CA:TRUE, so that it can be
// its own PKIX trust anchor), valid from a day ago for `days` days.
struct TestCert {
  gnutls_x509_privkey_t key = nullptr;
  gnutls_x509_crt_t crt = nullptr;
  std::vector<uint8_t> der;
  std::string pem;
  int64_t not_after = 0;

  explicit TestCert(int days) {
    gnutls_global_init();
    REQUIRE(gnutls_x509_privkey_init(&key) == 0);
    REQUIRE(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) ==
            0);
    REQUIRE(gnutls_x509_crt_init(&crt) == 0);
    const int64_t now = time(nullptr);
    not_after = now + days * kDay;
    unsigned char serial[] = {1, 2, 3, 4};
    gnutls_x509_crt_set_version(crt, 3);
    gnutls_x509_crt_set_serial(crt, serial, sizeof serial);
    gnutls_x509_crt_set_activation_time(crt, now - kDay);
    gnutls_x509_crt_set_expiration_time(crt, not_after);
    gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "mx.test", 7);
    gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "mx.test", 7, GNUTLS_FSAN_SET);
    gnutls_x509_crt_set_basic_constraints(crt, 1, -1);
    gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_CERT_SIGN);
    REQUIRE(gnutls_x509_crt_set_key(crt, key) == 0);
    REQUIRE(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) == 0);
    gnutls_datum_t d{nullptr, 0};
    REQUIRE(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &d) == 0);
    der.assign(d.data, d.data + d.size);
    gnutls_free(d.data);
    REQUIRE(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d) == 0);
    pem.assign(reinterpret_cast<char*>(d.data), d.size);
    gnutls_free(d.data);
  }
  ~TestCert() {
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
  }
  // DANE-EE 3 1 1 for this certificate's key.
  TlsaRecord Tlsa311() const {
    TlsaRecord t;
    t.usage = 3;
    t.selector = 1;
    t.matching = 1;
    const std::string hex = DescribeChain({der})[0].spki_sha256;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) t.data.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return t;
  }
};

// An SMTP server with STARTTLS (GnuTLS, session tickets on) that takes
// `connections` connections one after the other, each a full session with
// one transaction, and records for each whether its handshake resumed.
class TlsServer {
 public:
  // `broken`: the connection (from 0) that closes at once after the 220 to STARTTLS.
  TlsServer(const TestCert& cert, int connections, const char* priority = "NORMAL", int broken = -1)
      : priority_(priority), connections_(connections), broken_(broken) {
    REQUIRE(gnutls_certificate_allocate_credentials(&cred_) == 0);
    REQUIRE(gnutls_certificate_set_x509_key(cred_, const_cast<gnutls_x509_crt_t*>(&cert.crt), 1, cert.key) == 0);
    REQUIRE(gnutls_session_ticket_key_generate(&ticket_key_) == 0);
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listener_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    socklen_t len = sizeof sa;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
    REQUIRE(listen(listener_, 4) == 0);
    thread_ = std::thread([this] {
      for (int i = 0; i < connections_; ++i) ServeOne(i == broken_);
    });
  }
  ~TlsServer() {
    Join();
    close(listener_);
    gnutls_free(ticket_key_.data);
    gnutls_certificate_free_credentials(cred_);
  }
  // Per connection: true if the server saw a resumed handshake.
  const std::vector<bool>& Resumed() {
    Join();
    return resumed_;
  }

  uint16_t port = 0;

 private:
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // One line (without CRLF) from the socket or the TLS session; "" at the end.
  std::string ReadLine(int fd, gnutls_session_t tls) {
    std::string line;
    char c;
    for (;;) {
      ssize_t n = tls ? gnutls_record_recv(tls, &c, 1) : recv(fd, &c, 1, 0);
      if (n <= 0) return line;
      if (c == '\n') break;
      if (c != '\r') line += c;
    }
    return line.empty() ? " " : line;
  }
  void Send(int fd, gnutls_session_t tls, const std::string& s) {
    if (tls) (void)gnutls_record_send(tls, s.data(), s.size());
    else (void)send(fd, s.data(), s.size(), MSG_NOSIGNAL);
  }

  void ServeOne(bool broken) {
    int fd = accept(listener_, nullptr, nullptr);
    if (fd < 0) return;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    gnutls_session_t tls = nullptr;
    bool resumed = false;
    Send(fd, tls, "220 mx.test ESMTP\r\n");
    for (;;) {
      std::string line = ReadLine(fd, tls);
      if (line.empty()) break;
      if (line.rfind("EHLO", 0) == 0) {
        Send(fd, tls, tls ? "250 mx.test\r\n" : "250-mx.test\r\n250 STARTTLS\r\n");
      } else if (line == "STARTTLS" && !tls) {
        Send(fd, tls, "220 2.0.0 go ahead\r\n");
        if (broken) break;
        gnutls_init(&tls, GNUTLS_SERVER | GNUTLS_NO_SIGNAL);
        gnutls_priority_set_direct(tls, priority_, nullptr);
        gnutls_credentials_set(tls, GNUTLS_CRD_CERTIFICATE, cred_);
        gnutls_session_ticket_enable_server(tls, &ticket_key_);
        gnutls_transport_set_int(tls, fd);
        int r;
        do r = gnutls_handshake(tls); while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0) break;
        resumed = gnutls_session_is_resumed(tls) != 0;
      } else if (line == "DATA") {
        Send(fd, tls, "354 go\r\n");
        for (std::string l = ReadLine(fd, tls); !l.empty() && l != "."; l = ReadLine(fd, tls)) {
        }
        Send(fd, tls, "250 2.0.0 queued\r\n");
      } else if (line == "QUIT") {
        Send(fd, tls, "221 bye\r\n");
        break;
      } else {
        Send(fd, tls, "250 ok\r\n");
      }
    }
    if (tls) {
      gnutls_bye(tls, GNUTLS_SHUT_WR);
      gnutls_deinit(tls);
    }
    close(fd);
    resumed_.push_back(resumed);
  }

  const char* priority_;
  const int connections_;
  const int broken_;
  gnutls_certificate_credentials_t cred_ = nullptr;
  gnutls_datum_t ticket_key_{nullptr, 0};
  int listener_ = -1;
  std::thread thread_;
  std::vector<bool> resumed_;
};

struct Mail {
  PreparedMessage message;
  Envelope envelope;
  Mail() {
    message = *PrepareMessage("Subject: t\r\n\r\nhello\r\n", MessageOptions());
    envelope.sender.local = "sender";
    envelope.sender.domain = "example.org";
    Mailbox r;
    r.local = "rcpt";
    r.domain = "example.org";
    envelope.recipients.push_back(r);
    envelope.message = &message;
  }
};

SessionOptions Options(HostTls tls) {
  SessionOptions o;
  o.helo_name = "client.example";
  o.tls = tls;
  o.sni = "mx.test";
  o.pkix_host = "mx.test";
  o.reuse_connection = false;  // a connection (and a handshake) per message
  o.timeouts.connect = o.timeouts.greeting = o.timeouts.helo = o.timeouts.starttls = 5000;
  o.timeouts.mail = o.timeouts.rcpt = o.timeouts.data_init = o.timeouts.data_xfer = o.timeouts.data_done = 5000;
  o.timeouts.quit = 5000;
  return o;
}

SessionOptions Dane(const TestCert& cert, const std::string& domain) {
  SessionOptions o = Options(HostTls::kDane);
  o.tlsa = {cert.Tlsa311()};
  o.dane_names = {"mx.test", domain};
  return o;
}

SessionResult Deliver(SessionCache& cache, uint16_t port, const SessionOptions& o, int64_t now = 0) {
  Mail m;
  SessionResult r = RunSmtpSessionCached(&cache, "127.0.0.1", port, o, &m.envelope, now ? now : time(nullptr));
  return r;
}

bool Delivered(const SessionResult& r) {
  return !r.host_failed && r.recipients.size() == 1 && r.recipients[0].status == RcptStatus::kDelivered;
}

}  // namespace

TEST_CASE("tls_resume: DANE: the first session stores its TLS session, the next ones resume and verify again") {
  for (const char* priority : {"NORMAL", "NORMAL:-VERS-TLS1.3"}) {
    CAPTURE(priority);
    TestCert cert(30);
    TlsServer server(cert, 3, priority);
    SessionCache cache;
    const SessionOptions o = Dane(cert, "example.org");
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
