// smtp_proto_test.cc - SMTP replies, EHLO, envelope addresses, message data.
#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <string>

#include "mxsec/smtp/smtp_proto.h"

using namespace mxsec;

namespace {

// Feeds `bytes` in one go and returns the first reply (asserting there is one).
SmtpReply One(std::string_view bytes) {
  ReplyReader r;
  r.Feed(bytes);
  auto got = r.Next();
  REQUIRE_MESSAGE(got.ok(), got.error());
  REQUIRE(got.value().has_value());
  return *got.value();
}

std::string ReplyError(std::string_view bytes) {
  ReplyReader r;
  r.Feed(bytes);
  auto got = r.Next();
  if (got.ok()) return "";
  return got.error();
}

std::string Data(std::string_view raw, MessageOptions o = {}) {
  auto m = PrepareMessage(raw, o);
  REQUIRE_MESSAGE(m.ok(), m.error());
  return m->data;
}

// Reverses PrepareMessage's data: drops the terminator and one leading '.'
// per line. Returns "!" + reason when the data is not well formed.
std::string Unstuff(const std::string& data) {
  if (data.size() < 3 || data.compare(data.size() - 3, 3, ".\r\n") != 0) return "!no terminator";
  if (data.size() > 3 && data.size() < 5) return "!short";
  if (data.size() > 3 && data.compare(data.size() - 5, 5, "\r\n.\r\n") != 0) return "!terminator not after CRLF";
  std::string body = data.substr(0, data.size() - 3);
  std::string out;
  size_t p = 0;
  while (p < body.size()) {
    size_t e = body.find("\r\n", p);
    if (e == std::string::npos) return "!unterminated line";
    std::string_view line(body.data() + p, e - p);
    if (!line.empty() && line[0] == '.') {
      if (line.size() == 1 || line[1] != '.') return "!unstuffed dot line";
      line.remove_prefix(1);
    }
    out.append(line);
    out += "\r\n";
    p = e + 2;
  }
  return out;
}

// The reference transform, written independently of the implementation:
// every CRLF, CR or LF becomes CRLF and a last unterminated line gets one.
std::string Normalise(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
      out += "\r\n";
    } else if (in[i] == '\n') {
      out += "\r\n";
    } else {
      out += in[i];
    }
  }
  if (!out.empty() && (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0)) out += "\r\n";
  return out;
}

bool HasBareCrOrLf(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return true;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------- replies

TEST_CASE("smtp_proto: single-line and multi-line replies") {
  SmtpReply r = One("220 mx.example.org ESMTP\r\n");
  CHECK(r.code == 220);
  REQUIRE(r.lines.size() == 1);
  CHECK(r.lines[0] == "mx.example.org ESMTP");
  CHECK(r.positive());
  CHECK(r.enhanced == "");

  r = One("250-mx.example.org\r\n250-PIPELINING\r\n250-\r\n250 SIZE 1000\r\n");
  CHECK(r.code == 250);
  REQUIRE(r.lines.size() == 4);
  CHECK(r.lines[0] == "mx.example.org");
  CHECK(r.lines[1] == "PIPELINING");
  CHECK(r.lines[2] == "");
  CHECK(r.lines[3] == "SIZE 1000");

  r = One("451 4.3.0 try later\r\n");
  CHECK(r.transient());
  r = One("554 no\r\n");
  CHECK(r.permanent());
  r = One("354 go ahead\r\n");
  CHECK(r.positive());
}

TEST_CASE("smtp_proto: bare LF and bare code end lines and replies") {
  SmtpReply r = One("250-a\n250 b\n");
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0] == "a");
  CHECK(r.lines[1] == "b");

  r = One("250\r\n");
  CHECK(r.code == 250);
  REQUIRE(r.lines.size() == 1);
  CHECK(r.lines[0] == "");

  r = One("250-first\r\n250\r\n");
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[1] == "");
}

