// cli_deliver.cc - `mxsec deliver` and `mxsec probe`.
//
// deliver is what Postfix's pipe(8) runs: it must never lose a message and
// never bounce one for a local reason. Every failure that is not about the
// message or its recipients exits 75 (EX_TEMPFAIL) with a 4.x.x first line;
// the first stdout line always starts with an RFC 3463 code, which pipe(8)
// puts into the DSN. A result line per recipient goes to stderr; when
// stderr is the same pipe as stdout (pipe(8) reads both through one), every
// stderr line is held back until the status line has been written.
#include <netdb.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli_internal.h"
#include "mxsec/report/fleet_state.h"
#include "mxsec/smtp/probe.h"
#include "mxsec/smtp/deliver_message.h"
#include "mxsec/smtp/delivery.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/base/net_address.h"
#include "mxsec/queue/queue.h"  // WorkerBudget
#include "mxsec/smtp/smtp_client.h"
#include "mxsec/smtp/tls_status.h"

namespace mxsec {
namespace {

constexpr size_t kMaxMessageBytes = 256u << 20;  // beyond any real MTA's limit

}  // namespace

std::string DefaultHeloName() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) return "localhost.localdomain";
  std::string name = host;
  if (name.find('.') == std::string::npos) {
    addrinfo hints{};
    hints.ai_flags = AI_CANONNAME;
    addrinfo* res = nullptr;
    if (getaddrinfo(host, nullptr, &hints, &res) == 0 && res) {
      if (res->ai_canonname && strchr(res->ai_canonname, '.')) name = res->ai_canonname;
      freeaddrinfo(res);
    }
  }
  auto n = NormalizeHostName(name);
  return n.ok() ? n.value() : "localhost.localdomain";
}

SmtpTimeouts TimeoutsFrom(const Config& c) {
  SmtpTimeouts t;
  t.connect = c.smtp_connect_timeout * 1000;
  t.greeting = c.smtp_greeting_timeout * 1000;
  t.helo = c.smtp_helo_timeout * 1000;
  t.starttls = c.smtp_starttls_timeout * 1000;
  t.mail = c.smtp_mail_timeout * 1000;
  t.rcpt = c.smtp_rcpt_timeout * 1000;
  t.data_init = c.smtp_data_init_timeout * 1000;
  t.data_xfer = c.smtp_data_xfer_timeout * 1000;
  t.data_done = c.smtp_data_done_timeout * 1000;
  t.quit = c.smtp_quit_timeout * 1000;
  t.min_data_rate = c.smtp_min_data_rate;
  return t;
}

DeliveryOptions DeliveryOptionsFrom(const Config& cfg) {
  DeliveryOptions o;
  o.helo_name = cfg.helo_name.empty() ? DefaultHeloName() : cfg.helo_name;
  o.bind_address4 = cfg.smtp_bind_address;
  o.bind_address6 = cfg.smtp_bind_address6;
  o.port = static_cast<uint16_t>(cfg.smtp_port);
  o.timeouts = TimeoutsFrom(cfg);
  o.ca_file = cfg.ca_file;
  o.mx_address_limit = static_cast<size_t>(cfg.smtp_mx_address_limit);
  o.mx_session_limit = static_cast<size_t>(cfg.smtp_mx_session_limit);
  o.reuse_connection = cfg.smtp_connection_cache_on_demand;
  o.resume_tls = cfg.smtp_tls_session_cache;
  return o;
}

std::unique_ptr<AttemptLog> OpenAttemptLog(const Config& cfg, AttemptLogWrites writes) {
  if (!MakeDirs(cfg.state_dir)) {
    std::cerr << "mxsec: warning: " << cfg.state_dir << ": " << strerror(errno)
              << "; delivery attempts are not recorded\n";
    return nullptr;
  }
  auto log = OpenSqliteAttemptLog(cfg.state_dir + "/delivery.sqlite", writes);
  if (!log.ok()) {
    std::cerr << "mxsec: warning: " << log.error() << "; delivery attempts are not recorded\n";
    return nullptr;
  }
  return std::move(log.value());
}

