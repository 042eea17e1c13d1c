// One recv() of a NETLINK_SOCK_DIAG dump: lengths and attributes come from
// the kernel, the names in them from the target. parse_unix_diag gets the
// bytes in a heap buffer, as unix_diag_dump's recv buffer is.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.h"
#include "proc_sockets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::vector<char> buf(data, data + size);
    std::vector<connleak::UnixSocket> out;
    const int r = connleak::parse_unix_diag(buf.data(), buf.size(), out);
    FUZZ_CHECK(r == 0 || r == 1 || r < 0);
    // Each message is at least a netlink header and a unix_diag_msg.
    FUZZ_CHECK(out.size() <= size / 32);
    for (const connleak::UnixSocket& s : out)
        (void)s.name.str();
    return 0;
}
