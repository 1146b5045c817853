// socketmap.cc - netstrings, the bookkeeping of a socketmap server
// connection and its lookup queue, and the mxsec -> Postfix TLS policy
// mapping.
#include "mxsec/serve/socketmap.h"

#include <algorithm>
#include <set>

#include "mxsec/base/domain_name.h"

namespace mxsec {

Result<std::optional<std::string>> NetstringReader::Next() {
  using Out = std::optional<std::string>;
  if (buf_.empty()) return Out();
  size_t colon = buf_.find(':');
  size_t digits = colon == std::string::npos ? buf_.size() : colon;
  if (digits == 0) return Status::Error("netstring without a length");
  if (digits > 10) return Status::Error("netstring length too long");
  for (size_t i = 0; i < digits; ++i)
    if (buf_[i] < '0' || buf_[i] > '9') return Status::Error("netstring length is not a number");
  if (digits > 1 && buf_[0] == '0') return Status::Error("netstring length with a leading zero");
  // More digits only make the length larger: refuse as soon as it is over
  // the limit, without waiting for the colon or buffering any payload.
  size_t len = std::stoull(buf_.substr(0, digits));
  if (len > max_len_)
    return Status::Error("netstring of " + std::string(colon == std::string::npos ? "at least " : "") +
                         std::to_string(len) + " bytes, limit " + std::to_string(max_len_));
  if (colon == std::string::npos) return Out();
  if (buf_.size() < colon + 1 + len + 1) return Out();
  if (buf_[colon + 1 + len] != ',') return Status::Error("netstring not terminated by a comma");
  std::string payload = buf_.substr(colon + 1, len);
  buf_.erase(0, colon + 1 + len + 1);
  return Out(std::move(payload));
}

std::string EncodeNetstring(std::string_view payload) {
  return std::to_string(payload.size()) + ":" + std::string(payload) + ",";
}

SocketmapConnection::SocketmapConnection(const SocketmapLimits& limits, int64_t now)
    : limits_(limits), reader_(limits.max_query_size), last_activity_(now) {}

void SocketmapConnection::Receive(std::string_view bytes, int64_t now) {
  reader_.Feed(bytes);
  if (!bytes.empty()) last_activity_ = now;
}

bool SocketmapConnection::WantsInput() const {
  return outstanding() < limits_.max_pending_requests && pending_bytes_ < limits_.max_output_buffer;
}

Result<std::optional<std::string>> SocketmapConnection::NextRequest(int64_t now) {
  using Out = std::optional<std::string>;
  if (!WantsInput()) {
    // Not reading is our choice, not the client's slowness: the time to
    // complete a request starts again when there is room.
    partial_since_ = 0;
    return Out();
  }
  auto next = reader_.Next();
  if (!next.ok()) return next.status();
  if (next.value()) {
    partial_since_ = 0;
    slots_.emplace_back();
    return next;
  }
  if (reader_.buffered() == 0) {
    partial_since_ = 0;
  } else if (partial_since_ == 0) {
    partial_since_ = now;
  }
  return Out();
}

void SocketmapConnection::Reply(std::string reply) {
  Slot& s = slots_.back();
  s.reply = EncodeNetstring(reply);
  s.ready = true;
  pending_bytes_ += s.reply.size();
  MoveReady();
}

void SocketmapConnection::Await(const std::string& domain, int64_t deadline) {
  slots_.back().domain = domain;
  slots_.back().deadline = deadline;
}

bool SocketmapConnection::Resolved(const std::string& domain, const std::string& reply) {
  bool any = false;
  for (Slot& s : slots_) {
    if (s.ready || s.domain != domain) continue;
    s.reply = EncodeNetstring(reply);
    s.ready = true;
    s.domain.clear();
    pending_bytes_ += s.reply.size();
    any = true;
  }
  if (any) MoveReady();
  return any;
}

std::vector<std::string> SocketmapConnection::ExpireLookups(int64_t now) {
  std::vector<std::string> expired;
  for (Slot& s : slots_) {
    if (s.ready || now <= s.deadline) continue;
    s.reply = EncodeNetstring(SocketmapAnswer::Temp("policy lookup for " + s.domain + " timed out").Encode());
    s.ready = true;
    expired.push_back(std::move(s.domain));
    s.domain.clear();
    pending_bytes_ += s.reply.size();
  }
  if (!expired.empty()) MoveReady();
  return expired;
}

std::vector<std::string> SocketmapConnection::Awaited() const {
  std::vector<std::string> out;
  for (const Slot& s : slots_)
    if (!s.ready) out.push_back(s.domain);
  return out;
}

void SocketmapConnection::MoveReady() {
  while (!slots_.empty() && slots_.front().ready) {
    out_ += slots_.front().reply;
    out_replies_.push_back(slots_.front().reply.size());
    slots_.pop_front();
  }
}

void SocketmapConnection::Sent(size_t n, int64_t now) {
  n = std::min(n, out_.size());
  if (n == 0) return;
  out_.erase(0, n);
  pending_bytes_ -= n;
  last_activity_ = now;
  while (n > 0 && !out_replies_.empty()) {
    size_t k = std::min(n, out_replies_.front());
    out_replies_.front() -= k;
    n -= k;
    if (out_replies_.front() == 0) out_replies_.pop_front();
  }
}

std::string SocketmapConnection::TimedOut(int64_t now) const {
  if (partial_since_ && WantsInput() && now - partial_since_ > limits_.request_timeout)
    return "request not complete after " + std::to_string(limits_.request_timeout) + " s";
  for (const Slot& s : slots_)
    if (!s.ready) return "";  // ExpireLookups() bounds this wait
  if (now - last_activity_ <= limits_.idle_timeout) return "";
  if (pending_bytes_ > 0)
    return "client did not read its replies for " + std::to_string(limits_.idle_timeout) + " s";
  return "idle for " + std::to_string(limits_.idle_timeout) + " s";
}

bool LookupQueue::Push(const std::string& domain, uint64_t owner) {
  if (!known_.emplace(domain, false).second) return false;
  std::deque<std::string>& q = queues_[owner];
  if (q.empty()) turn_.push_back(owner);
  q.push_back(domain);
  ++queued_;
  return true;
}

std::optional<std::string> LookupQueue::Pop() {
  if (turn_.empty()) return std::nullopt;
  uint64_t owner = turn_.front();
  turn_.pop_front();
  auto it = queues_.find(owner);
  std::string domain = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) {
    queues_.erase(it);
  } else {
    turn_.push_back(owner);
  }
  --queued_;
  known_[domain] = true;
  return domain;
}

