// text_test.cc - untrusted text shown safely (text.h).
#include <doctest/doctest.h>

#include "mxsec/base/text.h"

using namespace mxsec;

TEST_CASE("text: PrintableAscii replaces control and non-ASCII octets and bounds the length") {
  CHECK(PrintableAscii("ok", 10) == "ok");
  CHECK(PrintableAscii("a\r\nb\x1b[31m\xc3\xa9", 20) == "a??b?[31m??");
  CHECK(PrintableAscii("abcdef", 3) == "abc...");
  CHECK(PrintableAscii("", 3).empty());
}

TEST_CASE("text: QuotedPrintable quotes, escapes as \\xNN and bounds the input shown") {
  CHECK(QuotedPrintable("a@b") == "\"a@b\"");
  CHECK(QuotedPrintable("a\nb\x7f") == "\"a\\x0ab\\x7f\"");
  CHECK(QuotedPrintable("abcdef", 2) == "\"ab...\"");
}

TEST_CASE("text: IsLdhName accepts LDH labels only, within the length given") {
  CHECK(IsLdhName("mta-sts.example.org", 253));
  CHECK(IsLdhName("x", 1));
  CHECK_FALSE(IsLdhName("", 253));
  CHECK_FALSE(IsLdhName(".example.org", 253));
  CHECK_FALSE(IsLdhName("example.org.", 253));
  CHECK_FALSE(IsLdhName("a..b", 253));
  CHECK_FALSE(IsLdhName("a/b", 253));
  CHECK_FALSE(IsLdhName("a b", 253));
  CHECK_FALSE(IsLdhName("example.org:443", 253));
  CHECK_FALSE(IsLdhName("ab", 1));
}

TEST_CASE("text: WSP trimmed, ASCII case ignored (and nothing beyond ASCII folded)") {
  CHECK(TrimWsp(" \t v=TLSRPTv1 \t") == "v=TLSRPTv1");
  CHECK(TrimWsp("\r\nx\r") == "\r\nx\r");  // only SP and HTAB
  CHECK(TrimWsp("  ").empty());
  CHECK(EqualsIgnoreCase("TLS-Required", "tls-required"));
  CHECK_FALSE(EqualsIgnoreCase("no", "no "));
  CHECK(StartsWithIgnoreCase("MAILTO:a@b", "mailto:"));
  CHECK_FALSE(StartsWithIgnoreCase("mail", "mailto:"));
  CHECK_FALSE(EqualsIgnoreCase("\xc3\x89", "\xc3\xa9"));
}

TEST_CASE("text: JoinLines and SplitLines round-trip a list stored one item per line") {
  const std::vector<std::string> v = {"3 1 1 abcd", "", "mx.example.org"};
  CHECK(JoinLines(v) == "3 1 1 abcd\n\nmx.example.org");
  CHECK(SplitLines(JoinLines(v)) == v);
  CHECK(SplitLines("").empty());
  CHECK(JoinLines({}).empty());
}
