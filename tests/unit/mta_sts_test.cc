// mta_sts_test.cc - unit tests for the MTA-STS module: TXT and policy
// parsing, MX matching, both caches, and the fetcher's failure paths that
// need no TLS server (the HTTPS paths run against nginx in the integration
// tests).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "loopback.h"
#include "mxsec/base/sqlite.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/mta_sts.h"

using namespace mxsec;

namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string TxtId(const std::vector<std::string>& records) {
  Result<StsTxt> r = ParseStsTxt(records);
  REQUIRE_MESSAGE(r.ok(), r.error());
  return r->id;
}

std::string TxtError(const std::vector<std::string>& records) {
  Result<StsTxt> r = ParseStsTxt(records);
  REQUIRE_MESSAGE(!r.ok(), "unexpectedly accepted, id ", (r.ok() ? r->id : ""));
  return r.error();
}

StsPolicy Policy(std::string_view body) {
  Result<StsPolicy> r = ParseStsPolicy(body);
  REQUIRE_MESSAGE(r.ok(), r.error());
  return r.value();
}

std::string PolicyError(std::string_view body) {
  Result<StsPolicy> r = ParseStsPolicy(body);
  REQUIRE_MESSAGE(!r.ok(), "unexpectedly accepted: ", std::string(body.substr(0, 80)));
  return r.error();
}

const char kGood[] =
    "version: STSv1\r\n"
    "mode: enforce\r\n"
    "mx: mx1.example.com\r\n"
    "mx: *.Example.NET\r\n"
    "max_age: 86400\r\n";

// A temporary directory removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mxsec-mta-sts-XXXXXX";
    char* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

CachedStsPolicy Entry(const std::string& domain, const std::string& id, const std::string& text, int64_t at) {
  CachedStsPolicy e;
  e.domain = domain;
  e.id = id;
  e.text = text;
  e.fetched_at = at;
  Result<StsPolicy> p = ParseStsPolicy(text);
  if (p.ok()) {
    e.policy = p.value();
    e.expires_at = at + p->max_age;
  }
  return e;
}

