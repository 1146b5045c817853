// lookup_pool.h - the worker threads of `mxsec serve` (server.h) and the
// state they share with the event loop: the answers in memory, the queue
// of lookups, the answers finished and not yet taken.
//
// Request() queues a lookup unless the domain's lookup is queued or under
// way; a worker decides it with the PolicySource, stores the answer (unless
// the source was replaced meanwhile: the clients waiting get it, it is not
// kept) and wakes the event loop through the eventfd given to Start().
// Background threads renew used answers before they expire, refresh the
// MTA-STS cache, and re-run the resolver's self-check; when that verdict
// changes every answer in memory is dropped, since it was decided under
// the old one. Internal to src/serve.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mxsec/serve/answer_cache.h"
#include "mxsec/serve/metrics.h"
#include "mxsec/serve/server.h"
#include "mxsec/serve/socketmap.h"

namespace mxsec {

// The owner of the server's own refreshes in the LookupQueue; connections
// are numbered from 1.
inline constexpr uint64_t kRefreshOwner = 0;

// Seconds since an arbitrary start, on a monotonic clock.
int64_t ServeNow();

class LookupPool {
 public:
  using LogFunction = std::function<void(const std::string&)>;
  // `metrics` (not owned) must outlive the pool.
  LookupPool(std::shared_ptr<PolicySource> source, const ServeSettings& settings, LogFunction log,
             ServeMetrics* metrics);
  ~LookupPool();  // stops the threads if running
  LookupPool(const LookupPool&) = delete;
  LookupPool& operator=(const LookupPool&) = delete;

  // A new source (reload): answers in memory are dropped; the caller has
  // checked its resolver.
  void SetSource(std::shared_ptr<PolicySource> source);
  // The answer in memory, if fresh.
  std::optional<std::string> Cached(const std::string& domain);
  // Queues a lookup of `domain` for connection `owner` (see above).
  void Request(const std::string& domain, uint64_t owner);
  // The connection is gone: its lookups not yet started are dropped and
  // returned (others may wait for them too: the caller queues them again).
  std::vector<std::string> Cancel(uint64_t owner);
  size_t CacheSize();
  // Answers finished since the last call (domain -> encoded reply).
  std::vector<std::pair<std::string, std::string>> TakeFinished();

  // Starts the workers and background threads; finished lookups are
  // signalled by writing to `wake_fd`. A thread that cannot be started is
  // an error (the caller gives up; the threads started are stopped).
  Status Start(int wake_fd);
  void Stop();

 private:
  void Work();
  void MaybeCheckResolver();
  void RenewAnswers();
  void RefreshSts();

  const ServeSettings settings_;
  const LogFunction log_;
  ServeMetrics* const metrics_;
  std::mutex mu_;
  // Two condition variables: with one shared by the workers and the
  // background threads, notify_one() for new work could wake one whose
  // predicate ignores the queue, and the lookup would wait for the next
  // notification (seen as a lookup answered TEMP after lookup_timeout).
  std::condition_variable work_cv_;  // workers: queue_ not empty, or stop_
  std::condition_variable stop_cv_;  // background threads: stop_
  std::shared_ptr<PolicySource> source_;
  AnswerCache answers_;
  LookupQueue queue_;  // lookups waiting for a worker or under way
  std::vector<std::pair<std::string, std::string>> finished_;
  std::vector<std::thread> threads_;
  int wake_fd_ = -1;
  bool stop_ = false;
  int64_t last_check_;  // the server checks the resolver before the first lookup
};

}  // namespace mxsec
