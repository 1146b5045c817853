// tls_verify.cc - authentication of an SMTP server's certificate chain.
//
// This module decides whether the chain a server presented satisfies the
// destination's TLSA RRset (DANE, RFC 7672 §3, RFC 7671) or, for MTA-STS,
// the Web PKI and the MX host name (RFC 8461 §4.2). It does no I/O besides
// reading the CA file or the system trust store, keeps no state and never
// throws.
//
// What it promises:
//   - DANE-EE looks at the leaf and nothing else: not at names, not at
//     dates (an expired self-signed leaf that matches is accepted).
//   - DANE-TA accepts a chain only if GnuTLS finds a path with valid
//     signatures and CA constraints from the leaf to the certificate that
//     matched the record, with that certificate as the one and only trust
//     anchor. Matching "some certificate of the chain" is not enough: a
//     forger can append the genuine, public TA certificate to a chain of
//     his own (libgnutls-dane falls for exactly that, so it is not used).
//   - Every date is judged against the caller's `now`, never the system
//     clock, so the verdict is reproducible. GnuTLS can be given a time
//     only process-wide (gnutls_global_set_time_function), so its own time
//     checks are switched off and the dates of the certificates on the path
//     it verified, trust anchor included, are checked here.
//   - Reference names match RFC 6125 DNS-IDs ('*' only as the whole
//     left-most label, covering one label); IP addresses never match.
//     MTA-STS requires a DNS-ID in the subjectAltName (RFC 8461 §4.2);
//     DANE-TA, like Postfix, falls back to the CN when there is none.
//   - Anything that does not parse is a failure, never a pass.
//   - A "2 1 0" record (bare public key) authenticates only when the key's
//     certificate is in the chain: a trust anchor that is a key without a
//     certificate is not supported, and the detail says so.

#include "mxsec/smtp/tls_verify.h"

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <type_traits>
#include <unistd.h>

namespace mxsec {

namespace {

// GnuTLS sorts at most this many certificates; longer chains are refused
// rather than verified in part.
constexpr size_t kMaxChain = 16;

struct CrtDeleter {
  void operator()(gnutls_x509_crt_t c) const { gnutls_x509_crt_deinit(c); }
};
using Crt = std::unique_ptr<std::remove_pointer_t<gnutls_x509_crt_t>, CrtDeleter>;

struct TrustListDeleter {
  // 1: the list owns the certificates given to it with add_cas.
  void operator()(gnutls_x509_trust_list_t t) const { gnutls_x509_trust_list_deinit(t, 1); }
};
using TrustList = std::unique_ptr<std::remove_pointer_t<gnutls_x509_trust_list_t>, TrustListDeleter>;

struct PubkeyDeleter {
  void operator()(gnutls_pubkey_t k) const { gnutls_pubkey_deinit(k); }
};
using Pubkey = std::unique_ptr<std::remove_pointer_t<gnutls_pubkey_t>, PubkeyDeleter>;

struct GnutlsFree {
  void operator()(unsigned char* p) const { gnutls_free(p); }
};
// Memory GnuTLS allocated for us (exports, printed DNs and statuses).
struct GnutlsData {
  std::unique_ptr<unsigned char, GnutlsFree> data;
  size_t size = 0;
  std::string str() const { return data ? std::string(reinterpret_cast<const char*>(data.get()), size) : ""; }
  std::vector<uint8_t> bytes() const {
    return data ? std::vector<uint8_t>(data.get(), data.get() + size) : std::vector<uint8_t>();
  }
};
GnutlsData Adopt(gnutls_datum_t d) {
  GnutlsData g;
  g.data.reset(d.data);
  g.size = d.data ? d.size : 0;
  return g;
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; i++) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 15];
  }
  return out;
}

// A parsed certificate, its DER as the server sent it, and its name for
// messages. Produced only by ParseDer, so `crt` is never null.
struct Cert {
  Crt crt;
  const DerCertificate* der = nullptr;
  std::string subject;
};

std::string SubjectOf(gnutls_x509_crt_t crt) {
  gnutls_datum_t d{nullptr, 0};
  if (gnutls_x509_crt_get_dn3(crt, &d, 0) < 0) return "(no subject)";
  return Adopt(d).str();
}

std::string IssuerOf(gnutls_x509_crt_t crt) {
  gnutls_datum_t d{nullptr, 0};
  if (gnutls_x509_crt_get_issuer_dn3(crt, &d, 0) < 0) return "(no issuer)";
  return Adopt(d).str();
}

