// submission_test.cc - sendmail(1) option parsing, address lists, -t
// recipient extraction, Bcc removal and the headers added at submission.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "mxsec/submission.h"

using namespace mxsec;

namespace {
SendmailOptions Parse(std::vector<std::string> a) {
  auto r = ParseSendmailArgs(a);
  REQUIRE_MESSAGE(r.ok(), r.error());
  return r.value();
}
}  // namespace

TEST_CASE("sendmail options: what programs pass") {
  SendmailOptions o = Parse({"-t", "-i", "-f", "root@x.test", "-F", "Cron Daemon", "a@b.test"});
  CHECK(o.extract_recipients);
  CHECK(o.ignore_dots);
  CHECK(o.sender.value() == "root@x.test");
  CHECK(o.full_name.value() == "Cron Daemon");
  CHECK(o.recipients == std::vector<std::string>{"a@b.test"});
  CHECK(o.mode == SendmailOptions::Mode::kSend);
  CHECK(o.delivery == SendmailOptions::Delivery::kBackground);

  o = Parse({"-oi", "-oem", "-ti", "-fme@x.test", "-odq", "--", "-weird@b.test"});
  CHECK(o.ignore_dots);
  CHECK(o.extract_recipients);
  CHECK(o.sender.value() == "me@x.test");
  CHECK(o.delivery == SendmailOptions::Delivery::kQueueOnly);
  CHECK(o.recipients == std::vector<std::string>{"-weird@b.test"});
  CHECK(o.ignored == std::vector<std::string>{"-oem"});

  o = Parse({"-odi", "-r", "x@y.test", "-N", "failure,delay", "-R", "hdrs", "-B", "8BITMIME", "-V", "env1", "-v",
             "-bm", "-O", "DeliveryMode=b", "-OErrorMode=m", "-G", "-U", "-L", "lbl", "-h", "30", "-om", "r@x.test"});
  CHECK(o.delivery == SendmailOptions::Delivery::kInteractive);
  CHECK(o.sender.value() == "x@y.test");
  CHECK(o.notify == "failure,delay");
  CHECK(o.ret == "hdrs");
  CHECK(o.envid == "env1");
  CHECK(o.verbose == 1);
  CHECK(o.recipients == std::vector<std::string>{"r@x.test"});

  CHECK(Parse({"-bp"}).mode == SendmailOptions::Mode::kListQueue);
  CHECK(Parse({"-q"}).mode == SendmailOptions::Mode::kRunQueue);
  CHECK(Parse({"-q30m"}).mode == SendmailOptions::Mode::kRunQueue);
  CHECK(Parse({"-f", ""}).sender.value().empty());
  CHECK(Parse({"-odb"}).delivery == SendmailOptions::Delivery::kBackground);
  CHECK(Parse({"-C", "/etc/x.conf", "a@b"}).config_file == "/etc/x.conf");
}

