// queue.cc - the durable retry queue (see queue.h for the promises).
//
// Durability order of Submit: ID.msg (with its prefix for that ID, if any) written to a temporary name, fsynced,
// linked to its final name (link fails if the name exists, so an ID is
// never reused), then ID.env likewise and renamed, then the directory
// fsynced. Only then is the submission reported as successful. Every file
// system access goes through the queue's Env (mxsec/base/env.h), so that
// tests can take a power loss between any two of these steps (MemEnv).
#include "mxsec/queue/queue.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "mxsec/base/domain_name.h"
#include "mxsec/base/net_address.h"
#include "mxsec/queue/dsn.h"

namespace mxsec {

const char* RecipientStateName(RecipientState s) {
  switch (s) {
    case RecipientState::kPending: return "pending";
    case RecipientState::kDelivered: return "delivered";
    case RecipientState::kBounced: return "bounced";
  }
  return "pending";
}

std::optional<RecipientState> ParseRecipientState(std::string_view name) {
  for (RecipientState s : {RecipientState::kPending, RecipientState::kDelivered, RecipientState::kBounced})
    if (name == RecipientStateName(s)) return s;
  return std::nullopt;
}

namespace {

// The domains of the pending recipients, sorted, as one key; "" for an envelope that cannot be read.
std::string DestinationKey(const Queue& q, const std::string& id) {
  Result<QueuedEnvelope> env = q.ReadEnvelope(id);
  if (!env.ok()) return "";
  std::vector<std::string> domains;
  for (const QueuedRecipient& r : env->recipients) {
    if (r.state != RecipientState::kPending) continue;
    const size_t at = r.address.rfind('@');
    domains.push_back(AsciiLower(at == std::string::npos ? std::string() : r.address.substr(at + 1)));
  }
  std::sort(domains.begin(), domains.end());
  domains.erase(std::unique(domains.begin(), domains.end()), domains.end());
  std::string key = "@";  // never "": a readable envelope is never grouped with an unreadable one
  for (const std::string& d : domains) key += d + " ";
  return key;
}

}  // namespace

std::vector<std::vector<std::string>> DestinationRuns(const Queue& q, const std::vector<std::string>& ids,
                                                      size_t workers, size_t per_destination) {
  std::vector<std::vector<std::string>> groups;
  std::map<std::string, size_t> group_of;  // destination key -> index in groups
  for (const std::string& id : ids) {
    const std::string key = DestinationKey(q, id);
    auto [it, added] = group_of.emplace(key, groups.size());
    if (added || key.empty()) {
      it->second = groups.size();
      groups.emplace_back();
    }
    groups[it->second].push_back(id);
  }
  // A worker's fair share of the whole batch: a destination with more is cut, one with less
  // stays on one session; never into more runs than the destination takes deliveries at once.
  const size_t cuts = std::max<size_t>(workers, 1);
  const size_t share = std::max<size_t>(1, (ids.size() + cuts - 1) / cuts);
  const size_t max_runs = std::max<size_t>(per_destination, 1);
  std::vector<std::vector<std::string>> runs;
  for (const std::vector<std::string>& g : groups) {
    const size_t n_runs = std::min((g.size() + share - 1) / share, max_runs);
    const size_t per_run = (g.size() + n_runs - 1) / n_runs;
    for (size_t b = 0; b < g.size(); b += per_run)
      runs.emplace_back(g.begin() + static_cast<long>(b), g.begin() + static_cast<long>(std::min(g.size(), b + per_run)));
  }
  return runs;
}

size_t QueuedEnvelope::pending() const {
  return static_cast<size_t>(std::count_if(recipients.begin(), recipients.end(),
                                           [](const QueuedRecipient& r) { return r.state == RecipientState::kPending; }));
}

std::string EnvelopeToJson(const QueuedEnvelope& e) {
  nlohmann::json j;
  j["version"] = 1;
  j["id"] = e.id;
  j["sender"] = e.sender;
  j["queued_at"] = e.queued_at;
  j["next_retry"] = e.next_retry;
  j["attempts"] = e.attempts;
  j["size"] = e.size;
  j["last_reason"] = e.last_reason;
  j["notify_failure"] = e.notify_failure;
  j["notify_delay"] = e.notify_delay;
  j["notify_success"] = e.notify_success;
  j["dsn_notify"] = e.dsn_notify;
  j["dsn_ret"] = e.dsn_ret;
  j["delay_warned"] = e.delay_warned;
  j["return_headers_only"] = e.return_headers_only;
  j["envid"] = e.envid;
  j["is_bounce"] = e.is_bounce;
  j["message_tls"] = MessageTlsName(e.message_tls);
  j["recipients"] = nlohmann::json::array();
  for (const QueuedRecipient& r : e.recipients) {
    j["recipients"].push_back({{"address", r.address},
                               {"state", RecipientStateName(r.state)},
                               {"code", r.code},
                               {"reply", r.reply},
                               {"relay", r.relay},
                               {"time", r.time}});
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Result<QueuedEnvelope> EnvelopeFromJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Error("envelope is not a JSON object");
  try {
    QueuedEnvelope e;
    e.id = j.at("id").get<std::string>();
    e.sender = j.at("sender").get<std::string>();
    e.queued_at = j.at("queued_at").get<int64_t>();
    e.next_retry = j.at("next_retry").get<int64_t>();
    e.attempts = j.at("attempts").get<int>();
    e.size = j.at("size").get<uint64_t>();
    e.last_reason = j.value("last_reason", "");
    e.notify_failure = j.value("notify_failure", true);
    e.notify_delay = j.value("notify_delay", true);
    e.notify_success = j.value("notify_success", false);
    e.dsn_notify = j.value("dsn_notify", "");
    e.dsn_ret = j.value("dsn_ret", "");
    e.delay_warned = j.value("delay_warned", false);
    e.return_headers_only = j.value("return_headers_only", false);
    e.envid = j.value("envid", "");
    e.is_bounce = j.value("is_bounce", false);
    const std::string message_tls = j.value("message_tls", MessageTlsName(MessageTls::kPolicy));
    std::optional<MessageTls> tls = ParseMessageTls(message_tls);
    if (!tls) return Status::Error("envelope: unknown message_tls \"" + message_tls + "\"");
    e.message_tls = *tls;
    for (const auto& r : j.at("recipients")) {
      QueuedRecipient q;
      q.address = r.at("address").get<std::string>();
      const std::string state = r.at("state").get<std::string>();
      std::optional<RecipientState> parsed = ParseRecipientState(state);
      if (!parsed)
        return Status::Error("envelope: recipient " + q.address + " has unknown state \"" + state + "\"");
      q.state = *parsed;
      q.code = r.value("code", "");
      q.reply = r.value("reply", "");
      q.relay = r.value("relay", "");
      q.time = r.value("time", int64_t{0});
      e.recipients.push_back(std::move(q));
    }
    if (e.recipients.empty()) return Status::Error("envelope has no recipients");
    return e;
  } catch (const nlohmann::json::exception& ex) {
    return Status::Error(std::string("envelope: missing or bad field: ") + ex.what());
  }
}

bool ValidQueueId(std::string_view id) {
  if (id.size() != 17) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
}

namespace {

constexpr uint32_t kFileMode = 0640;
constexpr uint32_t kDirMode = 0750;
constexpr uint32_t kWorldWritable = 0002;  // S_IWOTH
// The queue reads only files it wrote itself: a message whose size was bounded when it was submitted
// (message_size_limit) and its envelope. They have no read bound of their own.
constexpr size_t kNoReadBound = std::numeric_limits<size_t>::max();

std::string NewQueueId(Clock* clock) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  uint16_t rnd = 0;
  if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd) rnd = static_cast<uint16_t>(getpid() ^ tv.tv_usec);
  char buf[32];
  snprintf(buf, sizeof buf, "%08llX%05lX%04X", static_cast<unsigned long long>(clock->Now()) & 0xffffffffULL,
           static_cast<unsigned long>(tv.tv_usec) & 0xfffffUL, rnd);
  return buf;
}

std::string TempName(const std::string& dir, const std::string& what) {
  uint32_t rnd = 0;
  if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd) rnd = static_cast<uint32_t>(getpid());
  char buf[64];
  snprintf(buf, sizeof buf, "/.tmp-%s-%d-%08x", what.c_str(), static_cast<int>(getpid()), rnd);
  return dir + buf;
}

