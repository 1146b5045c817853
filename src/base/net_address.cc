// net_address.cc - the spellings of net_address.h.
#include "mxsec/base/net_address.h"

namespace mxsec {

std::string ResolverAddress::ToString() const {
  if (address.find(':') != std::string::npos) return "[" + address + "]:" + std::to_string(port);
  return address + ":" + std::to_string(port);
}

std::string FormatRelay(const std::string& host, const std::string& address, uint16_t port) {
  return host + "[" + address + "]:" + std::to_string(port);
}

}  // namespace mxsec