// Import DER; the error text says why not (gnutls_strerror).
Crt ParseDer(const std::vector<uint8_t>& der, std::string* error) {
  gnutls_x509_crt_t raw = nullptr;
  int rc = gnutls_x509_crt_init(&raw);
  if (rc < 0) {
    *error = gnutls_strerror(rc);
    return nullptr;
  }
  Crt crt(raw);
  if (der.empty()) {
    *error = "empty";
    return nullptr;
  }
  gnutls_datum_t d{const_cast<unsigned char*>(der.data()), static_cast<unsigned>(der.size())};
  rc = gnutls_x509_crt_import(crt.get(), &d, GNUTLS_X509_FMT_DER);
  if (rc < 0) {
    *error = gnutls_strerror(rc);
    return nullptr;
  }
  return crt;
}

std::optional<std::vector<uint8_t>> SpkiDer(gnutls_x509_crt_t crt) {
  gnutls_pubkey_t raw = nullptr;
  if (gnutls_pubkey_init(&raw) < 0) return std::nullopt;
  Pubkey key(raw);
  if (gnutls_pubkey_import_x509(key.get(), crt, 0) < 0) return std::nullopt;
  gnutls_datum_t d{nullptr, 0};
  if (gnutls_pubkey_export2(key.get(), GNUTLS_X509_FMT_DER, &d) < 0) return std::nullopt;
  return Adopt(d).bytes();
}

std::optional<std::vector<uint8_t>> Digest(gnutls_digest_algorithm_t alg, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(gnutls_hash_get_len(alg));
  if (out.empty() || gnutls_hash_fast(alg, data.data(), data.size(), out.data()) < 0) return std::nullopt;
  return out;
}

std::string Sha256Hex(const std::vector<uint8_t>& data) {
  auto d = Digest(GNUTLS_DIG_SHA256, data);
  return d ? Hex(d->data(), d->size()) : "";
}

// "2 0 1 c0083405e3b1a2c4..." : records can be a whole certificate long.
std::string ShortRecord(const TlsaRecord& r) {
  std::string hex = r.DataHex();
  if (hex.size() > 16) hex = hex.substr(0, 16) + "...";
  return std::to_string(r.usage) + " " + std::to_string(r.selector) + " " + std::to_string(r.matching) + " " + hex;
}

// Mirrors dane.cc's rules; repeated here because a record that reaches us
// unusable must be skipped even if the caller forgot to filter it.
bool Usable(const TlsaRecord& r) {
  if (r.usage != 2 && r.usage != 3) return false;
  if (r.selector != 0 && r.selector != 1) return false;
  switch (r.matching) {
    case 0: return !r.data.empty();
    case 1: return r.data.size() == 32;
    case 2: return r.data.size() == 64;
    default: return false;
  }
}

bool RecordMatches(const TlsaRecord& r, const Cert& c) {
  std::vector<uint8_t> selected;
  if (r.selector == 0) {
    selected = *c.der;
  } else {
    auto spki = SpkiDer(c.crt.get());
    if (!spki) return false;
    selected = std::move(*spki);
  }
  if (r.matching == 0) return selected == r.data;
  auto d = Digest(r.matching == 1 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA512, selected);
  return d && *d == r.data;
}

