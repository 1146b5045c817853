// dnssec.cc - building blocks of in-process DNSSEC validation (see
// dnssec.h for what is promised, and what is not built yet).
//
// ldns does the cryptography and NSEC3 hashing (ldns_verify_rrsig_time, ldns_key_rr2ds;
// for ECDSA, its EVP verifier with keys parsed once per process); this
// module adds what ldns's low-level functions leave to the caller (notes
// §5.4): signer/owner relations, zone and REVOKE bits, label counts, the
// skew allowance, and the line between "cannot verify" (unsupported:
// insecure) and "does not verify" (bogus); and the bounds on the work an
// answer may demand (dnssec.h), counted in a ValidationBudget.
// C++ headers first: ldns/common.h redefines false/true as macros.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mxsec/dns/dnssec.h"
#include "ldns_ptr.h"  // the owners of ldns objects

#include <ldns/ldns.h>

namespace mxsec {
namespace {

RdfPtr NameRdf(const std::string& owner) {
  std::string n = owner.empty() || owner == "." ? "." : owner + ".";
  return RdfPtr(ldns_dname_new_frm_str(n.c_str()));
}

std::string NameText(const ldns_rdf* rdf) {
  MallocedChars s(ldns_rdf2str(rdf));
  if (!s) return "?";
  std::string n(s.get());
  if (n.size() > 1 && n.back() == '.') n.pop_back();
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(tolower(c)); });
  return n;
}

