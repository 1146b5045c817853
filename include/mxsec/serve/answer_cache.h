// answer_cache.h - the answers `mxsec serve` keeps in memory, and which of
// them to renew before they expire.
//
// An answer is the encoded socketmap reply for a domain, served from memory
// until it expires (TEMP answers sooner, so that a passing failure is
// retried soon). An answer used since it was stored and about to expire is
// due for a refresh, so that a busy domain never waits for DNS or HTTPS;
// one nobody used is let go when it expires. Times are seconds on a
// monotonic clock, passed in; the cache does no locking (its owner does).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mxsec {

struct AnswerCacheTtls {
  int64_t answer = 300;          // seconds an answer is served from memory
  int64_t temp_answer = 15;      // a TEMP answer: retried soon
  int64_t refresh_before = 60;   // renew used answers this long before they expire
};

class AnswerCache {
 public:
  explicit AnswerCache(const AnswerCacheTtls& ttls = AnswerCacheTtls()) : ttls_(ttls) {}

  // The answer for `domain` if it has not expired at `now`; marks it used.
  std::optional<std::string> Get(const std::string& domain, int64_t now);
  // Stores (or replaces) the answer for `domain`, not yet used.
  void Put(const std::string& domain, std::string reply, bool temp, int64_t now);
  void Clear() { answers_.clear(); }
  size_t size() const { return answers_.size(); }

  // The domains to look up again now: answers that expire within
  // refresh_before, were used since stored, and whose domain is not
  // `busy` (a lookup queued or under way). Drops the answers that expired
  // and are not being renewed.
  std::vector<std::string> DueForRefresh(int64_t now, const std::function<bool(const std::string&)>& busy);

 private:
  struct Answer {
    std::string reply;
    int64_t expires = 0;
    bool used_since_refresh = false;
  };
  AnswerCacheTtls ttls_;
  std::map<std::string, Answer> answers_;
};

}  // namespace mxsec
