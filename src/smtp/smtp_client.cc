// smtp_client.cc - one SMTP session to one address with the host's TLS
// policy enforced (see smtp_client.h for the promises).
//
// RunSmtpSession drives the phases in order, as Postfix's src/smtp/ does:
// Open (connect, greeting), Hello (EHLO), NegotiateTls (STARTTLS,
// handshake, verification), Hello again after TLS, RunTransaction (MAIL,
// RCPT, DATA), Quit. A phase that finds trouble asks smtp_trouble.h what it
// means and ends the session with that HostFailure; in the transaction,
// each recipient is settled exactly once with what smtp_trouble.h decides.
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
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

#include "mxsec/smtp/smtp_trouble.h"
#include "mxsec/smtp/session_cache.h"

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

// What every session offers: GnuTLS's defaults without the protocols
// before TLS 1.2, and X25519 first among the key exchange groups. With
// GNUTLS_KEY_SHARE_TOP (StartTls) a TLS 1.3 ClientHello then carries a
// single key share, X25519, as OpenSSL's client sends by default: one key
// generated instead of two (X25519 and P-256), and a cheaper shared secret
// than P-256 when the server takes it. A server without X25519 asks for
// another group it supports (HelloRetryRequest, RFC 8446 §4.1.4): one more
// round trip, the same security. The other groups keep GnuTLS's order.
constexpr char kTlsPriority[] =
    "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-SSL3.0:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"
    "+GROUP-SECP521R1:+GROUP-X448:+GROUP-FFDHE2048:+GROUP-FFDHE3072:+GROUP-FFDHE4096:+GROUP-FFDHE6144:"
    "+GROUP-FFDHE8192";

