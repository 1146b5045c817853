// smtp_trouble_test.cc - the error policy of the SMTP client: one decision
// per test case, with the code, reason text and next-host choice it makes.
#include <doctest/doctest.h>

#include "mxsec/smtp/smtp_trouble.h"

using namespace mxsec;

namespace {

SmtpReply Reply(int code, const std::string& enhanced, const std::string& text) {
  SmtpReply r;
  r.code = code;
  r.enhanced = enhanced;
  r.lines = {enhanced.empty() ? text : enhanced + " " + text};
  return r;
}

TlsDemand Demand(HostTls tls, const std::string& required_by = "") { return {tls, required_by}; }

const HostTls kRequired[] = {HostTls::kDane, HostTls::kEncrypt, HostTls::kPkix};

}  // namespace

TEST_CASE("smtp_trouble: TLS is required by dane, encrypt and pkix, named by who demands it") {
  for (HostTls t : kRequired) CHECK(Demand(t).Required());
  CHECK_FALSE(Demand(HostTls::kMay).Required());
  CHECK(Demand(HostTls::kDane).Who() == "DANE");
  CHECK(Demand(HostTls::kPkix).Who() == "MTA-STS");
  CHECK(Demand(HostTls::kEncrypt).Who() == "DANE (unusable TLSA: encryption only)");
  CHECK(Demand(HostTls::kPkix, "local policy verify").Who() == "local policy verify");
}

TEST_CASE("smtp_trouble: connection and greeting trouble fails the host") {
  HostFailure f = ConnectFailed(Status::Error("connect: Connection refused"));
  CHECK(f.code == "4.4.1");
  CHECK(f.reason == "connect: Connection refused");
  CHECK(f.failure_type.empty());
  CHECK_FALSE(f.retry_plaintext);
  f = GreetingLost(Status::Error("reading reply: timed out"));
  CHECK(f.code == "4.4.2");
  CHECK(f.reason == "greeting: reading reply: timed out");
  f = GreetingRefused(Reply(554, "5.7.1", "go away"));
  CHECK(f.code == "5.7.1");
  CHECK(f.reason == "server greeting: 554 5.7.1 go away");
  CHECK(GreetingRefused(Reply(421, "", "busy")).code == "4.0.0");
  CHECK(GreetingRefused(Reply(554, "", "no")).code == "5.0.0");
}

TEST_CASE("smtp_trouble: EHLO trouble, and HELO only where plaintext is allowed and TLS is not in use") {
  CHECK(HelloFailed(Status::Error("EHLO rejected: 500 no"), false).reason == "EHLO rejected: 500 no");
  HostFailure f = HelloFailed(Status::Error("EHLO rejected: 500 no"), true);
  CHECK(f.code == "4.5.0");
  CHECK(f.reason == "after STARTTLS: EHLO rejected: 500 no");
  CHECK(MayFallBackToHelo(Demand(HostTls::kMay), false));
  CHECK_FALSE(MayFallBackToHelo(Demand(HostTls::kMay), true));
  for (HostTls t : kRequired) CHECK_FALSE(MayFallBackToHelo(Demand(t), false));
}

TEST_CASE("smtp_trouble: STARTTLS not offered or refused fails a TLS-required host, may goes on in plaintext") {
  CHECK_FALSE(StarttlsNotOffered(Demand(HostTls::kMay)).has_value());
  CHECK_FALSE(StarttlsRefused(Reply(454, "", "no TLS"), Demand(HostTls::kMay)).has_value());
  for (HostTls t : kRequired) {
    std::optional<HostFailure> f = StarttlsNotOffered(Demand(t));
    REQUIRE(f.has_value());
    CHECK(f->code == "4.7.4");
    CHECK(f->failure_type == "starttls-not-supported");
    CHECK_FALSE(f->retry_plaintext);
    f = StarttlsRefused(Reply(454, "4.7.0", "no TLS"), Demand(t));
    REQUIRE(f.has_value());
    CHECK(f->code == "4.7.4");
    CHECK_FALSE(f->retry_plaintext);
  }
  CHECK(StarttlsNotOffered(Demand(HostTls::kDane))->reason ==
        "STARTTLS not offered: possible downgrade, TLS required by DANE");
  CHECK(StarttlsRefused(Reply(454, "4.7.0", "no TLS"), Demand(HostTls::kPkix))->reason ==
        "STARTTLS refused (454 4.7.0 no TLS), TLS required by MTA-STS");
  CHECK(StarttlsLost(Status::Error("connection closed by server")).reason ==
        "STARTTLS: connection closed by server");
}

TEST_CASE("smtp_trouble: data before the handshake fails the host whatever the policy") {
  HostFailure f = DataBeforeHandshake();
  CHECK(f.code == "4.7.0");
  CHECK(f.reason.find("command injection attempt?") != std::string::npos);
  CHECK_FALSE(f.retry_plaintext);
}

