// dsn_test.cc - delivery status notifications are always sendable: text
// lines within 998 octets, a returned message reduced (headers only, or
// none) when it could not be sent as it is, and a report that is queued,
// never dropped.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "temp_queue_dir.h"
#include "mxsec/base/clock.h"
#include "mxsec/queue/dsn.h"
#include "mxsec/queue/queue.h"
#include "mxsec/smtp/smtp_proto.h"

using namespace mxsec;

namespace {

struct MemQueue : mxsec_test::MemQueueDir {
  Result<Queue> Open() { return Queue::Open(path, true, &env); }
};

DsnInput Input(std::string_view original) {
  DsnInput in;
  in.reporting_mta = "mta.client.test";
  in.bounce_domain = "client.test";
  in.original_sender = "ok-sender@client.test";
  in.queue_id = "0123456789ABCDEF0";
  in.arrival = 1700000000;
  in.now = 1700000100;
  in.message_id = "x@client.test";
  in.original = original;
  return in;
}

size_t LongestLine(std::string_view m) {
  size_t longest = 0, cur = 0;
  for (char c : m) {
    if (c == '\n' || c == '\r') {
      cur = 0;
      continue;
    }
    longest = std::max(longest, ++cur);
  }
  return longest;
}

// Delivers ok* recipients, bounces the rest with a long reply.
DomainDeliverer Deliverer(const std::string& reply) {
  return [reply](const std::string& domain, const Mailbox&, const std::vector<Mailbox>& rcpts,
                 const PreparedMessage&, const DsnRequest&, MessageTls) {
    std::vector<RecipientOutcome> out;
    for (const Mailbox& m : rcpts) {
      RecipientOutcome o;
      o.recipient = m;
      if (m.local.rfind("ok", 0) == 0) {
        o.status = RcptStatus::kDelivered;
        o.code = "2.0.0";
        o.reply = "250 2.0.0 ok";
      } else {
        o.status = RcptStatus::kBounced;
        o.code = "5.1.1";
        o.reply = reply;
      }
      o.relay_host = "mx." + domain;
      o.relay_address = "127.0.0.9";
      o.relay_port = 25;
      out.push_back(o);
    }
    return out;
  };
}

QueueSettings Settings() {
  QueueSettings s;
  s.lifetime = 5 * 86400;
  s.retry_min = 300;
  s.retry_max = 4000;
  s.reporting_mta = "mta.client.test";
  s.bounce_domain = "client.test";
  return s;
}

}  // namespace

TEST_CASE("dsn: a long address and a long diagnostic keep every line within 998 octets") {
  std::string orig = "Subject: " + std::string(989, 's') + "\nFrom: ok-sender@client.test\n\nbody\n";
  DsnInput in = Input(orig);
  const std::string addr = std::string(250, 'r') + "@one.test";
  const std::string reply = "550 5.1.1 " + std::string(1200, 'w') + " end-of-reply";
  in.recipients.push_back(DsnRecipient{addr, "4.4.7", reply, "mx.one.test", true});
  std::string reduced;
  std::string d = BuildDsn(in, &reduced);
  CHECK(reduced.empty());
  CHECK(LongestLine(d) <= 998);
  auto p = PrepareMessage(d, MessageOptions{});
  CHECK_MESSAGE(p.ok(), p.error());
  CHECK(d.find("Subject: " + std::string(989, 's') + "\n") != std::string::npos);  // the original, whole
  CHECK(d.find("Final-Recipient: rfc822; " + addr + "\n") != std::string::npos);     // protocol fields whole
  // The human-readable part is wrapped, never cut: every word of the reply is there.
  size_t notice = d.find("Content-Description: Notification");
  size_t report = d.find("Content-Description: Delivery report");
  REQUIRE(notice != std::string::npos);
  REQUIRE(report != std::string::npos);
  std::string text = d.substr(notice, report - notice);
  CHECK(LongestLine(text) <= 78);
  CHECK(text.find("end-of-reply") != std::string::npos);
}