// kTlsPriority parsed once per process (a priority cache is read-only and
// may be shared by any number of sessions); null when GnuTLS refused it.
gnutls_priority_t TlsPriority() {
  static gnutls_priority_t priority = [] {
    GnutlsGlobalInit();
    gnutls_priority_t p = nullptr;
    if (gnutls_priority_init2(&p, kTlsPriority, nullptr, 0) < 0) return static_cast<gnutls_priority_t>(nullptr);
    return p;
  }();
  return priority;
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

  // Connects from `bind_address` of the server address's family when it is
  // not empty; a failure to bind fails the connection (the administrator
  // chose that source: another would be refused or unrouted elsewhere).
  Status Connect(const std::string& address, uint16_t port, const std::string& bind4,
                 const std::string& bind6, int timeout_ms) {
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
    const std::string& bind_to = ss.ss_family == AF_INET ? bind4 : bind6;
    if (!bind_to.empty()) {
      sockaddr_storage local{};
      socklen_t local_len = 0;
      auto* l4 = reinterpret_cast<sockaddr_in*>(&local);
      auto* l6 = reinterpret_cast<sockaddr_in6*>(&local);
      if (ss.ss_family == AF_INET && inet_pton(AF_INET, bind_to.c_str(), &l4->sin_addr) == 1) {
        l4->sin_family = AF_INET;
        local_len = sizeof *l4;
      } else if (ss.ss_family == AF_INET6 && inet_pton(AF_INET6, bind_to.c_str(), &l6->sin6_addr) == 1) {
        l6->sin6_family = AF_INET6;
        local_len = sizeof *l6;
      } else {
        return Status::Error("invalid bind address " + bind_to);
      }
      if (bind(fd_, reinterpret_cast<sockaddr*>(&local), local_len) != 0)
        return Status::Error("bind to " + bind_to + " (" + (ss.ss_family == AF_INET ? "smtp_bind_address" :
                             "smtp_bind_address6") + "): " + strerror(errno));
    }
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

  // Our address on the connection, as text; "" if the kernel cannot say.
  std::string LocalAddress() const {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd_ < 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
    char text[INET6_ADDRSTRLEN] = {0};
    const void* a = ss.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr)
                                              : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&ss)->sin_addr);
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return "";
    return inet_ntop(ss.ss_family, a, text, sizeof text) ? text : "";
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
      if (!w.IsTimeout()) return w;
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

  // Starts TLS on the socket, offering to resume the session in
  // `resume_data` when not empty. On failure the connection is unusable.
  Status StartTls(const std::string& sni, int timeout_ms, const std::string& resume_data) {
    GnutlsGlobalInit();
    gnutls_certificate_credentials_t cred = nullptr;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) return Status::Error("TLS: cannot allocate credentials");
    cred_.reset(cred);
    gnutls_session_t s = nullptr;
    if (gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL | GNUTLS_KEY_SHARE_TOP) < 0)
      return Status::Error("TLS: cannot create a session");
    tls_.reset(s);
    gnutls_priority_t priority = TlsPriority();
    if (!priority || gnutls_priority_set(s, priority) < 0) return Status::Error("TLS: priority string rejected");
    if (!sni.empty()) gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni.data(), sni.size());
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred_.get());
    // Data GnuTLS cannot use is not an error: the handshake is then a full one.
    if (!resume_data.empty()) (void)gnutls_session_set_data(s, resume_data.data(), resume_data.size());
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

  // The data to resume this TLS session on another connection, or "" when
  // there is none: under TLS 1.3 only once the server sent a ticket (it
  // does after the handshake; GnuTLS takes it while reading a reply).
  std::string ResumptionData() const {
    if (!tls_) return "";
    if (gnutls_protocol_get_version(tls_.get()) == GNUTLS_TLS1_3 &&
        !(gnutls_session_get_flags(tls_.get()) & GNUTLS_SFLAGS_SESSION_TICKET))
      return "";
    gnutls_datum_t d{nullptr, 0};
    if (gnutls_session_get_data2(tls_.get(), &d) < 0) return "";
    std::string data(reinterpret_cast<const char*>(d.data), d.size);
    gnutls_free(d.data);
    return data;
  }

  void Bye() {
    if (tls_) gnutls_bye(tls_.get(), GNUTLS_SHUT_WR);
  }

 private:
  Status Wait(short events, SteadyClock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
      if (left <= 0) return Status::Timeout("timed out");
      pollfd p{fd_, events, 0};
      int n = poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::Error(std::string("poll: ") + strerror(errno));
      if (n == 0) return Status::Timeout("timed out");
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

// How a phase before the transaction ended: the session goes on, or the
// host cannot be used and the session ends with `failure`.
struct PhaseResult {
  std::optional<HostFailure> failure;
  static PhaseResult Continue() { return {}; }
  static PhaseResult Fail(HostFailure f) { return {std::move(f)}; }
  bool failed() const { return failure.has_value(); }
};

// What the phases of one session share.
struct Session {
  Session(const SessionOptions& o, int64_t t) : options(o), demand(TlsDemand::Of(o)), now(t) {}
  Connection conn;
  const SessionOptions& options;
  const TlsDemand demand;
  const int64_t now;
  EhloCapabilities caps;  // of the last EHLO (empty after HELO)
  SessionResult result;
  std::string resume_data;          // a TLS session to offer to resume ("": none)
  bool resumed_without_chain = false;  // resumed, but no chain to verify: the session failed
  // A reused session's RSET goes first in the next transaction's pipelined
  // group (ParkedSmtpSession::Reset), not in a round trip of its own.
  bool reset_pending = false;
};

// Ends the session with the host failed.
SessionResult& HostFailed(SessionResult& r, const HostFailure& f) {
  r.host_failed = true;
  r.retry_plaintext = f.retry_plaintext;
  r.code = f.code;
  r.error = f.reason;
  r.failure_type = f.failure_type;
  return r;
}

// Phase: connect and read the greeting.
PhaseResult Open(Session& s, const std::string& address, uint16_t port) {
  const SmtpTimeouts& t = s.options.timeouts;
  Status c = s.conn.Connect(address, port, s.options.bind_address4, s.options.bind_address6, t.connect);
  if (!c.ok()) return PhaseResult::Fail(ConnectFailed(c));
  s.result.connected = true;
  s.result.local_address = s.conn.LocalAddress();
  auto greet = s.conn.ReadReply(t.greeting);
  if (!greet.ok()) return PhaseResult::Fail(GreetingLost(greet.status()));
  s.result.greeting = greet->Summary();
  if (greet->code != 220) return PhaseResult::Fail(GreetingRefused(*greet));
  return PhaseResult::Continue();
}

// EHLO, or HELO where smtp_trouble.h allows it; sets s.caps.
Status SayHello(Session& s) {
  const int timeout = s.options.timeouts.helo;
  Status w = s.conn.Write("EHLO " + s.options.helo_name + "\r\n", timeout);
  if (!w.ok()) return w;
  auto rep = s.conn.ReadReply(timeout);
  if (!rep.ok()) return rep.status();
  if (rep->code == 250) {
    s.caps = ParseEhlo(*rep);
    s.result.ehlo = s.caps.keywords;
    return Status::Ok();
  }
  if (!MayFallBackToHelo(s.demand, s.conn.tls() != nullptr)) return Status::Error("EHLO rejected: " + rep->Summary());
  w = s.conn.Write("HELO " + s.options.helo_name + "\r\n", timeout);
  if (!w.ok()) return w;
  auto helo = s.conn.ReadReply(timeout);
  if (!helo.ok()) return helo.status();
  if (helo->code != 250) return Status::Error("HELO rejected: " + helo->Summary());
  s.caps = EhloCapabilities();
  return Status::Ok();
}

// Phase: EHLO, first in plaintext and again after STARTTLS.
PhaseResult Hello(Session& s, bool after_starttls) {
  Status h = SayHello(s);
  if (!h.ok()) return PhaseResult::Fail(HelloFailed(h, after_starttls));
  return PhaseResult::Continue();
}

// Records what the handshake agreed on and the chain as presented.
std::vector<DerCertificate> DescribeTls(Session& s) {
  TlsInfo& tls = s.result.tls;
  gnutls_session_t ts = s.conn.tls();
  tls.used = true;
  tls.resumed = gnutls_session_is_resumed(ts) != 0;
  tls.version = gnutls_protocol_get_name(gnutls_protocol_get_version(ts)) ?: "";
  tls.cipher = gnutls_cipher_get_name(gnutls_cipher_get(ts)) ?: "";
  if (char* d = gnutls_session_get_desc(ts)) {
    tls.description = d;
    gnutls_free(d);
  }
  std::vector<DerCertificate> chain = PeerChain(ts);
  if (s.options.describe_chain) tls.chain = DescribeChain(chain);
  return chain;
}

VerifyResult VerifyChainAsPkix(const Session& s, const std::vector<DerCertificate>& chain) {
  const SessionOptions& o = s.options;
  PkixVerifyInput in;
  in.chain = chain;
  in.ca_file = o.ca_file;
  in.host = o.pkix_host;
  in.names = o.pkix_names;
  in.now = s.now;
  return VerifyPkix(in);
}

VerifyResult VerifyChainAsDane(const Session& s, const std::vector<DerCertificate>& chain) {
  const SessionOptions& o = s.options;
  return VerifyDane(DaneVerifyInput{chain, o.tlsa, o.dane_names, s.now});
}

VerifyResult VerifyChain(const Session& s, const std::vector<DerCertificate>& chain) {
  return s.options.tls == HostTls::kDane ? VerifyChainAsDane(s, chain) : VerifyChainAsPkix(s, chain);
}

// report_verification: both checks, reported and never enforced.
void ReportVerification(Session& s, const std::vector<DerCertificate>& chain) {
  if (!s.options.report_verification || s.options.tls != HostTls::kMay) return;
  s.result.tls.survey_pkix = VerifyChainAsPkix(s, chain);
  if (!s.options.tlsa.empty()) s.result.tls.survey_dane = VerifyChainAsDane(s, chain);
}

// Authenticates the server where the policy demands it (dane, pkix); for
// encrypt and may the certificate is not checked.
PhaseResult AuthenticateServer(Session& s, const std::vector<DerCertificate>& chain) {
  const SessionOptions& o = s.options;
  TlsInfo& tls = s.result.tls;
  if (o.tls != HostTls::kDane && o.tls != HostTls::kPkix) {
    tls.verification = "none";
    tls.detail = o.tls == HostTls::kEncrypt
                     ? (o.required_by.empty() ? std::string("encrypted, not authenticated (TLSA records unusable)")
                                              : "encrypted, not authenticated (" + o.required_by + ")")
                     : std::string("opportunistic: certificate not checked");
    ReportVerification(s, chain);
    return PhaseResult::Continue();
  }
  tls.verification = o.tls == HostTls::kDane ? "dane" : "pkix";
  VerifyResult v = VerifyChain(s, chain);
  tls.verified = v.ok;
  tls.detail = v.detail;
  tls.matched = v.matched;
  if (v.ok) return PhaseResult::Continue();
  s.conn.Bye();
  return PhaseResult::Fail(VerificationFailed(v, s.demand));
}

// Phase: STARTTLS, the handshake and the server's authentication, as the
// policy demands. Continues in plaintext only where smtp_trouble.h says so.
PhaseResult NegotiateTls(Session& s) {
  s.result.starttls_offered = s.caps.starttls;
  if (s.options.no_tls) return PhaseResult::Continue();
  const int timeout = s.options.timeouts.starttls;
  if (!s.caps.starttls) {
    std::optional<HostFailure> f = StarttlsNotOffered(s.demand);
    if (!f) return PhaseResult::Continue();
    (void)s.conn.Write("QUIT\r\n", 1000);
    return PhaseResult::Fail(std::move(*f));
  }
  Status w = s.conn.Write("STARTTLS\r\n", timeout);
  if (!w.ok()) return PhaseResult::Fail(StarttlsLost(w));
  auto rep = s.conn.ReadReply(timeout);
  if (!rep.ok()) return PhaseResult::Fail(StarttlsLost(rep.status()));
  if (rep->code != 220) {
    std::optional<HostFailure> f = StarttlsRefused(*rep, s.demand);
    return f ? PhaseResult::Fail(std::move(*f)) : PhaseResult::Continue();
  }
  if (s.conn.PendingPlaintext() > 0) return PhaseResult::Fail(DataBeforeHandshake());
  Status h = s.conn.StartTls(s.options.sni, timeout, s.resume_data);
  if (!h.ok()) return PhaseResult::Fail(HandshakeFailed(h, s.demand));
  std::vector<DerCertificate> chain = DescribeTls(s);
  if (s.result.tls.resumed && chain.empty() && !s.resume_data.empty()) {
    // Nothing to authenticate again (tls_session_store.h): not used; the
    // caller may start over with a full handshake.
    s.resumed_without_chain = true;
    s.conn.Bye();
    VerifyResult v;
    v.detail = "resumed TLS session without the server's certificate chain";
    v.failure_type = "validation-failure";
    return PhaseResult::Fail(VerificationFailed(v, s.demand));
  }
  return AuthenticateServer(s, std::move(chain));
}

// Phase: QUIT, politely and briefly, then the TLS close.
void Quit(Session& s) {
  const int timeout = std::min(s.options.timeouts.quit, 10000);
  if (s.conn.Write("QUIT\r\n", timeout).ok()) (void)s.conn.ReadReply(timeout);
  s.conn.Bye();
}

// Whether the session says QUIT after the transaction: not after the
// connection failed, nor after a refused pipelined MAIL (the pipelined
// RCPTs and DATA are still being answered).
enum class AfterTransaction {
  kQuit,    // in step with the server: QUIT, or park the session for another transaction
  kHangUp,  // out of step or the connection failed: close it without a word
  // The pipelined RSET of a reused session failed: the server had given the
  // session up. No recipient was settled and no message content was sent,
  // so the transaction is owed to a new session.
  kStale,
};

// Where a recipient stands in the transaction; it is settled exactly once.
enum class RcptStage {
  kUnanswered,  // not yet sent, or sent and not yet answered
  kAccepted,    // 250/251 to RCPT: the end of data settles it
  kSettled,     // its RcptResult is final for this session
};

// The recipients of one transaction and their RcptResults in the session.
class Transaction {
 public:
  Transaction(const Envelope& env, std::vector<RcptResult>* results, bool pipelining)
      : env(env), pipelining(pipelining), results_(results), stage_(env.recipients.size(), RcptStage::kUnanswered) {
    results_->assign(env.recipients.size(), RcptResult{});
  }
  void Settle(size_t i, const RcptResult& r) {
    (*results_)[i] = r;
    stage_[i] = RcptStage::kSettled;
  }
  // Every recipient, whatever it was settled with before.
  void SettleAll(const RcptResult& r) {
    for (size_t i = 0; i < stage_.size(); ++i) Settle(i, r);
  }
  // Every recipient not settled yet.
  void SettleOpen(const RcptResult& r) {
    for (size_t i = 0; i < stage_.size(); ++i)
      if (stage_[i] != RcptStage::kSettled) Settle(i, r);
  }
  void Accept(size_t i) {
    stage_[i] = RcptStage::kAccepted;
    ++accepted_;
  }
  size_t accepted() const { return accepted_; }

  const Envelope& env;
  const bool pipelining;
  std::vector<size_t> sent;  // recipients RCPT TO is sent for, in order

 private:
  std::vector<RcptResult>* results_;
  std::vector<RcptStage> stage_;
  size_t accepted_ = 0;
};

// The connection failed at `stage`: every open recipient is settled with
// that, and the session ends without QUIT.
AfterTransaction ConnectionLost(Transaction& tx, TransactionStage stage, const Status& error) {
  tx.SettleOpen(StreamFailed(stage, error));
  return AfterTransaction::kHangUp;
}

// A reason the server cannot take the message for anyone, or nullopt.
std::optional<RcptResult> ServerCannotTake(const EhloCapabilities& caps, const Envelope& env) {
  const PreparedMessage& msg = *env.message;
  if (msg.eight_bit && !caps.eightbitmime) return ServerLacks(MissingExtension::kEightBitMime);
  if (env.sender.utf8 && !caps.smtputf8) return ServerLacks(MissingExtension::kSmtpUtf8Sender);
  if (caps.size && *caps.size > 0 && msg.content_size > *caps.size) return MessageTooBig(msg.content_size, *caps.size);
  return std::nullopt;
}

std::string MailCommandFor(const EhloCapabilities& caps, const Envelope& env, bool requiretls) {
  bool need_utf8 = env.sender.utf8;
  for (const Mailbox& m : env.recipients) need_utf8 = need_utf8 || m.utf8;
  const PreparedMessage& msg = *env.message;
  std::string mail = MailFromCommand(env.sender, caps, msg.content_size, msg.eight_bit, &env.dsn, requiretls);
  if (need_utf8 && caps.smtputf8 && mail.find(" SMTPUTF8") == std::string::npos) mail += " SMTPUTF8";
  return mail;
}

// A server that does not answer RSET at once is not worth waiting for: a new session is.
constexpr int kResetTimeoutMs = 10000;

// MAIL FROM, with every RCPT and DATA in the same write under PIPELINING
// (RFC 2920; replies are read in order), and its reply. A reused session's
// RSET leads the group.
std::optional<AfterTransaction> SendMail(Session& s, Transaction& tx) {
  const SmtpTimeouts& t = s.options.timeouts;
  // RFC 2920 §3.1: RSET may stand anywhere in a pipelined group. Only set under PIPELINING.
  const bool reset = std::exchange(s.reset_pending, false) && tx.pipelining;
  std::string batch = reset ? "RSET\r\n" : "";
  batch += MailCommandFor(s.caps, tx.env, s.options.requiretls) + "\r\n";
  if (tx.pipelining) {
    for (size_t i : tx.sent) batch += RcptToCommand(tx.env.recipients[i], s.caps, tx.env.dsn) + "\r\n";
    batch += "DATA\r\n";
  }
  Status w = s.conn.Write(batch, t.mail);
  if (!w.ok()) {
    if (reset) return AfterTransaction::kStale;
    tx.SettleAll(StreamFailed(tx.pipelining ? TransactionStage::kSendPipelined : TransactionStage::kSendMail, w));
    return AfterTransaction::kHangUp;
  }
  if (reset) {
    // Anything but 250 (a 421, the connection closed, silence): whatever the server makes of the
    // MAIL, RCPT and DATA behind it, the content is never sent on this connection.
    auto rset = s.conn.ReadReply(std::min(t.mail, kResetTimeoutMs));
    if (!rset.ok() || rset->code != 250) return AfterTransaction::kStale;
  }
  auto rep = s.conn.ReadReply(t.mail);
  if (!rep.ok()) {
    tx.SettleAll(StreamFailed(TransactionStage::kReadMail, rep.status()));
    return AfterTransaction::kHangUp;
  }
  if (rep->code == 250) return std::nullopt;
  tx.SettleAll(ReplyOutcome(TransactionStage::kReadMail, *rep));
  return tx.pipelining ? AfterTransaction::kHangUp : AfterTransaction::kQuit;
}

// RCPT TO for every recipient sent (written already under PIPELINING) and
// the replies; ends the transaction when nobody was accepted.
std::optional<AfterTransaction> SendRecipients(Session& s, Transaction& tx) {
  const SmtpTimeouts& t = s.options.timeouts;
  for (size_t i : tx.sent) {
    if (!tx.pipelining) {
      Status w = s.conn.Write(RcptToCommand(tx.env.recipients[i], s.caps, tx.env.dsn) + "\r\n", t.rcpt);
      if (!w.ok()) return ConnectionLost(tx, TransactionStage::kSendRcpt, w);
    }
    auto rep = s.conn.ReadReply(t.rcpt);
    if (!rep.ok()) return ConnectionLost(tx, TransactionStage::kReadRcpt, rep.status());
    if (rep->code == 250 || rep->code == 251) tx.Accept(i);
    else tx.Settle(i, ReplyOutcome(TransactionStage::kReadRcpt, *rep));
  }
  if (tx.accepted() > 0) return std::nullopt;
  if (tx.pipelining) (void)s.conn.ReadReply(t.data_init);  // the DATA we pipelined gets a 5xx/503
  return AfterTransaction::kQuit;
}

// DATA (written already under PIPELINING), the message and the reply after
// its end, which settles every accepted recipient.
AfterTransaction SendData(Session& s, Transaction& tx) {
  const SmtpTimeouts& t = s.options.timeouts;
  if (!tx.pipelining) {
    Status w = s.conn.Write("DATA\r\n", t.data_init);
    if (!w.ok()) return ConnectionLost(tx, TransactionStage::kSendData, w);
  }
  auto data = s.conn.ReadReply(t.data_init);
  if (!data.ok()) return ConnectionLost(tx, TransactionStage::kReadData, data.status());
  if (data->code != 354) {
    tx.SettleOpen(ReplyOutcome(TransactionStage::kReadData, *data));
    return AfterTransaction::kQuit;
  }
  Status w = s.conn.Write(tx.env.message->data, t.data_xfer, t.min_data_rate);
  if (!w.ok()) return ConnectionLost(tx, TransactionStage::kSendMessage, w);
  auto done = s.conn.ReadReply(t.data_done);
  if (!done.ok()) return ConnectionLost(tx, TransactionStage::kReadEndOfData, done.status());
  tx.SettleOpen(ReplyOutcome(TransactionStage::kReadEndOfData, *done));
  return AfterTransaction::kQuit;
}

// Phase: the mail transaction. Fills s.result.recipients, one per
// envelope recipient.
AfterTransaction RunTransaction(Session& s, const Envelope& env) {
  Transaction tx(env, &s.result.recipients, s.caps.pipelining);
  if (std::optional<RcptResult> refusal = ServerCannotTake(s.caps, env)) {
    tx.SettleAll(*refusal);
    return AfterTransaction::kQuit;
  }
  s.result.dsn_passed = s.caps.dsn && !env.dsn.notify.empty();
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    if (env.recipients[i].utf8 && !s.caps.smtputf8) tx.Settle(i, ServerLacks(MissingExtension::kSmtpUtf8Recipient));
    else tx.sent.push_back(i);
  }
  if (tx.sent.empty()) return AfterTransaction::kQuit;
  if (std::optional<AfterTransaction> end = SendMail(s, tx)) return *end;
  if (std::optional<AfterTransaction> end = SendRecipients(s, tx)) return *end;
  return SendData(s, tx);
}

