// cli_sendmail.cc - `mxsec sendmail` (also run as `sendmail` or `mailq`)
// and `mxsec queue list|run|flush|delete ID`.
//
// sendmail exits 0 only once the message is in the queue durably (queue.h);
// with -odi it first makes one delivery attempt in the foreground, with -odb
// (the default) a detached child makes it after the exit, with -odq the
// queue runner does. Exit codes (sysexits.h): 64 usage (no recipients, bad
// option or address), 65 a message that can never be sent (NUL byte, bare
// CR, a line over 998 octets as given or after header editing, over
// message_size_limit), 75 (74 for an I/O error) when
// it cannot be queued (the caller keeps the message), 78 configuration.
// Delivery results are logged to syslog (mail facility) and, in the
// foreground, to stderr. `queue run|flush` and sendmail -q deliver only for
// root or the owner of queue_dir; anyone else gets a request file in
// queue_dir that the next privileged run takes (mxsec(8)). A run, and a
// delivery of sendmail, has at most queue_run_concurrency delivery threads
// (queue.h WorkerBudget; never one per domain) and makes at most
// default_destination_concurrency_limit deliveries to one domain at once
// (queue.h DestinationLimiter), together with every other delivering
// process of the queue directory (its slot files, DestinationSlotFiles): a
// sendmail delivery waits for a slot at most kSubmissionSlotWait and then
// leaves the message queued, due, for the next run; a run never waits for
// another process's slot, it leaves that destination's messages for the
// next run. A thread that cannot be started never ends it. A queued message starts with a Received: field naming helo_name, the
// submitting user ID and the queue ID (as Postfix's pickup adds).
#include <fcntl.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli_internal.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/queue/dsn.h"
#include "mxsec/report/fleet_state.h"
#include "mxsec/queue/queue.h"
#include "mxsec/queue/submission.h"
#include "mxsec/smtp/deliver_message.h"
#include "mxsec/smtp/session_cache.h"
#include "mxsec/smtp/smtp_client.h"

namespace mxsec {
namespace {

// Beyond this, the input is drained but not kept (no limit configured).
constexpr size_t kHardMaxMessage = 256u << 20;
// Requests from users who may not run the queue themselves (mxsec(8)): their names in queue_dir.
// Only their existence counts; the runner unlinks them and never opens them.
constexpr char kRunRequest[] = ".run-request";
constexpr char kFlushRequest[] = ".flush-request";

std::string SenderDomain(const Config& cfg) {
  if (!cfg.sender_domain.empty()) return cfg.sender_domain;
  if (!cfg.helo_name.empty()) return cfg.helo_name;
  return DefaultHeloName();
}

QueueSettings SettingsFrom(const Config& cfg) {
  QueueSettings s;
  s.lifetime = cfg.queue_lifetime;
  s.retry_min = cfg.queue_retry_min;
  s.retry_max = cfg.queue_retry_max;
  s.reporting_mta = cfg.helo_name.empty() ? DefaultHeloName() : cfg.helo_name;
  s.bounce_domain = SenderDomain(cfg);
  s.delay_warning = cfg.queue_delay_warning;
  s.max_domains_per_attempt = static_cast<size_t>(cfg.queue_max_domains_per_attempt);
  return s;
}

// Logs to syslog always, and to stderr when `to_stderr`.
struct Logger {
  bool to_stderr = true;
  std::string prefix;
  std::mutex mu;
  void operator()(const std::string& line) {
    std::lock_guard<std::mutex> l(mu);
    syslog(LOG_INFO, "%s", line.c_str());
    if (to_stderr) std::cerr << "mxsec: " << prefix << line << "\n";
  }
  void Warn(const std::string& line) {
    std::lock_guard<std::mutex> l(mu);
    syslog(LOG_WARNING, "warning: %s", line.c_str());
    if (to_stderr) std::cerr << "mxsec: " << prefix << "warning: " << line << "\n";
  }
};

// What delivers queued messages: the policy engine and DeliverDomain, joined by ResolveAndDeliver.
class Engine {
 public:
  ~Engine() {
    attempts_.reset();  // written: now forwarded (a fleet's shared log), the run's deliveries done
    if (cfg_ && log_) ForwardAttemptsAfterDelivery(*cfg_, [log = log_](const std::string& l) { log->Warn(l); });
  }
  Status Init(const Config& cfg, Logger* log) {
    cfg_ = &cfg;
    Status s = BuildRuntime(cfg, &rt_);
    if (!s.ok()) return s;
    attempts_ = OpenAttemptLog(cfg, AttemptLogWrites::kBatched);  // written at the latest when the Engine goes
    dopt_ = DeliveryOptionsFrom(cfg);
    dopt_.log = [log](const std::string& line) { (*log)(line); };
    // Messages to one destination share sessions (keyed on its policy, session_cache.h).
    dopt_.session = [cache = &sessions_](const std::string& address, uint16_t port, const SessionOptions& options,
                                         const Envelope* envelope, int64_t now) {
      return RunSmtpSessionCached(cache, address, port, options, envelope, now);
    };
    log_ = log;
    return Status::Ok();
  }
  DomainDeliverer Deliverer() {
    DomainDeliveryContext context;
    context.engine = rt_.engine.get();
    context.options = &dopt_;
    context.attempts = attempts_.get();
    context.clock = SystemClock();
    context.recent = &recent_;
    context.warn = [log = log_](const std::string& line) { log->Warn(line); };
    return [context](const std::string& domain, const Mailbox& sender, const std::vector<Mailbox>& rcpts,
                     const PreparedMessage& msg, const DsnRequest& dsn, MessageTls message_tls) {
      return ResolveAndDeliver(context, domain, sender, rcpts, msg, &dsn, message_tls);
    };
  }

