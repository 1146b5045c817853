// dane_test.cc - TLSA usability rules (RFC 7672 §3).
#include <doctest/doctest.h>

#include "mxsec/dns/dane.h"

using namespace mxsec;

namespace {
TlsaRecord T(uint8_t u, uint8_t s, uint8_t m, size_t len) {
  TlsaRecord r;
  r.usage = u;
  r.selector = s;
  r.matching = m;
  r.data.assign(len, 1);
  return r;
}
}  // namespace

TEST_CASE("dane: usable and unusable TLSA records") {
  CHECK(IsUsableTlsa(T(3, 1, 1, 32)));
  CHECK(IsUsableTlsa(T(3, 0, 2, 64)));
  CHECK(IsUsableTlsa(T(2, 0, 1, 32)));
  CHECK(IsUsableTlsa(T(2, 1, 0, 91)));
  CHECK_FALSE(IsUsableTlsa(T(0, 0, 1, 32)));
  CHECK_FALSE(IsUsableTlsa(T(1, 1, 1, 32)));
  CHECK_FALSE(IsUsableTlsa(T(4, 1, 1, 32)));
  CHECK_FALSE(IsUsableTlsa(T(255, 1, 1, 32)));
  CHECK_FALSE(IsUsableTlsa(T(3, 2, 1, 32)));
  CHECK_FALSE(IsUsableTlsa(T(3, 1, 3, 32)));
  CHECK_FALSE(IsUsableTlsa(T(3, 1, 1, 31)));
  CHECK_FALSE(IsUsableTlsa(T(3, 1, 2, 32)));
  CHECK_FALSE(IsUsableTlsa(T(3, 1, 0, 0)));
  CHECK(TlsaUnusableReason(T(3, 1, 1, 31)).find("31 bytes") != std::string::npos);
  CHECK(TlsaUnusableReason(T(1, 1, 1, 32)).find("PKIX-EE") != std::string::npos);
}

TEST_CASE("dane: classification of an RRset and the owner name") {
  std::vector<DnsRecord> recs(3);
  recs[0].type = RrType::kTLSA;
  recs[0].tlsa = T(3, 1, 1, 32);
  recs[1].type = RrType::kTLSA;
  recs[1].tlsa = T(1, 1, 1, 32);
  recs[2].type = RrType::kA;
  TlsaSet s = ClassifyTlsa(recs);
  CHECK(s.usable.size() == 1);
  CHECK(s.unusable.size() == 1);
  CHECK(TlsaOwnerName("mx.example.org") == "_25._tcp.mx.example.org");
  CHECK(T(3, 1, 1, 2).ToString() == "3 1 1 0101");
}
