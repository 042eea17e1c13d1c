// /proc/PID/net/{tcp,tcp6,unix} and /proc/PID/fd links, read from the
// target's network namespace: Unix socket paths are names the target chose.
// The same text goes through every parser, then the join of their results.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>

#include "fuzz_check.h"
#include "proc_sockets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<connleak::InetSocket> tcp = connleak::parse_proc_net_tcp(text, false);
    for (const connleak::InetSocket& s : connleak::parse_proc_net_tcp(text, true))
        tcp.push_back(s);
    const std::vector<connleak::UnixSocket> unix_sockets = connleak::parse_proc_net_unix(text);
    for (const connleak::UnixSocket& s : unix_sockets)
        FUZZ_CHECK(s.name.path().find('\n') == std::string::npos);

    // Every inode seen, and whatever the text says as an fd link.
    std::set<uint64_t> inodes;
    for (const connleak::InetSocket& s : tcp)
        inodes.insert(s.inode);
    for (const connleak::UnixSocket& s : unix_sockets)
        inodes.insert(s.inode);
    if (uint64_t ino = connleak::socket_inode_of_link(text))
        inodes.insert(ino);
    const std::vector<connleak::HeldSocket> held = connleak::held_sockets(inodes, tcp, unix_sockets);
    FUZZ_CHECK(held.size() <= inodes.size());
    for (const connleak::HeldSocket& h : held) {
        FUZZ_CHECK(inodes.count(h.inode) == 1);
        (void)h.peer.str();
    }
    return 0;
}
