// libdwfl unwinding of copied stacks (see unwinder.h).
#include "unwinder.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <set>
#include <tuple>

namespace connleak {

// One libdwfl session: the modules of a set of file mappings at their
// load addresses. Processes whose file mappings are identical (workers
// forked from one parent, before they load anything else) share one, so a
// pre-fork server with 32 workers opens its libraries and parses their CFI
// once, not 32 times.
struct Unwinder::Session {
    Dwfl_Callbacks callbacks{};
    std::string debuginfo_path;
    char* debuginfo_path_ptr = nullptr;
    Dwfl* dwfl = nullptr;
    bool attached = false;
    const UnwindInput* in = nullptr;  // the stack being unwound
    bool read_failed = false;         // a read fell outside the copy

    ~Session()
    {
        if (dwfl)
            dwfl_end(dwfl);
    }
};

struct Unwinder::FileMaps {
    std::vector<Mapping> maps;  // the file mappings, as last read
    std::string files;          // their file_signature, to notice a change
};

struct Unwinder::Process {
    std::shared_ptr<const FileMaps> maps;
    std::shared_ptr<Session> session;
};

namespace {

std::string dwfl_error()
{
    return dwfl_errmsg(-1) ? dwfl_errmsg(-1) : "unknown libdwfl error";
}

// Modules are reported under the path that opens them from here
// (/proc/PID/root/..., /proc/PID/map_files/... for deleted files).
int find_elf(Dwfl_Module*, void**, const char* modname, Dwarf_Addr, char** file_name, Elf** elfp)
{
    *elfp = nullptr;
    int fd = ::open(modname, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        *file_name = ::strdup(modname);
    return fd;
}

pid_t next_thread(Dwfl*, void* arg, void** thread_argp)
{
    if (*thread_argp)
        return 0;
    *thread_argp = arg;
    return static_cast<pid_t>(static_cast<Unwinder::Session*>(arg)->in->tid);
}

bool get_thread(Dwfl*, pid_t, void* arg, void** thread_argp)
{
    *thread_argp = arg;
    return true;
}

// Only the copied stack is memory: anything else stops the unwinding.
bool memory_read(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* arg)
{
    auto* p = static_cast<Unwinder::Session*>(arg);
    const UnwindInput& in = *p->in;
    const uint64_t sp = in.regs[7];
    if (addr < sp || addr - sp > in.stack_len || in.stack_len - (addr - sp) < sizeof(Dwarf_Word)) {
        p->read_failed = true;
        return false;
    }
    std::memcpy(result, in.stack + (addr - sp), sizeof(Dwarf_Word));
    return true;
}

bool set_initial_registers(Dwfl_Thread* thread, void* arg)
{
    const UnwindInput& in = *static_cast<Unwinder::Session*>(arg)->in;
    Dwarf_Word regs[kUnwindRegs];
    for (size_t i = 0; i < kUnwindRegs; i++)
        regs[i] = in.regs[i];
    if (!dwfl_thread_state_registers(thread, 0, kUnwindRegs, regs))
        return false;
    dwfl_thread_state_register_pc(thread, in.regs[16]);
    return true;
}

const Dwfl_Thread_Callbacks kThreadCallbacks = {
    next_thread, get_thread, memory_read, set_initial_registers, nullptr, nullptr,
};

bool is_file(const Mapping& m)
{
    return m.inode != 0 && !m.path.empty() && m.path[0] == '/';
}

std::string file_signature(const std::vector<Mapping>& maps)
{
    std::string s;
    char buf[96];
    for (const Mapping& m : maps)
        if (is_file(m)) {
            std::snprintf(buf, sizeof buf, "%llx-%llx %llx %x:%x %llu ", (unsigned long long)m.start,
                          (unsigned long long)m.end, (unsigned long long)m.offset, m.dev_major, m.dev_minor,
                          (unsigned long long)m.inode);
            s += buf;
            s += m.path;
        }
    return s;
}

// file_signature with each mapping's permissions and deleted mark: what
// makes two processes' kept mappings the same.
std::string mapping_key(const std::string& files, const std::vector<Mapping>& maps)
{
    std::string key = files;
    for (const Mapping& m : maps) {
        key += ' ';
        key += m.perms;
        key += m.deleted ? 'd' : '-';
    }
    return key;
}

struct UnwindState {
    std::vector<uint64_t> pcs;
    size_t max = 0;
};

int on_frame(Dwfl_Frame* state, void* arg)
{
    auto* st = static_cast<UnwindState*>(arg);
    Dwarf_Addr pc = 0;
    bool activation = false;
    if (!dwfl_frame_pc(state, &pc, &activation))
        return DWARF_CB_ABORT;
    st->pcs.push_back(pc);
    return st->pcs.size() >= st->max ? DWARF_CB_ABORT : DWARF_CB_OK;
}

}  // namespace

Unwinder::Unwinder(UnwinderOptions opts) : opts_(std::move(opts)) {}
Unwinder::~Unwinder() = default;

const std::vector<Mapping>* Unwinder::maps(uint32_t pid) const
{
    auto it = procs_.find(pid);
    return it == procs_.end() ? nullptr : &it->second->maps->maps;
}

size_t Unwinder::session_count() const
{
    size_t n = 0;
    for (const auto& [files, s] : sessions_)
        n += !s.expired();
    return n;
}

void Unwinder::forget(uint32_t pid)
{
    auto it = procs_.find(pid);
    if (it == procs_.end())
        return;
    const std::string files = it->second->maps->files;
    procs_.erase(it);
    drop_if_unused(files);
}

// The one copy of these file mappings (read from one of the processes
// that map them alike), made if new.
std::shared_ptr<const Unwinder::FileMaps> Unwinder::shared_maps(std::vector<Mapping>&& all)
{
    std::vector<Mapping> files_only;
    for (Mapping& m : all)
        if (is_file(m))
            files_only.push_back(std::move(m));
    std::string files = file_signature(files_only);
    std::weak_ptr<const FileMaps>& slot = file_maps_[mapping_key(files, files_only)];
    std::shared_ptr<const FileMaps> kept = slot.lock();
    if (!kept) {
        auto made = std::make_shared<FileMaps>();
        made->maps = std::move(files_only);
        made->maps.shrink_to_fit();
        made->files = std::move(files);
        kept = made;
        slot = kept;
    }
    return kept;
}

// The process's libdwfl session; with `refresh`, made again if its file
// mappings changed. A process that is gone keeps the session it had: its
// modules were opened when it was made.
Unwinder::Process* Unwinder::process(uint32_t pid, bool refresh)
{
    auto it = procs_.find(pid);
    if (it != procs_.end() && !refresh)
        return it->second.get();
    auto maps = read_maps(pid);
    // A process that exited reads as no maps at all (zombie) or none.
    if (!maps || maps->empty())
        return it == procs_.end() ? nullptr : it->second.get();
    std::shared_ptr<const FileMaps> kept = shared_maps(std::move(*maps));
    if (it != procs_.end() && it->second->maps->files == kept->files) {
        it->second->maps = std::move(kept);
        drop_unused_maps();
        return it->second.get();
    }
    auto p = std::make_unique<Process>();
    p->maps = std::move(kept);
    std::weak_ptr<Session>& shared = sessions_[p->maps->files];
    p->session = shared.lock();
    if (!p->session) {
        p->session = make_session(pid, p->maps->maps);
        if (!p->session)
            return nullptr;
        shared = p->session;
    }
    Process* raw = p.get();
    std::string old_files = it != procs_.end() ? it->second->maps->files : std::string();
    procs_[pid] = std::move(p);
    if (!old_files.empty())
        drop_if_unused(old_files);
    return raw;
}

void Unwinder::drop_if_unused(const std::string& files)
{
    if (auto s = sessions_.find(files); s != sessions_.end() && s->second.expired())
        sessions_.erase(s);
    drop_unused_maps();
}

void Unwinder::drop_unused_maps()
{
    for (auto m = file_maps_.begin(); m != file_maps_.end();)
        m = m->second.expired() ? file_maps_.erase(m) : std::next(m);
}

std::shared_ptr<Unwinder::Session> Unwinder::make_session(uint32_t pid, const std::vector<Mapping>& maps)
{
    auto s = std::make_shared<Session>();
    const std::string root = "/proc/" + std::to_string(pid) + "/root";
    s->debuginfo_path = ":.debug:" + opts_.debug_root + ":" + root + opts_.debug_root;
    s->debuginfo_path_ptr = s->debuginfo_path.data();
    s->callbacks.find_elf = find_elf;
    s->callbacks.find_debuginfo = dwfl_standard_find_debuginfo;
    s->callbacks.debuginfo_path = &s->debuginfo_path_ptr;
    s->dwfl = dwfl_begin(&s->callbacks);
    if (!s->dwfl)
        return nullptr;

    // One module per file with code: from its lowest mapping (the ELF
    // header, offset 0) to its highest.
    struct Range {
        uint64_t low = UINT64_MAX, high = 0;
        bool exec = false;
        std::string path;
    };
    std::map<std::tuple<uint32_t, uint32_t, uint64_t, std::string>, Range> files_by_id;
    for (const Mapping& m : maps) {
        if (!is_file(m))
            continue;
        Range& r = files_by_id[{m.dev_major, m.dev_minor, m.inode, m.path}];
        if (m.start < r.low) {
            r.low = m.start;
            r.path = path_in_target(pid, m);
        }
        r.high = std::max(r.high, m.end);
        r.exec = r.exec || m.perms.find('x') != std::string::npos;
    }
    dwfl_report_begin(s->dwfl);
    for (const auto& [id, r] : files_by_id)
        if (r.exec)
            dwfl_report_module(s->dwfl, r.path.c_str(), r.low, r.high);
    dwfl_report_end(s->dwfl, nullptr, nullptr);
    // Open every module now, so the process can still be unwound (from
    // a late event) once it exited.
    dwfl_getmodules(
        s->dwfl,
        [](Dwfl_Module* mod, void**, const char*, Dwarf_Addr, void*) -> int {
            Dwarf_Addr bias;
            dwfl_module_getelf(mod, &bias);
            return DWARF_CB_OK;
        },
        nullptr, 0);
    // The pid only names the session for libdwfl: threads and memory come
    // from the callbacks, which serve whichever stack is being unwound.
    s->attached = dwfl_attach_state(s->dwfl, nullptr, static_cast<pid_t>(pid), &kThreadCallbacks, s.get());
    return s;
}

UnwindResult Unwinder::unwind(const UnwindInput& in)
{
    // The session made at the first stack serves the next ones; the maps
    // are read again only when a frame lies in no module it knows (a
    // library loaded since).
    Process* p = process(in.pid, false);
    UnwindResult out = unwind_in(p, in);
    if (p && !out.complete && !out.frames.empty() && !dwfl_addrmodule(p->session->dwfl, out.frames.back().pc)) {
        Process* fresh = process(in.pid, true);
        if (fresh != p)
            out = unwind_in(fresh, in);
    }
    return out;
}

UnwindResult Unwinder::unwind_in(Process* p, const UnwindInput& in)
{
    UnwindResult out;
    UnwindState st;
    st.max = opts_.max_frames;
    Session* s = p ? p->session.get() : nullptr;
    if (!s || !s->attached) {
        out.error = s ? "libdwfl: " + dwfl_error() : "process maps unreadable";
        st.pcs.push_back(in.regs[16]);
    } else {
        s->in = &in;
        s->read_failed = false;
        int rc = dwfl_getthread_frames(s->dwfl, static_cast<pid_t>(in.tid), on_frame, &st);
        s->in = nullptr;
        // libdwfl ends quietly when a return address cannot be read: only
        // an end where the CFI says "no caller" (_start, clone) is complete.
        if (rc == 0 && !s->read_failed && st.pcs.size() > 1)
            out.complete = true;
        else if (rc == 0)
            out.error = "the stack copy ends (--stack-size)";
        else if (rc == DWARF_CB_ABORT && st.pcs.size() >= st.max)
            out.error = "more than " + std::to_string(st.max) + " frames";
        else
            out.error = dwfl_error();
        if (st.pcs.empty())
            st.pcs.push_back(in.regs[16]);
    }
    map_frames(p, st.pcs, out);
    return out;
}

void Unwinder::map_frames(const Process* p, const std::vector<uint64_t>& pcs, UnwindResult& out)
{
    const std::vector<Mapping>* maps = p ? &p->maps->maps : nullptr;
    for (uint64_t pc : pcs) {
        UnwoundFrame f;
        f.pc = pc;
        if (maps)
            if (const Mapping* m = find_mapping(*maps, pc); m && is_file(*m)) {
                f.mapping = m;
                f.file_offset = pc - m->start + m->offset;
            }
        out.frames.push_back(f);
    }
}

UnwindResult Unwinder::frames_at(uint32_t pid, const uint64_t* pcs, size_t count, bool complete, bool refresh)
{
    std::vector<uint64_t> list(pcs, pcs + count);
    Process* p = process(pid, false);
    auto unmapped = [&](const Process* q) {
        if (!q)
            return true;
        for (uint64_t pc : list) {
            const Mapping* m = find_mapping(q->maps->maps, pc);
            if (!m || !is_file(*m))
                return true;
        }
        return false;
    };
    if (refresh && unmapped(p))
        p = process(pid, true);
    UnwindResult out;
    out.complete = complete;
    if (!p)
        out.error = "process maps unreadable";
    map_frames(p, list, out);
    return out;
}

namespace {

// DW_OP_bregN / DW_OP_bregx: (register, offset), else false.
bool register_plus_offset(const Dwarf_Op* ops, size_t nops, int& reg, int64_t& offset)
{
    if (nops != 1)
        return false;
    if (ops[0].atom == DW_OP_bregx) {
        reg = static_cast<int>(ops[0].number);
        offset = static_cast<int64_t>(ops[0].number2);
        return true;
    }
    if (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
        reg = ops[0].atom - DW_OP_breg0;
        offset = static_cast<int64_t>(ops[0].number);
        return true;
    }
    return false;
}

// A register saved at CFA + offset: (DW_OP_call_frame_cfa [, DW_OP_plus_uconst
// N | DW_OP_consts N, DW_OP_plus]), a location (no DW_OP_stack_value).
bool saved_at_cfa(const Dwarf_Op* ops, size_t nops, int64_t& offset)
{
    if (nops < 1 || ops[0].atom != DW_OP_call_frame_cfa)
        return false;
    if (nops == 1) {
        offset = 0;
        return true;
    }
    if (nops == 2 && ops[1].atom == DW_OP_plus_uconst) {
        offset = static_cast<int64_t>(ops[1].number);
        return true;
    }
    if (nops == 3 && (ops[1].atom == DW_OP_consts || ops[1].atom == DW_OP_constu) && ops[2].atom == DW_OP_plus) {
        offset = static_cast<int64_t>(ops[1].number);
        return true;
    }
    return false;
}

constexpr int kRegRbp = 6, kRegRsp = 7, kRegReturnAddress = 16;

FrameStep step_of(Dwarf_Frame* frame)
{
    FrameStep st;
    Dwarf_Addr start = 0, end = 0;
    bool signal = false;
    if (dwarf_frame_info(frame, &start, &end, &signal) < 0 || signal)
        return st;
    Dwarf_Op ops_mem[3];
    Dwarf_Op* ops = nullptr;
    size_t nops = 0;
    // The return address: undefined at the outermost frame (_start, clone).
    if (dwarf_frame_register(frame, kRegReturnAddress, ops_mem, &ops, &nops) != 0)
        return st;
    if (nops == 0 && ops == ops_mem) {
        st.known = st.outermost = true;
        return st;
    }
    int64_t ra_offset = 0;
    if (!saved_at_cfa(ops, nops, ra_offset) || ra_offset != -8)
        return st;
    int reg = -1;
    int64_t cfa_offset = 0;
    if (dwarf_frame_cfa(frame, &ops, &nops) != 0 || !register_plus_offset(ops, nops, reg, cfa_offset) ||
        (reg != kRegRsp && reg != kRegRbp) || cfa_offset < INT32_MIN || cfa_offset > INT32_MAX)
        return st;
    // rbp: unchanged by this frame, or saved in it.
    if (dwarf_frame_register(frame, kRegRbp, ops_mem, &ops, &nops) != 0)
        return st;
    int64_t rbp_offset = 0;
    if (!(nops == 0 && ops == nullptr)) {
        if (!saved_at_cfa(ops, nops, rbp_offset) || rbp_offset == 0 || rbp_offset < INT16_MIN || rbp_offset > INT16_MAX)
            return st;
    }
    st.known = true;
    st.cfa_rbp = reg == kRegRbp;
    st.cfa_offset = static_cast<int32_t>(cfa_offset);
    st.rbp_offset = static_cast<int16_t>(rbp_offset);
    return st;
}

}  // namespace

FrameStep Unwinder::step_at(uint32_t pid, uint64_t pc)
{
    auto it = procs_.find(pid);
    if (it == procs_.end() || !it->second->session || !pc)
        return {};
    Dwfl_Module* mod = dwfl_addrmodule(it->second->session->dwfl, pc - 1);
    if (!mod)
        return {};
    // As libdwfl unwinds: .eh_frame first, then .debug_frame.
    for (auto cfi_of : {dwfl_module_eh_cfi, dwfl_module_dwarf_cfi}) {
        Dwarf_Addr bias = 0;
        Dwarf_CFI* cfi = cfi_of(mod, &bias);
        Dwarf_Frame* frame = nullptr;
        if (!cfi || dwarf_cfi_addrframe(cfi, pc - 1 - bias, &frame) != 0)
            continue;
        FrameStep st = step_of(frame);
        std::free(frame);
        return st;
    }
    return {};
}

std::string Unwinder::build_id(uint32_t pid, uint64_t pc)
{
    auto it = procs_.find(pid);
    if (it == procs_.end())
        return "";
    Dwfl_Module* mod = dwfl_addrmodule(it->second->session->dwfl, pc);
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    int n = mod ? dwfl_module_build_id(mod, &bits, &vaddr) : 0;
    std::string hex;
    char buf[3];
    for (int i = 0; i < n; i++) {
        std::snprintf(buf, sizeof buf, "%02x", bits[i]);
        hex += buf;
    }
    return hex;
}

}  // namespace connleak
