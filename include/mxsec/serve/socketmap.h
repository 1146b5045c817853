// socketmap.h - Postfix's socketmap protocol (socketmap_table(5)) and the
// translation of an mxsec decision into a Postfix TLS policy
// (smtp_tls_policy_maps, postconf(5) "TLS POLICY TABLE").
//
// Requests and replies are netstrings ("<len>:<bytes>,"). A request is
// "<mapname> <key>"; a reply is "OK <value>", "NOTFOUND ", "TEMP <reason>",
// "TIMEOUT <reason>" or "PERM <reason>". Anything malformed or oversized is
// an error: the server drops that connection and nothing else (the protocol
// has no error reply for a request that could not be read; Postfix's client
// reconnects and retries once when a connection is closed under it).
//
// SocketmapConnection is the bookkeeping of one server connection (what
// `mxsec serve` does per client, without the sockets): it promises replies
// in request order, never more than max_pending_requests requests taken
// and unanswered-or-unsent, no reading while that or max_output_buffer is
// reached, and a reason to close for every way a client can hold the
// connection without progress. LookupQueue is the workers' queue: one FIFO
// per connection, served round-robin, so that no connection's pipelined
// requests can delay another's by more than one lookup per connection.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/policy/policy.h"
#include "mxsec/base/status.h"

namespace mxsec {

// The largest request, as Postfix's socketmap_max_query_size (Postfix 3.12):
// a request is "<map> <key>" and keys are domain names, far smaller.
inline constexpr size_t kSocketmapMaxRequest = 10000;

// Incremental netstring decoder for one connection.
class NetstringReader {
 public:
  explicit NetstringReader(size_t max_len = kSocketmapMaxRequest) : max_len_(max_len) {}
  void Feed(std::string_view bytes) { buf_.append(bytes); }
  // The next complete netstring's payload; nullopt when more bytes are
  // needed; an error for a malformed netstring, or for one whose declared
  // length exceeds the limit (as soon as its digits show it, before any
  // payload is buffered).
  Result<std::optional<std::string>> Next();
  size_t buffered() const { return buf_.size(); }

 private:
  size_t max_len_;
  std::string buf_;
};

std::string EncodeNetstring(std::string_view payload);

// The limits of one server connection (mxsec.conf serve_* keys).
struct SocketmapLimits {
  size_t max_query_size = kSocketmapMaxRequest;  // serve_max_query_size
  size_t max_pending_requests = 32;              // serve_max_pending_requests
  size_t max_output_buffer = 16384;              // serve_max_output_buffer (bytes)
  int64_t request_timeout = 10;                  // seconds to receive one started request
  int64_t idle_timeout = 60;                     // serve_idle_timeout
};

class SocketmapConnection {
 public:
  SocketmapConnection(const SocketmapLimits& limits, int64_t now);

  // Bytes read from the client. Only call when WantsInput().
  void Receive(std::string_view bytes, int64_t now);

  // Whether to read from the client: false while max_pending_requests
  // requests are outstanding (taken, and their reply not completely sent)
  // or max_output_buffer bytes of replies are unsent: back-pressure on a
  // client that sends without reading.
  bool WantsInput() const;

  // The next buffered request, when there is room for it (WantsInput()).
  // The caller must then answer it with exactly one of Reply() or Await().
  // An error (malformed, oversized) means: close the connection.
  Result<std::optional<std::string>> NextRequest(int64_t now);
  void Reply(std::string reply);
  // The request waits for a lookup of `domain`, until `deadline`.
  void Await(const std::string& domain, int64_t deadline);

  // A lookup finished: every request awaiting `domain` gets `reply`.
  // Returns whether any did.
  bool Resolved(const std::string& domain, const std::string& reply);
  // Requests whose deadline passed get "TEMP policy lookup for <d> timed
  // out"; returns the domains they awaited.
  std::vector<std::string> ExpireLookups(int64_t now);
  // Domains awaited by requests (with repetitions).
  std::vector<std::string> Awaited() const;

  // Reply bytes ready to send, in request order; Sent() removes n of them.
  std::string_view Output() const { return out_; }
  void Sent(size_t n, int64_t now);

  size_t outstanding() const { return slots_.size() + out_replies_.size(); }
  size_t pending_bytes() const { return pending_bytes_; }
  size_t buffered_input() const { return reader_.buffered(); }

