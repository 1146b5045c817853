// dns_transport.cc - DNS questions on the wire, with ldns for packets only.
//
// ldns's own resolver is not thread-safe, sends one query at a time,
// blacklists a server after one failure and does not check that a reply
// belongs to its query. So ldns builds and parses packets and
// this module does the I/O: every question of a batch goes out at once on
// one connected UDP socket per server, replies are matched by ID, QR bit,
// question name, type and class; anything else is dropped. A truncated
// reply is asked again over TCP. Unanswered questions are retransmitted,
// then the next server is tried. A reply's answer and authority sections
// are kept once, whole, RRSIGs included (DnsResponse); one over
// kMaxSectionRecords is refused, not cut short. Nothing here decides
// DNSSEC status.
// C++ headers first: ldns/common.h redefines false/true as macros.
#include <optional>
#include <string>
#include <vector>

#include "mxsec/dns/dns.h"
#include "mxsec/dns/dnssec.h"
#include "mxsec/base/domain_name.h"
#include "ldns_ptr.h"  // the owners of ldns objects

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>

namespace mxsec {
namespace {


class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;

int64_t MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : left;
}

std::string RdfToName(const ldns_rdf* rdf) {
  MallocedChars s(ldns_rdf2str(rdf));
  if (!s) return "";
  std::string name(s.get());
  if (name == ".") return "";
  if (!name.empty() && name.back() == '.') name.pop_back();
  return AsciiLower(name);
}

uint16_t RandomId() {
  uint16_t id = 0;
  if (getrandom(&id, sizeof id, 0) != sizeof id) {
    id = static_cast<uint16_t>(Clock::now().time_since_epoch().count());
  }
  return id;
}

bool MakeSockaddr(const ResolverAddress& server, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof *ss);
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, server.address.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(server.port);
    *len = sizeof *s4;
    return true;
  }
  if (inet_pton(AF_INET6, server.address.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(server.port);
    *len = sizeof *s6;
    return true;
  }
  return false;
}

// Builds the wire form of a query; empty on failure.
std::vector<uint8_t> BuildQuery(const DnsQuestion& q, uint16_t id, bool cd, uint16_t udp_size) {
  ldns_rdf* qn = ldns_dname_new_frm_str((q.name + ".").c_str());
  if (!qn) return {};
  PktPtr pkt(ldns_pkt_query_new(qn, static_cast<ldns_rr_type>(q.type), LDNS_RR_CLASS_IN,
                                LDNS_RD | (cd ? LDNS_CD : 0)));
  if (!pkt) return {};
  ldns_pkt_set_id(pkt.get(), id);
  ldns_pkt_set_edns_udp_size(pkt.get(), udp_size);
  ldns_pkt_set_edns_do(pkt.get(), true);
  uint8_t* buf = nullptr;
  size_t len = 0;
  if (ldns_pkt2wire(&buf, pkt.get(), &len) != LDNS_STATUS_OK) return {};
  MallocedBytes owned(buf);
  return std::vector<uint8_t>(buf, buf + len);
}