// The phases before a transaction: connect, greeting, EHLO, STARTTLS and
// the server's authentication, EHLO again.
PhaseResult StartSession(Session& s, const std::string& address, uint16_t port) {
  PhaseResult phase = Open(s, address, port);
  if (!phase.failed()) phase = Hello(s, false);
  if (!phase.failed()) phase = NegotiateTls(s);
  if (!phase.failed() && s.result.tls.used) phase = Hello(s, true);
  return phase;
}

// A session between transactions, with its own copy of the options it was
// set up with (Session refers to them).
class ParkedSmtpSession : public ReusableSession {
 public:
  ParkedSmtpSession(const SessionOptions& o, int64_t now) : options_(o), session_(options_, now) {}
  Session& session() { return session_; }

  bool Reset() override {
    // Anything the server sent unasked while parked (a 421 before it
    // closes, a TLS alert) means it is not waiting for us.
    if (session_.conn.PendingPlaintext() > 0) return false;
    if (session_.caps.pipelining) {
      // Sent with the next MAIL instead (SendMail): one round trip fewer per reused message; a
      // failure there leaves the message to a new session (RunSmtpSessionCached).
      session_.reset_pending = true;
      return true;
    }
    const int timeout = std::min(options_.timeouts.mail, kResetTimeoutMs);
    if (!session_.conn.Write("RSET\r\n", timeout).ok()) return false;
    auto rep = session_.conn.ReadReply(timeout);
    return rep.ok() && rep->code == 250;
  }
  void Close() override { Quit(session_); }