namespace {

std::string TlsWord(const TlsInfo& t) {
  if (!t.used) return "none";
  return t.version + " " + t.cipher;
}

nlohmann::json TlsJson(const TlsInfo& t) {
  if (!t.used) return nullptr;
  return {{"used", true},        {"version", t.version},       {"cipher", t.cipher},
          {"verification", t.verification}, {"verified", t.verified}, {"detail", t.detail}};
}

// pipe(8) passes one exit status for all recipients: any deferral makes the
// whole call temporary (the caller keeps the message); otherwise the first
// bounce decides.
int ExitCodeFor(const std::vector<RecipientOutcome>& all) {
  for (const auto& o : all)
    if (o.status == RcptStatus::kDeferred) return EX_TEMPFAIL;
  for (const auto& o : all) {
    if (o.status != RcptStatus::kBounced) continue;
    if (o.code == "5.1.1") return EX_NOUSER;
    if (o.code == "5.1.2") return EX_NOHOST;
    return EX_UNAVAILABLE;
  }
  return EX_OK;
}

// pipe(8) gives the command one pipe for stdout and stderr and takes the
// DSN status code from the start of what it reads. Diagnostics written to
// std::cerr before the status line (warnings, per-recipient lines; stderr
// is unbuffered, stdout is not) would push the code out of first place and
// Postfix would fall back to 4.3.0/5.3.0. So while this object lives, and
// stdout and stderr are the same pipe or socket, std::cerr is collected; the
// destructor flushes stdout first, then writes what was collected.
class HoldDiagnostics {
 public:
  HoldDiagnostics() {
    struct stat out, err;
    if (fstat(STDOUT_FILENO, &out) == 0 && fstat(STDERR_FILENO, &err) == 0 && out.st_dev == err.st_dev &&
        out.st_ino == err.st_ino && (S_ISFIFO(out.st_mode) || S_ISSOCK(out.st_mode))) {
      saved_ = std::cerr.rdbuf(held_.rdbuf());
    }
  }
  ~HoldDiagnostics() {
    if (!saved_) return;
    std::cout.flush();
    std::cerr.rdbuf(saved_);
    std::cerr << held_.str();
    std::cerr.flush();
  }
  HoldDiagnostics(const HoldDiagnostics&) = delete;
  HoldDiagnostics& operator=(const HoldDiagnostics&) = delete;

 private:
  std::ostringstream held_;
  std::streambuf* saved_ = nullptr;
};

}  // namespace

namespace {

// Usage problems exit 75 too: a broken master.cf must defer, not bounce.
int DeferForUsage(const std::string& why) {
  std::cout << "4.3.5 mxsec deliver: " << why << "\n";
  std::cerr << "mxsec: deliver: " << why << "\n";
  return EX_TEMPFAIL;
}

// deliver [--json] -f SENDER [--] RCPT...
struct DeliverArguments {
  bool json = false;
  bool requiretls = false;  // --requiretls: REQUIRETLS (RFC 8689)
  Mailbox sender;
  std::vector<std::string> recipients;  // as given; checked one by one when delivering
};

// Returns EX_OK, or the exit code of a usage error (printed).
int ParseDeliverArguments(const std::vector<std::string>& args, DeliverArguments* out) {
  std::optional<std::string> sender_arg;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      out->recipients.insert(out->recipients.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (a == "--json") { out->json = true; continue; }
    if (a == "--requiretls") { out->requiretls = true; continue; }
    if (a == "-f") {
      if (i + 1 >= args.size()) return DeferForUsage("-f needs the envelope sender");
      sender_arg = args[++i];
      continue;
    }
    if (a.rfind("-f", 0) == 0 && a.size() > 2) { sender_arg = a.substr(2); continue; }
    if (!a.empty() && a[0] == '-') return DeferForUsage("unknown option \"" + a + "\"");
    out->recipients.push_back(a);
  }
  if (!sender_arg) return DeferForUsage("no envelope sender (-f SENDER; -f '' for the null sender)");
  if (out->recipients.empty()) return DeferForUsage("no recipient given");
  auto sender = ParseMailbox(*sender_arg, true);
  if (!sender.ok()) return DeferForUsage("invalid sender address: " + sender.error());
  out->sender = sender.value();
  return EX_OK;
}

// The message on stdin, read whole and prepared: a message that can never
// be sent is refused before any connection is made. Returns EX_OK, or the
// exit code with its status line printed.
int ReadMessage(PreparedMessage* out, bool* tls_required_no) {
  std::string raw;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    raw.append(buf, n);
    if (raw.size() > kMaxMessageBytes) {
      std::cout << "5.3.4 message larger than " << kMaxMessageBytes << " octets\n";
      return EX_DATAERR;
    }
  }
  if (ferror(stdin)) {
    std::cout << "4.3.0 cannot read the message from standard input\n";
    return EX_TEMPFAIL;
  }
  *tls_required_no = HasTlsRequiredNo(raw);
  auto message = PrepareMessage(raw, MessageOptions{});
  if (!message.ok()) {
    std::cout << "5.6.0 message refused, it cannot be sent by SMTP: " << message.error() << "\n";
    std::cerr << "mxsec: deliver: message refused: " << message.error() << "\n";
    return EX_DATAERR;
  }
  *out = std::move(message.value());
  return EX_OK;
}

