// tls_test_server.h - an SMTP server with STARTTLS on a loopback socket for
// unit tests of the TLS side of smtp_client.h: GnuTLS with session tickets
// and a certificate made for the test, one connection after another, and
// what it saw of each handshake (resumed or not, the ClientHello's key
// shares, the group agreed on). Used by tls_resume_test.cc and
// tls_handshake_test.cc.
#pragma once

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mxsec/smtp/session_cache.h"
#include "mxsec/smtp/smtp_client.h"
#include "mxsec/smtp/tls_verify.h"
#include "loopback.h"

namespace mxsec_test {

using namespace mxsec;

inline constexpr int64_t kDay = 86400;

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

// What the server saw of one connection's handshake.
struct ServerHandshake {
  bool resumed = false;
  int client_hellos = 0;               // 2 after a HelloRetryRequest
  std::vector<uint16_t> key_shares;    // groups of the first ClientHello's key_share (RFC 8446 §4.2.8)
  gnutls_group_t group = GNUTLS_GROUP_INVALID;  // the key exchange agreed on
};

// An SMTP server with STARTTLS (GnuTLS, session tickets on) that takes
// `connections` connections one after the other, each a full session with
// one transaction, and records for each what its handshake was.
class TlsServer {
 public:
  // `broken`: the connection (from 0) that closes at once after the 220 to STARTTLS.
  TlsServer(const TestCert& cert, int connections, const char* priority = "NORMAL", int broken = -1)
      : priority_(priority), connections_(connections), broken_(broken) {
    REQUIRE(gnutls_certificate_allocate_credentials(&cred_) == 0);
    REQUIRE(gnutls_certificate_set_x509_key(cred_, const_cast<gnutls_x509_crt_t*>(&cert.crt), 1, cert.key) == 0);
    REQUIRE(gnutls_session_ticket_key_generate(&ticket_key_) == 0);
    listener_ = BindLoopback(SOCK_STREAM, &port);
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
  std::vector<bool> Resumed() {
    std::vector<bool> out;
    for (const ServerHandshake& h : Handshakes()) out.push_back(h.resumed);
    return out;
  }
  const std::vector<ServerHandshake>& Handshakes() {
    Join();
    return handshakes_;
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

  // Counts ClientHellos and notes the key shares of the first.
  static int OnClientHello(gnutls_session_t tls, unsigned, unsigned, unsigned incoming, const gnutls_datum_t* msg) {
    auto* seen = static_cast<ServerHandshake*>(gnutls_session_get_ptr(tls));
    if (!incoming || ++seen->client_hellos > 1) return 0;
    auto on_extension = [](void* ctx, unsigned id, const unsigned char* data, unsigned size) -> int {
      if (id != 51 || size < 2) return 0;  // key_share: a 2-byte length, then (group, length, key) entries
      auto* shares = static_cast<std::vector<uint16_t>*>(ctx);
      for (unsigned at = 2; at + 4 <= size;) {
        shares->push_back(static_cast<uint16_t>(data[at] << 8 | data[at + 1]));
        at += 4 + (data[at + 2] << 8 | data[at + 3]);
      }
      return 0;
    };
    (void)gnutls_ext_raw_parse(&seen->key_shares, on_extension, msg, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
    return 0;
  }

  void ServeOne(bool broken) {
    int fd = accept(listener_, nullptr, nullptr);
    if (fd < 0) return;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    gnutls_session_t tls = nullptr;
    ServerHandshake seen;
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
        gnutls_session_set_ptr(tls, &seen);
        gnutls_handshake_set_hook_function(tls, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_PRE, OnClientHello);
        gnutls_transport_set_int(tls, fd);
        int r;
        do r = gnutls_handshake(tls); while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0) break;
        seen.resumed = gnutls_session_is_resumed(tls) != 0;
        seen.group = gnutls_group_get(tls);
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
    handshakes_.push_back(std::move(seen));
  }

  const char* priority_;
  const int connections_;
  const int broken_;
  gnutls_certificate_credentials_t cred_ = nullptr;
  gnutls_datum_t ticket_key_{nullptr, 0};
  int listener_ = -1;
  std::thread thread_;
  std::vector<ServerHandshake> handshakes_;
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

inline SessionOptions Options(HostTls tls) {
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

inline SessionOptions Dane(const TestCert& cert, const std::string& domain) {
  SessionOptions o = Options(HostTls::kDane);
  o.tlsa = {cert.Tlsa311()};
  o.dane_names = {"mx.test", domain};
  return o;
}

inline SessionResult Deliver(SessionCache& cache, uint16_t port, const SessionOptions& o, int64_t now = 0) {
  Mail m;
  SessionResult r = RunSmtpSessionCached(&cache, "127.0.0.1", port, o, &m.envelope, now ? now : time(nullptr));
  return r;
}

inline bool Delivered(const SessionResult& r) {
  return !r.host_failed && r.recipients.size() == 1 && r.recipients[0].status == RcptStatus::kDelivered;
}

}  // namespace mxsec_test