// A TCP listener on 127.0.0.1 with a kernel-chosen port. It never calls
// accept() unless told to, so connections complete the handshake and then
// hang: a server that is reachable but says nothing.
class Listener {
 public:
  Listener() {
    fd_ = mxsec_test::BindLoopback(SOCK_STREAM, &port_);
    REQUIRE(listen(fd_, 16) == 0);
  }
  ~Listener() {
    stop_ = true;
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  // Accepts connections and closes them at once (a peer that is not a TLS
  // server).
  void AcceptAndClose() {
    thread_ = std::thread([this] {
      while (!stop_) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        close(c);
      }
    });
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A port on 127.0.0.1 where nothing listens: bound once by the kernel's
// choice, then released.
uint16_t UnusedPort() {
  uint16_t port = 0;
  close(mxsec_test::BindLoopback(SOCK_STREAM, &port));
  return port;
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// --- TXT record ---

TEST_CASE("mta_sts: TXT record valid forms") {
  CHECK(TxtId({"v=STSv1; id=20160831085700Z;"}) == "20160831085700Z");
  CHECK(TxtId({"v=STSv1; id=20160831085700Z"}) == "20160831085700Z");
  CHECK(TxtId({"v=STSv1;id=abc"}) == "abc");
  CHECK(TxtId({"v=STSv1 ;\tid=abc\t ; "}) == "abc");
  CHECK(TxtId({"v=STSv1; id=abc;  "}) == "abc");
  CHECK(TxtId({"v=STSv1; id=" + std::string(32, 'a')}) == std::string(32, 'a'));
  // Extension fields, before and after the id.
  CHECK(TxtId({"v=STSv1; ext.x_y-z=va!ue:/~; id=abc; 9x=1"}) == "abc");
  // Literals are case-sensitive: "ID=" is an extension, "id=" is still needed.
  CHECK(TxtId({"v=STSv1; ID=xyz; id=abc"}) == "abc");
}

TEST_CASE("mta_sts: TXT record selection among several RRs") {
  CHECK(TxtId({"v=spf1 -all", "v=STSv1; id=abc", "google-site-verification=xyz"}) == "abc");
  CHECK(TxtError({}) == "no v=STSv1 TXT record");
  CHECK(TxtError({"v=spf1 -all"}) == "no v=STSv1 TXT record");
  CHECK(TxtError({""}) == "no v=STSv1 TXT record");
  CHECK(TxtError({"v=STSv1; id=a", "v=STSv1; id=b"}) == "2 v=STSv1 TXT records");
  // Identical duplicates are still two records.
  CHECK(TxtError({"v=STSv1; id=a", "v=STSv1; id=a"}) == "2 v=STSv1 TXT records");
  // "v=STSv10" is another version, not ours: ignored, not misparsed.
  CHECK(TxtError({"v=STSv10; id=abc"}) == "no v=STSv1 TXT record");
  CHECK(TxtId({"v=STSv10; id=abc", "v=STSv1; id=def"}) == "def");
  CHECK(TxtError({"V=STSv1; id=abc"}) == "no v=STSv1 TXT record");
  CHECK(TxtError({" v=STSv1; id=abc"}) == "no v=STSv1 TXT record");
}

TEST_CASE("mta_sts: TXT record errors") {
  CHECK(TxtError({"v=STSv1"}) == "TXT record: id missing");
  CHECK(TxtError({"v=STSv1;"}) == "TXT record: id missing");
  CHECK(TxtError({"v=STSv1; foo=bar"}) == "TXT record: id missing");
  CHECK(Contains(TxtError({"v=STSv1; id=" + std::string(33, 'a')}), "is not 1-32 letters and digits"));
  CHECK(Contains(TxtError({"v=STSv1; id="}), "id \"\""));
  CHECK(Contains(TxtError({"v=STSv1; id=abc-def"}), "id \"abc-def\""));
  CHECK(Contains(TxtError({"v=STSv1; id=abc def"}), "id \"abc def\""));
  CHECK(Contains(TxtError({"v=STSv1; id=abc=d"}), "is not 1-32"));
  CHECK(TxtError({"v=STSv1; id=a; id=b"}) == "TXT record: duplicate id");
  CHECK(TxtError({"v=STSv1; id=a;; x=y"}) == "TXT record: empty field");
  CHECK(TxtError({"v=STSv1;; id=a"}) == "TXT record: empty field");
  CHECK(TxtError({"v=STSv1; id=a; v=STSv1"}) == "TXT record: duplicate v= field");
  CHECK(TxtError({"v=STSv1 id=a"}) == "TXT record: junk after v=STSv1");
  // Trailing WSP is part of a delimiter only when a ';' follows.
  CHECK(Contains(TxtError({"v=STSv1; id=abc "}), "white space at end"));
  // Invalid extension fields are errors, not ignored.
  CHECK(Contains(TxtError({"v=STSv1; id=a; novalue"}), "invalid field \"novalue\""));
  CHECK(Contains(TxtError({"v=STSv1; id=a; _x=1"}), "invalid field"));
  CHECK(Contains(TxtError({"v=STSv1; id=a; x="}), "invalid field"));
  CHECK(Contains(TxtError({"v=STSv1; id=a; x=a=b"}), "invalid field"));
  CHECK(Contains(TxtError({"v=STSv1; id=a; " + std::string(33, 'x') + "=1"}), "invalid field"));
  CHECK(Contains(TxtError({std::string("v=STSv1; id=a; x=\x01")}), "invalid field \"x=\\x01\""));
  CHECK(Contains(TxtError({"v=STSv1; id=a; x=\xc3\xa9"}), "invalid field"));
  // Hostile text in errors is escaped and bounded.
  std::string err = TxtError({"v=STSv1; id=a; " + std::string(500, '!')});
  CHECK(err.size() < 120);
}

// --- Policy body ---

TEST_CASE("mta_sts: parser errors carry codes callers branch on") {
  CHECK(ParseStsTxt({"v=spf1 -all"}).status().IsNotFound());
  CHECK(ParseStsTxt({"v=STSv1; id=a", "v=STSv1; id=b"}).status().IsInvalid());
  CHECK(ParseStsTxt({"v=STSv1; id=a; id=b"}).status().IsInvalid());
  CHECK(ParseStsPolicy("").status().IsInvalid());
  CHECK(ParseStsPolicy("version: STSv1\nmode: enforced\nmax_age: 1\n").status().IsInvalid());
  CHECK(ParseStsPolicy(std::string(kStsMaxPolicyBytes + 1, 'a')).status().IsInvalid());
}

TEST_CASE("mta_sts: the TXT answer, the fetch request and the fetch outcome, read once for everyone") {
  auto answer = [](DnsOutcome outcome, std::vector<std::string> texts) {
    DnsAnswer a;
    a.question = {"_mta-sts.example.org", RrType::kTXT};
    a.outcome = outcome;
    a.reason = outcome == DnsOutcome::kFailure ? "timeout" : "";
    for (const std::string& t : texts) {
      DnsRecord r;
      r.text = t;
      a.records.push_back(r);
    }
    return a;
  };
  CHECK(ReadStsTxtAnswer(answer(DnsOutcome::kRecords, {"v=STSv1; id=x1"}))->id == "x1");
  Result<StsTxt> none = ReadStsTxtAnswer(answer(DnsOutcome::kNoData, {}));
  CHECK(none.status().IsNotFound());
  CHECK(none.error() == "_mta-sts TXT: no v=STSv1 TXT record");
  CHECK(ReadStsTxtAnswer(answer(DnsOutcome::kNxDomain, {})).status().IsNotFound());
  Result<StsTxt> bad = ReadStsTxtAnswer(answer(DnsOutcome::kRecords, {"v=STSv1"}));
  CHECK(bad.status().IsInvalid());
  CHECK(bad.error() == "_mta-sts TXT: TXT record: id missing");
  Result<StsTxt> failed = ReadStsTxtAnswer(answer(DnsOutcome::kFailure, {}));
  CHECK(failed.status().IsUnavailable());
  CHECK(failed.error() == "_mta-sts TXT lookup failed: timeout");

  DnsAnswer a = answer(DnsOutcome::kRecords, {"192.0.2.80"}), aaaa = answer(DnsOutcome::kNoData, {});
  Result<StsFetchRequest> request = StsFetchRequestFor("example.org", a, aaaa);
  REQUIRE(request.ok());
  CHECK(request->addresses == std::vector<std::string>{"192.0.2.80"});
  Result<StsFetchRequest> nowhere = StsFetchRequestFor("example.org", answer(DnsOutcome::kFailure, {}), aaaa);
  CHECK(nowhere.status().IsNotFound());
  CHECK(nowhere.error() == "no address for mta-sts.example.org (timeout)");

  CHECK(ReadFetchedStsPolicy({true, "version: STSv1\nmode: none\nmax_age: 60\n", ""})->max_age == 60);
  Result<StsPolicy> invalid = ReadFetchedStsPolicy({true, "version: STSv1\n", ""});
  CHECK(invalid.status().IsInvalid());
  CHECK(invalid.error() == "invalid policy: policy: mode missing");
  Result<StsPolicy> unfetched = ReadFetchedStsPolicy({false, "", "HTTP status 404"});
  CHECK_FALSE(unfetched.status().IsInvalid());
  CHECK(unfetched.error() == "HTTP status 404");

  CachedStsPolicy entry = NewCachedStsPolicy("example.org", "x1", "text", StsPolicy{StsMode::kNone, 60, {}}, 1000);
  CHECK(entry.fetched_at == 1000);
  CHECK(entry.expires_at == 1060);
}

TEST_CASE("mta_sts: policy valid CRLF") {
  StsPolicy p = Policy(kGood);
  CHECK(p.mode == StsMode::kEnforce);
  CHECK(p.max_age == 86400);
  REQUIRE(p.mx.size() == 2);
  CHECK(p.mx[0] == "mx1.example.com");
  CHECK(p.mx[1] == "*.example.net");  // lowercased
}

TEST_CASE("mta_sts: policy valid LF, missing final terminator, any key order") {
  StsPolicy p = Policy("mx: mail.example.com\nmax_age: 604800\nmode: testing\nversion: STSv1");
  CHECK(p.mode == StsMode::kTesting);
  CHECK(p.max_age == 604800);
  REQUIRE(p.mx.size() == 1);
  CHECK(p.mx[0] == "mail.example.com");
  // Mixed terminators are each valid per line.
  CHECK(Policy("version: STSv1\nmode: none\r\nmax_age: 0\n").mode == StsMode::kNone);
}

TEST_CASE("mta_sts: policy mode none without mx") {
  StsPolicy p = Policy("version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n");
  CHECK(p.mode == StsMode::kNone);
  CHECK(p.mx.empty());
  CHECK(Policy("version: STSv1\nmode: none\nmax_age: 1\nmx: a.example\n").mx.size() == 1);
}

TEST_CASE("mta_sts: policy whitespace variants") {
  CHECK(Policy("version:STSv1\nmode:enforce\nmx:a.example\nmax_age:5").max_age == 5);
  CHECK(Policy("version: \t STSv1 \t\r\nmode:\tenforce\t\r\nmx:  a.example  \r\nmax_age: 5 \r\n").mx[0] == "a.example");
  // No space before the colon, none at the start of a line.
  CHECK(Contains(PolicyError("version : STSv1\nmode: none\nmax_age: 5\n"), "policy line 1: invalid key \"version \""));
  CHECK(PolicyError("version: STSv1\n mode: none\nmax_age: 5\n") == "policy line 2: starts with white space");
  // Blank lines are not part of the grammar, not even at the end.
  CHECK(PolicyError("version: STSv1\n\nmode: none\nmax_age: 5\n") == "policy line 2: empty line");
  CHECK(PolicyError("version: STSv1\nmode: none\nmax_age: 5\n\n") == "policy line 4: empty line");
  CHECK(PolicyError("version: STSv1\r\nmode: none\r\nmax_age: 5\r\n\r\n") == "policy line 4: empty line");
  // Known values must not contain inner white space.
  CHECK(Contains(PolicyError("version: STSv1\nmode: en force\nmax_age: 5\n"), "unknown mode"));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 8 6400\n"), "is not a number"));
}

TEST_CASE("mta_sts: policy missing and duplicate keys") {
  CHECK(PolicyError("mode: none\nmax_age: 5\n") == "policy: version missing");
  CHECK(PolicyError("version: STSv1\nmax_age: 5\n") == "policy: mode missing");
  CHECK(PolicyError("version: STSv1\nmode: none\n") == "policy: max_age missing");
  CHECK(PolicyError("version: STSv1\nmode: enforce\nmax_age: 5\n") == "policy: mx missing (required with mode enforce)");
  CHECK(PolicyError("version: STSv1\nmode: testing\nmax_age: 5\n") == "policy: mx missing (required with mode testing)");
  CHECK(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nversion: STSv1\n") ==
        "policy line 4: duplicate key \"version\"");
  CHECK(PolicyError("version: STSv1\nmode: none\nmode: enforce\nmx: a.example\nmax_age: 5\n") ==
        "policy line 3: duplicate key \"mode\"");
  CHECK(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nmax_age: 5\n") ==
        "policy line 4: duplicate key \"max_age\"");
  // Several mx lines are normal.
  CHECK(Policy("version: STSv1\nmode: enforce\nmx: a.example\nmx: b.example\nmx: a.example\nmax_age: 5").mx.size() == 3);
}

TEST_CASE("mta_sts: policy version and mode values") {
  CHECK(PolicyError("version: STSv2\nmode: none\nmax_age: 5\n") == "policy line 1: unsupported version \"STSv2\"");
  CHECK(Contains(PolicyError("version: stsv1\nmode: none\nmax_age: 5\n"), "unsupported version"));
  CHECK(Contains(PolicyError("version:\nmode: none\nmax_age: 5\n"), "unsupported version \"\""));
  CHECK(PolicyError("version: STSv1\nmode: strict\nmax_age: 5\n") == "policy line 2: unknown mode \"strict\"");
  CHECK(PolicyError("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 5\n") == "policy line 2: unknown mode \"Enforce\"");
  CHECK(Contains(PolicyError("version: STSv1\nmode:\nmax_age: 5\n"), "unknown mode \"\""));
  // Keys are case-sensitive: "Mode" is an (ignored) extension.
  CHECK(PolicyError("version: STSv1\nMode: none\nmax_age: 5\n") == "policy: mode missing");
  CHECK(std::string(StsModeName(StsMode::kEnforce)) == "enforce");
  CHECK(std::string(StsModeName(StsMode::kTesting)) == "testing");
  CHECK(std::string(StsModeName(StsMode::kNone)) == "none");
}

TEST_CASE("mta_sts: policy max_age") {
  auto with = [](const std::string& v) { return "version: STSv1\nmode: none\nmax_age: " + v + "\n"; };
  CHECK(Policy(with("31557600")).max_age == 31557600);
  CHECK(Policy(with("0")).max_age == 0);
  CHECK(Policy(with("0000086400")).max_age == 86400);  // ten digits, leading zeros are in the ABNF
  CHECK(PolicyError(with("31557601")) == "policy line 3: max_age 31557601 exceeds 31557600");
  CHECK(Contains(PolicyError(with("9999999999")), "exceeds"));
  CHECK(Contains(PolicyError(with("99999999999")), "more than 10 digits"));
  CHECK(Contains(PolicyError(with("99999999999999999999999")), "more than 10 digits"));
  CHECK(PolicyError(with("-1")) == "policy line 3: max_age \"-1\" is not a number");
  CHECK(Contains(PolicyError(with("+5")), "is not a number"));
  CHECK(Contains(PolicyError(with("abc")), "is not a number"));
  CHECK(Contains(PolicyError(with("1e5")), "is not a number"));
  CHECK(Contains(PolicyError(with("")), "is not a number"));
  CHECK(Contains(PolicyError(with("0x10")), "is not a number"));
}

TEST_CASE("mta_sts: policy mx patterns") {
  auto with = [](const std::string& mx) { return "version: STSv1\nmode: enforce\nmax_age: 5\nmx: " + mx + "\n"; };
  CHECK(Policy(with("*.example.com")).mx[0] == "*.example.com");
  CHECK(Policy(with("MX-1.Example.COM")).mx[0] == "mx-1.example.com");
  CHECK(Policy(with("xn--bcher-kva.example")).mx[0] == "xn--bcher-kva.example");
  CHECK(PolicyError(with("*.*.example.com")) == "policy line 4: invalid mx pattern \"*.*.example.com\"");
  CHECK(Contains(PolicyError(with("a*.example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("mail.*.example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("*")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("*.")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("")), "invalid mx pattern \"\""));
  CHECK(Contains(PolicyError(with("mail.example.com.")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with(".example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("a..example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("-a.example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("a-.example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("mail_1.example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("a.example.com b.example.com")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("[192.0.2.1]")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with(std::string(64, 'a') + ".example")), "invalid mx pattern"));
  CHECK(Contains(PolicyError(with("m\xc3\xa4il.example")), "invalid mx pattern"));
}

TEST_CASE("mta_sts: policy extension keys") {
  StsPolicy p = Policy("version: STSv1\nmode: none\nfoo_bar.baz-1: anything at all: really\nmax_age: 5\nx: caf\xc3\xa9\n");
  CHECK(p.mode == StsMode::kNone);
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\n_x: y\n"), "policy line 4: invalid key \"_x\""));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nfoo bar: y\n"), "invalid key"));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\n" + std::string(33, 'k') + ": y\n"), "invalid key"));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nno colon here\n"), "policy line 4: no \"key:\""));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nx:\n"), "policy line 4: invalid value for \"x\""));
  // Extension values must be well-formed UTF-8.
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nx: \xc3\n"), "invalid value"));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nx: \xc0\xaf\n"), "invalid value"));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nx: \xed\xa0\x80\n"), "invalid value"));
  CHECK(Contains(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nx: \xff\n"), "invalid value"));
}

TEST_CASE("mta_sts: policy hostile bytes") {
  using namespace std::string_literals;
  CHECK(PolicyError("version: STSv1\nmode: none\x00\nmax_age: 5\n"s) == "policy line 2: control byte 0x00");
  CHECK(PolicyError("version: STSv1\nmode: none\x01\nmax_age: 5\n"s) == "policy line 2: control byte 0x01");
  CHECK(PolicyError("version: STSv1\nmode: none\nmax_age: 5\x7f\n"s) == "policy line 3: control byte 0x7f");
  CHECK(PolicyError("version: STSv1\rmode: none\nmax_age: 5\n"s) == "policy line 1: control byte 0x0d");
  CHECK(PolicyError("version: STSv1\nmode: none\nmax_age: 5\r"s) == "policy line 3: control byte 0x0d");
  CHECK(PolicyError("version: STSv1\nmode: none\r\r\nmax_age: 5\n"s) == "policy line 2: control byte 0x0d");
  CHECK(PolicyError("version: STSv1\nmode: none\nmax_age: 5\nx: a\x1b[2Jb\n"s) == "policy line 4: control byte 0x1b");
  CHECK(Contains(PolicyError("\xef\xbb\xbfversion: STSv1\nmode: none\nmax_age: 5\n"), "byte order mark"));
  CHECK(PolicyError("") == "policy is empty");
  CHECK(PolicyError("\n") == "policy line 1: empty line");
  CHECK(PolicyError("\r\n") == "policy line 1: empty line");
  // Error messages never echo raw control bytes.
  std::string err = PolicyError("version: STSv1\nmode: \xe2\x80\xae\x65vil\nmax_age: 5\n");
  for (unsigned char c : err) CHECK((c >= 0x20 && c < 0x7f));
}

TEST_CASE("mta_sts: policy size limits") {
  const std::string head = "version: STSv1\nmode: none\nmax_age: 5\n";
  // A 1000-octet line (terminator excluded) is fine, 1001 is not.
  std::string ok_line = "x: " + std::string(997, 'a');
  REQUIRE(ok_line.size() == 1000);
  CHECK(Policy(head + ok_line + "\r\n").mode == StsMode::kNone);
  CHECK(PolicyError(head + ok_line + "a\n") == "policy line 4: longer than 1000 octets");
  CHECK(PolicyError(head + ok_line + "a") == "policy line 4: longer than 1000 octets");

  // Exactly 65536 bytes parses; 65537 does not, whatever it contains.
  std::string body = head;
  while (body.size() + 503 <= kStsMaxPolicyBytes) body += "x: " + std::string(498, 'b') + "\n";
  body += "y: " + std::string(kStsMaxPolicyBytes - body.size() - 4, 'c') + "\n";
  REQUIRE(body.size() == kStsMaxPolicyBytes);
  CHECK(Policy(body).mode == StsMode::kNone);
  body.insert(body.size() - 1, "c");
  REQUIRE(body.size() == kStsMaxPolicyBytes + 1);
  CHECK(PolicyError(body) == "policy larger than 65536 bytes");
}

TEST_CASE("mta_sts: parsers survive mutated input") {
  // Deterministic mutation of valid inputs: whatever is accepted must still
  // satisfy the parser's promises.
  uint32_t seed = 12345;
  auto rnd = [&seed](uint32_t n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
  };
  const std::string base_policy = kGood;
  const std::string base_txt = "v=STSv1; id=20160831085700Z; ext=1";
  const char interesting[] = {'\0', '\r', '\n', ' ', '\t', ':', ';', '=', '*', '.', '-', '9', 'A', '\x7f', '\xc3', '\xef'};
  for (int iter = 0; iter < 20000; ++iter) {
    std::string p = base_policy, t = base_txt;
    for (std::string* s : {&p, &t}) {
      int edits = 1 + static_cast<int>(rnd(4));
      for (int e = 0; e < edits && !s->empty(); ++e) {
        size_t at = rnd(static_cast<uint32_t>(s->size()));
        char c = interesting[rnd(sizeof interesting)];
        switch (rnd(3)) {
          case 0: (*s)[at] = c; break;
          case 1: s->insert(s->begin() + static_cast<std::ptrdiff_t>(at), c); break;
          default: s->erase(at, 1 + rnd(3)); break;
        }
      }
    }
    Result<StsPolicy> pr = ParseStsPolicy(p);
    if (pr.ok()) {
      CHECK(pr->max_age >= 0);
      CHECK(pr->max_age <= kStsMaxAge);
      CHECK((pr->mode == StsMode::kNone || !pr->mx.empty()));
      for (const std::string& mx : pr->mx) {
        CHECK_FALSE(mx.empty());
        CHECK(mx.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ \t\r\n") == std::string::npos);
        CHECK(mx.find('*', 1) == std::string::npos);
      }
    } else {
      CHECK_FALSE(pr.error().empty());
    }
    Result<StsTxt> tr = ParseStsTxt({t});
    if (tr.ok()) {
      CHECK_FALSE(tr->id.empty());
      CHECK(tr->id.size() <= 32);
    }
  }
}

// --- MX matching ---

TEST_CASE("mta_sts: MX matching") {
  CHECK(StsMxMatches("mail.example.com", "mail.example.com"));
  CHECK(StsMxMatches("mail.example.com", "MAIL.Example.COM"));
  CHECK(StsMxMatches("MAIL.example.com", "mail.example.com"));
  CHECK(StsMxMatches("mail.example.com", "mail.example.com."));
  CHECK(StsMxMatches("mail.example.com.", "mail.example.com"));
  CHECK_FALSE(StsMxMatches("mail.example.com", "mail.example.co"));
  CHECK_FALSE(StsMxMatches("mail.example.com", "xmail.example.com"));
  CHECK_FALSE(StsMxMatches("mail.example.com", "a.mail.example.com"));
  CHECK_FALSE(StsMxMatches("mail.example.com", "mail.example.com.."));
  CHECK_FALSE(StsMxMatches("", ""));
  CHECK_FALSE(StsMxMatches("mail.example.com", ""));

  CHECK(StsMxMatches("*.example.com", "mx1.example.com"));
  CHECK(StsMxMatches("*.example.com", "MX1.EXAMPLE.COM."));
  CHECK(StsMxMatches("*.EXAMPLE.com", "mx1.example.com"));
  CHECK_FALSE(StsMxMatches("*.example.com", "example.com"));        // zero labels
  CHECK_FALSE(StsMxMatches("*.example.com", ".example.com"));       // empty label
  CHECK_FALSE(StsMxMatches("*.example.com", "a.b.example.com"));    // two labels
  CHECK_FALSE(StsMxMatches("*.example.com", "mx1.example.org"));
  CHECK_FALSE(StsMxMatches("*.example.com", "mx1example.com"));
  CHECK_FALSE(StsMxMatches("*.example.com", "*.example.com"));
  CHECK_FALSE(StsMxMatches("*", "example"));
  CHECK_FALSE(StsMxMatches("*", "mx.example.com"));
  CHECK_FALSE(StsMxMatches("*.", "mx"));
  CHECK_FALSE(StsMxMatches("*.*.example.com", "a.b.example.com"));
  CHECK_FALSE(StsMxMatches("a*.example.com", "ab.example.com"));
  CHECK_FALSE(StsMxMatches("a*.example.com", "a*.example.com"));
}

TEST_CASE("mta_sts: policy matching") {
  StsPolicy p = Policy(kGood);
  CHECK(StsPolicyMatches(p, "mx1.example.com"));
  CHECK(StsPolicyMatches(p, "backup.example.net."));
  CHECK_FALSE(StsPolicyMatches(p, "mx2.example.com"));
  CHECK_FALSE(StsPolicyMatches(p, "example.net"));
  CHECK_FALSE(StsPolicyMatches(StsPolicy{}, "mx1.example.com"));
}

// --- Caches ---

namespace {

void CacheRoundTrip(StsCache& cache) {
  CHECK_FALSE(cache.Get("example.com").has_value());
  REQUIRE(cache.Put(Entry("example.com", "id1", kGood, 1000)).ok());
  std::optional<CachedStsPolicy> got = cache.Get("example.com");
  REQUIRE(got.has_value());
  CHECK(got->domain == "example.com");
  CHECK(got->id == "id1");
  CHECK(got->text == kGood);
  CHECK(got->fetched_at == 1000);
  CHECK(got->expires_at == 1000 + 86400);
  CHECK(got->policy.mode == StsMode::kEnforce);
  CHECK(got->policy.mx.size() == 2);
  // Lookups use the normal form of the name.
  CHECK(cache.Get("Example.COM.").has_value());

  // Replace: a mode none policy withdraws the enforce one.
  const std::string none = "version: STSv1\nmode: none\nmax_age: 600\n";
  REQUIRE(cache.Put(Entry("EXAMPLE.com", "id2", none, 2000)).ok());
  got = cache.Get("example.com");
  REQUIRE(got.has_value());
  CHECK(got->id == "id2");
  CHECK(got->policy.mode == StsMode::kNone);
  CHECK(got->expires_at == 2600);

  // The stored parsed form always comes from the text, not the caller.
  CachedStsPolicy lying = Entry("other.example", "id3", kGood, 10);
  lying.policy = StsPolicy{};
  REQUIRE(cache.Put(lying).ok());
  REQUIRE(cache.Get("other.example").has_value());
  CHECK(cache.Get("other.example")->policy.mode == StsMode::kEnforce);
  // So is the expiry: fetched_at + the text's max_age, whatever the caller says.
  CachedStsPolicy forever = Entry("long.example", "id5", kGood, 100);
  forever.expires_at = 100 + 10 * kStsMaxAge;
  REQUIRE(cache.Put(forever).ok());
  CHECK(cache.Get("long.example")->expires_at == 100 + 86400);

  // A text that does not parse is refused, and nothing is stored.
  Status bad = cache.Put(Entry("bad.example", "id4", "not a policy", 10));
  CHECK_FALSE(bad.ok());
  CHECK(Contains(bad.message(), "bad.example"));
  CHECK_FALSE(cache.Get("bad.example").has_value());

  CHECK(cache.Remove("example.com").ok());
  CHECK_FALSE(cache.Get("example.com").has_value());
  CHECK(cache.Remove("example.com").ok());  // absent is fine
  CHECK(cache.Get("other.example").has_value());
}

// Remove leaves a mark that reads as no policy and is no policy to
// refresh; Put replaces it; RecordRemoval stores one only over an earlier
// event, a fetch in the same second included; fetched_by is kept.
void CacheRemovalMarks(StsCache& cache) {
  REQUIRE(cache.Put(Entry("gone.example", "g1", kGood, 1000)).ok());
  REQUIRE(cache.Put(Entry("due.example", "d1", kGood, 1000)).ok());
  const auto before = static_cast<int64_t>(time(nullptr));
  REQUIRE(cache.Remove("Gone.Example.").ok());
  CHECK_FALSE(cache.Get("gone.example").has_value());
  Result<StsCacheSlot> slot = cache.Read("gone.example");
  REQUIRE(slot.ok());
  CHECK_FALSE(slot->policy.has_value());
  REQUIRE(slot->removal.has_value());
  CHECK(slot->removal->domain == "gone.example");
  CHECK(slot->removal->removed_at >= before);
  auto due = cache.RefreshCandidates(1000 + 86000, 3600, 10);
  REQUIRE(due.ok());
  REQUIRE(due->size() == 1);
  CHECK(due->at(0).domain == "due.example");
  // A refresh failure read before the removal does not touch the mark.
  CachedStsPolicy stale = Entry("gone.example", "g1", kGood, 1000);
  stale.refresh_failures = 3;
  REQUIRE(cache.RecordRefreshFailure(stale).ok());
  CHECK_FALSE(cache.Get("gone.example").has_value());

  // Removing a policy fetched later than this clock's now dates the mark at
  // the fetch: the removal stays the latest event. Removing nothing marks too.
  REQUIRE(cache.Put(Entry("ahead.example", "a1", kGood, before + 5000)).ok());
  REQUIRE(cache.Remove("ahead.example").ok());
  CHECK(cache.Read("ahead.example")->removal->removed_at == before + 5000);
  REQUIRE(cache.Remove("never.example").ok());
  CHECK(cache.Read("never.example")->removal.has_value());

  // Put replaces a mark (this host's own fetch: whatever its time).
  CachedStsPolicy by = Entry("gone.example", "g2", kGood, 3000);
  by.fetched_by = "hosta";
  REQUIRE(cache.Put(by).ok());
  REQUIRE(cache.Get("gone.example").has_value());
  CHECK(cache.Get("gone.example")->id == "g2");
  CHECK(cache.Get("gone.example")->fetched_by == "hosta");
  CHECK_FALSE(cache.Read("gone.example")->removal.has_value());

  // RecordRemoval: not over a later fetch, over one of the same second.
  REQUIRE(cache.RecordRemoval(StsRemoval{"gone.example", 2999, "hostc"}).ok());
  CHECK(cache.Get("gone.example").has_value());
  REQUIRE(cache.RecordRemoval(StsRemoval{"GONE.example", 3000, "hostc"}).ok());
  CHECK_FALSE(cache.Get("gone.example").has_value());
  CHECK(cache.Read("gone.example")->removal->removed_at == 3000);
  CHECK(cache.Read("gone.example")->removal->removed_by == "hostc");
  // ... and over an earlier removal only.
  REQUIRE(cache.RecordRemoval(StsRemoval{"gone.example", 2000, "hostd"}).ok());
  CHECK(cache.Read("gone.example")->removal->removed_by == "hostc");
  REQUIRE(cache.RecordRemoval(StsRemoval{"gone.example", 4000, "hostd"}).ok());
  CHECK(cache.Read("gone.example")->removal->removed_at == 4000);
  CHECK(cache.Read("gone.example")->removal->removed_by == "hostd");
  REQUIRE(cache.RecordRemoval(StsRemoval{"unseen.example", 10, ""}).ok());
  CHECK(cache.Read("unseen.example")->removal.has_value());
  CHECK_FALSE(cache.RecordRemoval(StsRemoval{"", 10, ""}).ok());
}

}  // namespace

TEST_CASE("mta_sts: memory cache round trip") {
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  CacheRoundTrip(*cache);
}

TEST_CASE("mta_sts: memory cache removal marks") {
  std::unique_ptr<StsCache> cache = NewMemoryStsCache();
  CacheRemovalMarks(*cache);
}

TEST_CASE("mta_sts: sqlite cache removal marks, kept on reopening, and the columns added to an older file") {
  TempDir dir;
  const std::string path = dir.path() + "/sts.db";
  {
    // The table as the version before removal marks created it.
    Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions());
    REQUIRE(db.ok());
    const std::string sql =
        "CREATE TABLE sts_policy (domain TEXT PRIMARY KEY, id TEXT, text TEXT, fetched_at INTEGER,"
        " expires_at INTEGER, refresh_failures INTEGER NOT NULL DEFAULT 0, refresh_last INTEGER NOT NULL"
        " DEFAULT 0, refresh_next INTEGER NOT NULL DEFAULT 0, refresh_error TEXT NOT NULL DEFAULT '');"
        "INSERT INTO sts_policy (domain, id, text, fetched_at, expires_at) VALUES ('old.example', 'o1', '" +
        std::string(kGood) + "', 100000, 186400);";
    REQUIRE(db->Exec(sql).ok());
  }
  Result<std::unique_ptr<StsCache>> cache = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(cache.ok(), cache.error());
  REQUIRE(cache.value()->Get("old.example").has_value());
  CHECK(cache.value()->Get("old.example")->fetched_by.empty());
  CacheRemovalMarks(*cache.value());
  cache = Status::Error("closed");
  Result<std::unique_ptr<StsCache>> reopened = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(reopened.ok(), reopened.error());
  CHECK_FALSE(reopened.value()->Get("gone.example").has_value());
  CHECK(reopened.value()->Read("gone.example")->removal->removed_by == "hostd");
  CHECK(reopened.value()->Read("never.example")->removal.has_value());
  CHECK(reopened.value()->Get("old.example").has_value());
}

namespace {

int64_t UserVersionOf(const std::string& path) {
  Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions());
  REQUIRE(db.ok());
  Result<int64_t> version = db->UserVersion();
  REQUIRE(version.ok());
  return *version;
}

}  // namespace