TEST_CASE("smtp_trouble: a failed handshake never leads to plaintext where TLS is required") {
  for (HostTls t : kRequired) {
    HostFailure f = HandshakeFailed(Status::Error("TLS handshake failed: x"), Demand(t));
    CHECK(f.code == "4.7.5");
    CHECK(f.failure_type == "validation-failure");
    CHECK_FALSE(f.retry_plaintext);
  }
  CHECK(HandshakeFailed(Status::Error("TLS handshake failed: x"), Demand(HostTls::kMay)).retry_plaintext);
}

TEST_CASE("smtp_trouble: a failed verification fails the host with the verifier's result type") {
  VerifyResult v;
  v.detail = "no TLSA record matched";
  v.failure_type = "certificate-host-mismatch";
  HostFailure f = VerificationFailed(v, Demand(HostTls::kDane));
  CHECK(f.code == "4.7.5");
  CHECK(f.reason == "certificate verification failed (DANE): no TLSA record matched");
  CHECK(f.failure_type == "certificate-host-mismatch");
  CHECK_FALSE(f.retry_plaintext);
  v.failure_type.clear();
  CHECK(VerificationFailed(v, Demand(HostTls::kPkix)).failure_type == "validation-failure");
}

TEST_CASE("smtp_trouble: what the server lacks bounces") {
  RcptResult r = ServerLacks(MissingExtension::kEightBitMime);
  CHECK(r.status == RcptStatus::kBounced);
  CHECK(r.code == "5.6.3");
  CHECK_FALSE(r.try_next_host);
  CHECK(ServerLacks(MissingExtension::kSmtpUtf8Sender).code == "5.6.7");
  CHECK(ServerLacks(MissingExtension::kSmtpUtf8Recipient).reply ==
        "address needs SMTPUTF8, which the server does not announce");
  r = MessageTooBig(2000, 1000);
  CHECK(r.status == RcptStatus::kBounced);
  CHECK(r.code == "5.3.4");
  CHECK(r.reply == "message is 2000 octets, server limit 1000");
}

TEST_CASE("smtp_trouble: a lost connection defers to the next host, except after the end of data") {
  const Status lost = Status::Error("connection closed by server");
  using enum TransactionStage;
  for (TransactionStage st : {kSendPipelined, kSendMail, kReadMail, kSendRcpt, kReadRcpt, kSendData, kReadData,
                              kSendMessage}) {
    RcptResult r = StreamFailed(st, lost);
    CHECK(r.status == RcptStatus::kDeferred);
    CHECK(r.code == "4.4.2");
    CHECK(r.try_next_host);
  }
  CHECK(StreamFailed(TransactionStage::kSendPipelined, lost).reply ==
        "lost connection sending MAIL/RCPT: connection closed by server");
  CHECK(StreamFailed(TransactionStage::kReadRcpt, lost).reply == "RCPT TO: connection closed by server");
  CHECK(StreamFailed(TransactionStage::kSendMessage, lost).reply ==
        "lost connection sending the message: connection closed by server");
  // RFC 1047: the server may have the message.
  RcptResult r = StreamFailed(kReadEndOfData, lost);
  CHECK(r.status == RcptStatus::kDeferred);
  CHECK(r.code == "4.4.2");
  CHECK_FALSE(r.try_next_host);
  CHECK(r.reply ==
        "no reply after end of data (connection closed by server): outcome unknown, not retried at another host "
        "now (RFC 1047)");
  CHECK(StreamFailed(kSendRcpt, lost).reply == "connection closed by server");
  CHECK(StreamFailed(kSendMail, lost).reply == "lost connection sending MAIL FROM: connection closed by server");
  CHECK(StreamFailed(kReadData, lost).reply == "DATA: connection closed by server");
}

TEST_CASE("smtp_trouble: replies: 5xx bounces, 4xx defers to the next host, 250 after data delivers") {
  RcptResult r = ReplyOutcome(TransactionStage::kReadMail, Reply(553, "5.1.8", "bad sender"));
  CHECK(r.status == RcptStatus::kBounced);
  CHECK(r.code == "5.1.8");
  CHECK(r.reply == "MAIL FROM rejected: 553 5.1.8 bad sender");
  CHECK_FALSE(r.try_next_host);
  r = ReplyOutcome(TransactionStage::kReadRcpt, Reply(451, "", "busy"));
  CHECK(r.status == RcptStatus::kDeferred);
  CHECK(r.code == "4.0.0");
  CHECK(r.reply == "451 busy");
  CHECK(r.try_next_host);
  CHECK(ReplyOutcome(TransactionStage::kReadRcpt, Reply(550, "", "no")).code == "5.0.0");
  CHECK(ReplyOutcome(TransactionStage::kReadData, Reply(554, "", "no")).reply == "DATA rejected: 554 no");
  r = ReplyOutcome(TransactionStage::kReadEndOfData, Reply(250, "", "queued"));
  CHECK(r.status == RcptStatus::kDelivered);
  CHECK(r.code == "2.0.0");
  CHECK_FALSE(r.try_next_host);
  CHECK(ReplyOutcome(TransactionStage::kReadEndOfData, Reply(250, "2.6.0", "queued")).code == "2.6.0");
  r = ReplyOutcome(TransactionStage::kReadEndOfData, Reply(452, "4.3.1", "full"));
  CHECK(r.status == RcptStatus::kDeferred);
}