TEST_CASE("smtp_proto: a reply fed one byte at a time") {
  const std::string wire = "250-2.0.0 mx.example.org greets you\r\n250-8BITMIME\n250 2.0.0 ok\r\n";
  for (size_t split = 0; split <= wire.size(); ++split) {
    ReplyReader r;
    r.Feed(wire.substr(0, split));
    auto first = r.Next();
    REQUIRE(first.ok());
    if (split < wire.size()) CHECK_FALSE(first.value().has_value());
    r.Feed(wire.substr(split));
    auto got = first.value() ? std::move(first) : r.Next();
    REQUIRE(got.ok());
    REQUIRE(got.value().has_value());
    CHECK(got.value()->lines.size() == 3);
    CHECK(got.value()->enhanced == "2.0.0");
    CHECK(r.buffered() == 0);
  }

  ReplyReader r;
  std::optional<SmtpReply> got;
  for (size_t i = 0; i < wire.size(); ++i) {
    r.Feed(wire.substr(i, 1));
    auto n = r.Next();
    REQUIRE(n.ok());
    if (i + 1 < wire.size()) {
      CHECK_FALSE(n.value().has_value());
    } else {
      got = n.value();
    }
  }
  REQUIRE(got.has_value());
  CHECK(got->code == 250);
  CHECK(got->lines[2] == "2.0.0 ok");
}

TEST_CASE("smtp_proto: a reply trickled one byte at a time is scanned in linear time") {
  // The largest reply the limits allow (kMaxLines lines of kMaxLine
  // octets), sent one octet per segment: the reader may look at each octet
  // a small constant number of times, not once per segment that follows.
  std::string wire;
  const std::string text(ReplyReader::kMaxLine - 4, 'x');
  for (size_t i = 0; i + 1 < ReplyReader::kMaxLines; ++i) wire += "250-" + text + "\r\n";
  wire += "250 " + text + "\r\n";
  ReplyReader r;
  size_t replies = 0;
  for (size_t i = 0; i < wire.size(); ++i) {
    r.Feed(std::string_view(wire).substr(i, 1));
    auto n = r.Next();
    REQUIRE_MESSAGE(n.ok(), n.error());
    if (n.value()) {
      ++replies;
      CHECK(i + 1 == wire.size());
      CHECK(n.value()->lines.size() == ReplyReader::kMaxLines);
      CHECK(n.value()->lines.back() == text);
    }
  }
  CHECK(replies == 1);
  CHECK(r.buffered() == 0);
  CHECK_MESSAGE(r.examined() <= 3 * wire.size(),
                "examined " << r.examined() << " octets for a reply of " << wire.size());

  // A reply split at every line end, and one line trickled: the same bound.
  ReplyReader lines;
  size_t fed = 0;
  for (size_t p = 0; p < wire.size();) {
    size_t e = wire.find('\n', p) + 1;
    lines.Feed(std::string_view(wire).substr(p, e - p));
    fed += e - p;
    p = e;
    auto n = lines.Next();
    REQUIRE(n.ok());
    CHECK(n.value().has_value() == (p == wire.size()));
  }
  CHECK(lines.examined() <= 3 * fed);
}

TEST_CASE("smtp_proto: several replies in one feed come out one by one") {
  ReplyReader r;
  r.Feed("250 2.1.0 sender ok\r\n250 2.1.5 rcpt ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go");
  auto a = r.Next();
  REQUIRE((a.ok() && a.value()));
  CHECK(a.value()->enhanced == "2.1.0");
  auto b = r.Next();
  REQUIRE((b.ok() && b.value()));
  CHECK(b.value()->enhanced == "2.1.5");
  auto c = r.Next();
  REQUIRE((c.ok() && c.value()));
  CHECK(c.value()->code == 550);
  CHECK(c.value()->lines.size() == 2);
  auto d = r.Next();
  REQUIRE(d.ok());
  CHECK_FALSE(d.value().has_value());
  CHECK(r.buffered() == 6);
  r.Feed(" ahead\r\n");
  auto e = r.Next();
  REQUIRE((e.ok() && e.value()));
  CHECK(e.value()->code == 354);
  CHECK(e.value()->lines[0] == "go ahead");
  CHECK(r.buffered() == 0);
}

