// Last users of handles (see stack_table.h): stacks of the sends that began
// a unit of work on a libpq socket (bpf/sock_io.bpf.h, EVENT_LAST_USE).
#include <algorithm>
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

// Stacks named alike from the site out are one last user.
size_t StackTable::use_of(uint32_t pid, NamedStack& n)
{
    n.site = site_index(n.names, n.python ? use_python_skip_ : use_skip_);
    std::vector<std::string> from_site(n.names.begin() + static_cast<long>(n.site), n.names.end());
    auto it = uses_by_frames_.find({pid, from_site});
    if (it == uses_by_frames_.end()) {
        UseStack u;
        u.pid = pid;
        u.site = n.names[n.site];
        u.site_frame = n.site;
        u.frames = std::make_shared<const std::vector<std::string>>(std::move(n.names));
        uses_.push_back(std::move(u));
        it = uses_by_frames_.emplace(std::make_pair(pid, std::move(from_site)), uses_.size() - 1).first;
        uses_by_pid_[pid].push_back(it->second);
        relabel_uses(pid);
    }
    return it->second;
}

// A copy: a stack the kernel could not walk yet (it teaches it), one per use.
void StackTable::on_last_use(const acquire_event& e, size_t stack_len)
{
    last_use_copies_++;
    NamedStack n;
    if (!name_stack(e, stack_len, n) || n.names.empty())
        return;  // nothing known of the process: no last user rather than a wrong one
    const size_t use = use_of(e.tgid, n);
    LastUse& lu = last_uses_[{e.tgid, e.conn}];
    if (e.acquired_ns >= lu.use_ns)  // events of one socket come in order; a reset's new socket too
        lu = LastUse{e.start_ns, e.acquired_ns, e.tid, use};
}

// A stack the kernel walked, sent once per (process, stack id): the uses
// themselves are its id on their socket (ConnSocket::use_stack).
void StackTable::on_use_stack(const stack_event& e)
{
    if (use_kernel_stacks_.count({e.tgid, e.stack}))
        return;  // sent again after a lost event? the first one named it
    use_stacks_read_++;
    UnwindResult r = unwinder_.frames_at(e.tgid, reinterpret_cast<const uint64_t*>(e.pcs),
                                         std::min<uint32_t>(e.pc_count, CONNLEAK_STACK_FRAMES), true, true);
    NamedStack n;
    // Nothing known of the process: no last user rather than a wrong one.
    if (!name_frames(e.tgid, r, e.py_generation, e.py, e.py_count, n) || n.names.empty())
        return;
    use_kernel_stacks_[{e.tgid, e.stack}] = use_of(e.tgid, n);
}

std::string StackTable::last_use_summary() const
{
    char buf[160];
    const int len = std::snprintf(buf, sizeof buf,
                                  "connleak: last users: %" PRIu64 " copies, %" PRIu64 " stacks walked in the kernel\n",
                                  last_use_copies_, use_stacks_read_);
    return std::string(buf, static_cast<size_t>(len));
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
    raw.use_stacks.clear();
    for (const auto& [key, use] : use_kernel_stacks_)
        raw.use_stacks.emplace_hint(raw.use_stacks.end(), key, SiteKey::last_use(use));
}

void StackTable::forget_last_uses(uint32_t pid)
{
    for (auto it = last_uses_.lower_bound({pid, 0}); it != last_uses_.end() && it->first.first == pid;)
        it = last_uses_.erase(it);
    for (auto it = use_kernel_stacks_.lower_bound({pid, 0}); it != use_kernel_stacks_.end() && it->first.first == pid;)
        it = use_kernel_stacks_.erase(it);
}

}  // namespace connleak
