#include "last_user.h"

namespace connleak {

void add_last_user(ConnReport& c, const RawConn& conn, const ConnSocket& sock, uint64_t now_ns,
                   const SharedSiteNamer& name_site, const SiteFrames& site_frames, const UseStacks& use_stacks)
{
    if (sock.last_io_ns)
        c.idle_ms = now_ns > sock.last_io_ns ? (now_ns - sock.last_io_ns) / 1e6 : 0.0;
    RawSite use;
    use.pid = conn.pid;
    uint32_t tid = 0;
    if (sock.use_stack) {  // the kernel walked it: named once its stack was read
        auto it = use_stacks.find({conn.pid, sock.use_stack});
        if (it == use_stacks.end())
            return;
        use.site = it->second;
        tid = sock.use_tid;
    } else {
        if (!conn.last_use_ns || conn.last_use_ns < sock.use_ns)
            return;
        use.site = conn.last_use;
        tid = conn.last_use_tid;
    }
    c.last_used_site = name_site(use);
    if (site_frames)
        c.last_used_frames = site_frames(use);
    c.last_used_tid = tid;
}

}  // namespace connleak