TEST_CASE("mta_sts: sqlite cache: a file made or migrated is marked with its schema version, and one so marked "
          "is not checked again but must still have every column") {
  TempDir dir;
  const std::string made = dir.path() + "/made.db", older = dir.path() + "/older.db", marked = dir.path() + "/x.db";
  REQUIRE(OpenSqliteStsCache(made).ok());
  CHECK(UserVersionOf(made) == 1);
  // The version before refresh state: migrated once, then marked.
  for (const std::string& path : {older, marked}) {
    Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions());
    REQUIRE(db.ok());
    const std::string sql = "CREATE TABLE sts_policy (domain TEXT PRIMARY KEY, id TEXT, text TEXT,"
                            " fetched_at INTEGER, expires_at INTEGER);" +
                            std::string(path == marked ? "PRAGMA user_version = 1;" : "");
    REQUIRE(db->Exec(sql).ok());
  }
  Result<std::unique_ptr<StsCache>> migrated = OpenSqliteStsCache(older);
  REQUIRE_MESSAGE(migrated.ok(), migrated.error());
  CHECK(migrated.value()->Put(Entry("a.example", "a1", kGood, 5)).ok());
  CHECK(UserVersionOf(older) == 1);
  // Marked as made by this version but lacking its columns: refused at open, not at the first read.
  Result<std::unique_ptr<StsCache>> refused = OpenSqliteStsCache(marked);
  REQUIRE_FALSE(refused.ok());
  CHECK_MESSAGE(refused.error().find("sts cache " + marked + ": prepare statement: no such column") == 0,
                refused.error());
}

