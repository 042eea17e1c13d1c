#include "last_user.h"

namespace connleak {

void add_last_user(ConnReport& c, const RawConn& conn, const ConnSocket& sock, uint64_t now_ns,
                   const SharedSiteNamer& name_site, const SiteFrames& site_frames)
{
    if (sock.last_io_ns)
        c.idle_ms = now_ns > sock.last_io_ns ? (now_ns - sock.last_io_ns) / 1e6 : 0.0;
    if (!conn.last_use_ns || conn.last_use_ns < sock.use_ns)
        return;
    RawSite use;
    use.pid = conn.pid;
    use.site = conn.last_use;
    c.last_used_site = name_site(use);
    if (site_frames)
        c.last_used_frames = site_frames(use);
    c.last_used_tid = conn.last_use_tid;
}

}  // namespace connleak