std::string EdeText(ldns_pkt* p) {
  ldns_edns_option_list* list = ldns_pkt_edns_get_option_list(p);
  if (!list) return "";
  for (size_t i = 0; i < ldns_edns_option_list_get_count(list); ++i) {
    ldns_edns_option* opt = ldns_edns_option_list_get_option(list, i);
    if (!opt || ldns_edns_get_code(opt) != LDNS_EDNS_EDE) continue;
    size_t size = ldns_edns_get_size(opt);
    const uint8_t* data = ldns_edns_get_data(opt);
    if (size < 2 || !data) continue;
    int code = (data[0] << 8) | data[1];
    std::string text;
    for (size_t k = 2; k < size && text.size() < 200; ++k) {
      char c = static_cast<char>(data[k]);
      text += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    // RFC 8914 §4 registry names, so that logs say what went wrong.
    static const char* kNames[] = {
        "Other", "Unsupported DNSKEY Algorithm", "Unsupported DS Digest Type", "Stale Answer",
        "Forged Answer", "DNSSEC Indeterminate", "DNSSEC Bogus", "Signature Expired",
        "Signature Not Yet Valid", "DNSKEY Missing", "RRSIGs Missing", "No Zone Key Bit Set",
        "NSEC Missing", "Cached Error", "Not Ready", "Blocked", "Censored", "Filtered", "Prohibited",
        "Stale NXDOMAIN Answer", "Not Authoritative", "Not Supported", "No Reachable Authority",
        "Network Error", "Invalid Data"};
    std::string out = std::to_string(code);
    if (code >= 0 && code < static_cast<int>(sizeof kNames / sizeof kNames[0])) out += std::string(" ") + kNames[code];
    return out + (text.empty() ? "" : ": " + text);
  }
  return "";
}

DnsRecord ConvertRecord(const ldns_rr* rr) {
  DnsRecord rec;
  std::string owner = RdfToName(ldns_rr_owner(rr));
  auto norm = NormalizeDnsName(owner);
  rec.owner = norm.ok() ? norm.value() : owner;
  rec.type = static_cast<RrType>(ldns_rr_get_type(rr));
  rec.ttl = ldns_rr_ttl(rr);
  size_t n = ldns_rr_rd_count(rr);
  switch (rec.type) {
    case RrType::kA:
    case RrType::kAAAA:
      if (n >= 1) {
        MallocedChars s(ldns_rdf2str(ldns_rr_rdf(rr, 0)));
        if (s) rec.text = s.get();
      }
      break;
    case RrType::kCNAME:
    case RrType::kDNAME:
      if (n >= 1) rec.text = RdfToName(ldns_rr_rdf(rr, 0));
      break;
    case RrType::kMX:
      if (n >= 2 && ldns_rdf_size(ldns_rr_rdf(rr, 0)) == 2) {
        rec.preference = ldns_rdf2native_int16(ldns_rr_rdf(rr, 0));
        rec.exchange = RdfToName(ldns_rr_rdf(rr, 1));
      }
      break;
    case RrType::kTXT:
      for (size_t i = 0; i < n; ++i) {
        const ldns_rdf* rdf = ldns_rr_rdf(rr, i);
        const uint8_t* d = ldns_rdf_data(rdf);
        size_t size = ldns_rdf_size(rdf);
        if (size == 0) continue;
        size_t len = d[0];
        if (len + 1 > size) len = size - 1;
        rec.text.append(reinterpret_cast<const char*>(d + 1), len);
      }
      break;
    case RrType::kTLSA:
      if (n >= 4 && ldns_rdf_size(ldns_rr_rdf(rr, 0)) == 1 && ldns_rdf_size(ldns_rr_rdf(rr, 1)) == 1 &&
          ldns_rdf_size(ldns_rr_rdf(rr, 2)) == 1) {
        rec.tlsa.usage = ldns_rdf2native_int8(ldns_rr_rdf(rr, 0));
        rec.tlsa.selector = ldns_rdf2native_int8(ldns_rr_rdf(rr, 1));
        rec.tlsa.matching = ldns_rdf2native_int8(ldns_rr_rdf(rr, 2));
        const ldns_rdf* data = ldns_rr_rdf(rr, 3);
        rec.tlsa.data.assign(ldns_rdf_data(data), ldns_rdf_data(data) + ldns_rdf_size(data));
      } else {
        // Malformed: make it unusable rather than dropping it, so that a
        // secure RRset still demands TLS (RFC 7672 §2.2).
        rec.tlsa.usage = 255;
      }
      break;
    default:
      break;
  }
  return rec;
}

// The IN records of `list`, copied: the packet they came from is freed
// after parsing. The caller has checked the count against the limit.
std::shared_ptr<const RrList> KeepRecords(const ldns_rr_list* list) {
  ldns_rr_list* out = ldns_rr_list_new();
  size_t count = list ? ldns_rr_list_rr_count(list) : 0;
  for (size_t i = 0; i < count; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list, i);
    if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN) continue;
    ldns_rr_list_push_rr(out, ldns_rr_clone(rr));
  }
  return std::make_shared<const RrList>(out);
}

}  // namespace

