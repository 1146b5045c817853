// smtp_client.cc - one SMTP session to one address with the host's TLS
// policy enforced (see smtp_client.h for the promises).
//
// I/O is non-blocking with a deadline per stage (RFC 5321 §4.5.3.2). The
// plaintext and TLS phases share one ReplyReader only until STARTTLS: the
// reader is checked to be empty after the 220 and then replaced, so no byte
// received in plaintext is ever read as protected. GnuTLS reads from the
// socket directly. Verification happens after the handshake and before any
// further command, on the chain exactly as presented.
#include "mxsec/smtp/smtp_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>

namespace mxsec {

const char* RcptStatusName(RcptStatus s) {
  switch (s) {
    case RcptStatus::kDelivered: return "delivered";
    case RcptStatus::kDeferred: return "deferred";
    case RcptStatus::kBounced: return "bounced";
  }
  return "?";
}

namespace {

using SteadyClock = std::chrono::steady_clock;

void GnutlsGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { gnutls_global_init(); });
}

struct CredFree {
  void operator()(gnutls_certificate_credentials_t c) const { gnutls_certificate_free_credentials(c); }
};
struct SessionFree {
  void operator()(gnutls_session_t s) const { gnutls_deinit(s); }
};
using CredPtr = std::unique_ptr<std::remove_pointer_t<gnutls_certificate_credentials_t>, CredFree>;
using SessionPtr = std::unique_ptr<std::remove_pointer_t<gnutls_session_t>, SessionFree>;