std::string FormatTime(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  if (!gmtime_r(&tt, &tm)) return std::to_string(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// --- Verification with GnuTLS, dates against `now` ---

// One certificate GnuTLS used on the path it verified.
struct PathCert {
  std::string subject;
  int64_t not_before = 0;
  int64_t not_after = 0;
};

struct PathCollector {
  gnutls_x509_crt_t leaf = nullptr;
  bool saw_leaf = false;
  std::vector<PathCert> certs;
  void Add(gnutls_x509_crt_t c) {
    certs.push_back({SubjectOf(c), static_cast<int64_t>(gnutls_x509_crt_get_activation_time(c)),
                     static_cast<int64_t>(gnutls_x509_crt_get_expiration_time(c))});
  }
};

// The verify callback has no user pointer; verification runs synchronously
// on the calling thread, so a thread-local one is enough.
thread_local PathCollector* tl_collector = nullptr;

bool SameNameAndKey(gnutls_x509_crt_t a, gnutls_x509_crt_t b) {
  gnutls_datum_t da{nullptr, 0}, db{nullptr, 0};
  if (gnutls_x509_crt_get_raw_dn(a, &da) < 0) return false;
  GnutlsData dn_a = Adopt(da);  // get_raw_dn hands out a copy
  if (gnutls_x509_crt_get_raw_dn(b, &db) < 0) return false;
  GnutlsData dn_b = Adopt(db);
  if (dn_a.bytes() != dn_b.bytes()) return false;
  auto ka = SpkiDer(a), kb = SpkiDer(b);
  return ka && kb && *ka == *kb;
}

// GnuTLS reports every step of the path: (certificate, the issuer that
// verified it). Steps of an attempt that failed are ignored: GnuTLS may try
// a second path, and only the one that succeeded matters. When GnuTLS
// stops at a presented certificate because the trust list holds one with
// the same name and key, the trusted copy is what it relies on, so its
// dates count, not those of the copy the server sent (servers keep sending
// expired cross-signed roots).
int OnPathStep(gnutls_x509_crt_t cert, gnutls_x509_crt_t issuer, gnutls_x509_crl_t, unsigned int output) {
  PathCollector* c = tl_collector;
  if (c == nullptr || cert == nullptr || output != 0) return 0;
  if (gnutls_x509_crt_equals(cert, c->leaf)) c->saw_leaf = true;
  if (issuer != nullptr && SameNameAndKey(cert, issuer)) {
    c->Add(issuer);
    return 0;
  }
  c->Add(cert);
  if (issuer != nullptr) c->Add(issuer);
  return 0;
}

struct ChainCheck {
  bool ok = false;
  int stage = 0;  // see Stage below
  std::string detail;
};

enum Stage { kNoMatch = 0, kNotTrusted = 1, kExpired = 2, kHostMismatch = 3, kPassed = 4 };

const char* FailureType(int stage) {
  switch (stage) {
    case kNotTrusted: return "certificate-not-trusted";
    case kExpired: return "certificate-expired";
    case kHostMismatch: return "certificate-host-mismatch";
    default: return "validation-failure";
  }
}

std::string StatusText(unsigned status) {
  gnutls_datum_t d{nullptr, 0};
  if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &d, 0) < 0) {
    return "status " + std::to_string(status);
  }
  std::string text = Adopt(d).str();
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// Verifies the first `count` certificates of `chain` (leaf first, any
// order after) against `tl`, then the dates of the path against `now`.
// Names are the caller's business.
ChainCheck VerifyPath(gnutls_x509_trust_list_t tl, const std::vector<Cert>& chain, size_t count, unsigned flags,
                      const char* purpose, int64_t now) {
  ChainCheck out;
  std::vector<gnutls_x509_crt_t> list;
  for (size_t i = 0; i < count && i < chain.size(); i++) list.push_back(chain[i].crt.get());

  // Our clock, not GnuTLS's: its time checks are off and we check below.
  flags |= GNUTLS_VERIFY_DISABLE_TIME_CHECKS | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS;
  gnutls_typed_vdata_st vdata{};
  unsigned elements = 0;
  if (purpose != nullptr) {
    vdata.type = GNUTLS_DT_KEY_PURPOSE_OID;
    vdata.data = reinterpret_cast<unsigned char*>(const_cast<char*>(purpose));
    vdata.size = 0;
    elements = 1;
  }

  PathCollector collector;
  collector.leaf = list[0];
  unsigned status = 0;
  tl_collector = &collector;
  int rc = gnutls_x509_trust_list_verify_crt2(tl, list.data(), static_cast<unsigned>(list.size()),
                                              elements ? &vdata : nullptr, elements, flags, &status, OnPathStep);
  tl_collector = nullptr;

  out.stage = kNotTrusted;
  if (rc < 0) {
    out.detail = std::string("chain verification error: ") + gnutls_strerror(rc);
    return out;
  }
  if (status != 0) {
    out.detail = "chain does not verify: " + StatusText(status);
    return out;
  }
  if (!collector.saw_leaf || collector.certs.empty()) {
    // Should not happen; if GnuTLS ever skips reporting, refuse rather
    // than accept a path whose dates we did not see.
    out.detail = "chain verified but the path was not reported; refusing";
    return out;
  }

  out.stage = kExpired;
  for (const PathCert& p : collector.certs) {
    if (p.not_before == -1 || p.not_after == -1) {
      out.detail = "validity dates of " + p.subject + " are unreadable";
      return out;
    }
    if (now < p.not_before) {
      out.detail = p.subject + " is not valid before " + FormatTime(p.not_before);
      return out;
    }
    if (now > p.not_after) {
      out.detail = p.subject + " expired at " + FormatTime(p.not_after);
      return out;
    }
  }
  out.stage = kPassed;
  out.ok = true;
  return out;
}

// The verdict that says most: a pass, else the failure that got furthest,
// else the first.
ChainCheck Better(ChainCheck a, ChainCheck b) {
  if (a.ok) return a;
  if (b.ok || b.stage > a.stage) return b;
  return a;
}

// GnuTLS builds one path from the sorted list and does not back off: when
// the server sends certificates beyond the trust anchor that are not
// self-signed (an intermediate TA followed by a cross-signed root, say) it
// follows them and misses the anchor. Shorter prefixes of the chain are
// tried in the order given until one verifies; every path that passes
// still ends at an anchor of `tl`, so this only avoids false failures.
ChainCheck VerifyPrefixes(gnutls_x509_trust_list_t tl, const std::vector<Cert>& chain,
                          const std::vector<size_t>& counts, unsigned flags, const char* purpose, int64_t now) {
  ChainCheck best;
  bool first = true;
  for (size_t count : counts) {
    ChainCheck c = VerifyPath(tl, chain, count, flags, purpose, now);
    best = first ? std::move(c) : Better(std::move(best), std::move(c));
    first = false;
    if (best.ok) break;
  }
  return best;
}

// The subjectAltName dNSName entries.
std::vector<std::string> DnsSans(gnutls_x509_crt_t crt) {
  std::vector<std::string> names;
  std::vector<char> buf(256);
  for (unsigned seq = 0;; seq++) {
    size_t size = buf.size();
    int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf.data(), &size, nullptr);
    if (type == GNUTLS_E_SHORT_MEMORY_BUFFER) {
      buf.resize(size + 1);
      size = buf.size();
      type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf.data(), &size, nullptr);
    }
    if (type < 0) break;  // REQUESTED_DATA_NOT_AVAILABLE ends the list
    if (type == GNUTLS_SAN_DNSNAME) names.emplace_back(buf.data(), size);
  }
  return names;
}