std::string RrText(const ldns_rr* rr) {
  MallocedChars s(ldns_rr2str(rr));
  std::string t = s ? s.get() : "?";
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool SameName(const ldns_rdf* a, const ldns_rdf* b) { return ldns_dname_compare(a, b) == 0; }

// `name` is `zone` or below it.
bool AtOrBelow(const ldns_rdf* name, const ldns_rdf* zone) {
  return SameName(name, zone) || ldns_dname_is_subdomain(name, zone);
}

bool AlgorithmUsable(uint8_t alg, const SigCheckOptions& o) {
  return !o.unsupported_algorithms.count(alg) && ldns_key_algo_supported(alg) != 0;
}

bool DigestUsable(uint8_t digest, const SigCheckOptions& o) {
  if (o.unsupported_digests.count(digest)) return false;
  return digest == LDNS_SHA1 || digest == LDNS_SHA256 || digest == LDNS_SHA384;
}

// The number of labels of `owner` as RRSIG counts them (RFC 4034 §3.1.3):
// the root is 0, a leading "*" label does not count.
uint8_t SigLabels(const ldns_rdf* owner) {
  uint8_t n = ldns_dname_label_count(owner);
  if (n > 0 && ldns_rdf_size(owner) >= 2 && ldns_rdf_data(owner)[0] == 1 && ldns_rdf_data(owner)[1] == '*') --n;
  return n;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

// `s` cut to `max` characters, marked "..." where it was cut.
std::string Clip(std::string s, size_t max) {
  if (s.size() > max) {
    s.resize(max > 3 ? max - 3 : 0);
    s += "...";
  }
  return s;
}

// The problems a check found, for its reason: the first kMaxListed, each
// cut to kMaxItemLength, then how many more there were. An RRset with 500
// signatures gets a reason of a few lines, not 500.
class ProblemList {
 public:
  static constexpr size_t kMaxListed = 8;
  static constexpr size_t kMaxItemLength = 200;
  void Add(std::string p) {
    if (items_.size() < kMaxListed) items_.push_back(Clip(std::move(p), kMaxItemLength));
    else ++more_;
  }
  bool empty() const { return items_.empty(); }
  std::string Text() const {
    return Join(items_, "; ") + (more_ ? "; and " + std::to_string(more_) + " more" : "");
  }

 private:
  std::vector<std::string> items_;
  size_t more_ = 0;
};

// RFC 4034 §3.1.5: RRSIG times are serial numbers (RFC 1982), read as the
// instant within 2^31 seconds of `now` that they name; right across the
// 2038 and 2106 wraps of 32-bit and unsigned 32-bit time.
int64_t SerialTime(uint32_t value, int64_t now) {
  return now + static_cast<int32_t>(value - static_cast<uint32_t>(now));
}

// Why an RSA DNSKEY is too costly to use (exponent or modulus over the
// limits of dnssec.h), "" when it is not RSA or within them. RFC 3110 §2:
// exponent length in one octet, or 0 and two octets.
std::string RsaKeyTooCostly(const ldns_rr* key, uint8_t alg) {
  if (alg != LDNS_RSAMD5 && alg != LDNS_RSASHA1 && alg != LDNS_RSASHA1_NSEC3 && alg != LDNS_RSASHA256 &&
      alg != LDNS_RSASHA512)
    return "";
  const ldns_rdf* pk = ldns_rr_dnskey_key(key);
  if (!pk) return "no public key";
  const uint8_t* d = ldns_rdf_data(pk);
  const size_t size = ldns_rdf_size(pk);
  size_t at = 1, exp_len = size ? d[0] : 0;
  if (size >= 3 && d[0] == 0) {
    exp_len = size_t{d[1]} << 8 | d[2];
    at = 3;
  }
  if (size < at || size - at < exp_len) return "malformed RSA public key";
  auto bits = [](const uint8_t* b, size_t n) {
    while (n && *b == 0) ++b, --n;
    if (!n) return size_t{0};
    size_t top = 0;
    for (uint8_t v = *b; v; v >>= 1) ++top;
    return (n - 1) * 8 + top;
  };
  const size_t exp_bits = bits(d + at, exp_len);
  const size_t mod_bits = bits(d + at + exp_len, size - at - exp_len);
  if (exp_bits > kMaxRsaExponentBits)
    return "RSA public exponent of " + std::to_string(exp_bits) + " bits, more than " +
           std::to_string(kMaxRsaExponentBits) + " (limit of the work per verification)";
  if (mod_bits > kMaxRsaModulusBits)
    return "RSA modulus of " + std::to_string(mod_bits) + " bits, more than " + std::to_string(kMaxRsaModulusBits) +
           " (RFC 3110, RFC 5702)";
  return "";
}

// Appends `rr` in wire form (uncompressed, TTL zeroed), length first, to
// the key of a verified triple. False when ldns cannot encode it.
bool AppendTripleKey(const ldns_rr* rr, std::string* key) {
  uint8_t* wire = nullptr;
  size_t size = 0;
  if (ldns_rr2wire(&wire, rr, LDNS_SECTION_ANSWER, &size) != LDNS_STATUS_OK || !wire) return false;
  MallocedBytes owned(wire);
  const size_t ttl_at = ldns_rdf_size(ldns_rr_owner(rr)) + 4;
  if (size < ttl_at + 4) return false;
  std::memset(wire + ttl_at, 0, 4);
  const uint32_t n = static_cast<uint32_t>(size);
  key->append(reinterpret_cast<const char*>(&n), sizeof n);
  key->append(reinterpret_cast<const char*>(wire), size);
  return true;
}

// The key of the triple (RRset, RRSIG, DNSKEY), "" when it cannot be made.
std::string TripleKey(const RrList& rrset, const ldns_rr* sig, const ldns_rr* key) {
  std::string out;
  if (!AppendTripleKey(key, &out) || !AppendTripleKey(sig, &out)) return "";
  for (size_t i = 0; i < rrset.size(); ++i) {
    if (!AppendTripleKey(ldns_rr_list_rr(rrset.get(), i), &out)) return "";
  }
  return out;
}

// ECDSA public keys parsed once per process. ldns_verify_rrsig_time
// rebuilds the OpenSSL key (curve group included) from the DNSKEY on every
// call, which costs about as much as the verification itself; a zone's
// few keys sign every answer from it. Keyed by algorithm and key bytes;
// shared_ptr so that emptying the cache never frees a key in use.
std::shared_ptr<EVP_PKEY> EcdsaKey(uint8_t alg, const ldns_rdf* key_data) {
  // Never destroyed: freeing keys after OpenSSL's own atexit cleanup
  // could crash at exit.
  static std::mutex& mu = *new std::mutex;
  static auto& keys = *new std::map<std::string, std::shared_ptr<EVP_PKEY>>;
  std::string id(1, static_cast<char>(alg));
  id.append(reinterpret_cast<const char*>(ldns_rdf_data(key_data)), ldns_rdf_size(key_data));
  {
    std::lock_guard<std::mutex> l(mu);
    auto it = keys.find(id);
    if (it != keys.end()) return it->second;
  }
  EVP_PKEY* raw = ldns_ecdsa2pkey_raw(ldns_rdf_data(key_data), ldns_rdf_size(key_data), alg);
  if (!raw) return nullptr;
  std::shared_ptr<EVP_PKEY> key(raw, EVP_PKEY_free);
  std::lock_guard<std::mutex> l(mu);
  if (keys.size() >= 1000) keys.clear();
  keys.emplace(std::move(id), key);
  return key;
}

// The data an RRSIG signs (RFC 4034 §3.1.8.1, §6): the RRSIG RDATA
// without the signature, then the RRset in canonical form (original TTL,
// lowercase names, wildcard owner restored from the label count) and
// canonical order. The same steps as ldns's own verifier takes.
BufferPtr SignedData(const ldns_rr_list* rrset, const ldns_rr* sig) {
  RrListPtr clone(ldns_rr_list_clone(rrset));
  if (!clone || ldns_rr_rd_count(sig) < 9) return nullptr;
  const uint32_t orig_ttl = ldns_rdf2native_int32(ldns_rr_rrsig_origttl(sig));
  const uint8_t labels = ldns_rdf2native_int8(ldns_rr_rrsig_labels(sig));
  for (size_t i = 0; i < ldns_rr_list_rr_count(clone.get()); ++i) {
    ldns_rr* rr = ldns_rr_list_rr(clone.get(), i);
    const ldns_rdf* owner = ldns_rr_owner(rr);
    if (labels < ldns_dname_label_count(owner)) {
      RdfPtr closest(ldns_dname_clone_from(owner, static_cast<uint16_t>(ldns_dname_label_count(owner) - labels)));
      RdfPtr wildcard(ldns_dname_new_frm_str("*"));
      if (!closest || !wildcard || ldns_dname_cat(wildcard.get(), closest.get()) != LDNS_STATUS_OK) return nullptr;
      ldns_rdf* old = ldns_rr_owner(rr);
      ldns_rr_set_owner(rr, wildcard.release());
      ldns_rdf_deep_free(old);
    }
    ldns_rr_set_ttl(rr, orig_ttl);
    ldns_rr2canonical(rr);
  }
  ldns_rr_list_sort(clone.get());
  BufferPtr buf(ldns_buffer_new(LDNS_MAX_PACKETLEN));
  if (!buf || ldns_rrsig2buffer_wire(buf.get(), sig) != LDNS_STATUS_OK ||
      ldns_rr_list2buffer_wire(buf.get(), clone.get()) != LDNS_STATUS_OK)
    return nullptr;
  return buf;
}

}  // namespace

namespace internal {

bool VerifySignatureCrypto(const ldns_rr_list* rrset, const ldns_rr* sig, const ldns_rr* key, int64_t check_time,
                           std::string* error) {
  const uint8_t alg = ldns_rdf2native_int8(ldns_rr_rrsig_algorithm(sig));
  if ((alg == LDNS_ECDSAP256SHA256 || alg == LDNS_ECDSAP384SHA384) && ldns_rr_rd_count(key) >= 4 &&
      ldns_rr_rd_count(sig) >= 9) {
    std::shared_ptr<EVP_PKEY> pkey = EcdsaKey(alg, ldns_rr_dnskey_key(key));
    BufferPtr data = SignedData(rrset, sig);
    BufferPtr der(ldns_buffer_new(LDNS_MAX_PACKETLEN));
    if (!pkey || !data || !der || ldns_convert_ecdsa_rrsig_rdf2asn1(der.get(), ldns_rr_rrsig_sig(sig)) != LDNS_STATUS_OK) {
      *error = "cannot prepare the ECDSA verification";
      return false;
    }
    ldns_status s = ldns_verify_rrsig_evp_raw(ldns_buffer_begin(der.get()), ldns_buffer_position(der.get()), data.get(),
                                              pkey.get(), alg == LDNS_ECDSAP256SHA256 ? EVP_sha256() : EVP_sha384());
    if (s != LDNS_STATUS_OK) *error = ldns_get_errorstr_by_id(s);
    return s == LDNS_STATUS_OK;
  }
  // Every other algorithm: ldns's verifier, which also checks the window
  // at `check_time` (the caller has checked it already).
  ldns_status s = ldns_verify_rrsig_time(const_cast<ldns_rr_list*>(rrset), const_cast<ldns_rr*>(sig),
                                         const_cast<ldns_rr*>(key), static_cast<time_t>(check_time));
  if (s != LDNS_STATUS_OK) *error = ldns_get_errorstr_by_id(s);
  return s == LDNS_STATUS_OK;
}

}  // namespace internal

// --- VerifiedSignatures ---

bool VerifiedSignatures::Contains(const std::string& triple, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(triple);
  if (it == entries_.end()) return false;
  if (now > it->second) {
    entries_.erase(it);
    return false;
  }
  return true;
}

namespace {
// Makes room for one entry in a bounded map of triple -> last second it counts.
void MakeRoom(std::unordered_map<std::string, int64_t>* m, size_t max_entries, int64_t now) {
  if (m->size() < max_entries) return;
  std::erase_if(*m, [now](const auto& e) { return now > e.second; });
  if (m->size() >= max_entries) m->clear();
}
}  // namespace

void VerifiedSignatures::Add(std::string triple, int64_t usable_until, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  MakeRoom(&entries_, max_entries_, now);
  entries_[std::move(triple)] = usable_until;
}

bool VerifiedSignatures::Failed(const std::string& triple, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = failures_.find(triple);
  if (it == failures_.end()) return false;
  if (now > it->second) {
    failures_.erase(it);
    return false;
  }
  return true;
}

void VerifiedSignatures::AddFailure(std::string triple, int64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  MakeRoom(&failures_, max_entries_, now);
  failures_[std::move(triple)] = now + kFailureMemorySeconds;
}

size_t VerifiedSignatures::size() {
  std::lock_guard<std::mutex> l(mu_);
  return entries_.size();
}

size_t VerifiedSignatures::failures() {
  std::lock_guard<std::mutex> l(mu_);
  return failures_.size();
}

// --- ValidationBudget ---

bool ValidationBudget::SpendPublicKeyOperation() {
  if (ops_ >= max_ops_) {
    if (exhausted_.empty())
      exhausted_ = "validation work limit reached: " + std::to_string(max_ops_) +
                   " signature verifications for one lookup";
    return false;
  }
  ++ops_;
  return true;
}

bool ValidationBudget::RecordFailure() {
  ++failures_;
  if (failures_ >= max_failures_) {
    if (exhausted_.empty())
      exhausted_ = "validation work limit reached: " + std::to_string(max_failures_) +
                   " failed signature checks for one lookup";
    return false;
  }
  return true;
}

bool ValidationBudget::SpendNsec3Hash(uint16_t iterations) {
  const uint64_t rounds = uint64_t{iterations} + 1;
  if (nsec3_rounds_ + rounds > max_nsec3_rounds_) {
    if (exhausted_.empty())
      exhausted_ = "validation work limit reached: " + std::to_string(max_nsec3_rounds_) +
                   " NSEC3 hash rounds for one lookup";
    return false;
  }
  nsec3_rounds_ += rounds;
  ++nsec3_hashes_;
  return true;
}

// --- RrList ---

RrList::RrList() : list_(ldns_rr_list_new()) {}
RrList::RrList(ldns_struct_rr_list* adopt) : list_(adopt ? adopt : ldns_rr_list_new()) {}
RrList::~RrList() {
  if (list_) ldns_rr_list_deep_free(list_);
}
RrList::RrList(RrList&& o) noexcept : list_(o.list_) { o.list_ = ldns_rr_list_new(); }
RrList& RrList::operator=(RrList&& o) noexcept {
  std::swap(list_, o.list_);
  return *this;
}

size_t RrList::size() const { return list_ ? ldns_rr_list_rr_count(list_) : 0; }

Result<RrList> RrList::FromText(const std::string& text, const std::string& name) {
  RrList out;
  std::stringstream ss(text);
  std::string line;
  int lineno = 0;
  while (std::getline(ss, line)) {
    ++lineno;
    std::string t = Trim(line);
    if (t.empty() || t[0] == ';' || t[0] == '#') continue;
    const std::string where = name + ":" + std::to_string(lineno) + ": ";
    if (t[0] == '$') return Status::Error(where + "zone file directives are not supported: " + t.substr(0, 40));
    ldns_rr* rr = nullptr;
    ldns_status s = ldns_rr_new_frm_str(&rr, t.c_str(), 0, nullptr, nullptr);
    if (s != LDNS_STATUS_OK || !rr) {
      return Status::Error(where + "not a resource record (" + ldns_get_errorstr_by_id(s) + "): " + t.substr(0, 60));
    }
    ldns_rr_list_push_rr(out.list_, rr);
  }
  return out;
}

RrList RrList::Select(uint16_t type, const std::string& owner) const {
  RrList out;
  RdfPtr want = owner.empty() ? nullptr : NameRdf(owner);
  for (size_t i = 0; i < size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list_, i);
    if (type != 0 && ldns_rr_get_type(rr) != type) continue;
    if (want && !SameName(ldns_rr_owner(rr), want.get())) continue;
    ldns_rr_list_push_rr(out.list_, ldns_rr_clone(rr));
  }
  return out;
}