// mkdir -p: each missing directory on the way to `dir` is made with kDirMode.
Status MakeDirs(Env* env, const std::string& dir) {
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string cur = dir.substr(0, pos);
    if (cur.empty()) continue;
    if (Status s = env->CreateDir(cur, kDirMode); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

Result<Queue> Queue::Open(const std::string& dir, bool create, Env* env) {
  auto st = env->Stat(dir);
  if (!st.ok()) {
    if (!st.status().IsNotFound() || !create) return st.status().Prefixed("queue directory ");
    // Never world-accessible; see mxsec(8) for the set-group-ID layout.
    if (Status made = MakeDirs(env, dir); !made.ok()) return made.Prefixed("queue directory ");
    st = env->Stat(dir);
    if (!st.ok()) return st.status().Prefixed("queue directory ");
  }
  if (!st->is_dir) return Status::Error("queue directory " + dir + " is not a directory");
  if (st->mode & kWorldWritable)
    return Status::Error("queue directory " + dir + " is world-writable; refusing to use it (see mxsec(8))");
  return Queue(dir, env);
}

std::string Queue::PathOf(const std::string& id, const char* suffix) const { return dir_ + "/" + id + suffix; }

Status Queue::WriteLockedTemp(const std::string& tmp, std::string_view head, std::string_view message,
                              QueueLock* lock) {
  Status s = env_->WriteNewFile(tmp, {head, message}, kFileMode);
  if (!s.ok()) return s;
  // Locked before the message is visible: no runner can take it while we finish (or deliver it).
  std::unique_ptr<FileLock> held;
  s = env_->LockFile(tmp, &held);
  if (!s.ok()) {
    (void)env_->RemoveFile(tmp);
    return s;
  }
  *lock = QueueLock(std::move(held));
  return Status::Ok();
}

Result<std::string> Queue::LinkNewMessage(std::string_view message, Clock* clock, const SubmitPrefix& prefix,
                                          std::string* head, QueueLock* lock) {
  const std::string tmp = TempName(dir_, "msg");
  bool written = false;
  for (int tries = 0;; ++tries) {
    const std::string id = NewQueueId(clock);
    // The prefix names the ID, so a new ID (a collision, rare) means writing the file again.
    if (!written || prefix) {
      if (written) {
        lock->Release();
        (void)env_->RemoveFile(tmp);
      }
      *head = prefix ? prefix(id) : std::string();
      if (Status s = WriteLockedTemp(tmp, *head, message, lock); !s.ok()) return s;
      written = true;
    }
    auto linked = env_->LinkFile(tmp, PathOf(id, ".msg"));
    if (linked.ok() && linked.value()) {
      (void)env_->RemoveFile(tmp);
      return id;
    }
    if (!linked.ok() || tries > 100) {
      Status s = linked.ok() ? Status::Error(PathOf(id, ".msg") + ": link: " + strerror(EEXIST)) : linked.status();
      (void)env_->RemoveFile(tmp);
      return s;
    }
  }
}

Status Queue::InstallEnvelope(const QueuedEnvelope& env) {
  const std::string tmp = TempName(dir_, "env");
  const std::string json = EnvelopeToJson(env);
  Status s = env_->WriteNewFile(tmp, {json}, kFileMode);
  if (!s.ok()) return s;
  s = env_->RenameFile(tmp, PathOf(env.id, ".env"));
  if (!s.ok()) (void)env_->RemoveFile(tmp);
  return s;
}

Result<std::string> Queue::Submit(std::string_view message, QueuedEnvelope env, Clock* clock, QueueLock* lock_out,
                                  bool* io_error, const SubmitPrefix& prefix) {
  if (io_error) *io_error = false;
  auto fail = [&](const Status& s) -> Result<std::string> {
    if (io_error) *io_error = s.IsIoError();
    return s;
  };
  std::string head;
  QueueLock lock;
  auto id = LinkNewMessage(message, clock, prefix, &head, &lock);
  if (!id.ok()) return fail(id.status());
  const std::string msg_path = PathOf(id.value(), ".msg");

  env.id = id.value();
  env.size = head.size() + message.size();
  env.queued_at = clock->Now();
  // ID.env is the commit mark: renamed into place last, then made durable with the directory.
  Status s = InstallEnvelope(env);
  if (s.ok()) {
    s = env_->SyncDir(dir_);
    if (!s.ok()) (void)env_->RemoveFile(PathOf(env.id, ".env"));
  }
  if (!s.ok()) {
    (void)env_->RemoveFile(msg_path);
    return fail(s);
  }
  if (lock_out) *lock_out = std::move(lock);
  return id;
}

std::vector<std::string> Queue::Ids() const {
  std::vector<std::string> ids;
  auto names = env_->ListDir(dir_);
  if (!names.ok()) return ids;
  for (const std::string& n : names.value()) {
    if (n.size() == 21 && n.compare(17, 4, ".env") == 0 && ValidQueueId(n.substr(0, 17))) ids.push_back(n.substr(0, 17));
  }
  std::sort(ids.begin(), ids.end());  // IDs start with the time: oldest first
  return ids;
}

LockState Queue::TryLock(const std::string& id, QueueLock* out) const {
  if (!ValidQueueId(id)) return LockState::kGone;
  std::unique_ptr<FileLock> held;
  Status s = env_->LockFile(PathOf(id, ".msg"), &held);
  if (s.IsUnavailable()) return LockState::kBusy;
  if (!s.ok()) return LockState::kGone;
  // The holder before us may have finished and removed the message.
  auto info = held->Stat();
  if (!info.ok() || info->nlink == 0) return LockState::kGone;
  if (!env_->FileExists(PathOf(id, ".env"))) return LockState::kGone;
  *out = QueueLock(std::move(held));
  return LockState::kLocked;
}

Result<QueuedEnvelope> Queue::ReadEnvelope(const std::string& id) const {
  const std::string path = PathOf(id, ".env");
  auto text = env_->ReadFile(path, kNoReadBound);
  if (!text.ok()) return text.status();
  auto env = EnvelopeFromJson(text.value());
  if (!env.ok()) return Status::Error(path + ": " + env.error());
  // The file name is what the lock, the message file and every rewrite
  // use; an envelope naming another ID would carry one message's state
  // into another's envelope.
  if (env->id != id)
    return Status::Error(path + ": names queue ID " + env->id + ", not " + id +
                         "; not used (moved or copied from another message?)");
  return env;
}

Result<std::string> Queue::ReadMessage(const std::string& id) const {
  return env_->ReadFile(PathOf(id, ".msg"), kNoReadBound);
}

Status Queue::WriteEnvelope(const QueuedEnvelope& env) {
  if (Status s = InstallEnvelope(env); !s.ok()) return s;
  return SyncDirShared();
}

Status Queue::SyncDirShared() {
  DirSync& g = *dir_sync_;
  std::unique_lock<std::mutex> l(g.mu);
  const uint64_t mine = ++g.requested;  // the caller's change is made: any sync begun from now covers it
  for (;;) {
    // The latest sync covered this change; its status, failed or not, is
    // the answer (a success after the change made it durable; a failure is
    // reported even if an earlier sync might have been enough).
    if (g.covered >= mine) return g.last;
    if (!g.running) break;
    g.done.wait(l);
  }
  g.running = true;
  const uint64_t covers = g.requested;
  l.unlock();
  Status s = env_->SyncDir(dir_);
  l.lock();
  g.running = false;
  g.covered = covers;
  g.last = s;
  g.done.notify_all();
  return s;
}

Status Queue::Remove(const std::string& id) {
  for (const char* suffix : {".env", ".msg"}) {
    Status s = env_->RemoveFile(PathOf(id, suffix));
    if (!s.ok() && !s.IsNotFound()) return s;
  }
  return SyncDirShared();
}

void Queue::RemoveIfDebris(const std::string& id) {
  if (env_->FileExists(PathOf(id, ".env"))) return;
  std::unique_ptr<FileLock> held;
  // Not locked and still without an envelope: a submission that failed (its caller got an error).
  if (env_->LockFile(PathOf(id, ".msg"), &held).ok() && !env_->FileExists(PathOf(id, ".env")))
    (void)env_->RemoveFile(PathOf(id, ".msg"));
}

void Queue::Clean(Clock* clock, int64_t min_age) {
  auto names = env_->ListDir(dir_);
  if (!names.ok()) return;
  for (const std::string& n : names.value()) {
    const std::string path = dir_ + "/" + n;
    auto info = env_->Stat(path);
    if (!info.ok() || !info->is_regular) continue;
    if (clock->Now() - info->mtime < min_age) continue;
    if (n.rfind(".tmp-", 0) == 0) {
      (void)env_->RemoveFile(path);
    } else if (DestinationSlotFiles::IsSlotFileName(n)) {
      // Removed under its lock, so that a process that opened it meanwhile sees it gone (nlink 0)
      // and takes the name again (DestinationSlotFiles::TryTake); one in use is left alone.
      std::unique_ptr<FileLock> held;
      if (env_->LockFile(path, &held).ok()) {
        auto locked = held->Stat();
        if (locked.ok() && locked->nlink > 0) (void)env_->RemoveFile(path);
      }
    } else if (n.size() == 21 && n.compare(17, 4, ".msg") == 0) {
      RemoveIfDebris(n.substr(0, 17));
    }
  }
}

namespace {

class SystemThreadStarter : public ThreadStarter {
 public:
  bool Start(std::function<void()> fn, std::thread* out, std::string* error) override {
    try {
      *out = std::thread(std::move(fn));
      return true;
    } catch (const std::system_error& e) {  // EAGAIN: the process or user is out of threads
      *error = e.what();
    } catch (const std::bad_alloc&) {
      *error = "out of memory";
    }
    return false;
  }
};

}  // namespace

ThreadStarter* SystemThreads() {
  static SystemThreadStarter starter;
  return &starter;
}

bool WorkerBudget::TryStart(std::function<void()> fn, std::thread* out, std::string* error) {
  error->clear();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (in_use_ >= limit_) return false;
    ++in_use_;
  }
  if (starter_->Start(std::move(fn), out, error)) return true;
  if (error->empty()) *error = "thread not started";
  std::lock_guard<std::mutex> l(mu_);
  --in_use_;
  return false;
}

void WorkerBudget::Join(std::thread* t) {
  if (!t->joinable()) return;
  t->join();
  std::lock_guard<std::mutex> l(mu_);
  --in_use_;
}

namespace {

constexpr char kSlotPrefix[] = ".slot-";
constexpr size_t kSlotHashHex = 32;  // 128 bits of SHA-256: destinations share slots only by a collision
// Tries of one slot whose name Queue::Clean removed between our open and our lock (each try
// finds the name gone, or another file under it): rare, so two more tries are plenty.
constexpr int kSlotNameTries = 3;
// The pauses of DestinationLimiter::Acquire between tries of the slot files: short at first (a
// delivery often ends within a second), then at most a second, so that the waiting processes of
// a burst (one per message) try each slot file at most once a second each.
constexpr std::chrono::milliseconds kFirstSlotPause{50};
constexpr std::chrono::milliseconds kMaxSlotPause{1000};

}  // namespace

DestinationSlotFiles::DestinationSlotFiles(Env* env, std::string dir, size_t limit, Share share)
    : env_(env), dir_(std::move(dir)), limit_(limit == 0 ? 1 : limit), share_(share) {}

namespace {

// The name shared by a destination's slot files, "" if SHA-256 fails: computed once per TryTake,
// which runs for every message of a queue run.
std::string SlotFileStem(const std::string& key) {
  unsigned char digest[32];
  static const char* const hex = "0123456789abcdef";
  std::string name = kSlotPrefix;
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, key.data(), key.size(), digest) < 0) return "";
  for (size_t i = 0; i < kSlotHashHex / 2; ++i) {
    name += hex[digest[i] >> 4];
    name += hex[digest[i] & 15];
  }
  return name + "-";
}

}  // namespace

