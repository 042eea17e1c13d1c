// Acquiring stacks (see stack_table.h).
#include "stack_table.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sys/sysmacros.h>

#include "connleak.h"
#include "python_frames.h"

namespace connleak {
namespace {

uint64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

std::string hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

std::string base_name(const std::string& path)
{
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The name without " file.c:42", which skip patterns match.
std::string without_line(const std::string& frame)
{
    size_t paren = frame.rfind(')');
    return paren == std::string::npos ? frame : frame.substr(0, paren + 1);
}

}  // namespace

std::vector<std::string> StackOptions::default_site_skip()
{
    // libpq itself, and C++ wrappers whose frames only forward to it.
    return {R"(\(libpq\.so[^)]*\)$)", R"(\(libpqxx[^)]*\)$)"};
}

StackTable::StackTable(StackOptions opts)
        : opts_(std::move(opts)), unwinder_(UnwinderOptions{opts_.max_frames, opts_.debug_root}),
          symbolizer_(SymbolizerOptions{opts_.debug_root, true})
{
    for (const std::string& re : opts_.site_skip)
        skip_.emplace_back(re);
    python_skip_ = skip_;
    for (const std::string& re : python_site_skip())
        python_skip_.emplace_back(re);
    use_skip_ = skip_;
    use_python_skip_ = python_skip_;
    for (const std::string& re : last_use_skip()) {
        use_skip_.emplace_back(re);
        use_python_skip_.emplace_back(re);
    }
}

size_t StackTable::site_index(const std::vector<std::string>& frames, const std::vector<std::regex>& skip)
{
    for (size_t i = 0; i < frames.size(); i++) {
        const std::string name = without_line(frames[i]);
        bool skipped = false;
        for (const std::regex& re : skip)
            if (std::regex_search(name, re)) {
                skipped = true;
                break;
            }
        if (!skipped)
            return i;
    }
    return 0;  // every frame is glue: the innermost is the best there is
}

bool StackTable::is_runtime_entry(const std::string& name)
{
    const size_t plus = name.find('+');
    return plus != std::string::npos && is_runtime_entry_function(name.substr(0, plus));
}

void StackTable::on_event(const void* data, size_t size)
{
    uint32_t kind = 0;
    if (size < sizeof(kind))
        return;
    std::memcpy(&kind, data, sizeof(kind));
    if ((kind == EVENT_ACQUIRE || kind == EVENT_LAST_USE) && size >= sizeof(acquire_event)) {
        const auto& e = *static_cast<const acquire_event*>(data);
        const size_t stack_len = std::min<size_t>(e.stack_len, size - sizeof(acquire_event));
        if (kind == EVENT_ACQUIRE)
            on_acquire(e, stack_len);
        else
            on_last_use(e, stack_len);
    } else if (kind == EVENT_RELEASE && size >= sizeof(release_event)) {
        on_release(*static_cast<const release_event*>(data));
    } else if (kind == EVENT_STACK && size >= sizeof(stack_event)) {
        on_stack(*static_cast<const stack_event*>(data));
    } else if (kind == EVENT_USE_STACK && size >= sizeof(stack_event)) {
        on_use_stack(*static_cast<const stack_event*>(data));
    } else if (kind == EVENT_ENTERED && size >= sizeof(process_event)) {
        // Its mappings and modules now: its stacks may come after it exited.
        unwinder_.look_at(static_cast<const process_event*>(data)->tgid);
    } else if (kind == EVENT_PY_CODE && size >= sizeof(python_code_event)) {
        python_codes_.add(*static_cast<const python_code_event*>(data));
    }
}

StackTable::FrameId StackTable::frame_id(uint32_t pid, const UnwoundFrame& f)
{
    if (!f.mapping)
        return {"", f.pc};
    const Mapping& m = *f.mapping;
    std::string module_id = unwinder_.build_id(pid, f.pc);
    if (module_id.empty())
        module_id = std::to_string(m.dev_major) + ":" + std::to_string(m.dev_minor) + ":" + std::to_string(m.inode) +
                    ":" + m.path;
    return {module_id, f.file_offset};
}

// "func+0x1c (module) file.c:42", named once per module (build id) and
// offset, whichever process it came from.
std::string StackTable::frame_name(uint32_t pid, const UnwoundFrame& f, const FrameId& id)
{
    if (!f.mapping) {
        NativeFrame unmapped;
        unmapped.address = f.pc;
        return format_frame(unmapped);
    }
    if (auto it = names_.find(id); it != names_.end())
        return it->second;
    const Mapping& m = *f.mapping;
    const NativeFile file{path_in_target_or_here(pid, m), base_name(m.path), makedev(m.dev_major, m.dev_minor),
                          m.inode};
    std::string name = format_frame(symbolizer_.frame(file, f.file_offset, true));
    names_.emplace(id, name);
    return name;
}

// Unwinds an event's copy of the stack, and teaches the kernel its steps
// (so it walks the next ones itself).
UnwindResult StackTable::unwind_copy(const acquire_event& e, size_t stack_len)
{
    UnwindInput in;
    in.pid = e.tgid;
    in.tid = e.tid;
    std::memcpy(in.regs, e.regs, sizeof(in.regs));
    in.stack = e.data;
    in.stack_len = stack_len;
    UnwindResult r = unwinder_.unwind(in);
    learn_from(e.tgid, e.family, r);
    return r;
}

// The stack of a last-use event (stack_table_last_use.cpp): unwound and
// named at once (last uses are never counted per stack id in the kernel),
// Python frames merged in where the interpreter ran them. False when nothing
// is known of the process and the kernel sent no Python frames.
bool StackTable::name_stack(const acquire_event& e, size_t stack_len, NamedStack& out)
{
    const uint64_t t0 = now_ns();
    UnwindResult r = unwind_copy(e, stack_len);
    out.unwind_ns = now_ns() - t0;
    out.complete = r.complete;
    if (!name_frames(e.tgid, r, e.py_generation, e.py, e.py_count, out))
        return false;
    out.site = out.names.empty() ? 0 : site_index(out.names, out.python ? python_skip_ : skip_);
    return true;
}

bool StackTable::name_frames(uint32_t pid, UnwindResult& r, uint32_t py_generation, const python_frame* py,
                             uint32_t py_count, NamedStack& out)
{
    if (r.frames.size() == 1 && !r.frames[0].mapping) {
        if (!py_count)
            return false;
        r.frames.clear();
    }
    out.names.clear();
    out.names.reserve(r.frames.size());
    for (const UnwoundFrame& f : r.frames)
        out.names.push_back(frame_name(pid, f, frame_id(pid, f)));
    out.python = py_count > 0;
    if (out.python)
        out.names = merge_python_frames(out.names, python_frames_of(pid, py_generation, py, py_count));
    return true;
}

// Unwinds at once; naming waits for settle(): the first frames of a module
// can take libdw a long while (file:line), and meanwhile the ring must keep
// being drained, or copies of stacks not learnt yet fill it.
void StackTable::on_acquire(const acquire_event& e, size_t stack_len)
{
    const uint64_t t0 = now_ns();
    UnwindResult r = unwind_copy(e, stack_len);

    StackCounts& c = counts_[e.tgid];
    (r.complete ? c.unwound : c.truncated)++;
    Deferred d;
    d.kind = EVENT_ACQUIRE;
    d.complete = r.complete;
    if (r.frames.size() == 1 && !r.frames[0].mapping) {
        // Nothing known of the process (gone before its maps were read):
        // the kernel's site, named from what the kernel found, says more,
        // unless the kernel sent Python frames (they need no maps).
        if (!e.py_count) {
            c.unwind_ns += now_ns() - t0;
            return;
        }
        d.native = false;
    }
    for (const UnwoundFrame& f : r.frames)
        d.pcs.push_back(f.pc);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&e);
    d.event.assign(bytes, bytes + sizeof(acquire_event));  // without the stack copy
    deferred_.push_back(std::move(d));
    const uint64_t t1 = now_ns();
    c.unwind_ns += t1 - t0;
    if (opts_.keep_costs && cost_us_.size() < 100000)
        cost_us_.push_back({static_cast<uint32_t>((t1 - t0) / 1000), 0});
}

void StackTable::settle()
{
    for (const Deferred& d : deferred_) {
        if (d.kind == EVENT_ACQUIRE)
            name_acquire(*reinterpret_cast<const acquire_event*>(d.event.data()), d);
        else if (d.kind == EVENT_STACK)
            name_stack(*reinterpret_cast<const stack_event*>(d.event.data()));
        else
            apply_release(*reinterpret_cast<const release_event*>(d.event.data()));
    }
    deferred_.clear();
    // A burst of acquisitions (every handle of 1,000 processes at once) is
    // not kept as room for good.
    if (deferred_.capacity() > 4096)
        deferred_.shrink_to_fit();
}

void StackTable::name_acquire(const acquire_event& e, const Deferred& d)
{
    const uint64_t t0 = now_ns();
    StackCounts& c = counts_[e.tgid];
    UnwindResult r;
    if (d.native)
        r = unwinder_.frames_at(e.tgid, d.pcs.data(), d.pcs.size(), d.complete, false);
    const size_t stack = stack_of(e.tgid, e.site, r, e.py, e.py_count, e.py_generation);
    if (e.py_count) {
        c.python++;
        if (e.py_flags & PY_STACK_TRUNCATED)
            c.python_truncated++;
    }
    stacks_[stack].acquired++;
    handles_[{e.tgid, e.conn}] = Handle{e.start_ns, e.acquired_ns, stack};
    const uint64_t spent = now_ns() - t0;
    c.name_ns += spent;
    if (name_costs_ < cost_us_.size())
        cost_us_[name_costs_++].second = static_cast<uint32_t>(spent / 1000);
}

// What the kernel needs to walk this stack itself next time: the step from
// each of its return addresses to the next. Only from stacks unwound to
// the outermost frame, so a stack the kernel walks is the one unwound here.
void StackTable::learn_from(uint32_t pid, uint64_t family, const UnwindResult& r)
{
    if (!opts_.learn || !family || !r.complete)
        return;
    if (learnt_.size() > CONNLEAK_UNWIND_STEPS)  // the kernel's LRU may have let some go: tell again
        learnt_.clear();
    for (const UnwoundFrame& f : r.frames) {
        if (learnt_.count({family, f.pc}))
            continue;
        const FrameStep st = unwinder_.step_at(pid, f.pc);
        if (!st.known)
            continue;
        unwind_key key{};
        key.family = family;
        key.pc = f.pc;
        unwind_step step{};
        step.cfa_offset = st.cfa_offset;
        step.rbp_offset = st.rbp_offset;
        step.flags = (st.outermost ? UNWIND_OUTERMOST : 0) | (st.cfa_rbp ? UNWIND_CFA_RBP : 0);
        opts_.learn(key, step);
        learnt_.insert({family, f.pc});
    }
}

// An event kept as it came, for settle() to take in its order.
void StackTable::defer(uint32_t kind, const void* event, size_t size)
{
    Deferred d;
    d.kind = kind;
    const auto* bytes = static_cast<const uint8_t*>(event);
    d.event.assign(bytes, bytes + size);
    deferred_.push_back(std::move(d));
}

void StackTable::on_stack(const stack_event& e)
{
    defer(EVENT_STACK, &e, sizeof(e));
}

void StackTable::name_stack(const stack_event& e)
{
    if (kernel_stacks_.count({e.tgid, e.stack}))
        return;  // sent again after a lost event? the first one named it
    const uint64_t t0 = now_ns();
    StackCounts& c = counts_[e.tgid];
    UnwindResult r = unwinder_.frames_at(e.tgid, reinterpret_cast<const uint64_t*>(e.pcs),
                                         std::min<uint32_t>(e.pc_count, CONNLEAK_STACK_FRAMES), true, true);
    if (r.frames.size() == 1 && !r.frames[0].mapping && !e.py_count)
        r.frames.clear();
    KernelStack ks;
    ks.stack = stack_of(e.tgid, e.site, r, e.py, e.py_count, e.py_generation);
    ks.python = e.py_count > 0;
    ks.python_truncated = ks.python && (e.py_flags & PY_STACK_TRUNCATED);
    kernel_stacks_[{e.tgid, e.stack}] = ks;
    c.name_ns += now_ns() - t0;
}

size_t StackTable::stack_of(uint32_t pid, uint64_t kernel_site, UnwindResult& r, const python_frame* py,
                            uint32_t py_count, uint32_t py_generation)
{
    std::vector<FrameId> ids;
    ids.reserve(r.frames.size());
    for (const UnwoundFrame& f : r.frames)
        ids.push_back(frame_id(pid, f));
    // Names (cached per module and offset), Python frames merged in where
    // the interpreter ran them; rows are stacks named alike from the site out.
    std::vector<std::string> names;
    names.reserve(r.frames.size());
    for (size_t i = 0; i < r.frames.size(); i++)
        names.push_back(frame_name(pid, r.frames[i], ids[i]));
    const bool python = py_count > 0;
    if (python) {
        names = merge_python_frames(names, python_frames_of(pid, py_generation, py, py_count));
    }
    const size_t site = names.empty() ? 0 : site_index(names, python ? python_skip_ : skip_);
    auto key = std::make_tuple(pid, kernel_site,
                               std::vector<std::string>(names.begin() + static_cast<long>(site), names.end()));
    auto it = by_frames_.find(key);
    if (it == by_frames_.end()) {
        Stack s;
        s.pid = pid;
        s.kernel_site = kernel_site;
        s.site = names.empty() ? hex(kernel_site) : names[site];
        s.frames = std::make_shared<const std::vector<std::string>>(std::move(names));
        stacks_.push_back(std::move(s));
        site_frame_.push_back(site);
        it = by_frames_.emplace(std::move(key), stacks_.size() - 1).first;
        by_kernel_site_[{pid, kernel_site}].push_back(it->second);
        by_pid_[pid].push_back(it->second);
        relabel(pid);
    }
    return it->second;
}

std::vector<NamedPythonFrame> StackTable::python_frames_of(uint32_t pid, uint32_t generation, const python_frame* py,
                                                           uint32_t count) const
{
    std::vector<NamedPythonFrame> out;
    const uint32_t n = std::min<uint32_t>(count, CONNLEAK_PY_FRAMES);
    for (uint32_t i = 0; i < n; i++) {
        const python_frame& f = py[i];
        std::string name = python_codes_.frame_name(pid, generation, f.code, f.instr);
        if (name.empty())  // its description was dropped (ring buffer full)
            name = "<code " + hex(f.code) + "> (python)";
        out.push_back({std::move(name), (f.flags & PY_FRAME_ENTRY) != 0});
    }
    return out;
}

// Two stacks of a process reaching the same site frame get labels that say
// where they part, so no two rows of a process read alike.
void StackTable::relabel(uint32_t pid)
{
    const std::vector<size_t>& mine = by_pid_[pid];
    std::vector<LabelInput> in;
    in.reserve(mine.size());
    for (size_t i : mine)
        in.push_back({stacks_[i].frames.get(), site_frame_[i]});
    std::vector<std::string> labels = site_labels(in);
    for (size_t k = 0; k < mine.size(); k++)
        if (!stacks_[mine[k]].frames->empty())
            stacks_[mine[k]].site = labels[k];
}

void StackTable::on_release(const release_event& e)
{
    defer(EVENT_RELEASE, &e, sizeof(e));
}

void StackTable::apply_release(const release_event& e)
{
    // The handle is finished: its last user goes with it (a new handle at
    // the same address starts afresh).
    if (auto lu = last_uses_.find({e.tgid, e.conn});
        lu != last_uses_.end() && (!lu->second.start_ns || lu->second.start_ns == e.start_ns))
        last_uses_.erase(lu);
    if (e.stack) {  // counted in the kernel: only its hold time is news
        remember_hold({e.tgid, e.conn, e.acquired_ns}, e.hold_ns);
        return;
    }
    auto it = handles_.find({e.tgid, e.conn});
    if (it == handles_.end() || it->second.start_ns != e.start_ns)
        return;  // its acquire event was dropped: the kernel site keeps it
    Stack& s = stacks_[it->second.stack];
    s.released++;
    s.hold_ns_total += e.hold_ns;
    s.hold_ns_max = std::max<uint64_t>(s.hold_ns_max, e.hold_ns);
    remember_hold({e.tgid, e.conn, it->second.acquired_ns}, e.hold_ns);
    handles_.erase(it);
}

void StackTable::remember_hold(const HandleId& id, uint64_t hold_ns)
{
    holds_[id] = hold_ns;
    hold_order_.push_back(id);
    if (hold_order_.size() > 4096) {
        holds_.erase(hold_order_.front());
        hold_order_.pop_front();
    }
}

void StackTable::refine(RawState& raw)
{
    settle();  // before any process's unwinding state is let go
    for (uint32_t pid : forget_next_) {
        unwinder_.forget(pid);
        python_codes_.forget(pid);
        forget_last_uses(pid);
    }
    forget_next_ = std::move(exited_);
    exited_.clear();
    split(raw);
}

void StackTable::split(RawState& raw) const
{
    // Each stack's counts: its events', plus the kernel's of the stack ids
    // that are it.
    struct Totals {
        uint64_t acquired = 0, released = 0, hold_ns_total = 0, hold_ns_max = 0;
    };
    std::map<size_t, Totals> kernel;
    std::map<uint32_t, StackCounts> kernel_counts;  // per process: acquisitions on kernel-walked stacks
    for (const RawStack& ks : raw.stacks) {
        auto it = kernel_stacks_.find({ks.pid, ks.stack});
        if (it == kernel_stacks_.end())
            continue;  // its event not read yet (or lost): its counts stay on the kernel's site
        Totals& t = kernel[it->second.stack];
        t.acquired += ks.stats.acquired;
        t.released += ks.stats.released;
        t.hold_ns_total += ks.stats.hold_ns_total;
        t.hold_ns_max = std::max<uint64_t>(t.hold_ns_max, ks.stats.hold_ns_max);
        StackCounts& c = kernel_counts[ks.pid];
        c.unwound += ks.stats.acquired;
        if (it->second.python)
            c.python += ks.stats.acquired;
        if (it->second.python_truncated)
            c.python_truncated += ks.stats.acquired;
    }
    std::vector<RawSite> sites;
    for (const RawSite& ks : raw.sites) {
        RawSite rest = ks;
        auto it = ks.site.kind == SiteKey::Kind::caller ? by_kernel_site_.find({ks.pid, ks.site.value})
                                                        : by_kernel_site_.end();
        if (it != by_kernel_site_.end()) {
            for (size_t i : it->second) {
                const Stack& s = stacks_[i];
                Totals t;
                if (auto k = kernel.find(i); k != kernel.end())
                    t = k->second;
                t.acquired += s.acquired;
                t.released += s.released;
                t.hold_ns_total += s.hold_ns_total;
                t.hold_ns_max = std::max<uint64_t>(t.hold_ns_max, s.hold_ns_max);
                if (!t.acquired && !t.released)
                    continue;  // known by its frames, not counted yet
                RawSite out = ks;
                out.site = SiteKey::stack(i);
                out.stats.acquired = t.acquired;
                out.stats.released = t.released;
                out.stats.hold_ns_total = t.hold_ns_total;
                out.stats.hold_ns_max = t.hold_ns_max;
                sites.push_back(out);
                auto take = [](uint64_t& from, uint64_t n) { from = from > n ? from - n : 0; };
                take(rest.stats.acquired, t.acquired);
                take(rest.stats.released, t.released);
                take(rest.stats.hold_ns_total, t.hold_ns_total);
            }
            // What the kernel's stacks and the events do not explain stays
            // on the kernel's site. (Its longest hold is not known apart:
            // the kernel's bounds it.)
            if (!rest.stats.released)
                rest.stats.hold_ns_max = 0;
            if (!rest.stats.acquired && !rest.stats.released)
                continue;
        }
        sites.push_back(rest);
    }
    raw.sites = std::move(sites);

    // A process's handles mostly come from one stack, in a run (the maps
    // are read by pid): its lookup is reused for the run (a tree lookup per
    // handle, 100,000 at scale, before).
    std::pair<uint32_t, uint64_t> last_key{0, 0};
    const KernelStack* last = nullptr;
    for (RawConn& c : raw.conns) {
        if (c.info.stack) {
            const std::pair<uint32_t, uint64_t> key{c.pid, c.info.stack};
            if (key != last_key || !last) {
                auto it = kernel_stacks_.find(key);
                last_key = key;
                last = it != kernel_stacks_.end() ? &it->second : nullptr;
            }
            if (last)
                c.site = SiteKey::stack(last->stack);
            continue;
        }
        auto it = handles_.find({c.pid, c.conn});
        if (it != handles_.end() && it->second.start_ns == c.info.start_ns)
            c.site = SiteKey::stack(it->second.stack);
    }
    set_last_uses(raw);
    for (RawProcess& p : raw.processes) {
        StackCounts c;
        if (auto it = counts_.find(p.pid); it != counts_.end())
            c = it->second;
        if (auto it = kernel_counts.find(p.pid); it != kernel_counts.end()) {
            c.unwound += it->second.unwound;
            c.python += it->second.python;
            c.python_truncated += it->second.python_truncated;
        }
        p.stacks_unwound = c.unwound;
        p.stacks_truncated = c.truncated;
        p.python_stacks = c.python;
        p.python_truncated = c.python_truncated;
    }
}

std::string StackTable::site_name(const SiteKey& key) const
{
    if (key.kind == SiteKey::Kind::last_use)
        return key.value < uses_.size() ? uses_[key.value].site : hex(key.value);
    const bool known = key.kind == SiteKey::Kind::stack && key.value < stacks_.size();
    return known ? stacks_[key.value].site : hex(key.value);
}

std::shared_ptr<const std::vector<std::string>> StackTable::frames(const SiteKey& key) const
{
    if (key.kind == SiteKey::Kind::last_use)
        return key.value < uses_.size() ? uses_[key.value].frames : nullptr;
    const bool known = key.kind == SiteKey::Kind::stack && key.value < stacks_.size();
    return known ? stacks_[key.value].frames : nullptr;
}

std::optional<double> StackTable::hold_ms(uint32_t pid, uint64_t conn, uint64_t acquired_ns) const
{
    auto it = holds_.find({pid, conn, acquired_ns});
    if (it == holds_.end())
        return std::nullopt;
    return it->second / 1e6;
}

std::string StackTable::cost_summary() const
{
    StackCounts c = total_counts();
    uint64_t n = c.unwound + c.truncated;
    char buf[512];
    int len = std::snprintf(buf, sizeof buf,
                            "connleak: stacks: %" PRIu64 " unwound, %" PRIu64 " truncated, %zu distinct, %zu kernel"
                            " ids; per stack %.1f us unwinding, %.1f us naming\n",
                            c.unwound, c.truncated, stacks_.size(), kernel_stacks_.size(),
                            n ? c.unwind_ns / 1e3 / n : 0.0,
                            n ? c.name_ns / 1e3 / n : 0.0);
    std::string out(buf, static_cast<size_t>(len));
    std::vector<uint32_t> unwind, name;
    for (auto [u, nm] : cost_us_) {
        unwind.push_back(u);
        name.push_back(nm);
    }
    std::sort(unwind.begin(), unwind.end());
    std::sort(name.begin(), name.end());
    if (!unwind.empty()) {
        len =
            std::snprintf(buf, sizeof buf, "connleak: stacks: median %u us unwinding (max %u), %u us naming (max %u)\n",
                          unwind[unwind.size() / 2], unwind.back(), name[name.size() / 2], name.back());
        out.append(buf, static_cast<size_t>(len));
    }
    return out + last_use_summary();
}

void StackTable::process_exited(uint32_t pid)
{
    exited_.push_back(pid);
}

StackCounts StackTable::counts(uint32_t pid) const
{
    auto it = counts_.find(pid);
    return it == counts_.end() ? StackCounts{} : it->second;
}

StackCounts StackTable::total_counts() const
{
    StackCounts t;
    for (const auto& [pid, c] : counts_) {
        t.unwound += c.unwound;
        t.truncated += c.truncated;
        t.unwind_ns += c.unwind_ns;
        t.name_ns += c.name_ns;
        t.python += c.python;
        t.python_truncated += c.python_truncated;
    }
    return t;
}

}  // namespace connleak