RrList RrList::Clone() const { return Select(0); }

void RrList::Append(const RrList& other) {
  for (size_t i = 0; i < other.size(); ++i) ldns_rr_list_push_rr(list_, ldns_rr_clone(ldns_rr_list_rr(other.list_, i)));
}

std::string RrList::ToString() const {
  std::string out;
  for (size_t i = 0; i < size(); ++i) out += RrText(ldns_rr_list_rr(list_, i)) + "\n";
  return out;
}

// --- Trust anchors ---

Result<RrList> ParseTrustAnchors(const std::string& text, const std::string& name) {
  auto parsed = RrList::FromText(text, name);
  if (!parsed.ok()) return parsed.status();
  RrList list = std::move(parsed.value());
  if (list.empty()) return Status::Error(name + ": no DS or DNSKEY records (no trust anchor)");
  for (size_t i = 0; i < list.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list.get(), i);
    ldns_rr_type t = ldns_rr_get_type(rr);
    if (t != LDNS_RR_TYPE_DS && t != LDNS_RR_TYPE_DNSKEY) {
      return Status::Error(name + ": only DS and DNSKEY records can be trust anchors, not " + RrText(rr).substr(0, 80));
    }
    if (t == LDNS_RR_TYPE_DNSKEY && !(ldns_rdf2native_int16(ldns_rr_dnskey_flags(rr)) & LDNS_KEY_ZONE_KEY)) {
      return Status::Error(name + ": DNSKEY anchor without the zone key bit: " + RrText(rr).substr(0, 80));
    }
  }
  return list;
}

Result<RrList> LoadTrustAnchors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path + ": cannot read the trust anchor file: " + strerror(errno));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status::Error(path + ": read error");
  return ParseTrustAnchors(buf.str(), path);
}

// --- Signatures ---

const char* SigStatusName(SigStatus s) {
  switch (s) {
    case SigStatus::kValid: return "valid";
    case SigStatus::kBogus: return "bogus";
    case SigStatus::kUnsupported: return "unsupported";
  }
  return "?";
}

SigCheckOptions DefaultSigCheckOptions(int64_t now) {
  SigCheckOptions o;
  o.now = now;
  o.unsupported_algorithms = {1, 3, 6, 12};
  o.unsupported_digests = {3};
  return o;
}

namespace {

// A DNSKEY of the zone, with what every RRSIG is matched against.
struct ZoneKey {
  ldns_rr* rr;
  uint16_t tag;
  uint8_t alg;
  uint16_t flags;
  std::string too_costly;  // RsaKeyTooCostly
};

}  // namespace