std::string DestinationSlotFiles::FileName(const std::string& key, size_t k) {
  std::string stem = SlotFileStem(key);
  return stem.empty() ? stem : stem + std::to_string(k);
}

bool DestinationSlotFiles::IsSlotFileName(std::string_view name) {
  const size_t prefix = sizeof kSlotPrefix - 1;
  if (name.size() < prefix + kSlotHashHex + 2 || name.size() > prefix + kSlotHashHex + 4) return false;
  if (name.substr(0, prefix) != kSlotPrefix || name[prefix + kSlotHashHex] != '-') return false;
  auto hexdigit = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  const std::string_view hash = name.substr(prefix, kSlotHashHex), k = name.substr(prefix + kSlotHashHex + 1);
  return std::all_of(hash.begin(), hash.end(), hexdigit) && std::all_of(k.begin(), k.end(), digit);
}

Status DestinationSlotFiles::TryTake(const std::string& key, std::unique_ptr<FileLock>* out) const {
  const size_t n = takeable();
  if (n == 0)
    return Status::Unavailable("its only delivery slot is kept for the queue runner (a submitter's own delivery takes "
                               "at most half of default_destination_concurrency_limit)");
  const std::string stem = SlotFileStem(key);
  if (stem.empty()) return Status::Error("cannot name the delivery slots of " + key + ": SHA-256 failed");
  for (size_t i = 0; i < n; ++i) {
    // Root's and the owner's processes from the top, submitters' from the bottom (queue.h).
    const size_t k = share_ == Share::kAll ? limit_ - 1 - i : i;
    const std::string path = dir_ + "/" + stem + std::to_string(k);
    for (int tries = 0; tries < kSlotNameTries; ++tries) {
      std::unique_ptr<FileLock> held;
      Status s = env_->LockFile(path, &held);
      if (s.IsNotFound()) {
        // Not durable and need not be: a slot file lost in a power loss is made again, and the
        // locks died with the processes anyway. Another process may make it first (EEXIST).
        Status made = env_->WriteNewFile(path, {}, kFileMode);
        if (!made.ok() && !env_->FileExists(path)) return made;
        continue;
      }
      if (s.IsUnavailable()) break;  // held: the next slot
      if (!s.ok()) return s;
      auto info = held->Stat();
      if (!info.ok()) return info.status().Prefixed(path + ": ");
      if (info->nlink == 0) continue;  // removed by Queue::Clean after we opened it: the name again
      *out = std::move(held);
      return Status::Ok();
    }
  }
  return Status::Unavailable("all " + std::to_string(n) + " of its delivery slots" +
                             (n < limit_ ? " a submitter may take" : "") + " are taken by deliveries in progress");
}