bool IsIpLiteral(const std::string& s) {
  std::string t = s;
  if (t.size() >= 2 && t.front() == '[' && t.back() == ']') t = t.substr(1, t.size() - 2);
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, t.c_str(), buf) == 1 || inet_pton(AF_INET6, t.c_str(), buf) == 1;
}

// The first reference name the leaf is valid for, or nullopt.
std::optional<std::string> MatchName(gnutls_x509_crt_t leaf, const std::vector<std::string>& names) {
  for (std::string n : names) {
    if (!n.empty() && n.back() == '.') n.pop_back();
    if (n.empty() || n.find('\0') != std::string::npos || IsIpLiteral(n)) continue;
    // DO_NOT_ALLOW_IP_MATCHES: a name is a DNS name only, never compared
    // with iPAddress entries.
    if (gnutls_x509_crt_check_hostname2(leaf, n.c_str(), GNUTLS_VERIFY_DO_NOT_ALLOW_IP_MATCHES) != 0) return n;
  }
  return std::nullopt;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}

// Parses the whole chain; a failure names the depth.
bool ParseChain(const std::vector<DerCertificate>& der, std::vector<Cert>* out, VerifyResult* r) {
  if (der.empty()) {
    r->detail = "the server presented no certificate";
    r->failure_type = FailureType(kNoMatch);
    return false;
  }
  if (der.size() > kMaxChain) {
    r->detail = "the server presented " + std::to_string(der.size()) + " certificates, more than " +
                std::to_string(kMaxChain);
    r->failure_type = FailureType(kNoMatch);
    return false;
  }
  for (size_t i = 0; i < der.size(); i++) {
    std::string error;
    Crt crt = ParseDer(der[i], &error);
    if (!crt) {
      r->detail = "certificate at depth " + std::to_string(i) + " does not parse: " + error;
      r->failure_type = FailureType(kNoMatch);
      return false;
    }
    Cert c;
    c.subject = SubjectOf(crt.get());
    c.crt = std::move(crt);
    c.der = &der[i];
    out->push_back(std::move(c));
  }
  return true;
}

