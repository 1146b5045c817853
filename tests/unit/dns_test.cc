// dns_test.cc - DNS reply parsing (hostile packets), resolver-mode status
// classification, and the UDP/TCP transport against a scripted server.
#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "loopback.h"
#include "mxsec/dns/dns.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace mxsec;
using mxsec::testing::Section;

namespace {

// Builds a reply packet in wire form.
std::vector<uint8_t> Reply(uint16_t id, const std::string& qname, ldns_rr_type qtype,
                           const std::vector<std::string>& answers, ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR,
                           bool ad = false, bool tc = false) {
  ldns_pkt* p = ldns_pkt_new();
  ldns_pkt_set_id(p, id);
  ldns_pkt_set_qr(p, true);
  ldns_pkt_set_rd(p, true);
  ldns_pkt_set_ra(p, true);
  ldns_pkt_set_ad(p, ad);
  ldns_pkt_set_tc(p, tc);
  ldns_pkt_set_rcode(p, rcode);
  ldns_rr* q = ldns_rr_new();
  ldns_rr_set_owner(q, ldns_dname_new_frm_str(qname.c_str()));
  ldns_rr_set_type(q, qtype);
  ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
  ldns_rr_set_question(q, true);
  ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q);
  for (const auto& a : answers) {
    ldns_rr* rr = nullptr;
    REQUIRE(ldns_rr_new_frm_str(&rr, a.c_str(), 300, nullptr, nullptr) == LDNS_STATUS_OK);
    ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
  }
  uint8_t* buf = nullptr;
  size_t len = 0;
  REQUIRE(ldns_pkt2wire(&buf, p, &len) == LDNS_STATUS_OK);
  std::vector<uint8_t> out(buf, buf + len);
  free(buf);
  ldns_pkt_free(p);
  return out;
}

DnsResponse Parse(const std::vector<uint8_t>& w, const DnsQuestion& q, uint16_t id, std::string* mismatch) {
  return ParseDnsReply(w.data(), w.size(), q, id, mismatch);
}

}  // namespace

TEST_CASE("dns: reply parsing of MX, TLSA, TXT, CNAME records") {
  std::string mm;
  auto w = Reply(7, "Example.ORG.", LDNS_RR_TYPE_MX, {"example.org. 300 IN MX 10 MX1.example.org.",
                                                     "example.org. 300 IN MX 0 ."}, LDNS_RCODE_NOERROR, true);
  DnsResponse r = Parse(w, {"example.org", RrType::kMX}, 7, &mm);
  CHECK(mm.empty());
  CHECK(r.answered);
  CHECK(r.ad);
  REQUIRE(AnswerRecords(r).size() == 2);
  CHECK(AnswerRecords(r)[0].exchange == "mx1.example.org");
  CHECK(AnswerRecords(r)[0].preference == 10);
  CHECK(AnswerRecords(r)[1].exchange == "");

  w = Reply(8, "_25._tcp.mx.example.", LDNS_RR_TYPE_TLSA,
            {"_25._tcp.mx.example. 300 IN TLSA 3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"});
  r = Parse(w, {"_25._tcp.mx.example", RrType::kTLSA}, 8, &mm);
  REQUIRE(AnswerRecords(r).size() == 1);
  CHECK(AnswerRecords(r)[0].tlsa.usage == 3);
  CHECK(AnswerRecords(r)[0].tlsa.data.size() == 32);
  CHECK(AnswerRecords(r)[0].tlsa.data[0] == 1);

  w = Reply(9, "_mta-sts.example.", LDNS_RR_TYPE_TXT, {"_mta-sts.example. 300 IN TXT \"v=STSv1; \" \"id=abc\""});
  r = Parse(w, {"_mta-sts.example", RrType::kTXT}, 9, &mm);
  REQUIRE(AnswerRecords(r).size() == 1);
  CHECK(AnswerRecords(r)[0].text == "v=STSv1; id=abc");
}

