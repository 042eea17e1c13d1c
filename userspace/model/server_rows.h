// Server truth in the snapshot (--server): each listed connection gets the
// server's view of it, and the connections a traced process held before
// the attach are listed from the server ("conn": null, "pre_attach": true)
// and judged by the leak rules.
#pragma once

#include "model.h"
#include "server_join.h"

namespace connleak {

// Joins in.servers with snap's connections (by the socket each handle's
// report names, raw sockets of in.held), appends the pre-attach ones
// (sockets of in.pre_attach that some server lists, held by no live
// handle), and counts the leaks among them:
// - a pre-attach connection is not known to be pooled: a leak once its
//   backend is leak_after_s old (0: every one);
// - whatever its age, one idle in a transaction for leak_after_s or longer.
// Sets snap.servers.
void join_server_view(Snapshot& snap, const ServerJoinInput& in);

}  // namespace connleak
