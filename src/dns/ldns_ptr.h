// ldns_ptr.h - the owners of what ldns allocates, for every file of the dns
// layer: each ldns object is held by exactly one of these from the moment it
// is created, so no error path can leak it or free it twice. Private to
// src/dns (ldns does not appear in the layer's public headers).
#pragma once

#include <ldns/ldns.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace mxsec {

struct LdnsPktFree { void operator()(ldns_pkt* p) const { ldns_pkt_free(p); } };
struct LdnsRdfFree { void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); } };
struct LdnsRrFree { void operator()(ldns_rr* r) const { ldns_rr_free(r); } };
// An ldns_rr_list that owns its records (ldns_rr_list_deep_free).
struct LdnsRrListDeepFree { void operator()(ldns_rr_list* l) const { ldns_rr_list_deep_free(l); } };
struct LdnsBufferFree { void operator()(ldns_buffer* b) const { ldns_buffer_free(b); } };
// Strings and wire buffers that ldns returns from malloc (ldns_rdf2str,
// ldns_rr2str, ldns_pkt2wire, ...).
struct MallocFree { void operator()(void* p) const { free(p); } };

using PktPtr = std::unique_ptr<ldns_pkt, LdnsPktFree>;
using RdfPtr = std::unique_ptr<ldns_rdf, LdnsRdfFree>;
using RrPtr = std::unique_ptr<ldns_rr, LdnsRrFree>;
using RrListPtr = std::unique_ptr<ldns_rr_list, LdnsRrListDeepFree>;
using BufferPtr = std::unique_ptr<ldns_buffer, LdnsBufferFree>;
using MallocedChars = std::unique_ptr<char, MallocFree>;
using MallocedBytes = std::unique_ptr<uint8_t, MallocFree>;

}  // namespace mxsec