// The connection: a socket, optionally a TLS session on it, and a reply
// reader. Owns both; closes on destruction.
class Connection {
 public:
  Connection() = default;
  ~Connection() {
    tls_.reset();
    if (fd_ >= 0) close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Status Connect(const std::string& address, uint16_t port, int timeout_ms) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, address.c_str(), &s4->sin_addr) == 1) {
      s4->sin_family = AF_INET;
      s4->sin_port = htons(port);
      len = sizeof *s4;
    } else if (inet_pton(AF_INET6, address.c_str(), &s6->sin6_addr) == 1) {
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(port);
      len = sizeof *s6;
    } else {
      return Status::Error("invalid address " + address);
    }
    fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return Status::Error(std::string("socket: ") + strerror(errno));
    if (connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS)
      return Status::Error(std::string("connect: ") + strerror(errno));
    pollfd p{fd_, POLLOUT, 0};
    int n;
    do n = poll(&p, 1, timeout_ms); while (n < 0 && errno == EINTR);
    if (n == 0) return Status::Error("connect: timed out after " + std::to_string(timeout_ms / 1000) + " s");
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) return Status::Error(std::string("connect: ") + strerror(err));
    return Status::Ok();
  }

  // Reads one complete reply before the deadline.
  Result<SmtpReply> ReadReply(int timeout_ms) {
    auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto next = reader_.Next();
      if (!next.ok()) return Status::Error("malformed reply: " + next.error());
      if (next.value()) return *next.value();
      char buf[16384];
      Result<size_t> got = Read(buf, sizeof buf, deadline);
      if (!got.ok()) return got.status();
      reader_.Feed(std::string_view(buf, got.value()));
    }
  }

  // Writes all of `data`. `idle_ms` bounds the time without progress, as
  // Postfix's smtp_*_timeout do (per write, not per command): a large
  // message on a slow but moving link is not cut off. A server that keeps
  // taking a few octets just in time is bounded by `min_rate` (octets per
  // second, 0: no such bound), Postfix's smtp_min_data_rate accounting:
  // the whole write may take idle_ms plus written/min_rate seconds.
  Status Write(const std::string& data, int idle_ms, int min_rate = 0) {
    const auto start = SteadyClock::now();
    const auto idle = std::chrono::milliseconds(idle_ms);
    size_t off = 0;
    auto rate_deadline = [&] {
      return start + idle + std::chrono::milliseconds(static_cast<int64_t>(off) * 1000 / min_rate);
    };
    auto idle_deadline = start + idle;
    auto deadline = [&] { return min_rate > 0 ? std::min(idle_deadline, rate_deadline()) : idle_deadline; };
    auto wait = [&](short events) -> Status {
      Status w = Wait(events, deadline());
      if (w.ok() || w.message() != "timed out") return w;
      if (min_rate > 0 && rate_deadline() < idle_deadline)
        return Status::Error("timed out: " + std::to_string(off) + " of " + std::to_string(data.size()) +
                             " octets written, slower than " + std::to_string(min_rate) + " octets/s");
      return Status::Error("timed out: no progress for " + std::to_string(idle_ms / 1000) + " s after " +
                           std::to_string(off) + " of " + std::to_string(data.size()) + " octets");
    };
    while (off < data.size()) {
      ssize_t n;
      if (tls_) {
        n = gnutls_record_send(tls_.get(), data.data() + off, std::min<size_t>(data.size() - off, 16384));
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
          Status w = wait(gnutls_record_get_direction(tls_.get()) ? POLLOUT : POLLIN);
          if (!w.ok()) return w;
          continue;
        }
        if (n < 0) return Status::Error(std::string("TLS write: ") + gnutls_strerror(static_cast<int>(n)));
      } else {
        n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          Status w = wait(POLLOUT);
          if (!w.ok()) return w;
          continue;
        }
        if (n < 0) return Status::Error(std::string("write: ") + strerror(errno));
      }
      off += static_cast<size_t>(n);
      if (n > 0) idle_deadline = SteadyClock::now() + idle;
    }
    return Status::Ok();
  }

  // Bytes the server sent that nobody asked for yet: what the reader holds
  // and what the kernel has queued.
  size_t PendingPlaintext() const {
    int queued = 0;
    if (ioctl(fd_, FIONREAD, &queued) != 0) queued = 0;
    return reader_.buffered() + static_cast<size_t>(queued > 0 ? queued : 0);
  }

  // Starts TLS on the socket. On failure the connection is unusable.
  Status StartTls(const std::string& sni, int timeout_ms) {
    GnutlsGlobalInit();
    gnutls_certificate_credentials_t cred = nullptr;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) return Status::Error("TLS: cannot allocate credentials");
    cred_.reset(cred);
    gnutls_session_t s = nullptr;
    if (gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
      return Status::Error("TLS: cannot create a session");
    tls_.reset(s);
    const char* err_pos = nullptr;
    if (gnutls_priority_set_direct(s, "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-SSL3.0", &err_pos) < 0)
      return Status::Error("TLS: priority string rejected");
    if (!sni.empty()) gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni.data(), sni.size());
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred_.get());
    gnutls_transport_set_int(s, fd_);
    reader_ = ReplyReader();  // nothing from the plaintext phase survives
    auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      int r = gnutls_handshake(s);
      if (r == 0) break;
      if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        Status w = Wait(gnutls_record_get_direction(s) ? POLLOUT : POLLIN, deadline);
        if (!w.ok()) return Status::Error("TLS handshake: " + w.message());
        continue;
      }
      if (gnutls_error_is_fatal(r)) return Status::Error(std::string("TLS handshake failed: ") + gnutls_strerror(r));
    }
    return Status::Ok();
  }

  gnutls_session_t tls() const { return tls_.get(); }

  void Bye() {
    if (tls_) gnutls_bye(tls_.get(), GNUTLS_SHUT_WR);
  }

 private:
  Status Wait(short events, SteadyClock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
      if (left <= 0) return Status::Error("timed out");
      pollfd p{fd_, events, 0};
      int n = poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::Error(std::string("poll: ") + strerror(errno));
      if (n == 0) return Status::Error("timed out");
      return Status::Ok();
    }
  }

  Result<size_t> Read(char* buf, size_t size, SteadyClock::time_point deadline) {
    for (;;) {
      ssize_t n;
      if (tls_) {
        n = gnutls_record_recv(tls_.get(), buf, size);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
          if (gnutls_record_check_pending(tls_.get()) > 0) continue;
          Status w = Wait(POLLIN, deadline);
          if (!w.ok()) return Status::Error("reading reply: " + w.message());
          continue;
        }
        if (n == 0) return Status::Error("connection closed by server");
        if (n < 0) return Status::Error(std::string("TLS read: ") + gnutls_strerror(static_cast<int>(n)));
      } else {
        n = recv(fd_, buf, size, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          Status w = Wait(POLLIN, deadline);
          if (!w.ok()) return Status::Error("reading reply: " + w.message());
          continue;
        }
        if (n == 0) return Status::Error("connection closed by server");
        if (n < 0) return Status::Error(std::string("read: ") + strerror(errno));
      }
      return static_cast<size_t>(n);
    }
  }

  int fd_ = -1;
  CredPtr cred_;
  SessionPtr tls_;
  ReplyReader reader_;
};

