// local_validator.cc - in-process DNSSEC validation (see local_validator.h).
//
// Conservative by construction: every path that cannot prove "secure" or
// "insecure" ends in bogus (something did not verify) or indeterminate
// (the data could not be fetched). Facts are cached only once proven;
// failures are never cached, so a transient outage is asked again.
// C++ headers first: ldns/common.h redefines false/true as macros.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mxsec/dns/local_validator.h"
#include "ldns_ptr.h"  // the owners of ldns objects

#include <ldns/ldns.h>

namespace mxsec {
namespace {

// Normal form of an ldns name: lowercase, no trailing dot, "" for the root.
std::string NormalName(const ldns_rdf* rdf) {
  MallocedChars s(ldns_rdf2str(rdf));
  std::string n = s ? s.get() : "";
  if (!n.empty() && n.back() == '.') n.pop_back();
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(tolower(c)); });
  return n;
}

// RrList::Select takes "." for the root ("" would mean any owner).
std::string Sel(const std::string& n) { return n.empty() ? "." : n; }
std::string Shown(const std::string& n) { return n.empty() ? "." : n; }

bool AtOrBelow(const std::string& name, const std::string& zone) {
  if (zone.empty()) return true;
  return name == zone || (name.size() > zone.size() && name.compare(name.size() - zone.size(), zone.size(), zone) == 0 &&
                          name[name.size() - zone.size() - 1] == '.');
}

// The names from just below `zone` down to `name` (inclusive), top first.
std::vector<std::string> PathBelow(const std::string& name, const std::string& zone) {
  std::vector<std::string> out;
  std::string n = name;
  while (n != zone && !n.empty()) {
    out.push_back(n);
    size_t dot = n.find('.');
    n = dot == std::string::npos ? "" : n.substr(dot + 1);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string Tags(const std::vector<uint16_t>& tags) {
  std::string out;
  for (uint16_t t : tags) out += (out.empty() ? "" : ",") + std::to_string(t);
  return out.empty() ? "-" : out;
}

// The signer of the first RRSIG at `owner` covering `type`, "" when none
// ("." stays distinguishable: the root signer is returned as ".").
std::string SignerOf(const RrList& list, const std::string& owner, uint16_t type) {
  RrList sigs = list.Select(LDNS_RR_TYPE_RRSIG, Sel(owner));
  for (size_t i = 0; i < sigs.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(sigs.get(), i);
    const ldns_rdf* covered = ldns_rr_rrsig_typecovered(rr);
    const ldns_rdf* signer = ldns_rr_rrsig_signame(rr);
    if (!covered || !signer || ldns_rdf2rr_type(covered) != type) continue;
    return Shown(NormalName(signer));
  }
  return "";
}

// The signer of the denial records (NSEC, NSEC3, else SOA) of an authority section.
std::string DenialSigner(const RrList& auth) {
  for (uint16_t t : {LDNS_RR_TYPE_NSEC, LDNS_RR_TYPE_NSEC3, LDNS_RR_TYPE_SOA}) {
    for (size_t i = 0; i < auth.size(); ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(auth.get(), i);
      if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_RRSIG) continue;
      const ldns_rdf* covered = ldns_rr_rrsig_typecovered(rr);
      const ldns_rdf* signer = ldns_rr_rrsig_signame(rr);
      if (covered && signer && ldns_rdf2rr_type(covered) == t) return Shown(NormalName(signer));
    }
  }
  return "";
}

// The smallest TTL of the records of `list` (0 when empty): how long a
// denial made of them may be reused.
uint32_t MinTtl(const RrList& list) {
  uint32_t ttl = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    uint32_t t = ldns_rr_ttl(ldns_rr_list_rr(list.get(), i));
    if (i == 0 || t < ttl) ttl = t;
  }
  return ttl;
}