TEST_CASE("smtp_proto: malformed replies are errors and the reader stays failed") {
  CHECK(ReplyError("250-a\r\n251 b\r\n").find("changed from 250 to 251") != std::string::npos);
  for (const char* bad : {"099 x\r\n", "600 x\r\n", "2x0 x\r\n", "199 x\r\n", "25\r\n", "\r\n",
                          "250x\r\n", "250\tx\r\n", " 250 x\r\n", "ok\r\n"}) {
    CHECK_MESSAGE(!ReplyError(bad).empty(), bad);
  }

  ReplyReader r;
  r.Feed("250-a\r\n421 b\r\n");
  CHECK_FALSE(r.Next().ok());
  r.Feed("250 fine\r\n");
  CHECK_FALSE(r.Next().ok());  // unusable: the caller must drop the connection
}

TEST_CASE("smtp_proto: reply line and line-count limits") {
  const std::string max_text(ReplyReader::kMaxLine - 4, 'x');
  SmtpReply r = One("250 " + max_text + "\r\n");  // exactly kMaxLine octets
  CHECK(r.lines[0].size() == ReplyReader::kMaxLine - 4);
  r = One("250 " + max_text + "\n");
  CHECK(r.lines[0].size() == ReplyReader::kMaxLine - 4);

  CHECK(ReplyError("250 " + max_text + "y\r\n").find("longer than") != std::string::npos);
  // An overlong line is refused before its end arrives.
  CHECK(ReplyError("250 " + max_text + "yy").find("longer than") != std::string::npos);
  {
    ReplyReader rr;  // kMaxLine octets plus CR: still waiting for the LF
    rr.Feed("250 " + max_text + "\r");
    auto n = rr.Next();
    REQUIRE(n.ok());
    CHECK_FALSE(n.value().has_value());
    rr.Feed("\n");
    n = rr.Next();
    REQUIRE((n.ok() && n.value()));
  }

  std::string many;
  for (size_t i = 0; i + 1 < ReplyReader::kMaxLines; ++i) many += "250-line\r\n";
  r = One(many + "250 last\r\n");
  CHECK(r.lines.size() == ReplyReader::kMaxLines);
  CHECK(ReplyError(many + "250-one too many\r\n250 last\r\n").find("more than") != std::string::npos);
  // Detected without waiting for the rest.
  CHECK(ReplyError(many + "250-one too many\r\n").find("more than") != std::string::npos);
}

TEST_CASE("smtp_proto: enhanced status codes") {
  CHECK(One("550 5.1.1 <u@example.org>: user unknown\r\n").enhanced == "5.1.1");
  CHECK(One("550-5.7.1 first\r\n550 5.7.1 second\r\n").enhanced == "5.7.1");
  CHECK(One("250 2.0.0\r\n").enhanced == "2.0.0");
  CHECK(One("550 5.1.10 null MX\r\n").enhanced == "5.1.10");
  CHECK(One("452 4.5.3 too many\r\n").enhanced == "4.5.3");
  CHECK(One("250 5.1.1 class mismatch\r\n").enhanced == "");
  CHECK(One("354 3.0.0 no class 3\r\n").enhanced == "");
  CHECK(One("550 5.1.1000 too many digits\r\n").enhanced == "");
  CHECK(One("550 5.1.1x\r\n").enhanced == "");
  CHECK(One("550 5..1 x\r\n").enhanced == "");
  CHECK(One("550 user unknown 5.1.1\r\n").enhanced == "");
  // The code is kept in the text.
  CHECK(One("550 5.1.1 nope\r\n").lines[0] == "5.1.1 nope");

  CHECK(LeadingEnhancedCode("4.7.5 TLS required") == "4.7.5");
  CHECK(LeadingEnhancedCode("5.1.10") == "5.1.10");
  CHECK(LeadingEnhancedCode("2.0.0 ok") == "2.0.0");
  CHECK(LeadingEnhancedCode("3.0.0 x") == "");
  CHECK(LeadingEnhancedCode("4.7.5: x") == "");
  CHECK(LeadingEnhancedCode(" 4.7.5 x") == "");
  CHECK(LeadingEnhancedCode("") == "");
  CHECK(LeadingEnhancedCode("5.1") == "");
}

