// socketmap_test.cc - netstrings and the translation of decisions into
// Postfix TLS policies.
#include <doctest/doctest.h>

#include "mxsec/serve/socketmap.h"

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
  for (const char* bad : {"x:abc,", ":abc,", "3:abcd", "01:a,", "99999999999:", "10001:"}) {
    NetstringReader b;
    b.Feed(bad);
    auto n = b.Next();
    CHECK_MESSAGE(!n.ok(), bad);
  }
  NetstringReader capped(4096);
  capped.Feed("5000:");
  CHECK_FALSE(capped.Next().ok());
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

TEST_CASE("socketmap: requests up to 10000 bytes (Postfix's socketmap_max_query_size), longer refused early") {
  NetstringReader r;
  std::string big = "tls " + std::string(9996, 'a');
  r.Feed(EncodeNetstring(big));
  auto got = r.Next();
  REQUIRE(got.ok());
  REQUIRE(got.value());
  CHECK(got.value()->size() == 10000);
  // over the limit: refused as soon as the declared length shows it, before the colon and the payload
  for (const char* bad : {"10001:", "10001", "99999999"}) {
    NetstringReader b;
    b.Feed(bad);
    auto n = b.Next();
    CHECK_MESSAGE(!n.ok(), bad);
    if (!n.ok()) CHECK(n.error().find("limit 10000") != std::string::npos);
  }
  NetstringReader small(100);
  small.Feed("101");
  CHECK_FALSE(small.Next().ok());
  NetstringReader fine(100);
  fine.Feed("100");
  CHECK(fine.Next().ok());  // may still become "100:..."
}

namespace {
std::string Req(const std::string& d) { return EncodeNetstring("tls " + d); }
SocketmapLimits Limits(size_t pending, size_t output) {
  SocketmapLimits l;
  l.max_pending_requests = pending;
  l.max_output_buffer = output;
  l.request_timeout = 10;
  l.idle_timeout = 60;
  return l;
}
// Takes every request there is room for; answers "OK <key>" at once.
size_t TakeAll(SocketmapConnection& c, int64_t now) {
  size_t n = 0;
  for (;;) {
    auto r = c.NextRequest(now);
    REQUIRE(r.ok());
    if (!r.value()) return n;
    c.Reply("OK " + r.value()->substr(4));
    ++n;
  }
}
}  // namespace

TEST_CASE("socketmap connection: a client that sends without reading is not read any further") {
  SocketmapConnection c(Limits(4, 1 << 20), 1000);
  std::string in;
  for (int i = 0; i < 10; ++i) in += Req("d" + std::to_string(i) + ".example");
  CHECK(c.WantsInput());
  c.Receive(in, 1000);
  CHECK(TakeAll(c, 1000) == 4);  // the limit of outstanding requests
  CHECK(c.outstanding() == 4);
  CHECK_FALSE(c.WantsInput());
  std::string expect;
  for (int i = 0; i < 4; ++i) expect += EncodeNetstring("OK d" + std::to_string(i) + ".example");
  CHECK(c.Output() == expect);
  // the client reads two replies and a half: room for two more, taken from what was buffered
  size_t two = EncodeNetstring("OK d0.example").size() * 2;
  c.Sent(two + 3, 1001);
  CHECK(c.outstanding() == 2);
  CHECK(c.WantsInput());
  CHECK(TakeAll(c, 1001) == 2);
  CHECK_FALSE(c.WantsInput());
  c.Sent(c.Output().size(), 1002);
  CHECK(TakeAll(c, 1002) == 4);
  c.Sent(c.Output().size(), 1002);
  CHECK(c.outstanding() == 0);
  CHECK(c.buffered_input() == 0);
  CHECK(c.WantsInput());
}

TEST_CASE("socketmap connection: unsent reply bytes stop reading at max_output_buffer") {
  SocketmapConnection c(Limits(100, 40), 1000);
  std::string in;
  for (int i = 0; i < 10; ++i) in += Req("d" + std::to_string(i) + ".example");
  c.Receive(in, 1000);
  // each reply is 17 bytes: reading stops once 40 are unsent (3 replies), well before 100 requests
  CHECK(TakeAll(c, 1000) == 3);
  CHECK(c.pending_bytes() == 51);
  CHECK_FALSE(c.WantsInput());
  c.Sent(17, 1000);
  CHECK(c.WantsInput());
}

TEST_CASE("socketmap connection: replies leave in request order, lookups finish in any order") {
  SocketmapConnection c(Limits(10, 1 << 20), 1000);
  c.Receive(Req("a.example") + Req("b.example") + Req("c.example") + Req("a.example"), 1000);
  auto r = c.NextRequest(1000);
  REQUIRE(r.value());
  c.Await("a.example", 1020);
  r = c.NextRequest(1000);
  c.Reply("NOTFOUND ");
  r = c.NextRequest(1000);
  c.Await("c.example", 1020);
  r = c.NextRequest(1000);
  c.Await("a.example", 1020);
  CHECK(c.Awaited() == std::vector<std::string>{"a.example", "c.example", "a.example"});
  CHECK(c.Resolved("c.example", "OK dane-only"));
  CHECK(c.Output().empty());  // the first request is still waiting
  CHECK_FALSE(c.Resolved("zzz.example", "OK x"));
  CHECK(c.Resolved("a.example", "OK encrypt"));
  CHECK(c.Output() == EncodeNetstring("OK encrypt") + EncodeNetstring("NOTFOUND ") +
                          EncodeNetstring("OK dane-only") + EncodeNetstring("OK encrypt"));
  CHECK(c.Awaited().empty());
  CHECK(c.outstanding() == 4);
}