namespace {

// RFC 4035 §5.3.1: the records must be one RRset (one owner, type, class).
// Returns what breaks that, or "".
std::string NotOneRrsetProblem(const RrList& rrset) {
  const ldns_rr* first = ldns_rr_list_rr(rrset.get(), 0);
  for (size_t i = 1; i < rrset.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(rrset.get(), i);
    if (ldns_rr_get_type(rr) != ldns_rr_get_type(first) || !SameName(ldns_rr_owner(rr), ldns_rr_owner(first)) ||
        ldns_rr_get_class(rr) != ldns_rr_get_class(first))
      return "not one RRset: " + RrText(rr).substr(0, 80);
  }
  return "";
}

// The zone's DNSKEYs with tags and flags computed once per call, not once
// per RRSIG and key: a DNSKEY set of 500 keys meets 500 RRSIGs here.
std::vector<ZoneKey> CollectZoneKeys(const RrList& keys, const ldns_rdf* zone) {
  std::vector<ZoneKey> zone_keys;
  for (size_t k = 0; k < keys.size(); ++k) {
    ldns_rr* key = ldns_rr_list_rr(keys.get(), k);
    if (ldns_rr_get_type(key) != LDNS_RR_TYPE_DNSKEY || ldns_rr_rd_count(key) < 4) continue;
    if (!SameName(ldns_rr_owner(key), zone)) continue;
    const uint8_t alg = ldns_rdf2native_int8(ldns_rr_dnskey_algorithm(key));
    zone_keys.push_back({key, ldns_calc_keytag(key), alg, ldns_rdf2native_int16(ldns_rr_dnskey_flags(key)),
                         RsaKeyTooCostly(key, alg)});
  }
  return zone_keys;
}

// The fields of one RRSIG that the checks use, read once.
struct SigFields {
  uint8_t alg = 0;
  uint16_t tag = 0;
  uint8_t labels = 0;
  uint8_t owner_labels = 0;
  uint32_t inception_field = 0, expiration_field = 0;
  int64_t inception = 0, expiration = 0;  // serial arithmetic resolved against now (RFC 4034 §3.1.5)
  std::string name;                       // "RRSIG tag T alg A", for reasons
};

SigFields ReadSigFields(const ldns_rr* sig, const ldns_rdf* owner, int64_t now) {
  SigFields f;
  f.alg = ldns_rdf2native_int8(ldns_rr_rrsig_algorithm(sig));
  f.tag = ldns_rdf2native_int16(ldns_rr_rrsig_keytag(sig));
  f.name = "RRSIG tag " + std::to_string(f.tag) + " alg " + std::to_string(f.alg);
  f.labels = ldns_rdf2native_int8(ldns_rr_rrsig_labels(sig));
  f.owner_labels = SigLabels(owner);
  f.inception_field = ldns_rdf2native_int32(ldns_rr_rrsig_inception(sig));
  f.expiration_field = ldns_rdf2native_int32(ldns_rr_rrsig_expiration(sig));
  f.inception = SerialTime(f.inception_field, now);
  f.expiration = SerialTime(f.expiration_field, now);
  return f;
}

// RFC 4035 §5.3.1: the signer is the zone and encloses the owner, the label
// count fits the owner, and the validity window holds now (within the
// skew). Returns the first problem, or "".
std::string SigApplicabilityProblem(const ldns_rr* sig, const SigFields& f, const ldns_rdf* owner,
                                    const ldns_rdf* zone, const SigCheckOptions& o) {
  const ldns_rdf* signer = ldns_rr_rrsig_signame(sig);
  if (!SameName(signer, zone))
    return f.name + ": signed by " + NameText(signer) + ", not by the zone " + NameText(zone);
  if (!AtOrBelow(owner, signer)) return f.name + ": signer " + NameText(signer) + " does not enclose " + NameText(owner);
  if (f.labels > f.owner_labels)
    return f.name + ": label count " + std::to_string(f.labels) + " exceeds the owner's " +
           std::to_string(f.owner_labels);
  // An empty window is no window (and std::clamp in the caller needs lo <= hi).
  if (f.inception > f.expiration)
    return f.name + ": inception " + std::to_string(f.inception_field) + " is after expiration " +
           std::to_string(f.expiration_field);
  if (o.now + o.skew < f.inception)
    return f.name + ": not valid before " + std::to_string(f.inception) + " (now " + std::to_string(o.now) + ")";
  if (o.now - o.skew > f.expiration)
    return f.name + ": signature expired at " + std::to_string(f.expiration) + " (now " + std::to_string(o.now) + ")";
  return "";
}

// The zone keys an RRSIG may have been made with (same tag and algorithm),
// or a problem: none, or more than kMaxKeyTagCollisions (CVE-2023-50387:
// colliding tags must not multiply the work).
std::vector<const ZoneKey*> CandidateKeys(const std::vector<ZoneKey>& zone_keys, const SigFields& f,
                                          const ldns_rdf* zone, std::string* problem) {
  std::vector<const ZoneKey*> candidates;
  for (const ZoneKey& zk : zone_keys)
    if (zk.alg == f.alg && zk.tag == f.tag) candidates.push_back(&zk);
  if (candidates.empty()) {
    *problem = f.name + ": no zone key with that tag and algorithm in the DNSKEY set of " + NameText(zone);
  } else if (candidates.size() > kMaxKeyTagCollisions) {
    *problem = f.name + ": " + std::to_string(candidates.size()) + " keys of " + NameText(zone) +
               " have that tag and algorithm, more than " + std::to_string(kMaxKeyTagCollisions) +
               " (key-tag collision limit): not tried";
    candidates.clear();
  }
  return candidates;
}

// RFC 4035 §5.3.1 and RFC 5011 §7: only a zone key that is not revoked, and
// not one too costly to use. Returns why the key is not used, or "".
std::string KeyUnusableProblem(const ZoneKey& zk, const SigFields& f) {
  if (!(zk.flags & LDNS_KEY_ZONE_KEY)) return f.name + ": key " + std::to_string(f.tag) + " is not a zone key";
  if (zk.flags & LDNS_KEY_REVOKE_KEY) return f.name + ": key " + std::to_string(f.tag) + " is revoked";
  if (!zk.too_costly.empty()) return f.name + ": key " + std::to_string(f.tag) + " not used: " + zk.too_costly;
  return "";
}

// One public-key check of (RRset, RRSIG, DNSKEY), through the memory of
// recent results when there is one: only the public-key operation is
// skipped for a remembered triple (the checks before it were made again).
// Returns nullopt when the lookup's budget is spent (*limit says so).
std::optional<bool> CheckSignature(const RrList& rrset, ldns_rr* sig, const ZoneKey& zk, const SigFields& f,
                                   const SigCheckOptions& o, ValidationBudget& budget, std::string* error,
                                   std::string* limit) {
  const std::string triple = o.verified ? TripleKey(rrset, sig, zk.rr) : "";
  if (!triple.empty() && o.verified->Contains(triple, o.now)) return true;
  if (!triple.empty() && o.verified->Failed(triple, o.now)) {
    *error = "remembered failure";
    return false;
  }
  if (!budget.SpendPublicKeyOperation()) {
    *limit = budget.exhausted();
    return std::nullopt;
  }
  // Inside the skew allowance, verify as of the nearest valid instant.
  const time_t check_time = static_cast<time_t>(std::clamp(o.now, f.inception, f.expiration));
  const bool ok = internal::VerifySignatureCrypto(rrset.get(), sig, zk.rr, check_time, error);
  if (!triple.empty()) {
    if (ok) o.verified->Add(triple, f.expiration + o.skew, o.now);
    else o.verified->AddFailure(triple, o.now);
  }
  return ok;
}

// The result for an RRSIG that verified (RFC 4035 §5.3.3 for the TTL,
// §5.3.4 for a wildcard expansion).
SigResult ValidResult(const ldns_rr* sig, const SigFields& f, const ldns_rdf* owner, const ldns_rdf* zone,
                      const std::string& what, const SigCheckOptions& o) {
  SigResult r;
  r.status = SigStatus::kValid;
  r.key_tags = {f.tag};
  r.signer = NameText(zone);
  r.wildcard = f.labels < f.owner_labels;
  if (r.wildcard) {
    RdfPtr encloser(ldns_dname_clone_from(owner, static_cast<uint16_t>(ldns_dname_label_count(owner) - f.labels)));
    r.wildcard_source = "*." + (encloser ? NameText(encloser.get()) : std::string("?"));
    if (r.wildcard_source == "*..") r.wildcard_source = "*";
  }
  const int64_t until_expiry = std::max<int64_t>(0, f.expiration - o.now);
  r.ttl_limit =
      static_cast<uint32_t>(std::min<int64_t>(ldns_rdf2native_int32(ldns_rr_rrsig_origttl(sig)), until_expiry));
  r.reason = what + " signed by " + r.signer + " key " + std::to_string(f.tag) +
             (r.wildcard ? " (wildcard expansion of " + r.wildcard_source + ")" : "");
  return r;
}

// What the search over every (RRSIG, DNSKEY) pair found and spent.
struct SigSearch {
  ProblemList problems;
  std::string limit;  // the work limit that ended the search, if one did
  size_t checks = 0;  // pairs checked, kMaxSignatureChecksPerRrset at most
  bool any_sig = false, any_supported = false;
};

// Tries one RRSIG against its candidate keys; a valid result, or nullopt
// with the problems (and any limit reached) recorded in `search`.
std::optional<SigResult> TrySignature(const RrList& rrset, ldns_rr* sig, const std::vector<ZoneKey>& zone_keys,
                                      const ldns_rdf* owner, const ldns_rdf* zone, const std::string& what,
                                      const SigCheckOptions& o, ValidationBudget& budget, SigSearch* search) {
  const SigFields f = ReadSigFields(sig, owner, o.now);
  if (!AlgorithmUsable(f.alg, o)) {
    search->problems.Add(f.name + ": algorithm not supported");
    return std::nullopt;
  }
  search->any_supported = true;
  std::string problem = SigApplicabilityProblem(sig, f, owner, zone, o);
  std::vector<const ZoneKey*> candidates;
  if (problem.empty()) candidates = CandidateKeys(zone_keys, f, zone, &problem);
  if (!problem.empty()) {
    search->problems.Add(problem);
    return std::nullopt;
  }
  for (const ZoneKey* zk : candidates) {
    std::string unusable = KeyUnusableProblem(*zk, f);
    if (!unusable.empty()) {
      search->problems.Add(unusable);
      continue;
    }
    if (search->checks == kMaxSignatureChecksPerRrset) {
      search->limit = "gave up after " + std::to_string(kMaxSignatureChecksPerRrset) +
                      " signature checks (limit per RRset)";
      return std::nullopt;
    }
    ++search->checks;
    std::string error;
    std::optional<bool> ok = CheckSignature(rrset, sig, *zk, f, o, budget, &error, &search->limit);
    if (!ok) return std::nullopt;
    if (*ok) return ValidResult(sig, f, owner, zone, what, o);
    search->problems.Add(f.name + ": does not verify (" + error + ")");
    if (!budget.RecordFailure()) {
      search->limit = budget.exhausted();
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// The reason when no RRSIG verified, from what the search found.
SigResult NoValidSignature(const SigSearch& search, const std::string& what) {
  SigResult r;
  r.status = SigStatus::kBogus;
  if (!search.any_sig) {
    r.reason = "no RRSIG over " + what + ": signatures missing or stripped";
  } else if (!search.limit.empty()) {
    r.reason = what + ": " + search.limit + (search.problems.empty() ? "" : " (" + search.problems.Text() + ")");
  } else if (!search.any_supported) {
    r.status = SigStatus::kUnsupported;
    r.reason = what + ": no signature with an algorithm we can verify (" + search.problems.Text() + ")";
  } else {
    r.reason = what + ": " + search.problems.Text();
  }
  return r;
}

const ldns_rr* FirstDnskey(const RrList& keys) {
  for (size_t i = 0; i < keys.size(); ++i)
    if (ldns_rr_get_type(ldns_rr_list_rr(keys.get(), i)) == LDNS_RR_TYPE_DNSKEY) return ldns_rr_list_rr(keys.get(), i);
  return nullptr;
}

}  // namespace

// RFC 4035 §5.3: an RRset is valid when one of its RRSIGs verifies with a
// usable key of the zone, within the work bounds of this file.
static SigResult VerifyRrsetImpl(const RrList& rrset, const RrList& sigs, const RrList& keys,
                                 const SigCheckOptions& o) {
  SigResult r;
  r.status = SigStatus::kBogus;
  if (rrset.empty()) {
    r.reason = "empty RRset";
    return r;
  }
  ValidationBudget own;
  ValidationBudget& budget = o.budget ? *o.budget : own;
  const ldns_rr* first = ldns_rr_list_rr(rrset.get(), 0);
  const ldns_rdf* owner = ldns_rr_owner(first);
  const ldns_rr_type type = ldns_rr_get_type(first);
  MallocedChars type_name(ldns_rr_type2str(type));
  const std::string what = Clip(NameText(owner), 300) + " " + (type_name ? type_name.get() : "?");
  if (!budget.exhausted().empty()) r.reason = what + ": " + budget.exhausted();
  if (r.reason.empty()) r.reason = NotOneRrsetProblem(rrset);
  const ldns_rr* zone_key = r.reason.empty() ? FirstDnskey(keys) : nullptr;
  if (r.reason.empty() && !zone_key) r.reason = "no DNSKEY to check " + what + " with";
  if (!r.reason.empty()) return r;
  const ldns_rdf* zone = ldns_rr_owner(zone_key);
  const std::vector<ZoneKey> zone_keys = CollectZoneKeys(keys, zone);

  SigSearch search;
  for (size_t i = 0; i < sigs.size() && search.limit.empty(); ++i) {
    ldns_rr* sig = ldns_rr_list_rr(sigs.get(), i);
    if (ldns_rr_get_type(sig) != LDNS_RR_TYPE_RRSIG || ldns_rr_rd_count(sig) < 9) continue;
    if (!SameName(ldns_rr_owner(sig), owner)) continue;
    if (ldns_rdf2rr_type(ldns_rr_rrsig_typecovered(sig)) != type) continue;
    search.any_sig = true;
    std::optional<SigResult> valid = TrySignature(rrset, sig, zone_keys, owner, zone, what, o, budget, &search);
    if (valid) return *valid;
  }
  return NoValidSignature(search, what);
}

SigResult VerifyRrset(const RrList& rrset, const RrList& sigs, const RrList& keys, const SigCheckOptions& o) {
  SigResult r = VerifyRrsetImpl(rrset, sigs, keys, o);
  r.reason = Clip(std::move(r.reason), kMaxReasonLength);
  return r;
}

namespace {

// The zone's DNSKEYs that a DS record or trust anchor vouches for (RFC 4035
// §5.2), in the order found, each once, with what vouches for it.
struct VouchedKeys {
  std::vector<std::pair<const ldns_rr*, std::string>> keys;  // key, what vouches for it
  ProblemList problems;
  size_t usable_anchors = 0;
  void Add(const ldns_rr* key, const std::string& why) {
    for (const auto& c : keys)
      if (c.first == key) return;  // vouched for by two DS records (SHA-1 and SHA-256): tried once
    keys.emplace_back(key, why);
  }
};

using TaggedKeys = std::vector<std::pair<const ldns_rr*, uint16_t>>;

// A DS record (RFC 4034 §5.1.4): the keys with its tag and algorithm whose
// digest matches, at most kMaxKeyTagCollisions of them considered.
void MatchDs(const ldns_rr* ds, const TaggedKeys& tagged, const std::string& zone_name, const SigCheckOptions& o,
             VouchedKeys* out) {
  const uint16_t tag = ldns_rdf2native_int16(ldns_rr_rdf(ds, 0));
  const uint8_t alg = ldns_rdf2native_int8(ldns_rr_rdf(ds, 1));
  const uint8_t digest = ldns_rdf2native_int8(ldns_rr_rdf(ds, 2));
  const std::string ds_name =
      "DS " + std::to_string(tag) + " alg " + std::to_string(alg) + " digest " + std::to_string(digest);
  if (!AlgorithmUsable(alg, o) || !DigestUsable(digest, o)) {
    out->problems.Add(ds_name + ": algorithm or digest type not supported");
    return;
  }
  ++out->usable_anchors;
  std::vector<const ldns_rr*> same_tag;
  for (const auto& [key, key_tag] : tagged)
    if (key_tag == tag && ldns_rdf2native_int8(ldns_rr_dnskey_algorithm(key)) == alg) same_tag.push_back(key);
  if (same_tag.size() > kMaxKeyTagCollisions) {
    out->problems.Add(ds_name + ": " + std::to_string(same_tag.size()) + " DNSKEYs of " + zone_name +
                      " have its tag and algorithm, more than " + std::to_string(kMaxKeyTagCollisions) +
                      " (key-tag collision limit): not tried");
    return;
  }
  bool matched = false;
  for (const ldns_rr* key : same_tag) {
    RrPtr computed(ldns_key_rr2ds(key, static_cast<ldns_hash>(digest)));
    if (!computed || ldns_rr_rd_count(computed.get()) < 4) continue;
    if (ldns_rdf_compare(ldns_rr_rdf(computed.get(), 3), ldns_rr_rdf(ds, 3)) != 0) continue;
    matched = true;
    out->Add(key, ds_name);
  }
  if (!matched) out->problems.Add(ds_name + ": matches no DNSKEY of " + zone_name + " (digest mismatch or key missing)");
}

// A DNSKEY trust anchor: the key of the set that is the same record.
void MatchDnskeyAnchor(const ldns_rr* anchor, const RrList& keys, const std::string& zone_name,
                       const SigCheckOptions& o, VouchedKeys* out) {
  const uint8_t alg = ldns_rdf2native_int8(ldns_rr_dnskey_algorithm(anchor));
  const std::string anchor_name = "DNSKEY anchor " + std::to_string(ldns_calc_keytag(anchor));
  if (!AlgorithmUsable(alg, o)) {
    out->problems.Add(anchor_name + ": algorithm " + std::to_string(alg) + " not supported");
    return;
  }
  ++out->usable_anchors;
  bool matched = false;
  for (size_t k = 0; k < keys.size(); ++k) {
    const ldns_rr* key = ldns_rr_list_rr(keys.get(), k);
    bool same = ldns_rr_rd_count(key) == ldns_rr_rd_count(anchor);
    for (size_t f = 0; same && f < ldns_rr_rd_count(anchor); ++f)
      same = ldns_rdf_compare(ldns_rr_rdf(key, f), ldns_rr_rdf(anchor, f)) == 0;
    if (!same) continue;
    matched = true;
    out->Add(key, anchor_name);
  }
  if (!matched) out->problems.Add(anchor_name + ": not in the DNSKEY set of " + zone_name);
}

VouchedKeys FindVouchedKeys(const RrList& keys, const RrList& ds, const ldns_rdf* zone, const std::string& zone_name,
                            const SigCheckOptions& o) {
  // Key tags once, not once per DS record: both sets can be large.
  TaggedKeys tagged;
  for (size_t k = 0; k < keys.size(); ++k) {
    const ldns_rr* key = ldns_rr_list_rr(keys.get(), k);
    if (ldns_rr_rd_count(key) >= 4) tagged.emplace_back(key, ldns_calc_keytag(key));
  }
  VouchedKeys out;
  for (size_t i = 0; i < ds.size(); ++i) {
    const ldns_rr* a = ldns_rr_list_rr(ds.get(), i);
    if (!SameName(ldns_rr_owner(a), zone)) continue;
    if (ldns_rr_get_type(a) == LDNS_RR_TYPE_DS && ldns_rr_rd_count(a) >= 4) {
      MatchDs(a, tagged, zone_name, o, &out);
    } else if (ldns_rr_get_type(a) == LDNS_RR_TYPE_DNSKEY && ldns_rr_rd_count(a) >= 4) {
      MatchDnskeyAnchor(a, keys, zone_name, o, &out);
    }
  }
  return out;
}

}  // namespace

// RFC 4035 §5.2: the DNSKEY set is authenticated when a key that a DS
// record or trust anchor vouches for signs it; at most kMaxDsMatchFailures
// such keys are tried.
static SigResult VerifyDnskeysImpl(const RrList& dnskeys, const RrList& sigs, const RrList& ds,
                                   const SigCheckOptions& given) {
  // One budget for every check below, the caller's or our own.
  ValidationBudget own;
  SigCheckOptions o = given;
  if (!o.budget) o.budget = &own;
  SigResult r;
  r.status = SigStatus::kBogus;
  RrList keys = dnskeys.Select(LDNS_RR_TYPE_DNSKEY);
  if (keys.empty()) {
    r.reason = "no DNSKEY records";
    return r;
  }
  const ldns_rdf* zone = ldns_rr_owner(ldns_rr_list_rr(keys.get(), 0));
  const std::string zone_name = NameText(zone);
  VouchedKeys vouched = FindVouchedKeys(keys, ds, zone, zone_name, o);
  ProblemList& problems = vouched.problems;
  std::string limit;  // the work limit that ended the search, if one did
  size_t failed = 0;
  for (const auto& [key, why] : vouched.keys) {
    if (failed == kMaxDsMatchFailures) {
      limit = "gave up after " + std::to_string(kMaxDsMatchFailures) +
              " keys matching a DS or anchor failed to sign it (limit per DNSKEY set)";
      break;
    }
    ++failed;
    RrList one;
    ldns_rr_list_push_rr(one.get(), ldns_rr_clone(key));
    SigResult s = VerifyRrset(keys, sigs, one, o);
    if (s.status == SigStatus::kValid) {
      s.reason = "DNSKEY set of " + zone_name + " authenticated by " + why + " (key " +
                 std::to_string(ldns_calc_keytag(key)) + ")";
      return s;
    }
    problems.Add(why + ": " + s.reason);
  }
  if (vouched.usable_anchors == 0) {
    r.status = SigStatus::kUnsupported;
    r.reason = "no DS or trust anchor for " + zone_name + " that we can use" +
               (problems.empty() ? "" : " (" + problems.Text() + ")");
    return r;
  }
  r.reason = "DNSKEY set of " + zone_name + " not authenticated: " +
             (!limit.empty() ? limit + ": " : o.budget->exhausted().empty() ? "" : o.budget->exhausted() + ": ") +
             problems.Text();
  return r;
}

SigResult VerifyDnskeys(const RrList& dnskeys, const RrList& sigs, const RrList& ds, const SigCheckOptions& o) {
  SigResult r = VerifyDnskeysImpl(dnskeys, sigs, ds, o);
  r.reason = Clip(std::move(r.reason), kMaxReasonLength);
  return r;
}

// --- Denial of existence ---

namespace {

constexpr uint16_t kMaxNsec3Iterations = 150;  // RFC 9276 §3.2: above this, treat as insecure

// The parent of `name`, or null for the root.
RdfPtr Parent(const ldns_rdf* name) {
  if (ldns_dname_label_count(name) == 0) return nullptr;
  return RdfPtr(ldns_dname_left_chop(name));
}

RdfPtr Wildcard(const ldns_rdf* encloser) {
  RdfPtr w(ldns_dname_new_frm_str("*"));
  if (!w || ldns_dname_cat(w.get(), encloser) != LDNS_STATUS_OK) return nullptr;
  return w;
}

bool HasType(const ldns_rr* nsec, ldns_rr_type t) {
  const ldns_rdf* bitmap = ldns_rr_get_type(nsec) == LDNS_RR_TYPE_NSEC ? ldns_rr_rdf(nsec, 1) : ldns_rr_rdf(nsec, 5);
  return bitmap && ldns_nsec_bitmap_covers_type(bitmap, t);
}

// The NSEC span owner < name < next in canonical order (the last NSEC of a
// zone points back to the apex).
bool NsecCovers(const ldns_rr* nsec, const ldns_rdf* name) {
  const ldns_rdf* owner = ldns_rr_owner(nsec);
  const ldns_rdf* next = ldns_rr_rdf(nsec, 0);
  if (ldns_dname_compare(name, owner) <= 0) return false;
  return ldns_dname_compare(name, next) < 0 || ldns_dname_compare(next, owner) <= 0;
}

std::string LowerText(const ldns_rdf* rdf) {
  MallocedChars s(ldns_rdf2str(rdf));
  std::string t = s ? s.get() : "";
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(tolower(c)); });
  if (!t.empty() && t.back() == '.') t.pop_back();
  return t;
}

// NSEC3 records of one parameter set, with hashing and span checks on the
// base32hex text of the hashes (whose order is the order of the hashes).
// Each name is hashed once per proof, charged to the lookup's budget
// ((iterations + 1) rounds); once the budget is spent, names not hashed
// yet match and are covered by nothing, and exhausted() is set, so no
// proof can be completed on them (every proof needs a match or a cover
// of a name it has not hashed before).
class Nsec3Set {
 public:
  Nsec3Set(const std::vector<const ldns_rr*>& records, ValidationBudget* budget) : budget_(budget) {
    for (const ldns_rr* r : records) {
      std::string o = LowerText(ldns_rr_owner(r));
      entries_.push_back({r, o.substr(0, o.find('.')), LowerText(ldns_rr_rdf(r, 4))});
    }
  }
  std::string Hash(const ldns_rdf* name) {
    if (entries_.empty()) return "";
    std::string key = LowerText(name);
    auto it = memo_.find(key);
    if (it != memo_.end()) return it->second;
    const ldns_rr* first = entries_.front().rr;
    if (!budget_->SpendNsec3Hash(ldns_nsec3_iterations(first))) {
      exhausted_ = true;
      return "";
    }
    RdfPtr h(ldns_nsec3_hash_name_frm_nsec3(first, name));
    std::string out = h ? LowerText(h.get()) : "";
    memo_.emplace(std::move(key), out);
    return out;
  }
  const ldns_rr* Match(const ldns_rdf* name) {
    std::string h = Hash(name);
    for (const Entry& e : entries_)
      if (!h.empty() && e.owner == h) return e.rr;
    return nullptr;
  }
  const ldns_rr* Cover(const ldns_rdf* name) {
    std::string h = Hash(name);
    if (h.empty()) return nullptr;
    for (const Entry& e : entries_) {
      // The last NSEC3 of the chain wraps around to the first hash: it
      // covers hashes above its owner and hashes below the first one.
      if (e.next <= e.owner ? (h > e.owner || h < e.next) : (h > e.owner && h < e.next)) return e.rr;
    }
    return nullptr;
  }
  bool exhausted() const { return exhausted_; }

 private:
  struct Entry {
    const ldns_rr* rr;
    std::string owner, next;  // hashes: the owner's first label, the next hashed owner
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> memo_;  // name -> hash
  ValidationBudget* budget_;
  bool exhausted_ = false;
};

// The NSEC and NSEC3 records of an authority section that a proof may
// use: those whose RRsets verify with the zone's keys (wildcard expansions
// excluded), split by type; `verified` owns the records the pointers name.
// An empty non-terminal's NSEC3 has no type bitmap at all (5 rdata
// fields, not 6). More than kMaxDenialRrsets RRsets: none is used, and
// `limit` says why.
struct DenialRecords {
  RrList verified;
  std::vector<const ldns_rr*> nsecs, nsec3s;
  ProblemList rejected;               // why the other records were not used
  std::string limit;                  // a limit on the records that was reached
  const ValidationBudget* budget = nullptr;

  // Makes `d` bogus for `why`, naming the limit reached and the rejected records.
  void MarkBogus(DenialResult* d, const std::string& why) const {
    const std::string& reached = !limit.empty() ? limit : budget ? budget->exhausted() : limit;
    d->status = SigStatus::kBogus;
    d->reason = Clip((reached.empty() ? "" : reached + ": ") + why +
                         (rejected.empty() ? "" : " (records rejected: " + rejected.Text() + ")"),
                     kMaxReasonLength);
    d->key_tags.clear();
  }
};

// Collects the DenialRecords of `auth`; the key tags used are appended to
// `key_tags`. `o.budget` must be set.
DenialRecords CollectDenialRecords(const RrList& auth, const RrList& keys, const SigCheckOptions& o,
                                   std::vector<uint16_t>* key_tags) {
  DenialRecords out;
  out.budget = o.budget;
  std::set<std::string> seen;
  std::vector<std::pair<ldns_rr_type, std::string>> rrsets;
  for (size_t i = 0; i < auth.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(auth.get(), i);
    ldns_rr_type t = ldns_rr_get_type(rr);
    if (t != LDNS_RR_TYPE_NSEC && t != LDNS_RR_TYPE_NSEC3) continue;
    std::string owner = LowerText(ldns_rr_owner(rr));
    if (!seen.insert(owner + "/" + std::to_string(t)).second) continue;
    if (rrsets.size() == kMaxDenialRrsets) {
      out.limit = "more than " + std::to_string(kMaxDenialRrsets) + " NSEC/NSEC3 RRsets (limit per proof)";
      return out;
    }
    rrsets.emplace_back(t, std::move(owner));
  }
  for (const auto& [t, owner] : rrsets) {
    RrList rrset = auth.Select(t, owner);
    SigResult s = VerifyRrset(rrset, auth, keys, o);
    if (s.status != SigStatus::kValid || s.wildcard) {
      out.rejected.Add(s.wildcard ? owner + ": wildcard-expanded " + (t == LDNS_RR_TYPE_NSEC ? "NSEC" : "NSEC3")
                                  : s.reason);
      continue;
    }
    if (std::find(key_tags->begin(), key_tags->end(), s.key_tags.front()) == key_tags->end())
      key_tags->push_back(s.key_tags.front());
    out.verified.Append(rrset);
  }
  for (size_t i = 0; i < out.verified.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(out.verified.get(), i);
    if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_NSEC && ldns_rr_rd_count(rr) >= 1) out.nsecs.push_back(rr);
    if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_NSEC3 && ldns_rr_rd_count(rr) >= 5) out.nsec3s.push_back(rr);
  }
  return out;
}

// The NSEC3 chain a proof may use: one parameter set, that of the first
// record (others are ignored), and only records owned exactly one label
// (the hash) below `zone`. `unsupported` is set, and the chain empty, when
// that parameter set is one we do not process (a hash algorithm other than
// SHA-1, more than kMaxNsec3Iterations): the zone is then insecure.
struct Nsec3Chain {
  std::vector<const ldns_rr*> records;
  std::string unsupported;
};
Nsec3Chain SelectNsec3Chain(const std::vector<const ldns_rr*>& nsec3s, const ldns_rdf* zone) {
  Nsec3Chain chain;
  const ldns_rr* first = nsec3s.front();
  if (ldns_nsec3_algorithm(first) != 1) {
    chain.unsupported = "NSEC3 hash algorithm " + std::to_string(ldns_nsec3_algorithm(first)) + " not supported: insecure";
    return chain;
  }
  if (ldns_nsec3_iterations(first) > kMaxNsec3Iterations) {
    chain.unsupported = "NSEC3 with " + std::to_string(ldns_nsec3_iterations(first)) +
                        " iterations (more than 150, RFC 9276): insecure";
    return chain;
  }
  for (const ldns_rr* r : nsec3s) {
    if (ldns_nsec3_algorithm(r) != ldns_nsec3_algorithm(first) ||
        ldns_nsec3_iterations(r) != ldns_nsec3_iterations(first) ||
        ldns_rdf_compare(ldns_rr_rdf(r, 3), ldns_rr_rdf(first, 3)) != 0)
      continue;
    RdfPtr parent = Parent(ldns_rr_owner(r));
    if (!parent || !SameName(parent.get(), zone)) continue;
    chain.records.push_back(r);
  }
  return chain;
}

}  // namespace