TEST_CASE("smtp_proto: bytes after the STARTTLS 220 stay visible in buffered()") {
  ReplyReader r;
  r.Feed("220 ready\r\n250 injected\r\n");
  auto got = r.Next();
  REQUIRE((got.ok() && got.value()));
  CHECK(got.value()->code == 220);
  CHECK(r.buffered() == std::string("250 injected\r\n").size());

  ReplyReader clean;
  clean.Feed("220 2.0.0 ready\r\n");
  REQUIRE(clean.Next().ok());
  CHECK(clean.buffered() == 0);
}

TEST_CASE("smtp_proto: the reader drains long pipelined input completely") {
  ReplyReader r;
  std::string chunk;
  for (int i = 0; i < 100; ++i) chunk += "250 2.1.5 ok\r\n";
  size_t replies = 0;
  // Speed is measured by benchmarks, not here (a timed unit test is flaky
  // under sanitizers on a loaded machine).
  for (int round = 0; round < 500; ++round) {
    r.Feed(chunk);
    for (;;) {
      auto n = r.Next();
      REQUIRE(n.ok());
      if (!n.value()) break;
      ++replies;
    }
  }
  CHECK(replies == 50000);
  CHECK(r.buffered() == 0);
}

TEST_CASE("smtp_proto: Summary joins lines and neutralises control characters") {
  CHECK(One("550 5.1.1 <u@example.org>: user unknown\r\n").Summary() == "550 5.1.1 <u@example.org>: user unknown");
  CHECK(One("451-first\r\n451 second\r\n").Summary() == "451 first / second");
  CHECK(One("250\r\n").Summary() == "250");
  std::string s = One("550 evil \x1b[31mred\x07 \xc3\xa9\r\n").Summary();
  CHECK(s == "550 evil ?[31mred? ??");
  CHECK(s.find('\x1b') == std::string::npos);
  std::string longer;
  for (int i = 0; i < 50; ++i) longer += "250-" + std::string(100, 'x') + "\r\n";
  s = One(longer + "250 end\r\n").Summary();
  CHECK(s.size() <= 300);
  CHECK(s.substr(s.size() - 3) == "...");
}

// ------------------------------------------------------------------- EHLO

