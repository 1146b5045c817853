// net_address.h - how mxsec names a network peer, in one place: a server
// address with its port, and the "host[address]:port" form Postfix logs use
// for an SMTP relay, so that every log line, DSN and JSON field spells a
// peer the same way.
#pragma once

#include <cstdint>
#include <string>

namespace mxsec {

// A server given by address (a DNS resolver, from configuration or
// /etc/resolv.conf).
struct ResolverAddress {
  std::string address;  // IPv4 or IPv6 literal, no brackets
  uint16_t port = 53;
  std::string ToString() const;  // "127.0.0.1:53", "[::1]:53"
};

// "mx1.example.org[192.0.2.1]:25", "mx1.example.org[2001:db8::1]:25" (the
// address in brackets, as Postfix's relay= field shows it). An empty host
// shows as the address alone in brackets: "[192.0.2.1]:25".
std::string FormatRelay(const std::string& host, const std::string& address, uint16_t port);

}  // namespace mxsec
