// queue.h - the durable retry queue of the sendmail mode.
//
// A queued message is two files in the queue directory: ID.msg (the
// message as submitted, after header edits; never rewritten) and ID.env (the
// envelope as JSON: sender, recipients with their state, times, the last
// reason). Every access to them goes through an Env (mxsec/base/env.h): the
// real file system by default, a MemEnv in tests. Promises:
//   - Submit returns only after both files were written under temporary
//     names, fsynced, renamed into place and the directory fsynced; ID.env
//     is renamed last and is the commit mark: an ID.msg without ID.env is
//     debris of a failed submission (the submitter got an error and kept the
//     message), removed by the next run;
//   - files are created mode 0640 (never world-readable or -writable); their
//     group is the directory's (a set-group-ID queue directory, mxsec(8));
//   - whoever delivers a message holds an exclusive lock (Env::LockFile,
//     flock(2) on the real file system) on its ID.msg
//     (which is never replaced, so the lock is stable): two runners never
//     deliver one message at the same time, and a runner that loses the
//     race skips the message; a lock dies with its process (kill -9);
//   - an envelope is replaced atomically (temporary file, fsync, rename,
//     directory fsync) after every attempt, and also, during an attempt,
//     as soon as a domain's delivery settled a recipient as delivered and
//     before the thread that delivered it starts another domain: a crash
//     at any instant repeats at most the deliveries in flight. Recipients
//     marked delivered or bounced are never tried again (a bounce is
//     recorded with its DSN at the end of the attempt; a crash before that
//     tries the recipient again, which its server refuses again);
//   - an attempt runs the domains of a message from a work list on the
//     calling thread plus the threads a WorkerBudget lends it, at most
//     QueueSettings::max_domains_per_attempt domains (those tried least
//     recently first); the rest stay pending, and while some of them were
//     never tried the message is due again at once (then the backoff).
//     Each domain's delivery holds a slot of QueueSettings::destinations
//     (DestinationLimiter) while it runs. A domain for which no slot can be
//     had (other processes hold them all: DestinationSlotFiles) is left as
//     it is, not tried, not counted as a failure: the message stays due at
//     once, and an attempt in which no domain was tried (and none bounced
//     or expired) leaves the envelope untouched, as if it had not been
//     made. A thread that cannot be started is logged and the work goes on
//     with the threads there are, never ends the process;
//   - an envelope is used only under the ID it names, and its message
//     file only when it is the size the envelope records (the file is
//     never rewritten, so another size means it was cut short or changed
//     on disk); otherwise the message stays queued, with the reason;
//   - a message leaves the queue only when no recipient is pending:
//     delivered, or bounced with the DSN committed to the queue first (a
//     crash in between can repeat a DSN, never lose one). A DSN (null
//     sender) that fails permanently is logged and dropped, never bounced;
//   - a message whose sender asked for REQUIRETLS (RFC 8689) is delivered
//     with it every time; a recipient still pending at the end of the
//     lifetime whose last problem was that no host could take it with
//     REQUIRETLS (4.7.30) bounces with 5.7.30; and no DSN about such a
//     message returns any of its content (RFC 8689 §5: the DSN travels
//     without REQUIRETLS, so the original is left out, headers too);
//   - the other DSNs of RFC 3461 (never for the null sender): with success
//     asked (-N success), a recipient delivered to a next hop that did not
//     take NOTIFY= (no DSN in its EHLO) gets an "Action: relayed" report; a
//     hop that took it reports itself. With delay asked (or no -N at all,
//     as Postfix) and QueueSettings::delay_warning set, one "Action:
//     delayed" report lists the pending recipients at the first attempt
//     that ends with recipients pending that long after arrival.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mxsec/base/clock.h"
#include "mxsec/base/env.h"
#include "mxsec/base/status.h"
#include "mxsec/smtp/delivery.h"

