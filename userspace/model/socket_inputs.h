// What a process's socket report (build_socket_report) is made from, as one
// number: the socket tracer builds a report again only when it moved, and
// otherwise hands out its last one (1,000 processes x 100 handles at scale,
// each handle's ConnSocket with its strings, every interval).
#pragma once

#include <cstdint>
#include <vector>

#include "socket_model.h"

namespace connleak {

// A digest of everything build_socket_report reads: the process's socket
// records (every field it uses, traffic included), its live handles, which
// fd table read the scan is (scan_version: a new one for each read made,
// the same while a read is used again), how many servers are known to be
// databases (rules only ever learn more), and what the process's memory
// holds. The scan's time is left out: every record was read before the
// scan that comes with it, so records unchanged since read the same
// against a later copy of the same scan.
uint64_t socket_inputs_digest(const std::vector<SocketRecord>& records, const std::vector<HandleRef>& handles,
                              uint64_t scan_version, size_t known_servers, const ProcessSocketMemory& mem);

// The same digest in two parts, so that the records' part (every field of
// every record: 100 records a process at scale) is computed again only
// when the records or their traffic changed:
// socket_inputs_digest(r, h, v, k, m) == socket_inputs_of(socket_records_inputs(r), h, v, k, m).
uint64_t socket_records_inputs(const std::vector<SocketRecord>& records);
uint64_t socket_inputs_of(uint64_t records_inputs, const std::vector<HandleRef>& handles, uint64_t scan_version,
                          size_t known_servers, const ProcessSocketMemory& mem);

}  // namespace connleak
