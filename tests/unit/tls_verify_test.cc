// tls_verify_test.cc - DANE and PKIX authentication of certificate chains.
//
// Fixtures: tests/unit/data/tls (made by make.sh there; see its header for
// what each certificate is). The digests in digests.txt were computed with
// openssl, so TLSA data here does not come from the code under test.
#include <doctest/doctest.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>

#include "mxsec/smtp/tls_verify.h"

#ifndef MXSEC_TEST_DATA_DIR
#error "MXSEC_TEST_DATA_DIR must be the absolute path of tests/unit/data"
#endif

using namespace mxsec;

namespace {

// Inside every fixture's validity; the expired ones ended in 2021.
constexpr int64_t kNow = 1893456000;        // 2030-01-01
constexpr int64_t kFarFuture = 7258118400;  // 2200-01-01, after every fixture
constexpr int64_t kPast = 1262304000;       // 2010-01-01, before every fixture

std::string Path(const std::string& name) { return std::string(MXSEC_TEST_DATA_DIR) + "/tls/" + name; }

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

DerCertificate Der(const std::string& name) {
  std::string pem = ReadFile(Path(name));
  REQUIRE_MESSAGE(!pem.empty(), "fixture " << name << " missing");
  gnutls_x509_crt_t crt = nullptr;
  REQUIRE(gnutls_x509_crt_init(&crt) == 0);
  gnutls_datum_t in{reinterpret_cast<unsigned char*>(pem.data()), static_cast<unsigned>(pem.size())};
  int rc = gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_PEM);
  gnutls_datum_t out{nullptr, 0};
  if (rc == 0) rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &out);
  gnutls_x509_crt_deinit(crt);
  REQUIRE_MESSAGE(rc == 0, "fixture " << name << ": " << gnutls_strerror(rc));
  DerCertificate der(out.data, out.data + out.size);
  gnutls_free(out.data);
  return der;
}

std::vector<uint8_t> Unhex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// From digests.txt: Digest("leaf.pem", "spki", "sha256").
std::string DigestHex(const std::string& file, const std::string& what, const std::string& alg) {
  static const std::map<std::string, std::string> table = [] {
    std::map<std::string, std::string> m;
    std::istringstream in(ReadFile(Path("digests.txt")));
    std::string f, w, a, h;
    while (in >> f >> w >> a >> h) m[f + " " + w + " " + a] = h;
    return m;
  }();
  auto it = table.find(file + " " + what + " " + alg);
  REQUIRE_MESSAGE(it != table.end(), "no digest for " << file << " " << what << " " << alg);
  return it->second;
}

TlsaRecord Rec(uint8_t usage, uint8_t selector, uint8_t matching, std::vector<uint8_t> data) {
  TlsaRecord r;
  r.usage = usage;
  r.selector = selector;
  r.matching = matching;
  r.data = std::move(data);
  return r;
}

// A digest record for a fixture: Tlsa(3, 1, 1, "leaf.pem").
TlsaRecord Tlsa(uint8_t usage, uint8_t selector, uint8_t matching, const std::string& file) {
  return Rec(usage, selector, matching,
             Unhex(DigestHex(file, selector == 0 ? "cert" : "spki", matching == 1 ? "sha256" : "sha512")));
}

std::vector<DerCertificate> Chain(std::initializer_list<const char*> files) {
  std::vector<DerCertificate> c;
  for (const char* f : files) c.push_back(Der(f));
  return c;
}

VerifyResult Dane(std::vector<DerCertificate> chain, std::vector<TlsaRecord> tlsa,
                  std::vector<std::string> names = {"mx.example.org"}, int64_t now = kNow) {
  DaneVerifyInput in;
  in.chain = std::move(chain);
  in.tlsa = std::move(tlsa);
  in.reference_names = std::move(names);
  in.now = now;
  return VerifyDane(in);
}

VerifyResult Pkix(std::vector<DerCertificate> chain, const std::string& ca_file, const std::string& host,
                  int64_t now = kNow) {
  PkixVerifyInput in;
  in.chain = std::move(chain);
  in.ca_file = ca_file;
  in.host = host;
  in.now = now;
  return VerifyPkix(in);
}