TEST_CASE("smtp_trouble: the domain's verdict settles everyone without a connection") {
  CHECK_FALSE(VerdictOutcome(Verdict::kMustTls, "", "example.org", "").has_value());
  CHECK_FALSE(VerdictOutcome(Verdict::kOpportunistic, "", "example.org", "").has_value());
  std::optional<RcptResult> r = VerdictOutcome(Verdict::kFail, "", "example.org", "null MX");
  REQUIRE(r.has_value());
  CHECK(r->status == RcptStatus::kBounced);
  CHECK(r->code == "5.4.4");
  CHECK(r->reply == "example.org: null MX");
  r = VerdictOutcome(Verdict::kDefer, "", "example.org", "TLSA lookup failed");
  CHECK(r->status == RcptStatus::kDeferred);
  CHECK(r->code == "4.4.3");
  CHECK(VerdictOutcome(Verdict::kFail, "5.1.10", "example.org", "null MX")->code == "5.1.10");
}

TEST_CASE("smtp_trouble: one plaintext retry only for a may host whose session allowed it") {
  SessionResult s;
  s.host_failed = true;
  s.retry_plaintext = true;
  CHECK(MayRetryWithoutTls(s, HostTls::kMay));
  for (HostTls t : kRequired) CHECK_FALSE(MayRetryWithoutTls(s, t));
  s.retry_plaintext = false;
  CHECK_FALSE(MayRetryWithoutTls(s, HostTls::kMay));
  s.retry_plaintext = true;
  s.host_failed = false;
  CHECK_FALSE(MayRetryWithoutTls(s, HostTls::kMay));
}

TEST_CASE("smtp_trouble: across hosts: a failed host defers, the final deferral is never permanent") {
  SessionResult s;
  s.error = "connect: Connection refused";
  RcptResult r = HostFailedOutcome(s, "mx.example.org[192.0.2.1]:25");
  CHECK(r.status == RcptStatus::kDeferred);
  CHECK(r.code == "4.4.1");
  CHECK(r.reply == "mx.example.org[192.0.2.1]:25: connect: Connection refused");
  s.code = "4.7.5";
  CHECK(HostFailedOutcome(s, "x").code == "4.7.5");
  CHECK(MissingOutcome().code == "4.4.2");
  r = NoHostReached("example.org");
  CHECK(r.code == "4.4.1");
  CHECK(r.reply == "example.org: no MX host could be reached");
  CHECK(FinalDeferral({RcptStatus::kDeferred, "4.7.5", "tls", true}).code == "4.7.5");
  r = FinalDeferral({RcptStatus::kDeferred, "5.0.0", "server greeting: 554 no", true});
  CHECK(r.status == RcptStatus::kDeferred);
  CHECK(r.code == "4.4.1");
  CHECK(r.reply == "server greeting: 554 no");
  CHECK(FinalDeferral({RcptStatus::kDeferred, "", "x", true}).code == "4.4.1");
}

TEST_CASE("smtp_trouble: the note of a limit that ended the walk") {
  CHECK(WalkLimitNote(WalkLimit::kAddresses, 5, 3995) ==
        "smtp_mx_address_limit (5) reached, 3995 more addresses not tried in this attempt");
  CHECK(WalkLimitNote(WalkLimit::kSessions, 2, 7) ==
        "smtp_mx_session_limit (2) reached, 7 more addresses not tried in this attempt");
}

TEST_CASE("smtp_trouble: REQUIRETLS needs TLS, an authenticated server and REQUIRETLS announced after STARTTLS") {
  TlsInfo tls;
  EhloCapabilities caps;
  caps.requiretls = true;
  auto none = RequireTlsNotMet(tls, caps);
  REQUIRE(none);
  CHECK(none->code == "4.7.30");
  CHECK(none->reason == "REQUIRETLS support required: the session is not TLS");
  CHECK_FALSE(none->retry_plaintext);
  tls.used = true;
  auto unverified = RequireTlsNotMet(tls, caps);
  REQUIRE(unverified);
  CHECK(unverified->reason == "REQUIRETLS support required: the server is not authenticated (DANE or PKIX)");
  tls.verified = true;
  CHECK_FALSE(RequireTlsNotMet(tls, caps));
  caps.requiretls = false;
  auto silent = RequireTlsNotMet(tls, caps);
  REQUIRE(silent);
  CHECK(silent->reason == "REQUIRETLS support required: the server does not announce REQUIRETLS");
  RcptResult none_left = RequireTlsUnavailable("no MX host can be authenticated");
  CHECK(none_left.status == RcptStatus::kDeferred);
  CHECK(none_left.code == "4.7.30");
  CHECK(FinalDeferral(none_left).code == "4.7.30");
}
