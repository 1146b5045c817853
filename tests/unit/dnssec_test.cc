// dnssec_test.cc - the building blocks of local DNSSEC validation: trust
// anchors, RRset signatures, DNSKEY sets authenticated by DS. Keys and
// signatures are made in the test with ldns, so every case (expired,
// not yet valid, wrong key, stripped, tampered, revoked, wildcard,
// unsupported algorithm, DS mismatch) is built on purpose.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mxsec/dns/dns.h"
#include "mxsec/dns/dnssec.h"
#include "mxsec/dns/local_validator.h"

#include <ldns/ldns.h>

using namespace mxsec;

namespace {

constexpr int64_t kNow = 1700000000;

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A signing key of a zone (RAII), with its DNSKEY record.
class Key {
 public:
  Key(const std::string& zone, uint16_t flags, ldns_signing_algorithm alg = LDNS_SIGN_ECDSAP256SHA256,
      uint16_t bits = 256) {
    key_ = ldns_key_new_frm_algorithm(alg, bits);
    REQUIRE(key_ != nullptr);
    ldns_key_set_pubkey_owner(key_, ldns_dname_new_frm_str((zone == "." ? "." : zone + ".").c_str()));
    ldns_key_set_flags(key_, flags);
    rr_ = ldns_key2rr(key_);
    REQUIRE(rr_ != nullptr);
    tag_ = ldns_calc_keytag(rr_);
    ldns_key_set_keytag(key_, tag_);
  }
  ~Key() {
    ldns_key_deep_free(key_);
    ldns_rr_free(rr_);
  }
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
  ldns_key* get() const { return key_; }
  ldns_rr* rr() const { return rr_; }
  uint16_t tag() const { return tag_; }
  RrList Dnskey() const {
    RrList l;
    ldns_rr_list_push_rr(l.get(), ldns_rr_clone(rr_));
    return l;
  }

 private:
  ldns_key* key_ = nullptr;
  ldns_rr* rr_ = nullptr;
  uint16_t tag_ = 0;
};

RrList Records(const std::string& text) {
  auto r = RrList::FromText(text, "test");
  REQUIRE(r.ok());
  return std::move(r.value());
}

RrList Sign(const RrList& rrset, const std::vector<const Key*>& keys, int64_t inception = kNow - 3600,
            int64_t expiration = kNow + 86400) {
  ldns_key_list* kl = ldns_key_list_new();
  for (const Key* k : keys) {
    ldns_key_set_inception(k->get(), static_cast<uint32_t>(inception));
    ldns_key_set_expiration(k->get(), static_cast<uint32_t>(expiration));
    ldns_key_list_push_key(kl, k->get());
  }
  ldns_rr_list* sigs = ldns_sign_public(rrset.get(), kl);
  // The keys stay ours: empty the list before freeing it (popping the
  // last key makes ldns free the array twice).
  ldns_key_list_set_key_count(kl, 0);
  ldns_key_list_free(kl);
  REQUIRE(sigs != nullptr);
  return RrList(sigs);
}

RrList Join(const RrList& a, const RrList& b) {
  RrList out = a.Clone();
  out.Append(b);
  return out;
}

// Replaces the owner name of every record.
void Rename(RrList* l, const std::string& owner) {
  for (size_t i = 0; i < l->size(); ++i) {
    ldns_rr* rr = ldns_rr_list_rr(l->get(), i);
    ldns_rdf* old = ldns_rr_owner(rr);
    ldns_rr_set_owner(rr, ldns_dname_new_frm_str((owner + ".").c_str()));
    ldns_rdf_deep_free(old);
  }
}

RrList Ds(const Key& k, ldns_hash digest = LDNS_SHA256) {
  RrList l;
  ldns_rr* ds = ldns_key_rr2ds(k.rr(), digest);
  REQUIRE(ds != nullptr);
  ldns_rr_list_push_rr(l.get(), ds);
  return l;
}

SigCheckOptions Opts() { return DefaultSigCheckOptions(kNow); }

const char* kA = "mx.example.test. 300 IN A 192.0.2.1\nmx.example.test. 300 IN A 192.0.2.2\n";

}  // namespace

TEST_CASE("dnssec: trust anchor files") {
  Key ksk("test", 257);
  RrList ds = Ds(ksk);
  std::string text = "; the test. KSK\n\n" + ds.ToString() + "# and as a key\n" +
                     Key("example", 257).Dnskey().ToString();
  auto a = ParseTrustAnchors(text, "anchors");
  REQUIRE(a.ok());
  CHECK(a->size() == 2);
  CHECK(a->Select(LDNS_RR_TYPE_DS, "test").size() == 1);
  CHECK(a->Select(LDNS_RR_TYPE_DNSKEY, "example").size() == 1);
  CHECK(a->Select(LDNS_RR_TYPE_DS, "example").empty());

  // The Debian dns-root-data root.key (KSK-2017, as a DS record).
  auto root = ParseTrustAnchors(
      ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n", "root.key");
  REQUIRE(root.ok());
  CHECK(root->Select(LDNS_RR_TYPE_DS, ".").size() == 1);

  auto bad = ParseTrustAnchors("; ok\nexample. 300 IN A 192.0.2.1\n", "f");
  REQUIRE_FALSE(bad.ok());
  CHECK(Contains(bad.error(), "only DS and DNSKEY"));
  bad = ParseTrustAnchors("\n\nthis is not a record\n", "f");
  REQUIRE_FALSE(bad.ok());
  CHECK(Contains(bad.error(), "f:3:"));
  bad = ParseTrustAnchors("; nothing\n", "f");
  REQUIRE_FALSE(bad.ok());
  CHECK(Contains(bad.error(), "no DS or DNSKEY"));
  bad = ParseTrustAnchors("$ORIGIN test.\n", "f");
  REQUIRE_FALSE(bad.ok());
  CHECK(Contains(bad.error(), "f:1:"));
  Key nonzone("test", 0);
  bad = ParseTrustAnchors(nonzone.Dnskey().ToString(), "f");
  REQUIRE_FALSE(bad.ok());
  CHECK(Contains(bad.error(), "zone key bit"));
  auto missing = LoadTrustAnchors("/nonexistent/root.key");
  REQUIRE_FALSE(missing.ok());
  CHECK(Contains(missing.error(), "/nonexistent/root.key"));
}

TEST_CASE("dnssec: a good signature, and the key tag and signer it reports") {
  Key zsk("example.test", 256);
  RrList a = Records(kA);
  SigResult r = VerifyRrset(a, Sign(a, {&zsk}), zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kValid);
  CHECK(r.key_tags == std::vector<uint16_t>{zsk.tag()});
  CHECK(r.signer == "example.test");
  CHECK_FALSE(r.wildcard);
  CHECK(r.ttl_limit == 300);
  // Signatures over other RRsets in the list are ignored, the right one is found.
  RrList other = Records("other.example.test. 300 IN A 192.0.2.9\n");
  RrList sigs = Join(Sign(other, {&zsk}), Sign(a, {&zsk}));
  CHECK(VerifyRrset(a, sigs, zsk.Dnskey(), Opts()).status == SigStatus::kValid);
  // The TTL limit follows the signature's expiry when that is sooner.
  r = VerifyRrset(a, Sign(a, {&zsk}, kNow - 10, kNow + 100), zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kValid);
  CHECK(r.ttl_limit == 100);
}

TEST_CASE("dnssec: validity windows with a clock-skew allowance") {
  Key zsk("example.test", 256);
  RrList a = Records(kA);
  SigCheckOptions o = Opts();
  o.skew = 300;
  SigResult r = VerifyRrset(a, Sign(a, {&zsk}, kNow - 86400, kNow - 1000), zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "expired"));
  CHECK(VerifyRrset(a, Sign(a, {&zsk}, kNow - 86400, kNow - 100), zsk.Dnskey(), o).status == SigStatus::kValid);
  r = VerifyRrset(a, Sign(a, {&zsk}, kNow + 1000, kNow + 86400), zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "not valid before"));
  CHECK(VerifyRrset(a, Sign(a, {&zsk}, kNow + 100, kNow + 86400), zsk.Dnskey(), o).status == SigStatus::kValid);
  o.skew = 0;
  CHECK(VerifyRrset(a, Sign(a, {&zsk}, kNow + 100, kNow + 86400), zsk.Dnskey(), o).status == SigStatus::kBogus);
}

TEST_CASE("dnssec: bogus signatures") {
  Key zsk("example.test", 256);
  Key other("example.test", 256);
  RrList a = Records(kA);

  // Stripped: no RRSIG at all is bogus, never insecure.
  SigResult r = VerifyRrset(a, RrList(), zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "missing or stripped"));

  // Signed by a key that is not in the DNSKEY set.
  r = VerifyRrset(a, Sign(a, {&other}), zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "no zone key with that tag"));

  // Data changed after signing.
  RrList sigs = Sign(a, {&zsk});
  RrList changed = Records("mx.example.test. 300 IN A 192.0.2.1\nmx.example.test. 300 IN A 198.51.100.66\n");
  r = VerifyRrset(changed, sigs, zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "does not verify"));

  // A key of another zone: wrong signer for this key set, and a signer that
  // does not enclose the owner.
  Key elsewhere("other.test", 256);
  RrList foreign = Sign(a, {&elsewhere});
  r = VerifyRrset(a, foreign, zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "not by the zone example.test"));
  r = VerifyRrset(a, foreign, elsewhere.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "does not enclose"));

  // Keys without the zone bit, or revoked, do not count.
  // (ldns will not sign with a non-zone key: take a zone key's record,
  // clear its zone bit, and point the RRSIG at the resulting key tag.)
  RrList nonzone = zsk.Dnskey();
  ldns_rr* nz = ldns_rr_list_rr(nonzone.get(), 0);
  ldns_rdf_data(ldns_rr_rdf(nz, 0))[0] = 0;
  RrList nzsigs = Sign(a, {&zsk});
  ldns_rdf* tag = ldns_rr_rdf(ldns_rr_list_rr(nzsigs.get(), 0), 6);
  ldns_write_uint16(ldns_rdf_data(tag), ldns_calc_keytag(nz));
  r = VerifyRrset(a, nzsigs, nonzone, Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK_MESSAGE(Contains(r.reason, "not a zone key"), r.reason);
  Key revoked("example.test", 256 | 128);
  r = VerifyRrset(a, Sign(a, {&revoked}), revoked.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "revoked"));

  // Not one RRset; an empty key set.
  RrList mixed = Join(a, Records("www.example.test. 300 IN A 192.0.2.3\n"));
  CHECK(Contains(VerifyRrset(mixed, sigs, zsk.Dnskey(), Opts()).reason, "not one RRset"));
  CHECK(VerifyRrset(a, sigs, RrList(), Opts()).status == SigStatus::kBogus);
}