 private:
  Runtime rt_;
  const Config* cfg_ = nullptr;
  Logger* log_ = nullptr;
  std::unique_ptr<AttemptLog> attempts_;
  DeliveryOptions dopt_;
  SessionCache sessions_;  // closes its sessions (QUIT) when the Engine goes, after the run
  // A run's messages to one domain share its decided policy for this long (seconds): short
  // against any TTL a domain sets for TLSA or MTA-STS records, long enough that a burst to one
  // destination costs one set of lookups, not one per message. Domains: a bound on memory (a
  // policy is a few KB); beyond it, lookups per message as without.
  static constexpr int64_t kRecentPolicySeconds = 30;
  static constexpr size_t kRecentPolicyDomains = 1000;
  RecentPolicies recent_{kRecentPolicySeconds, kRecentPolicyDomains};
};

// How long the delivery of a submission (-odb, -odi) waits for a slot of a destination whose
// default_destination_concurrency_limit deliveries are all in progress in other processes
// (queue.h DestinationSlotFiles), before it leaves the message queued for the next queue run.
// A delivery holds its slot for one SMTP transaction, about a second, so a burst of submissions
// to one domain (cron jobs that all mail at the full hour: 200 to a limit of 20 is ten rounds)
// goes out within this wait with room to spare; a destination whose slots stay taken longer is
// slow or being flushed by a queue run, and the queue run (every 5 minutes,
// policy/systemd/mxsec-queue.timer) carries its messages over few sessions better than waiting
// processes do. It also bounds how long such a burst keeps one process per message alive.
constexpr std::chrono::seconds kSubmissionSlotWait{60};

bool MayRunQueue(const Config& cfg);

// The limit of deliveries to one domain at once, within this process and with the other
// processes of the queue directory (slot files there); a delivery waits at most `wait` for the
// other processes' slots.
struct DestinationLimits {
  DestinationLimits(const Config& cfg, std::chrono::milliseconds wait)
      : files(Env::Default(), cfg.queue_dir, static_cast<size_t>(cfg.default_destination_concurrency_limit),
              MayRunQueue(cfg) ? DestinationSlotFiles::Share::kAll : DestinationSlotFiles::Share::kSubmitter),
        limiter(static_cast<size_t>(cfg.default_destination_concurrency_limit), &files, wait) {}
  DestinationSlotFiles files;
  DestinationLimiter limiter;
};

// Delivers `id` (locked by `lock`, or not), then any DSN it produced, with at most
// queue_run_concurrency threads, the calling one included, and at most
// default_destination_concurrency_limit deliveries to one domain at once, this process's and
// others' together; a domain whose slots stay taken for kSubmissionSlotWait is left queued.
void DeliverNow(Queue& q, const std::string& id, QueueLock lock, Engine& engine, const Config& cfg, Logger& log) {
  WorkerBudget budget(static_cast<size_t>(cfg.queue_run_concurrency) - 1);
  DestinationLimits limits(cfg, kSubmissionSlotWait);
  DestinationLimiter& destinations = limits.limiter;
  QueueSettings settings = SettingsFrom(cfg);
  settings.workers = &budget;
  settings.destinations = &destinations;
  ProcessReport rep = ProcessQueuedMessage(q, id, std::move(lock), true, engine.Deliverer(), SystemClock(), settings,
                                           [&](const std::string& l) { log(l); });
  for (const std::string& dsn : rep.dsn_ids) {
    ProcessQueuedMessage(q, dsn, QueueLock(), true, engine.Deliverer(), SystemClock(), settings,
                         [&](const std::string& l) { log(l); });
  }
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (getrandom(raw.data(), bytes, 0) != static_cast<ssize_t>(bytes)) {
    for (size_t i = 0; i < bytes; ++i) raw[i] = static_cast<char>(rand());
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

// "user@domain" from an address that may lack the domain (-f root, mail root).
std::string Qualify(const std::string& a, const std::string& domain) {
  if (a.find('@') != std::string::npos) return a;
  return a + "@" + domain;
}

// A display name as an RFC 5322 quoted string when it needs one.
std::string DisplayName(const std::string& name) {
  bool plain = !name.empty();
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == ' ' || strchr("!#$%&'*+-/=?^_`{|}~", c))) plain = false;
  }
  if (plain) return name;
  std::string q = "\"";
  for (char c : name) {
    if (c == '\r' || c == '\n') continue;
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

int ListQueue(const Config& cfg, bool json) {
  auto q = Queue::Open(cfg.queue_dir, false);
  if (!q.ok()) {
    if (q.status().IsNotFound()) {
      if (!json) std::cout << "Mail queue is empty\n";
      return EX_OK;
    }
    return Fail(EX_TEMPFAIL, "queue: " + q.error());
  }
  std::vector<std::string> ids = q->Ids();
  size_t shown = 0;
  uint64_t bytes = 0;
  for (const std::string& id : ids) {
    QueueLock lock;
    LockState st = q->TryLock(id, &lock);
    // Released at once: a listing (mailq of any user) held up by SIGSTOP must not hold up a delivery.
    // The envelope is replaced by rename, so it reads whole without the lock.
    lock.Release();
    if (st == LockState::kGone) continue;
    auto env = q->ReadEnvelope(id);
    if (!env.ok()) continue;  // finished meanwhile, or written by a newer version
    const QueuedEnvelope& e = env.value();
    ++shown;
    bytes += e.size;
    if (json) {
      nlohmann::json j = nlohmann::json::parse(EnvelopeToJson(e));
      j["active"] = st == LockState::kBusy;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      continue;
    }
    if (shown == 1) std::cout << "-Queue ID-------- --Size-- ----Arrival Time---- -Sender/Recipient-------\n";
    char when[64];
    time_t t = static_cast<time_t>(e.queued_at);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
    char line[256];
    snprintf(line, sizeof line, "%-17s%s %8llu %-20s ", id.c_str(), st == LockState::kBusy ? "*" : " ",
             static_cast<unsigned long long>(e.size), when);
    std::cout << line << (e.sender.empty() ? "MAILER-DAEMON" : e.sender) << "\n";
    if (e.message_tls == MessageTls::kRequireTls) std::cout << "(REQUIRETLS: delivered only with it, RFC 8689)\n";
    if (e.message_tls == MessageTls::kTlsOptional)
      std::cout << "(TLS-Required: No: the recipient domains' DANE and MTA-STS demands are set aside)\n";
    if (!e.last_reason.empty()) std::cout << "(" << e.last_reason << ")\n";
    for (const QueuedRecipient& r : e.recipients) {
      if (r.state != RecipientState::kPending) continue;
      std::cout << std::string(49, ' ') << r.address << "\n";
    }
    std::cout << "\n";
  }
  if (!json) {
    if (shown == 0) std::cout << "Mail queue is empty\n";
    else
      std::cout << "-- " << (bytes + 1023) / 1024 << " Kbytes in " << shown << " Request" << (shown == 1 ? "" : "s")
                << ".\n";
  }
  std::cout.flush();
  return std::cout ? EX_OK : EX_IOERR;
}

// Whether this process may deliver the whole queue: the real user is root or owns queue_dir (a
// queue of one's own). Anyone else (a submitter running set-group-ID, or a member of the queue's
// group) must not hold delivery locks on other users' messages: a process its user can stop
// (SIGSTOP) would keep those messages from every runner for as long as it is stopped.
bool MayRunQueue(const Config& cfg) {
  const uid_t uid = getuid();
  if (uid == 0) return true;
  struct stat st{};
  if (stat(cfg.queue_dir.c_str(), &st) != 0) return true;  // Queue::Open reports it; a new queue is the caller's
  return st.st_uid == uid;
}

// What a user who may not run the queue gets: a request the privileged runner honours (the
// systemd path unit policy/systemd/mxsec-queue.path starts it at once, the timer at the latest).
int RequestQueueRun(const Config& cfg, bool force) {
  const std::string path = cfg.queue_dir + "/" + (force ? kFlushRequest : kRunRequest);
  // O_EXCL: never follows a link; an existing request is as good as a new one.
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0 && errno != EEXIST)
    return Fail(EX_TEMPFAIL, "queue: cannot request a queue run: " + path + ": " + strerror(errno));
  if (fd >= 0) close(fd);
  syslog(LOG_INFO, "queue %s requested by uid %u", force ? "flush" : "run", static_cast<unsigned>(getuid()));
  std::cerr << "mxsec: queue: " << (force ? "a flush" : "a run")
            << " of the queue was requested from the queue runner (" << path
            << "); this process delivers nothing itself, as it may not deliver other users' mail\n";
  return EX_OK;
}

// `queue run` (force = false: only messages that are due) and `flush` / sendmail -q (all).
int RunQueueOnce(const GlobalOptions& g, const Config& cfg, bool force) {
  if (!MayRunQueue(cfg)) return RequestQueueRun(cfg, force);
  auto q = Queue::Open(cfg.queue_dir, true);
  if (!q.ok()) return Fail(EX_TEMPFAIL, "queue: " + q.error());
  Logger log;
  log.prefix = "queue: ";
  // Requests of users (RequestQueueRun) are taken before the run: one made while it runs starts another.
  const bool flush_asked = unlink((cfg.queue_dir + "/" + kFlushRequest).c_str()) == 0;
  const bool run_asked = unlink((cfg.queue_dir + "/" + kRunRequest).c_str()) == 0;
  if (flush_asked || run_asked) log(std::string("a user asked for a queue ") + (flush_asked ? "flush" : "run"));
  force = force || flush_asked;
  Engine engine;
  Status s = engine.Init(cfg, &log);
  if (!s.ok()) return Fail(EX_CONFIG, s.message());
  // Every delivery thread of this run, message workers and their domain helpers, comes from here;
  // deliveries to one domain take a slot of `destinations` (queue.h RunQueuePass).
  WorkerBudget budget(static_cast<size_t>(cfg.queue_run_concurrency));
  // No wait for other processes' slots: a busy destination's messages are left for the next run
  // and the threads go on with the other destinations (queue.h RunQueuePass).
  DestinationLimits limits(cfg, std::chrono::milliseconds(0));
  DestinationLimiter& destinations = limits.limiter;
  QueueSettings settings = SettingsFrom(cfg);
  settings.workers = &budget;
  settings.destinations = &destinations;
  q->Clean(SystemClock(), 3600);
  std::atomic<size_t> done{0}, skipped{0}, errors{0};
  QueueRunHooks hooks;
  hooks.log = [&](const std::string& l) { log(l); };
  hooks.warn = [&](const std::string& l) { log.Warn(l); };
  hooks.done = [&](const ProcessReport& rep) {
    if (rep.skipped) {
      ++skipped;
      if (g.verbose) log(rep.id + ": skipped: " + rep.skip_reason);
    } else {
      ++done;
    }
    if (!rep.error.empty()) ++errors;
  };
  // DSNs queued during this run are picked up by the loop over fresh listings.
  std::set<std::string> seen;
  const DomainDeliverer deliver = engine.Deliverer();
  for (;;) {
    std::vector<std::string> batch;
    for (const std::string& id : q->Ids())
      if (seen.insert(id).second) batch.push_back(id);
    if (batch.empty()) break;
    RunQueuePass(q.value(), batch, force, deliver, SystemClock(), settings, hooks);
  }
  if (g.verbose)
    log("run finished: " + std::to_string(done.load()) + " processed, " + std::to_string(skipped.load()) +
        " skipped, " + std::to_string(errors.load()) + " with local errors");
  return errors.load() ? EX_TEMPFAIL : EX_OK;
}

}  // namespace

int RunQueue(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  openlog("mxsec", LOG_PID, LOG_MAIL);
  if (args.empty()) return Fail(EX_USAGE, "queue: expected list, run, flush or delete ID");
  const std::string& sub = args[0];
  if (sub == "list") {
    bool json = false;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--json") json = true;
      else return Fail(EX_USAGE, "queue list: unknown argument \"" + args[i] + "\"");
    }
    return ListQueue(cfg, json);
  }
  if (sub == "run" || sub == "flush") {
    if (args.size() > 1) return Fail(EX_USAGE, "queue " + sub + ": unexpected argument \"" + args[1] + "\"");
    return RunQueueOnce(g, cfg, sub == "flush");
  }
  if (sub == "delete") {
    if (args.size() < 2) return Fail(EX_USAGE, "queue delete: expected one or more queue IDs");
    auto q = Queue::Open(cfg.queue_dir, false);
    if (!q.ok()) return Fail(EX_TEMPFAIL, "queue: " + q.error());
    int code = EX_OK;
    for (size_t i = 1; i < args.size(); ++i) {
      const std::string& id = args[i];
      if (!ValidQueueId(id)) {
        code = Fail(EX_USAGE, "queue delete: \"" + id + "\" is not a queue ID (17 characters 0-9A-F)");
        continue;
      }
      QueueLock lock;
      LockState st = q->TryLock(id, &lock);
      if (st == LockState::kGone) {
        code = Fail(EX_NOINPUT, "queue delete: " + id + ": no such message in " + cfg.queue_dir);
        continue;
      }
      if (st == LockState::kBusy) {
        code = Fail(EX_TEMPFAIL, "queue delete: " + id + ": being delivered right now; try again");
        continue;
      }
      Status s = q->Remove(id);
      if (!s.ok()) {
        code = Fail(EX_IOERR, "queue delete: " + s.message());
        continue;
      }
      syslog(LOG_INFO, "%s: deleted by an administrator", id.c_str());
      std::cout << id << ": deleted\n";
    }
    return code;
  }
  return Fail(EX_USAGE, "queue: unknown subcommand \"" + sub + "\" (list, run, flush, delete ID)");
}

