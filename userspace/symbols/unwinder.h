// Unwinds a copied user stack with the binaries' DWARF CFI (.eh_frame,
// .debug_frame) through elfutils libdwfl, the way perf's unwind-libdw does:
// registers and stack bytes taken by the kernel at an acquisition, memory
// reads served from that copy only. Works without frame pointers; libdwfl
// falls back to frame pointers where a module has no CFI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proc_maps.h"

namespace connleak {

// x86-64 registers in DWARF order (rax rdx rcx rbx rsi rdi rbp rsp r8-r15),
// then rip: as in connleak.h's acquire_event.
constexpr size_t kUnwindRegs = 17;

struct UnwindInput {
    uint32_t pid = 0, tid = 0;
    uint64_t regs[kUnwindRegs] = {};
    const uint8_t* stack = nullptr;  // bytes copied from regs[7] (sp) upwards
    size_t stack_len = 0;
};

// One frame: an address in the target, and where it lies.
struct UnwoundFrame {
    uint64_t pc = 0;                   // regs' rip for the first frame, else a return address
    const Mapping* mapping = nullptr;  // in Unwinder::maps(pid); null: no file maps it
    uint64_t file_offset = 0;          // of pc in mapping's file
};

struct UnwindResult {
    std::vector<UnwoundFrame> frames;  // innermost first
    // Reached the outermost frame (the CFI says there is no caller). Else
    // unwinding stopped early: `error` says why (the copy ended, no CFI and
    // no frame pointer, an address outside every module...).
    bool complete = false;
    std::string error;
};

// How to step from a frame to its caller's, from the CFI of one return
// address: CFA = (rbp or rsp) + cfa_offset, the caller's return address at
// CFA - 8, its rsp = CFA, its rbp at CFA + rbp_offset (0: unchanged).
// `known` false: the CFI says something else (an expression, a signal
// frame, no CFI), which only a copy of the stack and libdwfl can follow.
struct FrameStep {
    bool known = false;
    bool outermost = false;  // no caller: the stack ends here
    bool cfa_rbp = false;
    int32_t cfa_offset = 0;
    int16_t rbp_offset = 0;
};

struct UnwinderOptions {
    size_t max_frames = 128;
    // Where separate debug files live (ROOT/.build-id/..., ROOT/DIR/DEBUGLINK),
    // for .debug_frame.
    std::string debug_root = "/usr/lib/debug";
};

// Not thread-safe. One libdwfl session per set of file mappings (the
// modules at their load addresses), shared by processes that map the same
// files at the same addresses, made again when a process maps other files.
class Unwinder {
public:
    explicit Unwinder(UnwinderOptions opts = {});
    ~Unwinder();
    Unwinder(const Unwinder&) = delete;
    Unwinder& operator=(const Unwinder&) = delete;

    UnwindResult unwind(const UnwindInput& in);

    // Frames at return addresses walked by someone else (the kernel), or
    // unwound before, for naming: the mappings as unwind() gives them (with
    // `refresh`, maps read again when one lies in no mapping known).
    // complete: as the walker said.
    UnwindResult frames_at(uint32_t pid, const uint64_t* pcs, size_t count, bool complete, bool refresh = true);

    // The step from the frame at return address `pc` (its call at pc - 1)
    // of a process unwound before: what the kernel needs to walk it.
    FrameStep step_at(uint32_t pid, uint64_t pc);

    // The GNU build id (hex) of the module holding `pc`, "" if none: what
    // identifies a frame's file, also once the process exited. Valid for a
    // pid unwound before and not forgotten since. (Names: Symbolizer.)
    std::string build_id(uint32_t pid, uint64_t pc);

    // The process's file mappings as last read (for naming frames; valid
    // until the next unwind). Anonymous mappings are not kept: no frame is
    // named by one.
    const std::vector<Mapping>* maps(uint32_t pid) const;

    // Reads the process's mappings and opens its modules now (again if they
    // changed): what its stacks need, kept once it exited.
    void look_at(uint32_t pid) { process(pid, true); }

    // Frees what is kept for a process that exited.
    void forget(uint32_t pid);

    // libdwfl sessions alive (for tests and measurements).
    size_t session_count() const;

    struct Session;   // libdwfl state of a set of mappings (unwinder.cpp)
    struct FileMaps;  // a set of file mappings, shared by the processes that map it alike
    struct Process;   // a process's mappings and session

private:
    Process* process(uint32_t pid, bool refresh);
    std::shared_ptr<Session> make_session(uint32_t pid, const std::vector<Mapping>& maps);
    void drop_if_unused(const std::string& files);
    std::shared_ptr<const FileMaps> shared_maps(std::vector<Mapping>&& maps);
    void drop_unused_maps();
    UnwindResult unwind_in(Process* p, const UnwindInput& in);
    static void map_frames(const Process* p, const std::vector<uint64_t>& pcs, UnwindResult& out);

    UnwinderOptions opts_;
    std::map<uint32_t, std::unique_ptr<Process>> procs_;
    std::map<std::string, std::weak_ptr<Session>> sessions_;  // by file_signature
    // By file_signature and permissions: forked workers share one copy of
    // their parsed maps (~30 KB a process otherwise, 1,000 processes at scale).
    std::map<std::string, std::weak_ptr<const FileMaps>> file_maps_;
};

}  // namespace connleak