TEST_CASE("smtp_proto: EHLO capabilities") {
  SmtpReply r = One(
      "250-mx.example.org STARTTLS PIPELINING SIZE\r\n"
      "250-pipelining\r\n"
      "250-SIZE 10240000\r\n"
      "250-8bitmime\r\n"
      "250-SmtpUtf8\r\n"
      "250-ENHANCEDSTATUSCODES\r\n"
      "250-CHUNKING\r\n"
      "250-AUTH PLAIN LOGIN\r\n"
      "250-AUTH=LOGIN\r\n"
      "250-REQUIRETLS\r\n"
      "250-dsn\r\n"
      "250 STARTTLS\r\n");
  EhloCapabilities c = ParseEhlo(r);
  CHECK(c.dsn);
  CHECK_FALSE(ParseEhlo(One("250-mx.example.org\r\n250 PIPELINING\r\n")).dsn);
  CHECK(c.starttls);
  CHECK(c.pipelining);
  CHECK(c.eightbitmime);
  CHECK(c.smtputf8);
  CHECK(c.enhancedstatuscodes);
  CHECK(c.chunking);
  CHECK(c.requiretls);
  REQUIRE(c.size.has_value());
  CHECK(*c.size == 10240000);
  CHECK(c.keywords == std::vector<std::string>{"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                                               "CHUNKING", "AUTH", "REQUIRETLS", "DSN", "STARTTLS"});

  // The greeting line is not a keyword.
  c = ParseEhlo(One("250-STARTTLS\r\n250 PIPELINING\r\n"));
  CHECK_FALSE(c.starttls);
  CHECK(c.pipelining);
  c = ParseEhlo(One("250 mx.example.org STARTTLS\r\n"));
  CHECK_FALSE(c.starttls);
  CHECK(c.keywords.empty());
  CHECK_FALSE(c.size.has_value());

  c = ParseEhlo(One("250-mx\r\n250 SIZE\r\n"));
  REQUIRE(c.size.has_value());
  CHECK(*c.size == 0);
  c = ParseEhlo(One("250-mx\r\n250 size abc\r\n"));
  CHECK_FALSE(c.size.has_value());
  CHECK(c.keywords == std::vector<std::string>{"SIZE"});
  c = ParseEhlo(One("250-mx\r\n250 SIZE 99999999999999999999999\r\n"));
  CHECK_FALSE(c.size.has_value());
  c = ParseEhlo(One("250-mx\r\n250 SIZE -1\r\n"));
  CHECK_FALSE(c.size.has_value());
  // Two different limits in one reply: no limit can be read from it, so
  // none is used (whichever line came last would otherwise win).
  c = ParseEhlo(One("250-mx\r\n250-SIZE 1000\r\n250 SIZE 50000000\r\n"));
  CHECK_FALSE(c.size.has_value());
  c = ParseEhlo(One("250-mx\r\n250-SIZE 1000\r\n250-SIZE abc\r\n250 SIZE 1000\r\n"));
  CHECK_FALSE(c.size.has_value());
  c = ParseEhlo(One("250-mx\r\n250-SIZE 1000\r\n250 size 1000\r\n"));  // the same limit twice
  REQUIRE(c.size.has_value());
  CHECK(*c.size == 1000);

  // Not a 250: nothing is offered.
  c = ParseEhlo(One("502-mx\r\n502 STARTTLS\r\n"));
  CHECK_FALSE(c.starttls);
}

// -------------------------------------------------------------- addresses

TEST_CASE("smtp_proto: valid mailboxes") {
  auto m = ParseMailbox("John.Doe+tag@Example.ORG", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->local == "John.Doe+tag");
  CHECK(m->domain == "example.org");
  CHECK_FALSE(m->utf8);
  CHECK(m->ToString() == "John.Doe+tag@example.org");

  m = ParseMailbox("<a@b.example>", false);
  REQUIRE(m.ok());
  CHECK(m->ToString() == "a@b.example");

  m = ParseMailbox("\"john doe\"@example.org", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->local == "\"john doe\"");
  m = ParseMailbox("\"a@b\\\"c\"@example.org", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->local == "\"a@b\\\"c\"");

  m = ParseMailbox("!#$%&'*+-/=?^_`{|}~@example.org", false);
  CHECK_MESSAGE(m.ok(), m.error());

  m = ParseMailbox("j\xc3\xb6rg@b\xc3\xbc" "cher.example", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->utf8);
  CHECK(m->domain == "b\xc3\xbc" "cher.example");
  m = ParseMailbox("user@B\xc3\xbc" "cher.Example.", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->domain == "b\xc3\xbc" "cher.example");
  m = ParseMailbox("\xe7\x94\xa8\xe6\x88\xb7@example.org", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->utf8);

  m = ParseMailbox("postmaster@[192.0.2.1]", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->domain == "[192.0.2.1]");
  m = ParseMailbox("postmaster@[IPv6:2001:db8::1]", false);
  REQUIRE_MESSAGE(m.ok(), m.error());
  CHECK(m->domain == "[IPv6:2001:db8::1]");

  std::string local64(64, 'l');
  CHECK(ParseMailbox(local64 + "@example.org", false).ok());

  m = ParseMailbox("", true);
  REQUIRE(m.ok());
  CHECK(m->ToString() == "");
  m = ParseMailbox("<>", true);
  REQUIRE(m.ok());
  CHECK(m->local.empty());
  CHECK(m->domain.empty());
}

TEST_CASE("smtp_proto: invalid mailboxes are refused with a reason") {
  for (const char* bad : {
           "a@b@example.org", "a..b@example.org", ".a@example.org", "a.@example.org", "a@b.example\r\nRCPT TO:<c@d>",
           "a@b.example\n", "<a@b.example", "a@b.example>", "<<a@b.example>>", "a b@example.org", " a@example.org",
           "a@example.org ", "a@exa mple.org", "a\xff@example.org", "a\xc3@example.org", "a@b\xc3\x28.example",
           "\xed\xa0\x80@example.org" /* surrogate */, "\xc0\xaf@example.org" /* overlong */, "a", "@example.org",
           "a@", "a@.example.org", "a@example..org", "a@-x.example", "a@exa_mple.org", "a@192.0.2.1",
           "a@[192.0.2.300]", "a@[IPv6:nonsense]", "a@[foo:bar]", "a@[192.0.2.1", "\"\"@example.org",
           "\"unterminated@example.org", "\"a\"b@example.org", "a(comment)@example.org", "a\"b@example.org",
           "a\t@example.org", "\"a\x01\"@example.org",
           "\"a\\\xc3\xa9\"@example.org", "a@b\xc3\xbc_x.example", "<a@b.example> SIZE=1"}) {
    auto m = ParseMailbox(bad, true);
    CHECK_MESSAGE(!m.ok(), bad);
    if (!m.ok()) {
      CHECK_FALSE(m.error().empty());
      CHECK(m.error().find('\r') == std::string::npos);
      CHECK(m.error().find('\n') == std::string::npos);
    }
  }
  CHECK_FALSE(ParseMailbox(std::string_view("a\0@example.org", 14), true).ok());

  auto m = ParseMailbox(std::string(65, 'l') + "@example.org", false);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().find("65 octets") != std::string::npos);

  std::string long_domain;
  for (int i = 0; i < 3; ++i) long_domain += std::string(63, 'd') + ".";
  long_domain += std::string(59, 'd');  // 251 octets: a valid name
  REQUIRE(long_domain.size() == 251);
  CHECK(ParseMailbox("a@" + long_domain, false).ok());
  m = ParseMailbox("abcd@" + long_domain, false);  // path 258 > 256
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().find("256") != std::string::npos);

  m = ParseMailbox("", false);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error() == "empty address");
  CHECK(ParseMailbox("<>", false).error() == "empty address");
  CHECK(ParseMailbox("a@b@c.example", false).error().find("'@'") != std::string::npos);
}