DestinationLimiter::Slot& DestinationLimiter::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    Release();
    owner_ = o.owner_;
    key_ = std::move(o.key_);
    file_ = std::move(o.file_);
    o.owner_ = nullptr;
  }
  return *this;
}

void DestinationLimiter::Slot::Release() {
  file_.reset();  // the other processes' slot first: this process's waiters then find it free
  if (owner_ == nullptr) return;
  owner_->Give(key_);
  owner_ = nullptr;
}

Result<DestinationLimiter::Slot> DestinationLimiter::Acquire(const std::string& domain) {
  std::string key = AsciiLower(domain);
  {
    std::unique_lock<std::mutex> l(mu_);
    freed_.wait(l, [&] {
      auto it = in_use_.find(key);
      return it == in_use_.end() || it->second < limit_;
    });
    ++in_use_[key];
  }
  Slot slot(this, key);
  if (files_ == nullptr) return slot;
  const auto deadline = std::chrono::steady_clock::now() + wait_;
  std::chrono::milliseconds pause = kFirstSlotPause;
  for (;;) {
    Status s = files_->TryTake(key, &slot.file_);
    if (s.ok()) return slot;
    // An error is never a reason to deliver without the slot: the limit would not hold.
    if (!s.IsUnavailable()) return s.Prefixed("delivery slot of " + key + ": ");
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline || files_->takeable() == 0) {
      const long waited = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(wait_).count());
      return Status::Unavailable(key + ": " + s.message() +
                                 (waited > 0 && files_->takeable() > 0 ? " (waited " + std::to_string(waited) + " s)"
                                                                        : "") +
                                 " (default_destination_concurrency_limit " + std::to_string(files_->limit()) + ")");
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, kMaxSlotPause);
  }
}

