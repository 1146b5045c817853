// submission_test.cc - sendmail(1) option parsing, address lists, -t
// recipient extraction, Bcc removal and the headers added at submission.
#include <doctest/doctest.h>

#include <cctype>
#include <string>
#include <vector>

#include "mxsec/queue/submission.h"

using namespace std::string_literals;

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

// ------------------------------------------------------------------ line ends and line lengths after editing
namespace {

// The lines of `m` as the wire encoding (PrepareMessage) sees them: CRLF, CR and LF each end a line.
std::vector<std::string> WireLines(std::string_view m) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < m.size()) {
    size_t e = m.find_first_of("\r\n", i);
    if (e == std::string_view::npos) {
      out.emplace_back(m.substr(i));
      break;
    }
    out.emplace_back(m.substr(i, e - i));
    i = e + ((m[e] == '\r' && e + 1 < m.size() && m[e + 1] == '\n') ? 2 : 1);
  }
  return out;
}

// The lines of `m` as header editing sees them: LF ends a line, a CR just before it is part of the end.
std::vector<std::string> LfLines(std::string_view m) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < m.size()) {
    size_t e = m.find('\n', i);
    std::string_view l = m.substr(i, e == std::string_view::npos ? std::string_view::npos : e - i);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    out.emplace_back(l);
    if (e == std::string_view::npos) break;
    i = e + 1;
  }
  return out;
}

std::string LowerCopy(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// What a message accepted at submission must satisfy whatever the input was: every step (header
// editing, the wire encoding) splits it into the same lines, no Bcc field is left in its header
// section, and no line is over 998 octets.
void CheckSubmitted(const std::string& m, const std::string& what) {
  INFO(what);
  std::vector<std::string> wire = WireLines(m);
  CHECK(wire == LfLines(m));
  for (const std::string& l : wire) {
    if (l.empty()) break;  // the end of the header section
    std::string low = LowerCopy(l.substr(0, 11));
    CHECK_MESSAGE(low.rfind("bcc:", 0) != 0, (std::string("Bcc survived: ") + l));
    CHECK_MESSAGE(low.rfind("resent-bcc:", 0) != 0, (std::string("Resent-Bcc survived: ") + l));
  }
  for (const std::string& l : wire) CHECK_MESSAGE(l.size() <= 998, (std::string("line of ") + std::to_string(l.size()) + " octets"));
}

// Unfolds a header field (RFC 5322 §2.2.3: a line end followed by WSP is removed).
std::string Unfold(std::string s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    if (s[i] == '\n' && i + 1 < s.size() && (s[i + 1] == ' ' || s[i + 1] == '\t')) continue;
    out += s[i];
  }
  return out;
}

// The field named `name` (with its folded lines) in the header section of `m`, or "".
std::string FieldOf(const std::string& m, const std::string& name) {
  std::string low = LowerCopy(name) + ":";
  std::vector<std::string> lines = LfLines(m);
  std::string out;
  bool in = false;
  for (const std::string& l : lines) {
    if (l.empty()) break;
    if (in && (l[0] == ' ' || l[0] == '\t')) {
      out += "\n" + l;
      continue;
    }
    if (in) break;
    if (LowerCopy(l.substr(0, low.size())) == low) {
      in = true;
      out = l;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("submission: a bare CR is never a line end to one step and data to another") {
  HeaderEdit e;
  e.extract_recipients = true;
  // The header editor saw one Subject line; the wire encoding sent a Bcc line to every recipient.
  auto r = EditHeaders("Subject: hi\rBcc: x@y.test\nTo: a@b.test\n\nbody\n", e);
  if (r.ok()) CheckSubmitted(r->message, "EditHeaders, Subject: hi\\rBcc: x@y");
  // "\r\r" ended the header section on the wire only: To was a field for -t and body text for the receiver.
  r = EditHeaders("Subject: a\r\rX-Injected: 1\nTo: a@b.test\n\nbody\n", e);
  if (r.ok()) CheckSubmitted(r->message, "EditHeaders, \\r\\r in the header");

  // The rule, applied once where the message is read: CRLF and LF end a line, a bare CR is refused.
  auto s = PrepareSubmission("Subject: hi\rBcc: x@y.test\nTo: a@b.test\n\nbody\n", e);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().find("bare CR") != std::string::npos);
  CHECK(s.error().find("line 1") != std::string::npos);
  s = PrepareSubmission("To: a@b.test\nSubject: a\r\r\n\nbody\n", e);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().find("line 2") != std::string::npos);
  s = PrepareSubmission("To: a@b.test\n\nline one\nprogress 10%\rprogress 20%\n", e);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().find("bare CR") != std::string::npos);
  CHECK(s.error().find("line 4") != std::string::npos);
  // CRLF, LF and a mix of both are line ends; the queued message has LF line ends only.
  s = PrepareSubmission("To: a@b.test\r\nBcc: h@b.test\r\nSubject: s\n\r\nline\r\nline2\n", e);
  REQUIRE_MESSAGE(s.ok(), s.error());
  CHECK(s->message == "To: a@b.test\nSubject: s\n\nline\nline2\n");
  CHECK(s->recipients == std::vector<std::string>{"a@b.test", "h@b.test"});
  CheckSubmitted(s->message, "CRLF input");
  // What the wire encoding refuses is refused here, naming the input line.
  s = PrepareSubmission("Subject: x\n\nline one\nline\0two\n"s, e);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().find("NUL byte on line 4") != std::string::npos);
  s = PrepareSubmission("To: a@b.test\n\n" + std::string(999, 'x') + "\n", e);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().find("line 3 is 999 octets long") != std::string::npos);
}