TEST_CASE("smtp_proto: MAIL FROM and RCPT TO commands") {
  Mailbox s = ParseMailbox("sender@example.org", false).value();
  Mailbox u = ParseMailbox("s\xc3\xa9nder@example.org", false).value();
  Mailbox null = ParseMailbox("", true).value();
  EhloCapabilities none;
  EhloCapabilities all;
  all.size = 10240000;
  all.eightbitmime = true;
  all.smtputf8 = true;

  CHECK(MailFromCommand(s, none, 1234, true) == "MAIL FROM:<sender@example.org>");
  CHECK(MailFromCommand(null, none, 0, false) == "MAIL FROM:<>");
  CHECK(MailFromCommand(s, all, 1234, false) == "MAIL FROM:<sender@example.org> SIZE=1234");
  CHECK(MailFromCommand(s, all, 0, false) == "MAIL FROM:<sender@example.org>");
  CHECK(MailFromCommand(s, all, 1234, true) == "MAIL FROM:<sender@example.org> SIZE=1234 BODY=8BITMIME");
  CHECK(MailFromCommand(u, all, 1234, true) ==
        "MAIL FROM:<s\xc3\xa9nder@example.org> SIZE=1234 BODY=8BITMIME SMTPUTF8");
  CHECK(MailFromCommand(u, none, 1234, true) == "MAIL FROM:<s\xc3\xa9nder@example.org>");
  EhloCapabilities size_no_limit;
  size_no_limit.size = 0;
  CHECK(MailFromCommand(s, size_no_limit, 99, false) == "MAIL FROM:<sender@example.org> SIZE=99");

  CHECK(RcptToCommand(s) == "RCPT TO:<sender@example.org>");
  // A hand-built Mailbox still cannot inject a command.
  Mailbox evil;
  evil.local = "a";
  evil.domain = "b>\r\nRSET";
  CHECK(RcptToCommand(evil).find_first_of("\r\n") == std::string::npos);
  CHECK(MailFromCommand(evil, all, 1, false).find_first_of("\r\n") == std::string::npos);
}