TEST_CASE("mta_sts: sqlite cache round trip and sharing") {
  TempDir dir;
  const std::string path = dir.path() + "/sts.db";
  Result<std::unique_ptr<StsCache>> a = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(a.ok(), a.error());
  CacheRoundTrip(*a.value());

  // A second handle on the same file (as another process would have) sees
  // the first one's writes, and the other way round.
  Result<std::unique_ptr<StsCache>> b = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(b.ok(), b.error());
  CHECK(b.value()->Get("other.example").has_value());
  REQUIRE(b.value()->Put(Entry("shared.example", "s1", kGood, 5)).ok());
  std::optional<CachedStsPolicy> got = a.value()->Get("shared.example");
  REQUIRE(got.has_value());
  CHECK(got->id == "s1");
  REQUIRE(a.value()->Put(Entry("shared.example", "s2", kGood, 6)).ok());
  CHECK(b.value()->Get("shared.example")->id == "s2");
  REQUIRE(b.value()->Remove("shared.example").ok());
  CHECK_FALSE(a.value()->Get("shared.example").has_value());

  // Survives reopening.
  a = Status::Error("closed");
  b = Status::Error("closed");
  Result<std::unique_ptr<StsCache>> c = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(c.ok(), c.error());
  CHECK(c.value()->Get("other.example").has_value());
}