// A section of a parsed response; an unparsed (null) one is empty.
const RrList& Section(const std::shared_ptr<const RrList>& list) {
  static const RrList kEmpty;
  return list ? *list : kEmpty;
}

// What a DS query at a name below a secure zone proved.
enum class CutKind { kSecureZone, kInsecure, kNotCut, kNoName };

struct CutFact {
  CutKind kind = CutKind::kNotCut;
  std::shared_ptr<const RrList> keys;  // kSecureZone: the zone's authenticated DNSKEY set
  std::string note;                    // for the provenance: "DS 123 -> DNSKEY 123", "no DS (NSEC3 opt-out)"
  int64_t expires = 0;
};

// Result of a step that may fail: status kSecure means `fact` holds.
struct Step {
  DnssecStatus status = DnssecStatus::kSecure;
  std::string reason;
  CutFact fact;
};

// The zone that holds a name, as far as the walk from the anchor proved it.
struct ZoneWalk {
  DnssecStatus status = DnssecStatus::kIndeterminate;  // secure: `zone` and `keys` are authenticated
  std::string zone;                                    // normal form, "" = root
  std::shared_ptr<const RrList> keys;
  std::string reason;                                  // insecure/bogus/indeterminate: why
  std::vector<std::string> path;                       // "test: anchor DS -> DNSKEY 123", ...
};

struct HopResult {
  DnssecStatus status = DnssecStatus::kIndeterminate;
  std::string note;
  uint32_t ttl_limit = 0;  // secure RRsets: min(original TTL, seconds to signature expiry)
  bool wildcard = false;   // the RRset verified as a wildcard expansion
  // The RRset the status is about, exactly as it was verified (or found
  // unsigned): what the answer returns, never another copy of the reply.
  std::vector<DnsRecord> records;
};

// The budget of the lookup this thread is validating: every check of
// that lookup, down to the chain walk and the facts it establishes, counts
// against it, without each step of the walk passing it along.
thread_local ValidationBudget* t_lookup_budget = nullptr;

// Makes `budget` the current lookup's for the scope's lifetime.
class LookupBudgetScope {
 public:
  explicit LookupBudgetScope(ValidationBudget* budget) : previous_(t_lookup_budget) { t_lookup_budget = budget; }
  ~LookupBudgetScope() { t_lookup_budget = previous_; }
  LookupBudgetScope(const LookupBudgetScope&) = delete;
  LookupBudgetScope& operator=(const LookupBudgetScope&) = delete;

 private:
  ValidationBudget* previous_;
};

// The target of a CNAME or DNAME RRset that holds exactly one record, or
// nullopt: a chain is followed only through the record that was verified.
std::optional<std::string> SingleTarget(const std::vector<DnsRecord>& rrset) {
  if (rrset.size() != 1) return std::nullopt;
  return rrset.front().text;
}

class LocalValidatingResolver : public Resolver {
 public:
  LocalValidatingResolver(DnsTransport* transport, RrList anchors, LocalValidatorOptions options)
      : transport_(transport),
        anchors_(std::move(anchors)),
        options_(std::move(options)),
        verified_(options_.verified_entries) {
    for (size_t i = 0; i < anchors_.size(); ++i) {
      std::string owner = NormalName(ldns_rr_owner(ldns_rr_list_rr(anchors_.get(), i)));
      if (std::find(anchor_zones_.begin(), anchor_zones_.end(), owner) == anchor_zones_.end())
        anchor_zones_.push_back(owner);
    }
  }

  std::vector<DnsAnswer> LookupMany(const std::vector<DnsQuestion>& questions) override {
    std::vector<DnsResponse> responses = transport_->QueryMany(questions, true);
    std::vector<DnsAnswer> out;
    out.reserve(questions.size());
    for (size_t i = 0; i < questions.size(); ++i) {
      ValidationBudget budget;
      {
        LookupBudgetScope scope(&budget);
        out.push_back(Validate(questions[i], responses[i]));
      }
      if (options_.on_lookup_work) options_.on_lookup_work(budget);
    }
    return out;
  }

