// smtp_client_test.cc - the phases of RunSmtpSession against a scripted
// server on a loopback socket: what is sent in which order, and what the
// session reports when a phase fails. Only plaintext servers: a TLS
// handshake that completes is the integration tests' business.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string_view>
#include <thread>

#include "loopback.h"
#include "mxsec/smtp/session_cache.h"
#include "mxsec/smtp/smtp_client.h"

using namespace mxsec;

namespace {

// At the end of a reply (or as the whole reply): close the connection
// after sending what comes before.
constexpr std::string_view kClose = "<close>";

// Accepts one connection, sends `greeting`, then answers each command line
// with the next of `replies`; the message after a 354 counts as one line.
// Records what it received in `received` ("<message>" for the data). With
// a script per connection, accepts that many in turn and records
// "<connection>" where each after the first begins.
struct PerConnection {
  std::vector<std::vector<std::string>> scripts;
};
class ScriptedServer {
 public:
  ScriptedServer(std::string greeting, std::vector<std::string> replies)
      : ScriptedServer(std::move(greeting), PerConnection{{std::move(replies)}}) {}
  ScriptedServer(std::string greeting, PerConnection connections)
      : greeting_(std::move(greeting)), scripts_(std::move(connections.scripts)) {
    listener_ = mxsec_test::BindLoopback(SOCK_STREAM, &port);
    REQUIRE(listen(listener_, 1) == 0);
    timeval tv{5, 0};  // accept gives up too: a client that never connects fails the test, not hangs it
    setsockopt(listener_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedServer() {
    if (thread_.joinable()) thread_.join();
    close(listener_);
  }
  // What the client sent, once it closed the connection.
  const std::vector<std::string>& Received() {
    if (thread_.joinable()) thread_.join();
    return received_;
  }

  uint16_t port = 0;

 private:
  void Serve() {
    for (size_t c = 0; c < scripts_.size(); ++c) {
      if (c > 0) received_.push_back("<connection>");
      buf_.clear();
      if (!ServeOne(scripts_[c])) return;
    }
  }
  bool ServeOne(const std::vector<std::string>& replies_) {
    int fd = accept(listener_, nullptr, nullptr);
    if (fd < 0) return false;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    Send(fd, greeting_);
    bool data = false;
    for (size_t i = 0;; ++i) {
      std::string line = data ? ReadUntil(fd, "\r\n.\r\n") : ReadUntil(fd, "\r\n");
      if (line.empty()) break;
      received_.push_back(data ? "<message>" : line.substr(0, line.size() - 2));
      if (i >= replies_.size()) continue;
      const std::string& reply = replies_[i];
      const bool close_after = reply.ends_with(kClose);
      Send(fd, close_after ? reply.substr(0, reply.size() - kClose.size()) : reply);
      if (close_after) break;
      data = reply.rfind("354", 0) == 0;
    }
    close(fd);
    return true;
  }
  void Send(int fd, const std::string& s) { (void)!send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
  std::string ReadUntil(int fd, const std::string& end) {
    while (buf_.find(end) == std::string::npos) {
      char b[4096];
      ssize_t n = recv(fd, b, sizeof b, 0);
      if (n <= 0) return "";
      buf_.append(b, static_cast<size_t>(n));
    }
    size_t at = buf_.find(end) + end.size();
    std::string out = buf_.substr(0, at);
    buf_.erase(0, at);
    return out;
  }

  int listener_ = -1;
  std::string greeting_;
  std::vector<std::vector<std::string>> scripts_;
  std::vector<std::string> received_;
  std::string buf_;
  std::thread thread_;
};

SessionOptions Options(HostTls tls) {
  SessionOptions o;
  o.helo_name = "client.example";
  o.tls = tls;
  o.sni = o.pkix_host = "mx.example.org";
  SmtpTimeouts& t = o.timeouts;
  t.connect = t.greeting = t.helo = t.starttls = t.mail = t.rcpt = t.data_init = t.data_xfer = t.data_done =
      t.quit = 3000;
  t.min_data_rate = 0;
  return o;
}

Mailbox Box(const std::string& local) {
  Mailbox m;
  m.local = local;
  m.domain = "example.org";
  return m;
}

struct Mail {
  PreparedMessage message;
  Envelope envelope;
  explicit Mail(std::vector<std::string> rcpts) {
    message = *PrepareMessage("Subject: t\r\n\r\nhello\r\n", MessageOptions());
    envelope.sender = Box("sender");
    for (const std::string& r : rcpts) envelope.recipients.push_back(Box(r));
    envelope.message = &message;
  }
};

SessionResult Run(ScriptedServer& server, const SessionOptions& o, const Envelope* env) {
  return RunSmtpSession("127.0.0.1", server.port, o, env, 0);
}

const char* kGreeting = "220 mx.example.org ESMTP\r\n";
const char* kEhloPlain = "250-mx.example.org\r\n250 8BITMIME\r\n";
const char* kEhloStarttls = "250-mx.example.org\r\n250 STARTTLS\r\n";
const char* kEhloPipelining = "250-mx.example.org\r\n250 PIPELINING\r\n";

}  // namespace

TEST_CASE("smtp_client: may without STARTTLS: one plaintext transaction, phase by phase") {
  ScriptedServer server(kGreeting, {kEhloPlain, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n",
                                    "250 2.0.0 queued as X\r\n", "221 bye\r\n"});
  Mail mail({"a"});
  SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
  CHECK_FALSE(r.host_failed);
  CHECK(r.greeting == "220 mx.example.org ESMTP");
  CHECK_FALSE(r.tls.used);
  REQUIRE(r.recipients.size() == 1);
  CHECK(r.recipients[0].status == RcptStatus::kDelivered);
  CHECK(r.recipients[0].code == "2.0.0");
  CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "MAIL FROM:<sender@example.org>",
                                                       "RCPT TO:<a@example.org>", "DATA", "<message>", "QUIT"});
}

TEST_CASE("smtp_client: STARTTLS not offered under a TLS-required policy: QUIT, never MAIL") {
  for (HostTls tls : {HostTls::kDane, HostTls::kEncrypt, HostTls::kPkix}) {
    ScriptedServer server(kGreeting, {kEhloPlain, "221 bye\r\n"});
    Mail mail({"a"});
    SessionResult r = Run(server, Options(tls), &mail.envelope);
    CHECK(r.host_failed);
    CHECK(r.code == "4.7.4");
    CHECK(r.failure_type == "starttls-not-supported");
    CHECK_FALSE(r.retry_plaintext);
    CHECK(r.recipients.empty());
    CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "QUIT"});
  }
}