TEST_CASE("submission: -t leaves no Bcc and no line over 998 octets, whatever the input") {
  HeaderEdit e;
  e.extract_recipients = true;
  e.qualify_domain = "a-rather-long-domain-name-for-qualification.example.test";
  e.from = "Sender <s@x.test>";
  e.date = "Mon, 23 Nov 2026 19:12:12 +0000";
  e.message_id = "<1.abc@x.test>";
  const std::vector<std::string> inputs = {
      "Bcc: a@b.test\n\nbody\n",
      "bCC:a@b.test\n\nbody\n",
      "Resent-Bcc: a@b.test\nTo: c@d.test\n\nbody\n",
      "To: c@d.test\nBcc: a@b.test,\n b@b.test\n\tc@b.test\n\nbody\n",      // obs-folding, continuation lines
      " Bcc: a@b.test\nTo: c@d.test\n\nbody\n",                             // a continuation with nothing to continue
      "To: c@d.test\n \nBcc: a@b.test\n\nbody\n",                           // a whitespace-only continuation
      "To: c@d.test\nno colon here\nBcc: a@b.test\n\nbody\n",               // the body starts before the Bcc
      "Bcc : a@b.test\nTo: c@d.test\n\nx\n",                                // not a field name: body
      "To: c@d.test\r\nBcc: a@b.test\r\n\r\nbody\r\n",
      "To: c@d.test\nX-8bit: caf\xc3\xa9\n\xc3\xa9: x\nBcc: a@b.test\n\nbody\n",
      "To: c@d.test\nBcc: a@b.test",                                         // no final line end
      "To: c@d.test\nBcc:\n\n",
      "To: " + std::string(990, 'u') + "\n\nbody\n",                        // qualified past 998, cannot fold
      "To: <" + std::string(985, 'u') + ">\n\nbody\n",
  };
  for (const std::string& in : inputs) {
    auto r = PrepareSubmission(in, e);
    if (r.ok()) CheckSubmitted(r->message, in.substr(0, 60));
    auto h = EditHeaders(in, e);
    if (h.ok()) CheckSubmitted(h->message, "EditHeaders: " + in.substr(0, 60));
  }
  // Random messages built from the pieces that matter (a fixed seed: the same run every time).
  const std::vector<std::string> pieces = {"To:", "Cc:", "Bcc:", "bcc:", "Resent-Bcc:", "From:", "Subject:", " ",
                                           "\t", "\n", "\r\n", "\r", ",", "<", ">", "\"", "(", ")", "\\", ":", ";",
                                           "@", "root", "a@b.test", "x", std::string(300, 'y'), std::string(120, ' '),
                                           "\xc3\xa9", std::string(1, '\0'), "\n\n", ".", "Bcc: h@b.test\n"};
  uint32_t seed = 12345;
  auto next = [&]() { return seed = seed * 1103515245u + 12345u; };
  for (int n = 0; n < 3000; ++n) {
    std::string in;
    size_t count = (next() >> 16) % 40;
    for (size_t k = 0; k < count; ++k) in += pieces[(next() >> 16) % pieces.size()];
    auto r = PrepareSubmission(in, e);
    if (r.ok()) CheckSubmitted(r->message, "random input " + std::to_string(n));
  }
}