  bool dnssec_trusted() const override { return true; }
  std::string dnssec_untrusted_reason() const override { return ""; }
  std::string describe() const override { return options_.description; }
  std::string dnssec_mode() const override { return "local"; }

 private:
  int64_t Now() const {
    if (options_.now) return options_.now();
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  SigCheckOptions Opts() {
    SigCheckOptions o = DefaultSigCheckOptions(Now());
    o.verified = &verified_;
    o.budget = t_lookup_budget;
    return o;
  }

  // One question with DO+CD; false (and `err`) when nothing usable came back.
  bool Fetch(const DnsQuestion& q, DnsResponse* r, std::string* err) {
    *r = transport_->QueryMany({q}, true).front();
    const std::string what = RrTypeName(q.type) + " " + Shown(q.name);
    if (!r->answered) {
      *err = what + ": " + (r->error.empty() ? "no answer" : r->error);
      return false;
    }
    if (r->rcode != DnsRcode::kNoError && r->rcode != DnsRcode::kNxDomain) {
      *err = what + ": rcode " + std::to_string(r->rcode_value) + (r->server.empty() ? "" : " from " + r->server);
      return false;
    }
    return true;
  }

  // Keeps a proven fact for min(ttl, cache_seconds); a TTL of 0 is not kept.
  void Remember(const std::string& name, CutFact fact, uint32_t ttl) {
    int64_t life = std::min<int64_t>(options_.cache_seconds, ttl);
    if (life <= 0) return;
    fact.expires = Now() + life;
    std::lock_guard<std::mutex> l(mu_);
    if (cache_.size() >= options_.cache_entries) cache_.clear();
    cache_[name] = std::move(fact);
  }

  // Runs `establish` for the fact `key` unless it is cached, with at most
  // one thread establishing a given fact at a time: lookups running side
  // by side (ResolveMany, serve) that miss the cache for the same zone
  // wait for the first one and take its cached result, instead of asking
  // the same DS/DNSKEY questions again. A fact that could not be
  // established is not cached, so a waiter then tries for itself.
  Step Once(const std::string& key, const std::function<Step()>& establish) {
    {
      std::unique_lock<std::mutex> l(mu_);
      fetched_.wait(l, [&] { return !in_flight_.count(key); });
      auto it = cache_.find(key);
      if (it != cache_.end() && it->second.expires > Now()) {
        Step s;
        s.fact = it->second;
        return s;
      }
      in_flight_.insert(key);
    }
    struct Done {
      LocalValidatingResolver* self;
      const std::string& key;
      ~Done() {
        {
          std::lock_guard<std::mutex> l(self->mu_);
          self->in_flight_.erase(key);
        }
        self->fetched_.notify_all();
      }
    } done{this, key};
    return establish();
  }

  Step AnchorZone(const std::string& zone) {
    return Once(" anchor " + zone, [&] { return EstablishAnchorZone(zone); });
  }

  Step Cut(const std::string& name, const RrList& keys) {
    return Once(name, [&] { return EstablishCut(name, keys); });
  }

  // The DNSKEY set of an anchored zone, authenticated by the anchors.
  Step EstablishAnchorZone(const std::string& zone) {
    Step s;
    DnsResponse r;
    std::string err;
    if (!Fetch({zone, RrType::kDNSKEY}, &r, &err)) {
      s.status = DnssecStatus::kIndeterminate;
      s.reason = err;
      return s;
    }
    const RrList& ans = Section(r.answer_rrs);
    RrList keys = ans.Select(LDNS_RR_TYPE_DNSKEY, Sel(zone));
    SigResult v = VerifyDnskeys(keys, ans, anchors_.Select(0, Sel(zone)), Opts());
    if (v.status == SigStatus::kValid) {
      s.fact.kind = CutKind::kSecureZone;
      s.fact.keys = std::make_shared<const RrList>(std::move(keys));
      s.fact.note = "trust anchor -> DNSKEY " + Tags(v.key_tags);
      Remember(" anchor " + zone, s.fact, v.ttl_limit);
    } else if (v.status == SigStatus::kUnsupported) {
      s.fact.kind = CutKind::kInsecure;
      s.fact.note = "trust anchor unusable: " + v.reason;
      Remember(" anchor " + zone, s.fact, MinTtl(ans));
    } else {
      s.status = DnssecStatus::kBogus;
      s.reason = "DNSKEY set of " + Shown(zone) + " does not match the trust anchor: " + v.reason;
    }
    return s;
  }

  // What the parent zone (`keys`) says about `name` in reply to DS.
  Step EstablishCut(const std::string& name, const RrList& keys) {
    Step s;
    DnsResponse r;
    std::string err;
    const SigCheckOptions o = Opts();
    if (!Fetch({name, RrType::kDS}, &r, &err)) {
      s.status = DnssecStatus::kIndeterminate;
      s.reason = err;
      return s;
    }
    const RrList& ans = Section(r.answer_rrs);
    const RrList& auth = Section(r.authority_rrs);
    auto bogus = [&](const std::string& why) {
      s.status = DnssecStatus::kBogus;
      s.reason = why;
      return s;
    };
    RrList ds = ans.Select(LDNS_RR_TYPE_DS, name);
    if (!ds.empty()) {
      SigResult v = VerifyRrset(ds, ans, keys, o);
      if (v.status != SigStatus::kValid) return bogus("DS of " + name + ": " + v.reason);
      DnsResponse kr;
      if (!Fetch({name, RrType::kDNSKEY}, &kr, &err)) {
        s.status = DnssecStatus::kIndeterminate;
        s.reason = err;
        return s;
      }
      const RrList& kans = Section(kr.answer_rrs);
      RrList child = kans.Select(LDNS_RR_TYPE_DNSKEY, name);
      SigResult k = VerifyDnskeys(child, kans, ds, o);
      if (k.status == SigStatus::kBogus) return bogus("DNSKEY set of " + name + ": " + k.reason);
      if (k.status == SigStatus::kUnsupported) {
        s.fact.kind = CutKind::kInsecure;
        s.fact.note = "DS " + Tags(v.key_tags) + " signed; " + k.reason + ": insecure";
        Remember(name, s.fact, v.ttl_limit);
        return s;
      }
      s.fact.kind = CutKind::kSecureZone;
      s.fact.keys = std::make_shared<const RrList>(std::move(child));
      s.fact.note = "DS (signed by " + Tags(v.key_tags) + ") -> DNSKEY " + Tags(k.key_tags);
      Remember(name, s.fact, std::min(v.ttl_limit, k.ttl_limit));
      return s;
    }
    if (r.rcode == DnsRcode::kNxDomain) {
      DenialResult d = VerifyDenial(name, LDNS_RR_TYPE_DS, Denial::kNxDomain, auth, keys, o);
      if (d.status == SigStatus::kBogus) return bogus("NXDOMAIN for DS " + name + " not proven: " + d.reason);
      s.fact.kind = (d.status == SigStatus::kUnsupported || d.opt_out) ? CutKind::kInsecure : CutKind::kNoName;
      s.fact.note = d.reason;
      Remember(name, s.fact, MinTtl(auth));
      return s;
    }
    RrList cname = ans.Select(LDNS_RR_TYPE_CNAME, name);
    if (!cname.empty()) {
      // A CNAME owner cannot be a zone cut (no NS beside it).
      SigResult v = VerifyRrset(cname, ans, keys, o);
      if (v.status != SigStatus::kValid || v.wildcard)
        return bogus("CNAME at " + name + " (in reply to DS): " + (v.wildcard ? "wildcard expansion" : v.reason));
      s.fact.kind = CutKind::kNotCut;
      s.fact.note = "CNAME, not a zone cut";
      Remember(name, s.fact, v.ttl_limit);
      return s;
    }
    DenialResult nods = VerifyDenial(name, LDNS_RR_TYPE_DS, Denial::kNoDs, auth, keys, o);
    if (nods.status != SigStatus::kBogus) {
      s.fact.kind = CutKind::kInsecure;
      s.fact.note = "insecure delegation: " + nods.reason;
      Remember(name, s.fact, MinTtl(auth));
      return s;
    }
    DenialResult nodata = VerifyDenial(name, LDNS_RR_TYPE_DS, Denial::kNoData, auth, keys, o);
    if (nodata.status == SigStatus::kBogus)
      return bogus("no DS at " + name + " and no proof of it: " + nods.reason + "; " + nodata.reason);
    if (nodata.status == SigStatus::kUnsupported || nodata.opt_out) {
      s.fact.kind = CutKind::kInsecure;
      s.fact.note = "possibly an unsigned delegation: " + nodata.reason;
    } else {
      s.fact.kind = CutKind::kNotCut;
      s.fact.note = "not a zone cut";
    }
    Remember(name, s.fact, MinTtl(auth));
    return s;
  }

  // Walks from the trust anchor down to `name` (inclusive) and returns the
  // deepest zone proven secure at or above it, or why there is none.
  ZoneWalk Walk(const std::string& name) {
    ZoneWalk w;
    std::string anchor;
    bool found = false;
    for (const std::string& z : anchor_zones_) {
      if (AtOrBelow(name, z) && (!found || z.size() > anchor.size())) {
        anchor = z;
        found = true;
      }
    }
    if (!found) {
      w.status = DnssecStatus::kInsecure;
      w.reason = "no trust anchor covers " + Shown(name);
      return w;
    }
    Step s = AnchorZone(anchor);
    if (s.status != DnssecStatus::kSecure) {
      w.status = s.status;
      w.reason = s.reason;
      return w;
    }
    w.path.push_back(Shown(anchor) + ": " + s.fact.note);
    if (s.fact.kind == CutKind::kInsecure) {
      w.status = DnssecStatus::kInsecure;
      w.reason = s.fact.note;
      return w;
    }
    w.zone = anchor;
    w.keys = s.fact.keys;
    for (const std::string& c : PathBelow(name, anchor)) {
      Step cut = Cut(c, *w.keys);
      if (cut.status != DnssecStatus::kSecure) {
        w.status = cut.status;
        w.reason = cut.reason;
        return w;
      }
      if (cut.fact.kind == CutKind::kNotCut) continue;
      w.path.push_back(c + ": " + cut.fact.note);
      if (cut.fact.kind == CutKind::kInsecure) {
        w.status = DnssecStatus::kInsecure;
        w.reason = c + ": " + cut.fact.note;
        return w;
      }
      if (cut.fact.kind == CutKind::kNoName) break;  // nothing below exists; the zone above answers for it
      w.zone = c;
      w.keys = cut.fact.keys;
    }
    w.status = DnssecStatus::kSecure;
    return w;
  }

  static std::string PathText(const ZoneWalk& w) {
    std::string out;
    for (const auto& p : w.path) out += (out.empty() ? "" : "; ") + p;
    return out;
  }

  // The zone `signer` (normal form; "." for the root), proven secure, or why not.
  ZoneWalk SignerZone(const std::string& signer, const std::string& owner, HopResult* h) {
    const std::string s = signer == "." ? "" : signer;
    if (!AtOrBelow(owner, s)) {
      h->status = DnssecStatus::kBogus;
      h->note = "signer " + signer + " does not enclose " + Shown(owner);
      return {};
    }
    ZoneWalk w = Walk(s);
    if (w.status == DnssecStatus::kSecure && w.zone != s) {
      h->status = DnssecStatus::kBogus;
      h->note = "signer " + signer + " is not a secure zone (" + PathText(w) + ")";
      w.status = DnssecStatus::kBogus;
      return w;
    }
    if (w.status != DnssecStatus::kSecure) {
      h->status = w.status;
      h->note = w.reason;
    }
    return w;
  }

  // An RRset without signatures: insecure if a delegation above it is
  // proven insecure, bogus if it sits in a secure zone.
  HopResult Unsigned(const std::string& owner, const std::string& what) {
    HopResult h;
    ZoneWalk w = Walk(owner);
    h.status = w.status == DnssecStatus::kSecure ? DnssecStatus::kBogus : w.status;
    h.note = w.status == DnssecStatus::kSecure
                 ? what + ": no signature in the secure zone " + Shown(w.zone) + " (" + PathText(w) + ")"
                 : what + ": " + w.reason + (w.path.empty() ? "" : " (" + PathText(w) + ")");
    return h;
  }

  // The RRset of `type` at `owner` in `ans`, with its status; the hop
  // carries that RRset as its records.
  HopResult CheckRrset(const std::string& owner, RrType type, const RrList& ans, const RrList& auth) {
    RrList rrset = ans.Select(static_cast<uint16_t>(type), Sel(owner));
    HopResult h = CheckSelectedRrset(owner, type, rrset, ans, auth);
    h.records = DnsRecordsOf(rrset);
    return h;
  }

  HopResult CheckSelectedRrset(const std::string& owner, RrType type, const RrList& rrset, const RrList& ans,
                               const RrList& auth) {
    const std::string what = RrTypeName(type) + " " + Shown(owner);
    std::string signer = SignerOf(ans, owner, static_cast<uint16_t>(type));
    if (signer.empty()) return Unsigned(owner, what);
    HopResult h;
    ZoneWalk w = SignerZone(signer, owner, &h);
    if (w.status != DnssecStatus::kSecure) {
      h.note = what + ": " + h.note;
      return h;
    }
    const SigCheckOptions o = Opts();
    SigResult v = VerifyRrset(rrset, ans, *w.keys, o);
    if (v.status != SigStatus::kValid) {
      // The zone's keys are authenticated with an algorithm we verify, so
      // an RRset signed only with one we cannot is not acceptable either.
      h.status = DnssecStatus::kBogus;
      h.note = what + ": " + v.reason + " (" + PathText(w) + ")";
      return h;
    }
    h.status = DnssecStatus::kSecure;
    h.ttl_limit = v.ttl_limit;
    h.wildcard = v.wildcard;
    h.note = what + ": signed by " + Shown(w.zone) + " key " + Tags(v.key_tags) + " (" + PathText(w) + ")";
    if (v.wildcard) {
      DenialResult d = VerifyWildcardAnswer(owner, v.wildcard_source, auth, *w.keys, o);
      if (d.status == SigStatus::kBogus) {
        h.status = DnssecStatus::kBogus;
        h.note = what + ": wildcard expansion of " + v.wildcard_source + " without proof: " + d.reason;
      } else {
        if (d.status == SigStatus::kUnsupported || d.opt_out) h.status = DnssecStatus::kInsecure;
        h.note += "; " + d.reason;
      }
    }
    return h;
  }

  // A CNAME hop `owner` -> `target` without signatures, explained by a
  // DNAME in the answer at an ancestor of `owner`: servers synthesize that
  // CNAME and do not sign it (RFC 4035 §3; RFC 6672), so the DNAME
  // RRset carries the proof. nullopt when no DNAME in `ans` applies to
  // `owner`. Otherwise the hop has the DNAME's status (validated like any
  // RRset, its signer zone walked from the anchor) if substituting it in
  // `owner` gives exactly `target`; a CNAME that does not match, a
  // substitution longer than 255 octets, or a DNAME that is a wildcard
  // expansion (RFC 6672: its use is discouraged and validators cannot
  // check it reliably) is bogus.
  std::optional<HopResult> DnameHop(const std::string& owner, const std::string& target, const RrList& ans,
                                    const RrList& auth) {
    const std::string what = "CNAME " + Shown(owner);
    std::vector<std::pair<std::string, std::string>> dnames;  // (owner, target), deepest owner first
    for (size_t i = 0; i < ans.size(); ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(ans.get(), i);
      if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_DNAME || ldns_rr_rd_count(rr) < 1) continue;
      std::string d = NormalName(ldns_rr_owner(rr));
      if (d == owner || !AtOrBelow(owner, d)) continue;
      std::pair<std::string, std::string> dn(d, NormalName(ldns_rr_rdf(rr, 0)));
      if (std::find(dnames.begin(), dnames.end(), dn) == dnames.end()) dnames.push_back(std::move(dn));
    }
    if (dnames.empty()) return std::nullopt;
    std::stable_sort(dnames.begin(), dnames.end(),
                     [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
    HopResult h;
    h.status = DnssecStatus::kBogus;
    bool matched = false;
    for (const auto& [downer, dtarget] : dnames) {
      const std::string dname = "DNAME " + Shown(downer) + " -> " + Shown(dtarget);
      auto sub = DnameSubstitute(owner, downer, dtarget);
      if (!sub.ok() || sub.value() != target) {
        if (!matched && h.note.empty())
          h.note = what + ": unsigned, and not what " + dname + " makes of it (" +
                   (sub.ok() ? Shown(sub.value()) + ", not " + Shown(target) : sub.error()) + ")";
        continue;
      }
      HopResult d = CheckRrset(downer, RrType::kDNAME, ans, auth);
      if (SingleTarget(d.records) != dtarget) {
        d.status = DnssecStatus::kBogus;
        d.note = "DNAME " + Shown(downer) + ": " + std::to_string(d.records.size()) +
                 " DNAME records, not the one that was read";
      }
      if (d.wildcard) {
        d.status = DnssecStatus::kBogus;
        d.note = "DNAME " + Shown(downer) + ": a wildcard expansion, which cannot be validated";
      }
      // CheckRrset says "DNAME <owner>: <how>"; the hop says which CNAME it explains.
      const std::string prefix = "DNAME " + Shown(downer) + ": ";
      std::string how = d.note.compare(0, prefix.size(), prefix) == 0 ? d.note.substr(prefix.size()) : d.note;
      d.note = what + ": " + dname + ", " + how;
      // Two DNAMEs that both yield the target: the stronger proof counts.
      if (!matched || WeakerStatus(h.status, d.status) == h.status) h = std::move(d);
      matched = true;
    }
    return h;
  }

  HopResult CheckDenial(const std::string& name, RrType type, Denial what, const RrList& auth) {
    const std::string claim = (what == Denial::kNxDomain ? "NXDOMAIN " : "NODATA ") + RrTypeName(type) + " " +
                              Shown(name);
    std::string signer = DenialSigner(auth);
    if (signer.empty()) return Unsigned(name, claim);
    HopResult h;
    ZoneWalk w = SignerZone(signer, name, &h);
    if (w.status != DnssecStatus::kSecure) {
      h.note = claim + ": " + h.note;
      return h;
    }
    DenialResult d = VerifyDenial(name, static_cast<uint16_t>(type), what, auth, *w.keys, Opts());
    if (d.status == SigStatus::kBogus) {
      h.status = DnssecStatus::kBogus;
      h.note = claim + ": not proven: " + d.reason + " (" + PathText(w) + ")";
      return h;
    }
    h.status = (d.status == SigStatus::kUnsupported || d.opt_out) ? DnssecStatus::kInsecure : DnssecStatus::kSecure;
    h.note = claim + ": " + d.reason + ", keys " + Tags(d.key_tags) + " of " + Shown(w.zone) + " (" + PathText(w) +
             ")";
    return h;
  }

  DnsAnswer Validate(const DnsQuestion& q, const DnsResponse& r) {
    DnsAnswer a = ClassifyResponse(q, r, nullptr, false);
    if (a.failed()) {
      a.dnssec = DnssecStatus::kIndeterminate;
      return a;
    }
    const RrList& ans = Section(r.answer_rrs);
    const RrList& auth = Section(r.authority_rrs);
    std::vector<HopResult> hops;
    std::string owner = q.name;
    for (const std::string& target : a.chain) {
      std::optional<HopResult> dname;
      if (SignerOf(ans, owner, LDNS_RR_TYPE_CNAME).empty()) dname = DnameHop(owner, target, ans, auth);
      if (!dname) {
        HopResult h = CheckRrset(owner, RrType::kCNAME, ans, auth);
        if (SingleTarget(h.records) != target) {
          h.status = DnssecStatus::kBogus;
          h.note = "CNAME " + Shown(owner) + ": " + std::to_string(h.records.size()) +
                   " CNAME records, not one leading to " + Shown(target);
        }
        dname = std::move(h);
      }
      hops.push_back(std::move(*dname));
      owner = target;
    }
    if (a.outcome == DnsOutcome::kRecords) {
      // The records returned are the RRset that was verified, not the
      // classifier's reading of the reply.
      HopResult h = CheckRrset(a.final_name, q.type, ans, auth);
      a.records = h.records;
      if (a.records.empty()) {
        h.status = DnssecStatus::kBogus;
        h.note = RrTypeName(q.type) + " " + Shown(a.final_name) + ": no RRset to verify";
      }
      a.ttl = 0;
      for (size_t i = 0; i < a.records.size(); ++i) a.ttl = i ? std::min(a.ttl, a.records[i].ttl) : a.records[i].ttl;
      hops.push_back(std::move(h));
    } else {
      hops.push_back(CheckDenial(a.final_name, q.type,
                                 a.outcome == DnsOutcome::kNxDomain ? Denial::kNxDomain : Denial::kNoData, auth));
    }
    DnssecStatus status = DnssecStatus::kSecure;
    std::string problems;
    for (const HopResult& h : hops) {
      status = WeakerStatus(status, h.status);
      // RFC 4035 §5.3.3: validated data lives no longer than its signature.
      if (h.ttl_limit > 0 && a.outcome == DnsOutcome::kRecords) a.ttl = std::min(a.ttl, h.ttl_limit);
      a.validation.push_back(std::string(DnssecStatusName(h.status)) + ": " + h.note);
      if (h.status == DnssecStatus::kBogus || h.status == DnssecStatus::kIndeterminate)
        problems += (problems.empty() ? "" : "; ") + h.note;
    }
    a.dnssec = status;
    if (status == DnssecStatus::kBogus || status == DnssecStatus::kIndeterminate) {
      // As a validating resolver would: no data from an answer that does
      // not validate.
      a.outcome = DnsOutcome::kFailure;
      a.records.clear();
      a.ttl = 0;
      a.reason = (status == DnssecStatus::kBogus ? "DNSSEC validation failed: " : "DNSSEC status unknown: ") +
                 problems;
    }
    return a;
  }

  DnsTransport* transport_;
  RrList anchors_;
  std::vector<std::string> anchor_zones_;
  LocalValidatorOptions options_;
  std::mutex mu_;
  std::map<std::string, CutFact> cache_;
  std::set<std::string> in_flight_;      // facts being established (Once)
  std::condition_variable fetched_;      // signalled when one is done
  VerifiedSignatures verified_;
};

}  // namespace

std::unique_ptr<Resolver> NewLocalValidatingResolver(DnsTransport* transport, RrList anchors,
                                                     LocalValidatorOptions options) {
  return std::make_unique<LocalValidatingResolver>(transport, std::move(anchors), std::move(options));
}

}  // namespace mxsec