// SubjectPublicKeyInfo DER of a certificate, through GnuTLS (checked against
// openssl's digest where it matters).
std::vector<uint8_t> SpkiOf(const DerCertificate& der) {
  gnutls_x509_crt_t crt = nullptr;
  gnutls_pubkey_t key = nullptr;
  REQUIRE(gnutls_x509_crt_init(&crt) == 0);
  REQUIRE(gnutls_pubkey_init(&key) == 0);
  gnutls_datum_t in{const_cast<unsigned char*>(der.data()), static_cast<unsigned>(der.size())};
  gnutls_datum_t spki{nullptr, 0};
  int rc = gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_DER);
  if (rc == 0) rc = gnutls_pubkey_import_x509(key, crt, 0);
  if (rc == 0) rc = gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &spki);
  gnutls_pubkey_deinit(key);
  gnutls_x509_crt_deinit(crt);
  REQUIRE(rc == 0);
  std::vector<uint8_t> out(spki.data, spki.data + spki.size);
  gnutls_free(spki.data);
  return out;
}

std::string Sha256Hex(const std::vector<uint8_t>& data) {
  unsigned char d[32];
  REQUIRE(gnutls_hash_fast(GNUTLS_DIG_SHA256, data.data(), data.size(), d) == 0);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::vector<uint8_t> Flip(std::vector<uint8_t> v) {
  v.back() ^= 1;
  return v;
}

}  // namespace

TEST_CASE("tls_verify: DANE-EE matches the leaf with every selector and matching type") {
  const auto chain = Chain({"leaf.pem", "intermediate.pem"});
  const DerCertificate leaf = chain[0];
  for (const TlsaRecord& t : {Tlsa(3, 1, 1, "leaf.pem"), Tlsa(3, 0, 1, "leaf.pem"), Tlsa(3, 1, 2, "leaf.pem"),
                              Tlsa(3, 0, 2, "leaf.pem"), Rec(3, 0, 0, leaf)}) {
    CAPTURE(t.ToString());
    VerifyResult r = Dane(chain, {t});
    CHECK(r.ok);
    REQUIRE(r.matched.has_value());
    CHECK(*r.matched == t);
    CHECK(r.matched_depth == 0);
    CHECK(r.detail.find("DANE-EE") != std::string::npos);
    CHECK(r.failure_type.empty());
  }
}

TEST_CASE("tls_verify: DANE-EE 3 1 0 compares the whole SubjectPublicKeyInfo") {
  const std::vector<uint8_t> spki = SpkiOf(Der("leaf.pem"));
  REQUIRE(Sha256Hex(spki) == DigestHex("leaf.pem", "spki", "sha256"));  // agrees with openssl
  CHECK(Dane(Chain({"leaf.pem"}), {Rec(3, 1, 0, spki)}).ok);
  CHECK_FALSE(Dane(Chain({"leaf.pem"}), {Rec(3, 1, 0, Flip(spki))}).ok);
  // A certificate is not a SubjectPublicKeyInfo.
  CHECK_FALSE(Dane(Chain({"leaf.pem"}), {Rec(3, 1, 0, Der("leaf.pem"))}).ok);
}

TEST_CASE("tls_verify: DANE-EE mismatch fails, and only the leaf is compared") {
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem"}), {Tlsa(3, 1, 1, "wildcard.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "validation-failure");
  CHECK_FALSE(r.matched.has_value());
  CHECK(r.detail.find("does not match the leaf") != std::string::npos);

  // The intermediate's key is in the chain, but usage 3 is about the leaf.
  r = Dane(Chain({"leaf.pem", "intermediate.pem"}), {Tlsa(3, 1, 1, "intermediate.pem")});
  CHECK_FALSE(r.ok);

  // One flipped bit.
  r = Dane(Chain({"leaf.pem"}), {Rec(3, 0, 0, Flip(Der("leaf.pem")))});
  CHECK_FALSE(r.ok);
}

TEST_CASE("tls_verify: DANE-EE ignores dates and names (expired self-signed leaf)") {
  VerifyResult r = Dane(Chain({"selfsigned-expired.pem"}), {Tlsa(3, 1, 1, "selfsigned-expired.pem")},
                        {"unrelated.example.com"}, kNow);
  CHECK(r.ok);
  r = Dane(Chain({"selfsigned-expired.pem"}), {Tlsa(3, 0, 1, "selfsigned-expired.pem")}, {}, kPast);
  CHECK(r.ok);
}