DnsResponse ParseDnsReply(const uint8_t* wire, size_t len, const DnsQuestion& question, uint16_t expected_id,
                          std::string* mismatch) {
  DnsResponse r;
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, wire, len) != LDNS_STATUS_OK || !raw) {
    *mismatch = "malformed reply";
    return r;
  }
  PktPtr p(raw);
  if (ldns_pkt_id(p.get()) != expected_id || !ldns_pkt_qr(p.get())) {
    *mismatch = "reply ID or QR does not match";
    return r;
  }
  ldns_rr_list* qs = ldns_pkt_question(p.get());
  if (!qs || ldns_rr_list_rr_count(qs) != 1) {
    *mismatch = "reply does not repeat the question";
    return r;
  }
  const ldns_rr* qrr = ldns_rr_list_rr(qs, 0);
  RdfPtr want(ldns_dname_new_frm_str((question.name + ".").c_str()));
  if (!want || ldns_dname_compare(ldns_rr_owner(qrr), want.get()) != 0 ||
      ldns_rr_get_type(qrr) != static_cast<ldns_rr_type>(question.type) ||
      ldns_rr_get_class(qrr) != LDNS_RR_CLASS_IN) {
    *mismatch = "reply is for another question";
    return r;
  }
  mismatch->clear();
  r.answered = true;
  r.rcode_value = ldns_pkt_get_rcode(p.get());
  switch (ldns_pkt_get_rcode(p.get())) {
    case LDNS_RCODE_NOERROR: r.rcode = DnsRcode::kNoError; break;
    case LDNS_RCODE_NXDOMAIN: r.rcode = DnsRcode::kNxDomain; break;
    case LDNS_RCODE_SERVFAIL: r.rcode = DnsRcode::kServFail; break;
    case LDNS_RCODE_REFUSED: r.rcode = DnsRcode::kRefused; break;
    default: r.rcode = DnsRcode::kOther; break;
  }
  r.ad = ldns_pkt_ad(p.get());
  r.tc = ldns_pkt_tc(p.get());
  r.ede = EdeText(p.get());
  // Counted as sent, whatever the class or type of the records: a
  // section is read whole or the reply is refused (kMaxSectionRecords).
  const struct {
    const char* name;
    ldns_rr_list* list;
  } sections[] = {{"answer", ldns_pkt_answer(p.get())}, {"authority", ldns_pkt_authority(p.get())}};
  for (const auto& section : sections) {
    size_t count = section.list ? ldns_rr_list_rr_count(section.list) : 0;
    if (count > kMaxSectionRecords) {
      r.answered = false;
      r.error = std::string("reply refused: its ") + section.name + " section has " + std::to_string(count) +
                " records, more than the " + std::to_string(kMaxSectionRecords) + " accepted per section";
      return r;
    }
  }
  r.answer_rrs = KeepRecords(sections[0].list);
  r.authority_rrs = KeepRecords(sections[1].list);
  return r;
}

std::vector<DnsRecord> DnsRecordsOf(const RrList& list) {
  std::vector<DnsRecord> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list.get(), i);
    if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_RRSIG) continue;
    out.push_back(ConvertRecord(rr));
  }
  return out;
}

std::vector<DnsRecord> AnswerRecords(const DnsResponse& r) {
  return r.answer_rrs ? DnsRecordsOf(*r.answer_rrs) : std::vector<DnsRecord>();
}

namespace {

class LdnsTransport : public DnsTransport {
 public:
  explicit LdnsTransport(DnsTransportOptions options) : options_(std::move(options)) {}