TEST_CASE("sendmail options: errors name the option") {
  auto r = ParseSendmailArgs({"-bs"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("-bs") != std::string::npos);
  r = ParseSendmailArgs({"-Z"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("-Z") != std::string::npos);
  r = ParseSendmailArgs({"-tZ"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("-Z") != std::string::npos);
  r = ParseSendmailArgs({"-f"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("-f needs an argument") != std::string::npos);
  r = ParseSendmailArgs({"-N", "sometimes"});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("sometimes") != std::string::npos);
  CHECK_FALSE(ParseSendmailArgs({"-R", "body"}).ok());
}

TEST_CASE("address lists") {
  auto r = ParseAddressList(" \"Doe, John\" <john@x.test>, plain@y.test (comment), grp: a@z.test, b@z.test;, <c@w.test>");
  REQUIRE_MESSAGE(r.ok(), r.error());
  CHECK(r.value() == std::vector<std::string>{"john@x.test", "plain@y.test", "a@z.test", "b@z.test", "c@w.test"});
  r = ParseAddressList("undisclosed-recipients:;");
  REQUIRE(r.ok());
  CHECK(r->empty());
  CHECK(ParseAddressList("root").value() == std::vector<std::string>{"root"});
  CHECK_FALSE(ParseAddressList("\"unterminated <a@b>").ok());
  CHECK_FALSE(ParseAddressList("a@b (nested (unterminated)").ok());
  CHECK(ParseAddressList("\"x\\\" y\" <a@b>, c@d (p (q, r))").value() == std::vector<std::string>{"a@b", "c@d"});
  CHECK_FALSE(ParseAddressList("Name <a@b").ok());
  CHECK_FALSE(ParseAddressList("John Doe").ok());
  CHECK(ParseAddressList("<@relay.test:u@v.test>").value() == std::vector<std::string>{"u@v.test"});
}

TEST_CASE("-t: recipients from To, Cc, Bcc; Bcc removed; body untouched") {
  HeaderEdit e;
  e.extract_recipients = true;
  std::string raw =
      "To: A <a@x.test>,\n b@x.test\nCc: c@y.test\nBcc: hidden@z.test\nBCC: hidden2@z.test,\n\thidden3@z.test\n"
      "Subject: s\n\nBcc: not a header\r\nbody\n";
  auto r = EditHeaders(raw, e);
  REQUIRE_MESSAGE(r.ok(), r.error());
  CHECK(r->recipients ==
        std::vector<std::string>{"a@x.test", "b@x.test", "c@y.test", "hidden@z.test", "hidden2@z.test", "hidden3@z.test"});
  CHECK(r->bcc_removed);
  CHECK(r->message == "To: A <a@x.test>,\n b@x.test\nCc: c@y.test\nSubject: s\n\nBcc: not a header\r\nbody\n");
  CHECK(r->added.empty());  // nothing asked for
}

TEST_CASE("headers: From, Date, Message-ID added only when missing, with the message's line ends") {
  HeaderEdit e;
  e.from = "Cron Daemon <root@x.test>";
  e.date = "Mon, 23 Nov 2026 19:12:12 +0000";
  e.message_id = "<1.abc@x.test>";
  auto r = EditHeaders("Subject: hi\r\nDate: Sun, 1 Jan 2026 00:00:00 +0000\r\n\r\nbody\r\n", e);
  REQUIRE(r.ok());
  CHECK(r->message ==
        "Subject: hi\r\nDate: Sun, 1 Jan 2026 00:00:00 +0000\r\nFrom: Cron Daemon <root@x.test>\r\n"
        "Message-ID: <1.abc@x.test>\r\n\r\nbody\r\n");
  CHECK(r->added == std::vector<std::string>{"From", "Message-ID"});

  r = EditHeaders("from: me@x.test\nmessage-id: <m@x>\ndate: x\n\nb\n", e);
  REQUIRE(r.ok());
  CHECK(r->added.empty());
}

TEST_CASE("headers: a line without a colon ends the header section and stays in the body") {
  HeaderEdit e;
  e.date = "D";
  auto r = EditHeaders("Subject: x\nthis line has no colon\nmore\n", e);
  REQUIRE(r.ok());
  CHECK(r->message == "Subject: x\nDate: D\n\nthis line has no colon\nmore\n");
  // No headers at all (echo text | sendmail user).
  r = EditHeaders("hello world\n", e);
  REQUIRE(r.ok());
  CHECK(r->message == "Date: D\n\nhello world\n");
  // Empty input.
  r = EditHeaders("", e);
  REQUIRE(r.ok());
  CHECK(r->message == "Date: D\n\n");
  // A field name with a space is not a field.
  r = EditHeaders("Not A: field\n", e);
  REQUIRE(r.ok());
  CHECK(r->message == "Date: D\n\nNot A: field\n");
}

TEST_CASE("-t with a malformed address list is an error naming the header") {
  HeaderEdit e;
  e.extract_recipients = true;
  auto r = EditHeaders("To: \"broken <a@b.test>\n\nx\n", e);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("To") != std::string::npos);
}

TEST_CASE("lone dot ends the message unless -i") {
  CHECK(LoneDotEnd("a\n.\nb\n") == 2);
  CHECK(LoneDotEnd("a\r\n.\r\nb\n") == 3);
  CHECK(LoneDotEnd("a\n..\nb\n") == 7);
  CHECK(LoneDotEnd(".") == 0);
  CHECK(LoneDotEnd("a\n. \n") == 5);
}

TEST_CASE("headers: addresses without a domain are qualified, nothing else changes") {
  CHECK(QualifyAddressField(" root (Cron Daemon)\n", "x.test") == " root@x.test (Cron Daemon)\n");
  CHECK(QualifyAddressField(" Admin <admin>, b@y.test,\n\t\"Doe, J\" <jd>", "x.test") ==
        " Admin <admin@x.test>, b@y.test,\n\t\"Doe, J\" <jd@x.test>");
  CHECK(QualifyAddressField(" a@b.test (x, y)", "x.test") == " a@b.test (x, y)");
  CHECK(QualifyAddressField(" undisclosed-recipients:;", "x.test") == " undisclosed-recipients:;");
  CHECK(QualifyAddressField(" John Doe", "x.test") == " John Doe");   // not an address: left alone
  CHECK(QualifyAddressField(" \"quoted local\"", "x.test") == " \"quoted local\"");
  CHECK(QualifyAddressField(" <>", "x.test") == " <>");
  CHECK(QualifyAddressField(" root", "x.test") == " root@x.test");
  // Nested comments and escapes: a ',' or '<' inside them separates nothing.
  CHECK(QualifyAddressField(" root (a (b, <c>) \\) d), ops", "x.test") == " root@x.test (a (b, <c>) \\) d), ops@x.test");
  CHECK(QualifyAddressField(" \"a\\\", b\" <u>, v", "x.test") == " \"a\\\", b\" <u@x.test>, v@x.test");
  CHECK(QualifyAddressField(" root (unterminated, b", "x.test") == " root@x.test (unterminated, b");

  HeaderEdit e;
  e.qualify_domain = "x.test";
  auto r = EditHeaders("From: root (Cron Daemon)\nTo: admin\nSubject: root\nX-Other: root\n\nroot\n", e);
  REQUIRE(r.ok());
  CHECK(r->message ==
        "From: root@x.test (Cron Daemon)\nTo: admin@x.test\nSubject: root\nX-Other: root\n\nroot\n");
  CHECK(r->qualified);
}

TEST_CASE("submission: the Received: trace field of a locally submitted message") {
  // 1700000000 = Tue, 14 Nov 2023 22:13:20 UTC
  CHECK(SubmissionReceivedHeader("client.test", 1000, "6553F1000ABCDE123", 1700000000, "Subject: x\n\nbody\n") ==
        "Received: by client.test (mxsec, from userid 1000)\n\tid 6553F1000ABCDE123; Tue, 14 Nov 2023 22:13:20 +0000\n");
  // A message with CRLF line ends gets CRLF in the field too.
  CHECK(SubmissionReceivedHeader("h.example", 0, "ID", 1700000000, "Subject: x\r\n\r\nbody\r\n") ==
        "Received: by h.example (mxsec, from userid 0)\r\n\tid ID; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_CASE("sendmail options: -N and -V are checked as RFC 3461 says") {
  CHECK(Parse({"-N", "success,delay,failure", "a@b"}).notify == "success,delay,failure");
  CHECK(Parse({"-NNever", "a@b"}).notify == "never");
  auto mixed = ParseSendmailArgs({"-N", "never,success", "a@b"});
  REQUIRE_FALSE(mixed.ok());
  CHECK(mixed.error().find("never cannot be combined") != std::string::npos);
  CHECK(Parse({"-V", "job-42", "a@b"}).envid == "job-42");
  auto space = ParseSendmailArgs({"-V", "has space", "a@b"});
  REQUIRE_FALSE(space.ok());
  CHECK(space.error().find("-V has space") != std::string::npos);
  CHECK_FALSE(ParseSendmailArgs({"-V", std::string(101, 'x'), "a@b"}).ok());
}