std::vector<DerCertificate> PeerChain(gnutls_session_t s) {
  std::vector<DerCertificate> chain;
  unsigned int n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(s, &n);
  for (unsigned int i = 0; certs && i < n && i < 16; ++i) chain.emplace_back(certs[i].data, certs[i].data + certs[i].size);
  return chain;
}

bool RequiresTls(HostTls t) { return t == HostTls::kDane || t == HostTls::kEncrypt || t == HostTls::kPkix; }

const char* PolicyWord(HostTls t) {
  switch (t) {
    case HostTls::kDane: return "DANE";
    case HostTls::kEncrypt: return "DANE (unusable TLSA: encryption only)";
    case HostTls::kPkix: return "MTA-STS";
    default: return "policy";
  }
}

// Who demands TLS, for messages: the local policy table when it decided.
std::string PolicyWordFor(const SessionOptions& o) {
  if (!o.required_by.empty()) return o.required_by;
  return PolicyWord(o.tls);
}

// Marks the session as a host failure.
SessionResult& HostFailed(SessionResult& r, const std::string& code, const std::string& error,
                          const std::string& failure_type = "") {
  r.host_failed = true;
  r.code = code;
  r.error = error;
  r.failure_type = failure_type;
  return r;
}

std::string ServerCode(const SmtpReply& reply, const char* fallback) {
  return reply.enhanced.empty() ? fallback : reply.enhanced;
}

}  // namespace