void LookupQueue::Done(const std::string& domain) { known_.erase(domain); }

std::vector<std::string> LookupQueue::Cancel(uint64_t owner) {
  std::vector<std::string> dropped;
  auto it = queues_.find(owner);
  if (it == queues_.end()) return dropped;
  for (std::string& d : it->second) {
    known_.erase(d);
    dropped.push_back(std::move(d));
  }
  queued_ -= dropped.size();
  queues_.erase(it);
  turn_.erase(std::find(turn_.begin(), turn_.end(), owner));
  return dropped;
}

Result<std::string> SocketmapKey(std::string_view request) {
  size_t sp = request.find(' ');
  if (sp == std::string_view::npos || sp == 0) return Status::Error("request is not \"<map> <key>\"");
  std::string key(request.substr(sp + 1));
  if (key.empty()) return Status::Error("empty key");
  for (char c : key) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return Status::Error("control character in key");
  }
  return key;
}

SocketmapAnswer PostfixPolicyAnswer(const DomainPolicy& p) {
  switch (p.verdict) {
    case Verdict::kDefer: {
      std::string reason = p.reason;
      for (char& c : reason)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
      if (reason.size() > 400) reason.resize(400);
      return SocketmapAnswer::Temp((p.status_code.empty() ? std::string() : p.status_code + " ") + reason);
    }
    case Verdict::kFail:
      return SocketmapAnswer::NotFound();
    case Verdict::kOpportunistic:
      // A local `may` is an answer of its own: it overrides whatever
      // DANE/MTA-STS policy Postfix would otherwise apply.
      if (p.local && p.local->policy == LocalTls::kMay) return SocketmapAnswer::Ok("may");
      return SocketmapAnswer::NotFound();
    case Verdict::kMustTls:
      break;
  }
  if (p.local) {
    // The local_policy_file rule decided (defer and fail were answered above).
    switch (p.local->policy) {
      case LocalTls::kDaneOnly: return SocketmapAnswer::Ok("dane-only");
      case LocalTls::kEncrypt: return SocketmapAnswer::Ok("encrypt");
      case LocalTls::kMay: return SocketmapAnswer::Ok("may");
      case LocalTls::kVerify: {
        std::string match;
        for (const std::string& n : p.local->match) match += (match.empty() ? "" : ":") + n;
        return SocketmapAnswer::Ok("secure match=" + (match.empty() ? std::string("hostname") : match) + " servername=hostname");
      }
    }
  }
  if (p.mechanism == Mechanism::kDane) {
    bool any_dane = false;
    for (const MxPolicy& m : p.mx) any_dane = any_dane || m.tls == HostTls::kDane;
    return SocketmapAnswer::Ok(any_dane ? "dane-only" : "encrypt");
  }
  if (p.mechanism == Mechanism::kMtaSts && p.mta_sts) {
    std::vector<std::string> names;
    std::set<std::string> seen;
    auto add = [&](const std::string& n) {
      if (seen.insert(n).second) names.push_back(n);
    };
    StsPolicy pol;
    pol.mode = p.mta_sts->mode;
    for (const std::string& pattern : p.mta_sts->mx) {
      if (pattern.rfind("*.", 0) != 0) add(pattern);
    }
    for (const MxPolicy& m : p.mx) {
      for (const std::string& pattern : p.mta_sts->mx) {
        if (pattern.rfind("*.", 0) == 0 && StsMxMatches(pattern, m.host)) add(m.host);
      }
    }
    if (names.empty()) return SocketmapAnswer::Temp("4.7.5 no MX host of " + p.domain + " matches its MTA-STS policy");
    std::string match;
    for (const std::string& n : names) match += (match.empty() ? "" : ":") + n;
    return SocketmapAnswer::Ok("secure match=" + match + " servername=hostname");
  }
  // must-tls by something Postfix has no word for: the safest common
  // ground is mandatory, verified TLS to the MX names.
  return SocketmapAnswer::Ok("secure match=hostname servername=hostname");
}

std::string SocketmapAnswer::Encode() const {
  switch (kind) {
    case Kind::kOk: return "OK " + data;
    case Kind::kNotFound: return "NOTFOUND ";
    case Kind::kTemp: return "TEMP " + data;
  }
  return "TEMP internal error";
}

std::string PostfixPolicyReply(const DomainPolicy& policy) { return PostfixPolicyAnswer(policy).Encode(); }

}  // namespace mxsec