TrustList NewTrustList() {
  gnutls_x509_trust_list_t raw = nullptr;
  if (gnutls_x509_trust_list_init(&raw, 0) < 0) return nullptr;
  return TrustList(raw);
}

// DANE-TA with `ta_der` as the only trust anchor; `depth` is where it
// was found in the chain (0: not in the chain).
ChainCheck CheckTrustAnchor(const std::vector<uint8_t>& ta_der, size_t depth, const std::vector<Cert>& chain,
                            const std::vector<std::string>& names, int64_t now) {
  ChainCheck out;
  out.stage = kNotTrusted;
  std::string error;
  Crt ta = ParseDer(ta_der, &error);
  TrustList tl = NewTrustList();
  if (!ta || !tl) {
    out.detail = "cannot set up the trust anchor: " + (error.empty() ? std::string("out of memory") : error);
    return out;
  }
  gnutls_x509_crt_t ta_raw = ta.get();
  if (gnutls_x509_trust_list_add_cas(tl.get(), &ta_raw, 1, 0) != 1) {
    out.detail = "cannot add the trust anchor to a trust list";
    return out;
  }
  ta.release();  // owned by the trust list now

  // First the chain up to the TA, where a well-ordered chain's path ends;
  // then the whole chain, for servers that send it out of order. The
  // one-certificate trust list is what keeps either path from ending
  // anywhere but at the TA. DO_NOT_ALLOW_SAME: the leaf must be signed on
  // the TA's behalf, not trusted for being equal to it.
  std::vector<size_t> counts;
  if (depth > 0) counts.push_back(depth + 1);
  if (counts.empty() || counts.back() != chain.size()) counts.push_back(chain.size());
  out = VerifyPrefixes(tl.get(), chain, counts, GNUTLS_VERIFY_DO_NOT_ALLOW_SAME, nullptr, now);
  if (!out.ok) return out;
  auto name = MatchName(chain[0].crt.get(), names);
  if (!name) {
    out.ok = false;
    out.stage = kHostMismatch;
    out.detail = "the leaf (" + chain[0].subject + ") is valid for none of the names " + JoinNames(names);
    return out;
  }
  out.detail = "leaf valid for " + *name;
  return out;
}

}  // namespace

std::vector<TlsaRecord> ApplyDigestAgility(const std::vector<TlsaRecord>& usable) {
  // RFC 7671 §9: SHA2-512 beats SHA2-256 within one (usage, selector);
  // exact-match records are not digests and always stay.
  auto rank = [](uint8_t matching) { return matching == 2 ? 2 : matching == 1 ? 1 : 0; };
  std::vector<TlsaRecord> out;
  for (const TlsaRecord& r : usable) {
    if (r.matching == 1 || r.matching == 2) {
      int strongest = 0;
      for (const TlsaRecord& o : usable) {
        if (o.usage == r.usage && o.selector == r.selector) strongest = std::max(strongest, rank(o.matching));
      }
      if (rank(r.matching) < strongest) continue;
    }
    out.push_back(r);
  }
  return out;
}