SessionResult RunSmtpSession(const std::string& address, uint16_t port, const SessionOptions& o,
                             const Envelope* env, int64_t now) {
  SessionResult r;
  Connection c;
  const SmtpTimeouts& t = o.timeouts;
  const bool must_tls = RequiresTls(o.tls);

  Status s = c.Connect(address, port, t.connect);
  if (!s.ok()) return HostFailed(r, "4.4.1", s.message());
  r.connected = true;

  auto greet = c.ReadReply(t.greeting);
  if (!greet.ok()) return HostFailed(r, "4.4.2", "greeting: " + greet.error());
  r.greeting = greet->Summary();
  if (greet->code != 220)
    return HostFailed(r, ServerCode(*greet, greet->permanent() ? "5.0.0" : "4.0.0"),
                      "server greeting: " + greet->Summary());

  auto ehlo = [&](EhloCapabilities* caps) -> Status {
    Status w = c.Write("EHLO " + o.helo_name + "\r\n", t.helo);
    if (!w.ok()) return w;
    auto rep = c.ReadReply(t.helo);
    if (!rep.ok()) return rep.status();
    if (rep->code != 250) {
      if (must_tls || c.tls()) return Status::Error("EHLO rejected: " + rep->Summary());
      // HELO only where plaintext is allowed anyway (no STARTTLS without EHLO).
      w = c.Write("HELO " + o.helo_name + "\r\n", t.helo);
      if (!w.ok()) return w;
      auto helo = c.ReadReply(t.helo);
      if (!helo.ok()) return helo.status();
      if (helo->code != 250) return Status::Error("HELO rejected: " + helo->Summary());
      *caps = EhloCapabilities();
      return Status::Ok();
    }
    *caps = ParseEhlo(*rep);
    r.ehlo = caps->keywords;
    return Status::Ok();
  };

  EhloCapabilities caps;
  s = ehlo(&caps);
  if (!s.ok()) return HostFailed(r, "4.5.0", s.message());

  if (!o.no_tls) {
    if (!caps.starttls) {
      if (must_tls) {
        c.Write("QUIT\r\n", 1000);
        return HostFailed(r, "4.7.4",
                          std::string("STARTTLS not offered: possible downgrade, TLS required by ") +
                              PolicyWordFor(o),
                          "starttls-not-supported");
      }
    } else {
      s = c.Write("STARTTLS\r\n", t.starttls);
      if (!s.ok()) return HostFailed(r, "4.4.2", "STARTTLS: " + s.message());
      auto rep = c.ReadReply(t.starttls);
      if (!rep.ok()) return HostFailed(r, "4.4.2", "STARTTLS: " + rep.error());
      if (rep->code != 220) {
        if (must_tls)
          return HostFailed(r, "4.7.4",
                            "STARTTLS refused (" + rep->Summary() + "), TLS required by " + PolicyWordFor(o),
                            "starttls-not-supported");
        // may: the server said no; carry on in plaintext on this connection.
      } else {
        if (c.PendingPlaintext() > 0) {
          return HostFailed(r, "4.7.0",
                            "protocol violation: the server sent data after the 220 reply to STARTTLS "
                            "(command injection attempt?); connection dropped");
        }
        s = c.StartTls(o.sni, t.starttls);
        if (!s.ok()) {
          if (!must_tls) r.retry_plaintext = true;
          return HostFailed(r, "4.7.5", s.message(), "validation-failure");
        }
        r.tls.used = true;
        gnutls_session_t ts = c.tls();
        r.tls.version = gnutls_protocol_get_name(gnutls_protocol_get_version(ts)) ?: "";
        r.tls.cipher = gnutls_cipher_get_name(gnutls_cipher_get(ts)) ?: "";
        if (char* d = gnutls_session_get_desc(ts)) {
          r.tls.description = d;
          gnutls_free(d);
        }
        std::vector<DerCertificate> chain = PeerChain(ts);
        r.tls.chain = DescribeChain(chain);
        if (o.tls == HostTls::kDane || o.tls == HostTls::kPkix) {
          VerifyResult v;
          if (o.tls == HostTls::kDane) {
            r.tls.verification = "dane";
            v = VerifyDane(DaneVerifyInput{chain, o.tlsa, o.dane_names, now});
          } else {
            r.tls.verification = "pkix";
            PkixVerifyInput in;
            in.chain = chain;
            in.ca_file = o.ca_file;
            in.host = o.pkix_host;
            in.names = o.pkix_names;
            in.now = now;
            v = VerifyPkix(in);
          }
          r.tls.verified = v.ok;
          r.tls.detail = v.detail;
          r.tls.matched = v.matched;
          if (!v.ok) {
            c.Bye();
            return HostFailed(r, "4.7.5",
                              std::string("certificate verification failed (") + PolicyWordFor(o) + "): " + v.detail,
                              v.failure_type.empty() ? "validation-failure" : v.failure_type);
          }
        } else {
          r.tls.verification = "none";
          r.tls.detail = o.tls == HostTls::kEncrypt
                             ? (o.required_by.empty() ? std::string("encrypted, not authenticated (TLSA records unusable)")
                                                      : "encrypted, not authenticated (" + o.required_by + ")")
                             : std::string("opportunistic: certificate not checked");
        }
        s = ehlo(&caps);
        if (!s.ok()) return HostFailed(r, "4.5.0", "after STARTTLS: " + s.message());
      }
    }
  }

  auto quit = [&] {
    if (c.Write("QUIT\r\n", std::min(t.quit, 10000)).ok()) (void)c.ReadReply(std::min(t.quit, 10000));
    c.Bye();
  };
  if (o.probe_only || !env) {
    quit();
    return r;
  }

  // --- The transaction ---
  const PreparedMessage& msg = *env->message;
  r.recipients.assign(env->recipients.size(), RcptResult{});
  auto all = [&](RcptStatus st, const std::string& code, const std::string& reply, bool next_host) {
    for (RcptResult& x : r.recipients) {
      x.status = st;
      x.code = code;
      x.reply = reply;
      x.try_next_host = next_host;
    }
  };
  if (msg.eight_bit && !caps.eightbitmime) {
    all(RcptStatus::kBounced, "5.6.3", "message has 8-bit data and the server does not announce 8BITMIME", false);
    quit();
    return r;
  }
  if (env->sender.utf8 && !caps.smtputf8) {
    all(RcptStatus::kBounced, "5.6.7", "sender address needs SMTPUTF8, which the server does not announce", false);
    quit();
    return r;
  }
  if (caps.size && *caps.size > 0 && msg.content_size > *caps.size) {
    all(RcptStatus::kBounced, "5.3.4",
        "message is " + std::to_string(msg.content_size) + " octets, server limit " + std::to_string(*caps.size),
        false);
    quit();
    return r;
  }
  bool need_utf8 = env->sender.utf8;
  for (const Mailbox& m : env->recipients) need_utf8 = need_utf8 || m.utf8;
  std::string mail = MailFromCommand(env->sender, caps, msg.content_size, msg.eight_bit, &env->dsn);
  r.dsn_passed = caps.dsn && !env->dsn.notify.empty();
  if (need_utf8 && caps.smtputf8 && mail.find(" SMTPUTF8") == std::string::npos) mail += " SMTPUTF8";

  std::vector<size_t> rcpt_sent;  // indices of recipients actually sent
  for (size_t i = 0; i < env->recipients.size(); ++i) {
    if (env->recipients[i].utf8 && !caps.smtputf8) {
      r.recipients[i] = RcptResult{RcptStatus::kBounced, "5.6.7",
                                   "address needs SMTPUTF8, which the server does not announce", false};
    } else {
      rcpt_sent.push_back(i);
    }
  }
  if (rcpt_sent.empty()) {
    quit();
    return r;
  }

  const bool pipelining = caps.pipelining;
  // With PIPELINING, MAIL, every RCPT and DATA go out in one write
  // (RFC 2920); replies are read in order.
  if (pipelining) {
    std::string batch = mail + "\r\n";
    for (size_t i : rcpt_sent) batch += RcptToCommand(env->recipients[i], caps, env->dsn) + "\r\n";
    batch += "DATA\r\n";
    s = c.Write(batch, t.mail);
    if (!s.ok()) {
      all(RcptStatus::kDeferred, "4.4.2", "lost connection sending MAIL/RCPT: " + s.message(), true);
      return r;
    }
  } else {
    s = c.Write(mail + "\r\n", t.mail);
    if (!s.ok()) {
      all(RcptStatus::kDeferred, "4.4.2", "lost connection sending MAIL FROM: " + s.message(), true);
      return r;
    }
  }
  auto mrep = c.ReadReply(t.mail);
  if (!mrep.ok()) {
    all(RcptStatus::kDeferred, "4.4.2", "MAIL FROM: " + mrep.error(), true);
    return r;
  }
  if (mrep->code != 250) {
    bool perm = mrep->permanent();
    all(perm ? RcptStatus::kBounced : RcptStatus::kDeferred, ServerCode(*mrep, perm ? "5.0.0" : "4.0.0"),
        "MAIL FROM rejected: " + mrep->Summary(), !perm);
    if (!pipelining) quit();
    return r;
  }
  size_t accepted = 0;
  for (size_t i : rcpt_sent) {
    if (!pipelining) {
      s = c.Write(RcptToCommand(env->recipients[i], caps, env->dsn) + "\r\n", t.rcpt);
      if (!s.ok()) {
        for (size_t k : rcpt_sent)
          if (r.recipients[k].code.empty()) r.recipients[k] = {RcptStatus::kDeferred, "4.4.2", s.message(), true};
        return r;
      }
    }
    auto rr = c.ReadReply(t.rcpt);
    if (!rr.ok()) {
      for (size_t k : rcpt_sent)
        if (r.recipients[k].code.empty()) r.recipients[k] = {RcptStatus::kDeferred, "4.4.2", "RCPT TO: " + rr.error(), true};
      return r;
    }
    if (rr->code == 250 || rr->code == 251) {
      r.recipients[i].code = "pending";
      ++accepted;
    } else if (rr->permanent()) {
      r.recipients[i] = {RcptStatus::kBounced, ServerCode(*rr, "5.0.0"), rr->Summary(), false};
    } else {
      r.recipients[i] = {RcptStatus::kDeferred, ServerCode(*rr, "4.0.0"), rr->Summary(), true};
    }
  }
  if (!pipelining && accepted > 0) {
    s = c.Write("DATA\r\n", t.data_init);
    if (!s.ok()) {
      for (size_t k : rcpt_sent)
        if (r.recipients[k].code == "pending") r.recipients[k] = {RcptStatus::kDeferred, "4.4.2", s.message(), true};
      return r;
    }
  }
  if (accepted == 0) {
    if (pipelining) (void)c.ReadReply(t.data_init);  // the DATA we pipelined gets a 5xx/503
    quit();
    return r;
  }
  auto pending = [&](RcptStatus st, const std::string& code, const std::string& reply, bool next) {
    for (size_t k : rcpt_sent)
      if (r.recipients[k].code == "pending") r.recipients[k] = {st, code, reply, next};
  };
  auto drep = c.ReadReply(t.data_init);
  if (!drep.ok()) {
    pending(RcptStatus::kDeferred, "4.4.2", "DATA: " + drep.error(), true);
    return r;
  }
  if (drep->code != 354) {
    bool perm = drep->permanent();
    pending(perm ? RcptStatus::kBounced : RcptStatus::kDeferred, ServerCode(*drep, perm ? "5.0.0" : "4.0.0"),
            "DATA rejected: " + drep->Summary(), !perm);
    quit();
    return r;
  }
  s = c.Write(msg.data, t.data_xfer, t.min_data_rate);
  if (!s.ok()) {
    // The terminator was not (completely) sent: the server cannot have
    // taken the message, so another host may be tried.
    pending(RcptStatus::kDeferred, "4.4.2", "lost connection sending the message: " + s.message(), true);
    return r;
  }
  auto final_rep = c.ReadReply(t.data_done);
  if (!final_rep.ok()) {
    // RFC 1047: the server may have the message (it may have accepted it
    // and lost the connection before its reply reached us). Bouncing could
    // lose it; another host in this attempt would duplicate it every time
    // the first had accepted. Defer, without moving on: the retry later
    // risks one duplicate, not one per MX.
    pending(RcptStatus::kDeferred, "4.4.2",
            "no reply after end of data (" + final_rep.error() +
                "): outcome unknown, not retried at another host now (RFC 1047)",
            false);
    return r;
  }
  if (final_rep->code == 250) {
    pending(RcptStatus::kDelivered, ServerCode(*final_rep, "2.0.0"), final_rep->Summary(), false);
  } else {
    bool perm = final_rep->permanent();
    pending(perm ? RcptStatus::kBounced : RcptStatus::kDeferred, ServerCode(*final_rep, perm ? "5.0.0" : "4.0.0"),
            final_rep->Summary(), !perm);
  }
  quit();
  return r;
}

}  // namespace mxsec
