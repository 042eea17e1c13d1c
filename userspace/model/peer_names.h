// The names a Peer holds beyond its own 8 bytes (an IPv6 address, a Unix
// path): one counted copy per distinct name for the whole process, freed
// with the last peer that names it. A Peer is held four times per socket
// (a record's peer and local address, the last fd read's two): 100,000s at
// scale, where servers and the host's own addresses are few. An IPv4
// address needs no name: it fits the Peer itself.
//
// Thread-safe: peers are made on the report's thread and on the activity
// reader's. An id is read without a lock: the entry was written before the
// id was handed out, and is not rewritten while a peer holds it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace connleak::peer_names {

// Each returns an id (never 0) held once for the caller: drop() it.
uint32_t intern_v6(const uint8_t* a16);
uint32_t intern_path(const std::string& path);
void hold(uint32_t id);
void drop(uint32_t id);

const std::array<uint8_t, 16>& v6_of(uint32_t id);
const std::string& path_of(uint32_t id);

// Distinct names held now (tests: freed with their last peer).
size_t live();

}  // namespace connleak::peer_names
