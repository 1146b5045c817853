// dns_validator.cc - libFuzzer target: DNS replies in wire form through the
// local validating resolver (local_validator.h) behind a fake transport.
//
// The world: a trust anchor (DS of the key of "test"), the signed zone
// test. delegating sec.test (signed, DS) and ins.test (unsigned, proven by
// an NSEC without DS). The keys are fixed test keys below, so the seed
// corpus can hold genuine signed replies; the harness also signs genuine
// replies at start-up and the transport falls back to them for questions
// the input does not answer, so most mutations reach the signature checks
// and the secure paths instead of stopping at a missing DNSKEY set.
//
// Input: byte 0 chooses the question (one of kQuestions, or the question
// section of the first message); then messages, each a 2-byte big-endian
// length and a DNS reply in wire form. A query is answered by the first
// message whose question matches it (parsed as the real transport parses),
// else by the genuine reply, else it times out.
//
// Oracle: no crash or sanitizer report; each input runs under libFuzzer's
// -timeout (tools/fuzz.sh); and every record of an answer the validator
// calls secure is covered by a signature the harness checks again on its
// own: in some reply the validator was given there is an RRSIG over the
// record's RRset, by the zone that holds the name in this world (sec.test
// or test; nothing under ins.test can be secure), that verifies with that
// zone's genuine key under ldns_verify_rrsig_time (not the validator's own
// code path), and the RRset it covers holds that record. Each CNAME hop of
// a secure chain is checked the same way (or through a DNAME it is the
// substitution of); a secure NODATA or NXDOMAIN needs an NSEC/NSEC3 record
// of the zone that verifies the same way. The fuzzer cannot make signatures, so a secure answer
// that fails this check is a validator that accepted unsigned or
// wrongly-signed data.
//
// Seeds: run with MXSEC_FUZZ_WRITE_SEEDS=DIR to write one seed per question
// (all genuine replies) to DIR (tests/fuzz/corpus/dns_validator/).
#include <cctype>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mxsec/dns/dns.h"
#include "mxsec/dns/dnssec.h"
#include "mxsec/dns/local_validator.h"

// Last: ldns's headers define bool and false as macros for C.
#include <ldns/ldns.h>

using namespace mxsec;

