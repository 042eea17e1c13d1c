#include "socket_inputs.h"
#include "digest_mix.h"

namespace connleak {

uint64_t socket_records_inputs(const std::vector<SocketRecord>& records)
{
    uint64_t h = digest_mix(records.size(), 0);
    // A record's peer and local address are fixed at its connect and its
    // handshake: connect_ns and established_ns stand for them.
    for (const SocketRecord& r : records)
        for (uint64_t v : {r.sk, r.inode, r.conn, r.connect_ns, r.established_ns, r.peer_closed_ns, r.closed_ns,
                           static_cast<uint64_t>(r.tcp()), r.last_io_ns, static_cast<uint64_t>(r.traffic), r.use_ns,
                           static_cast<uint64_t>(r.use_tid), r.use_stack})
            h = digest_mix(h, v);
    return h;
}

uint64_t socket_inputs_of(uint64_t records_inputs, const std::vector<HandleRef>& handles, uint64_t scan_version,
                          size_t known_servers, const ProcessSocketMemory& mem)
{
    uint64_t h = digest_mix(records_inputs, handles.size());
    for (const HandleRef& c : handles)
        for (uint64_t v : {c.conn, static_cast<uint64_t>(c.tid), c.start_ns})
            h = digest_mix(h, v);
    for (uint64_t v : {scan_version, static_cast<uint64_t>(known_servers), static_cast<uint64_t>(mem.learned.size()),
                       static_cast<uint64_t>(mem.pre_attach.size())})
        h = digest_mix(h, v);
    return h;
}

uint64_t socket_inputs_digest(const std::vector<SocketRecord>& records, const std::vector<HandleRef>& handles,
                              uint64_t scan_version, size_t known_servers, const ProcessSocketMemory& mem)
{
    return socket_inputs_of(socket_records_inputs(records), handles, scan_version, known_servers, mem);
}

}  // namespace connleak
