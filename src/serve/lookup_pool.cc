// lookup_pool.cc - see lookup_pool.h.
#include "lookup_pool.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <system_error>

namespace mxsec {
namespace {

constexpr auto kRenewTick = std::chrono::seconds(5);  // how often used answers are checked for renewal

}  // namespace

int64_t ServeNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

LookupPool::LookupPool(std::shared_ptr<PolicySource> source, const ServeSettings& settings, LogFunction log,
                       ServeMetrics* metrics)
    : settings_(settings),
      log_(std::move(log)),
      metrics_(metrics),
      source_(std::move(source)),
      answers_(settings.answer_ttls),
      last_check_(ServeNow()) {
  if (auto check = source_->LastResolverCheck()) metrics_->SetResolverCheck(*check);
  metrics_->SetStateStoreUp(source_->StateStoreUp());
}

LookupPool::~LookupPool() { Stop(); }

void LookupPool::SetSource(std::shared_ptr<PolicySource> source) {
  std::lock_guard<std::mutex> l(mu_);
  source_ = std::move(source);
  answers_.Clear();
  last_check_ = ServeNow();  // the caller checked the new resolver
}

std::optional<std::string> LookupPool::Cached(const std::string& domain) {
  std::lock_guard<std::mutex> l(mu_);
  return answers_.Get(domain, ServeNow());
}

void LookupPool::Request(const std::string& domain, uint64_t owner) {
  std::lock_guard<std::mutex> l(mu_);
  if (queue_.Push(domain, owner)) work_cv_.notify_one();
}

std::vector<std::string> LookupPool::Cancel(uint64_t owner) {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.Cancel(owner);
}

size_t LookupPool::CacheSize() {
  std::lock_guard<std::mutex> l(mu_);
  return answers_.size();
}

std::vector<std::pair<std::string, std::string>> LookupPool::TakeFinished() {
  std::lock_guard<std::mutex> l(mu_);
  auto out = std::move(finished_);
  finished_.clear();
  return out;
}

Status LookupPool::Start(int wake_fd) {
  wake_fd_ = wake_fd;
  try {
    for (size_t i = 0; i < settings_.workers; ++i) threads_.emplace_back([this] { Work(); });
    threads_.emplace_back([this] { RenewAnswers(); });
    threads_.emplace_back([this] { RefreshSts(); });
  } catch (const std::system_error& e) {
    Stop();
    return Status::Unavailable(std::string("cannot start the lookup threads: ") + e.what());
  }
  return Status::Ok();
}

void LookupPool::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    work_cv_.notify_all();
    stop_cv_.notify_all();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void LookupPool::Work() {
  for (;;) {
    std::string domain;
    std::shared_ptr<PolicySource> source;
    {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait(l, [&] { return stop_ || queue_.queued() > 0; });
      if (stop_) return;
      domain = *queue_.Pop();
      source = source_;
    }
    const auto start = std::chrono::steady_clock::now();
    DomainPolicy p = source->Resolve(domain);
    if (!p.override_warning.empty()) log_("warning: " + p.override_warning);
    const SocketmapAnswer answer = PostfixPolicyAnswer(p);
    metrics_->CountLookup(answer, p, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    metrics_->SetStateStoreUp(source->StateStoreUp());
    std::string reply = answer.Encode();
    {
      std::lock_guard<std::mutex> l(mu_);
      // Decided under a configuration that a reload replaced meanwhile: the
      // clients waiting for it get it, but it is not kept as an answer.
      if (source_ == source) answers_.Put(domain, reply, answer.kind == SocketmapAnswer::Kind::kTemp, ServeNow());
      queue_.Done(domain);
      finished_.emplace_back(domain, std::move(reply));
    }
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
}

// A resolver whose validation is switched off while we run must not turn
// DANE domains quietly insecure: the self-check runs again every
// resolver_check_interval.
void LookupPool::MaybeCheckResolver() {
  std::shared_ptr<PolicySource> source;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (ServeNow() - last_check_ < settings_.resolver_check_interval) return;
    last_check_ = ServeNow();
    source = source_;
  }
  std::optional<ResolverCheck> before = source->LastResolverCheck();
  std::optional<ResolverCheck> after = source->CheckResolver(std::time(nullptr));
  if (!after) return;
  metrics_->SetResolverCheck(*after);
  bool changed = !before || before->status != after->status;
  if (changed || after->status != ResolverCheckStatus::kValidates) {
    log_(std::string(after->status == ResolverCheckStatus::kValidates ? "" : "warning: ") + after->summary);
  }
  if (changed) {
    std::lock_guard<std::mutex> l(mu_);
    if (source_ == source) answers_.Clear();
  }
}

void LookupPool::RenewAnswers() {
  for (;;) {
    MaybeCheckResolver();
    std::unique_lock<std::mutex> l(mu_);
    if (stop_cv_.wait_for(l, kRenewTick, [&] { return stop_; })) return;
    auto busy = [&](const std::string& d) { return queue_.Busy(d); };
    for (const std::string& d : answers_.DueForRefresh(ServeNow(), busy)) {
      queue_.Push(d, kRefreshOwner);
      work_cv_.notify_one();
    }
  }
}

// On a thread of its own, so that a slow policy host never delays answers
// (RFC 8461 §3.3: refresh before the policy expires).
void LookupPool::RefreshSts() {
  for (;;) {
    std::shared_ptr<PolicySource> source;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      source = source_;
    }
    StsRefreshReport report = source->RefreshStsCache();
    metrics_->SetStateStoreUp(source->StateStoreUp());
    metrics_->CountStsRefresh(report);
    if (!report.error.empty()) log_("warning: MTA-STS refresh: " + report.error);
    for (const StsRefreshOutcome& d : report.domains) {
      if (!d.refreshed) log_("MTA-STS policy of " + d.domain + " not refreshed (kept, retried later): " + d.error);
    }
    std::unique_lock<std::mutex> l(mu_);
    if (stop_cv_.wait_for(l, std::chrono::seconds(settings_.sts_refresh_interval), [&] { return stop_; })) return;
  }
}

}  // namespace mxsec