TEST_CASE("smtp_client: a refused STARTTLS fails a TLS-required host, may carries on in plaintext") {
  {
    ScriptedServer server(kGreeting, {kEhloStarttls, "454 4.7.0 not now\r\n"});
    Mail mail({"a"});
    SessionResult r = Run(server, Options(HostTls::kPkix), &mail.envelope);
    CHECK(r.host_failed);
    CHECK(r.error == "STARTTLS refused (454 4.7.0 not now), TLS required by MTA-STS");
    CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "STARTTLS"});
  }
  ScriptedServer server(kGreeting, {kEhloStarttls, "454 4.7.0 not now\r\n", "250 ok\r\n", "250 ok\r\n",
                                    "354 go\r\n", "250 ok\r\n", "221 bye\r\n"});
  Mail mail({"a"});
  SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
  CHECK_FALSE(r.host_failed);
  REQUIRE(r.recipients.size() == 1);
  CHECK(r.recipients[0].status == RcptStatus::kDelivered);
}

TEST_CASE("smtp_client: data after the 220 to STARTTLS ends the session before the handshake") {
  ScriptedServer server(kGreeting, {kEhloStarttls, "220 go ahead\r\n250 injected\r\n"});
  Mail mail({"a"});
  SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
  CHECK(r.host_failed);
  CHECK(r.code == "4.7.0");
  CHECK_FALSE(r.retry_plaintext);
  CHECK_FALSE(r.tls.used);
}

TEST_CASE("smtp_client: a failed handshake allows a plaintext retry for may only") {
  for (HostTls tls : {HostTls::kMay, HostTls::kDane, HostTls::kPkix}) {
    ScriptedServer server(kGreeting, {kEhloStarttls, "220 go ahead\r\n<close>"});
    Mail mail({"a"});
    SessionResult r = Run(server, Options(tls), &mail.envelope);
    CHECK(r.host_failed);
    CHECK(r.code == "4.7.5");
    CHECK(r.failure_type == "validation-failure");
    CHECK(r.retry_plaintext == (tls == HostTls::kMay));
    CHECK(r.recipients.empty());
  }
}

TEST_CASE("smtp_client: a refused greeting fails the host with the server's code") {
  ScriptedServer server("554 5.7.1 no thanks\r\n", std::vector<std::string>{});
  SessionResult r = Run(server, Options(HostTls::kMay), nullptr);
  CHECK(r.host_failed);
  CHECK(r.code == "5.7.1");
  CHECK(r.error == "server greeting: 554 5.7.1 no thanks");
}