  // Why the connection should be closed at `now`, or "" to keep it: a
  // started request not complete after request_timeout while reading; no
  // byte received or sent for idle_timeout while nothing waits for a
  // lookup (an idle client, or one that does not read its replies).
  std::string TimedOut(int64_t now) const;

 private:
  struct Slot {
    std::string domain;  // awaited; empty once the reply is known
    int64_t deadline = 0;
    std::string reply;
    bool ready = false;
  };
  void MoveReady();

  SocketmapLimits limits_;
  NetstringReader reader_;
  std::deque<Slot> slots_;           // requests taken, replies not yet in out_
  std::string out_;                  // encoded replies, not yet sent
  std::deque<size_t> out_replies_;   // bytes of each reply still (partly) in out_
  size_t pending_bytes_ = 0;         // out_ plus ready replies in slots_
  int64_t last_activity_;            // last byte received or sent
  int64_t partial_since_ = 0;        // a started request waits for more bytes since (0: none)
};

// Lookups waiting for a worker: a FIFO per owner (a connection; 0 for the
// server's own refreshes), owners served round-robin; a domain is queued or
// under way at most once.
class LookupQueue {
 public:
  // Queues `domain` for `owner` unless it is already queued or under way;
  // returns whether it was queued.
  bool Push(const std::string& domain, uint64_t owner);
  // The next domain to look up (the next owner's oldest), now under way.
  std::optional<std::string> Pop();
  // The lookup of `domain` finished: it may be queued again.
  void Done(const std::string& domain);
  // The owner is gone: its queued domains are dropped (returned, so that
  // the caller can queue them again for others still waiting).
  std::vector<std::string> Cancel(uint64_t owner);
  bool Busy(const std::string& domain) const { return known_.count(domain) > 0; }
  size_t queued() const { return queued_; }

 private:
  std::map<uint64_t, std::deque<std::string>> queues_;
  std::deque<uint64_t> turn_;                // owners with queued domains, in turn order
  std::map<std::string, bool> known_;        // domain -> under way (false: queued)
  size_t queued_ = 0;
};

// "<mapname> <key>" -> the key (map names are not interpreted: any name
// works). Error when there is no space or the key is empty.
Result<std::string> SocketmapKey(std::string_view request);

// A socketmap reply (the Postfix socketmap_table(5) protocol): callers decide
// from `kind` (a TEMP answer is kept for a shorter time, for instance) and
// send Encode(); nothing reads the encoded text back.
struct SocketmapAnswer {
  enum class Kind { kOk, kNotFound, kTemp };
  Kind kind = Kind::kNotFound;
  std::string data;  // after "OK " or "TEMP "; empty for NOTFOUND
  static SocketmapAnswer Ok(std::string d) { return {Kind::kOk, std::move(d)}; }
  static SocketmapAnswer NotFound() { return {Kind::kNotFound, ""}; }
  static SocketmapAnswer Temp(std::string d) { return {Kind::kTemp, std::move(d)}; }
  std::string Encode() const;  // "OK <data>", "NOTFOUND ", "TEMP <data>"
};

// The Postfix TLS policy for a decision, as a socketmap reply payload:
//   must-tls by DANE      -> "OK dane-only" ("OK encrypt" when every usable
//                            host has only unusable TLSA records)
//   must-tls by MTA-STS   -> "OK secure match=<names> servername=hostname",
//                            names = the policy's exact mx patterns plus the
//                            MX host names that its wildcard patterns match
//                            (a pattern "*.example.org" covers one label,
//                            Postfix's ".example.org" any depth: never
//                            written as one another)
//   decided by a local_policy_file rule (not defer or fail):
//                            dane-only -> "OK dane-only", encrypt -> "OK encrypt",
//                            may -> "OK may", verify -> "OK secure
//                            match=<names, or hostname> servername=hostname"
//   opportunistic, fail   -> "NOTFOUND " (Postfix's own default applies)
//   defer                 -> "TEMP <reason>"
SocketmapAnswer PostfixPolicyAnswer(const DomainPolicy& policy);
std::string PostfixPolicyReply(const DomainPolicy& policy);  // PostfixPolicyAnswer(policy).Encode()

}  // namespace mxsec