namespace {

// What every step of a submission reads.
struct SubmitContext {
  const Config& cfg;
  const SendmailOptions& options;
  std::string who;     // "sendmail: ", the prefix of every message
  std::string domain;  // sender_domain: qualifies addresses without one
  size_t limit;        // message_size_limit, or kHardMaxMessage without one
};

// The invoking user: login name, and the full name from the GECOS field.
struct InvokingUser {
  std::string login;
  std::string gecos;
};

InvokingUser CurrentUser() {
  InvokingUser u;
  if (passwd* pw = getpwuid(getuid())) {
    u.login = pw->pw_name;
    u.gecos = pw->pw_gecos ? pw->pw_gecos : "";
    u.gecos = u.gecos.substr(0, u.gecos.find(','));
  } else {
    u.login = "uid" + std::to_string(getuid());
  }
  return u;
}

// Every step below returns EX_OK to go on, or the exit code the submission
// ends with (its reason printed).

// The envelope sender: -f/-r, else the invoking user at sender_domain.
int EnvelopeSender(const SubmitContext& c, const InvokingUser& user, Mailbox* out) {
  std::string sender_text;
  if (c.options.sender) {
    sender_text = *c.options.sender;
    if (sender_text.size() >= 2 && sender_text.front() == '<' && sender_text.back() == '>')
      sender_text = sender_text.substr(1, sender_text.size() - 2);
    if (!sender_text.empty()) sender_text = Qualify(sender_text, c.domain);
  } else {
    sender_text = user.login + "@" + c.domain;
  }
  auto sender = ParseMailbox(sender_text, true);
  if (!sender.ok())
    return Fail(EX_USAGE, c.who + "invalid sender address \"" + sender_text + "\": " + sender.error());
  *out = sender.value();
  return EX_OK;
}

// Command-line recipients (each may be an address list, "A <a@b>, c@d").
int ArgumentRecipients(const SubmitContext& c, std::vector<std::string>* rcpts) {
  for (const std::string& a : c.options.recipients) {
    auto list = ParseAddressList(a);
    if (!list.ok()) return Fail(EX_USAGE, c.who + "invalid recipient \"" + a + "\": " + list.error());
    for (const std::string& r : list.value()) rcpts->push_back(Qualify(r, c.domain));
  }
  if (!c.options.extract_recipients && rcpts->empty())
    return Fail(EX_USAGE, c.who + "no recipients given (name them as arguments, or use -t to take them from the "
                                  "To, Cc and Bcc headers)");
  return EX_OK;
}

// The message. Read to the end (a writer is never cut off with SIGPIPE), keep at most the limit + 1.
int ReadInput(const SubmitContext& c, std::string* raw) {
  bool too_big = false;
  char buf[65536];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(EX_IOERR, c.who + "cannot read the message from standard input: " + strerror(errno));
    }
    if (n == 0) break;
    if (raw->size() <= c.limit + 65536) raw->append(buf, static_cast<size_t>(n));
    else too_big = true;
  }
  if (!c.options.ignore_dots) raw->resize(LoneDotEnd(*raw));
  if (too_big || raw->size() > c.limit)
    return Fail(EX_DATAERR, c.who + "message refused: larger than message_size_limit (" + std::to_string(c.limit) +
                                " octets)");
  return EX_OK;
}