TEST_CASE("smtp_client: a connection lost after RCPT defers every recipient, the accepted ones too") {
  ScriptedServer server(kGreeting, {kEhloPlain, "250 ok\r\n", "250 ok\r\n", "<close>"});
  Mail mail({"a", "b"});
  SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
  CHECK_FALSE(r.host_failed);
  REQUIRE(r.recipients.size() == 2);
  for (const RcptResult& x : r.recipients) {
    CHECK(x.status == RcptStatus::kDeferred);
    CHECK(x.code == "4.4.2");
    CHECK(x.reply == "RCPT TO: connection closed by server");
    CHECK(x.try_next_host);
  }
}

TEST_CASE("smtp_client: RCPT replies settle each recipient; no reply after the data stays at this host") {
  ScriptedServer server(kGreeting, {kEhloPlain, "250 ok\r\n", "550 5.1.1 no such user\r\n", "250 ok\r\n",
                                    "354 go\r\n", "<close>"});
  Mail mail({"nobody", "a"});
  SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
  REQUIRE(r.recipients.size() == 2);
  CHECK(r.recipients[0].status == RcptStatus::kBounced);
  CHECK(r.recipients[0].code == "5.1.1");
  CHECK(r.recipients[1].status == RcptStatus::kDeferred);
  CHECK_FALSE(r.recipients[1].try_next_host);  // RFC 1047
}

TEST_CASE("smtp_client: with PIPELINING a refused MAIL bounces everyone and the session hangs up") {
  ScriptedServer server(kGreeting, {"250-mx.example.org\r\n250 PIPELINING\r\n", "553 5.1.8 bad sender\r\n",
                                    "503 no\r\n", "503 no\r\n"});
  Mail mail({"a"});
  SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
  REQUIRE(r.recipients.size() == 1);
  CHECK(r.recipients[0].status == RcptStatus::kBounced);
  CHECK(r.recipients[0].reply == "MAIL FROM rejected: 553 5.1.8 bad sender");
  CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "MAIL FROM:<sender@example.org>",
                                                       "RCPT TO:<a@example.org>", "DATA"});
}

TEST_CASE("smtp_client: REQUIRETLS without TLS: QUIT, never MAIL, 4.7.30, whatever the server announces") {
  ScriptedServer server(kGreeting, {"250-mx.example.org\r\n250 REQUIRETLS\r\n", "221 bye\r\n"});
  Mail mail({"a"});
  SessionOptions o = Options(HostTls::kMay);
  o.requiretls = true;
  SessionResult r = Run(server, o, &mail.envelope);
  CHECK(r.host_failed);
  CHECK(r.code == "4.7.30");
  CHECK(r.error == "REQUIRETLS support required: the session is not TLS");
  CHECK(r.recipients.empty());
  CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "QUIT"});
}

TEST_CASE("smtp_client: report_verification probes measure STARTTLS and send nothing after EHLO but QUIT") {
  SessionOptions o = Options(HostTls::kMay);
  o.probe_only = true;
  o.report_verification = true;
  {
    ScriptedServer server(kGreeting, {kEhloPlain, "221 bye\r\n"});
    SessionResult r = Run(server, o, nullptr);
    CHECK_FALSE(r.host_failed);
    CHECK_FALSE(r.starttls_offered);
    CHECK_FALSE(r.tls.survey_pkix.has_value());
    CHECK_FALSE(r.tls.survey_dane.has_value());
    CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "QUIT"});
  }
  ScriptedServer server(kGreeting, {kEhloStarttls, "454 4.7.0 not now\r\n", "221 bye\r\n"});
  SessionResult r = Run(server, o, nullptr);
  CHECK_FALSE(r.host_failed);
  CHECK(r.starttls_offered);
  CHECK_FALSE(r.tls.used);
  CHECK_FALSE(r.tls.survey_pkix.has_value());
  CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "STARTTLS", "QUIT"});
}