 private:
  const SessionOptions options_;
  Session session_;
};

// A session set up to the point of a transaction, as RunSmtpSession does
// it, or nullptr with the host's failure in `failed`. With `tls_sessions`,
// the TLS session stored under `key` is offered for resumption, and the
// session's own is stored when its server was authenticated
// (tls_session_store.h); a resumed session that cannot be authenticated
// again for want of a chain is dropped for one full handshake.
std::unique_ptr<ParkedSmtpSession> NewParkedSession(const std::string& address, uint16_t port,
                                                    const SessionOptions& options, int64_t now,
                                                    TlsSessionStore* tls_sessions, const std::string& key,
                                                    SessionResult* failed) {
  std::string resume = tls_sessions ? tls_sessions->Get(key).value_or("") : "";
  for (;;) {
    auto parked = std::make_unique<ParkedSmtpSession>(options, now);
    Session& s = parked->session();
    s.resume_data = std::exchange(resume, std::string());
    PhaseResult phase = StartSession(s, address, port);
    // After the EHLO that follows the handshake: a TLS 1.3 ticket has come with its reply. A resumed
    // session without a new ticket leaves the one it used in the store.
    if (!phase.failed() && tls_sessions && s.result.tls.verified)
      (void)tls_sessions->Put(key, s.conn.ResumptionData());
    if (!phase.failed() && options.requiretls) {
      if (std::optional<HostFailure> f = RequireTlsNotMet(s.result.tls, s.caps)) {
        Quit(s);
        phase = PhaseResult::Fail(std::move(*f));
      }
    }
    if (!phase.failed()) return parked;
    // A session that failed after offering the stored one (a server that chokes on resumption
    // would fail every time) or failed verification: the next one starts with a full handshake.
    if (tls_sessions && (!s.resume_data.empty() || (s.result.tls.used && !s.result.tls.verified)))
      tls_sessions->Forget(key);
    if (s.resumed_without_chain) continue;  // `resume` is empty now: at most once
    *failed = HostFailed(s.result, *phase.failure);
    return nullptr;
  }
}

