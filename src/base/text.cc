// text.cc - the safe spellings of text.h.
#include "mxsec/base/text.h"

#include <sstream>

#include <cstdio>

namespace mxsec {

namespace {
bool IsPrintableAscii(unsigned char c) { return c >= 0x20 && c < 0x7f; }
}  // namespace

std::string PrintableAscii(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += IsPrintableAscii(c) ? static_cast<char>(c) : '?';
  }
  return out;
}

std::string QuotedPrintable(std::string_view s, size_t max) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == max) {
      out += "...";
      break;
    }
    unsigned char u = static_cast<unsigned char>(s[i]);
    if (!IsPrintableAscii(u)) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += s[i];
    }
  }
  return out + "\"";
}

bool IsLdhName(std::string_view name, size_t max_len) {
  if (name.empty() || name.size() > max_len || name.front() == '.' || name.back() == '.') return false;
  char prev = '.';
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

namespace {
char AsciiLowerChar(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (AsciiLowerChar(s[i]) != AsciiLowerChar(prefix[i])) return false;
  return true;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && StartsWithIgnoreCase(a, b);
}

std::string JoinLines(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "\n" : "") + v[i];
  return out;
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

}  // namespace mxsec