// ----------------------------------------------------------- message data

TEST_CASE("smtp_proto: line endings are normalised to CRLF") {
  CHECK(Data("a\nb\n") == "a\r\nb\r\n.\r\n");
  CHECK(Data("a\r\nb\r\n") == "a\r\nb\r\n.\r\n");
  CHECK(Data("a\rb\r") == "a\r\nb\r\n.\r\n");
  CHECK(Data("a\r\nb\nc\rd") == "a\r\nb\r\nc\r\nd\r\n.\r\n");
  CHECK(Data("a\r\r\nb") == "a\r\n\r\nb\r\n.\r\n");
  CHECK(Data("a\n\r") == "a\r\n\r\n.\r\n");
  CHECK(Data("no newline") == "no newline\r\n.\r\n");
  CHECK(Data("\n") == "\r\n.\r\n");
  CHECK(Data("\n\n") == "\r\n\r\n.\r\n");

  auto m = PrepareMessage("a\nbb\r\nccc", {});
  REQUIRE(m.ok());
  CHECK(m->lines == 3);
  CHECK(m->content_size == 3 + 4 + 5);
  CHECK_FALSE(m->eight_bit);
}

TEST_CASE("smtp_proto: an empty message is just the terminator") {
  auto m = PrepareMessage("", {});
  REQUIRE(m.ok());
  CHECK(m->data == ".\r\n");
  CHECK(m->content_size == 0);
  CHECK(m->lines == 0);
}

TEST_CASE("smtp_proto: dot-stuffing") {
  CHECK(Data(".\n") == "..\r\n.\r\n");
  CHECK(Data("..x\n") == "...x\r\n.\r\n");
  CHECK(Data("a\n.") == "a\r\n..\r\n.\r\n");
  CHECK(Data("a\r\n.\r\nb") == "a\r\n..\r\nb\r\n.\r\n");
  CHECK(Data("a.b\n .x\n") == "a.b\r\n .x\r\n.\r\n");
  // The classic smuggling payload: bare LF "." bare LF must not end the data.
  std::string d = Data("x\n.\nMAIL FROM:<evil@example>\r\n");
  CHECK(d == "x\r\n..\r\nMAIL FROM:<evil@example>\r\n.\r\n");
  CHECK(d.find("\r\n.\r\n") == d.size() - 5);
}

TEST_CASE("smtp_proto: line length, NUL, 8-bit and size limits") {
  std::string ok(998, 'x');
  CHECK(PrepareMessage("a\n" + ok + "\nb", {}).ok());
  CHECK(Data("." + std::string(997, 'x')) == ".." + std::string(997, 'x') + "\r\n.\r\n");  // 999 after stuffing
  auto m = PrepareMessage("a\nb\r\n" + ok + "y\r\nc", {});
  REQUIRE_FALSE(m.ok());
  CHECK(m.error() == "line 3 is 999 octets long; SMTP allows 998");

  m = PrepareMessage(std::string("a\nb\nc\0d\n", 8), {});
  REQUIRE_FALSE(m.ok());
  CHECK(m.error() == "NUL byte on line 3");
  MessageOptions keep;
  keep.allow_nul = true;
  m = PrepareMessage(std::string("c\0d", 3), keep);
  REQUIRE(m.ok());
  CHECK(m->data == std::string("c\0d\r\n.\r\n", 8));

  m = PrepareMessage("caf\xc3\xa9\n", {});
  REQUIRE(m.ok());
  CHECK(m->eight_bit);

  MessageOptions limit;
  limit.max_size = 12;
  m = PrepareMessage("0123456789\n", limit);  // 12 octets with CRLF
  REQUIRE(m.ok());
  CHECK(m->content_size == 12);
  m = PrepareMessage("0123456789\nx", limit);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error() == "message is 15 octets, limit 12");
}

TEST_CASE("smtp_proto: a 10 MB message is prepared with every line counted") {
  std::string raw;
  raw.reserve(10u << 20);
  const std::string line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\n";
  while (raw.size() + line.size() <= (10u << 20)) raw += (raw.size() % 7 == 0) ? "." + line : line;
  auto m = PrepareMessage(raw, {});
  REQUIRE(m.ok());
  CHECK(m->content_size == raw.size() + m->lines);
}