namespace mxsec {

// Where a queued recipient stands. Only kPending recipients are tried again;
// the envelope file stores the state by name.
enum class RecipientState { kPending, kDelivered, kBounced };
const char* RecipientStateName(RecipientState s);  // "pending", "delivered", "bounced"
std::optional<RecipientState> ParseRecipientState(std::string_view name);  // nullopt: unknown

struct QueuedRecipient {
  QueuedRecipient() = default;
  explicit QueuedRecipient(std::string a) : address(std::move(a)) {}
  std::string address;
  RecipientState state = RecipientState::kPending;
  std::string code;               // RFC 3463 code of the last result
  std::string reply;              // the server's reply or our reason
  std::string relay;              // host[address]:port of the last session, or ""
  int64_t time = 0;               // of the last result
};

struct QueuedEnvelope {
  std::string id;
  std::string sender;               // "" for the null sender (a DSN)
  std::vector<QueuedRecipient> recipients;
  int64_t queued_at = 0;
  int64_t next_retry = 0;           // not tried by `queue run` before this
  int attempts = 0;
  uint64_t size = 0;                // octets of the message file
  std::string last_reason;
  bool notify_failure = true;       // -N never clears it
  bool notify_delay = true;         // no -N, or -N with delay: a "delayed" DSN after queue_delay_warning
  bool notify_success = false;      // -N with success: a "relayed" DSN when the next hop does not take DSN
  std::string dsn_notify;           // -N as given, upper case ("" without -N): NOTIFY= for a DSN-capable next hop
  std::string dsn_ret;              // -R: "HDRS", "FULL" or "": RET= likewise
  bool delay_warned = false;        // the "delayed" DSN was queued (it is sent once)
  bool return_headers_only = false; // -R hdrs
  std::string envid;                // -V
  bool is_bounce = false;           // a DSN we generated: never bounced itself
  // The sender's RFC 8689 request (-O requiretls=yes, or the message's
  // TLS-Required: No), for every delivery of the message.
  MessageTls message_tls = MessageTls::kPolicy;
  size_t pending() const;
};

std::string EnvelopeToJson(const QueuedEnvelope& env);
Result<QueuedEnvelope> EnvelopeFromJson(std::string_view json);

// True for a syntactically valid queue ID (what NewQueueId makes).
bool ValidQueueId(std::string_view id);

// The exclusive lock on one queued message (a FileLock on its ID.msg);
// released when destroyed. Movable, not copyable.
class QueueLock {
 public:
  QueueLock() = default;
  explicit QueueLock(std::unique_ptr<FileLock> lock) : lock_(std::move(lock)) {}
  bool held() const { return lock_ != nullptr; }
  // The descriptor holding the lock (to keep it open across fork), or -1.
  int fd() const { return lock_ ? lock_->fd() : -1; }
  void Release() { lock_.reset(); }

 private:
  std::unique_ptr<FileLock> lock_;
};

enum class LockState { kLocked, kBusy, kGone };

// The text a submission stores in front of the message, made for the queue ID it gets.
using SubmitPrefix = std::function<std::string(const std::string& id)>;

class Queue {
 public:
  // Opens (and with `create`, makes: mode 0750) the queue directory on
  // `env` (the file system; a MemEnv in tests), which outlives the Queue.
  // Without `create`, a directory that does not exist is kNotFound.
  static Result<Queue> Open(const std::string& dir, bool create, Env* env = Env::Default());
  const std::string& dir() const { return dir_; }

  // Queues `message` durably with `env` (its id, size and queued_at are
  // set here). On success returns the id; with `lock_out` the caller keeps
  // the message locked (to deliver it now). An error says what failed
  // ("/var/spool/mxsec: write: No space left on device"), nothing is left
  // behind, and `*io_error` tells EIO-like failures from transient ones.
  // With `prefix`, the stored message is prefix(id) + `message`: text that
  // names the queue ID (the Received: field of a submission) is part of the
  // file from its first write.
  Result<std::string> Submit(std::string_view message, QueuedEnvelope env, Clock* clock, QueueLock* lock_out,
                             bool* io_error = nullptr, const SubmitPrefix& prefix = nullptr);

  // IDs with a committed envelope, oldest first.
  std::vector<std::string> Ids() const;
  // Tries to lock `id` without waiting.
  LockState TryLock(const std::string& id, QueueLock* out) const;
  Result<QueuedEnvelope> ReadEnvelope(const std::string& id) const;
  Result<std::string> ReadMessage(const std::string& id) const;
  // Replaces the envelope atomically (the caller holds the lock).
  Status WriteEnvelope(const QueuedEnvelope& env);
  // Removes the message (the caller holds the lock): envelope first.
  Status Remove(const std::string& id);
  // WriteEnvelope and Remove return once their change is durable: a
  // directory fsync begun after it succeeded. Threads of one process that
  // change the queue at the same time share those fsyncs (group commit).
  // Removes debris: temporary files and message files without an envelope
  // that nobody holds locked, older than `min_age` seconds; also the slot
  // files (DestinationSlotFiles) nobody holds, made that long ago, so that
  // they are at most the slots of the destinations of the last `min_age`
  // seconds (the next delivery to one makes its file again).
  void Clean(Clock* clock, int64_t min_age);