TEST_CASE("tls_verify: DANE-TA 2 0 1 on the root with the right, wrong and several names") {
  const auto chain = Chain({"leaf.pem", "intermediate.pem", "root.pem"});
  VerifyResult r = Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"mx.example.org"});
  CHECK(r.ok);
  CHECK(r.matched_depth == 2);
  CHECK(r.detail.find("DANE-TA") != std::string::npos);
  CHECK(r.detail.find("mx.example.org") != std::string::npos);

  r = Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"other.example.org"});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");
  CHECK_FALSE(r.matched.has_value());

  // Any one reference name is enough; a trailing dot and case do not matter.
  r = Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"example.org", "MX.Example.ORG."});
  CHECK(r.ok);

  r = Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");
}

TEST_CASE("tls_verify: DANE-TA names never match IP addresses") {
  // leaf.pem has iPAddress 192.0.2.1 in its subjectAltName.
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), {Tlsa(2, 0, 1, "root.pem")},
                        {"192.0.2.1", "[192.0.2.1]"});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");
}

TEST_CASE("tls_verify: DANE-TA wildcard covers exactly one label") {
  const auto chain = Chain({"wildcard.pem", "intermediate.pem", "root.pem"});
  CHECK(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"a.example.net"}).ok);
  CHECK_FALSE(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"a.b.example.net"}).ok);
  CHECK_FALSE(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"example.net"}).ok);
  CHECK(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"a.b.example.net"}).failure_type == "certificate-host-mismatch");
}

TEST_CASE("tls_verify: DANE-TA with the intermediate as trust anchor (2 1 1)") {
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), {Tlsa(2, 1, 1, "intermediate.pem")});
  CHECK(r.ok);
  CHECK(r.matched_depth == 1);
  r = Dane(Chain({"leaf.pem", "intermediate.pem"}), {Tlsa(2, 1, 2, "intermediate.pem")});
  CHECK(r.ok);
  CHECK(r.matched_depth == 1);
}

TEST_CASE("tls_verify: DANE-TA does not depend on the order of the certificates after the leaf") {
  VerifyResult r = Dane(Chain({"leaf.pem", "root.pem", "intermediate.pem"}), {Tlsa(2, 0, 1, "root.pem")});
  CHECK(r.ok);
  CHECK(r.matched_depth == 1);
}