TEST_CASE("dsn: a returned message that could not be sent is reduced, never included as it is") {
  // A line over 998 octets in the body: the headers are returned.
  std::string orig = "Subject: s\nFrom: a@client.test\n\n" + std::string(1500, 'b') + "\n";
  DsnInput in = Input(orig);
  in.recipients.push_back(DsnRecipient{"b@one.test", "5.6.0", "message cannot be sent", "", false});
  std::string reduced;
  std::string d = BuildDsn(in, &reduced);
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
  CHECK(d.find("text/rfc822-headers") != std::string::npos);
  CHECK(d.find("Subject: s\n") != std::string::npos);
  CHECK(reduced.find("1500 octets") != std::string::npos);
  // In the header section too, or a NUL: no original part at all.
  std::string bad_head = "Subject: " + std::string(1200, 's') + "\n\nbody\n";
  in.original = bad_head;
  d = BuildDsn(in, &reduced);
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
  CHECK(d.find("message/rfc822") == std::string::npos);
  CHECK(d.find("text/rfc822-headers") == std::string::npos);
  CHECK(d.find(std::string(1000, 's')) == std::string::npos);
  CHECK_FALSE(reduced.empty());
  std::string nul = std::string("Subject: a\0b\n\nbody\n", 19);
  in.original = nul;
  d = BuildDsn(in, &reduced);
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
  CHECK(reduced.find("NUL") != std::string::npos);
  // Asked for: a minimal report without the original.
  in.original = orig;
  in.omit_original = true;
  d = BuildDsn(in, &reduced);
  CHECK(PrepareMessage(d, MessageOptions{}).ok());
  CHECK(d.find("message/rfc822") == std::string::npos);
  CHECK(d.find("text/rfc822-headers") == std::string::npos);
  CHECK(d.find("Final-Recipient: rfc822; b@one.test") != std::string::npos);
}

TEST_CASE("dsn: the report about a message with an over-long line is queued and delivered, not dropped") {
  MemQueue t;
  FakeClock clock(1700000000);
  auto q = t.Open();
  REQUIRE_MESSAGE(q.ok(), q.error());
  const std::string reply = "550 5.1.1 " + std::string(1200, 'w');
  for (int variant = 0; variant < 2; ++variant) {
    INFO("variant " << variant);
    // 0: a To: line qualified past 998 octets (as submission accepted it before the line check),
    //    which the delivery refuses; 1: a 989-octet Subject and a long address and reply.
    std::string msg = variant == 0 ? "To: " + std::string(1010, 't') + "\nSubject: hi\n\nbody\n"
                                   : "Subject: " + std::string(989, 's') + "\nTo: x@one.test\n\nbody\n";
    QueuedEnvelope env;
    env.sender = "ok-sender@client.test";
    env.recipients.push_back(QueuedRecipient{std::string(variant == 0 ? 10 : 250, 'r') + "@one.test"});
    auto id = q->Submit(msg, env, &clock, nullptr);
    REQUIRE_MESSAGE(id.ok(), id.error());
    std::vector<std::string> log;
    ProcessReport r = ProcessQueuedMessage(q.value(), id.value(), QueueLock(), true, Deliverer(reply), &clock,
                                           Settings(), [&](const std::string& l) { log.push_back(l); });
    CHECK(r.bounced == 1);
    REQUIRE(r.dsn_ids.size() == 1);
    std::string dsn = q->ReadMessage(r.dsn_ids[0]).value();
    auto p = PrepareMessage(dsn, MessageOptions{});
    CHECK_MESSAGE(p.ok(), p.error());
    // The report itself goes out (its recipient, the sender, is delivered to), not "dropped".
    ProcessReport rd = ProcessQueuedMessage(q.value(), r.dsn_ids[0], QueueLock(), true, Deliverer(reply), &clock,
                                            Settings(), nullptr);
    CHECK(rd.delivered == 1);
    CHECK(rd.bounced == 0);
    CHECK(rd.removed);
    if (variant == 0) {
      bool logged = false;
      for (const std::string& l : log) logged = logged || l.find("original message is not returned") != std::string::npos;
      CHECK_MESSAGE(logged, "the reduced report is logged");
    }
  }
}

TEST_CASE("dsn: the text part and the delivery-status fields are US-ASCII, whatever the diagnostics hold") {
  // Reasons cite RFC sections with "§", and servers may answer in UTF-8: the text part is declared
  // us-ascii and RFC 3464 fields are ASCII, so no such octet may reach them.
  DsnInput in = Input("Subject: x\n\nbody\n");
  in.omit_original = true;
  DsnRecipient r;
  r.address = "user@example.org";
  r.status = "5.7.30";
  r.diagnostic = "REQUIRETLS support required: no MX host (RFC 8689 \xc2\xa7" "4.2.1); caf\xc3\xa9";
  in.recipients.push_back(r);
  std::string dsn = BuildDsn(in);
  for (unsigned char c : dsn) CHECK_MESSAGE(c < 0x80, dsn);
  CHECK(dsn.find("(RFC 8689 ??4.2.1); caf??") != std::string::npos);
}
