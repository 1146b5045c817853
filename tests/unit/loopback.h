// loopback.h - sockets for the unit tests' own servers: bound to 127.0.0.1
// on a port the kernel picks (tests never use another address).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <cstdint>

namespace mxsec_test {

// A socket of `type` (SOCK_STREAM, SOCK_DGRAM) bound to 127.0.0.1 on a free
// port, which goes to `*port`; the test fails when there is none. The
// caller owns the descriptor (listen, or close it to have a port where
// nothing listens).
inline int BindLoopback(int type, uint16_t* port) {
  const int fd = socket(AF_INET, type, 0);
  REQUIRE(fd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

}  // namespace mxsec_test