void DestinationLimiter::Give(const std::string& key) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = in_use_.find(key);
    if (it == in_use_.end()) return;
    if (--it->second == 0) in_use_.erase(it);
  }
  // Waiters for other domains wake too and wait again: the waiters are at most the threads.
  freed_.notify_all();
}

size_t DestinationLimiter::InUse(const std::string& domain) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = in_use_.find(AsciiLower(domain));
  return it == in_use_.end() ? 0 : it->second;
}

int64_t RetryDelay(int attempts, const QueueSettings& s) {
  int64_t d = std::max(1, s.retry_min);
  int64_t cap = std::max(s.retry_max, s.retry_min);
  for (int i = 1; i < attempts && d < cap; ++i) d *= 2;
  return std::min(d, cap);
}

namespace {

std::string RelayOf(const RecipientOutcome& o) {
  if (o.relay_host.empty()) return "";
  return FormatRelay(o.relay_host, o.relay_address, o.relay_port);
}

std::string DurationWords(int64_t s) {
  if (s % 86400 == 0 && s > 0) return std::to_string(s / 86400) + " day" + (s == 86400 ? "" : "s");
  if (s % 3600 == 0 && s > 0) return std::to_string(s / 3600) + " hour" + (s == 3600 ? "" : "s");
  return std::to_string(s) + " seconds";
}

}  // namespace

namespace {

// One delivery attempt of one queued message, in the order the steps must
// happen for durability: read under the lock, deliver domain by domain
// (each delivery recorded before another domain starts), expire, queue the
// DSNs before the bounces they report are recorded, then remove the
// message or write the envelope with its next retry.
class QueueAttempt {
 public:
  QueueAttempt(Queue& queue, const std::string& id, QueueLock lock, const DomainDeliverer& deliver, Clock* clock,
               const QueueSettings& settings, const std::function<void(const std::string&)>& log)
      : queue_(queue), id_(id), lock_(std::move(lock)), deliver_(deliver), clock_(clock), settings_(settings),
        log_(log) {
    rep_.id = id;
  }

  ProcessReport Run(bool force) {
    if (!Load(force)) return rep_;
    DeliverOrBounceAll();
    if (tried_domains_ == 0 && waiting_domains_ > 0 && newly_bounced_.empty() &&
        now_ - env_.queued_at < settings_.lifetime) {
      // Nothing was tried: the envelope stays as it is, due, no attempt counted.
      rep_.skipped = true;
      rep_.skip_reason = "no delivery slot free for its domains";
      return rep_;
    }
    env_.attempts += 1;
    ExpireIfPastLifetime();
    ReportFailures();
    ReportRelayedAndDelayed();
    Finish();
    return rep_;
  }

 private:
  // The work list: one domain's pending recipients and when any of them was last tried.
  struct DomainWork {
    std::string domain;
    std::vector<size_t> idx;
    int64_t last = 0;
  };

  void Say(const std::string& line) {
    if (log_) log_(id_ + ": " + line);
  }

  // Takes the lock if the caller did not, reads the envelope (only now,
  // under the lock: it is what the last holder left) and the message.
  // False when the attempt ends here (skipped or an error, in rep_).
  bool Load(bool force) {
    if (!lock_.held()) {
      LockState st = queue_.TryLock(id_, &lock_);
      if (st != LockState::kLocked) {
        rep_.skipped = true;
        rep_.skip_reason = st == LockState::kBusy ? "being delivered by another process" : "no longer queued";
        return false;
      }
    }
    auto env = queue_.ReadEnvelope(id_);
    if (!env.ok()) {
      rep_.error = env.error();
      Say("cannot read the envelope: " + rep_.error);
      return false;
    }
    env_ = std::move(env.value());
    now_ = clock_->Now();
    if (!force && env_.next_retry > now_) {
      rep_.skipped = true;
      rep_.skip_reason = "not due before " + Rfc5322Date(env_.next_retry);
      return false;
    }
    auto raw = queue_.ReadMessage(id_);
    if (!raw.ok()) {
      rep_.error = raw.error();
      Say("cannot read the message: " + rep_.error);
      return false;
    }
    raw_ = std::move(raw.value());
    if (raw_.size() != env_.size) {
      // The message file is never rewritten: another size means it was cut
      // short or changed on disk, and sending it would send another message.
      rep_.error = queue_.dir() + "/" + id_ + ".msg is " + std::to_string(raw_.size()) +
                   " octets, its envelope records " + std::to_string(env_.size) + "; left in the queue";
      Say("cannot send the message: " + rep_.error);
      return false;
    }
    return true;
  }

  void Bounce(size_t i, const std::string& code, const std::string& reply) {
    QueuedRecipient& r = env_.recipients[i];
    r.state = RecipientState::kBounced;
    r.code = code;
    r.reply = reply;
    r.time = now_;
    newly_bounced_.push_back(i);
  }

  void DeliverOrBounceAll() {
    auto sender = ParseMailbox(env_.sender, true);
    auto prepared = PrepareMessage(raw_, MessageOptions{});
    if (!sender.ok() || !prepared.ok()) {
      // Checked at submission; a message changed on disk since can never be sent.
      std::string why =
          !sender.ok() ? "invalid sender: " + sender.error() : "message cannot be sent: " + prepared.error();
      for (size_t i = 0; i < env_.recipients.size(); ++i)
        if (env_.recipients[i].state == RecipientState::kPending) Bounce(i, "5.6.0", why);
      return;
    }
    std::vector<Mailbox> boxes(env_.recipients.size());
    std::vector<DomainWork> work = PlanDomains(&boxes);
    DeliverDomains(work, boxes, sender.value(), prepared.value());
  }