TEST_CASE("socketmap connection: slow lookups answered TEMP, in order") {
  SocketmapConnection c(Limits(10, 1 << 20), 1000);
  c.Receive(Req("slow.example") + Req("b.example"), 1000);
  REQUIRE(c.NextRequest(1000).value());
  c.Await("slow.example", 1020);
  REQUIRE(c.NextRequest(1000).value());
  c.Reply("NOTFOUND ");
  CHECK(c.ExpireLookups(1020).empty());
  CHECK(c.ExpireLookups(1021) == std::vector<std::string>{"slow.example"});
  CHECK(c.Output() == EncodeNetstring("TEMP policy lookup for slow.example timed out") + EncodeNetstring("NOTFOUND "));
  // the late answer changes nothing
  CHECK_FALSE(c.Resolved("slow.example", "OK dane-only"));
}

TEST_CASE("socketmap connection: idle, stalled and slow clients get a reason to close") {
  SocketmapLimits l = Limits(10, 1 << 20);
  l.idle_timeout = 60;
  l.request_timeout = 10;
  {
    SocketmapConnection idle(l, 1000);
    CHECK(idle.TimedOut(1060) == "");
    CHECK(idle.TimedOut(1061).find("idle") != std::string::npos);
  }
  {
    // a request waiting for a lookup is not idleness (the lookup has its own deadline)
    SocketmapConnection waiting(l, 1000);
    waiting.Receive(Req("a.example"), 1000);
    REQUIRE(waiting.NextRequest(1000).value());
    waiting.Await("a.example", 1020);
    CHECK(waiting.TimedOut(1100) == "");
    CHECK(waiting.ExpireLookups(1100).size() == 1);
    CHECK(waiting.TimedOut(1100).find("replies") != std::string::npos);  // never read them
  }
  {
    // activity resets the idle clock
    SocketmapConnection active(l, 1000);
    active.Receive(Req("a.example"), 1050);
    REQUIRE(active.NextRequest(1050).value());
    active.Reply("NOTFOUND ");
    active.Sent(active.Output().size(), 1055);
    CHECK(active.TimedOut(1100) == "");
    CHECK(active.TimedOut(1116) != "");
  }
  {
    // a started request must be complete within request_timeout
    SocketmapConnection slow(l, 1000);
    slow.Receive("15:tls ex", 1000);
    CHECK_FALSE(slow.NextRequest(1000).value());
    slow.Receive("am", 1005);
    CHECK_FALSE(slow.NextRequest(1005).value());
    CHECK(slow.TimedOut(1010) == "");
    CHECK(slow.TimedOut(1011).find("10 s") != std::string::npos);
  }
  {
    // ... but not while the server itself stopped reading (back-pressure): then only idleness counts
    SocketmapConnection paused(Limits(1, 1 << 20), 1000);
    paused.Receive(Req("a.example") + "15:tls ex", 1000);
    REQUIRE(paused.NextRequest(1000).value());
    paused.Reply("NOTFOUND ");
    CHECK_FALSE(paused.NextRequest(1000).value());
    CHECK_FALSE(paused.WantsInput());
    CHECK(paused.TimedOut(1030) == "");
    CHECK(paused.TimedOut(1061).find("replies") != std::string::npos);
  }
}

TEST_CASE("socketmap connection: malformed and oversized input is an error") {
  SocketmapLimits l = Limits(10, 1 << 20);
  l.max_query_size = 50;
  SocketmapConnection c(l, 1000);
  c.Receive("51:", 1000);
  CHECK_FALSE(c.NextRequest(1000).ok());
  SocketmapConnection d(l, 1000);
  d.Receive("3:abc;", 1000);
  CHECK_FALSE(d.NextRequest(1000).ok());
}

TEST_CASE("lookup queue: connections take turns, duplicates are one lookup, a closed one's work is dropped") {
  LookupQueue q;
  for (int i = 0; i < 50; ++i) CHECK(q.Push("p" + std::to_string(i) + ".example", 1));
  CHECK(q.Push("honest.example", 2));
  CHECK_FALSE(q.Push("p7.example", 2));  // already queued
  CHECK(q.queued() == 51);
  CHECK(q.Pop() == "p0.example");
  CHECK(q.Pop() == "honest.example");  // not behind the 49 others
  CHECK(q.Pop() == "p1.example");
  CHECK_FALSE(q.Push("p0.example", 3));  // under way
  q.Done("p0.example");
  CHECK(q.Push("p0.example", 3));
  std::vector<std::string> dropped = q.Cancel(1);
  CHECK(dropped.size() == 48);
  CHECK_FALSE(q.Busy("p2.example"));
  CHECK(q.Busy("p1.example"));  // under way: it finishes
  CHECK(q.Pop() == "p0.example");
  CHECK_FALSE(q.Pop());
  CHECK(q.queued() == 0);
}

TEST_CASE("socketmap: an answer is typed, and its kind alone says how it is spelled") {
  CHECK(SocketmapAnswer::Ok("dane-only").Encode() == "OK dane-only");
  CHECK(SocketmapAnswer::NotFound().Encode() == "NOTFOUND ");
  CHECK(SocketmapAnswer::Temp("4.7.5 no MX").Encode() == "TEMP 4.7.5 no MX");
  // The kind is what callers test; a reason that happens to start with
  // "TEMP" or "OK" does not change it.
  CHECK(SocketmapAnswer::Ok("TEMP").kind == SocketmapAnswer::Kind::kOk);
  CHECK(SocketmapAnswer::NotFound().data.empty());
}