TEST_CASE("smtp_client: RunSmtpSessionCached: two messages on one session, RSET between (under PIPELINING in the "
          "MAIL's write, with no round trip of its own), QUIT when the cache goes") {
  struct Case {
    const char* ehlo;
    const char* rset_reply;  // the reply to the RSET line
    const char* mail_reply;  // and to the MAIL line after it
  };
  const Case cases[] = {
      {kEhloPlain, "250 2.0.0 reset\r\n", "250 2.1.0 ok\r\n"},
      // The server answers RSET only once the MAIL behind it has arrived: a client that waited
      // for the RSET's reply first would time out here.
      {kEhloPipelining, "", "250 2.0.0 reset\r\n250 2.1.0 ok\r\n"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.ehlo);
    ScriptedServer server(kGreeting, {c.ehlo, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n",
                                      "250 2.0.0 queued as X\r\n", c.rset_reply, c.mail_reply, "250 2.1.5 ok\r\n",
                                      "354 go\r\n", "250 2.0.0 queued as Y\r\n", "221 bye\r\n"});
    Mail first({"a"}), second({"b"});
    const SessionOptions o = Options(HostTls::kMay);
    {
      SessionCache cache;
      SessionResult r1 = RunSmtpSessionCached(&cache, "127.0.0.1", server.port, o, &first.envelope, 0);
      CHECK(cache.parked() == 1);
      SessionResult r2 = RunSmtpSessionCached(&cache, "127.0.0.1", server.port, o, &second.envelope, 0);
      REQUIRE(r1.recipients.size() == 1);
      REQUIRE(r2.recipients.size() == 1);
      CHECK(r1.recipients[0].reply.find("queued as X") != std::string::npos);
      CHECK(r2.recipients[0].status == RcptStatus::kDelivered);
      CHECK(r2.recipients[0].reply.find("queued as Y") != std::string::npos);
      CHECK(r2.greeting == r1.greeting);  // the session's facts travel with it
      CHECK(cache.parked() == 1);
    }
    CHECK(server.Received() == std::vector<std::string>{"EHLO client.example", "MAIL FROM:<sender@example.org>",
                                                         "RCPT TO:<a@example.org>", "DATA", "<message>", "RSET",
                                                         "MAIL FROM:<sender@example.org>", "RCPT TO:<b@example.org>",
                                                         "DATA", "<message>", "QUIT"});
  }
}