namespace {

// One proof of denial of existence (RFC 4035 §5.4 with NSEC, RFC 5155 §8
// with NSEC3) from records whose signatures verified. Each step either
// settles the result (Valid or Fail) or leaves it to the next.
class DenialProof {
 public:
  DenialProof(const std::string& qname, const ldns_rdf* qn, uint16_t qtype, Denial what, const ldns_rdf* zone,
              const std::string& type_name, const DenialRecords& records, DenialResult d)
      : qname_(qname), qn_(qn), qtype_(qtype), what_(what), zone_(zone), type_name_(type_name), records_(records),
        d_(std::move(d)),
        claim_(what == Denial::kNoDs     ? "no DS at the delegation " + qname
               : what == Denial::kNoData ? "no " + type_name + " at " + qname
                                         : qname + " does not exist") {}

  DenialResult Prove(SigCheckOptions& o) {
    if (!records_.limit.empty()) return Fail("not proven that " + claim_);
    if (!records_.nsecs.empty()) return ProveWithNsec();
    if (records_.nsec3s.empty()) return Fail("no signed NSEC or NSEC3 records to prove " + claim_);
    return ProveWithNsec3(o);
  }

 private:
  DenialResult Fail(const std::string& why) {
    records_.MarkBogus(&d_, why);
    return d_;
  }
  DenialResult Valid(const std::string& how) {
    d_.status = SigStatus::kValid;
    d_.reason = claim_ + " (" + how + ")";
    return d_;
  }