// Headers: From/Date/Message-ID when missing, Bcc removed, -t recipients. `raw` is consumed.
int EditMessage(const SubmitContext& c, const Mailbox& sender, const InvokingUser& user, std::string* raw,
                EditedMessage* out) {
  const SendmailOptions& o = c.options;
  HeaderEdit edit;
  edit.extract_recipients = o.extract_recipients;
  edit.qualify_domain = c.domain;
  std::string from_name = o.full_name ? *o.full_name : (o.sender ? "" : user.gecos);
  const std::string shown_sender = sender.ToString().empty() ? "MAILER-DAEMON@" + c.domain : sender.ToString();
  edit.from = from_name.empty() ? shown_sender : DisplayName(from_name) + " <" + shown_sender + ">";
  edit.date = Rfc5322Date(SystemClock()->Now());
  edit.message_id = "<" + std::to_string(SystemClock()->Now()) + "." + RandomHex(8) + "@" + c.domain + ">";
  // One line-ending rule, NUL, bare CR and lines over 998 octets (of the input, naming its line,
  // and after editing, naming the header field) refused before anything is queued.
  auto edited = PrepareSubmission(*raw, edit);
  if (!edited.ok()) return Fail(EX_DATAERR, c.who + "message refused: " + edited.error());
  std::string().swap(*raw);
  // What is queued is what the SMTP encoding accepts (PrepareSubmission promises it; exit 0 must mean sendable).
  if (auto sendable = PrepareMessage(edited->message, MessageOptions{}); !sendable.ok())
    return Fail(EX_DATAERR, c.who + "message refused, it cannot be sent by SMTP: " + sendable.error());
  *out = std::move(edited.value());
  return EX_OK;
}