TEST_CASE("smtp_proto: property: data has no bare CR/LF and un-stuffs to the input") {
  std::mt19937 rng(20240601);
  const char alphabet[] = {'a', '.', '\r', '\n', '\x80'};
  std::uniform_int_distribution<int> pick(0, 4);
  std::uniform_int_distribution<int> length(0, 40);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string in;
    int n = length(rng);
    for (int i = 0; i < n; ++i) in += alphabet[pick(rng)];
    auto m = PrepareMessage(in, {});
    REQUIRE(m.ok());
    const std::string& d = m->data;
    INFO("input: " << in.size() << " bytes, iteration " << iter);
    REQUIRE_FALSE(HasBareCrOrLf(d));
    std::string expected = Normalise(in);
    REQUIRE(Unstuff(d) == expected);
    CHECK(m->content_size == expected.size());
    CHECK(m->eight_bit == (in.find('\x80') != std::string::npos));
    // The only line that is a lone "." is the terminator.
    CHECK(("\r\n" + d).find("\r\n.\r\n") == d.size() - 3);
  }
}

TEST_CASE("smtp_proto: DSN parameters (RFC 3461) only to a server that announces DSN") {
  Mailbox s = ParseMailbox("sender@example.org", false).value();
  Mailbox r = ParseMailbox("rcpt+tag@example.org", false).value();
  Mailbox u = ParseMailbox("r\xc3\xa9@example.org", false).value();
  EhloCapabilities dsn;
  dsn.dsn = true;
  EhloCapabilities plain;
  DsnRequest req{"SUCCESS,FAILURE", "HDRS", "job=42 x"};

  CHECK(XtextEncode("a+b=c d\x01~!") == "a+2Bb+3Dc+20d+01~!");
  CHECK(MailFromCommand(s, dsn, 0, false, &req) == "MAIL FROM:<sender@example.org> RET=HDRS ENVID=job+3D42+20x");
  CHECK(MailFromCommand(s, plain, 0, false, &req) == "MAIL FROM:<sender@example.org>");
  CHECK(MailFromCommand(s, dsn, 0, false, nullptr) == "MAIL FROM:<sender@example.org>");
  DsnRequest nothing;
  CHECK(MailFromCommand(s, dsn, 0, false, &nothing) == "MAIL FROM:<sender@example.org>");

  CHECK(RcptToCommand(r, dsn, req) == "RCPT TO:<rcpt+tag@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;rcpt+2Btag@example.org");
  CHECK(RcptToCommand(r, plain, req) == "RCPT TO:<rcpt+tag@example.org>");
  CHECK(RcptToCommand(r, dsn, DsnRequest{}) == "RCPT TO:<rcpt+tag@example.org>");   // nothing asked: nothing said
  CHECK(RcptToCommand(r, dsn, DsnRequest{"NEVER", "", ""}) ==
        "RCPT TO:<rcpt+tag@example.org> NOTIFY=NEVER ORCPT=rfc822;rcpt+2Btag@example.org");
  // ORCPT's rfc822 type is for ASCII addresses (RFC 6533 has its own): left out for a UTF-8 one.
  CHECK(RcptToCommand(u, dsn, req) == "RCPT TO:<r\xc3\xa9@example.org> NOTIFY=SUCCESS,FAILURE");
}

TEST_CASE("smtp_proto: MAIL FROM carries REQUIRETLS only when asked and announced (RFC 8689)") {
  Mailbox s;
  s.local = "sender";
  s.domain = "example.org";
  EhloCapabilities caps;
  CHECK(MailFromCommand(s, caps, 0, false, nullptr, true) == "MAIL FROM:<sender@example.org>");
  caps.requiretls = true;
  CHECK(MailFromCommand(s, caps, 0, false, nullptr, false) == "MAIL FROM:<sender@example.org>");
  CHECK(MailFromCommand(s, caps, 0, false, nullptr, true) == "MAIL FROM:<sender@example.org> REQUIRETLS");
}