  // The type bitmap of a record at the name itself, for NODATA and no-DS;
  // false (and the result bogus) when it does not deny.
  bool CheckBitmap(const ldns_rr* at, const std::string& where) {
    if (what_ == Denial::kNoDs) {
      if (HasType(at, LDNS_RR_TYPE_SOA)) { Fail(where + " is from the child zone (SOA), not the parent"); return false; }
      if (!HasType(at, LDNS_RR_TYPE_NS)) { Fail(where + ": " + qname_ + " is not a delegation (no NS)"); return false; }
      if (HasType(at, LDNS_RR_TYPE_DS)) { Fail(where + " lists a DS record"); return false; }
      return true;
    }
    if (qtype_ == LDNS_RR_TYPE_DS && HasType(at, LDNS_RR_TYPE_SOA)) {
      Fail(where + " is from the child zone (SOA): it cannot deny the parent's DS");
      return false;
    }
    if (HasType(at, static_cast<ldns_rr_type>(qtype_)) || HasType(at, LDNS_RR_TYPE_CNAME)) {
      Fail(where + " lists " + type_name_ + " or CNAME");
      return false;
    }
    // NS without SOA: the parent side of a delegation knows nothing of the child's data.
    if (qtype_ != LDNS_RR_TYPE_DS && HasType(at, LDNS_RR_TYPE_NS) && !HasType(at, LDNS_RR_TYPE_SOA)) {
      Fail(where + " is a delegation point: it cannot deny " + type_name_);
      return false;
    }
    return true;
  }