TEST_CASE("mta_sts: sqlite cache: a process's close leaves the WAL, which commits keep within its bound") {
  TempDir dir;
  const std::string path = dir.path() + "/sts.db";
  // A policy of a page or more, so that every Put adds at least a page to the WAL.
  std::string big = "version: STSv1\nmode: enforce\nmax_age: 86400\n";
  for (int i = 0; i < 80; ++i) big += "mx: mx" + std::to_string(i) + ".a-rather-long-name-for-a-mail-host.example.org\n";
  REQUIRE(big.size() > 4096);
  struct stat wal{};
  // Every `deliver` (here: each open) reads, some store a policy; each closes without a checkpoint.
  for (int process = 0; process < 300; ++process) {
    Result<std::unique_ptr<StsCache>> cache = OpenSqliteStsCache(path);
    REQUIRE_MESSAGE(cache.ok(), cache.error());
    if (process > 0) CHECK(cache.value()->Get("d" + std::to_string(process - 1) + ".example").has_value());
    REQUIRE(cache.value()->Put(Entry("d" + std::to_string(process) + ".example", "i", big, process)).ok());
    cache = Status::Error("closed");
    REQUIRE(stat((path + "-wal").c_str(), &wal) == 0);  // not deleted at close
  }
  // 300 commits of two pages or more; the WAL (its size the most it held) stayed near its bound of
  // 64 pages.
  CHECK(wal.st_size <= 80 * (4096 + 24) + 32);
  Result<std::unique_ptr<StsCache>> last = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(last.ok(), last.error());
  for (int process = 0; process < 300; ++process) CHECK(last.value()->Get("d" + std::to_string(process) + ".example"));
}

