// socketmap.cc - libFuzzer target: the netstring reader of the socketmap
// server (NetstringReader, SocketmapKey; socketmap.h), fed the input in
// pieces whose size the first byte chooses.
//
// Oracle: no crash or sanitizer report; the payloads returned, each
// re-encoded with EncodeNetstring, are exactly the bytes the reader
// consumed, in order (nothing skipped, invented or reordered); no payload
// is over kSocketmapMaxRequest; a key SocketmapKey accepts is non-empty
// and free of control characters.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mxsec/serve/socketmap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 32;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  mxsec::NetstringReader reader;
  std::string reencoded;
  size_t fed = 0;
  while (true) {
    if (fed < in.size()) {
      size_t n = std::min(chunk, in.size() - fed);
      reader.Feed(in.substr(fed, n));
      fed += n;
    }
    auto r = reader.Next();
    if (!r.ok()) return 0;  // the server drops the connection
    if (!r.value()) {
      if (fed == in.size()) break;
      continue;
    }
    const std::string& payload = *r.value();
    if (payload.size() > mxsec::kSocketmapMaxRequest) abort();
    reencoded += mxsec::EncodeNetstring(payload);
    if (reencoded.size() + reader.buffered() != fed) abort();
    if (in.substr(0, reencoded.size()) != reencoded) abort();
    auto key = mxsec::SocketmapKey(payload);
    if (key.ok()) {
      if (key.value().empty()) abort();
      for (char c : key.value())
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) abort();
    }
  }
  return 0;
}