  // RFC 4035 §5.4 with NSEC records.
  DenialResult ProveWithNsec() {
    d_.method = "NSEC";
    const ldns_rr* at = nullptr;
    for (const ldns_rr* r : records_.nsecs)
      if (SameName(ldns_rr_owner(r), qn_)) at = r;
    if (what_ != Denial::kNxDomain && at) {
      if (!CheckBitmap(at, "NSEC at " + qname_)) return d_;
      return Valid("NSEC at " + qname_);
    }
    if (what_ == Denial::kNoDs) return Fail("no NSEC at " + qname_ + " to prove " + claim_);
    if (at) return Fail("NSEC at " + qname_ + ": the name exists");
    // The name is covered: find the closest encloser, then the wildcard.
    const ldns_rr* cover = nullptr;
    for (const ldns_rr* r : records_.nsecs)
      if (NsecCovers(r, qn_)) cover = r;
    if (!cover) return Fail("no NSEC covers " + qname_);
    const ldns_rdf* cover_owner = ldns_rr_owner(cover);
    // A covering NSEC whose next name lies below qname: qname is an empty
    // non-terminal. It exists (no NXDOMAIN) and has no data at all.
    if (ldns_dname_is_subdomain(ldns_rr_rdf(cover, 0), qn_)) {
      if (what_ == Denial::kNxDomain) return Fail(qname_ + " is an empty non-terminal: it exists");
      return Valid("NSEC " + NameText(cover_owner) + ": " + qname_ + " is an empty non-terminal");
    }
    if (ldns_dname_is_subdomain(qn_, cover_owner) &&
        ((HasType(cover, LDNS_RR_TYPE_NS) && !HasType(cover, LDNS_RR_TYPE_SOA)) || HasType(cover, LDNS_RR_TYPE_DNAME)))
      return Fail("the covering NSEC at " + NameText(cover_owner) + " is a delegation or DNAME above " + qname_);
    RdfPtr ce = Parent(qn_);
    while (ce && !SameName(ce.get(), zone_) &&
           !(AtOrBelow(cover_owner, ce.get()) || AtOrBelow(ldns_rr_rdf(cover, 0), ce.get())))
      ce = Parent(ce.get());
    if (!ce) return Fail("no closest encloser for " + qname_);
    return ProveNsecWildcard(cover_owner, ce.get());
  }

  // The wildcard at the closest encloser `ce`: absent for NXDOMAIN,
  // present without the type for NODATA (RFC 4035 §3.1.3.4).
  DenialResult ProveNsecWildcard(const ldns_rdf* cover_owner, const ldns_rdf* ce) {
    RdfPtr wc = Wildcard(ce);
    const ldns_rr* wc_at = nullptr;
    const ldns_rr* wc_cover = nullptr;
    for (const ldns_rr* r : records_.nsecs) {
      if (wc && SameName(ldns_rr_owner(r), wc.get())) wc_at = r;
      if (wc && NsecCovers(r, wc.get())) wc_cover = r;
    }
    if (what_ == Denial::kNxDomain) {
      if (wc_at) return Fail("the wildcard " + NameText(wc.get()) + " exists: " + qname_ + " would match it");
      if (!wc_cover)
        return Fail("no NSEC proves that " + (wc ? NameText(wc.get()) : std::string("*")) + " does not exist");
      return Valid("NSEC " + NameText(cover_owner) + " covers it, closest encloser " + NameText(ce) + ", no wildcard");
    }
    if (!wc_at) return Fail("no NSEC at " + qname_ + " or at the wildcard that would answer it");
    if (!CheckBitmap(wc_at, "NSEC at " + NameText(wc.get()))) return d_;
    d_.wildcard = true;
    return Valid("wildcard " + NameText(wc.get()) + " has no " + type_name_);
  }

  // RFC 5155 §8 with NSEC3 records of one chain.
  DenialResult ProveWithNsec3(SigCheckOptions& o) {
    d_.method = "NSEC3";
    Nsec3Chain chain = SelectNsec3Chain(records_.nsec3s, zone_);
    if (!chain.unsupported.empty()) {
      d_.status = SigStatus::kUnsupported;
      d_.reason = chain.unsupported;
      return d_;
    }
    Nsec3Set set(chain.records, o.budget);
    const ldns_rr* at = set.Match(qn_);
    if (what_ != Denial::kNxDomain && at) {
      if (!CheckBitmap(at, "NSEC3 matching " + qname_)) return d_;
      return Valid("NSEC3 matching " + qname_);
    }
    if (what_ == Denial::kNxDomain && at) return Fail("an NSEC3 matches " + qname_ + ": the name exists");
    // Closest encloser proof (RFC 5155 §8.3): the closest provable encloser
    // matches, the next closer name is covered.
    RdfPtr ce = Parent(qn_);
    RdfPtr next_closer(ldns_rdf_clone(qn_));
    while (ce && !set.Match(ce.get())) {
      if (SameName(ce.get(), zone_)) { ce.reset(); break; }
      next_closer.reset(ldns_rdf_clone(ce.get()));
      ce = Parent(ce.get());
    }
    if (!ce) return Fail("no NSEC3 proves a closest encloser of " + qname_);
    const ldns_rr* ce_rr = set.Match(ce.get());
    if (!SameName(ce.get(), zone_) &&
        ((HasType(ce_rr, LDNS_RR_TYPE_NS) && !HasType(ce_rr, LDNS_RR_TYPE_SOA)) || HasType(ce_rr, LDNS_RR_TYPE_DNAME)))
      return Fail("the closest encloser " + NameText(ce.get()) + " is a delegation or DNAME");
    const ldns_rr* nc_cover = set.Cover(next_closer.get());
    if (!nc_cover) return Fail("no NSEC3 covers the next closer name " + NameText(next_closer.get()));
    if (what_ == Denial::kNoDs || (what_ == Denial::kNoData && qtype_ == LDNS_RR_TYPE_DS)) {
      // RFC 5155 §8.6: no matching NSEC3 for a DS query; an opt-out span over
      // the next closer name says an unsigned delegation may be there.
      if (!ldns_nsec3_optout(nc_cover)) return Fail("no NSEC3 matches " + qname_ + " and the span is not opt-out");
      d_.opt_out = true;
      return Valid("NSEC3 opt-out span covers " + NameText(next_closer.get()) + ": insecure");
    }
    return ProveNsec3Wildcard(set, ce.get(), nc_cover);
  }