TEST_CASE("mta_sts: sqlite cache treats unreadable rows as absent") {
  TempDir dir;
  const std::string path = dir.path() + "/sts.db";
  Result<std::unique_ptr<StsCache>> cache = OpenSqliteStsCache(path);
  REQUIRE_MESSAGE(cache.ok(), cache.error());
  REQUIRE(cache.value()->Put(Entry("corrupt.example", "c1", kGood, 1)).ok());
  REQUIRE(cache.value()->Put(Entry("null.example", "n1", kGood, 1)).ok());
  REQUIRE(cache.value()->Put(Entry("fine.example", "f1", kGood, 1)).ok());

  Result<SqliteDb> db = SqliteDb::Open(path, SqliteOpenOptions());
  REQUIRE(db.ok());
  CHECK(db->Exec("UPDATE sts_policy SET text = 'version: STSv1\nmode: sometimes\nmax_age: 5\n' "
                 "WHERE domain = 'corrupt.example';"
                 "UPDATE sts_policy SET text = NULL WHERE domain = 'null.example';")
            .ok());

  CHECK_FALSE(cache.value()->Get("corrupt.example").has_value());
  CHECK_FALSE(cache.value()->Get("null.example").has_value());
  CHECK(cache.value()->Get("fine.example").has_value());

  // The expires_at column is not a second opinion on the policy's
  // lifetime: the expiry is read from the text that is applied.
  CHECK(db->Exec("UPDATE sts_policy SET expires_at = 99999999999 WHERE domain = 'fine.example';"
                 "UPDATE sts_policy SET text = 'version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 5\n' "
                 "WHERE domain = 'null.example';")
            .ok());
  CHECK(cache.value()->Get("fine.example")->expires_at == 1 + 86400);
  REQUIRE(cache.value()->Get("null.example").has_value());
  CHECK(cache.value()->Get("null.example")->expires_at == 1 + 5);
  // A good policy written over the bad row makes it readable again.
  REQUIRE(cache.value()->Put(Entry("corrupt.example", "c2", kGood, 2)).ok());
  CHECK(cache.value()->Get("corrupt.example")->id == "c2");
}

