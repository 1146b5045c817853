// domain_name_test.cc - host name syntax and normal form.
#include <doctest/doctest.h>

#include "mxsec/base/domain_name.h"

using namespace mxsec;

TEST_CASE("domain_name: normal form") {
  CHECK(NormalizeHostName("Example.ORG.").value() == "example.org");
  CHECK(NormalizeHostName("xn--bcher-kva.example").value() == "xn--bcher-kva.example");
  CHECK(NormalizeHostName("localhost").ok());
}

TEST_CASE("domain_name: invalid names are refused with a reason") {
  for (const char* bad : {"", ".", "a..b", "-a.example", "a-.example", "a_b.example", "a b.example",
                          "192.0.2.1", "[192.0.2.1]", "::1", "b\xc3\xbc" "cher.example", "a.123",
                          "exa\nmple.org"}) {
    auto r = NormalizeHostName(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    CHECK_FALSE(r.error().empty());
  }
  std::string long_label(64, 'a');
  CHECK_FALSE(NormalizeHostName(long_label + ".example").ok());
  std::string long_name;
  for (int i = 0; i < 50; ++i) long_name += "abcde.";
  CHECK_FALSE(NormalizeHostName(long_name + "org").ok());
  CHECK(NormalizeHostName("b\xc3\xbc" "cher.example").error().find("A-label") != std::string::npos);
}

TEST_CASE("domain_name: DNS names may carry underscores; loopback detection") {
  CHECK(NormalizeDnsName("_25._tcp.MX.example.").value() == "_25._tcp.mx.example");
  CHECK_FALSE(NormalizeDnsName("a b.example").ok());
  CHECK(IsLoopbackAddress("127.0.53.2"));
  CHECK(IsLoopbackAddress("::1"));
  CHECK_FALSE(IsLoopbackAddress("10.0.0.1"));
  CHECK_FALSE(IsLoopbackAddress("::ffff:8.8.8.8"));
  CHECK_FALSE(IsLoopbackAddress("localhost"));
}