std::vector<CertificateInfo> DescribeChain(const std::vector<DerCertificate>& chain) {
  std::vector<CertificateInfo> out;
  for (const DerCertificate& der : chain) {
    CertificateInfo info;
    info.cert_sha256 = Sha256Hex(der);
    std::string error;
    Crt crt = ParseDer(der, &error);
    if (!crt) {
      info.subject = "(unparsable)";
      out.push_back(std::move(info));
      continue;
    }
    info.subject = SubjectOf(crt.get());
    info.issuer = IssuerOf(crt.get());
    if (auto spki = SpkiDer(crt.get())) info.spki_sha256 = Sha256Hex(*spki);
    info.not_before = static_cast<int64_t>(gnutls_x509_crt_get_activation_time(crt.get()));
    info.not_after = static_cast<int64_t>(gnutls_x509_crt_get_expiration_time(crt.get()));

    info.dns_names = DnsSans(crt.get());
    if (info.dns_names.empty()) {
      std::vector<char> buf(256);
      for (unsigned idx = 0;; idx++) {
        size_t size = buf.size();
        int rc = gnutls_x509_crt_get_dn_by_oid(crt.get(), GNUTLS_OID_X520_COMMON_NAME, idx, 0, buf.data(), &size);
        if (rc == GNUTLS_E_SHORT_MEMORY_BUFFER) {
          buf.resize(size + 1);
          size = buf.size();
          rc = gnutls_x509_crt_get_dn_by_oid(crt.get(), GNUTLS_OID_X520_COMMON_NAME, idx, 0, buf.data(), &size);
        }
        if (rc < 0) break;
        info.dns_names.emplace_back(buf.data(), size);
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

namespace {

VerifyResult DaneMatched(const TlsaRecord& t, int depth, std::string detail) {
  VerifyResult r;
  r.ok = true;
  r.matched = t;
  r.matched_depth = depth;
  r.detail = std::move(detail);
  return r;
}

// What the records that did not verify taught: the failure that got
// furthest explains best why we refused (a chain that verified but named
// another host says more than a record that matched nothing).
struct DaneMisses {
  DaneMisses() { best.stage = -1; }
  void Note(ChainCheck c, const std::string& prefix) {
    if (c.stage > best.stage) {
      best = std::move(c);
      best.detail = prefix + best.detail;
    }
  }
  ChainCheck best;
  std::vector<std::string> unmatched;
};

// DANE-EE (usage 3): only the leaf is compared.
std::optional<VerifyResult> VerifyDaneEe(const std::vector<TlsaRecord>& records, const std::vector<Cert>& chain,
                                         DaneMisses* misses) {
  for (const TlsaRecord& t : records) {
    if (t.usage != 3) continue;
    if (RecordMatches(t, chain[0])) return DaneMatched(t, 0, "DANE-EE " + ShortRecord(t) + " matched the leaf");
    misses->unmatched.push_back(ShortRecord(t) + " does not match the leaf");
  }
  return std::nullopt;
}

// DANE-TA "2 0 0": the record carries the TA itself, so the server need
// not send it.
std::optional<VerifyResult> VerifyTaFromRecord(const TlsaRecord& t, const std::vector<Cert>& chain,
                                               const DaneVerifyInput& input, DaneMisses* misses) {
  std::string error;
  if (!ParseDer(t.data, &error)) {
    misses->unmatched.push_back(ShortRecord(t) + " holds no parsable certificate (" + error + ")");
    return std::nullopt;
  }
  const std::string what = "DANE-TA " + ShortRecord(t) + " (trust anchor from the record)";
  ChainCheck c = CheckTrustAnchor(t.data, 0, chain, input.reference_names, input.now);
  if (c.ok) return DaneMatched(t, -1, what + ": path verified, " + c.detail);
  misses->Note(std::move(c), what + ": ");
  return std::nullopt;
}

// DANE-TA (usage 2) record `t`: a certificate at depth >= 1 that matches
// is the only trust anchor of the path from the leaf.
std::optional<VerifyResult> VerifyDaneTa(const TlsaRecord& t, const std::vector<Cert>& chain,
                                         const DaneVerifyInput& input, DaneMisses* misses) {
  bool found = false;
  for (size_t i = 1; i < chain.size(); i++) {
    if (!RecordMatches(t, chain[i])) continue;
    found = true;
    const std::string what =
        "DANE-TA " + ShortRecord(t) + " matched " + chain[i].subject + " at depth " + std::to_string(i);
    ChainCheck c = CheckTrustAnchor(*chain[i].der, i, chain, input.reference_names, input.now);
    if (c.ok) return DaneMatched(t, static_cast<int>(i), what + ", path verified, " + c.detail);
    misses->Note(std::move(c), what + ", but ");
  }
  if (found) return std::nullopt;
  if (t.selector == 0 && t.matching == 0) return VerifyTaFromRecord(t, chain, input, misses);
  if (t.selector == 1 && t.matching == 0) {
    misses->unmatched.push_back(ShortRecord(t) +
                                " matches no certificate at depth >= 1, and a bare public key trust anchor "
                                "is not supported");
  } else {
    misses->unmatched.push_back(ShortRecord(t) + " matches no certificate at depth >= 1");
  }
  return std::nullopt;
}

VerifyResult DaneRefused(DaneMisses misses) {
  ChainCheck& best = misses.best;
  if (best.stage < kNotTrusted) {
    std::string all;
    for (const std::string& u : misses.unmatched) all += (all.empty() ? "" : "; ") + u;
    best.stage = kNoMatch;
    best.detail = "no TLSA record matched the chain: " + all;
  }
  VerifyResult r;
  r.detail = best.detail;
  r.failure_type = FailureType(best.stage);
  return r;
}

}  // namespace

VerifyResult VerifyDane(const DaneVerifyInput& input) {
  VerifyResult r;
  std::vector<Cert> chain;
  if (!ParseChain(input.chain, &chain, &r)) return r;

  std::vector<TlsaRecord> usable;
  for (const TlsaRecord& t : input.tlsa) {
    if (Usable(t)) usable.push_back(t);
  }
  if (usable.empty()) {
    // RFC 8460 §4.3.2.1: "None of the records in the RRset were found to
    // be valid." The policy layer should not have asked; say what we saw.
    r.detail = "no usable TLSA record (" + std::to_string(input.tlsa.size()) + " given)";
    r.failure_type = "tlsa-invalid";
    return r;
  }
  const std::vector<TlsaRecord> records = ApplyDigestAgility(usable);
  DaneMisses misses;
  if (std::optional<VerifyResult> ee = VerifyDaneEe(records, chain, &misses)) return *ee;
  for (const TlsaRecord& t : records) {
    if (t.usage != 2) continue;
    if (std::optional<VerifyResult> ta = VerifyDaneTa(t, chain, input, &misses)) return *ta;
  }
  return DaneRefused(std::move(misses));
}

VerifyResult VerifyPkix(const PkixVerifyInput& input) {
  VerifyResult r;
  std::vector<Cert> chain;
  if (!ParseChain(input.chain, &chain, &r)) return r;

  TrustList tl = NewTrustList();
  if (!tl) {
    r.detail = "cannot create a trust list";
    r.failure_type = FailureType(kNoMatch);
    return r;
  }
  if (input.ca_file.empty()) {
    int n = gnutls_x509_trust_list_add_system_trust(tl.get(), 0, 0);
    if (n <= 0) {
      r.detail = "the system trust store is empty or unreadable";
      r.failure_type = FailureType(kNoMatch);
      return r;
    }
  } else {
    if (access(input.ca_file.c_str(), R_OK) != 0) {
      // Our configuration, not the server's fault.
      r.detail = "cannot read CA file " + input.ca_file + ": " + std::strerror(errno);
      r.failure_type = FailureType(kNoMatch);
      return r;
    }
    int n = gnutls_x509_trust_list_add_trust_file(tl.get(), input.ca_file.c_str(), nullptr, GNUTLS_X509_FMT_PEM,
                                                  0, 0);
    if (n <= 0) {
      r.detail = "CA file " + input.ca_file + " holds no usable CA certificate" +
                 (n < 0 ? std::string(" (") + gnutls_strerror(n) + ")" : std::string());
      r.failure_type = FailureType(kNotTrusted);
      return r;
    }
  }

  // MTA-STS relies on the Web PKI, whose server certificates are issued for
  // the TLS server purpose: GnuTLS enforces it when the leaf has EKU.
  std::vector<size_t> counts;
  for (size_t n = chain.size(); n > 0; n--) counts.push_back(n);
  ChainCheck c = VerifyPrefixes(tl.get(), chain, counts, 0, GNUTLS_KP_TLS_WWW_SERVER, input.now);
  if (!c.ok) {
    r.detail = c.detail;
    r.failure_type = FailureType(c.stage);
    return r;
  }
  // RFC 8461 §4.2 wants a DNS-ID in the subjectAltName; GnuTLS would
  // fall back to the CN when there is none, DANE-TA may (as Postfix does),
  // MTA-STS may not.
  if (DnsSans(chain[0].crt.get()).empty()) {
    r.detail = "the leaf (" + chain[0].subject + ") has no DNS name in its subjectAltName";
    r.failure_type = FailureType(kHostMismatch);
    return r;
  }
  const std::vector<std::string> wanted = input.names.empty() ? std::vector<std::string>{input.host} : input.names;
  auto name = MatchName(chain[0].crt.get(), wanted);
  if (!name) {
    std::string list;
    for (const std::string& w : wanted) list += (list.empty() ? "" : ", ") + w;
    r.detail = "the leaf (" + chain[0].subject + ") is not valid for " +
               (list.empty() ? std::string("(no host)") : list);
    r.failure_type = FailureType(kHostMismatch);
    return r;
  }
  r.ok = true;
  r.matched_depth = 0;
  r.detail = "PKIX chain verified to " + (input.ca_file.empty() ? std::string("the system trust store") : input.ca_file) +
             ", leaf valid for " + *name;
  return r;
}

}  // namespace mxsec
