#include "last_users.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace connleak {
namespace {

bool worse_user(const LastUserReport& a, const LastUserReport& b)
{
    auto rank = [](const LastUserReport& u) { return std::make_tuple(u.leaks, u.checked_out, u.connections); };
    if (rank(a) != rank(b))
        return rank(a) > rank(b);
    if (a.site.empty() != b.site.empty())
        return b.site.empty();
    return a.site < b.site;
}

void add_into(LastUserReport& into, const LastUserReport& u)
{
    if (!into.frames)
        into.frames = u.frames;
    into.connections += u.connections;
    into.pooled += u.pooled;
    into.checked_out += u.checked_out;
    into.leaks += u.leaks;
}

std::vector<LastUserReport> sorted(std::map<std::string, LastUserReport>& by_label)
{
    std::vector<LastUserReport> out;
    out.reserve(by_label.size());
    for (auto& [label, u] : by_label)
        out.push_back(std::move(u));
    std::sort(out.begin(), out.end(), worse_user);
    return out;
}

}  // namespace

bool checked_out(const ConnReport& c)
{
    if (!c.pooled || !c.state_known)
        return false;
    return c.state == ConnState::in_transaction || c.state == ConnState::in_error || c.state == ConnState::busy;
}

std::vector<LastUserReport> tally_last_users(const std::vector<ConnReport>& conns)
{
    std::map<std::string, LastUserReport> by_label;
    for (const ConnReport& c : conns) {
        if (c.pre_attach)  // known from the server only: nobody's use was seen
            continue;
        auto [it, fresh] = by_label.try_emplace(c.last_used_site);
        LastUserReport& u = it->second;
        if (fresh) {  // stacks labelled alike are one last user, named by the first
            u.site = c.last_used_site;
            u.frames = c.last_used_frames;
        }
        u.connections++;
        u.pooled += c.pooled;
        u.checked_out += checked_out(c);
        u.leaks += c.leak;
    }
    return sorted(by_label);
}

void bound_last_users(Snapshot& snap, size_t top)
{
    std::map<std::string, LastUserReport> totals;
    for (ProcessReport& p : snap.processes) {
        for (const LastUserReport& u : p.last_users) {
            LastUserReport& t = totals[u.site];
            t.site = u.site;
            add_into(t, u);
        }
        p.last_users_total = p.last_users.size();
        if (p.last_users.size() > top)
            p.last_users.resize(top);
    }
    snap.last_users = sorted(totals);
    snap.last_users_total = snap.last_users.size();
    if (snap.last_users.size() > top)
        snap.last_users.resize(top);
}

}  // namespace connleak