TEST_CASE("dnssec: remembered signatures skip only the public-key operation") {
  Key zsk("example.test", 256);
  RrList a = Records(kA);
  RrList sigs = Sign(a, {&zsk}, kNow - 3600, kNow + 1000);
  VerifiedSignatures memo(4);
  SigCheckOptions o = Opts();
  o.verified = &memo;

  // Verified once, then remembered; the same RRset with a lower TTL (as a
  // resolver's cache hands it out) is the same triple.
  CHECK(VerifyRrset(a, sigs, zsk.Dnskey(), o).status == SigStatus::kValid);
  CHECK(memo.size() == 1);
  RrList aged = Records("mx.example.test. 17 IN A 192.0.2.1\nmx.example.test. 17 IN A 192.0.2.2\n");
  CHECK(VerifyRrset(aged, sigs, zsk.Dnskey(), o).status == SigStatus::kValid);
  CHECK(memo.size() == 1);

  // Other data under the remembered signature never rides on it.
  RrList changed = Records("mx.example.test. 300 IN A 192.0.2.1\nmx.example.test. 300 IN A 198.51.100.66\n");
  SigResult r = VerifyRrset(changed, sigs, zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "does not verify"));
  RrList fewer = Records("mx.example.test. 300 IN A 192.0.2.1\n");
  CHECK(VerifyRrset(fewer, sigs, zsk.Dnskey(), o).status == SigStatus::kBogus);
  CHECK(memo.size() == 1);  // failures are not kept

  // A signature whose bytes changed is another triple, and does not verify.
  RrList forged = sigs.Clone();
  ldns_rdf* sigdata = ldns_rr_rdf(ldns_rr_list_rr(forged.get(), 0), 8);
  ldns_rdf_data(sigdata)[5] ^= 0x55;
  CHECK(VerifyRrset(a, forged, zsk.Dnskey(), o).status == SigStatus::kBogus);

  // The validity window is checked on every use: once past expiry (and
  // the skew), the remembered triple does not make it valid.
  o.now = kNow + 1000 + o.skew + 1;
  r = VerifyRrset(a, sigs, zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "expired"));
  // Nor does the same signature with a key the zone no longer has.
  o.now = kNow;
  Key other("example.test", 256);
  CHECK(VerifyRrset(a, sigs, other.Dnskey(), o).status == SigStatus::kBogus);

  // Bounded: past the limit, expired entries go first, then all.
  for (int i = 0; i < 6; ++i) {
    RrList one = Records("n" + std::to_string(i) + ".example.test. 300 IN A 192.0.2.1\n");
    CHECK(VerifyRrset(one, Sign(one, {&zsk}), zsk.Dnskey(), o).status == SigStatus::kValid);
    CHECK(memo.size() <= 4);
  }
  memo.Add("x", kNow - 1, kNow);
  CHECK_FALSE(memo.Contains("x", kNow));
  memo.Add("y", kNow + 10, kNow);
  CHECK(memo.Contains("y", kNow + 10));
  CHECK_FALSE(memo.Contains("y", kNow + 11));
}

TEST_CASE("dnssec: the ECDSA fast path agrees with ldns's verifier") {
  // VerifySignatureCrypto verifies ECDSA itself (keys parsed once); it
  // must say yes and no exactly where ldns_verify_rrsig_time does.
  struct Alg {
    ldns_signing_algorithm alg;
    uint16_t bits;
  };
  for (Alg a : {Alg{LDNS_SIGN_ECDSAP256SHA256, 256}, Alg{LDNS_SIGN_ECDSAP384SHA384, 384},
                Alg{LDNS_SIGN_RSASHA256, 1024}}) {
    CAPTURE(a.alg);
    Key zsk("example.test", 256, a.alg, a.bits);
    Key other("example.test", 256, a.alg, a.bits);
    auto agree = [&](const RrList& rrset, const RrList& sigs, const Key& key, bool expected) {
      REQUIRE(sigs.size() >= 1);
      ldns_rr* sig = ldns_rr_list_rr(sigs.get(), 0);
      std::string error;
      bool fast = internal::VerifySignatureCrypto(rrset.get(), sig, key.rr(), kNow, &error);
      bool ldns = ldns_verify_rrsig_time(rrset.get(), sig, key.rr(), kNow) == LDNS_STATUS_OK;
      CHECK(fast == ldns);
      CHECK(fast == expected);
      CHECK(error.empty() == fast);
    };
    // Several records, names in the RDATA, signed in canonical form and
    // presented in another order and case, with another TTL.
    RrList mx = Records(
        "example.test. 300 IN MX 20 mx2.example.test.\n"
        "example.test. 300 IN MX 10 mx1.example.test.\n");
    RrList sigs = Sign(mx, {&zsk});
    RrList shown = Records(
        "Example.TEST. 77 IN MX 10 MX1.Example.test.\n"
        "EXAMPLE.test. 77 IN MX 20 mx2.example.TEST.\n");
    agree(mx, sigs, zsk, true);
    agree(shown, sigs, zsk, true);
    agree(mx, sigs, other, false);
    agree(Records("example.test. 300 IN MX 10 mx1.example.test.\n"), sigs, zsk, false);
    agree(Records("example.test. 300 IN MX 10 mx1.example.test.\nexample.test. 300 IN MX 20 evil.example.\n"), sigs,
          zsk, false);
    RrList forged = sigs.Clone();
    ldns_rdf* sigdata = ldns_rr_rrsig_sig(ldns_rr_list_rr(forged.get(), 0));
    ldns_rdf_data(sigdata)[ldns_rdf_size(sigdata) - 3] ^= 0x01;
    agree(mx, forged, zsk, false);
    // A wildcard expansion: the signature is over "*.w.example.test".
    RrList wild = Records("*.w.example.test. 300 IN TXT \"x\"\n");
    RrList wsigs = Sign(wild, {&zsk});
    RrList expanded = wild.Clone();
    Rename(&expanded, "a.b.w.example.test");
    agree(expanded, wsigs, zsk, true);
    RrList elsewhere = wild.Clone();
    Rename(&elsewhere, "a.b.v.example.test");
    agree(elsewhere, wsigs, zsk, false);
  }
}

TEST_CASE("dnssec: an algorithm we cannot verify makes the answer unsupported, not bogus") {
  Key zsk("example.test", 256);
  RrList a = Records(kA);
  RrList sigs = Sign(a, {&zsk});
  SigCheckOptions o = Opts();
  o.unsupported_algorithms.insert(LDNS_ECDSAP256SHA256);
  SigResult r = VerifyRrset(a, sigs, zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kUnsupported);
  CHECK(Contains(r.reason, "not supported"));
  // With a second signature by a supported algorithm, that one decides.
  Key rsa("example.test", 256, LDNS_SIGN_RSASHA256, 1024);
  RrList both = Sign(a, {&zsk, &rsa});
  RrList keys = Join(zsk.Dnskey(), rsa.Dnskey());
  r = VerifyRrset(a, both, keys, o);
  CHECK(r.status == SigStatus::kValid);
  CHECK(r.key_tags == std::vector<uint16_t>{rsa.tag()});
  // ... and when that one is bad, the answer is bogus.
  r = VerifyRrset(a, Sign(a, {&zsk}), keys, Opts());
  CHECK(r.status == SigStatus::kValid);
  RrList changed = Records("mx.example.test. 300 IN A 192.0.2.1\n");
  CHECK(VerifyRrset(changed, both, keys, o).status == SigStatus::kBogus);
  // The RFC 8624 MUST NOT algorithms are off by default.
  CHECK(Opts().unsupported_algorithms.count(1));
  CHECK(Opts().unsupported_algorithms.count(3));
  CHECK(Opts().unsupported_digests.count(3));
}

TEST_CASE("dnssec: wildcard expansions are recognised from the label count") {
  Key zsk("example.test", 256);
  RrList wild = Records("*.w.example.test. 300 IN TLSA 3 1 1 "
                        "0000000000000000000000000000000000000000000000000000000000000000\n");
  RrList sigs = Sign(wild, {&zsk});
  // A wildcard RRset verifies as itself...
  SigResult r = VerifyRrset(wild, sigs, zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kValid);
  CHECK_FALSE(r.wildcard);
  // ... and as an expansion at a name below it (the proof that no closer
  // name exists is the caller's job).
  RrList expanded = wild.Clone();
  RrList expanded_sigs = sigs.Clone();
  Rename(&expanded, "_25._tcp.mx.w.example.test");
  Rename(&expanded_sigs, "_25._tcp.mx.w.example.test");
  r = VerifyRrset(expanded, expanded_sigs, zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kValid);
  CHECK(r.wildcard);
  CHECK(r.wildcard_source == "*.w.example.test");
  // A signature claiming more labels than the owner has is bogus.
  RrList a = Records("deep.mx.example.test. 300 IN A 192.0.2.1\n");
  RrList asigs = Sign(a, {&zsk});
  Rename(&a, "mx.example.test");
  Rename(&asigs, "mx.example.test");
  r = VerifyRrset(a, asigs, zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "label count"));
}

TEST_CASE("dnssec: DNSKEY sets authenticated by DS records or key anchors") {
  Key ksk("example.test", 257);
  Key zsk("example.test", 256);
  RrList keys = Join(ksk.Dnskey(), zsk.Dnskey());
  RrList sigs = Sign(keys, {&ksk});

  SigResult r = VerifyDnskeys(keys, sigs, Ds(ksk), Opts());
  CHECK(r.status == SigStatus::kValid);
  CHECK(r.key_tags == std::vector<uint16_t>{ksk.tag()});
  CHECK(Contains(r.reason, "authenticated by DS " + std::to_string(ksk.tag())));
  CHECK(VerifyDnskeys(keys, sigs, Ds(ksk, LDNS_SHA1), Opts()).status == SigStatus::kValid);
  CHECK(VerifyDnskeys(keys, sigs, Ds(ksk, LDNS_SHA384), Opts()).status == SigStatus::kValid);

  // DS digest mismatch.
  RrList bad = Ds(ksk);
  ldns_rdf* digest = ldns_rr_rdf(ldns_rr_list_rr(bad.get(), 0), 3);
  ldns_rdf_data(digest)[0] ^= 0xff;
  r = VerifyDnskeys(keys, sigs, bad, Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "digest mismatch"));

  // The DS names the ZSK, but only the KSK signs the DNSKEY set.
  r = VerifyDnskeys(keys, sigs, Ds(zsk), Opts());
  CHECK(r.status == SigStatus::kBogus);
  // The DNSKEY set is unsigned (stripped).
  CHECK(VerifyDnskeys(keys, RrList(), Ds(ksk), Opts()).status == SigStatus::kBogus);
  // A DS of another zone does not count: nothing usable for this zone.
  Key foreign("other.test", 257);
  CHECK(VerifyDnskeys(keys, sigs, Ds(foreign), Opts()).status == SigStatus::kUnsupported);

  // Only unsupported digest types or algorithms: the zone is insecure.
  SigCheckOptions o = Opts();
  o.unsupported_digests.insert(LDNS_SHA256);
  r = VerifyDnskeys(keys, sigs, Ds(ksk), o);
  CHECK(r.status == SigStatus::kUnsupported);
  o = Opts();
  o.unsupported_algorithms.insert(LDNS_ECDSAP256SHA256);
  CHECK(VerifyDnskeys(keys, sigs, Ds(ksk), o).status == SigStatus::kUnsupported);
  // ... but one supported DS that fails makes it bogus even next to an unsupported one.
  RrList mix = Records("example.test. 300 IN DS " + std::to_string(ksk.tag()) +
                        " 13 3 00000000000000000000000000000000000000000000000000000000000000ff\n");
  CHECK(VerifyDnskeys(keys, sigs, mix, Opts()).status == SigStatus::kUnsupported);  // GOST: unsupported
  mix.Append(bad);
  CHECK(VerifyDnskeys(keys, sigs, mix, Opts()).status == SigStatus::kBogus);

  // A DNSKEY trust anchor: it must be in the set and sign it.
  r = VerifyDnskeys(keys, sigs, ksk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kValid);
  CHECK(Contains(r.reason, "DNSKEY anchor"));
  Key stranger("example.test", 257);
  r = VerifyDnskeys(keys, sigs, stranger.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "not in the DNSKEY set"));
  CHECK(VerifyDnskeys(RrList(), sigs, Ds(ksk), Opts()).status == SigStatus::kBogus);
}