  std::vector<DnsResponse> QueryMany(const std::vector<DnsQuestion>& questions, bool cd) override {
    std::vector<DnsResponse> out(questions.size());
    if (questions.empty()) return out;
    std::vector<bool> done(questions.size(), false);
    std::vector<std::string> last_error(questions.size());
    size_t remaining = questions.size();
    for (const ResolverAddress& server : options_.servers) {
      if (remaining == 0) break;
      QueryServer(server, questions, cd, &out, &done, &last_error, &remaining);
    }
    for (size_t i = 0; i < questions.size(); ++i) {
      if (!done[i]) {
        out[i].answered = false;
        out[i].error = last_error[i].empty() ? "no DNS resolver configured" : last_error[i];
      }
    }
    return out;
  }

 private:
  void QueryServer(const ResolverAddress& server, const std::vector<DnsQuestion>& questions, bool cd,
                   std::vector<DnsResponse>* out, std::vector<bool>* done, std::vector<std::string>* last_error,
                   size_t* remaining) {
    const std::string server_name = server.ToString();
    sockaddr_storage ss;
    socklen_t sslen;
    if (!MakeSockaddr(server, &ss, &sslen)) return;
    Fd fd(socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0 || connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), sslen) != 0) {
      for (size_t i = 0; i < questions.size(); ++i)
        if (!(*done)[i]) (*last_error)[i] = server_name + ": " + strerror(errno);
      return;
    }
    // One ID per question, unique within the batch.
    std::vector<uint16_t> ids(questions.size());
    std::vector<std::vector<uint8_t>> wire(questions.size());
    std::set<uint16_t> used;
    for (size_t i = 0; i < questions.size(); ++i) {
      if ((*done)[i]) continue;
      uint16_t id;
      do id = RandomId(); while (used.count(id));
      used.insert(id);
      ids[i] = id;
      wire[i] = BuildQuery(questions[i], id, cd, 1232);
      if (wire[i].empty()) {
        (*done)[i] = true;
        --*remaining;
        (*out)[i].answered = false;
        (*out)[i].error = "cannot build a query for " + questions[i].name;
      }
    }
    for (int attempt = 0; attempt < options_.tries && *remaining > 0; ++attempt) {
      for (size_t i = 0; i < questions.size(); ++i) {
        if ((*done)[i]) continue;
        if (send(fd.get(), wire[i].data(), wire[i].size(), 0) < 0 && errno != EAGAIN && errno != ENOBUFS) {
          // A pending ICMP error (ECONNREFUSED) surfaces on any later send:
          // it condemns this server for every question of the batch.
          const std::string why = server_name + ": " + strerror(errno);
          for (size_t k = 0; k < questions.size(); ++k)
            if (!(*done)[k]) (*last_error)[k] = why;
          return;
        }
      }
      auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
      while (*remaining > 0) {
        int64_t left = MsLeft(deadline);
        if (left == 0) break;
        pollfd pfd{fd.get(), POLLIN, 0};
        int n = poll(&pfd, 1, static_cast<int>(left));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        uint8_t buf[65536];
        ssize_t got = recv(fd.get(), buf, sizeof buf, 0);
        if (got < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          // ICMP port unreachable arrives as ECONNREFUSED: the server is
          // not there, no point waiting for the rest of the timeout.
          const std::string why = server_name + ": " + strerror(errno);
          for (size_t i = 0; i < questions.size(); ++i)
            if (!(*done)[i]) (*last_error)[i] = why;
          return;
        }
        if (got < 2) continue;
        uint16_t id = static_cast<uint16_t>((buf[0] << 8) | buf[1]);
        for (size_t i = 0; i < questions.size(); ++i) {
          if ((*done)[i] || ids[i] != id) continue;
          std::string mismatch;
          DnsResponse r = ParseDnsReply(buf, static_cast<size_t>(got), questions[i], id, &mismatch);
          if (!mismatch.empty()) break;  // not ours (or spoofed): keep waiting
          if (r.tc) {
            r = QueryTcp(ss, sslen, questions[i], cd, server_name);
          } else if (!r.answered) {
            r.error = server_name + ": " + r.error;
          }
          r.server = server_name;
          (*out)[i] = std::move(r);
          if ((*out)[i].answered) {
            (*done)[i] = true;
            --*remaining;
          } else {
            (*last_error)[i] = (*out)[i].error;
          }
          break;
        }
      }
      for (size_t i = 0; i < questions.size(); ++i) {
        if (!(*done)[i] && (*last_error)[i].empty())
          (*last_error)[i] = "timeout: no answer from " + server_name;
        else if (!(*done)[i] && (*last_error)[i].rfind("timeout", 0) == 0)
          (*last_error)[i] = "timeout: no answer from " + server_name;
      }
    }
  }

  DnsResponse QueryTcp(const sockaddr_storage& ss, socklen_t sslen, const DnsQuestion& q, bool cd,
                       const std::string& server_name) {
    DnsResponse r;
    r.error = server_name + " (TCP): ";
    uint16_t id = RandomId();
    std::vector<uint8_t> query = BuildQuery(q, id, cd, 65535);
    if (query.empty()) { r.error += "cannot build query"; return r; }
    auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
    Fd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) { r.error += strerror(errno); return r; }
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), sslen) != 0 && errno != EINPROGRESS) {
      r.error += strerror(errno);
      return r;
    }
    pollfd pfd{fd.get(), POLLOUT, 0};
    if (poll(&pfd, 1, static_cast<int>(MsLeft(deadline))) <= 0) { r.error += "connect timeout"; return r; }
    int soerr = 0;
    socklen_t l = sizeof soerr;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &l);
    if (soerr) { r.error += strerror(soerr); return r; }
    std::vector<uint8_t> framed{static_cast<uint8_t>(query.size() >> 8), static_cast<uint8_t>(query.size())};
    framed.insert(framed.end(), query.begin(), query.end());
    size_t sent = 0;
    while (sent < framed.size()) {
      ssize_t n = send(fd.get(), framed.data() + sent, framed.size() - sent, MSG_NOSIGNAL);
      if (n > 0) { sent += static_cast<size_t>(n); continue; }
      if (n < 0 && errno != EAGAIN && errno != EINTR) { r.error += strerror(errno); return r; }
      pfd = {fd.get(), POLLOUT, 0};
      if (poll(&pfd, 1, static_cast<int>(MsLeft(deadline))) <= 0) { r.error += "send timeout"; return r; }
    }
    std::vector<uint8_t> in;
    size_t want = 2;
    bool have_len = false;
    while (in.size() < want) {
      uint8_t buf[4096];
      ssize_t n = recv(fd.get(), buf, std::min(sizeof buf, want - in.size()), 0);
      if (n > 0) {
        in.insert(in.end(), buf, buf + n);
        if (!have_len && in.size() == 2) {
          want = 2 + ((static_cast<size_t>(in[0]) << 8) | in[1]);
          have_len = true;
        }
        continue;
      }
      if (n == 0) { r.error += "connection closed"; return r; }
      if (errno != EAGAIN && errno != EINTR) { r.error += strerror(errno); return r; }
      pfd = {fd.get(), POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(MsLeft(deadline))) <= 0) { r.error += "timeout"; return r; }
    }
    std::string mismatch;
    DnsResponse got = ParseDnsReply(in.data() + 2, in.size() - 2, q, id, &mismatch);
    if (!mismatch.empty()) { r.error += mismatch; return r; }
    if (!got.answered) got.error = r.error + got.error;
    return got;
  }

  DnsTransportOptions options_;
};

}  // namespace

std::unique_ptr<DnsTransport> NewLdnsTransport(const DnsTransportOptions& options) {
  return std::make_unique<LdnsTransport>(options);
}

}  // namespace mxsec