namespace {

constexpr int64_t kNow = 1764748800;  // the fake clock; the signatures below span it

// Throwaway test keys (ECDSA P-256, made with ldns-keygen for this harness).
const char* kTestKey =
    "Private-key-format: v1.2\nAlgorithm: 13 (ECDSAP256SHA256)\n"
    "PrivateKey: h9rb+/Zo4tXNeGGaUfcgQtGZzGN10WQl6wbpcTCOVME=\n";
const char* kSecKey =
    "Private-key-format: v1.2\nAlgorithm: 13 (ECDSAP256SHA256)\n"
    "PrivateKey: L86A2o9ImOiYxNTvSOVBCKZ8/gu2s+dWF4UllO+B8pg=\n";

struct ZoneKey {
  ldns_key* key = nullptr;
  ldns_rr* dnskey = nullptr;
};

ZoneKey LoadKey(const char* text, const char* zone) {
  ZoneKey z;
  FILE* f = fmemopen(const_cast<char*>(text), strlen(text), "r");
  if (!f || ldns_key_new_frm_fp(&z.key, f) != LDNS_STATUS_OK) abort();
  fclose(f);
  ldns_key_set_pubkey_owner(z.key, ldns_dname_new_frm_str(zone));
  ldns_key_set_flags(z.key, 257);
  ldns_key_set_inception(z.key, static_cast<uint32_t>(kNow - 86400));
  ldns_key_set_expiration(z.key, static_cast<uint32_t>(kNow + 30 * 86400));
  z.dnskey = ldns_key2rr(z.key);
  if (!z.dnskey) abort();
  ldns_key_set_keytag(z.key, ldns_calc_keytag(z.dnskey));
  return z;
}

RrList Records(const std::string& text) {
  auto r = RrList::FromText(text, "dns_validator");
  if (!r.ok()) abort();
  return std::move(r.value());
}

RrList Join(const RrList& a, const RrList& b) {
  RrList out = a.Clone();
  out.Append(b);
  return out;
}

// Every RRset of `records` with its RRSIG by `k`.
RrList Signed(const RrList& records, const ZoneKey& k) {
  RrList out = records.Clone();
  std::vector<std::pair<std::string, ldns_rr_type>> done;
  for (size_t i = 0; i < records.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(records.get(), i);
    char* o = ldns_rdf2str(ldns_rr_owner(rr));
    std::string owner(o);
    free(o);
    owner.pop_back();
    std::pair<std::string, ldns_rr_type> id{owner, ldns_rr_get_type(rr)};
    bool seen = false;
    for (const auto& d : done) seen = seen || d == id;
    if (seen) continue;
    done.push_back(id);
    RrList set = records.Select(ldns_rr_get_type(rr), owner);
    ldns_key_list* kl = ldns_key_list_new();
    ldns_key_list_push_key(kl, k.key);
    ldns_rr_list* sigs = ldns_sign_public(set.get(), kl);
    ldns_key_list_set_key_count(kl, 0);  // the key stays ours
    ldns_key_list_free(kl);
    if (!sigs) abort();
    out.Append(RrList(sigs));
  }
  return out;
}

std::vector<uint8_t> Wire(const std::string& qname, ldns_rr_type qtype, const RrList& answer, const RrList& authority,
                          ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR) {
  ldns_pkt* p = ldns_pkt_new();
  ldns_pkt_set_id(p, 7);
  ldns_pkt_set_qr(p, true);
  ldns_pkt_set_rcode(p, rcode);
  ldns_rr* q = ldns_rr_new();
  ldns_rr_set_owner(q, ldns_dname_new_frm_str((qname + ".").c_str()));
  ldns_rr_set_type(q, qtype);
  ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
  ldns_rr_set_question(q, true);
  ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q);
  for (size_t i = 0; i < answer.size(); ++i)
    ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, ldns_rr_clone(ldns_rr_list_rr(answer.get(), i)));
  for (size_t i = 0; i < authority.size(); ++i)
    ldns_pkt_push_rr(p, LDNS_SECTION_AUTHORITY, ldns_rr_clone(ldns_rr_list_rr(authority.get(), i)));
  uint8_t* buf = nullptr;
  size_t len = 0;
  if (ldns_pkt2wire(&buf, p, &len) != LDNS_STATUS_OK) abort();
  std::vector<uint8_t> out(buf, buf + len);
  free(buf);
  ldns_pkt_free(p);
  return out;
}

struct World {
  ZoneKey test, sec;
  RrList anchors;
  std::map<std::pair<std::string, int>, std::vector<uint8_t>> genuine;  // (name, type) -> reply