  // Groups the pending recipients by domain (an unparsable address
  // bounces), least recently tried domains first (never tried: time 0), so
  // that a message with more domains than one attempt takes reaches all of
  // them in turn; at most queue_max_domains_per_attempt of them.
  std::vector<DomainWork> PlanDomains(std::vector<Mailbox>* boxes) {
    std::map<std::string, std::vector<size_t>> by_domain;
    for (size_t i = 0; i < env_.recipients.size(); ++i) {
      QueuedRecipient& r = env_.recipients[i];
      if (r.state != RecipientState::kPending) continue;
      auto m = ParseMailbox(r.address, false);
      if (!m.ok()) {
        Bounce(i, "5.1.3", "invalid recipient address: " + m.error());
        continue;
      }
      (*boxes)[i] = m.value();
      by_domain[m->domain].push_back(i);
    }
    std::vector<DomainWork> work;
    for (auto& [domain, idx] : by_domain) {
      DomainWork w{domain, idx, 0};
      for (size_t i : idx) w.last = std::max(w.last, env_.recipients[i].time);
      work.push_back(std::move(w));
    }
    std::stable_sort(work.begin(), work.end(), [](const DomainWork& a, const DomainWork& b) { return a.last < b.last; });
    const size_t max_domains = std::max<size_t>(1, settings_.max_domains_per_attempt);
    if (work.size() > max_domains) {
      const size_t untried = work.size() - max_domains;
      for (size_t k = max_domains; k < work.size(); ++k)
        if (work[k].last == 0) ++never_tried_domains_;
      work.resize(max_domains);
      Say(std::to_string(untried) + " of " + std::to_string(by_domain.size()) +
          " domains left for the next run (queue_max_domains_per_attempt " + std::to_string(max_domains) + ")");
    }
    return work;
  }

  DsnRequest RequestedDsn() const {
    DsnRequest d;
    if (!env_.sender.empty() && !env_.is_bounce) {
      d.notify = env_.dsn_notify;
      d.ret = env_.dsn_ret;
      d.envid = env_.envid;
    }
    return d;
  }

  // Works the list with the calling thread and as many helpers as the
  // worker budget gives: without any helper the attempt still progresses.
  void DeliverDomains(const std::vector<DomainWork>& work, const std::vector<Mailbox>& boxes, const Mailbox& sender,
                      const PreparedMessage& prepared) {
    // The file as written, plus the deliveries since. Bounces wait for the end of the attempt, where
    // their DSN is queued first: recorded earlier, a crash would lose the DSN.
    durable_ = env_;
    for (size_t i : newly_bounced_) durable_.recipients[i].state = RecipientState::kPending;
    const DsnRequest dsn_request = RequestedDsn();
    std::atomic<size_t> next{0};
    auto run = [&] {
      for (size_t k = next++; k < work.size() && !halt_; k = next++) {
        std::vector<Mailbox> rcpts;
        for (size_t i : work[k].idx) rcpts.push_back(boxes[i]);
        DestinationLimiter::Slot slot;
        if (settings_.destinations) {
          Result<DestinationLimiter::Slot> got = settings_.destinations->Acquire(work[k].domain);
          if (!got.ok()) {
            LeaveWaiting(work[k], got.status());
            continue;
          }
          slot = std::move(got).value();
        }
        ++tried_domains_;
        std::vector<RecipientOutcome> got =
            deliver_(work[k].domain, sender, rcpts, prepared, dsn_request, env_.message_tls);
        slot.Release();  // the sessions are over (or parked for the next delivery to the destination)
        Settle(work[k], got);
      }
    };
    std::vector<std::thread> helpers;
    for (size_t h = 1; h < work.size() && settings_.workers; ++h) {
      std::thread t;
      std::string why;
      if (!settings_.workers->TryStart(run, &t, &why)) {
        if (!why.empty()) {
          std::lock_guard<std::mutex> l(mu_);
          Say("cannot start a delivery thread (" + why + "); going on with " + std::to_string(helpers.size() + 1));
        }
        break;
      }
      helpers.push_back(std::move(t));
    }
    run();
    for (std::thread& t : helpers) settings_.workers->Join(&t);
  }

  // A domain without a delivery slot: its recipients stay as they are (their last result and
  // time too, so that they come first next time), due again at once (Finish). Not a failure of
  // theirs; a slot file that cannot be used is a local error.
  void LeaveWaiting(const DomainWork& w, const Status& why) {
    std::lock_guard<std::mutex> l(mu_);
    ++waiting_domains_;
    rep_.waiting += w.idx.size();
    if (!why.IsUnavailable()) rep_.error = why.message();
    Say(w.domain + ": not delivered now, left in the queue for the next run: " + why.message());
  }

  // Applies one domain's outcomes (under mu_); true when any recipient was
  // delivered, which must be made durable before this thread goes on.
  bool ApplyOutcomes(const DomainWork& w, const std::vector<RecipientOutcome>& got) {
    bool delivered_any = false;
    for (size_t j = 0; j < w.idx.size(); ++j) {
      QueuedRecipient& r = env_.recipients[w.idx[j]];
      if (j >= got.size()) {  // a deliverer that answered for fewer recipients: try again later
        r.code = "4.3.0";
        r.reply = "internal: no result for this recipient";
        continue;
      }
      const RecipientOutcome& o = got[j];
      r.code = o.code;
      r.reply = o.reply;
      r.relay = RelayOf(o);
      r.time = now_;
      if (o.status == RcptStatus::kDelivered) {
        r.state = RecipientState::kDelivered;
        if (env_.notify_success && !o.dsn_passed) newly_relayed_.push_back(w.idx[j]);
        durable_.recipients[w.idx[j]] = r;
        delivered_any = true;
      } else if (o.status == RcptStatus::kBounced) {
        r.state = RecipientState::kBounced;
        newly_bounced_.push_back(w.idx[j]);
      } else {
        env_.last_reason = o.code + " " + o.reply;
      }
      Say(r.address + ": status=" +
          (r.state == RecipientState::kPending ? std::string("deferred") : RecipientStateName(r.state)) +
          " relay=" + (r.relay.empty() ? "none" : r.relay) + " tls=" + (o.tls_status.empty() ? "none" : o.tls_status) +
          " code=" + r.code + " reply=" + r.reply);
    }
    return delivered_any;
  }

