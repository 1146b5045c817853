// tls_session_store.cc - TLS session data kept between SMTP sessions (see
// tls_session_store.h for the promises).
#include "mxsec/smtp/tls_session_store.h"

#include <chrono>

namespace mxsec {

namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TlsSessionStore::TlsSessionStore(TlsSessionStoreLimits limits, std::function<int64_t()> now_ms)
    : limits_(limits), now_ms_(now_ms ? std::move(now_ms) : SteadyNowMs) {}

void TlsSessionStore::EraseLocked(const std::string& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  entries_.erase(it->second);
  by_key_.erase(it);
}

std::optional<std::string> TlsSessionStore::Get(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  if (now_ms_() - it->second->stored_ms > limits_.max_age_ms) {
    EraseLocked(key);
    return std::nullopt;
  }
  return it->second->data;
}

bool TlsSessionStore::Put(const std::string& key, std::string data) {
  if (data.empty() || data.size() > limits_.max_bytes || limits_.max_entries == 0) return false;
  std::lock_guard<std::mutex> l(mu_);
  EraseLocked(key);
  const int64_t now = now_ms_();
  // Expired entries first, then the oldest, until there is room.
  while (!entries_.empty() &&
         (now - entries_.front().stored_ms > limits_.max_age_ms || entries_.size() >= limits_.max_entries)) {
    by_key_.erase(entries_.front().key);
    entries_.pop_front();
  }
  entries_.push_back(Entry{key, std::move(data), now});
  by_key_[key] = std::prev(entries_.end());
  return true;
}

void TlsSessionStore::Forget(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  EraseLocked(key);
}

size_t TlsSessionStore::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return entries_.size();
}

}  // namespace mxsec
