// session_cache.cc - open SMTP sessions parked between transactions (see
// session_cache.h for the promises).
#include "mxsec/smtp/session_cache.h"

#include <chrono>
#include <vector>

namespace mxsec {

namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void CloseAll(std::vector<std::unique_ptr<ReusableSession>>& sessions) {
  for (auto& s : sessions) s->Close();
}

}  // namespace

SessionCache::SessionCache(SessionCacheLimits limits, std::function<int64_t()> now_ms, TlsSessionStoreLimits tls_limits)
    : limits_(limits), now_ms_(now_ms ? std::move(now_ms) : SteadyNowMs), tls_sessions_(tls_limits, now_ms_) {}

SessionCache::~SessionCache() {
  for (Parked& p : parked_) p.session->Close();
}

bool SessionCache::Expired(const Parked& p, int64_t now) const {
  return now - p.parked_ms > limits_.max_idle_ms || now - p.opened_ms > limits_.max_age_ms;
}

std::unique_ptr<ReusableSession> SessionCache::Take(const std::string& key, size_t* uses, int64_t* opened_ms) {
  for (;;) {
    Parked found;
    std::vector<std::unique_ptr<ReusableSession>> expired;
    {
      std::lock_guard<std::mutex> l(mu_);
      const int64_t now = now_ms_();
      for (auto it = parked_.begin(); it != parked_.end();) {
        if (Expired(*it, now)) {
          expired.push_back(std::move(it->session));
          it = parked_.erase(it);
        } else if (!found.session && it->key == key) {
          found = std::move(*it);
          it = parked_.erase(it);
        } else {
          ++it;
        }
      }
    }
    CloseAll(expired);
    if (!found.session) return nullptr;
    // A session the server gave up on (idle timeout, 421) fails here, before any transaction.
    if (!found.session->Reset()) continue;
    *uses = found.uses;
    *opened_ms = found.opened_ms;
    return std::move(found.session);
  }
}

void SessionCache::Put(const std::string& key, std::unique_ptr<ReusableSession> session, size_t uses,
                       int64_t opened_ms) {
  if (!session) return;
  std::vector<std::unique_ptr<ReusableSession>> closing;
  {
    std::lock_guard<std::mutex> l(mu_);
    const int64_t now = now_ms_();
    Parked p{key, std::move(session), uses, opened_ms, now};
    if (uses >= limits_.max_uses || Expired(p, now) || limits_.max_sessions == 0) {
      closing.push_back(std::move(p.session));
    } else {
      while (parked_.size() >= limits_.max_sessions) {
        closing.push_back(std::move(parked_.front().session));
        parked_.pop_front();
      }
      parked_.push_back(std::move(p));
    }
  }
  CloseAll(closing);
}

size_t SessionCache::parked() const {
  std::lock_guard<std::mutex> l(mu_);
  return parked_.size();
}

}  // namespace mxsec