TEST_CASE("smtp_client: a reused session whose pipelined RSET fails sends nothing more; a new session takes the message") {
  const std::vector<std::string> first_transaction = {kEhloPipelining, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n",
                                                      "354 go\r\n", "250 2.0.0 queued as X\r\n"};
  const std::vector<std::string> fresh = {kEhloPipelining, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n",
                                          "250 2.0.0 queued as Y\r\n", "221 bye\r\n"};
  const std::vector<std::string> before = {"EHLO client.example", "MAIL FROM:<sender@example.org>",
                                           "RCPT TO:<a@example.org>", "DATA", "<message>", "RSET"};
  const std::vector<std::string> after = {"<connection>", "EHLO client.example", "MAIL FROM:<sender@example.org>",
                                          "RCPT TO:<b@example.org>", "DATA", "<message>", "QUIT"};
  struct Case {
    const char* name;
    std::vector<std::string> replies_to_rset_on;  // the old session's replies from RSET on
    std::vector<std::string> seen_after_rset;     // what it received after RSET
  };
  const Case cases[] = {
      // Refused, but the server reads on: it takes MAIL, RCPT, DATA and gets no message.
      {"421 and reading on", {"421 4.4.2 idle too long\r\n", "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n"},
       {"MAIL FROM:<sender@example.org>", "RCPT TO:<b@example.org>", "DATA"}},
      {"closed without a reply", {std::string(kClose)}, {}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    std::vector<std::string> old_session = first_transaction;
    old_session.insert(old_session.end(), c.replies_to_rset_on.begin(), c.replies_to_rset_on.end());
    ScriptedServer server(kGreeting, PerConnection{{old_session, fresh}});
    Mail first({"a"}), second({"b"});
    const SessionOptions o = Options(HostTls::kMay);
    {
      SessionCache cache;
      (void)RunSmtpSessionCached(&cache, "127.0.0.1", server.port, o, &first.envelope, 0);
      SessionResult r = RunSmtpSessionCached(&cache, "127.0.0.1", server.port, o, &second.envelope, 0);
      CHECK_FALSE(r.host_failed);
      REQUIRE(r.recipients.size() == 1);
      CHECK(r.recipients[0].status == RcptStatus::kDelivered);
      CHECK(r.recipients[0].reply.find("queued as Y") != std::string::npos);
      CHECK(cache.parked() == 1);
    }
    std::vector<std::string> expected = before;
    expected.insert(expected.end(), c.seen_after_rset.begin(), c.seen_after_rset.end());
    expected.insert(expected.end(), after.begin(), after.end());
    CHECK(server.Received() == expected);
  }
}

TEST_CASE("smtp_client: a session that failed its transaction in mid-stream is not parked") {
  ScriptedServer server(kGreeting, {kEhloPlain, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n",
                                    std::string(kClose)});
  Mail mail({"a"});
  SessionCache cache;
  SessionResult r = RunSmtpSessionCached(&cache, "127.0.0.1", server.port, Options(HostTls::kMay), &mail.envelope, 0);
  REQUIRE(r.recipients.size() == 1);
  CHECK(r.recipients[0].status == RcptStatus::kDeferred);
  CHECK(cache.parked() == 0);
}

TEST_CASE("smtp_client: SessionCacheKey: the same policy shares a key; another domain, TLSA set or demand does not") {
  SessionOptions a = Options(HostTls::kDane);
  a.tlsa.push_back(TlsaRecord{3, 1, 1, std::vector<uint8_t>(32, 0xab)});
  a.dane_names = {"mx.example.org", "example.org"};
  SessionOptions same = a;
  CHECK(SessionCacheKey("192.0.2.1", 25, a) == SessionCacheKey("192.0.2.1", 25, same));
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.2", 25, a));
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.1", 587, a));
  SessionOptions other_domain = a;
  other_domain.dane_names = {"mx.example.org", "example.net"};
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.1", 25, other_domain));
  SessionOptions other_tlsa = a;
  other_tlsa.tlsa[0] = TlsaRecord{3, 1, 1, std::vector<uint8_t>(32, 0xcd)};
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.1", 25, other_tlsa));
  SessionOptions may = a;
  may.tls = HostTls::kMay;
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.1", 25, may));
  SessionOptions requiretls = a;
  requiretls.requiretls = true;
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.1", 25, requiretls));
  SessionOptions local = a;
  local.required_by = "local policy dane-only";
  CHECK(SessionCacheKey("192.0.2.1", 25, a) != SessionCacheKey("192.0.2.1", 25, local));
  // The TLSA RRset is a set: DNS answers in any order make one key; one record more or less does not.
  SessionOptions two = a;
  two.tlsa.push_back(TlsaRecord{3, 0, 2, std::vector<uint8_t>(64, 0x01)});
  SessionOptions reversed = two;
  std::swap(reversed.tlsa[0], reversed.tlsa[1]);
  CHECK(SessionCacheKey("192.0.2.1", 25, two) == SessionCacheKey("192.0.2.1", 25, reversed));
  CHECK(SessionCacheKey("192.0.2.1", 25, two) != SessionCacheKey("192.0.2.1", 25, a));
  // How often a server is authenticated in full is not part of the policy.
  SessionOptions no_reuse = a;
  no_reuse.reuse_connection = false;
  no_reuse.resume_tls = false;
  CHECK(SessionCacheKey("192.0.2.1", 25, a) == SessionCacheKey("192.0.2.1", 25, no_reuse));
}

TEST_CASE("smtp_client: the session reports its local address; smtp_bind_address chooses it, a failed bind fails") {
  const std::vector<std::string> replies = {kEhloPlain, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n",
                                            "250 2.0.0 queued as X\r\n", "221 bye\r\n"};
  {
    ScriptedServer server(kGreeting, replies);
    Mail mail({"a"});
    SessionResult r = Run(server, Options(HostTls::kMay), &mail.envelope);
    CHECK_FALSE(r.host_failed);
    CHECK(r.local_address == "127.0.0.1");
  }
  {
    ScriptedServer server(kGreeting, replies);
    Mail mail({"a"});
    SessionOptions o = Options(HostTls::kMay);
    o.bind_address4 = "127.0.0.2";
    o.bind_address6 = "::1";  // another family: not used for an IPv4 server
    SessionResult r = Run(server, o, &mail.envelope);
    CHECK_FALSE(r.host_failed);
    CHECK(r.local_address == "127.0.0.2");
    REQUIRE(r.recipients.size() == 1);
    CHECK(r.recipients[0].status == RcptStatus::kDelivered);
  }
  {
    // Not an address of this host (TEST-NET-1): no connection from any other.
    ScriptedServer server(kGreeting, replies);
    Mail mail({"a"});
    SessionOptions o = Options(HostTls::kMay);
    o.bind_address4 = "192.0.2.1";
    SessionResult r = Run(server, o, &mail.envelope);
    CHECK(r.host_failed);
    CHECK_FALSE(r.connected);
    CHECK(r.error.find("smtp_bind_address") != std::string::npos);
    CHECK(r.error.find("192.0.2.1") != std::string::npos);
    // Let the server's accept() end: connect once ourselves and close.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)!connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    close(fd);
    CHECK(server.Received().empty());
  }
}

TEST_CASE("smtp_client: SessionCacheKey: another source address is another key") {
  SessionOptions a = Options(HostTls::kMay), b = Options(HostTls::kMay);
  b.bind_address4 = "127.0.0.2";
  CHECK(SessionCacheKey("127.0.0.1", 25, a) != SessionCacheKey("127.0.0.1", 25, b));
}