TEST_CASE("submission: a From added with a 2000-octet full name is folded or refused, never over 998") {
  HeaderEdit e;
  std::string words;
  while (words.size() < 2000) words += "Word" + std::to_string(words.size()) + " ";
  e.from = "\"" + words + "\" <root@x.test>";
  auto r = EditHeaders("Subject: s\n\nbody\n", e);
  REQUIRE_MESSAGE(r.ok(), r.error());
  CheckSubmitted(r->message, "folded From");
  std::string from = FieldOf(r->message, "From");
  CHECK(Unfold(from) == "From: " + e.from);
  for (const std::string& l : LfLines(from)) CHECK(l.size() <= 78);

  // Nowhere to fold: refused, naming the field (sendmail exits 65 before queueing).
  e.from = std::string(2000, 'N') + " <root@x.test>";
  r = EditHeaders("Subject: s\n\nbody\n", e);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("From") != std::string::npos);
  CHECK(r.error().find("998") != std::string::npos);
}

TEST_CASE("submission: a To list longer than 998 octets once qualified is folded at its commas") {
  HeaderEdit e;
  e.extract_recipients = true;
  e.qualify_domain = "a-rather-long-domain-name-for-qualification.example.test";
  std::string list, plain;
  for (int i = 0; i < 90; ++i) {
    list += std::string(i ? ", " : "") + "user" + std::to_string(i);
    plain += std::string(i ? "," : "") + "user" + std::to_string(i);
  }
  REQUIRE(list.size() < 998);
  for (const std::string& l : {list, plain}) {
    auto r = EditHeaders("To: " + l + "\nSubject: s\n\nbody\n", e);
    REQUIRE_MESSAGE(r.ok(), r.error());
    CheckSubmitted(r->message, "qualified To");
    CHECK(r->qualified);
    CHECK(r->recipients.size() == 90);
    std::string to = FieldOf(r->message, "To");
    std::string unfolded = Unfold(to);
    std::string want = "To: " + QualifyAddressField(" " + l, e.qualify_domain).substr(1);
    if (l == plain) {
      // The folds went where there was no space: after each comma (CFWS may follow it).
      std::string squeezed;
      for (size_t i = 0; i < unfolded.size(); ++i)
        if (!(unfolded[i] == ' ' && i > 0 && unfolded[i - 1] == ',')) squeezed += unfolded[i];
      CHECK(squeezed == want);
    } else {
      CHECK(unfolded == want);
    }
    for (const std::string& line : LfLines(to)) CHECK(line.size() <= 78);
    auto addrs = ParseAddressList(unfolded.substr(3));
    REQUIRE(addrs.ok());
    CHECK(addrs->size() == 90);
    CHECK(addrs->back() == "user89@" + e.qualify_domain);
  }
  // A fold never lands inside a quoted-pair or makes a line of white space only.
  auto r = EditHeaders("To: \"a\\ " + std::string(100, 'q') + "\" <u>, " + std::string(80, ' ') + "v\n\nb\n", e);
  REQUIRE_MESSAGE(r.ok(), r.error());
  for (const std::string& line : LfLines(FieldOf(r->message, "To"))) {
    CHECK(line.find_first_not_of(" \t") != std::string::npos);
    CHECK(line.find("\\") != line.size() - 1);
  }
  CheckSubmitted(r->message, "quoted-pair");
}

TEST_CASE("submission: -O requiretls=yes|no (Postfix 3.11), other -O options ignored") {
  auto yes = ParseSendmailArgs({"-O", "requiretls=yes", "a@example.org"});
  REQUIRE(yes.ok());
  CHECK(yes->requiretls);
  auto attached = ParseSendmailArgs({"-ORequireTLS=YES", "a@example.org"});
  REQUIRE(attached.ok());
  CHECK(attached->requiretls);
  auto no = ParseSendmailArgs({"-O", "requiretls=no", "a@example.org"});
  REQUIRE(no.ok());
  CHECK_FALSE(no->requiretls);
  auto bad = ParseSendmailArgs({"-O", "requiretls=maybe", "a@example.org"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error() == "-O requiretls=maybe: expected requiretls=yes or requiretls=no");
  auto other = ParseSendmailArgs({"-O", "DeliveryMode=b", "a@example.org"});
  REQUIRE(other.ok());
  CHECK_FALSE(other->requiretls);
}