void AppendKeyField(std::string* key, const std::string& field) {
  *key += std::to_string(field.size()) + ":" + field + ";";
}

}  // namespace

std::string SessionCacheKey(const std::string& address, uint16_t port, const SessionOptions& o) {
  std::string key;
  for (const std::string& f : {address, std::to_string(port), o.helo_name, o.bind_address4, o.bind_address6,
                               std::string(HostTlsName(o.tls)),
                               std::string(o.no_tls ? "plain" : "tls"), std::string(o.requiretls ? "rt" : "-"),
                               o.sni, o.pkix_host, o.ca_file, o.required_by})
    AppendKeyField(&key, f);
  // An RRset is a set (RFC 2181 §5): the same records in another order, as
  // DNS answers come, are the same policy and the same key.
  std::vector<std::string> tlsa;
  for (const TlsaRecord& t : o.tlsa) tlsa.push_back(t.ToString());
  std::sort(tlsa.begin(), tlsa.end());
  AppendKeyField(&key, std::to_string(tlsa.size()));
  for (const std::string& t : tlsa) AppendKeyField(&key, t);
  AppendKeyField(&key, std::to_string(o.dane_names.size()));
  for (const std::string& n : o.dane_names) AppendKeyField(&key, n);
  AppendKeyField(&key, std::to_string(o.pkix_names.size()));
  for (const std::string& n : o.pkix_names) AppendKeyField(&key, n);
  return key;
}

