// tls_session_store.h - TLS sessions kept in the process between SMTP
// sessions, so that the next connection to the same server under the same
// policy resumes the TLS session (RFC 5077 tickets, RFC 8446 §2.2 PSK
// tickets) instead of repeating the full handshake, as Postfix's
// smtp_tls_session_cache does. Resumption saves the round trips and the key
// exchange of the handshake, never the check of the server's certificate.
//
// The store knows nothing of TLS: it holds opaque session data (GnuTLS's
// gnutls_session_get_data2) under a key the caller makes. The SMTP client
// (smtp_client.cc, RunSmtpSessionCached) uses the key of the connection
// cache, SessionCacheKey (smtp_client.h): the address, port and everything
// that decided how the server is authenticated (TLS demand, TLSA records,
// DANE names with the recipient domain, PKIX names, CA file, local rule,
// REQUIRETLS). So a session is only ever offered by a delivery whose policy
// is the one it was verified under, and never across domains.
//
// What the client stores, and what it does with a resumed session:
//   - only a session whose server was authenticated under the key's policy
//     (dane or pkix, TlsInfo::verified) after the full handshake or, for a
//     resumed session, after the check below; never one whose verification
//     failed, and never an unauthenticated one (encrypt, may). Storing those
//     would be harmless (a resumed session only reaches the holder of the
//     first session's secret, which an unauthenticated handshake never
//     proved to be anyone in particular), but the queue's gain is in the
//     domains that demand authentication, and one rule is easier to check;
//   - a resumed session is authenticated again, by the same verification
//     as a full handshake, on the chain the server presented in the first
//     one (GnuTLS keeps it in the session data), with the current time and
//     the current content of the CA file: a certificate that expired or a
//     CA that was removed since is a verification failure like any other.
//     A resumed session without that chain is not used: the client starts
//     a new connection with a full handshake (once) and forgets the entry.
//
// A ticket is offered again until the server gives a new one (which
// replaces it) or it ages out. RFC 8446 §C.4 advises against reuse because
// it links the connections; here they are linked anyway (the same client
// and server addresses, one policy), and a server may send no new ticket in
// a resumed session: Postfix 3.7 with OpenSSL 3 does not, found against the
// test bed (tests/integration/test_resume.py), so single use would make
// every other session a full handshake. A server that accepts a ticket only
// once simply answers the second offer with a full handshake.
//
// Promises:
//   - Get hands out the data stored under exactly that key, never data
//     older than max_age_ms (counted from its Put: a ticket offered again
//     does not grow younger);
//   - at most max_entries are held (the oldest goes first); empty data, or
//     data larger than max_bytes, is refused and leaves the key's entry as
//     it was; Put under a key replaces its entry.
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace mxsec {

// Postfix's smtp_tls_session_cache_timeout (3600 s) for the age: a server
// announces its own ticket lifetime too (RFC 8446 §4.6.1, at most 7 days),
// which GnuTLS enforces on its side. Entries: one per (server, policy) in
// use by one queue run, 1000 as the default queue_max_domains_per_attempt.
// Bytes: the ticket (Postfix/OpenSSL: about 250 octets) with the server's
// chain, which GnuTLS keeps in the data (a few KiB); a server whose chain
// makes more simply does full handshakes.
struct TlsSessionStoreLimits {
  static constexpr size_t kMaxEntries = 1000;
  static constexpr int64_t kMaxAgeMs = 3600 * 1000;
  static constexpr size_t kMaxBytes = 32768;
  size_t max_entries = kMaxEntries;
  int64_t max_age_ms = kMaxAgeMs;
  size_t max_bytes = kMaxBytes;
};

class TlsSessionStore {
 public:
  // `now_ms`: a monotonic clock in milliseconds (tests pass their own).
  explicit TlsSessionStore(TlsSessionStoreLimits limits = {}, std::function<int64_t()> now_ms = nullptr);
  TlsSessionStore(const TlsSessionStore&) = delete;
  TlsSessionStore& operator=(const TlsSessionStore&) = delete;

  // The data stored under `key`; nullopt when there is none or it is older
  // than max_age_ms (then it is dropped).
  std::optional<std::string> Get(const std::string& key);
  // Stores `data` under `key` (replacing its entry); false, and nothing
  // changed, when the data is empty or larger than max_bytes.
  bool Put(const std::string& key, std::string data);
  // Removes the entry of `key`, if any.
  void Forget(const std::string& key);
  size_t size() const;

 private:
  struct Entry {
    std::string key;
    std::string data;
    int64_t stored_ms = 0;
  };
  void EraseLocked(const std::string& key);

  const TlsSessionStoreLimits limits_;
  std::function<int64_t()> now_ms_;
  mutable std::mutex mu_;
  std::list<Entry> entries_;  // oldest first
  std::unordered_map<std::string, std::list<Entry>::iterator> by_key_;
};

}  // namespace mxsec