  // The wildcard at the closest encloser: covered for NXDOMAIN (RFC 5155
  // §8.4), matching without the type for NODATA (§8.7).
  DenialResult ProveNsec3Wildcard(Nsec3Set& set, const ldns_rdf* ce, const ldns_rr* nc_cover) {
    RdfPtr wc = Wildcard(ce);
    if (what_ == Denial::kNxDomain) {
      if (wc && set.Match(wc.get())) return Fail("the wildcard " + NameText(wc.get()) + " exists");
      if (!wc || !set.Cover(wc.get())) return Fail("no NSEC3 covers the wildcard at " + NameText(ce));
      d_.opt_out = ldns_nsec3_optout(nc_cover);
      return Valid("NSEC3: closest encloser " + NameText(ce) + ", next closer and wildcard covered" +
                   (d_.opt_out ? "; opt-out span: insecure" : ""));
    }
    const ldns_rr* wc_at = wc ? set.Match(wc.get()) : nullptr;
    if (!wc_at) return Fail("no NSEC3 matches " + qname_ + " or the wildcard that would answer it");
    if (!CheckBitmap(wc_at, "NSEC3 matching " + NameText(wc.get()))) return d_;
    d_.wildcard = true;
    return Valid("NSEC3: wildcard " + NameText(wc.get()) + " has no " + type_name_);
  }

  const std::string& qname_;
  const ldns_rdf* qn_;
  const uint16_t qtype_;
  const Denial what_;
  const ldns_rdf* zone_;
  const std::string type_name_;
  const DenialRecords& records_;
  DenialResult d_;
  const std::string claim_;
};

}  // namespace

static DenialResult VerifyDenialImpl(const std::string& qname, uint16_t qtype, Denial what, const RrList& auth,
                                     const RrList& keys, const SigCheckOptions& given) {
  ValidationBudget own;
  SigCheckOptions o = given;
  if (!o.budget) o.budget = &own;
  DenialResult d;
  d.status = SigStatus::kBogus;
  RdfPtr qn = NameRdf(qname);
  const ldns_rr* zone_key = nullptr;
  for (size_t i = 0; i < keys.size() && !zone_key; ++i)
    if (ldns_rr_get_type(ldns_rr_list_rr(keys.get(), i)) == LDNS_RR_TYPE_DNSKEY) zone_key = ldns_rr_list_rr(keys.get(), i);
  if (!qn || !zone_key) {
    d.reason = "no name or no zone keys";
    return d;
  }
  const ldns_rdf* zone = ldns_rr_owner(zone_key);
  if (!AtOrBelow(qn.get(), zone)) {
    d.reason = qname + " is not in the zone " + NameText(zone);
    return d;
  }
  if (what == Denial::kNoDs) qtype = LDNS_RR_TYPE_DS;
  MallocedChars tn(ldns_rr_type2str(static_cast<ldns_rr_type>(qtype)));
  const std::string type_name = tn ? tn.get() : "?";
  // Only NSEC/NSEC3 RRsets that verify with the zone's keys count.
  const DenialRecords records = CollectDenialRecords(auth, keys, o, &d.key_tags);
  DenialProof proof(qname, qn.get(), qtype, what, zone, type_name, records, std::move(d));
  return proof.Prove(o);
}

static DenialResult VerifyWildcardAnswerImpl(const std::string& qname, const std::string& wildcard_source,
                                             const RrList& auth, const RrList& keys, const SigCheckOptions& given) {
  ValidationBudget own;
  SigCheckOptions o = given;
  if (!o.budget) o.budget = &own;
  DenialResult d;
  d.status = SigStatus::kBogus;
  d.wildcard = true;
  RdfPtr qn = NameRdf(qname);
  RdfPtr source = NameRdf(wildcard_source);
  const ldns_rr* zone_key = nullptr;
  for (size_t i = 0; i < keys.size() && !zone_key; ++i)
    if (ldns_rr_get_type(ldns_rr_list_rr(keys.get(), i)) == LDNS_RR_TYPE_DNSKEY) zone_key = ldns_rr_list_rr(keys.get(), i);
  if (!qn || !source || !zone_key || ldns_dname_label_count(source.get()) == 0) {
    d.reason = "no name, wildcard or zone keys";
    return d;
  }
  const ldns_rdf* zone = ldns_rr_owner(zone_key);
  RdfPtr ce = Parent(source.get());
  if (!ce || !AtOrBelow(ce.get(), zone) || !ldns_dname_is_subdomain(qn.get(), ce.get())) {
    d.reason = qname + " is not below the closest encloser of " + wildcard_source + " in the zone " + NameText(zone);
    return d;
  }
  // The next closer name: one label more than the closest encloser, toward qname.
  RdfPtr next_closer(ldns_rdf_clone(qn.get()));
  while (next_closer && ldns_dname_label_count(next_closer.get()) > ldns_dname_label_count(ce.get()) + 1)
    next_closer = Parent(next_closer.get());
  if (!next_closer) {
    d.reason = "no next closer name";
    return d;
  }
  const DenialRecords records = CollectDenialRecords(auth, keys, o, &d.key_tags);
  const auto& nsecs = records.nsecs;
  const auto& nsec3s = records.nsec3s;
  auto fail = [&](const std::string& why) {
    records.MarkBogus(&d, why);
    return d;
  };
  const std::string claim = qname + " is answered by the wildcard " + wildcard_source;
  if (!records.limit.empty()) return fail("not proven that " + claim);
  if (!nsecs.empty()) {
    // RFC 4035 §5.3.4: an NSEC proves that no closer match exists: it must
    // cover qname and the next closer name (else a name between qname and
    // the wildcard's encloser exists and the wildcard could not apply).
    d.method = "NSEC";
    for (const ldns_rr* r : nsecs) {
      if (!NsecCovers(r, qn.get()) || !(SameName(next_closer.get(), qn.get()) || NsecCovers(r, next_closer.get())))
        continue;
      if (ldns_dname_is_subdomain(ldns_rr_rdf(r, 0), qn.get())) continue;  // qname is an empty non-terminal
      d.status = SigStatus::kValid;
      d.reason = claim + " (NSEC " + NameText(ldns_rr_owner(r)) + " covers " + qname + ")";
      return d;
    }
    return fail("no NSEC proves that " + qname + " and " + NameText(next_closer.get()) + " do not exist");
  }
  if (nsec3s.empty()) return fail("no signed NSEC or NSEC3 records to prove that " + claim);
  d.method = "NSEC3";
  Nsec3Chain chain = SelectNsec3Chain(nsec3s, zone);
  if (!chain.unsupported.empty()) {
    d.status = SigStatus::kUnsupported;
    d.reason = chain.unsupported;
    return d;
  }
  Nsec3Set set(chain.records, o.budget);
  // RFC 5155 §8.8: the next closer name must be covered.
  const ldns_rr* cover = set.Cover(next_closer.get());
  if (!cover) return fail("no NSEC3 covers the next closer name " + NameText(next_closer.get()));
  d.status = SigStatus::kValid;
  d.opt_out = ldns_nsec3_optout(cover);
  d.reason = claim + " (NSEC3 covers the next closer name " + NameText(next_closer.get()) +
             (d.opt_out ? "; opt-out span: insecure" : "") + ")";
  return d;
}

DenialResult VerifyDenial(const std::string& qname, uint16_t qtype, Denial what, const RrList& auth,
                          const RrList& keys, const SigCheckOptions& o) {
  DenialResult d = VerifyDenialImpl(qname, qtype, what, auth, keys, o);
  d.reason = Clip(std::move(d.reason), kMaxReasonLength);
  return d;
}

DenialResult VerifyWildcardAnswer(const std::string& qname, const std::string& wildcard_source, const RrList& auth,
                                  const RrList& keys, const SigCheckOptions& o) {
  DenialResult d = VerifyWildcardAnswerImpl(qname, wildcard_source, auth, keys, o);
  d.reason = Clip(std::move(d.reason), kMaxReasonLength);
  return d;
}

}  // namespace mxsec
