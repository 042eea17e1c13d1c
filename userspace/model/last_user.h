// A live handle's traffic, the rule: its idle time, and its last user (the
// stack of the send that began its current or latest unit of work). Pure.
#pragma once

#include <cstdint>
#include <functional>

#include "model.h"
#include "socket_model.h"

namespace connleak {

// Fills c.idle_ms and c.last_used_* from what the socket hooks recorded on
// the handle's socket (sock) and the last user's stack seen for it: the
// kernel's id of it on the socket (sock.use_stack, named by use_stacks), or,
// for a stack the kernel could not walk yet, the copy read for it (conn).
// The last user is named only when its stack is the socket's latest use:
// a newer use whose stack was dropped (ring buffer full) or not read yet
// leaves it unknown rather than naming an earlier borrower.
// name_site: the last user's label, shared by the rows it names.
using SharedSiteNamer = std::function<SharedText(const RawSite& site)>;
void add_last_user(ConnReport& c, const RawConn& conn, const ConnSocket& sock, uint64_t now_ns,
                   const SharedSiteNamer& name_site, const SiteFrames& site_frames,
                   const UseStacks& use_stacks = UseStacks{});

}  // namespace connleak