// What the sender asks of the message's TLS (RFC 8689): -O requiretls=yes, or a
// "TLS-Required: No" field; both at once contradict each other and are refused.
int MessageTlsRequest(const SubmitContext& c, const EditedMessage& edited, MessageTls* out) {
  const bool optional = HasTlsRequiredNo(edited.message);
  if (c.options.requiretls && optional)
    return Fail(EX_DATAERR, c.who + "message refused: it asks for REQUIRETLS (-O requiretls=yes) and its header has "
                                    "\"TLS-Required: No\"; they contradict each other (RFC 8689)");
  *out = c.options.requiretls ? MessageTls::kRequireTls : optional ? MessageTls::kTlsOptional : MessageTls::kPolicy;
  return EX_OK;
}

// The recipients -t found in the headers, added to `rcpts`; then there must be some.
int HeaderRecipients(const SubmitContext& c, const EditedMessage& edited, std::vector<std::string>* rcpts) {
  for (const std::string& r : edited.recipients) {
    std::string q = Qualify(r, c.domain);
    auto m = ParseMailbox(q, false);
    if (!m.ok())
      return Fail(EX_DATAERR,
                  c.who + "message refused: invalid recipient \"" + r + "\" in the headers: " + m.error());
    rcpts->push_back(q);
  }
  if (rcpts->empty())
    return Fail(EX_USAGE,
                c.who + "no recipients: none given as arguments and none found in the To, Cc or Bcc headers");
  return EX_OK;
}