 private:
  Queue(std::string dir, Env* env) : dir_(std::move(dir)), env_(env), dir_sync_(std::make_unique<DirSync>()) {}
  std::string PathOf(const std::string& id, const char* suffix) const;  // dir/ID.msg, dir/ID.env
  // Writes head + message to the new file `tmp` (fsynced) and locks it.
  Status WriteLockedTemp(const std::string& tmp, std::string_view head, std::string_view message, QueueLock* lock);
  // The message written and locked under a temporary name, then linked to
  // ID.msg for a new ID (never an existing one). Returns the ID; `head` is
  // the prefix written.
  Result<std::string> LinkNewMessage(std::string_view message, Clock* clock, const SubmitPrefix& prefix,
                                     std::string* head, QueueLock* lock);
  // ID.env replaced by a fsynced temporary file (not yet durable: SyncDir).
  Status InstallEnvelope(const QueuedEnvelope& env);
  // Removes ID.msg when it has no envelope and nobody holds it (Clean).
  void RemoveIfDebris(const std::string& id);
  // Makes every change of the directory made before the call durable, in a
  // directory fsync of its own or one another thread began after the call.
  Status SyncDirShared();

  // The group commit of SyncDirShared: `requested` counts callers, a sync
  // covers all those counted before it began; one runs at a time.
  struct DirSync {
    std::mutex mu;
    std::condition_variable done;
    uint64_t requested = 0, covered = 0;
    bool running = false;
    Status last;  // of the latest completed sync
  };

  std::string dir_;
  Env* env_;
  std::unique_ptr<DirSync> dir_sync_;  // a pointer: the Queue stays movable
};

// Makes threads for the queue (a fake in tests fails on demand; LevelDB's
// Env::StartThread is the model). Start never throws: a thread that cannot
// be made is false with the reason in `error`.
class ThreadStarter {
 public:
  virtual ~ThreadStarter() = default;
  virtual bool Start(std::function<void()> fn, std::thread* out, std::string* error) = 0;
};
// std::thread, with std::system_error (EAGAIN: no more threads) caught.
ThreadStarter* SystemThreads();

// The delivery threads of one queue run (or one foreground delivery): at
// most `limit` of them at once, shared by the messages of the run and the
// domains of each message. A slot is taken when a thread starts and given
// back when the thread is joined (Join), so `limit` bounds the threads that
// exist, not only those working.
class WorkerBudget {
 public:
  explicit WorkerBudget(size_t limit, ThreadStarter* starter = SystemThreads())
      : limit_(limit), starter_(starter) {}
  WorkerBudget(const WorkerBudget&) = delete;
  WorkerBudget& operator=(const WorkerBudget&) = delete;
  // Starts `fn` on a new thread when a slot is free. False when none is
  // free (`error` empty) or the thread could not be made (`error` says why).
  bool TryStart(std::function<void()> fn, std::thread* out, std::string* error);
  // Joins a thread TryStart made and frees its slot.
  void Join(std::thread* t);
  size_t limit() const { return limit_; }

 private:
  std::mutex mu_;
  size_t in_use_ = 0;
  const size_t limit_;
  ThreadStarter* const starter_;
};

// The per-destination limit across processes: the sendmail deliveries
// (-odb, -odi) and queue runs that share one queue directory each take one
// of a destination's `limit` slot files there while they deliver to it, so
// that together they never make more than `limit` deliveries to it at once
// (as Postfix's queue manager alone decides for all its smtp(8) processes).
// Slot k of destination D is the file .slot-H-k in the queue directory, H
// the first 128 bits of SHA-256 of D (lowercase ASCII, the key of
// DestinationLimiter) in hex: a name of bounded length that no domain
// name can steer, k < `limit`, so at most `limit` files per destination.
// A slot is held with an exclusive FileLock (flock(2)) on its file for the
// time of the delivery and released by the kernel when its holder dies: no
// state outlives a crash. The files themselves stay, empty (made once, not
// at each delivery, as a new file costs an fsync) until Queue::Clean
// removes those nobody holds. Promises:
//   - two holders never hold one slot: a file is removed only by a process
//     that holds its lock, and a lock taken on a file whose name is gone
//     (nlink 0) is dropped and the name tried again, so a lock held on a
//     file that still has its name is the slot;
//   - a process of a submitter (Share::kSubmitter: neither root nor the
//     queue's owner, who may stop its own process with SIGSTOP and so keep
//     its locks) takes only the lower half of the slots (limit / 2: none
//     when the limit is 1); root's and the owner's take any, from the top,
//     so a stopped submitter slows a destination and never stops it;
//   - processes with different limits share the slots their limits have in
//     common: together they stay within the largest.
class DestinationSlotFiles {
 public:
  enum class Share { kAll, kSubmitter };
  // Slot files in the queue directory `dir` on `env` (both outlive this).
  DestinationSlotFiles(Env* env, std::string dir, size_t limit, Share share);
  DestinationSlotFiles(const DestinationSlotFiles&) = delete;
  DestinationSlotFiles& operator=(const DestinationSlotFiles&) = delete;