  // `mu_` guards env_, durable_, newly_*, the counters and Say while workers
  // run; `write_mu_` makes one envelope write at a time, and a write takes
  // every delivery applied before it (so concurrent workers share one write).
  void Settle(const DomainWork& w, const std::vector<RecipientOutcome>& got) {
    uint64_t mine = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!ApplyOutcomes(w, got)) return;
      // The last recipients settled, no notification to queue: Finish removes the message once the
      // workers are done, and its directory fsync is the record. A crash before it sends this one
      // transaction again, exactly as a crash before this write would: the write adds nothing (an
      // fsynced file, a rename and a directory fsync per message). Every earlier Settle of the
      // attempt left something pending and so wrote.
      if (env_.pending() == 0 && newly_bounced_.empty() && newly_relayed_.empty()) return;
      mine = ++applied_;
    }
    // Durable before this thread starts another domain: a crash from here on does not send
    // these recipients the message again.
    std::lock_guard<std::mutex> wl(write_mu_);
    QueuedEnvelope snapshot;
    uint64_t target = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (written_ >= mine) return;  // another worker's write took ours along
      snapshot = durable_;
      target = applied_;
    }
    Status s = queue_.WriteEnvelope(snapshot);
    std::lock_guard<std::mutex> l(mu_);
    written_ = target;
    if (!s.ok()) {
      // Progress that cannot be recorded is not made: no further domain is started.
      halt_ = true;
      rep_.error = "cannot record the deliveries so far: " + s.message();
      Say(rep_.error + "; the other domains wait for the next run");
    }
  }

  // Past the lifetime: what is still pending bounces (Postfix's maximal_queue_lifetime).
  void ExpireIfPastLifetime() {
    if (env_.pending() == 0 || now_ - env_.queued_at < settings_.lifetime) return;
    for (size_t i = 0; i < env_.recipients.size(); ++i) {
      QueuedRecipient& r = env_.recipients[i];
      if (r.state != RecipientState::kPending) continue;
      // RFC 8689 §4.2.1: a REQUIRETLS message no host could take is returned with 5.7.30.
      const bool requiretls_unmet = env_.message_tls == MessageTls::kRequireTls && r.code == "4.7.30";
      const std::string code = requiretls_unmet ? "5.7.30" : "4.4.7";
      const std::string last = r.reply;
      Bounce(i, code,
             "message expired after " + DurationWords(settings_.lifetime) + " in the queue; last problem: " +
                 (r.code.empty() ? "" : r.code + " ") + last);
      Say(r.address + ": status=bounced code=" + code + " reply=" + r.reply);
    }
  }

  DsnInput DsnInputFor(DsnKind kind, const std::vector<size_t>& which, const char* what) const {
    DsnInput in;
    in.kind = kind;
    in.will_retry_until = env_.queued_at + settings_.lifetime;
    in.reporting_mta = settings_.reporting_mta;
    in.bounce_domain = settings_.bounce_domain;
    in.original_sender = env_.sender;
    in.queue_id = id_;
    in.envid = env_.envid;
    in.arrival = env_.queued_at;
    in.now = now_;
    in.headers_only = env_.return_headers_only;
    in.original = raw_;
    in.omit_original = env_.message_tls == MessageTls::kRequireTls;
    in.message_id = id_ + "." + what + "." + std::to_string(now_) + "@" + settings_.bounce_domain;
    for (size_t i : which) {
      const QueuedRecipient& r = env_.recipients[i];
      DsnRecipient d;
      d.address = r.address;
      d.status = r.code;
      d.diagnostic = r.reply;
      d.remote_mta = r.relay.substr(0, r.relay.find('['));
      d.expired = kind == DsnKind::kFailure && r.code == "4.4.7";
      in.recipients.push_back(d);
    }
    return in;
  }

  // Queues a DSN of `kind` to the sender about the recipients at `which`.
  Result<std::string> QueueDsn(DsnKind kind, const std::vector<size_t>& which) {
    static const char* const kWhat[] = {"dsn", "delayed", "relayed"};
    const char* what = kWhat[static_cast<int>(kind)];
    DsnInput in = DsnInputFor(kind, which, what);
    QueuedEnvelope dsn_env;
    dsn_env.sender = "";
    dsn_env.is_bounce = true;
    dsn_env.recipients.push_back(QueuedRecipient{env_.sender});
    dsn_env.next_retry = 0;
    // Never dropped for its content: a report returning less than asked says why in the log, and
    // one that could still not be sent (BuildDsn promises it can) goes out as the minimal one.
    std::string reduced;
    std::string text = BuildDsn(in, &reduced);
    if (!reduced.empty()) Say(std::string(what) + " notification: " + reduced);
    if (auto sendable = PrepareMessage(text, MessageOptions{}); !sendable.ok()) {
      Say(std::string(what) + " notification cannot be sent as built (" + sendable.error() +
          "); queuing a minimal one without the original message");
      in.omit_original = true;
      text = BuildDsn(in);
    }
    return queue_.Submit(text, dsn_env, clock_, nullptr);
  }

  void ReportFailures() {
    if (newly_bounced_.empty()) return;
    if (env_.is_bounce || env_.sender.empty()) {
      Say("delivery status notification to <" + (env_.recipients.empty() ? "" : env_.recipients[0].address) +
          "> failed permanently; dropped (a bounce is never bounced)");
    } else if (!env_.notify_failure) {
      Say("bounced recipients not reported: the sender asked for no notification (-N never)");
    } else {
      auto dsn_id = QueueDsn(DsnKind::kFailure, newly_bounced_);
      if (!dsn_id.ok()) {
        // No DSN, no bounce: those recipients stay pending and are tried again.
        rep_.error = "cannot queue the delivery status notification: " + dsn_id.error();
        Say(rep_.error);
        for (size_t i : newly_bounced_) env_.recipients[i].state = RecipientState::kPending;
        newly_bounced_.clear();
      } else {
        rep_.dsn_id = dsn_id.value();
        rep_.dsn_ids.push_back(rep_.dsn_id);
        Say("delivery status notification to <" + env_.sender + "> queued as " + rep_.dsn_id);
      }
    }
  }

  // RFC 3461 success and delay reports; never for the null sender (nor for our own DSNs).
  void ReportRelayedAndDelayed() {
    const bool may_notify = !env_.sender.empty() && !env_.is_bounce;
    if (may_notify && !newly_relayed_.empty()) {
      auto dsn_id = QueueDsn(DsnKind::kRelayed, newly_relayed_);
      if (!dsn_id.ok()) {
        // The recipients are delivered; what is lost is the notice that they were (logged, counted as an error).
        rep_.error = "cannot queue the success notification (relayed): " + dsn_id.error();
        Say(rep_.error);
      } else {
        rep_.dsn_ids.push_back(dsn_id.value());
        Say("success notification (relayed) to <" + env_.sender + "> queued as " + dsn_id.value());
      }
    }
    if (!may_notify || !env_.notify_delay || env_.delay_warned || settings_.delay_warning <= 0 ||
        env_.pending() == 0 || now_ - env_.queued_at < settings_.delay_warning)
      return;
    std::vector<size_t> waiting;
    for (size_t i = 0; i < env_.recipients.size(); ++i)
      if (env_.recipients[i].state == RecipientState::kPending) waiting.push_back(i);
    auto dsn_id = QueueDsn(DsnKind::kDelay, waiting);
    if (!dsn_id.ok()) {
      // Not marked as sent: the next attempt tries again.
      rep_.error = "cannot queue the delay notification: " + dsn_id.error();
      Say(rep_.error);
    } else {
      env_.delay_warned = true;
      rep_.dsn_ids.push_back(dsn_id.value());
      Say("delay notification to <" + env_.sender + "> queued as " + dsn_id.value());
    }
  }

  // Removes a finished message, or records the envelope with its next retry.
  void Finish() {
    for (const QueuedRecipient& r : env_.recipients) {
      if (r.state == RecipientState::kDelivered) ++rep_.delivered;
      else if (r.state == RecipientState::kBounced) ++rep_.bounced;
      else ++rep_.deferred;
    }
    if (env_.pending() == 0) {
      Status s = queue_.Remove(id_);
      if (!s.ok()) {
        rep_.error = s.message();
        Say("cannot remove the finished message: " + rep_.error);
        // Leave an envelope without pending recipients: nothing is sent twice.
        (void)queue_.WriteEnvelope(env_);
        return;
      }
      rep_.removed = true;
      Say("removed from the queue (" + std::to_string(rep_.delivered) + " delivered, " +
          std::to_string(rep_.bounced) + " bounced)");
      return;
    }
    // Domains never tried for the bound of one attempt are not a failure: due at the next run. Once
    // each had its turn, the backoff applies as to any message. Domains left waiting for a delivery
    // slot likewise: they did not fail.
    const bool untried = never_tried_domains_ > 0 || waiting_domains_ > 0;
    env_.next_retry = untried ? now_ : now_ + RetryDelay(env_.attempts, settings_);
    Status s = queue_.WriteEnvelope(env_);
    if (!s.ok()) {
      rep_.error = s.message();
      Say("cannot update the envelope: " + rep_.error);
    } else {
      Say("deferred, next attempt " + Rfc5322Date(env_.next_retry));
    }
  }

  Queue& queue_;
  const std::string id_;
  QueueLock lock_;  // held for the whole attempt
  const DomainDeliverer& deliver_;
  Clock* clock_;
  const QueueSettings& settings_;
  const std::function<void(const std::string&)>& log_;

  ProcessReport rep_;
  QueuedEnvelope env_;
  std::string raw_;
  int64_t now_ = 0;
  std::vector<size_t> newly_bounced_;
  std::vector<size_t> newly_relayed_;  // delivered to a hop that did not take NOTIFY=, success asked
  size_t never_tried_domains_ = 0;     // beyond max_domains_per_attempt and never tried: due again at once
  size_t waiting_domains_ = 0;         // no delivery slot (LeaveWaiting): due again at once
  std::atomic<size_t> tried_domains_{0};  // handed to the deliverer

  // While domains are delivered concurrently (DeliverDomains, Settle).
  std::mutex mu_, write_mu_;
  QueuedEnvelope durable_;
  uint64_t applied_ = 0, written_ = 0;
  std::atomic<bool> halt_{false};
};

}  // namespace