// -N (RFC 3461): without it, failures and (with queue_delay_warning) delays are reported, as Postfix does.
void ApplyDsnRequest(const SendmailOptions& o, QueuedEnvelope* env) {
  if (!o.notify.empty()) {
    const std::string list = "," + o.notify + ",";
    auto asked = [&](const char* w) { return list.find(std::string(",") + w + ",") != std::string::npos; };
    env->notify_failure = asked("failure");
    env->notify_delay = asked("delay");
    env->notify_success = asked("success");
    env->dsn_notify = o.notify;
    for (char& ch : env->dsn_notify) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
  }
  env->return_headers_only = o.ret == "hdrs";
  env->dsn_ret = o.ret == "hdrs" ? "HDRS" : o.ret == "full" ? "FULL" : "";
  env->envid = o.envid;
}

// Each recipient once (domains compare case-insensitively), the sender and the DSN request.
int BuildEnvelope(const SubmitContext& c, const Mailbox& sender, const std::vector<std::string>& rcpts,
                  QueuedEnvelope* env) {
  std::set<std::string> have;
  for (const std::string& r : rcpts) {
    auto m = ParseMailbox(r, false);
    if (!m.ok()) return Fail(EX_USAGE, c.who + "invalid recipient \"" + r + "\": " + m.error());
    if (!have.insert(m->ToString()).second) continue;
    env->recipients.push_back(QueuedRecipient{m->ToString()});
  }
  env->sender = sender.ToString();
  ApplyDsnRequest(c.options, env);
  return EX_OK;
}

