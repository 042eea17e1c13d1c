// Sockets in the text report (see socket_text.h).
#include "socket_text.h"

#include <cstdio>
#include <map>

namespace connleak {

namespace {

std::string peer_list(const std::map<std::string, uint64_t>& peers)
{
    std::string out;
    for (const auto& [peer, n] : peers)
        out += (out.empty() ? "" : ", ") + (peer.empty() ? std::string("?") : peer) + " x" + std::to_string(n);
    return out;
}

}  // namespace

std::string socket_text(const ProcessSocketReport& r, bool exited)
{
    if (!r.tracked)
        return "";
    std::string out;
    if (exited) {
        out = "  db sockets 0 (" + std::to_string(r.closed_at_exit) + " closed at exit)";
    } else {
        char disc[32];
        std::snprintf(disc, sizeof(disc), "%+lld", static_cast<long long>(r.tracking_discrepancy));
        out = "  db sockets " + std::to_string(r.db_sockets) + "  discrepancy " + disc + "  (paired " +
              std::to_string(r.paired);
        if (r.pre_attach)
            out += ", pre-attach " + std::to_string(r.pre_attach) + ": " + peer_list(r.pre_attach_peers);
        if (r.untracked)
            out += ", untracked " + std::to_string(r.untracked) + ": " + peer_list(r.untracked_peers);
        if (r.connecting)
            out += ", connecting " + std::to_string(r.connecting);
        out += ")";
    }
    if (r.dropped)
        out += "  SOCKETS DROPPED " + std::to_string(r.dropped) + " (map full)";
    out += "\n";
    if (!exited && r.handles_without_socket) {
        out += "  handles without an open socket:";
        for (const auto& [conn, s] : r.conns)
            if (s.state != "open") {
                char addr[32];
                std::snprintf(addr, sizeof(addr), "0x%llx", static_cast<unsigned long long>(conn));
                out +=
                    std::string(" ") + addr + " (" + s.state.str() + (s.peer.empty() ? "" : " " + s.peer.str()) + ")";
            }
        out += "\n";
    }
    return out;
}

}  // namespace connleak