ProcessReport ProcessQueuedMessage(Queue& queue, const std::string& id, QueueLock lock, bool force,
                                   const DomainDeliverer& deliver, Clock* clock, const QueueSettings& settings,
                                   const std::function<void(const std::string&)>& log) {
  QueueAttempt attempt(queue, id, std::move(lock), deliver, clock, settings, log);
  return attempt.Run(force);
}

void RunQueuePass(Queue& queue, const std::vector<std::string>& ids, bool force, const DomainDeliverer& deliver,
                  Clock* clock, const QueueSettings& settings, const QueueRunHooks& hooks) {
  WorkerBudget* budget = settings.workers;
  // Three quarters of the threads for messages; the rest helps the domains of a message to several.
  const size_t message_workers = budget ? std::max<size_t>(1, budget->limit() - budget->limit() / 4) : 1;
  const size_t per_destination =
      settings.destinations ? settings.destinations->limit() : std::numeric_limits<size_t>::max();
  const std::vector<std::vector<std::string>> runs = DestinationRuns(queue, ids, message_workers, per_destination);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t r = next++; r < runs.size(); r = next++) {
      for (const std::string& id : runs[r]) {
        ProcessReport rep = ProcessQueuedMessage(queue, id, QueueLock(), force, deliver, clock, settings, hooks.log);
        if (hooks.done) hooks.done(rep);
      }
    }
  };
  std::vector<std::thread> workers;
  for (size_t k = 0; budget && k < std::min(runs.size(), message_workers); ++k) {
    std::thread t;
    std::string why;
    if (!budget->TryStart(worker, &t, &why)) {
      if (!why.empty() && hooks.warn)
        hooks.warn("cannot start a queue runner thread (" + why + "); going on with the others");
      break;
    }
    workers.push_back(std::move(t));
  }
  // No thread at all: this one does the work.
  if (workers.empty()) worker();
  for (std::thread& t : workers) budget->Join(&t);
}

}  // namespace mxsec