// The lines deliver writes on stderr from several delivery threads.
class DeliverLog {
 public:
  void Line(const std::string& line) {
    std::lock_guard<std::mutex> l(mu_);
    std::cerr << "mxsec: deliver: " << line << "\n";
  }
  void Warn(const std::string& line) { Line("warning: " + line); }

 private:
  std::mutex mu_;
};

// One outcome per recipient argument; the valid ones are listed by domain
// in `by_domain`, the invalid ones bounce with 5.1.3.
std::vector<RecipientOutcome> SortRecipients(const std::vector<std::string>& args,
                                             std::map<std::string, std::vector<size_t>>* by_domain) {
  std::vector<RecipientOutcome> outcomes(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    auto m = ParseMailbox(args[i], false);
    if (!m.ok()) {
      outcomes[i].recipient.local = args[i];
      outcomes[i].status = RcptStatus::kBounced;
      outcomes[i].code = "5.1.3";
      outcomes[i].reply = "invalid recipient address: " + m.error();
      continue;
    }
    outcomes[i].recipient = m.value();
    (*by_domain)[m->domain].push_back(i);
  }
  return outcomes;
}

// Delivers to every domain at once, a thread each; fills in the outcomes
// of their recipients.
// The domains from a work list, on the calling thread and at most `max_threads` - 1 helpers
// (queue_run_concurrency, as a queue run): a message to one domain, the usual case under
// pipe(8), starts no thread (no stack and no second malloc arena in a short process), and one to
// thousands of domains never starts a thread per domain. A helper that cannot be started is
// warned about and the work goes on with the threads there are.
void DeliverToDomains(const DomainDeliveryContext& context, const Mailbox& sender, const PreparedMessage& message,
                      MessageTls message_tls, const std::map<std::string, std::vector<size_t>>& by_domain,
                      size_t max_threads, std::vector<RecipientOutcome>* outcomes) {
  std::vector<std::pair<const std::string*, const std::vector<size_t>*>> work;
  for (const auto& [domain, ids] : by_domain) work.emplace_back(&domain, &ids);
  std::atomic<size_t> next{0};
  auto run = [&] {
    for (size_t k = next++; k < work.size(); k = next++) {
      const std::vector<size_t>& ids = *work[k].second;
      std::vector<Mailbox> rcpts;
      for (size_t i : ids) rcpts.push_back((*outcomes)[i].recipient);
      std::vector<RecipientOutcome> got =
          ResolveAndDeliver(context, *work[k].first, sender, rcpts, message, nullptr, message_tls);
      for (size_t j = 0; j < ids.size(); ++j) (*outcomes)[ids[j]] = got[j];
    }
  };
  WorkerBudget helpers_budget(max_threads > 0 ? max_threads - 1 : 0);
  std::vector<std::thread> helpers;
  for (size_t h = 1; h < work.size(); ++h) {
    std::thread t;
    std::string why;
    if (!helpers_budget.TryStart(run, &t, &why)) {
      if (!why.empty() && context.warn)
        context.warn("cannot start a delivery thread (" + why + "); going on with " +
                     std::to_string(helpers.size() + 1));
      break;
    }
    helpers.push_back(std::move(t));
  }
  run();
  for (std::thread& t : helpers) helpers_budget.Join(&t);
}

void PrintRecipientLines(const std::vector<RecipientOutcome>& outcomes) {
  for (const RecipientOutcome& o : outcomes) {
    std::string relay = o.relay_host.empty() ? "none"
                                             : FormatRelay(o.relay_host, o.relay_address, o.relay_port);
    std::cerr << "mxsec: deliver: " << o.recipient.ToString() << ": status=" << RcptStatusName(o.status)
              << " relay=" << relay << " tls=" << o.tls_status << " cipher=" << TlsWord(o.tls)
              << " verify=" << (o.tls.used ? o.tls.verification : "none") << (o.tls.resumed ? " resumed=yes" : "")
              << " code=" << o.code
              << " reply=" << o.reply << "\n";
  }
}