TEST_CASE("mta_sts: sqlite cache used from several threads") {
  TempDir dir;
  Result<std::unique_ptr<StsCache>> cache = OpenSqliteStsCache(dir.path() + "/sts.db");
  REQUIRE_MESSAGE(cache.ok(), cache.error());
  StsCache* c = cache.value().get();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([c, t, &failures] {
      for (int i = 0; i < 25; ++i) {
        std::string domain = "d" + std::to_string(t) + "-" + std::to_string(i) + ".example";
        if (!c->Put(Entry(domain, "x" + std::to_string(i), kGood, i)).ok()) ++failures;
        if (!c->Get(domain).has_value()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  CHECK(c->Get("d3-24.example")->id == "x24");
}

TEST_CASE("mta_sts: sqlite cache open error names the path") {
  const std::string path = "/nonexistent-mxsec-test-dir/sub/sts.db";
  Result<std::unique_ptr<StsCache>> cache = OpenSqliteStsCache(path);
  REQUIRE_FALSE(cache.ok());
  CHECK(Contains(cache.error(), path));
  CHECK(Contains(cache.error(), "unable to open"));
}

// --- Fetcher failure paths (no TLS server needed) ---

TEST_CASE("mta_sts: fetch without addresses fails without network") {
  InitCurlOnce();
  std::unique_ptr<StsFetcher> f = NewCurlStsFetcher(StsFetchOptions{});
  CHECK(f->FetchMany({}).empty());
  std::vector<StsFetchResult> r = f->FetchMany({{"example.com", {}}});
  REQUIRE(r.size() == 1);
  CHECK_FALSE(r[0].ok);
  CHECK(r[0].error == "no address for mta-sts.example.com");
}

TEST_CASE("mta_sts: fetch rejects bad domains and non-IP addresses") {
  std::unique_ptr<StsFetcher> f = NewCurlStsFetcher(StsFetchOptions{});
  std::vector<StsFetchResult> r = f->FetchMany({
      {"evil.example/x?", {"127.0.0.1"}},
      {"", {"127.0.0.1"}},
      {"example.com", {"localhost"}},
      {"example.com", {"127.0.0.1:80"}},
  });
  REQUIRE(r.size() == 4);
  CHECK(Contains(r[0].error, "invalid domain"));
  CHECK(Contains(r[1].error, "invalid domain"));
  CHECK(r[2].error == "invalid address \"localhost\" for mta-sts.example.com");
  CHECK(Contains(r[3].error, "invalid address"));
  for (auto& x : r) CHECK_FALSE(x.ok);
}

TEST_CASE("mta_sts: fetch from a port where nothing listens fails fast") {
  StsFetchOptions opt;
  opt.port = UnusedPort();
  opt.connect_timeout_ms = 3000;
  opt.total_timeout_ms = 5000;
  std::unique_ptr<StsFetcher> f = NewCurlStsFetcher(opt);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<StsFetchResult> r = f->FetchMany({{"example.com", {"127.0.0.1"}}, {"example.org", {}}});
  CHECK(SecondsSince(t0) < 3.0);
  REQUIRE(r.size() == 2);
  CHECK_FALSE(r[0].ok);
  INFO(r[0].error);
  CHECK(Contains(r[0].error, "127.0.0.1"));
  CHECK(Contains(r[0].error, "onnect"));
  CHECK(r[1].error == "no address for mta-sts.example.org");
}

TEST_CASE("mta_sts: fetch tries the next address after a refused connection") {
  Listener server;
  server.AcceptAndClose();
  StsFetchOptions opt;
  opt.port = server.port();
  opt.total_timeout_ms = 5000;
  std::unique_ptr<StsFetcher> f = NewCurlStsFetcher(opt);
  // 127.0.0.2 refuses (the listener is bound to 127.0.0.1 only); 127.0.0.1
  // answers but is no TLS server.
  std::vector<StsFetchResult> r = f->FetchMany({{"example.com", {"127.0.0.2", "127.0.0.1"}}});
  REQUIRE(r.size() == 1);
  CHECK_FALSE(r[0].ok);
  INFO(r[0].error);
  CHECK(Contains(r[0].error, "(2 addresses tried)"));
  CHECK_FALSE(Contains(r[0].error, "127.0.0.2"));
}

TEST_CASE("mta_sts: fetch from a silent server times out, concurrently") {
  Listener server;  // completes TCP handshakes, never answers
  StsFetchOptions opt;
  opt.port = server.port();
  opt.connect_timeout_ms = 500;
  opt.total_timeout_ms = 3000;
  std::unique_ptr<StsFetcher> f = NewCurlStsFetcher(opt);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<StsFetchResult> r = f->FetchMany({
      {"a.example", {"127.0.0.1", "127.0.0.1"}},
      {"b.example", {"127.0.0.1"}},
      {"c.example", {"127.0.0.1"}},
      {"d.example", {"127.0.0.1"}},
      {"e.example", {"127.0.0.1"}},
  });
  double elapsed = SecondsSince(t0);
  // The TLS handshake stalls, so every attempt ends at the connect timeout:
  // a.example tries two addresses (1 s), the others one (0.5 s each).
  // Sequential fetches would take at least 3 s. The total timeout is far
  // away so that, even under ASan on a loaded machine, the second address
  // of a.example gets its try.
  CHECK(elapsed >= 0.95);
  CHECK(elapsed < 2.5);
  REQUIRE(r.size() == 5);
  for (auto& x : r) {
    INFO(x.error);
    CHECK_FALSE(x.ok);
    CHECK((Contains(x.error, "timed out") || Contains(x.error, "timeout")));
  }
  // The handshake stalled within the connect timeout: the next address was tried.
  CHECK(Contains(r[0].error, "(2 addresses tried)"));
  CHECK_FALSE(Contains(r[1].error, "addresses tried"));
}