// --- Denial of existence ---

namespace {

// Signs every RRset of `records` (NSEC or NSEC3 chains made by hand).
RrList SignEach(const RrList& records, const Key& key) {
  RrList out = records.Clone();
  for (size_t i = 0; i < records.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(records.get(), i);
    char* owner = ldns_rdf2str(ldns_rr_owner(rr));
    std::string o = owner;
    free(owner);
    RrList one = records.Select(ldns_rr_get_type(rr), o.substr(0, o.size() - 1));
    out.Append(Sign(one, {&key}));
  }
  return out;
}

// example.test, NSEC: apex, a (A), deleg (NS, no DS: insecure delegation),
// mx (A), sec (NS DS: secure delegation), *.w (TLSA).
const char* kNsecChain =
    "example.test. 300 IN NSEC a.example.test. SOA NS RRSIG NSEC DNSKEY\n"
    "a.example.test. 300 IN NSEC deleg.example.test. A RRSIG NSEC\n"
    "deleg.example.test. 300 IN NSEC mx.example.test. NS\n"
    "mx.example.test. 300 IN NSEC sec.example.test. A RRSIG NSEC\n"
    "sec.example.test. 300 IN NSEC *.w.example.test. NS DS RRSIG NSEC\n"
    "*.w.example.test. 300 IN NSEC example.test. TLSA RRSIG NSEC\n";

std::string Hash(const std::string& name, uint16_t iterations = 0) {
  ldns_rdf* n = ldns_dname_new_frm_str((name + ".").c_str());
  ldns_rdf* h = ldns_nsec3_hash_name(n, 1, iterations, 0, nullptr);
  char* s = ldns_rdf2str(h);
  std::string out = s;
  free(s);
  ldns_rdf_deep_free(n);
  ldns_rdf_deep_free(h);
  for (char& c : out) c = static_cast<char>(tolower(c));
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// An NSEC3 chain (SHA-1, no salt) over names with their type bitmaps.
RrList Nsec3Chain(const std::vector<std::pair<std::string, std::string>>& names, int flags, uint16_t iterations = 0) {
  std::vector<std::pair<std::string, std::string>> hashed;
  for (const auto& [n, types] : names) hashed.emplace_back(Hash(n, iterations), types);
  std::sort(hashed.begin(), hashed.end());
  std::string text;
  for (size_t i = 0; i < hashed.size(); ++i) {
    const std::string& next = hashed[(i + 1) % hashed.size()].first;
    text += hashed[i].first + ".example.test. 300 IN NSEC3 1 " + std::to_string(flags) + " " +
            std::to_string(iterations) + " - " + next + " " + hashed[i].second + "\n";
  }
  return Records(text);
}

const std::vector<std::pair<std::string, std::string>> kNsec3Names = {
    {"example.test", "SOA NS RRSIG DNSKEY NSEC3PARAM"},
    {"a.example.test", "A RRSIG"},
    {"deleg2.example.test", "NS"},
    {"mx.example.test", "A RRSIG"},
    {"sec.example.test", "NS DS RRSIG"},
    {"w.example.test", ""},
    {"*.w.example.test", "TLSA RRSIG"},
};

}  // namespace

TEST_CASE("dnssec: NSEC denials") {
  Key zsk("example.test", 256);
  RrList keys = zsk.Dnskey();
  RrList chain = Records(kNsecChain);
  RrList auth = SignEach(chain, zsk);
  auto deny = [&](const std::string& name, uint16_t type, Denial what, const RrList& a) {
    return VerifyDenial(name, type, what, a, keys, Opts());
  };
  DenialResult d = deny("mx.example.test", LDNS_RR_TYPE_TLSA, Denial::kNoData, auth);
  CHECK(d.status == SigStatus::kValid);
  CHECK(d.method == "NSEC");
  CHECK(d.key_tags == std::vector<uint16_t>{zsk.tag()});
  CHECK(deny("mx.example.test", LDNS_RR_TYPE_A, Denial::kNoData, auth).status == SigStatus::kBogus);
  // NODATA at a delegation point proves nothing about the child's data.
  CHECK(deny("deleg.example.test", LDNS_RR_TYPE_TLSA, Denial::kNoData, auth).status == SigStatus::kBogus);

  d = deny("nosuch.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(Contains(d.reason, "closest encloser example.test"));
  CHECK(deny("mx.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, auth).status == SigStatus::kBogus);
  // Without the NSEC that denies the wildcard, NXDOMAIN is not proven.
  RrList partial = SignEach(Records("mx.example.test. 300 IN NSEC sec.example.test. A RRSIG NSEC\n"), zsk);
  d = deny("nosuch.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, partial);
  CHECK(d.status == SigStatus::kBogus);
  CHECK(Contains(d.reason, "does not exist"));
  // Below *.w the wildcard answers: no NXDOMAIN, but a wildcard NODATA.
  CHECK(deny("foo.w.example.test", LDNS_RR_TYPE_A, Denial::kNxDomain, auth).status == SigStatus::kBogus);
  d = deny("foo.w.example.test", LDNS_RR_TYPE_A, Denial::kNoData, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.wildcard);
  CHECK(deny("foo.w.example.test", LDNS_RR_TYPE_TLSA, Denial::kNoData, auth).status == SigStatus::kBogus);

  // w.example.test is an empty non-terminal (*.w exists): NODATA, not NXDOMAIN.
  CHECK(deny("w.example.test", LDNS_RR_TYPE_A, Denial::kNxDomain, auth).status == SigStatus::kBogus);
  CHECK(deny("w.example.test", LDNS_RR_TYPE_A, Denial::kNoData, auth).status == SigStatus::kValid);
  // DS NODATA: from the parent side of a delegation, not from a zone apex.
  CHECK(deny("deleg.example.test", LDNS_RR_TYPE_DS, Denial::kNoData, auth).status == SigStatus::kValid);
  CHECK(deny("example.test", LDNS_RR_TYPE_DS, Denial::kNoData, auth).status == SigStatus::kBogus);

  // Insecure delegation: NS without DS.
  d = deny("deleg.example.test", 0, Denial::kNoDs, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK_FALSE(d.opt_out);
  CHECK(deny("sec.example.test", 0, Denial::kNoDs, auth).status == SigStatus::kBogus);    // has DS
  CHECK(deny("mx.example.test", 0, Denial::kNoDs, auth).status == SigStatus::kBogus);     // not a delegation
  CHECK(deny("example.test", 0, Denial::kNoDs, auth).status == SigStatus::kBogus);        // apex: child side

  // Stripped or foreign signatures: nothing is proven.
  CHECK(deny("deleg.example.test", 0, Denial::kNoDs, chain).status == SigStatus::kBogus);
  Key other("example.test", 256);
  RrList forged = SignEach(chain, other);
  d = deny("deleg.example.test", 0, Denial::kNoDs, forged);
  CHECK(d.status == SigStatus::kBogus);
  CHECK(Contains(d.reason, "rejected"));
  // Names outside the zone are refused.
  CHECK(deny("other.test", LDNS_RR_TYPE_A, Denial::kNxDomain, auth).status == SigStatus::kBogus);
}

TEST_CASE("dnssec: NSEC3 denials, opt-out, iteration limit") {
  Key zsk("example.test", 256);
  RrList keys = zsk.Dnskey();
  RrList auth = SignEach(Nsec3Chain(kNsec3Names, 0), zsk);
  auto deny = [&](const std::string& name, uint16_t type, Denial what, const RrList& a) {
    return VerifyDenial(name, type, what, a, keys, Opts());
  };
  DenialResult d = deny("mx.example.test", LDNS_RR_TYPE_TLSA, Denial::kNoData, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.method == "NSEC3");
  CHECK(deny("mx.example.test", LDNS_RR_TYPE_A, Denial::kNoData, auth).status == SigStatus::kBogus);

  d = deny("nosuch.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK_FALSE(d.opt_out);
  CHECK(deny("a.example.test", LDNS_RR_TYPE_A, Denial::kNxDomain, auth).status == SigStatus::kBogus);
  CHECK(deny("foo.w.example.test", LDNS_RR_TYPE_A, Denial::kNxDomain, auth).status == SigStatus::kBogus);
  d = deny("foo.w.example.test", LDNS_RR_TYPE_A, Denial::kNoData, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.wildcard);
  // The empty non-terminal w has its own NSEC3 (no types).
  CHECK(deny("w.example.test", LDNS_RR_TYPE_A, Denial::kNxDomain, auth).status == SigStatus::kBogus);
  CHECK(deny("w.example.test", LDNS_RR_TYPE_A, Denial::kNoData, auth).status == SigStatus::kValid);

  d = deny("deleg2.example.test", 0, Denial::kNoDs, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK_FALSE(d.opt_out);
  CHECK(deny("sec.example.test", 0, Denial::kNoDs, auth).status == SigStatus::kBogus);
  // deleg is not in this chain and the chain has no opt-out: not proven.
  CHECK(deny("deleg.example.test", 0, Denial::kNoDs, auth).status == SigStatus::kBogus);

  // Opt-out: the unsigned delegation deleg is left out of the chain.
  RrList optout = SignEach(Nsec3Chain(kNsec3Names, 1), zsk);
  d = deny("deleg.example.test", 0, Denial::kNoDs, optout);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.opt_out);
  CHECK(deny("sec.example.test", 0, Denial::kNoDs, optout).status == SigStatus::kBogus);
  d = deny("nosuch.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, optout);
  CHECK(d.status == SigStatus::kValid);
  CHECK(d.opt_out);  // an NXDOMAIN under opt-out is only insecure

  // A hash below the first one of the chain is covered by the last NSEC3,
  // which wraps around (the test bed's nosuch.optout.test).
  std::string low_hash_name, first_hash = Hash(kNsec3Names.front().first);
  for (const auto& [n, types] : kNsec3Names) first_hash = std::min(first_hash, Hash(n));
  for (int i = 0; i < 10000 && low_hash_name.empty(); ++i) {
    std::string n = "n" + std::to_string(i) + ".example.test";
    if (Hash(n) < first_hash) low_hash_name = n;
  }
  REQUIRE_FALSE(low_hash_name.empty());
  d = deny(low_hash_name, LDNS_RR_TYPE_TLSA, Denial::kNxDomain, auth);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  d = deny(low_hash_name, LDNS_RR_TYPE_TLSA, Denial::kNxDomain, optout);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.opt_out);

  // Stripped signatures; too many iterations (RFC 9276).
  CHECK(deny("deleg2.example.test", 0, Denial::kNoDs, Nsec3Chain(kNsec3Names, 0)).status == SigStatus::kBogus);
  RrList costly = SignEach(Nsec3Chain(kNsec3Names, 0, 200), zsk);
  d = deny("nosuch.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, costly);
  CHECK(d.status == SigStatus::kUnsupported);
  CHECK(Contains(d.reason, "iterations"));
}

// --- What the transport keeps for the validator ---

namespace {

// A reply in wire form with the given records in the answer and authority sections.
std::vector<uint8_t> WireReply(uint16_t id, const std::string& qname, ldns_rr_type qtype, const RrList& answer,
                               const RrList& authority, ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR) {
  ldns_pkt* p = ldns_pkt_new();
  ldns_pkt_set_id(p, id);
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
  REQUIRE(ldns_pkt2wire(&buf, p, &len) == LDNS_STATUS_OK);
  std::vector<uint8_t> out(buf, buf + len);
  free(buf);
  ldns_pkt_free(p);
  return out;
}

// A section kept by ParseDnsReply for the local validator.
RrList FromSection(const std::shared_ptr<const RrList>& section) {
  REQUIRE(section);
  return section->Clone();
}

}  // namespace

TEST_CASE("dnssec: the transport keeps RRSIGs and the authority section, and they still verify") {
  Key ksk("example.test", 257);
  Key zsk("example.test", 256);
  RrList keys = Join(ksk.Dnskey(), zsk.Dnskey());
  RrList a = Records(kA);
  RrList answer = Join(a, Sign(a, {&zsk}));

  // A positive answer: resolver-mode view without RRSIGs, validator view with them.
  std::string mismatch;
  auto wire = WireReply(42, "mx.example.test", LDNS_RR_TYPE_A, answer, RrList());
  DnsResponse r = ParseDnsReply(wire.data(), wire.size(), {"mx.example.test", RrType::kA}, 42, &mismatch);
  REQUIRE(mismatch.empty());
  REQUIRE(AnswerRecords(r).size() == 2);
  for (const auto& rec : AnswerRecords(r)) CHECK(rec.type == RrType::kA);
  CHECK(r.answer_rrs->size() == 3);
  CHECK(r.authority_rrs->empty());
  RrList back = FromSection(r.answer_rrs);
  SigResult v = VerifyRrset(back.Select(LDNS_RR_TYPE_A, "mx.example.test"), back.Select(LDNS_RR_TYPE_RRSIG), keys,
                            Opts());
  CHECK_MESSAGE(v.status == SigStatus::kValid, v.reason);
  CHECK(v.key_tags == std::vector<uint16_t>{zsk.tag()});

  // A DNSKEY answer (ldns prints a comment after each key) and a DS:
  // both read back to the same records, and the key set still verifies.
  RrList ds = Ds(ksk);
  wire = WireReply(43, "example.test", LDNS_RR_TYPE_DNSKEY, Join(keys, Sign(keys, {&ksk})), RrList());
  r = ParseDnsReply(wire.data(), wire.size(), {"example.test", RrType::kDNSKEY}, 43, &mismatch);
  REQUIRE(mismatch.empty());
  REQUIRE(r.answer_rrs->size() == 3);
  back = FromSection(r.answer_rrs);
  v = VerifyDnskeys(back.Select(LDNS_RR_TYPE_DNSKEY), back.Select(LDNS_RR_TYPE_RRSIG), ds, Opts());
  CHECK_MESSAGE(v.status == SigStatus::kValid, v.reason);
  wire = WireReply(44, "example.test", LDNS_RR_TYPE_DS, ds, RrList());
  r = ParseDnsReply(wire.data(), wire.size(), {"example.test", RrType::kDS}, 44, &mismatch);
  REQUIRE(mismatch.empty());
  REQUIRE(r.answer_rrs->size() == 1);
  CHECK(FromSection(r.answer_rrs).ToString() == ds.ToString());

  // A NODATA answer: SOA, NSEC and their RRSIGs in the authority section
  // come back and still prove the denial.
  RrList soa = Records("example.test. 300 IN SOA ns.example.test. h.example.test. 1 7200 3600 1209600 300\n");
  RrList auth = Join(Join(soa, Sign(soa, {&zsk})), SignEach(Records(kNsecChain), zsk));
  wire = WireReply(45, "mx.example.test", LDNS_RR_TYPE_TLSA, RrList(), auth);
  r = ParseDnsReply(wire.data(), wire.size(), {"mx.example.test", RrType::kTLSA}, 45, &mismatch);
  REQUIRE(mismatch.empty());
  CHECK(AnswerRecords(r).empty());
  CHECK(r.answer_rrs->empty());
  CHECK(r.authority_rrs->size() == auth.size());
  back = FromSection(r.authority_rrs);
  DenialResult d = VerifyDenial("mx.example.test", LDNS_RR_TYPE_TLSA, Denial::kNoData, back, keys, Opts());
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.method == "NSEC");
  // An NXDOMAIN keeps its authority section too.
  wire = WireReply(46, "nosuch.example.test", LDNS_RR_TYPE_TLSA, RrList(), auth, LDNS_RCODE_NXDOMAIN);
  r = ParseDnsReply(wire.data(), wire.size(), {"nosuch.example.test", RrType::kTLSA}, 46, &mismatch);
  REQUIRE(mismatch.empty());
  CHECK(r.rcode == DnsRcode::kNxDomain);
  CHECK(r.authority_rrs->size() == auth.size());
  d = VerifyDenial("nosuch.example.test", LDNS_RR_TYPE_TLSA, Denial::kNxDomain, FromSection(r.authority_rrs), keys,
                   Opts());
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
}

TEST_CASE("dnssec: the proof that comes with a wildcard expansion") {
  Key zsk("example.test", 256);
  RrList keys = zsk.Dnskey();
  RrList nsec = SignEach(Records(kNsecChain), zsk);
  DenialResult d = VerifyWildcardAnswer("foo.w.example.test", "*.w.example.test", nsec, keys, Opts());
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.method == "NSEC");
  CHECK(d.wildcard);
  // A name that exists, or a wildcard replayed under an existing name
  // (mx.example.test exists, so *.example.test cannot answer below it).
  CHECK(VerifyWildcardAnswer("a.example.test", "*.example.test", nsec, keys, Opts()).status == SigStatus::kBogus);
  d = VerifyWildcardAnswer("x.mx.example.test", "*.example.test", nsec, keys, Opts());
  CHECK(d.status == SigStatus::kBogus);
  CHECK(Contains(d.reason, "mx.example.test"));
  // Unsigned records prove nothing; a source that does not enclose qname is refused.
  CHECK(VerifyWildcardAnswer("foo.w.example.test", "*.w.example.test", Records(kNsecChain), keys, Opts()).status ==
        SigStatus::kBogus);
  CHECK(VerifyWildcardAnswer("foo.v.example.test", "*.w.example.test", nsec, keys, Opts()).status ==
        SigStatus::kBogus);

  RrList nsec3 = SignEach(Nsec3Chain(kNsec3Names, 0), zsk);
  d = VerifyWildcardAnswer("foo.w.example.test", "*.w.example.test", nsec3, keys, Opts());
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  CHECK(d.method == "NSEC3");
  CHECK_FALSE(d.opt_out);
  CHECK(VerifyWildcardAnswer("x.mx.example.test", "*.example.test", nsec3, keys, Opts()).status == SigStatus::kBogus);
  CHECK(VerifyWildcardAnswer("foo.w.example.test", "*.w.example.test", Nsec3Chain(kNsec3Names, 0), keys, Opts())
            .status == SigStatus::kBogus);
  d = VerifyWildcardAnswer("foo.w.example.test", "*.w.example.test", SignEach(Nsec3Chain(kNsec3Names, 1), zsk), keys,
                           Opts());
  CHECK(d.status == SigStatus::kValid);
  CHECK(d.opt_out);
}

// --- The local validating resolver, on a fake transport ---

namespace {

// Replies built as wire packets and parsed as the real transport does.
class FakeDnssecTransport : public DnsTransport {
 public:
  void Set(const std::string& name, ldns_rr_type type, const RrList& answer, const RrList& authority,
           ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR) {
    auto wire = WireReply(7, name, type, answer, authority, rcode);
    std::string mismatch;
    DnsResponse r = ParseDnsReply(wire.data(), wire.size(), {name, static_cast<RrType>(type)}, 7, &mismatch);
    REQUIRE(mismatch.empty());
    r.server = "fake";
    std::lock_guard<std::mutex> l(mu_);
    replies_[{name, type}] = r;
  }
  void Drop(const std::string& name, ldns_rr_type type) {
    std::lock_guard<std::mutex> l(mu_);
    replies_.erase({name, type});
  }
  // Every answer takes this long (outside the lock, as a network would),
  // so that lookups running side by side overlap.
  void SetDelay(std::chrono::milliseconds d) { delay_ = d; }
  std::vector<DnsResponse> QueryMany(const std::vector<DnsQuestion>& questions, bool cd) override {
    const auto delay = delay_.load();
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    std::lock_guard<std::mutex> l(mu_);
    std::vector<DnsResponse> out;
    for (const auto& q : questions) {
      CHECK(cd);  // local validation always asks with CD
      ++asked_[{q.name, static_cast<int>(q.type)}];
      auto it = replies_.find({q.name, static_cast<int>(q.type)});
      DnsResponse r;
      if (it != replies_.end()) {
        r = it->second;
      } else {
        r.error = "timeout: no answer from fake";
      }
      out.push_back(r);
    }
    return out;
  }
  int Asked(const std::string& name, ldns_rr_type type) {
    std::lock_guard<std::mutex> l(mu_);
    return asked_[{name, static_cast<int>(type)}];
  }

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, int>, DnsResponse> replies_;
  std::map<std::pair<std::string, int>, int> asked_;
  std::atomic<std::chrono::milliseconds> delay_{std::chrono::milliseconds(0)};
};

// test. (anchored by its KSK's DS) delegates sec.test (signed, DS) and
// ins.test (unsigned, NSEC without DS).
struct TestTree {
  Key ksk_t{"test", 257}, zsk_t{"test", 256}, ksk_s{"sec.test", 257}, zsk_s{"sec.test", 256};
  RrList keys_t = Join(ksk_t.Dnskey(), zsk_t.Dnskey());
  RrList keys_s = Join(ksk_s.Dnskey(), zsk_s.Dnskey());
  RrList soa_t = Records("test. 300 IN SOA ns.test. h.test. 1 7200 3600 1209600 300\n");
  RrList soa_s = Records("sec.test. 300 IN SOA ns.sec.test. h.sec.test. 1 7200 3600 1209600 300\n");
  RrList nsec_t = Records(
      "test. 300 IN NSEC ins.test. SOA NS RRSIG NSEC DNSKEY\n"
      "ins.test. 300 IN NSEC sec.test. NS\n"
      "sec.test. 300 IN NSEC test. NS DS RRSIG NSEC\n");
  RrList nsec_s = Records(
      "sec.test. 300 IN NSEC alias.sec.test. SOA NS RRSIG NSEC DNSKEY\n"
      "alias.sec.test. 300 IN NSEC mx.sec.test. CNAME RRSIG NSEC\n"
      "mx.sec.test. 300 IN NSEC *.w.sec.test. A RRSIG NSEC\n"
      "*.w.sec.test. 300 IN NSEC sec.test. TLSA RRSIG NSEC\n");
  FakeDnssecTransport t;

  RrList Signed(const RrList& rrset, const Key& k) { return Join(rrset, Sign(rrset, {&k})); }
  RrList SignedNsec(const RrList& nsecs, const RrList& soa, const Key& k) {
    return Join(Signed(soa, k), SignEach(nsecs, k));
  }

  TestTree() {
    t.Set("test", LDNS_RR_TYPE_DNSKEY, Signed(keys_t, ksk_t), RrList());
    t.Set("sec.test", LDNS_RR_TYPE_DS, Signed(Ds(ksk_s), zsk_t), RrList());
    t.Set("sec.test", LDNS_RR_TYPE_DNSKEY, Signed(keys_s, ksk_s), RrList());
    t.Set("ins.test", LDNS_RR_TYPE_DS, RrList(), SignedNsec(nsec_t.Select(0, "ins.test"), soa_t, zsk_t));
    t.Set("mx.sec.test", LDNS_RR_TYPE_DS, RrList(), SignedNsec(nsec_s.Select(0, "mx.sec.test"), soa_s, zsk_s));
    t.Set("mx.sec.test", LDNS_RR_TYPE_A, Signed(Records("mx.sec.test. 300 IN A 192.0.2.1\n"), zsk_s), RrList());
    t.Set("mx.ins.test", LDNS_RR_TYPE_A, Records("mx.ins.test. 300 IN A 192.0.2.2\n"), RrList());
    t.Set("alias.sec.test", LDNS_RR_TYPE_A,
          Join(Signed(Records("alias.sec.test. 300 IN CNAME mx.ins.test.\n"), zsk_s),
               Records("mx.ins.test. 300 IN A 192.0.2.2\n")),
          RrList());
    t.Set("mx.sec.test", LDNS_RR_TYPE_TLSA, RrList(), SignedNsec(nsec_s.Select(0, "mx.sec.test"), soa_s, zsk_s));
    RrList nx = nsec_s.Select(0, "mx.sec.test");
    nx.Append(nsec_s.Select(0, "sec.test"));
    t.Set("nosuch.sec.test", LDNS_RR_TYPE_TLSA, RrList(), SignedNsec(nx, soa_s, zsk_s), LDNS_RCODE_NXDOMAIN);
    // The wildcard *.w.sec.test answers foo.w.sec.test.
    RrList wild = Records("*.w.sec.test. 300 IN TLSA 3 1 1 "
                          "0000000000000000000000000000000000000000000000000000000000000000\n");
    RrList wsig = Sign(wild, {&zsk_s});
    Rename(&wild, "foo.w.sec.test");
    Rename(&wsig, "foo.w.sec.test");
    t.Set("foo.w.sec.test", LDNS_RR_TYPE_TLSA, Join(wild, wsig), SignEach(nsec_s.Select(0, "*.w.sec.test"), zsk_s));
  }

  std::unique_ptr<Resolver> Validator(const RrList& anchors) {
    LocalValidatorOptions o;
    o.description = "local validation (test)";
    o.now = [] { return kNow; };
    return NewLocalValidatingResolver(&t, anchors.Clone(), o);
  }
};

bool Mentions(const DnsAnswer& a, const std::string& part) {
  for (const auto& v : a.validation)
    if (Contains(v, part)) return true;
  return Contains(a.reason, part);
}

}  // namespace

TEST_CASE("local validator: secure, insecure and mixed answers, walked from the trust anchor") {
  TestTree tree;
  auto res = tree.Validator(Ds(tree.ksk_t));
  CHECK(res->dnssec_trusted());

  DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  REQUIRE(a.outcome == DnsOutcome::kRecords);
  CHECK(a.records.size() == 1);
  REQUIRE(a.validation.size() == 1);
  CHECK(Mentions(a, "key " + std::to_string(tree.zsk_s.tag())));
  CHECK(Mentions(a, "DNSKEY " + std::to_string(tree.ksk_t.tag())));

  a = res->Lookup({"mx.ins.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kInsecure, a.reason);
  CHECK(a.outcome == DnsOutcome::kRecords);
  CHECK(Mentions(a, "insecure delegation"));

  // CNAME from a secure zone into an insecure one: each hop has its status.
  a = res->Lookup({"alias.sec.test", RrType::kA});
  CHECK(a.outcome == DnsOutcome::kRecords);
  CHECK(a.chain == std::vector<std::string>{"mx.ins.test"});
  CHECK(a.dnssec == DnssecStatus::kInsecure);
  REQUIRE(a.validation.size() == 2);
  CHECK(Contains(a.validation[0], "secure: CNAME alias.sec.test"));
  CHECK(Contains(a.validation[1], "insecure: A mx.ins.test"));

  // Secure NODATA and NXDOMAIN, and a wildcard answer with its proof.
  a = res->Lookup({"mx.sec.test", RrType::kTLSA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(a.outcome == DnsOutcome::kNoData);
  a = res->Lookup({"nosuch.sec.test", RrType::kTLSA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(a.outcome == DnsOutcome::kNxDomain);
  a = res->Lookup({"foo.w.sec.test", RrType::kTLSA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(a.outcome == DnsOutcome::kRecords);
  CHECK(Mentions(a, "wildcard"));

  // The DNSKEY and DS sets were fetched once and cached for all lookups.
  CHECK(tree.t.Asked("test", LDNS_RR_TYPE_DNSKEY) == 1);
  CHECK(tree.t.Asked("sec.test", LDNS_RR_TYPE_DS) == 1);
  CHECK(tree.t.Asked("sec.test", LDNS_RR_TYPE_DNSKEY) == 1);
  CHECK(tree.t.Asked("ins.test", LDNS_RR_TYPE_DS) == 1);

  // Several questions at once, from several threads.
  std::vector<DnsQuestion> qs = {{"mx.sec.test", RrType::kA}, {"mx.ins.test", RrType::kA}};
  auto many = res->LookupMany(qs);
  REQUIRE(many.size() == 2);
  CHECK(many[0].dnssec == DnssecStatus::kSecure);
  CHECK(many[1].dnssec == DnssecStatus::kInsecure);
}

TEST_CASE("local validator: what must be bogus or indeterminate is a failure") {
  TestTree tree;
  auto res = tree.Validator(Ds(tree.ksk_t));

  // Stripped signatures in a secure zone.
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, Records("mx.sec.test. 300 IN A 192.0.2.1\n"), RrList());
  DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK(a.records.empty());
  CHECK(Contains(a.reason, "no signature in the secure zone sec.test"));

  // A signature that expires before the TTL runs out limits the answer's TTL.
  RrList soon = Records("mx.sec.test. 300 IN A 192.0.2.1\n");
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, Join(soon, Sign(soon, {&tree.zsk_s}, kNow - 3600, kNow + 100)), RrList());
  a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK(a.dnssec == DnssecStatus::kSecure);
  CHECK(a.ttl == 100);

  // An expired signature; a signature by a key not in the DNSKEY set.
  RrList rr = Records("mx.sec.test. 300 IN A 192.0.2.1\n");
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, Join(rr, Sign(rr, {&tree.zsk_s}, kNow - 7200, kNow - 3600)), RrList());
  a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  Key stranger("sec.test", 256);
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, Join(rr, Sign(rr, {&stranger})), RrList());
  CHECK(res->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kBogus);

  // A denial without signatures, a wildcard answer without its proof.
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_TLSA, RrList(), Join(tree.soa_s, tree.nsec_s.Select(0, "mx.sec.test")));
  a = res->Lookup({"mx.sec.test", RrType::kTLSA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  RrList wild = Records("*.w.sec.test. 300 IN TLSA 3 1 1 "
                        "0000000000000000000000000000000000000000000000000000000000000000\n");
  RrList wsig = Sign(wild, {&tree.zsk_s});
  Rename(&wild, "foo.w.sec.test");
  Rename(&wsig, "foo.w.sec.test");
  tree.t.Set("foo.w.sec.test", LDNS_RR_TYPE_TLSA, Join(wild, wsig), RrList());
  a = res->Lookup({"foo.w.sec.test", RrType::kTLSA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);

  // An unsigned delegation claimed without proof: the secure zone's
  // insecure child is ins.test, not sec.test.
  tree.t.Set("nosuch.sec.test", LDNS_RR_TYPE_TLSA, RrList(), tree.soa_s, LDNS_RCODE_NXDOMAIN);
  // (Until the walk can ask DS at nosuch.sec.test, the status is unknown.)
  CHECK(res->Lookup({"nosuch.sec.test", RrType::kTLSA}).dnssec == DnssecStatus::kIndeterminate);
  RrList nx = tree.nsec_s.Select(0, "mx.sec.test");
  nx.Append(tree.nsec_s.Select(0, "sec.test"));
  tree.t.Set("nosuch.sec.test", LDNS_RR_TYPE_DS, RrList(), tree.SignedNsec(nx, tree.soa_s, tree.zsk_s),
             LDNS_RCODE_NXDOMAIN);
  a = res->Lookup({"nosuch.sec.test", RrType::kTLSA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);

  // No reply: indeterminate, never "no data".
  a = res->Lookup({"gone.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kIndeterminate);
}

TEST_CASE("local validator: DS mismatch, unreachable keys, names outside the anchor") {
  {
    // The anchor does not match test.'s keys: everything below is bogus.
    TestTree tree;
    Key other("test", 257);
    auto res = tree.Validator(Ds(other));
    DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
    CHECK(a.failed());
    CHECK(a.dnssec == DnssecStatus::kBogus);
    CHECK(Contains(a.reason, "trust anchor"));
    CHECK(res->Lookup({"mx.ins.test", RrType::kA}).dnssec == DnssecStatus::kBogus);
  }
  {
    // sec.test's DS names a key that is not in its DNSKEY set.
    TestTree tree;
    Key other("sec.test", 257);
    tree.t.Set("sec.test", LDNS_RR_TYPE_DS, tree.Signed(Ds(other), tree.zsk_t), RrList());
    auto res = tree.Validator(Ds(tree.ksk_t));
    DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
    CHECK(a.failed());
    CHECK(a.dnssec == DnssecStatus::kBogus);
    CHECK(Contains(a.reason, "DNSKEY set of sec.test"));
    // A bogus fact is not cached: once the DS is right, the zone validates.
    tree.t.Set("sec.test", LDNS_RR_TYPE_DS, tree.Signed(Ds(tree.ksk_s), tree.zsk_t), RrList());
    CHECK(res->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kSecure);
  }
  {
    // The DNSKEY set cannot be fetched: indeterminate.
    TestTree tree;
    tree.t.Drop("sec.test", LDNS_RR_TYPE_DNSKEY);
    auto res = tree.Validator(Ds(tree.ksk_t));
    DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
    CHECK(a.failed());
    CHECK(a.dnssec == DnssecStatus::kIndeterminate);
  }
  {
    // A name that no trust anchor covers is insecure.
    TestTree tree;
    tree.t.Set("mx.example", LDNS_RR_TYPE_A, Records("mx.example. 300 IN A 192.0.2.3\n"), RrList());
    auto res = tree.Validator(Ds(tree.ksk_t));
    DnsAnswer a = res->Lookup({"mx.example", RrType::kA});
    CHECK(a.dnssec == DnssecStatus::kInsecure);
    CHECK(a.outcome == DnsOutcome::kRecords);
  }
}

TEST_CASE("local validator: the records returned are the records verified; an answer over a cap is refused") {
  TestTree tree;
  auto res = tree.Validator(Ds(tree.ksk_t));
  RrList genuine = tree.Signed(Records("mx.sec.test. 300 IN A 192.0.2.1\n"), tree.zsk_s);
  RrList forged = Records("mx.sec.test. 300 IN A 203.0.113.66\n");
  // Padding: one genuine signature of another owner, repeated.
  RrList pad_sig = Sign(Records("pad.sec.test. 300 IN A 192.0.2.9\n"), {&tree.zsk_s});
  auto reply = [&](size_t pads) {
    RrList answer = genuine.Clone();
    for (size_t i = 0; i < pads; ++i) answer.Append(pad_sig);
    answer.Append(forged);
    return answer;
  };
  auto never_forged_as_secure = [](const DnsAnswer& a) {
    const std::string status = std::string(DnssecStatusName(a.dnssec)) + ": " + a.reason;
    for (const DnsRecord& r : a.records) CHECK_MESSAGE(r.text != "203.0.113.66", status);
    if (a.dnssec == DnssecStatus::kSecure) CHECK(a.records.size() == 1);
  };

  // The genuine signed A, 511 signatures at another owner, then a forged
  // A: 514 records, over the limit of 512 per section. Refused whole, not
  // cut short into an answer the signatures seem to cover.
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, reply(511), RrList());
  DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
  never_forged_as_secure(a);
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kIndeterminate);
  CHECK(a.records.empty());
  CHECK_MESSAGE(Contains(a.reason, "514 records"), a.reason);
  CHECK_MESSAGE(Contains(a.reason, "512"), a.reason);

  // Under the cap the same forgery is in the RRset that is verified, and
  // its signature does not cover it: bogus.
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, reply(100), RrList());
  a = res->Lookup({"mx.sec.test", RrType::kA});
  never_forged_as_secure(a);
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);

  // Exactly at the cap the answer is read whole and validates.
  RrList at_cap = genuine.Clone();
  for (size_t i = 0; i < 510; ++i) at_cap.Append(pad_sig);
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_A, at_cap, RrList());
  a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  REQUIRE(a.records.size() == 1);
  CHECK(a.records[0].text == "192.0.2.1");

  // The authority section has the same limit: a denial beyond it is
  // refused, not judged on the first 512 records.
  RrList auth;
  for (size_t i = 0; i < 511; ++i) auth.Append(pad_sig);
  auth.Append(tree.SignedNsec(tree.nsec_s.Select(0, "mx.sec.test"), tree.soa_s, tree.zsk_s));
  tree.t.Set("mx.sec.test", LDNS_RR_TYPE_TLSA, RrList(), auth);
  a = res->Lookup({"mx.sec.test", RrType::kTLSA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kIndeterminate);
  CHECK_MESSAGE(Contains(a.reason, "authority section"), a.reason);
  CHECK_MESSAGE(Contains(a.reason, "512"), a.reason);

  // A chain is followed only through the record that was verified: a
  // signed CNAME RRset of two records (one name, two targets) cannot say
  // which one the chain went through.
  RrList two = Records("alias.sec.test. 300 IN CNAME mx.sec.test.\nalias.sec.test. 300 IN CNAME other.sec.test.\n");
  tree.t.Set("alias.sec.test", LDNS_RR_TYPE_A, Join(tree.Signed(two, tree.zsk_s), genuine), RrList());
  a = res->Lookup({"alias.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK_MESSAGE(Contains(a.reason, "2 CNAME records"), a.reason);
}

TEST_CASE("local validator: cached facts expire with their TTL") {
  TestTree tree;
  int64_t now = kNow;
  LocalValidatorOptions o;
  o.now = [&now] { return now; };
  auto res = NewLocalValidatingResolver(&tree.t, Ds(tree.ksk_t), o);
  CHECK(res->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kSecure);
  CHECK(res->Lookup({"mx.ins.test", RrType::kA}).dnssec == DnssecStatus::kInsecure);
  // The NSEC denial of ins.test's DS has TTL 300; ldns gives DNSKEY and DS
  // records TTL 3600.
  auto ask_both = [&] {
    CHECK(res->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kSecure);
    CHECK(res->Lookup({"mx.ins.test", RrType::kA}).dnssec == DnssecStatus::kInsecure);
  };
  now += 299;
  ask_both();
  CHECK(tree.t.Asked("ins.test", LDNS_RR_TYPE_DS) == 1);
  now += 2;
  ask_both();
  CHECK(tree.t.Asked("ins.test", LDNS_RR_TYPE_DS) == 2);
  CHECK(tree.t.Asked("test", LDNS_RR_TYPE_DNSKEY) == 1);
  CHECK(tree.t.Asked("sec.test", LDNS_RR_TYPE_DNSKEY) == 1);
  now = kNow + 3601;
  ask_both();
  CHECK(tree.t.Asked("test", LDNS_RR_TYPE_DNSKEY) == 2);
  CHECK(tree.t.Asked("sec.test", LDNS_RR_TYPE_DNSKEY) == 2);
}

TEST_CASE("local validator: lookups side by side fetch each DS and DNSKEY set once") {
  TestTree tree;
  tree.t.SetDelay(std::chrono::milliseconds(30));
  auto res = tree.Validator(Ds(tree.ksk_t));
  // Eight threads miss the empty cache for the same zones at the same
  // time; all but one wait for the first fetch instead of repeating it.
  std::vector<std::thread> threads;
  std::atomic<int> secure{0}, insecure{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      if (i % 2 == 0) {
        if (res->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kSecure) ++secure;
      } else {
        if (res->Lookup({"mx.ins.test", RrType::kA}).dnssec == DnssecStatus::kInsecure) ++insecure;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(secure == 4);
  CHECK(insecure == 4);
  CHECK(tree.t.Asked("test", LDNS_RR_TYPE_DNSKEY) == 1);
  CHECK(tree.t.Asked("sec.test", LDNS_RR_TYPE_DS) == 1);
  CHECK(tree.t.Asked("sec.test", LDNS_RR_TYPE_DNSKEY) == 1);
  CHECK(tree.t.Asked("ins.test", LDNS_RR_TYPE_DS) == 1);

  // A fact that could not be established is not cached, and a waiter
  // then asks for itself: nothing is wedged by a failed fetch.
  TestTree down;
  down.t.Drop("sec.test", LDNS_RR_TYPE_DS);
  auto res2 = down.Validator(Ds(down.ksk_t));
  CHECK(res2->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kIndeterminate);
  CHECK(res2->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kIndeterminate);
  CHECK(down.t.Asked("sec.test", LDNS_RR_TYPE_DS) == 2);
}

TEST_CASE("local validator: the chain from a root trust anchor") {
  // The default anchor is the root's (dns-root-data): the walk starts at "."
  // and test. is reached by its DS in the root zone.
  TestTree tree;
  Key ksk_r(".", 257), zsk_r(".", 256);
  RrList keys_r = Join(ksk_r.Dnskey(), zsk_r.Dnskey());
  tree.t.Set("", LDNS_RR_TYPE_DNSKEY, tree.Signed(keys_r, ksk_r), RrList());
  tree.t.Set("test", LDNS_RR_TYPE_DS, tree.Signed(Ds(tree.ksk_t), zsk_r), RrList());
  auto res = tree.Validator(Ds(ksk_r));
  DnsAnswer a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(Mentions(a, ".: trust anchor -> DNSKEY " + std::to_string(ksk_r.tag())));
  CHECK(Mentions(a, "test: DS"));
  CHECK(res->Lookup({"mx.ins.test", RrType::kA}).dnssec == DnssecStatus::kInsecure);
  CHECK(tree.t.Asked("", LDNS_RR_TYPE_DNSKEY) == 1);
  // test.'s DS signed by a key that is not the root's: bogus below.
  Key stranger(".", 256);
  tree.t.Set("test", LDNS_RR_TYPE_DS, tree.Signed(Ds(tree.ksk_t), stranger), RrList());
  auto res2 = tree.Validator(Ds(ksk_r));
  CHECK(res2->Lookup({"mx.sec.test", RrType::kA}).dnssec == DnssecStatus::kBogus);
}

// --- DNAME (RFC 6672): the synthesized CNAME is unsigned, the DNAME carries the proof ---

TEST_CASE("local validator: a CNAME synthesized from a signed DNAME takes the DNAME's status") {
  TestTree tree;
  auto res = tree.Validator(Ds(tree.ksk_t));
  RrList dname = tree.Signed(Records("dn.sec.test. 300 IN DNAME sec.test.\n"), tree.zsk_s);
  RrList a_mx = tree.Signed(Records("mx.sec.test. 300 IN A 192.0.2.1\n"), tree.zsk_s);
  RrList cname = Records("mx.dn.sec.test. 300 IN CNAME mx.sec.test.\n");
  tree.t.Set("mx.dn.sec.test", LDNS_RR_TYPE_A, Join(Join(dname, cname), a_mx), RrList());
  DnsAnswer a = res->Lookup({"mx.dn.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(a.outcome == DnsOutcome::kRecords);
  CHECK(a.chain == std::vector<std::string>{"mx.sec.test"});
  REQUIRE(a.validation.size() == 2);
  CHECK(Contains(a.validation[0], "secure: CNAME mx.dn.sec.test: DNAME dn.sec.test -> sec.test, signed by sec.test key " +
                                      std::to_string(tree.zsk_s.tag())));
  CHECK(Contains(a.validation[1], "secure: A mx.sec.test"));
  // The walk stops at the DNAME's signer: no DS query below the DNAME owner.
  CHECK(tree.t.Asked("dn.sec.test", LDNS_RR_TYPE_DS) == 0);
  CHECK(tree.t.Asked("mx.dn.sec.test", LDNS_RR_TYPE_DS) == 0);

  // A resolver that leaves the CNAME out: the hop is synthesized here, same proof.
  tree.t.Set("mx.dn.sec.test", LDNS_RR_TYPE_A, Join(dname, a_mx), RrList());
  a = res->Lookup({"mx.dn.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(a.chain == std::vector<std::string>{"mx.sec.test"});
  CHECK(Mentions(a, "DNAME dn.sec.test -> sec.test, signed by sec.test"));

  // A signature on the synthesized CNAME itself is checked as any CNAME's.
  tree.t.Set("mx.dn.sec.test", LDNS_RR_TYPE_A, Join(Join(dname, tree.Signed(cname, tree.zsk_s)), a_mx), RrList());
  a = res->Lookup({"mx.dn.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(Contains(a.validation[0], "secure: CNAME mx.dn.sec.test: signed by sec.test"));

  // Two DNAMEs in one answer, each explaining its own hop.
  RrList chain = Join(tree.Signed(Records("x.sec.test. 300 IN DNAME dn.sec.test.\n"), tree.zsk_s), dname);
  chain.Append(Records("mx.x.sec.test. 300 IN CNAME mx.dn.sec.test.\nmx.dn.sec.test. 300 IN CNAME mx.sec.test.\n"));
  tree.t.Set("mx.x.sec.test", LDNS_RR_TYPE_A, Join(chain, a_mx), RrList());
  a = res->Lookup({"mx.x.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  CHECK(a.chain == std::vector<std::string>{"mx.dn.sec.test", "mx.sec.test"});
  REQUIRE(a.validation.size() == 3);
  CHECK(Contains(a.validation[0], "secure: CNAME mx.x.sec.test: DNAME x.sec.test -> dn.sec.test, signed by"));
  CHECK(Contains(a.validation[1], "secure: CNAME mx.dn.sec.test: DNAME dn.sec.test -> sec.test, signed by"));
}

TEST_CASE("local validator: a DNAME that does not explain the CNAME, or cannot be trusted, is bogus") {
  TestTree tree;
  auto res = tree.Validator(Ds(tree.ksk_t));
  RrList dname = tree.Signed(Records("dn.sec.test. 300 IN DNAME sec.test.\n"), tree.zsk_s);
  RrList a_mx = tree.Signed(Records("mx.sec.test. 300 IN A 192.0.2.1\n"), tree.zsk_s);

  // Mismatch: the unsigned CNAME points elsewhere than the DNAME says.
  tree.t.Set("mx.dn.sec.test", LDNS_RR_TYPE_A,
             Join(Join(dname, Records("mx.dn.sec.test. 300 IN CNAME mx.ins.test.\n")),
                  Records("mx.ins.test. 300 IN A 192.0.2.2\n")),
             RrList());
  DnsAnswer a = res->Lookup({"mx.dn.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK(a.records.empty());
  CHECK(Contains(a.reason, "not what DNAME dn.sec.test -> sec.test makes of it (mx.sec.test, not mx.ins.test)"));

  // The substitution would exceed 255 octets (a server answers YXDOMAIN):
  // a CNAME claimed for it is forged.
  const std::string l63a(63, 'a'), l63b(63, 'b'), l63c(63, 'c'), l63d(63, 'd');
  const std::string longq = l63a + "." + l63b + ".dn.sec.test";
  RrList longdname =
      tree.Signed(Records("dn.sec.test. 300 IN DNAME " + l63c + "." + l63d + ".sec.test.\n"), tree.zsk_s);
  tree.t.Set(longq, LDNS_RR_TYPE_A, Join(Join(longdname, Records(longq + ". 300 IN CNAME mx.sec.test.\n")), a_mx),
             RrList());
  a = res->Lookup({longq, RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK(Contains(a.reason, "longer than 255 octets"));

  // A wildcard DNAME (*.wd.sec.test expanded at x.wd.sec.test): RFC 6672,
  // its expansion cannot be validated.
  RrList wild = Records("*.wd.sec.test. 300 IN DNAME sec.test.\n");
  RrList wsig = Sign(wild, {&tree.zsk_s});
  Rename(&wild, "x.wd.sec.test");
  Rename(&wsig, "x.wd.sec.test");
  tree.t.Set("mx.x.wd.sec.test", LDNS_RR_TYPE_A,
             Join(Join(Join(wild, wsig), Records("mx.x.wd.sec.test. 300 IN CNAME mx.sec.test.\n")), a_mx),
             SignEach(tree.nsec_s.Select(0, "*.w.sec.test"), tree.zsk_s));  // proves x.wd.sec.test does not exist
  a = res->Lookup({"mx.x.wd.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK(Contains(a.reason, "CNAME mx.x.wd.sec.test: DNAME x.wd.sec.test -> sec.test, a wildcard expansion"));

  // The DNAME's signature stripped in the secure zone (dn.sec.test is
  // proven not to be a zone cut): bogus, never insecure.
  RrList nx = tree.nsec_s.Select(0, "alias.sec.test");
  nx.Append(tree.nsec_s.Select(0, "sec.test"));
  tree.t.Set("dn.sec.test", LDNS_RR_TYPE_DS, RrList(), tree.SignedNsec(nx, tree.soa_s, tree.zsk_s),
             LDNS_RCODE_NXDOMAIN);
  tree.t.Set("mx.dn.sec.test", LDNS_RR_TYPE_A,
             Join(Join(Records("dn.sec.test. 300 IN DNAME sec.test.\n"),
                       Records("mx.dn.sec.test. 300 IN CNAME mx.sec.test.\n")),
                  a_mx),
             RrList());
  a = res->Lookup({"mx.dn.sec.test", RrType::kA});
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK(Contains(a.reason, "DNAME dn.sec.test -> sec.test, no signature in the secure zone sec.test"));

  // A DNAME signed by a key that is not in sec.test's DNSKEY set.
  Key stranger("sec.test", 256);
  tree.t.Set("mx.dn.sec.test", LDNS_RR_TYPE_A,
             Join(Join(tree.Signed(Records("dn.sec.test. 300 IN DNAME sec.test.\n"), stranger),
                       Records("mx.dn.sec.test. 300 IN CNAME mx.sec.test.\n")),
                  a_mx),
             RrList());
  CHECK(res->Lookup({"mx.dn.sec.test", RrType::kA}).dnssec == DnssecStatus::kBogus);
}

TEST_CASE("local validator: a DNAME in an insecure zone makes its hop insecure") {
  TestTree tree;
  auto res = tree.Validator(Ds(tree.ksk_t));
  // ins.test is an insecure delegation: its unsigned DNAME redirects into
  // the secure sec.test; the answer is only as strong as its weakest hop.
  tree.t.Set("mx.dn.ins.test", LDNS_RR_TYPE_A,
             Join(Join(Records("dn.ins.test. 300 IN DNAME sec.test.\n"),
                       Records("mx.dn.ins.test. 300 IN CNAME mx.sec.test.\n")),
                  tree.Signed(Records("mx.sec.test. 300 IN A 192.0.2.1\n"), tree.zsk_s)),
             RrList());
  DnsAnswer a = res->Lookup({"mx.dn.ins.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kInsecure, a.reason);
  CHECK(a.outcome == DnsOutcome::kRecords);
  REQUIRE(a.validation.size() == 2);
  CHECK(Contains(a.validation[0], "insecure: CNAME mx.dn.ins.test: DNAME dn.ins.test -> sec.test, "));
  CHECK(Contains(a.validation[0], "insecure delegation"));
  CHECK(Contains(a.validation[1], "secure: A mx.sec.test"));
  // A mismatch is bogus even there.
  tree.t.Set("mx.dn.ins.test", LDNS_RR_TYPE_A,
             Join(Join(Records("dn.ins.test. 300 IN DNAME sec.test.\n"),
                       Records("mx.dn.ins.test. 300 IN CNAME mx.ins.test.\n")),
                  Records("mx.ins.test. 300 IN A 192.0.2.2\n")),
             RrList());
  CHECK(res->Lookup({"mx.dn.ins.test", RrType::kA}).dnssec == DnssecStatus::kBogus);
}

// --- Bounds on validation work (KeyTrap, NSEC3 hashing) and windows ---

namespace {

// `n` DNSKEY records with the key tag and algorithm of the RSA key `base`
// (KeyTrap): its public key with two 16-bit words of the modulus changed
// so that their sum, and so the tag, stays the same. Each is a well-formed
// RSA key that costs a full verification and verifies nothing.
RrList CollidingRsaKeys(const Key& base, size_t n) {
  RrList out;
  const ldns_rdf* pk = ldns_rr_rdf(base.rr(), 3);
  const uint8_t* d = ldns_rdf_data(pk);
  const size_t size = ldns_rdf_size(pk);
  REQUIRE(d[0] != 0);  // one-octet exponent length
  const size_t mod = 1 + d[0];
  // Word offsets inside the modulus, even in the RDATA (which the public
  // key starts at offset 4, so even in the key too), away from both ends.
  size_t p = mod + 100, q = mod + 150;
  if (p % 2) ++p, ++q;
  REQUIRE(q + 1 < size - 1);
  const int wp = d[p] << 8 | d[p + 1], wq = d[q] << 8 | d[q + 1];
  const int lo = std::max(0, wp + wq - 65535), hi = std::min(65535, wp + wq);
  REQUIRE(static_cast<size_t>(hi - lo) > n);
  for (int v = lo; out.size() < n; ++v) {
    if (v == wp) continue;
    std::vector<uint8_t> key(d, d + size);
    const int w = wp + wq - v;
    key[p] = static_cast<uint8_t>(v >> 8), key[p + 1] = static_cast<uint8_t>(v);
    key[q] = static_cast<uint8_t>(w >> 8), key[q + 1] = static_cast<uint8_t>(w);
    ldns_rr* rr = ldns_rr_clone(base.rr());
    ldns_rdf_deep_free(ldns_rr_set_rdf(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_B64, key.size(), key.data()), 3));
    REQUIRE(ldns_calc_keytag(rr) == base.tag());
    ldns_rr_list_push_rr(out.get(), rr);
  }
  return out;
}

// `n` distinct copies of the (first) RRSIG of `sigs`, each with its
// signature bytes altered: same key tag, algorithm and window, none valid.
RrList BrokenCopies(const RrList& sigs, size_t n) {
  RrList out;
  for (size_t i = 0; i < n; ++i) {
    ldns_rr* s = ldns_rr_clone(ldns_rr_list_rr(sigs.get(), 0));
    uint8_t* b = ldns_rdf_data(ldns_rr_rdf(s, 8));
    b[0] ^= static_cast<uint8_t>(1 + (i & 0x7f));
    b[1] ^= static_cast<uint8_t>(i >> 7);
    ldns_rr_list_push_rr(out.get(), s);
  }
  return out;
}

// A DNSKEY with the modulus of the RSA key `base` and a public exponent
// of `exponent_octets` octets (all ones), and `sig` re-tagged for it.
ldns_rr* RsaKeyWithExponent(const Key& base, size_t exponent_octets) {
  const ldns_rdf* pk = ldns_rr_rdf(base.rr(), 3);
  const uint8_t* d = ldns_rdf_data(pk);
  std::vector<uint8_t> key{static_cast<uint8_t>(exponent_octets)};
  key.insert(key.end(), exponent_octets, 0xff);
  key.insert(key.end(), d + 1 + d[0], d + ldns_rdf_size(pk));
  ldns_rr* rr = ldns_rr_clone(base.rr());
  ldns_rdf_deep_free(ldns_rr_set_rdf(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_B64, key.size(), key.data()), 3));
  return rr;
}

}  // namespace

TEST_CASE("dnssec: KeyTrap: colliding keys and many signatures stay within the work limits") {
  Key rsa("example.test", 256, LDNS_SIGN_RSASHA256, 2048);
  RrList a = Records(kA);
  RrList good = Sign(a, {&rsa});
  RrList colliding = CollidingRsaKeys(rsa, 500);
  RrList broken = BrokenCopies(good, 500);

  // 500 keys share the tag of 500 signatures: no key is tried at all.
  ValidationBudget budget;
  SigCheckOptions o = Opts();
  o.budget = &budget;
  SigResult r = VerifyRrset(a, broken, colliding, o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK_MESSAGE(budget.public_key_operations() <= kMaxSignatureChecksPerRrset, budget.public_key_operations());
  CHECK_MESSAGE(Contains(r.reason, "key-tag collision limit"), r.reason.substr(0, 300));
  CHECK(r.reason.size() <= kMaxReasonLength);

  // Within the collision limit, 500 bad signatures: at most 8 checks.
  RrList few = CollidingRsaKeys(rsa, kMaxKeyTagCollisions);
  ValidationBudget budget2;
  o.budget = &budget2;
  r = VerifyRrset(a, broken, few, o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK_MESSAGE(budget2.public_key_operations() <= kMaxSignatureChecksPerRrset, budget2.public_key_operations());
  CHECK_MESSAGE(Contains(r.reason, std::to_string(kMaxSignatureChecksPerRrset) + " signature checks"),
                r.reason.substr(0, 300));
  CHECK(r.reason.size() <= kMaxReasonLength);

  // Colliding keys within the limit do not hide the real one.
  RrList keys = CollidingRsaKeys(rsa, kMaxKeyTagCollisions - 1);
  keys.Append(rsa.Dnskey());
  ValidationBudget budget3;
  o.budget = &budget3;
  r = VerifyRrset(a, good, keys, o);
  CHECK_MESSAGE(r.status == SigStatus::kValid, r.reason);
  CHECK(budget3.public_key_operations() == kMaxKeyTagCollisions);
}

TEST_CASE("dnssec: failed signature checks are remembered briefly, reasons stay short") {
  Key zsk("example.test", 256);
  RrList a = Records(kA);
  RrList bad = BrokenCopies(Sign(a, {&zsk}), 1);
  VerifiedSignatures memo;
  ValidationBudget first, second;
  SigCheckOptions o = Opts();
  o.verified = &memo;
  o.budget = &first;
  CHECK(VerifyRrset(a, bad, zsk.Dnskey(), o).status == SigStatus::kBogus);
  CHECK(first.public_key_operations() == 1);
  CHECK(first.failures() == 1);
  o.budget = &second;
  SigResult r = VerifyRrset(a, bad, zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "does not verify"));
  CHECK(second.public_key_operations() == 0);
  CHECK(second.failures() == 1);
  // ... for a minute only.
  ValidationBudget later;
  o.budget = &later;
  o.now = kNow + VerifiedSignatures::kFailureMemorySeconds + 1;
  CHECK(VerifyRrset(a, bad, zsk.Dnskey(), o).status == SigStatus::kBogus);
  CHECK(later.public_key_operations() == 1);

  // Signatures by keys we do not have, named one by one, stay short too.
  Key other("example.test", 256);
  RrList many;
  for (int i = 0; i < 300; ++i) {
    RrList s = Sign(a, {&other}, kNow - 3600 - i);
    many.Append(s);
  }
  r = VerifyRrset(a, many, zsk.Dnskey(), Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK(r.reason.size() <= kMaxReasonLength);
  CHECK(Contains(r.reason, "more"));
}

TEST_CASE("dnssec: RSA keys with an oversized exponent are not used") {
  Key rsa("example.test", 256, LDNS_SIGN_RSASHA256, 2048);
  RrList a = Records(kA);
  for (size_t octets : {size_t{8}, size_t{255}}) {
    ldns_rr* key = RsaKeyWithExponent(rsa, octets);
    RrList keys;
    ldns_rr_list_push_rr(keys.get(), key);
    RrList sigs = Sign(a, {&rsa});
    ldns_rr* sig = ldns_rr_list_rr(sigs.get(), 0);
    ldns_rdf_deep_free(
        ldns_rr_set_rdf(sig, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, ldns_calc_keytag(key)), 6));
    ValidationBudget budget;
    SigCheckOptions o = Opts();
    o.budget = &budget;
    SigResult r = VerifyRrset(a, sigs, keys, o);
    CHECK(r.status == SigStatus::kBogus);
    if (octets * 8 <= kMaxRsaExponentBits) {
      CHECK(budget.public_key_operations() == 1);  // tried (and wrong)
    } else {
      CHECK(budget.public_key_operations() == 0);
      CHECK_MESSAGE(Contains(r.reason, "exponent"), r.reason);
    }
  }
}

TEST_CASE("dnssec: RRSIG windows: inception after expiration, serial number arithmetic") {
  Key zsk("example.test", 256);
  RrList a = Records(kA);
  SigCheckOptions o = Opts();
  o.skew = 300;
  // Both ends inside the skew allowance, in the wrong order: invalid,
  // rejected before any arithmetic on the window.
  SigResult r = VerifyRrset(a, Sign(a, {&zsk}, kNow + 100, kNow - 100), zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK_MESSAGE(Contains(r.reason, "inception"), r.reason);
  r = VerifyRrset(a, Sign(a, {&zsk}, kNow + 1, kNow), zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  // RFC 4034 §3.1.5: the 32-bit times are serial numbers (RFC 1982). A
  // window across the 2106 wrap is valid then...
  const int64_t late = int64_t{0xFFFFFF00};
  o.now = late;
  r = VerifyRrset(a, Sign(a, {&zsk}, late - 3600, late + 86400), zsk.Dnskey(), o);
  CHECK_MESSAGE(r.status == SigStatus::kValid, r.reason);
  CHECK(r.ttl_limit == 300);
  r = VerifyRrset(a, Sign(a, {&zsk}, late - 86400, late - 3600), zsk.Dnskey(), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK(Contains(r.reason, "expired"));
}

TEST_CASE("dnssec: NSEC3 hashing and denial records are bounded") {
  Key zsk("example.test", 256);
  RrList keys = zsk.Dnskey();
  // The costliest chain RFC 9276 lets through: 150 iterations.
  RrList costly = SignEach(Nsec3Chain(kNsec3Names, 0, 150), zsk);
  std::string deep = "nosuch.example.test";
  for (int i = 0; i < 40; ++i) deep = "x" + std::to_string(i) + "." + deep;
  ValidationBudget budget;
  SigCheckOptions o = Opts();
  o.budget = &budget;
  DenialResult d = VerifyDenial(deep, LDNS_RR_TYPE_TLSA, Denial::kNxDomain, costly, keys, o);
  CHECK_MESSAGE(d.status == SigStatus::kValid, d.reason);
  // Each name is hashed once: qname and its 41 ancestors below the zone,
  // the zone (closest encloser) and its wildcard.
  CHECK(budget.nsec3_hashes() <= 44);
  CHECK(budget.nsec3_rounds() == budget.nsec3_hashes() * 151);

  // Past the lookup's allowance of hash rounds, the proof is not made.
  ValidationBudget small(kMaxPublicKeyOperationsPerLookup, kMaxSignatureFailuresPerLookup, 20 * 151);
  o.budget = &small;
  d = VerifyDenial(deep, LDNS_RR_TYPE_TLSA, Denial::kNxDomain, costly, keys, o);
  CHECK(d.status == SigStatus::kBogus);
  CHECK_MESSAGE(Contains(d.reason, "NSEC3 hash rounds"), d.reason);
  CHECK(small.nsec3_rounds() <= 20 * 151);
  o.budget = nullptr;

  // More NSEC/NSEC3 RRsets than any proof needs: refused.
  std::string text;
  std::vector<std::string> names = {"example.test"};
  for (size_t i = 0; i < kMaxDenialRrsets + 2; ++i) names.push_back("n" + std::to_string(100 + i) + ".example.test");
  for (size_t i = 0; i < names.size(); ++i)
    text += names[i] + ". 300 IN NSEC " + names[(i + 1) % names.size()] + ". A RRSIG NSEC\n";
  RrList crowd = SignEach(Records(text), zsk);
  d = VerifyDenial("n100a.example.test", LDNS_RR_TYPE_A, Denial::kNxDomain, crowd, keys, Opts());
  CHECK(d.status == SigStatus::kBogus);
  CHECK_MESSAGE(Contains(d.reason, "NSEC/NSEC3 RRsets"), d.reason);
}

TEST_CASE("local validator: one lookup's signature failures are bounded") {
  TestTree tree;
  std::vector<ValidationBudget> seen;
  LocalValidatorOptions lo;
  lo.description = "local validation (test)";
  lo.now = [] { return kNow; };
  lo.on_lookup_work = [&](const ValidationBudget& b) { seen.push_back(b); };
  auto res = NewLocalValidatingResolver(&tree.t, Ds(tree.ksk_t), lo);
  // Each NSEC RRset of an NXDOMAIN proof carries 8 signatures that do not verify.
  RrList auth = tree.Signed(tree.soa_s, tree.zsk_s);
  for (const char* owner : {"sec.test", "alias.sec.test", "mx.sec.test", "*.w.sec.test"}) {
    RrList nsec = tree.nsec_s.Select(0, owner);
    auth.Append(nsec);
    auth.Append(BrokenCopies(Sign(nsec, {&tree.zsk_s}), kMaxSignatureChecksPerRrset));
  }
  tree.t.Set("nosuch.sec.test", LDNS_RR_TYPE_TLSA, RrList(), auth, LDNS_RCODE_NXDOMAIN);
  DnsAnswer a = res->Lookup({"nosuch.sec.test", RrType::kTLSA});
  CHECK(a.dnssec == DnssecStatus::kBogus);
  CHECK_MESSAGE(Contains(a.reason, "failed signature checks for one lookup"), a.reason);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].failures() <= kMaxSignatureFailuresPerLookup);
  CHECK(seen[0].public_key_operations() <= kMaxSignatureFailuresPerLookup + 3);  // + DNSKEY, DS, DNSKEY
  // A good lookup after it is not affected: each lookup has its own allowance.
  a = res->Lookup({"mx.sec.test", RrType::kA});
  CHECK_MESSAGE(a.dnssec == DnssecStatus::kSecure, a.reason);
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].failures() == 0);
}

TEST_CASE("dnssec: DNSKEY sets: colliding keys and DS-matched keys that fail are bounded") {
  Key ksk("example.test", 257, LDNS_SIGN_RSASHA256, 2048);
  // The DS's tag and algorithm match the KSK and colliding keys; within
  // the collision limit the KSK is found...
  RrList keys = Join(ksk.Dnskey(), CollidingRsaKeys(ksk, kMaxKeyTagCollisions - 1));
  SigResult r = VerifyDnskeys(keys, Sign(keys, {&ksk}), Ds(ksk), Opts());
  CHECK_MESSAGE(r.status == SigStatus::kValid, r.reason);
  // ... past it, the DS is not tried at all.
  keys = Join(ksk.Dnskey(), CollidingRsaKeys(ksk, 500));
  ValidationBudget budget;
  SigCheckOptions o = Opts();
  o.budget = &budget;
  r = VerifyDnskeys(keys, Sign(keys, {&ksk}), Ds(ksk), o);
  CHECK(r.status == SigStatus::kBogus);
  CHECK_MESSAGE(Contains(r.reason, "key-tag collision limit"), r.reason);
  CHECK(budget.public_key_operations() == 0);
  CHECK(r.reason.size() <= kMaxReasonLength);

  // DS records that match keys which do not sign the set: after
  // kMaxDsMatchFailures of them, the one that would is not reached.
  std::vector<std::unique_ptr<Key>> others;
  RrList set = ksk.Dnskey(), ds;
  for (size_t i = 0; i < kMaxDsMatchFailures; ++i) {
    others.push_back(std::make_unique<Key>("example.test", 257));
    set.Append(others.back()->Dnskey());
    ds.Append(Ds(*others.back()));
  }
  RrList sigs = Sign(set, {&ksk});
  RrList ds_first = Ds(ksk);
  ds_first.Append(ds);
  CHECK(VerifyDnskeys(set, sigs, ds_first, Opts()).status == SigStatus::kValid);
  ds.Append(Ds(ksk));
  r = VerifyDnskeys(set, sigs, ds, Opts());
  CHECK(r.status == SigStatus::kBogus);
  CHECK_MESSAGE(Contains(r.reason, "limit per DNSKEY set"), r.reason);
}
