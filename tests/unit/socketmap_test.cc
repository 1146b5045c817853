// socketmap_test.cc - netstrings and the translation of decisions into
// Postfix TLS policies.
#include <doctest/doctest.h>

#include "mxsec/socketmap.h"

using namespace mxsec;

TEST_CASE("socketmap: netstrings in pieces, several at once, and malformed ones") {
  NetstringReader r;
  r.Feed("15:tls exam");
  CHECK_FALSE(r.Next().value());
  r.Feed("ple.org,8:tls a.bc,");
  CHECK(*r.Next().value() == "tls example.org");
  CHECK(*r.Next().value() == "tls a.bc");
  CHECK_FALSE(r.Next().value());
  CHECK(EncodeNetstring("OK dane-only") == "12:OK dane-only,");
  for (const char* bad : {"x:abc,", ":abc,", "3:abcd", "01:a,", "99999999999:", "5000:"}) {
    NetstringReader b;
    b.Feed(bad);
    auto n = b.Next();
    CHECK_MESSAGE(!n.ok(), bad);
  }
  NetstringReader partial;
  partial.Feed("12");
  CHECK(partial.Next().ok());
}

TEST_CASE("socketmap: request keys") {
  CHECK(SocketmapKey("tls_policy example.org").value() == "example.org");
  CHECK_FALSE(SocketmapKey("nospace").ok());
  CHECK_FALSE(SocketmapKey("map ").ok());
  CHECK_FALSE(SocketmapKey("map a\nb").ok());
}

namespace {
MxPolicy Mx(const std::string& host, HostTls tls) {
  MxPolicy m;
  m.host = host;
  m.tls = tls;
  return m;
}
}  // namespace

TEST_CASE("socketmap: decisions map to Postfix policies, wildcards never widened") {
  DomainPolicy p;
  p.domain = "example.org";
  p.verdict = Verdict::kOpportunistic;
  CHECK(PostfixPolicyReply(p) == "NOTFOUND ");
  p.verdict = Verdict::kFail;
  CHECK(PostfixPolicyReply(p) == "NOTFOUND ");
  p.verdict = Verdict::kDefer;
  p.status_code = "4.4.3";
  p.reason = "MX lookup failed\r\nbogus";
  CHECK(PostfixPolicyReply(p) == "TEMP 4.4.3 MX lookup failed  bogus");

  p.verdict = Verdict::kMustTls;
  p.mechanism = Mechanism::kDane;
  p.mx = {Mx("mx1.example.org", HostTls::kDane), Mx("mx2.example.org", HostTls::kEncrypt)};
  CHECK(PostfixPolicyReply(p) == "OK dane-only");
  p.mx = {Mx("mx1.example.org", HostTls::kEncrypt)};
  CHECK(PostfixPolicyReply(p) == "OK encrypt");

  p.mechanism = Mechanism::kMtaSts;
  StsState s;
  s.mode = StsMode::kEnforce;
  s.mx = {"mx1.example.org", "*.backup.example.org"};
  p.mta_sts = s;
  p.mx = {Mx("mx1.example.org", HostTls::kPkix), Mx("a.backup.example.org", HostTls::kPkix),
          Mx("a.b.backup.example.org", HostTls::kSkip)};
  std::string reply = PostfixPolicyReply(p);
  CHECK(reply == "OK secure match=mx1.example.org:a.backup.example.org servername=hostname");
  CHECK(reply.find(".backup.example.org:") == std::string::npos);
  CHECK(reply.find("a.b.backup") == std::string::npos);
}