SessionResult RunSmtpSessionCached(SessionCache* cache, const std::string& address, uint16_t port,
                                   const SessionOptions& options, const Envelope* envelope, int64_t now) {
  if (!cache || options.probe_only || !envelope) return RunSmtpSession(address, port, options, envelope, now);
  const std::string key = SessionCacheKey(address, port, options);
  size_t uses = 0;
  int64_t opened_ms = 0;
  std::unique_ptr<ParkedSmtpSession> parked;
  if (options.reuse_connection) {
    std::unique_ptr<ReusableSession> taken = cache->Take(key, &uses, &opened_ms);
    parked.reset(dynamic_cast<ParkedSmtpSession*>(taken.get()));
    if (parked) (void)taken.release();
    // else: not ours (cannot happen under an SMTP key): closed as `taken` goes
  }
  // At most two passes: a new session never has an RSET pending, so never comes back kStale.
  for (;;) {
    if (!parked) {
      SessionResult failed;
      parked = NewParkedSession(address, port, options, now, options.resume_tls ? &cache->tls_sessions() : nullptr,
                                key, &failed);
      if (!parked) return failed;
      opened_ms = cache->NowMs();
      uses = 0;
    }
    Session& s = parked->session();
    s.result.dsn_passed = false;
    const AfterTransaction end = RunTransaction(s, *envelope);
    if (end == AfterTransaction::kStale) {
      parked.reset();  // dropped without QUIT: the server is not listening
      continue;
    }
    // Out of step with the server (the connection failed, a refused pipelined MAIL): never parked.
    if (end != AfterTransaction::kQuit) return s.result;
    SessionResult result = s.result;
    if (options.reuse_connection) cache->Put(key, std::move(parked), uses + 1, opened_ms);
    else parked->Close();
    return result;
  }
}

SessionResult RunSmtpSession(const std::string& address, uint16_t port, const SessionOptions& options,
                             const Envelope* envelope, int64_t now) {
  Session s(options, now);  // no resumption: nothing outlives this call to resume from
  PhaseResult phase = StartSession(s, address, port);
  if (phase.failed()) return HostFailed(s.result, *phase.failure);
  if (options.probe_only || !envelope) {
    Quit(s);
    return s.result;
  }
  if (options.requiretls) {
    if (std::optional<HostFailure> f = RequireTlsNotMet(s.result.tls, s.caps)) {
      Quit(s);
      return HostFailed(s.result, *f);
    }
  }
  if (RunTransaction(s, *envelope) == AfterTransaction::kQuit) Quit(s);
  return s.result;
}

}  // namespace mxsec