std::string DeliverJson(int code, const std::vector<RecipientOutcome>& outcomes) {
  nlohmann::json j;
  j["exit"] = code;
  j["recipients"] = nlohmann::json::array();
  for (const RecipientOutcome& o : outcomes) {
    nlohmann::json r;
    r["recipient"] = o.recipient.ToString();
    r["status"] = RcptStatusName(o.status);
    r["code"] = o.code;
    r["reply"] = o.reply;
    r["relay"] = o.relay_host.empty() ? nlohmann::json(nullptr)
                                      : nlohmann::json{{"host", o.relay_host},
                                                       {"address", o.relay_address},
                                                       {"port", o.relay_port}};
    r["tls"] = TlsJson(o.tls);
    if (o.tls.used) r["tls_resumed"] = o.tls.resumed;
    r["tls_status"] = o.tls_status;
    j["recipients"].push_back(r);
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The line pipe(8) copies into the DSN when not all was delivered: the
// first recipient that made the exit code what it is.
std::string FailureStatusLine(int code, const std::vector<RecipientOutcome>& outcomes) {
  const RecipientOutcome* first = nullptr;
  for (const auto& o : outcomes) {
    if ((code == EX_TEMPFAIL) == (o.status == RcptStatus::kDeferred) && o.status != RcptStatus::kDelivered) {
      first = &o;
      break;
    }
  }
  if (!first) first = &outcomes.front();
  std::string text = first->reply;
  if (!first->relay_host.empty() && text.find(first->relay_host) == std::string::npos)
    text = FormatRelay(first->relay_host, first->relay_address, first->relay_port) + ": " + text;
  size_t counts[3] = {0, 0, 0};
  for (const auto& o : outcomes) ++counts[static_cast<int>(o.status)];
  std::string line = first->code + " " + text;
  if (outcomes.size() > 1)
    line += " (" + std::to_string(counts[0]) + " delivered, " + std::to_string(counts[1]) + " deferred, " +
            std::to_string(counts[2]) + " bounced)";
  return line;
}

// The status line (or, with --json, the JSON object) on stdout.
void PrintDeliverResult(bool json, int code, const std::vector<RecipientOutcome>& outcomes) {
  if (json) {
    std::cout << DeliverJson(code, outcomes) << "\n";
  } else if (code == EX_OK) {
    std::cout << "2.0.0 delivered to " << outcomes.size() << " recipient" << (outcomes.size() == 1 ? "" : "s")
              << "\n";
  } else {
    std::cout << FailureStatusLine(code, outcomes) << "\n";
  }
}

}  // namespace

int RunDeliver(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  HoldDiagnostics hold;
  DeliverArguments parsed;
  if (int bad = ParseDeliverArguments(args, &parsed); bad != EX_OK) return bad;
  PreparedMessage message;
  bool tls_required_no = false;
  if (int refused = ReadMessage(&message, &tls_required_no); refused != EX_OK) return refused;
  if (parsed.requiretls && tls_required_no) {
    std::cout << "5.7.0 message refused: --requiretls and a \"TLS-Required: No\" header contradict each other "
                 "(RFC 8689)\n";
    std::cerr << "mxsec: deliver: message refused: --requiretls and \"TLS-Required: No\" contradict each other\n";
    return EX_DATAERR;
  }
  const MessageTls message_tls = parsed.requiretls ? MessageTls::kRequireTls
                                 : tls_required_no  ? MessageTls::kTlsOptional
                                                    : MessageTls::kPolicy;

  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return DeferForUsage(built.message());
  CheckResolver(&rt, "deliver: ", g.verbose > 0);
  std::unique_ptr<AttemptLog> attempts = OpenAttemptLog(cfg);
  DeliverLog log;
  DeliveryOptions dopt = DeliveryOptionsFrom(cfg);
  dopt.log = [&log](const std::string& line) { log.Line(line); };
  DomainDeliveryContext context;
  context.engine = rt.engine.get();
  context.options = &dopt;
  context.attempts = attempts.get();
  context.clock = SystemClock();
  context.warn = [&log](const std::string& line) { log.Warn(line); };

  std::map<std::string, std::vector<size_t>> by_domain;
  std::vector<RecipientOutcome> outcomes = SortRecipients(parsed.recipients, &by_domain);
  DeliverToDomains(context, parsed.sender, message, message_tls, by_domain,
                   static_cast<size_t>(cfg.queue_run_concurrency), &outcomes);
  attempts.reset();  // written: now forward them (a fleet's shared log)
  ForwardAttemptsAfterDelivery(cfg, [&log](const std::string& line) { log.Warn(line); });

  const int code = ExitCodeFor(outcomes);
  PrintRecipientLines(outcomes);
  PrintDeliverResult(parsed.json, code, outcomes);
  std::cout.flush();
  return code;
}

namespace {

nlohmann::json ProbeTlsJson(const TlsInfo& tls) {
  nlohmann::json t;
  t["used"] = tls.used;
  t["version"] = tls.version;
  t["cipher"] = tls.cipher;
  t["verification"] = tls.verification;
  t["verified"] = tls.verified;
  t["detail"] = tls.detail;
  t["matched_tlsa"] = tls.matched ? nlohmann::json(tls.matched->ToString()) : nlohmann::json(nullptr);
  nlohmann::json chain = nlohmann::json::array();
  for (const CertificateInfo& c : tls.chain) {
    chain.push_back({{"subject", c.subject}, {"issuer", c.issuer}, {"spki_sha256", c.spki_sha256},
                     {"not_before", c.not_before}, {"not_after", c.not_after}, {"dns_names", c.dns_names}});
  }
  t["chain"] = chain;
  return t;
}

nlohmann::json ProbeHostJson(const MxPolicy& mx, const std::string& addr, uint16_t port, const SessionResult& sr) {
  nlohmann::json h;
  h["host"] = mx.host;
  h["address"] = addr;
  h["port"] = port;
  h["result"] = sr.host_failed ? "failed" : "ok";
  h["code"] = sr.code;
  h["error"] = sr.error;
  h["failure_type"] = sr.failure_type;
  h["ehlo"] = sr.ehlo;
  h["requiretls"] = AnnouncesRequireTls(sr);
  h["tls"] = ProbeTlsJson(sr.tls);
  h["tls_status"] = TlsFeatureStatus(FactsOfSession(mx.tls, sr));
  return h;
}

std::string ProbeHostText(const MxPolicy& mx, const std::string& addr, uint16_t port, const SessionResult& sr) {
  std::string text = "  probe " + FormatRelay(mx.host, addr, port) + ": ";
  const std::string status = " (tls=" + TlsFeatureStatus(FactsOfSession(mx.tls, sr)) + ")";
  if (sr.host_failed) {
    text += "FAILED " + sr.code + " " + sr.error + status + "\n";
  } else {
    text += std::string("ok, ") + (sr.tls.used ? TlsWord(sr.tls) : "no TLS") + ", verification " +
            (sr.tls.verification.empty() ? "none" : sr.tls.verification) + (sr.tls.verified ? " (verified)" : "") +
            (AnnouncesRequireTls(sr) ? ", REQUIRETLS announced" : "") + status + "\n";
    if (!sr.tls.detail.empty()) text += "      " + sr.tls.detail + "\n";
  }
  for (size_t k = 0; k < sr.tls.chain.size(); ++k) {
    const CertificateInfo& c = sr.tls.chain[k];
    text += "      depth " + std::to_string(k) + ": " + c.subject + " (issuer " + c.issuer + ", spki sha256 " +
            c.spki_sha256 + ")\n";
  }
  return text;
}

// What probe prints for the domain after probing its hosts (probe.h).
std::string ProbeDomain(const DomainPolicy& p, const DeliveryOptions& dopt, AttemptLog* attempts, bool json) {
  nlohmann::json hosts = nlohmann::json::array();
  std::string text = PolicyToText(p);
  for (const ProbedAddress& a : ProbeMxHosts(p, dopt, attempts, SystemClock())) {
    hosts.push_back(ProbeHostJson(*a.mx, a.address, a.port, a.session));
    text += ProbeHostText(*a.mx, a.address, a.port, a.session);
  }
  if (!json) return text;
  nlohmann::json j;
  j["domain"] = p.domain;
  j["policy"] = nlohmann::json::parse(PolicyToJsonLine(p), nullptr, false);
  j["hosts"] = hosts;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

int RunProbe(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  DomainArguments parsed;
  if (int bad = ParseDomainArguments("probe", args, false, &parsed); bad != EX_OK) return bad;
  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, built.message());
  CheckResolver(&rt, "probe: ", g.verbose > 0);
  std::unique_ptr<AttemptLog> attempts = OpenAttemptLog(cfg);
  DeliveryOptions dopt = DeliveryOptionsFrom(cfg);

  std::vector<DomainPolicy> policies = rt.engine->ResolveMany(parsed.domains);
  for (const DomainPolicy& p : policies)
    if (!p.override_warning.empty()) std::cerr << "mxsec: probe: warning: " << p.override_warning << "\n";
  std::vector<std::string> outputs(policies.size());
  std::vector<std::thread> workers;
  for (size_t d = 0; d < policies.size(); ++d)
    workers.emplace_back([&, d] { outputs[d] = ProbeDomain(policies[d], dopt, attempts.get(), parsed.json); });
  for (auto& t : workers) t.join();
  for (const std::string& o : outputs) std::cout << o;
  std::cout.flush();
  return std::cout ? EX_OK : EX_IOERR;
}

}  // namespace mxsec