TEST_CASE("dns: replies that do not match the question are rejected") {
  std::string mm;
  auto w = Reply(7, "example.org.", LDNS_RR_TYPE_MX, {});
  Parse(w, {"example.org", RrType::kMX}, 8, &mm);
  CHECK_FALSE(mm.empty());
  Parse(w, {"example.com", RrType::kMX}, 7, &mm);
  CHECK_FALSE(mm.empty());
  Parse(w, {"example.org", RrType::kA}, 7, &mm);
  CHECK_FALSE(mm.empty());
  std::vector<uint8_t> garbage{0, 7, 0x80, 0, 0, 5, 0xff};
  Parse(garbage, {"example.org", RrType::kMX}, 7, &mm);
  CHECK_FALSE(mm.empty());
  for (size_t cut = 0; cut < w.size(); ++cut) {  // every truncation: no crash
    std::vector<uint8_t> part(w.begin(), w.begin() + static_cast<long>(cut));
    Parse(part, {"example.org", RrType::kMX}, 7, &mm);
  }
}

TEST_CASE("dns: classification in resolver mode") {
  DnsQuestion q{"www.example.org", RrType::kA};
  DnsResponse r;
  r.answered = true;
  r.rcode = DnsRcode::kNoError;
  r.ad = true;
  r.answer_rrs = Section(
      "www.example.org. 300 IN CNAME web.example.net.\n"
      "web.example.net. 300 IN A 192.0.2.1\n"
      "evil.example. 300 IN A 198.51.100.1\n");
  DnsAnswer ans = ClassifyResponse(q, r, nullptr, true);
  CHECK(ans.outcome == DnsOutcome::kRecords);
  CHECK(ans.dnssec == DnssecStatus::kSecure);
  CHECK(ans.chain == std::vector<std::string>{"web.example.net"});
  REQUIRE(ans.records.size() == 1);
  CHECK(ans.records[0].text == "192.0.2.1");

  CHECK(ClassifyResponse(q, r, nullptr, false).dnssec == DnssecStatus::kInsecure);
  r.ad = false;
  CHECK(ClassifyResponse(q, r, nullptr, true).dnssec == DnssecStatus::kInsecure);

  // NODATA / NXDOMAIN
  r.answer_rrs = Section("");
  r.ad = true;
  CHECK(ClassifyResponse(q, r, nullptr, true).outcome == DnsOutcome::kNoData);
  r.rcode = DnsRcode::kNxDomain;
  ans = ClassifyResponse(q, r, nullptr, true);
  CHECK(ans.outcome == DnsOutcome::kNxDomain);
  CHECK(ans.dnssec == DnssecStatus::kSecure);

  // SERVFAIL: bogus when CD=1 brings data, indeterminate otherwise.
  r.rcode = DnsRcode::kServFail;
  r.ede = "7 Signature Expired";
  DnsResponse cd;
  cd.answered = true;
  cd.rcode = DnsRcode::kNoError;
  ans = ClassifyResponse(q, r, &cd, true);
  CHECK(ans.outcome == DnsOutcome::kFailure);
  CHECK(ans.dnssec == DnssecStatus::kBogus);
  CHECK(ans.reason.find("Signature Expired") != std::string::npos);
  cd.rcode = DnsRcode::kServFail;
  CHECK(ClassifyResponse(q, r, &cd, true).dnssec == DnssecStatus::kIndeterminate);
  r.rcode = DnsRcode::kRefused;
  CHECK(ClassifyResponse(q, r, nullptr, true).failed());
  DnsResponse none;
  CHECK(ClassifyResponse(q, none, nullptr, true).dnssec == DnssecStatus::kIndeterminate);
}