  // Takes a free slot of `key` (a lowercase domain) without waiting, making
  // its file when there is none. kUnavailable when every slot this process
  // may take is held (by any process, this one included); another code
  // when a slot file cannot be made or locked (the reason, with its path).
  Status TryTake(const std::string& key, std::unique_ptr<FileLock>* out) const;
  size_t limit() const { return limit_; }
  // How many of a destination's slots this process may take (Share).
  size_t takeable() const { return share_ == Share::kAll ? limit_ : limit_ / 2; }
  // ".slot-" + 32 hex digits + "-" + k, for slot k of `key`.
  static std::string FileName(const std::string& key, size_t k);
  // Whether a name in the queue directory is a slot file (Queue::Clean).
  static bool IsSlotFileName(std::string_view name);

 private:
  Env* const env_;
  const std::string dir_;
  const size_t limit_;
  const Share share_;
};

// At most `limit` deliveries at once to one destination domain
// (default_destination_concurrency_limit, Postfix's per-destination
// concurrency), shared by every delivery thread of the process: messages of
// a run and the domains of each message; with DestinationSlotFiles, by
// every process of the queue directory too. A delivery holds its Slot while
// it runs its SMTP sessions (one at a time) and gives it back when it
// returns; sessions parked between transactions
// (mxsec/smtp/session_cache.h) are taken by the next delivery to the same
// destination of the process, which then holds the slot. Within the
// process, Acquire waits until a slot is free: a holder never waits for
// another slot, so waiting ends when a delivery ends (its own timeouts
// bound that). For a slot file (another process's deliveries, whose end
// this process cannot see coming) it waits at most `wait`, trying again
// after pauses that grow from 50 ms to 1 s, and then gives up: the caller
// leaves the domain for later. Only domains with a delivery in progress
// are remembered, so the state is bounded by the threads. Domains compare
// case-insensitively.
class DestinationLimiter {
 public:
  explicit DestinationLimiter(size_t limit) : limit_(limit == 0 ? 1 : limit) {}
  // Across processes: each slot also holds a slot file of `files` (which
  // outlives the limiter), waited for at most `wait` (zero: only one free
  // at once is taken).
  DestinationLimiter(size_t limit, const DestinationSlotFiles* files, std::chrono::milliseconds wait)
      : limit_(limit == 0 ? 1 : limit), files_(files), wait_(wait) {}
  DestinationLimiter(const DestinationLimiter&) = delete;
  DestinationLimiter& operator=(const DestinationLimiter&) = delete;

  // A slot for one destination; given back when destroyed. Movable.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : owner_(o.owner_), key_(std::move(o.key_)), file_(std::move(o.file_)) {
      o.owner_ = nullptr;
    }
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class DestinationLimiter;
    Slot(DestinationLimiter* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    DestinationLimiter* owner_ = nullptr;
    std::string key_;
    std::unique_ptr<FileLock> file_;  // the slot file, with DestinationSlotFiles
  };

  // Waits for a free slot of `domain` and takes it. Without slot files it
  // always succeeds; with them, kUnavailable says that other processes held
  // every slot this one may take for the whole wait, another code that a
  // slot file could not be used (neither delivers: the caller leaves the
  // domain pending, the reason in the log).
  Result<Slot> Acquire(const std::string& domain);
  size_t limit() const { return limit_; }
  // Deliveries to `domain` in progress in this process now (for tests and logs).
  size_t InUse(const std::string& domain) const;

 private:
  void Give(const std::string& key);
  const size_t limit_;
  const DestinationSlotFiles* const files_ = nullptr;
  const std::chrono::milliseconds wait_{0};
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::map<std::string, size_t> in_use_;  // only domains with a delivery in progress
};

struct QueueSettings {
  int lifetime = 5 * 86400;
  int retry_min = 300;
  int retry_max = 4000;
  std::string reporting_mta;   // our host name, for DSNs
  std::string bounce_domain;   // MAILER-DAEMON@<this> in DSNs
  int delay_warning = 0;       // seconds after arrival for the "delayed" DSN; 0: never
  // Domains one attempt of one message delivers to (queue_max_domains_per_attempt): bounds the
  // time an attempt holds the message's lock and the envelope rewrites it makes.
  size_t max_domains_per_attempt = 1000;
  // Threads that may help deliver the domains of a message; null: the calling thread alone.
  WorkerBudget* workers = nullptr;
  // Deliveries at once per destination domain; null: no bound but the threads.
  DestinationLimiter* destinations = nullptr;
};