TEST_CASE("tls_verify: DANE-TA TLSA record on the leaf itself is not a trust anchor") {
  // Usage 2 looks at depth >= 1 only.
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), {Tlsa(2, 0, 1, "leaf.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "validation-failure");
}

TEST_CASE("tls_verify: DANE-TA rejects a forged chain with the genuine trust anchor appended") {
  // attacker-ca.pem even carries the genuine root's subject DN; only the
  // signatures tell them apart.
  VerifyResult r =
      Dane(Chain({"attacker-leaf.pem", "attacker-ca.pem", "root.pem"}), {Tlsa(2, 0, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-not-trusted");
  CHECK_FALSE(r.matched.has_value());

  r = Dane(Chain({"attacker-leaf.pem", "attacker-ca.pem", "root.pem"}), {Tlsa(2, 1, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  r = Dane(Chain({"attacker-leaf.pem", "root.pem"}), {Tlsa(2, 0, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  r = Dane(Chain({"attacker-leaf.pem", "attacker-ca.pem", "intermediate.pem", "root.pem"}),
           {Tlsa(2, 0, 1, "root.pem"), Tlsa(2, 1, 1, "intermediate.pem")});
  CHECK_FALSE(r.ok);
  // The genuine root sent in the record itself does not help either.
  r = Dane(Chain({"attacker-leaf.pem", "attacker-ca.pem"}), {Rec(2, 0, 0, Der("root.pem"))});
  CHECK_FALSE(r.ok);
  // Sanity: the same records accept the genuine chain.
  CHECK(Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), {Tlsa(2, 0, 1, "root.pem")}).ok);
}

TEST_CASE("tls_verify: DANE-TA 2 0 0 uses the certificate in the record when the server does not send it") {
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem"}), {Rec(2, 0, 0, Der("root.pem"))});
  CHECK(r.ok);
  CHECK(r.matched_depth == -1);
  CHECK(Dane(Chain({"leaf.pem"}), {Rec(2, 0, 0, Der("intermediate.pem"))}).ok);
  // Sent anyway: found in the chain.
  r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), {Rec(2, 0, 0, Der("root.pem"))});
  CHECK(r.ok);
  CHECK(r.matched_depth == 2);
  // Not a certificate.
  r = Dane(Chain({"leaf.pem", "intermediate.pem"}), {Rec(2, 0, 0, {0x30, 0x03, 0x02, 0x01, 0x01})});
  CHECK_FALSE(r.ok);
  CHECK(r.detail.find("no parsable certificate") != std::string::npos);
  // The record's TA must still be the one the path leads to.
  CHECK_FALSE(Dane(Chain({"leaf.pem", "intermediate.pem"}), {Rec(2, 0, 0, Der("old-root.pem"))}).ok);
}

TEST_CASE("tls_verify: DANE-TA 2 1 0 works with the TA in the chain, a bare key alone is unsupported") {
  const std::vector<uint8_t> spki_der = SpkiOf(Der("root.pem"));
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), {Rec(2, 1, 0, spki_der)});
  CHECK(r.ok);
  CHECK(r.matched_depth == 2);
  r = Dane(Chain({"leaf.pem", "intermediate.pem"}), {Rec(2, 1, 0, spki_der)});
  CHECK_FALSE(r.ok);
  CHECK(r.detail.find("not supported") != std::string::npos);
}

TEST_CASE("tls_verify: DANE-TA checks the dates of the path against now") {
  // Expired leaf signed by the root.
  VerifyResult r = Dane(Chain({"expired.pem", "root.pem"}), {Tlsa(2, 0, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");
  CHECK(r.detail.find("expired at 2021-01-01T00:00:00Z") != std::string::npos);

  // Valid leaf under an expired intermediate.
  r = Dane(Chain({"under-expired-int.pem", "intermediate-expired.pem", "root.pem"}), {Tlsa(2, 0, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");
  CHECK(r.detail.find("mxsec expired intermediate") != std::string::npos);

  // The clock is the caller's: the same good chain fails in 2200 and in 2010.
  const auto chain = Chain({"leaf.pem", "intermediate.pem", "root.pem"});
  CHECK(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"mx.example.org"}, kNow).ok);
  r = Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"mx.example.org"}, kFarFuture);
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");
  r = Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"mx.example.org"}, kPast);
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");
  CHECK(r.detail.find("not valid before") != std::string::npos);

  // The trust anchor's own dates count too (root-cross-expired has the
  // root's key but expired in 2021).
  r = Dane(Chain({"leaf.pem", "intermediate.pem", "root-cross-expired.pem"}), {Tlsa(2, 0, 1, "root-cross-expired.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");
}

TEST_CASE("tls_verify: only the dates of certificates on the verified path count") {
  // An expired copy of the trust anchor (same name and key) sent after the
  // anchor is not on the path.
  VerifyResult r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem", "root-cross-expired.pem"}),
                        {Tlsa(2, 0, 1, "root.pem")});
  CHECK(r.ok);
  CHECK(r.matched_depth == 2);
  // Nor does an unrelated expired certificate the server appends.
  r = Dane(Chain({"leaf.pem", "intermediate.pem", "root.pem", "selfsigned-expired.pem"}), {Tlsa(2, 0, 1, "root.pem")});
  CHECK(r.ok);
  r = Pkix(Chain({"leaf.pem", "intermediate.pem", "selfsigned-expired.pem"}), Path("root.pem"), "mx.example.org");
  CHECK(r.ok);
}

TEST_CASE("tls_verify: a certificate sent beyond the trust anchor does not hide it") {
  // GnuTLS alone follows intermediate -> cross-signed root and misses the
  // intermediate trust anchor; the chain up to the anchor verifies.
  const auto chain = Chain({"leaf.pem", "intermediate.pem", "root-cross-expired.pem"});
  VerifyResult r = Dane(chain, {Tlsa(2, 1, 1, "intermediate.pem")});
  CHECK(r.ok);
  CHECK(r.matched_depth == 1);
  CHECK(Pkix(chain, Path("intermediate.pem"), "mx.example.org").ok);
  // Still no way around the anchor: the attacker's chain plus everything
  // genuine fails.
  r = Dane(Chain({"attacker-leaf.pem", "intermediate.pem", "attacker-ca.pem", "root-cross-expired.pem", "root.pem"}),
           {Tlsa(2, 1, 1, "intermediate.pem"), Tlsa(2, 0, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-not-trusted");
  CHECK_FALSE(Pkix(Chain({"attacker-leaf.pem", "attacker-ca.pem", "intermediate.pem", "root.pem"}),
                   Path("intermediate.pem"), "mx.example.org")
                  .ok);
}

TEST_CASE("tls_verify: ApplyDigestAgility keeps the strongest digest per (usage, selector)") {
  const auto d32 = std::vector<uint8_t>(32, 1);
  const auto d64 = std::vector<uint8_t>(64, 2);
  const auto full = std::vector<uint8_t>(10, 3);
  std::vector<TlsaRecord> in = {Rec(3, 1, 1, d32), Rec(3, 1, 2, d64), Rec(3, 0, 1, d32),
                                Rec(3, 1, 0, full), Rec(2, 1, 1, d32), Rec(2, 0, 2, d64)};
  std::vector<TlsaRecord> out = ApplyDigestAgility(in);
  // 3 1 1 dropped (3 1 2 present); 3 0 1 and 2 1 1 have no stronger
  // sibling in their group; full data always stays.
  std::vector<TlsaRecord> want = {Rec(3, 1, 2, d64), Rec(3, 0, 1, d32), Rec(3, 1, 0, full), Rec(2, 1, 1, d32),
                                  Rec(2, 0, 2, d64)};
  CHECK(out == want);
  CHECK(ApplyDigestAgility({}).empty());
  CHECK(ApplyDigestAgility({Rec(3, 1, 1, d32), Rec(3, 1, 1, d32)}).size() == 2);
}

TEST_CASE("tls_verify: digest agility decides which record may authenticate") {
  const auto chain = Chain({"leaf.pem", "intermediate.pem"});
  const TlsaRecord good256 = Tlsa(3, 1, 1, "leaf.pem");
  const TlsaRecord good512 = Tlsa(3, 1, 2, "leaf.pem");
  const TlsaRecord bad256 = Rec(3, 1, 1, Flip(good256.data));
  const TlsaRecord bad512 = Rec(3, 1, 2, Flip(good512.data));
  VerifyResult r = Dane(chain, {bad256, good512});
  CHECK(r.ok);
  CHECK(*r.matched == good512);
  // The weaker digest is ignored when a stronger one is published, even if
  // it is the one that matches.
  r = Dane(chain, {good256, bad512});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "validation-failure");
  // Another selector is another group.
  CHECK(Dane(chain, {Tlsa(3, 0, 1, "leaf.pem"), bad512}).ok);
}

TEST_CASE("tls_verify: unusable records are ignored") {
  const auto chain = Chain({"leaf.pem", "intermediate.pem", "root.pem"});
  VerifyResult r = Dane(chain, {Tlsa(1, 1, 1, "leaf.pem"), Tlsa(0, 0, 1, "root.pem")});
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "tlsa-invalid");
  CHECK(Dane(chain, {}).failure_type == "tlsa-invalid");
  // A 31-byte SHA2-256 is unusable even though it is a prefix of the right one.
  TlsaRecord short_digest = Tlsa(3, 1, 1, "leaf.pem");
  short_digest.data.pop_back();
  CHECK_FALSE(Dane(chain, {short_digest}).ok);
  // Unusable records beside a usable one change nothing.
  r = Dane(chain, {Tlsa(1, 1, 1, "leaf.pem"), Tlsa(3, 1, 1, "leaf.pem")});
  CHECK(r.ok);
  CHECK(r.matched->usage == 3);
}

TEST_CASE("tls_verify: empty, garbage and overlong chains fail") {
  VerifyResult r = Dane({}, {Tlsa(3, 1, 1, "leaf.pem")});
  CHECK_FALSE(r.ok);
  CHECK_FALSE(r.failure_type.empty());

  // Garbage whose SHA2-256 is exactly the record: matching bytes is not
  // enough when the bytes are not a certificate.
  const DerCertificate garbage = {0x30, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef};
  const auto info = DescribeChain({garbage});
  r = Dane({garbage}, {Rec(3, 0, 1, Unhex(info[0].cert_sha256))});
  CHECK_FALSE(r.ok);
  CHECK(r.detail.find("does not parse") != std::string::npos);
  CHECK_FALSE(Dane({garbage}, {Rec(3, 0, 0, garbage)}).ok);

  // A truncated certificate.
  DerCertificate truncated = Der("leaf.pem");
  truncated.resize(truncated.size() - 10);
  CHECK_FALSE(Dane({truncated}, {Tlsa(3, 1, 1, "leaf.pem")}).ok);

  // A good leaf with garbage after it: a parse error is never accepted.
  auto chain = Chain({"leaf.pem"});
  chain.push_back(garbage);
  CHECK_FALSE(Dane(chain, {Tlsa(3, 1, 1, "leaf.pem")}).ok);
  CHECK_FALSE(Pkix(chain, Path("root.pem"), "mx.example.org").ok);

  CHECK_FALSE(Pkix({}, Path("root.pem"), "mx.example.org").ok);

  std::vector<DerCertificate> overlong(17, Der("leaf.pem"));
  CHECK_FALSE(Dane(overlong, {Tlsa(3, 1, 1, "leaf.pem")}).ok);
}

TEST_CASE("tls_verify: PKIX with accepted names instead of the host (local verify match=)") {
  const auto chain = Chain({"leaf.pem", "intermediate.pem"});
  PkixVerifyInput in;
  in.chain = chain;
  in.ca_file = Path("root.pem");
  in.host = "other.example.org";  // the MX name: not in the certificate, and not asked for
  in.now = kNow;
  in.names = {"nothere.example.net", "mx.example.org"};
  VerifyResult r = VerifyPkix(in);
  CHECK(r.ok);
  CHECK(r.detail.find("leaf valid for mx.example.org") != std::string::npos);
  in.names = {"nothere.example.net", "other.example.org"};
  r = VerifyPkix(in);
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");
  CHECK(r.detail.find("not valid for nothere.example.net, other.example.org") != std::string::npos);
  in.names = {};
  in.host = "mx.example.org";
  CHECK(VerifyPkix(in).ok);
}

TEST_CASE("tls_verify: PKIX with a CA file") {
  const auto chain = Chain({"leaf.pem", "intermediate.pem"});
  VerifyResult r = Pkix(chain, Path("root.pem"), "mx.example.org");
  CHECK(r.ok);
  CHECK(r.failure_type.empty());
  CHECK_FALSE(r.matched.has_value());

  r = Pkix(chain, Path("root.pem"), "other.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");

  r = Pkix(chain, Path("root.pem"), "192.0.2.1");  // in the SAN as an iPAddress
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");

  // Unrelated CA.
  r = Pkix(chain, Path("old-root.pem"), "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-not-trusted");

  // Missing intermediate.
  r = Pkix(Chain({"leaf.pem"}), Path("root.pem"), "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-not-trusted");

  // The attacker's chain, even with the genuine root appended.
  r = Pkix(Chain({"attacker-leaf.pem", "attacker-ca.pem", "root.pem"}), Path("root.pem"), "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-not-trusted");
}

TEST_CASE("tls_verify: PKIX with an empty or missing CA file") {
  char tmpl[] = "/tmp/tls_verify_test_XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  VerifyResult r = Pkix(Chain({"leaf.pem", "intermediate.pem"}), tmpl, "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-not-trusted");
  std::remove(tmpl);

  r = Pkix(Chain({"leaf.pem", "intermediate.pem"}), "/nonexistent/ca.pem", "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.detail.find("/nonexistent/ca.pem") != std::string::npos);
}

TEST_CASE("tls_verify: PKIX with the system trust store does not trust the test root") {
  VerifyResult r = Pkix(Chain({"leaf.pem", "intermediate.pem", "root.pem"}), "", "mx.example.org");
  CHECK_FALSE(r.ok);
}

TEST_CASE("tls_verify: PKIX dates against now") {
  VerifyResult r = Pkix(Chain({"expired.pem"}), Path("root.pem"), "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");

  const auto chain = Chain({"leaf.pem", "intermediate.pem"});
  r = Pkix(chain, Path("root.pem"), "mx.example.org", kFarFuture);
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");
  r = Pkix(chain, Path("root.pem"), "mx.example.org", kPast);
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");

  r = Pkix(Chain({"under-expired-int.pem", "intermediate-expired.pem"}), Path("root.pem"), "mx.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-expired");

  // An expired copy of the trusted root sent by the server does not matter:
  // the path ends at the trusted copy.
  r = Pkix(Chain({"leaf.pem", "intermediate.pem", "root-cross-expired.pem"}), Path("root.pem"), "mx.example.org");
  CHECK(r.ok);
}

TEST_CASE("tls_verify: PKIX names: wildcard of one label, no CN fallback") {
  const auto wild = Chain({"wildcard.pem", "intermediate.pem"});
  CHECK(Pkix(wild, Path("root.pem"), "a.example.net").ok);
  CHECK_FALSE(Pkix(wild, Path("root.pem"), "a.b.example.net").ok);
  CHECK_FALSE(Pkix(wild, Path("root.pem"), "example.net").ok);
  CHECK(Pkix(wild, Path("root.pem"), "A.Example.Net.").ok);
  // RFC 8461 §4.2: a DNS-ID in the subjectAltName, the CN does not count.
  VerifyResult r = Pkix(Chain({"nosan.pem", "intermediate.pem"}), Path("root.pem"), "nosan.example.org");
  CHECK_FALSE(r.ok);
  CHECK(r.failure_type == "certificate-host-mismatch");
  CHECK_FALSE(Pkix(Chain({"leaf.pem", "intermediate.pem"}), Path("root.pem"), "").ok);
}

TEST_CASE("tls_verify: DANE-TA accepts the CN of a leaf without subjectAltName") {
  // As Postfix does (RFC 6125: CN-ID only when there is no DNS-ID).
  const auto chain = Chain({"nosan.pem", "intermediate.pem", "root.pem"});
  CHECK(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"nosan.example.org"}).ok);
  CHECK_FALSE(Dane(chain, {Tlsa(2, 0, 1, "root.pem")}, {"mx.example.org"}).ok);
}

TEST_CASE("tls_verify: DescribeChain") {
  const auto info = DescribeChain(Chain({"leaf.pem", "intermediate.pem", "nosan.pem", "selfsigned-expired.pem"}));
  REQUIRE(info.size() == 4);
  CHECK(info[0].subject.find("CN=mx.example.org") != std::string::npos);
  CHECK(info[0].issuer.find("CN=mxsec test intermediate") != std::string::npos);
  CHECK(info[0].spki_sha256 == DigestHex("leaf.pem", "spki", "sha256"));
  CHECK(info[0].cert_sha256 == DigestHex("leaf.pem", "cert", "sha256"));
  CHECK(info[0].not_before < kNow);
  CHECK(info[0].not_after > kNow);
  CHECK(info[0].dns_names == std::vector<std::string>{"mx.example.org"});  // not the iPAddress

  CHECK(info[1].subject.find("CN=mxsec test intermediate") != std::string::npos);
  CHECK(info[1].issuer.find("CN=mxsec test root") != std::string::npos);
  CHECK(info[1].spki_sha256 == DigestHex("intermediate.pem", "spki", "sha256"));

  CHECK(info[2].dns_names == std::vector<std::string>{"nosan.example.org"});

  CHECK(info[3].not_before == 1577836800);  // 2020-01-01
  CHECK(info[3].not_after == 1609459200);   // 2021-01-01
  CHECK(info[3].subject == info[3].issuer);

  const auto bad = DescribeChain({DerCertificate{1, 2, 3}});
  REQUIRE(bad.size() == 1);
  CHECK(bad[0].subject == "(unparsable)");
  CHECK(bad[0].cert_sha256.size() == 64);
  CHECK(DescribeChain({}).empty());
}
