// domain_name.cc - syntax checks and normal form for DNS names.
//
// Names are hostile input (command line, DNS answers): the checks are
// strict and bounded, and their errors say which rule the name broke.
#include "mxsec/base/domain_name.h"

#include <arpa/inet.h>

#include <cstring>

namespace mxsec {

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

namespace {

bool IsLdh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

std::string Quoted(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
    if (out.size() > 80) {
      out += "...";
      break;
    }
  }
  return out + "\"";
}

// Shared length and label splitting; `label_ok` checks one label.
template <class LabelOk>
Result<std::string> Normalize(std::string_view name, LabelOk label_ok) {
  if (name.empty()) return Status::Error("empty domain name");
  std::string lower = AsciiLower(name);
  if (lower.back() == '.') lower.pop_back();
  if (lower.empty()) return Status::Error("domain name " + Quoted(name) + " is the root");
  if (lower.size() > 253) return Status::Error("domain name " + Quoted(name) + " is longer than 253 octets");
  size_t start = 0;
  while (start <= lower.size()) {
    size_t dot = lower.find('.', start);
    if (dot == std::string::npos) dot = lower.size();
    std::string_view label(lower.data() + start, dot - start);
    if (label.empty()) return Status::Error("domain name " + Quoted(name) + " has an empty label");
    if (label.size() > 63)
      return Status::Error("domain name " + Quoted(name) + " has a label longer than 63 octets");
    std::string why = label_ok(label);
    if (!why.empty()) return Status::Error("domain name " + Quoted(name) + ": " + why);
    start = dot + 1;
  }
  return lower;
}

}  // namespace

Result<std::string> NormalizeHostName(std::string_view name) {
  for (char c : name) {
    if (static_cast<unsigned char>(c) >= 0x80)
      return Status::Error("domain name " + Quoted(name) +
                           " is not ASCII (give internationalised names as A-labels, xn--...)");
  }
  {
    std::string tmp(name);
    if (!tmp.empty() && tmp.back() == '.') tmp.pop_back();
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, tmp.c_str(), &a4) == 1 || inet_pton(AF_INET6, tmp.c_str(), &a6) == 1 ||
        (tmp.size() > 2 && tmp.front() == '['))
      return Status::Error("domain name " + Quoted(name) + " is an address literal, not a domain");
  }
  auto r = Normalize(name, [](std::string_view label) -> std::string {
    for (char c : label) {
      if (!IsLdh(c)) return "label \"" + std::string(label) + "\" has a character other than letters, digits, hyphen";
    }
    if (label.front() == '-' || label.back() == '-')
      return "label \"" + std::string(label) + "\" starts or ends with a hyphen";
    return "";
  });
  if (!r.ok()) return r;
  // A top-level label that is all digits would make the name look like an
  // address to other software (RFC 3696 §2).
  const std::string& n = r.value();
  size_t last = n.rfind('.');
  std::string_view tld = last == std::string::npos ? std::string_view(n) : std::string_view(n).substr(last + 1);
  bool digits = true;
  for (char c : tld) digits = digits && c >= '0' && c <= '9';
  if (digits) return Status::Error("domain name " + Quoted(name) + " has an all-numeric top-level label");
  return r;
}

Result<std::string> NormalizeDnsName(std::string_view name) {
  return Normalize(name, [](std::string_view label) -> std::string {
    for (char c : label) {
      unsigned char u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || c == '\\') return "label has a space, control, backslash or non-ASCII byte";
    }
    return "";
  });
}

bool IsLoopbackAddress(std::string_view addr) {
  std::string a(addr);
  in_addr a4;
  if (inet_pton(AF_INET, a.c_str(), &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, a.c_str(), &a6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&a6);
  }
  return false;
}

}  // namespace mxsec