// The messages of `ids` (oldest first) as runs, one worker's work each, so
// that one worker carries a destination's messages one after the other over
// the session it keeps open (mxsec/smtp/session_cache.h): messages whose
// pending recipients are in the same domains form a group (read from their
// envelopes without the lock, replaced by rename, so read whole; a message
// whose envelope cannot be read is a group of its own), and a group is cut
// into runs of a worker's fair share, ceil(ids / workers), so a destination
// with many messages still gets the workers there are and one with fewer
// stays on one session. A group is cut into at most `per_destination` runs
// (default_destination_concurrency_limit): more would only wait for the
// destination's slots (DestinationLimiter) on threads of their own. Every id
// is in exactly one run; a run keeps the order of `ids`; groups go by their
// oldest message.
std::vector<std::vector<std::string>> DestinationRuns(const Queue& q, const std::vector<std::string>& ids,
                                                      size_t workers,
                                                      size_t per_destination = std::numeric_limits<size_t>::max());

// Seconds until the next attempt after `attempts` failed ones:
// retry_min * 2^(attempts-1), capped at retry_max.
int64_t RetryDelay(int attempts, const QueueSettings& s);

// Delivers a message to the recipients of one domain (the policy engine +
// DeliverDomain in the program, a fake in tests), passing the sender's DSN
// and RFC 8689 requests on. Called from several threads at once
// (WorkerBudget).
using DomainDeliverer = std::function<std::vector<RecipientOutcome>(
    const std::string& domain, const Mailbox& sender, const std::vector<Mailbox>& recipients,
    const PreparedMessage& message, const DsnRequest& dsn, MessageTls message_tls)>;

struct ProcessReport {
  std::string id;
  bool skipped = false;       // busy, gone, or not due
  std::string skip_reason;
  bool removed = false;       // nothing left pending
  size_t delivered = 0, deferred = 0, bounced = 0;
  std::string dsn_id;         // the failure DSN queued by this attempt, or ""
  std::vector<std::string> dsn_ids;  // every DSN queued by this attempt (failure, relayed, delayed)
  std::string error;          // a local problem (the message stays queued)
  // Recipients left pending untried: no delivery slot of their domain could be had (DestinationLimiter).
  size_t waiting = 0;
};

// One delivery attempt of queued message `id`. `lock` is the caller's lock
// (from Submit) or empty (then it is taken here, and the message skipped if
// busy). Without `force`, a message whose next_retry is in the future is
// skipped. `log` gets one line per recipient result and per problem.
ProcessReport ProcessQueuedMessage(Queue& queue, const std::string& id, QueueLock lock, bool force,
                                   const DomainDeliverer& deliver, Clock* clock, const QueueSettings& settings,
                                   const std::function<void(const std::string&)>& log);

// What one pass of a queue run reports, message by message, from the
// threads that deliver (so the callbacks must be thread-safe).
struct QueueRunHooks {
  std::function<void(const std::string&)> log;   // per recipient result and problem (ProcessQueuedMessage)
  std::function<void(const std::string&)> warn;  // a thread that could not be started
  std::function<void(const ProcessReport&)> done;  // each message's report
};

// One pass of a queue run over `ids` (oldest first): the messages cut into
// DestinationRuns (at most settings.destinations' limit of runs per
// destination), each run worked by one thread so that its messages follow
// one another over the destination's session. Message threads come from
// settings.workers, three quarters of its limit (at least one); the rest is
// left for the domains of messages to several domains, so the threads of the
// pass, helpers included, never exceed the budget's limit, and deliveries to
// one domain never exceed settings.destinations' limit. Without a budget,
// or when no thread can be started, the calling thread does the work; a
// thread that cannot be started is reported to `warn` and the pass goes on
// with the threads it has. A queue run gives settings.destinations slot
// files and no wait: a thread that finds a destination's slots held by
// other processes (sendmail deliveries, another run) leaves that message's
// domain for the next run and goes on with its next message at once, so
// other destinations are never held up behind a busy one; the later
// messages of the destination in the pass try again, as a slot may have
// come free meanwhile.
void RunQueuePass(Queue& queue, const std::vector<std::string>& ids, bool force, const DomainDeliverer& deliver,
                  Clock* clock, const QueueSettings& settings, const QueueRunHooks& hooks);

}  // namespace mxsec
