// answer_cache.cc - see answer_cache.h.
#include "mxsec/serve/answer_cache.h"

namespace mxsec {

std::optional<std::string> AnswerCache::Get(const std::string& domain, int64_t now) {
  auto it = answers_.find(domain);
  if (it == answers_.end() || it->second.expires <= now) return std::nullopt;
  it->second.used_since_refresh = true;
  return it->second.reply;
}

void AnswerCache::Put(const std::string& domain, std::string reply, bool temp, int64_t now) {
  Answer& a = answers_[domain];
  a.reply = std::move(reply);
  a.expires = now + (temp ? ttls_.temp_answer : ttls_.answer);
  a.used_since_refresh = false;
}

std::vector<std::string> AnswerCache::DueForRefresh(int64_t now,
                                                    const std::function<bool(const std::string&)>& busy) {
  std::vector<std::string> due;
  for (auto it = answers_.begin(); it != answers_.end();) {
    if (it->second.expires - now < ttls_.refresh_before) {
      if (it->second.used_since_refresh && !busy(it->first)) {
        due.push_back(it->first);
      } else if (it->second.expires <= now) {
        it = answers_.erase(it);
        continue;
      }
    }
    ++it;
  }
  return due;
}

}  // namespace mxsec