// The trace field of this submission (Postfix's pickup adds the same), for the queue ID it names.
class ReceivedField {
 public:
  ReceivedField(const Config& cfg, const EditedMessage& edited)
      : host_(cfg.helo_name.empty() ? DefaultHeloName() : cfg.helo_name),
        arrival_(SystemClock()->Now()),
        uid_(static_cast<unsigned>(getuid())),
        message_(edited.message) {}
  std::string operator()(const std::string& queue_id) const {
    return SubmissionReceivedHeader(host_, uid_, queue_id, arrival_, message_);
  }
  size_t size() const { return (*this)("00000000000000000").size(); }
  unsigned uid() const { return uid_; }

 private:
  std::string host_;
  int64_t arrival_;
  unsigned uid_;
  const std::string& message_;
};

// The message with its trace field must still be within message_size_limit.
int CheckSizeWithTrace(const SubmitContext& c, const EditedMessage& edited, const ReceivedField& received) {
  if (edited.message.size() + received.size() > c.limit)
    return Fail(EX_DATAERR, c.who + "message refused: larger than message_size_limit (" + std::to_string(c.limit) +
                                " octets) with the headers added");
  return EX_OK;
}

// Queues the message, its trace field written with the queue ID it names; sets `id`, and `lock`
// unless the message is only queued.
int QueueMessage(const SubmitContext& c, const EditedMessage& edited, const QueuedEnvelope& env,
                 const ReceivedField& received, Queue& q, std::string* id, QueueLock* lock) {
  bool io_error = false;
  const bool queue_only = c.options.delivery == SendmailOptions::Delivery::kQueueOnly;
  auto queued = q.Submit(edited.message, env, SystemClock(), queue_only ? nullptr : lock, &io_error, received);
  if (!queued.ok())
    return Fail(io_error ? EX_IOERR : EX_TEMPFAIL,
                c.who + "cannot queue the message: " + queued.error() + "; the message was not accepted");
  *id = queued.value();
  syslog(LOG_INFO, "%s: queued: from=<%s> nrcpt=%zu size=%zu uid=%u", id->c_str(), env.sender.c_str(),
         env.recipients.size(), edited.message.size() + received.size(), received.uid());
  return EX_OK;
}

// -odb: a detached child makes the attempt after the exit; the parent returns at once.
int DeliverInBackground(const Config& cfg, Queue& q, const std::string& id, QueueLock lock) {
  std::cout.flush();
  pid_t pid = fork();
  if (pid < 0) {
    syslog(LOG_WARNING, "%s: fork failed (%s); left for the queue runner", id.c_str(), strerror(errno));
    return EX_OK;  // queued: the queue runner delivers it
  }
  if (pid > 0) return EX_OK;  // the parent's copy of the lock closes at exit; the child's keeps it
  // The child: detach from the caller (its terminal and its pipes) and deliver.
  closelog();  // its socket is among the descriptors closed below; syslog(3) reopens it
  setsid();
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != lock.fd()) close(fd);
  Logger log;
  log.to_stderr = false;
  {
    Engine engine;
    if (engine.Init(cfg, &log).ok()) DeliverNow(q, id, std::move(lock), engine, cfg, log);
  }  // before _exit: the Engine's parked sessions end with QUIT
  _exit(0);
}