TEST_CASE("dns: CNAME loops and overlong chains are failures") {
  DnsQuestion q{"a.example", RrType::kA};
  DnsResponse r;
  r.answered = true;
  r.rcode = DnsRcode::kNoError;
  auto cname = [](std::string from, std::string to) { return from + ". 300 IN CNAME " + to + ".\n"; };
  r.answer_rrs = Section(cname("a.example", "b.example") + cname("b.example", "a.example"));
  CHECK(ClassifyResponse(q, r, nullptr, true).failed());
  std::string chain;
  for (int i = 0; i < 12; ++i)
    chain += cname(i ? "c" + std::to_string(i) + ".example" : "a.example", "c" + std::to_string(i + 1) + ".example");
  r.answer_rrs = Section(chain);
  CHECK(ClassifyResponse(q, r, nullptr, true).failed());
}

namespace {

// A scripted DNS server on 127.0.0.1 (UDP, and TCP on the same port).
class ScriptedServer {
 public:
  using Handler = std::function<std::vector<std::vector<uint8_t>>(uint16_t id, const std::string& qname,
                                                                  ldns_rr_type qtype, bool tcp)>;
  explicit ScriptedServer(Handler h) : handler_(std::move(h)) {
    // The UDP port the kernel picks may be in use for TCP by another
    // process (other tests run alongside): try ports until both bind.
    bool bound = false;
    for (int attempt = 0; attempt < 100 && !bound; ++attempt) {
      udp_ = socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(bind(udp_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
      socklen_t l = sizeof sa;
      getsockname(udp_, reinterpret_cast<sockaddr*>(&sa), &l);
      port_ = ntohs(sa.sin_port);
      tcp_ = socket(AF_INET, SOCK_STREAM, 0);
      int one = 1;
      setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(tcp_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && listen(tcp_, 4) == 0) {
        bound = true;
      } else {
        close(udp_);
        close(tcp_);
      }
    }
    REQUIRE(bound);
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    close(udp_);
    close(tcp_);
  }
  uint16_t port() const { return port_; }
  std::atomic<int> queries{0};

 private:
  static bool Question(const uint8_t* b, size_t n, uint16_t* id, std::string* name, ldns_rr_type* type) {
    ldns_pkt* p = nullptr;
    if (ldns_wire2pkt(&p, b, n) != LDNS_STATUS_OK) return false;
    *id = ldns_pkt_id(p);
    ldns_rr* q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
    char* s = ldns_rdf2str(ldns_rr_owner(q));
    *name = s;
    free(s);
    *type = ldns_rr_get_type(q);
    ldns_pkt_free(p);
    return true;
  }
  void Loop() {
    while (!stop_) {
      pollfd pf[2] = {{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}};
      if (poll(pf, 2, 50) <= 0) continue;
      if (pf[0].revents & POLLIN) {
        uint8_t buf[4096];
        sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(udp_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
        uint16_t id;
        std::string name;
        ldns_rr_type type;
        if (n > 0 && Question(buf, static_cast<size_t>(n), &id, &name, &type)) {
          ++queries;
          for (const auto& reply : handler_(id, name, type, false))
            sendto(udp_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
        }
      }
      if (pf[1].revents & POLLIN) {
        int c = accept(tcp_, nullptr, nullptr);
        uint8_t len[2];
        if (c >= 0 && recv(c, len, 2, MSG_WAITALL) == 2) {
          std::vector<uint8_t> q((len[0] << 8) | len[1]);
          recv(c, q.data(), q.size(), MSG_WAITALL);
          uint16_t id;
          std::string name;
          ldns_rr_type type;
          if (Question(q.data(), q.size(), &id, &name, &type)) {
            for (const auto& reply : handler_(id, name, type, true)) {
              uint8_t l2[2] = {static_cast<uint8_t>(reply.size() >> 8), static_cast<uint8_t>(reply.size())};
              send(c, l2, 2, 0);
              send(c, reply.data(), reply.size(), 0);
            }
          }
        }
        if (c >= 0) close(c);
      }
    }
  }
  Handler handler_;
  int udp_ = -1, tcp_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE("dns: transport ignores spoofed replies and matches concurrent answers") {
  ScriptedServer server([](uint16_t id, const std::string& name, ldns_rr_type type, bool) {
    std::vector<std::vector<uint8_t>> out;
    out.push_back(Reply(static_cast<uint16_t>(id + 1), name, type, {name + " 300 IN A 198.51.100.66"}));  // wrong ID
    out.push_back(Reply(id, "other.example.", type, {"other.example. 300 IN A 198.51.100.66"}));       // wrong name
    out.push_back(Reply(id, name, type, {name + " 300 IN A 192.0.2.1"}, LDNS_RCODE_NOERROR, true));
    return out;
  });
  auto t = NewLdnsTransport({{{"127.0.0.1", server.port()}}, 1000, 1});
  std::vector<DnsQuestion> qs;
  for (int i = 0; i < 20; ++i) qs.push_back({"h" + std::to_string(i) + ".example", RrType::kA});
  auto rs = t->QueryMany(qs, false);
  REQUIRE(rs.size() == 20);
  for (int i = 0; i < 20; ++i) {
    CHECK(rs[i].answered);
    CHECK(rs[i].ad);
    REQUIRE(AnswerRecords(rs[i]).size() == 1);
    CHECK(AnswerRecords(rs[i])[0].owner == qs[i].name);
    CHECK(AnswerRecords(rs[i])[0].text == "192.0.2.1");
  }
}

TEST_CASE("dns: truncated UDP replies are asked again over TCP") {
  ScriptedServer server([](uint16_t id, const std::string& name, ldns_rr_type type, bool tcp) {
    if (!tcp) return std::vector<std::vector<uint8_t>>{Reply(id, name, type, {}, LDNS_RCODE_NOERROR, false, true)};
    return std::vector<std::vector<uint8_t>>{Reply(id, name, type, {name + " 300 IN TXT \"big\""})};
  });
  auto t = NewLdnsTransport({{{"127.0.0.1", server.port()}}, 1000, 1});
  auto rs = t->QueryMany({{"big.example", RrType::kTXT}}, false);
  REQUIRE(rs[0].answered);
  REQUIRE(AnswerRecords(rs[0]).size() == 1);
  CHECK(AnswerRecords(rs[0])[0].text == "big");
}

TEST_CASE("dns: an answer over the record limit is refused whole, in resolver mode too") {
  // Sent over TCP after a truncated UDP reply, as an on-path attacker can.
  ScriptedServer server([](uint16_t id, const std::string& name, ldns_rr_type type, bool tcp) {
    if (!tcp) return std::vector<std::vector<uint8_t>>{Reply(id, name, type, {}, LDNS_RCODE_NOERROR, true, true)};
    std::vector<std::string> many;
    for (int i = 0; i < 600; ++i) many.push_back(name + " 300 IN A 192.0.2." + std::to_string(i % 250 + 1));
    many.push_back(name + " 300 IN A 203.0.113.66");
    return std::vector<std::vector<uint8_t>>{Reply(id, name, type, many, LDNS_RCODE_NOERROR, true)};
  });
  auto t = NewLdnsTransport({{{"127.0.0.1", server.port()}}, 1000, 1});
  auto rs = t->QueryMany({{"many.example", RrType::kA}}, false);
  REQUIRE(rs.size() == 1);
  CHECK_FALSE(rs[0].answered);
  CHECK_MESSAGE(rs[0].error.find("601 records") != std::string::npos, rs[0].error);
  CHECK_MESSAGE(rs[0].error.find("512") != std::string::npos, rs[0].error);
  DnsAnswer a = ClassifyResponse({"many.example", RrType::kA}, rs[0], nullptr, true);
  CHECK(a.failed());
  CHECK(a.dnssec == DnssecStatus::kIndeterminate);
  CHECK(a.records.empty());
  CHECK_MESSAGE(a.reason.find("512") != std::string::npos, a.reason);

  // The limit is on the reply as sent, whatever the records are: at 512
  // the whole answer is read.
  std::vector<std::string> at_cap;
  for (int i = 0; i < 512; ++i) at_cap.push_back("cap.example. 300 IN A 192.0.2." + std::to_string(i % 250 + 1));
  auto w = Reply(9, "cap.example.", LDNS_RR_TYPE_A, at_cap);
  std::string mm;
  DnsResponse r = Parse(w, {"cap.example", RrType::kA}, 9, &mm);
  CHECK(mm.empty());
  CHECK(r.answered);
  a = ClassifyResponse({"cap.example", RrType::kA}, r, nullptr, true);
  CHECK(a.records.size() == 512);
}

TEST_CASE("dns: a silent server times out, a dead one fails fast, the next server is tried") {
  ScriptedServer silent([](uint16_t, const std::string&, ldns_rr_type, bool) {
    return std::vector<std::vector<uint8_t>>{};
  });
  auto t = NewLdnsTransport({{{"127.0.0.1", silent.port()}}, 200, 2});
  auto start = std::chrono::steady_clock::now();
  auto rs = t->QueryMany({{"x.example", RrType::kA}}, false);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  CHECK_FALSE(rs[0].answered);
  CHECK(rs[0].error.find("timeout") != std::string::npos);
  CHECK(ms >= 350);
  CHECK(silent.queries == 2);

  ScriptedServer good([](uint16_t id, const std::string& name, ldns_rr_type type, bool) {
    return std::vector<std::vector<uint8_t>>{Reply(id, name, type, {name + " 300 IN A 192.0.2.1"})};
  });
  t = NewLdnsTransport({{{"127.0.0.1", silent.port()}, {"127.0.0.1", good.port()}}, 200, 1});
  rs = t->QueryMany({{"x.example", RrType::kA}}, false);
  CHECK(rs[0].answered);
}

TEST_CASE("dns: a port where nothing listens fails at once for every question of the batch") {
  // Bind and close to find a free port.
  uint16_t port = 0;
  close(mxsec_test::BindLoopback(SOCK_DGRAM, &port));
  auto t = NewLdnsTransport({{{"127.0.0.1", port}}, 3000, 2});
  auto start = std::chrono::steady_clock::now();
  auto rs = t->QueryMany({{"a.example", RrType::kMX}, {"b.example", RrType::kTXT}, {"c.example", RrType::kA}}, false);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  CHECK(ms < 1000);
  for (const auto& r : rs) {
    CHECK_FALSE(r.answered);
    CHECK(r.error.find("refused") != std::string::npos);
  }
}

TEST_CASE("dns: mutated replies never crash the parser or the classifier") {
  // Hostile servers send anything; under ASan/UBSan this finds memory errors.
  auto w = Reply(7, "example.org.", LDNS_RR_TYPE_MX,
                 {"example.org. 300 IN MX 10 mx1.example.org.", "example.org. 300 IN CNAME a.example.org.",
                  "_25._tcp.example.org. 300 IN TLSA 3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"});
  uint32_t seed = 12345;
  auto rnd = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) & 0x7fff;
  };
  size_t parsed = 0, rejected = 0;
  for (int round = 0; round < 5000; ++round) {
    std::vector<uint8_t> m = w;
    int flips = 1 + static_cast<int>(rnd() % 8);
    for (int k = 0; k < flips; ++k) m[rnd() % m.size()] = static_cast<uint8_t>(rnd());
    if (rnd() % 4 == 0) m.resize(rnd() % m.size());
    std::string mm;
    DnsResponse r = ParseDnsReply(m.data(), m.size(), {"example.org", RrType::kMX}, 7, &mm);
    if (!mm.empty()) {
      ++rejected;
      continue;
    }
    ++parsed;
    DnsAnswer a = ClassifyResponse({"example.org", RrType::kMX}, r, nullptr, true);
    // Whatever came in, the answer is one of the defined outcomes and only
    // records of the asked type at the end of the chain are returned.
    for (const DnsRecord& rec : a.records) {
      CHECK(rec.type == RrType::kMX);
      CHECK(rec.owner == a.final_name);
    }
  }
  // The mutations must exercise both the rejection paths and the record
  // parsing, or this test proves nothing.
  CHECK(parsed > 100);
  CHECK(rejected > 100);
}

TEST_CASE("dns: DNAME substitution and chains through DNAMEs") {
  CHECK(DnameSubstitute("a.b.dn.example", "dn.example", "target.test").value() == "a.b.target.test");
  CHECK(DnameSubstitute("a.example", "", "x.test").value() == "a.example.x.test");  // DNAME at the root
  CHECK(DnameSubstitute("a.dn.example", "dn.example", "").value() == "a");          // DNAME to the root
  CHECK_FALSE(DnameSubstitute("dn.example", "dn.example", "t.test").ok());  // the owner itself is not redirected
  CHECK_FALSE(DnameSubstitute("xdn.example", "dn.example", "t.test").ok());
  CHECK_FALSE(DnameSubstitute("a.other.example", "dn.example", "t.test").ok());
  // 255 octets on the wire at most: 4 labels of 63 = 4 * 64 + 1 = 257 octets.
  const std::string l63(63, 'x');
  auto too_long = DnameSubstitute(l63 + "." + l63 + ".dn", "dn", l63 + "." + l63);
  CHECK_FALSE(too_long.ok());
  CHECK(too_long.error().find("longer than 255 octets") != std::string::npos);
  // 3 x 63 + 61 = 254 octets fits; an escape (\DDD) is one octet.
  CHECK(DnameSubstitute(l63 + "." + l63 + ".dn", "dn", l63 + "." + std::string(61, 'y')).ok());
  CHECK(DnameSubstitute(l63 + "." + l63 + ".dn", "dn", l63 + ".\\046" + std::string(60, 'y')).ok());

  auto rec = [](const std::string& type, const std::string& owner, const std::string& data) {
    return owner + ". 300 IN " + type + " " + data + "\n";
  };
  DnsQuestion q{"mx.dn.example", RrType::kA};
  DnsResponse r;
  r.answered = true;
  r.rcode = DnsRcode::kNoError;
  r.ad = true;
  // DNAME plus its synthesized CNAME, as servers send them.
  const std::string dname = rec("DNAME", "dn.example", "target.test.");
  const std::string target_a = rec("A", "mx.target.test", "192.0.2.1");
  r.answer_rrs = Section(dname + rec("CNAME", "mx.dn.example", "mx.target.test.") + target_a);
  DnsAnswer a = ClassifyResponse(q, r, nullptr, true);
  CHECK(a.outcome == DnsOutcome::kRecords);
  CHECK(a.chain == std::vector<std::string>{"mx.target.test"});
  CHECK(a.dnssec == DnssecStatus::kSecure);
  // Without the CNAME the DNAME is followed: never "no data" for a redirected name.
  r.answer_rrs = Section(dname + target_a);
  a = ClassifyResponse(q, r, nullptr, true);
  CHECK(a.outcome == DnsOutcome::kRecords);
  CHECK(a.final_name == "mx.target.test");
  REQUIRE(a.records.size() == 1);
  // Data at the name itself wins over a DNAME above it that has nothing to do with the chain.
  r.answer_rrs = Section(dname + target_a + rec("A", "mx.dn.example", "192.0.2.9"));
  a = ClassifyResponse(q, r, nullptr, true);
  CHECK(a.chain.empty());
  REQUIRE(a.records.size() == 1);
  CHECK(a.records[0].text == "192.0.2.9");
  // A DNAME into its own subtree never ends: the chain limit stops it.
  r.answer_rrs = Section(rec("DNAME", "dn.example", "x.dn.example."));
  a = ClassifyResponse(q, r, nullptr, true);
  CHECK(a.failed());
  CHECK(a.reason.find("longer than") != std::string::npos);
  // A substitution that would exceed 255 octets is a failure, not "no data".
  DnsQuestion longq{l63 + "." + l63 + ".dn.example", RrType::kA};
  r.answer_rrs = Section(rec("DNAME", "dn.example", l63 + "." + l63 + ".test."));
  a = ClassifyResponse(longq, r, nullptr, true);
  CHECK(a.failed());
  CHECK(a.reason.find("longer than 255 octets") != std::string::npos);
}
