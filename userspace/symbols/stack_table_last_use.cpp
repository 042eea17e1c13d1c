// Last users of handles (see stack_table.h): stacks of the sends that began
// a unit of work on a libpq socket (bpf/sock_io.bpf.h, EVENT_LAST_USE).
#include <cinttypes>
#include <cstdio>

#include "connleak.h"
#include "python_frames.h"
#include "stack_table.h"

namespace connleak {

// A last user's stack starts in the system call: the C library's send, TLS
// and libpq's internal functions (named "libpq.so.5+0x1c180": no symbol)
// under libpq's API are never its site.
std::vector<std::string> StackTable::last_use_skip()
{
    return {R"(\((libc|libssl|libcrypto)\.so[^)]*\)$)", R"(^(libpq|libc|libssl|libcrypto)\.so[^ ]*\+0x[0-9a-f]+$)"};
}

void StackTable::on_last_use(const acquire_event& e, size_t stack_len)
{
    NamedStack n;
    if (!name_stack(e, stack_len, n) || n.names.empty())
        return;  // nothing known of the process: no last user rather than a wrong one
    n.site = site_index(n.names, n.python ? use_python_skip_ : use_skip_);
    // Stacks named alike from the site out are one last user.
    std::vector<std::string> from_site(n.names.begin() + static_cast<long>(n.site), n.names.end());
    auto it = uses_by_frames_.find({e.tgid, from_site});
    if (it == uses_by_frames_.end()) {
        UseStack u;
        u.pid = e.tgid;
        u.site = n.names[n.site];
        u.site_frame = n.site;
        u.frames = std::make_shared<const std::vector<std::string>>(std::move(n.names));
        uses_.push_back(std::move(u));
        it = uses_by_frames_.emplace(std::make_pair(e.tgid, std::move(from_site)), uses_.size() - 1).first;
        uses_by_pid_[e.tgid].push_back(it->second);
        relabel_uses(e.tgid);
    }
    LastUse& lu = last_uses_[{e.tgid, e.conn}];
    if (e.acquired_ns >= lu.use_ns)  // events of one socket come in order; a reset's new socket too
        lu = LastUse{e.start_ns, e.acquired_ns, e.tid, it->second};
}

// Labels that keep a process's last users apart, as for acquiring sites.
void StackTable::relabel_uses(uint32_t pid)
{
    const std::vector<size_t>& mine = uses_by_pid_[pid];
    std::vector<LabelInput> in;
    in.reserve(mine.size());
    for (size_t i : mine)
        in.push_back({uses_[i].frames.get(), uses_[i].site_frame});
    std::vector<std::string> labels = site_labels(in);
    for (size_t k = 0; k < mine.size(); k++)
        uses_[mine[k]].site = labels[k];
}

void StackTable::set_last_uses(RawState& raw) const
{
    for (RawConn& c : raw.conns) {
        auto it = last_uses_.find({c.pid, c.conn});
        // A use whose acquisition was seen must be this acquisition's.
        if (it == last_uses_.end() || (it->second.start_ns && it->second.start_ns != c.info.start_ns))
            continue;
        c.last_use = SiteKey::last_use(it->second.stack);
        c.last_use_ns = it->second.use_ns;
        c.last_use_tid = it->second.tid;
    }
}

void StackTable::forget_last_uses(uint32_t pid)
{
    for (auto it = last_uses_.lower_bound({pid, 0}); it != last_uses_.end() && it->first.first == pid;)
        it = last_uses_.erase(it);
}

}  // namespace connleak