  World() {
    test = LoadKey(kTestKey, "test.");
    sec = LoadKey(kSecKey, "sec.test.");
    ldns_rr* ds = ldns_key_rr2ds(test.dnskey, LDNS_SHA256);
    ldns_rr_list_push_rr(anchors.get(), ds);

    RrList keys_t, keys_s;
    ldns_rr_list_push_rr(keys_t.get(), ldns_rr_clone(test.dnskey));
    ldns_rr_list_push_rr(keys_s.get(), ldns_rr_clone(sec.dnskey));
    RrList ds_s;
    ldns_rr_list_push_rr(ds_s.get(), ldns_key_rr2ds(sec.dnskey, LDNS_SHA256));
    RrList soa_t = Records("test. 300 IN SOA ns.test. h.test. 1 7200 3600 1209600 300\n");
    RrList soa_s = Records("sec.test. 300 IN SOA ns.sec.test. h.sec.test. 1 7200 3600 1209600 300\n");
    RrList nsec_t = Records(
        "test. 300 IN NSEC ins.test. SOA NS RRSIG NSEC DNSKEY\n"
        "ins.test. 300 IN NSEC sec.test. NS\n"
        "sec.test. 300 IN NSEC test. NS DS RRSIG NSEC\n");
    RrList nsec_s = Records(
        "sec.test. 300 IN NSEC alias.sec.test. SOA NS MX TXT RRSIG NSEC DNSKEY\n"
        "alias.sec.test. 300 IN NSEC d.sec.test. CNAME RRSIG NSEC\n"
        "d.sec.test. 300 IN NSEC mx.sec.test. DNAME RRSIG NSEC\n"
        "mx.sec.test. 300 IN NSEC *.w.sec.test. A AAAA RRSIG NSEC\n"
        "*.w.sec.test. 300 IN NSEC sec.test. TLSA RRSIG NSEC\n");
    auto T = [](const char* t) { return Records(t); };
    auto set = [&](const std::string& n, ldns_rr_type t, const RrList& an, const RrList& au,
                   ldns_pkt_rcode rc = LDNS_RCODE_NOERROR) { genuine[{n, t}] = Wire(n, t, an, au, rc); };

    set("test", LDNS_RR_TYPE_DNSKEY, Signed(keys_t, test), RrList());
    set("sec.test", LDNS_RR_TYPE_DS, Signed(ds_s, test), RrList());
    set("sec.test", LDNS_RR_TYPE_DNSKEY, Signed(keys_s, sec), RrList());
    set("ins.test", LDNS_RR_TYPE_DS, RrList(), Signed(Join(soa_t, nsec_t.Select(0, "ins.test")), test));
    for (const char* n : {"mx.sec.test", "alias.sec.test", "d.sec.test"})
      set(n, LDNS_RR_TYPE_DS, RrList(), Signed(Join(soa_s, nsec_s.Select(0, n)), sec));
    RrList a = T("mx.sec.test. 300 IN A 192.0.2.1\nmx.sec.test. 300 IN A 192.0.2.2\n");
    set("mx.sec.test", LDNS_RR_TYPE_A, Signed(a, sec), RrList());
    set("mx.sec.test", LDNS_RR_TYPE_AAAA, Signed(T("mx.sec.test. 300 IN AAAA 2001:db8::25\n"), sec), RrList());
    set("sec.test", LDNS_RR_TYPE_MX, Signed(T("sec.test. 300 IN MX 10 mx.sec.test.\n"), sec), RrList());
    set("sec.test", LDNS_RR_TYPE_TXT, Signed(T("sec.test. 300 IN TXT \"v=STSv1; \" \"id=1\"\n"), sec), RrList());
    set("mx.sec.test", LDNS_RR_TYPE_TLSA, RrList(), Signed(Join(soa_s, nsec_s.Select(0, "mx.sec.test")), sec));
    RrList nx = nsec_s.Select(0, "mx.sec.test");
    nx.Append(nsec_s.Select(0, "sec.test"));
    set("nosuch.sec.test", LDNS_RR_TYPE_TLSA, RrList(), Signed(Join(soa_s, nx), sec), LDNS_RCODE_NXDOMAIN);
    // foo.w.sec.test from the wildcard *.w.sec.test, with its proof.
    RrList wild = T("*.w.sec.test. 300 IN TLSA 3 1 1 "
                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    RrList wsig = Signed(wild, sec).Select(LDNS_RR_TYPE_RRSIG);
    RrList expanded = T("foo.w.sec.test. 300 IN TLSA 3 1 1 "
                        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
    for (size_t i = 0; i < wsig.size(); ++i) {
      ldns_rr* rr = ldns_rr_list_rr(wsig.get(), i);
      ldns_rdf* old = ldns_rr_owner(rr);
      ldns_rr_set_owner(rr, ldns_dname_new_frm_str("foo.w.sec.test."));
      ldns_rdf_deep_free(old);
    }
    set("foo.w.sec.test", LDNS_RR_TYPE_TLSA, Join(expanded, wsig), Signed(nsec_s.Select(0, "*.w.sec.test"), sec));
    // A CNAME into the insecure zone, and a DNAME within the secure one.
    set("alias.sec.test", LDNS_RR_TYPE_A,
        Join(Signed(T("alias.sec.test. 300 IN CNAME mx.ins.test.\n"), sec), T("mx.ins.test. 300 IN A 192.0.2.9\n")),
        RrList());
    set("mx.ins.test", LDNS_RR_TYPE_A, T("mx.ins.test. 300 IN A 192.0.2.9\n"), RrList());
    set("mx.d.sec.test", LDNS_RR_TYPE_A,
        Join(Join(Signed(T("d.sec.test. 300 IN DNAME sec.test.\n"), sec),
                  T("mx.d.sec.test. 300 IN CNAME mx.sec.test.\n")),
             Signed(a, sec)),
        RrList());
  }
};

World& TheWorld() {
  static World* w = new World();
  return *w;
}

const DnsQuestion kQuestions[] = {
    {"mx.sec.test", RrType::kA},         {"mx.sec.test", RrType::kAAAA},     {"sec.test", RrType::kMX},
    {"sec.test", RrType::kTXT},          {"mx.sec.test", RrType::kTLSA},     {"nosuch.sec.test", RrType::kTLSA},
    {"foo.w.sec.test", RrType::kTLSA},   {"alias.sec.test", RrType::kA},     {"mx.ins.test", RrType::kA},
    {"mx.d.sec.test", RrType::kA},
};
constexpr size_t kQuestionCount = sizeof(kQuestions) / sizeof(kQuestions[0]);

std::string Normal(const ldns_rdf* d) {
  if (!d) return "";  // a record without that field (empty RDATA on the wire)
  char* s = ldns_rdf2str(d);
  std::string out = s ? s : "";
  free(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

struct Message {
  std::vector<uint8_t> wire;
  DnsQuestion q;
  bool has_q = false;
  uint16_t id = 0;
};

Message ReadMessage(const uint8_t* p, size_t n) {
  Message m;
  m.wire.assign(p, p + n);
  ldns_pkt* pkt = nullptr;
  if (ldns_wire2pkt(&pkt, p, n) == LDNS_STATUS_OK) {
    m.id = ldns_pkt_id(pkt);
    ldns_rr_list* qs = ldns_pkt_question(pkt);
    if (qs && ldns_rr_list_rr_count(qs) == 1) {
      const ldns_rr* q = ldns_rr_list_rr(qs, 0);
      m.q = {Normal(ldns_rr_owner(q)), static_cast<RrType>(ldns_rr_get_type(q))};
      m.has_q = true;
    }
    ldns_pkt_free(pkt);
  }
  return m;
}

// Answers from the input's messages, then from the genuine replies; keeps
// every response it handed out for the oracle.
class FakeTransport : public DnsTransport {
 public:
  explicit FakeTransport(std::vector<Message> messages) : messages_(std::move(messages)) {}
  std::vector<DnsResponse> QueryMany(const std::vector<DnsQuestion>& questions, bool) override {
    std::vector<DnsResponse> out;
    for (const auto& q : questions) {
      DnsResponse r;
      const std::vector<uint8_t>* wire = nullptr;
      uint16_t id = 7;
      for (const auto& m : messages_)
        if (m.has_q && m.q == q) {
          wire = &m.wire;
          id = m.id;
          break;
        }
      if (!wire) {
        auto it = TheWorld().genuine.find({q.name, static_cast<int>(q.type)});
        if (it != TheWorld().genuine.end()) wire = &it->second;
      }
      if (wire) {
        std::string mismatch;
        r = ParseDnsReply(wire->data(), wire->size(), q, id, &mismatch);
      } else {
        r.error = "timeout";
      }
      r.server = "fuzz";
      {
        std::lock_guard<std::mutex> l(mu_);
        served_.push_back(r);
      }
      out.push_back(std::move(r));
    }
    return out;
  }
  std::vector<DnsResponse> served() {
    std::lock_guard<std::mutex> l(mu_);
    return served_;
  }

 private:
  std::vector<Message> messages_;
  std::mutex mu_;
  std::vector<DnsResponse> served_;
};

// The zone that holds `name` in this world; "" where nothing is signed.
std::string ZoneOf(const std::string& name) {
  auto under = [&](const std::string& z) {
    return name == z || (name.size() > z.size() && name.compare(name.size() - z.size() - 1, z.size() + 1, "." + z) == 0);
  };
  if (under("ins.test")) return "";
  if (under("sec.test")) return "sec.test";
  if (under("test")) return "test";
  return "";
}

// Whether the wire record `rr` is the parsed record `rec`.
bool Same(const ldns_rr* rr, const DnsRecord& rec) {
  if (ldns_rr_get_type(rr) != static_cast<ldns_rr_type>(rec.type)) return false;
  if (Normal(ldns_rr_owner(rr)) != rec.owner) return false;
  switch (rec.type) {
    case RrType::kA:
    case RrType::kAAAA:
      return ldns_rr_rd_count(rr) == 1 && Normal(ldns_rr_rdf(rr, 0)) == rec.text;
    case RrType::kCNAME:
    case RrType::kDNAME:
      return ldns_rr_rd_count(rr) == 1 && Normal(ldns_rr_rdf(rr, 0)) == rec.text;
    case RrType::kMX:
      return ldns_rr_rd_count(rr) == 2 && ldns_rdf2native_int16(ldns_rr_rdf(rr, 0)) == rec.preference &&
             Normal(ldns_rr_rdf(rr, 1)) == rec.exchange;
    case RrType::kTLSA: {
      if (ldns_rr_rd_count(rr) != 4) return false;
      const ldns_rdf* d = ldns_rr_rdf(rr, 3);
      std::vector<uint8_t> data(ldns_rdf_data(d), ldns_rdf_data(d) + ldns_rdf_size(d));
      return ldns_rdf2native_int8(ldns_rr_rdf(rr, 0)) == rec.tlsa.usage &&
             ldns_rdf2native_int8(ldns_rr_rdf(rr, 1)) == rec.tlsa.selector &&
             ldns_rdf2native_int8(ldns_rr_rdf(rr, 2)) == rec.tlsa.matching && data == rec.tlsa.data;
    }
    case RrType::kTXT: {
      std::string text;
      for (size_t i = 0; i < ldns_rr_rd_count(rr); ++i) {
        const ldns_rdf* d = ldns_rr_rdf(rr, i);
        if (ldns_rdf_size(d) < 1) return false;
        text.append(reinterpret_cast<const char*>(ldns_rdf_data(d)) + 1, ldns_rdf_size(d) - 1);
      }
      return text == rec.text;
    }
    default:
      return true;  // other types: owner and type only
  }
}

// Some reply handed to the validator holds an RRSIG by the zone of
// `owner`, over the RRset (owner, type), verified with the zone's genuine
// key by ldns, and `match` accepts a record of that RRset.
template <typename Match>
bool Covered(const std::vector<DnsResponse>& served, const std::string& owner, RrType type, Match match) {
  const std::string zone = ZoneOf(owner);
  if (zone.empty()) return false;
  const ldns_rr* key = zone == "sec.test" ? TheWorld().sec.dnskey : TheWorld().test.dnskey;
  for (const auto& r : served) {
    for (const auto* section : {r.answer_rrs.get(), r.authority_rrs.get()}) {
      if (!section) continue;
      RrList rrset = section->Select(static_cast<uint16_t>(type), owner);
      bool has = false;
      for (size_t i = 0; i < rrset.size() && !has; ++i) has = match(ldns_rr_list_rr(rrset.get(), i));
      if (!has) continue;
      RrList sigs = section->Select(LDNS_RR_TYPE_RRSIG, owner);
      for (size_t i = 0; i < sigs.size(); ++i) {
        ldns_rr* sig = ldns_rr_list_rr(sigs.get(), i);
        if (ldns_rr_rd_count(sig) < 9) continue;
        if (ldns_rdf2rr_type(ldns_rr_rrsig_typecovered(sig)) != static_cast<ldns_rr_type>(type)) continue;
        if (Normal(ldns_rr_rrsig_signame(sig)) != zone) continue;
        RrList copy = rrset.Clone();
        if (ldns_verify_rrsig_time(copy.get(), sig, const_cast<ldns_rr*>(key), static_cast<time_t>(kNow)) ==
            LDNS_STATUS_OK)
          return true;
      }
    }
  }
  return false;
}

[[noreturn]] void Fail(const DnsAnswer& a, const std::string& what) {
  fprintf(stderr, "dns_validator oracle: secure answer for %s %s: %s\n", a.question.name.c_str(),
          RrTypeName(a.question.type).c_str(), what.c_str());
  for (const auto& v : a.validation) fprintf(stderr, "  %s\n", v.c_str());
  abort();
}

void CheckSecure(const DnsAnswer& a, const std::vector<DnsResponse>& served) {
  if (a.dnssec != DnssecStatus::kSecure) return;
  // Each hop of the chain: a verified CNAME, or a verified DNAME whose substitution it is.
  std::string name = a.question.name;
  for (const std::string& next : a.chain) {
    bool ok = Covered(served, name, RrType::kCNAME,
                      [&](const ldns_rr* rr) { return Normal(ldns_rr_rdf(rr, 0)) == next; });
    for (size_t dot = name.find('.'); !ok && dot != std::string::npos; dot = name.find('.', dot + 1)) {
      const std::string owner = name.substr(dot + 1);
      ok = Covered(served, owner, RrType::kDNAME, [&](const ldns_rr* rr) {
        auto sub = DnameSubstitute(name, owner, Normal(ldns_rr_rdf(rr, 0)));
        return sub.ok() && sub.value() == next;
      });
    }
    if (!ok) Fail(a, "hop " + name + " -> " + next + " is not covered by a verified signature");
    name = next;
  }
  if (a.outcome == DnsOutcome::kNoData || a.outcome == DnsOutcome::kNxDomain) {
    // A secure denial rests on NSEC or NSEC3 records of the zone that verify.
    bool proof = false;
    for (const auto& r : served) {
      if (!r.authority_rrs) continue;
      for (size_t i = 0; i < r.authority_rrs->size() && !proof; ++i) {
        const ldns_rr* rr = ldns_rr_list_rr(r.authority_rrs->get(), i);
        const ldns_rr_type t = ldns_rr_get_type(rr);
        if (t != LDNS_RR_TYPE_NSEC && t != LDNS_RR_TYPE_NSEC3) continue;
        const std::string owner = Normal(ldns_rr_owner(rr));
        proof = ZoneOf(owner) == ZoneOf(a.final_name) &&
                Covered(served, owner, static_cast<RrType>(t), [](const ldns_rr*) { return true; });
      }
    }
    if (!proof) Fail(a, std::string(DnsOutcomeName(a.outcome)) + " without a verified NSEC/NSEC3 record of the zone");
    return;
  }
  if (a.outcome != DnsOutcome::kRecords) return;
  for (const DnsRecord& rec : a.records) {
    if (!Covered(served, rec.owner, rec.type, [&](const ldns_rr* rr) { return Same(rr, rec); }))
      Fail(a, "record " + rec.owner + " " + RrTypeName(rec.type) + " \"" + rec.text +
                  "\" is not covered by a verified signature");
  }
}

void WriteSeeds(const char* dir) {
  World& w = TheWorld();
  for (size_t i = 0; i < kQuestionCount; ++i) {
    std::string seed(1, static_cast<char>(i));
    for (const auto& [k, wire] : w.genuine) {
      seed.push_back(static_cast<char>(wire.size() >> 8));
      seed.push_back(static_cast<char>(wire.size() & 0xff));
      seed.append(wire.begin(), wire.end());
    }
    std::ofstream(std::string(dir) + "/q" + std::to_string(i), std::ios::binary) << seed;
  }
  // One that takes its question from the first message: the MX reply.
  const auto& mx = w.genuine.at({"sec.test", static_cast<int>(LDNS_RR_TYPE_MX)});
  std::string seed(1, static_cast<char>(kQuestionCount));
  seed.push_back(static_cast<char>(mx.size() >> 8));
  seed.push_back(static_cast<char>(mx.size() & 0xff));
  seed.append(mx.begin(), mx.end());
  std::ofstream(std::string(dir) + "/from-message", std::ios::binary) << seed;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  TheWorld();
  if (const char* dir = getenv("MXSEC_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<Message> messages;
  for (size_t p = 1; p + 2 <= size;) {
    size_t n = (static_cast<size_t>(data[p]) << 8) | data[p + 1];
    p += 2;
    n = std::min(n, size - p);
    messages.push_back(ReadMessage(data + p, n));
    p += n;
  }
  DnsQuestion q;
  size_t pick = data[0] % (kQuestionCount + 1);
  if (pick < kQuestionCount) {
    q = kQuestions[pick];
  } else {
    if (messages.empty() || !messages[0].has_q) return 0;
    q = messages[0].q;
  }
  FakeTransport transport(std::move(messages));
  LocalValidatorOptions o;
  o.description = "fuzz";
  o.now = [] { return kNow; };
  auto resolver = NewLocalValidatingResolver(&transport, TheWorld().anchors.Clone(), o);
  DnsAnswer a = resolver->Lookup(q);
  static const bool verbose = getenv("MXSEC_FUZZ_VERBOSE") != nullptr;
  if (verbose)
    fprintf(stderr, "%s %s: %s %s %s\n", q.name.c_str(), RrTypeName(q.type).c_str(), DnsOutcomeName(a.outcome),
            DnssecStatusName(a.dnssec), a.reason.c_str());
  if (verbose)  // the oracle's own view of each record, whatever the status
    for (const DnsRecord& rec : a.records)
      fprintf(stderr, "  %s %s covered: %d\n", rec.owner.c_str(), RrTypeName(rec.type).c_str(),
              Covered(transport.served(), rec.owner, rec.type, [&](const ldns_rr* rr) { return Same(rr, rec); }));
  CheckSecure(a, transport.served());
  return 0;
}