// -odi: one attempt now, in the foreground; the message stays queued if it is deferred.
int DeliverInForeground(const SubmitContext& c, Queue& q, const std::string& id, QueueLock lock) {
  Logger log;
  log.to_stderr = true;
  log.prefix = c.who;
  Engine engine;
  Status s = engine.Init(c.cfg, &log);
  if (!s.ok()) {
    std::cerr << "mxsec: " << c.who << "queued as " << id << " but not delivered now: " << s.message() << "\n";
    return EX_OK;
  }
  DeliverNow(q, id, std::move(lock), engine, c.cfg, log);
  return EX_OK;
}

// The steps of a submission, in order: sender, recipients, message, envelope, queue, delivery.
int SubmitMessage(const GlobalOptions& g, const SubmitContext& c) {
  const InvokingUser user = CurrentUser();
  Mailbox sender;
  if (int stop = EnvelopeSender(c, user, &sender); stop != EX_OK) return stop;
  std::vector<std::string> rcpts;
  if (int stop = ArgumentRecipients(c, &rcpts); stop != EX_OK) return stop;
  std::string raw;
  if (int stop = ReadInput(c, &raw); stop != EX_OK) return stop;
  EditedMessage edited;
  if (int stop = EditMessage(c, sender, user, &raw, &edited); stop != EX_OK) return stop;
  if (int stop = HeaderRecipients(c, edited, &rcpts); stop != EX_OK) return stop;
  QueuedEnvelope env;
  if (int stop = MessageTlsRequest(c, edited, &env.message_tls); stop != EX_OK) return stop;
  if (int stop = BuildEnvelope(c, sender, rcpts, &env); stop != EX_OK) return stop;

  const ReceivedField received(c.cfg, edited);
  if (int stop = CheckSizeWithTrace(c, edited, received); stop != EX_OK) return stop;
  auto q = Queue::Open(c.cfg.queue_dir, true);
  if (!q.ok())
    return Fail(EX_TEMPFAIL, c.who + "cannot queue the message: " + q.error() + "; the message was not accepted");
  std::string id;
  QueueLock lock;
  if (int stop = QueueMessage(c, edited, env, received, q.value(), &id, &lock); stop != EX_OK) return stop;
  if (g.verbose) std::cerr << "mxsec: " << c.who << "queued as " << id << "\n";

  switch (c.options.delivery) {
    case SendmailOptions::Delivery::kQueueOnly: return EX_OK;
    case SendmailOptions::Delivery::kBackground: return DeliverInBackground(c.cfg, q.value(), id, std::move(lock));
    case SendmailOptions::Delivery::kInteractive: break;
  }
  return DeliverInForeground(c, q.value(), id, std::move(lock));
}

}  // namespace

int RunSendmail(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args,
                const std::string& invoked_as) {
  openlog("mxsec", LOG_PID, LOG_MAIL);
  const std::string who = invoked_as + ": ";
  auto parsed = ParseSendmailArgs(args);
  if (!parsed.ok())
    return Fail(EX_USAGE, who + parsed.error() + "\nusage: sendmail [-t] [-i] [-f sender] [-F name] [-odi|-odb|-odq] "
                                                 "[-N dsn] [-R hdrs|full] [-v] [--] [recipient...]");
  SendmailOptions o = parsed.value();
  if (invoked_as == "mailq") o.mode = SendmailOptions::Mode::kListQueue;
  if (o.mode == SendmailOptions::Mode::kListQueue) return ListQueue(cfg, false);
  GlobalOptions gg = g;
  gg.verbose += o.verbose;
  if (o.mode == SendmailOptions::Mode::kRunQueue) return RunQueueOnce(gg, cfg, true);
  const size_t limit = cfg.message_size_limit > 0 ? static_cast<size_t>(cfg.message_size_limit) : kHardMaxMessage;
  return SubmitMessage(gg, SubmitContext{cfg, o, who, SenderDomain(cfg), limit});
}

}  // namespace mxsec
