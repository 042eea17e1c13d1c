// Acquiring stacks: the kernel's acquire events unwound (Unwinder) and named
// (Symbolizer: function and file:line, libdwfl), identical stacks sharing one site,
// and the kernel's per-caller counters split by stack.
//
// The kernel's counters per (process, caller return address) stay the
// ground truth. Stacks the kernel walked itself it counts per (process,
// stack id) (RawState::stacks), and sends each once (stack_event): those
// counts are exact whatever the load. A stack it could not walk yet comes
// as a copy (acquire_event) unwound here, which also teaches the kernel its
// return addresses (StackOptions::learn); each such acquire event is counted
// on its stack, each release event (hold time) on the stack of the handle
// it finishes. refine() then replaces every kernel site by its stacks, and
// whatever neither explains (events the ring buffer dropped, or not read
// yet) stays on the kernel site. So every total is exact, and per stack too
// when no event was dropped (proc_stats.dropped_stacks counts them).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "model.h"
#include "python_code.h"
#include "python_frames.h"
#include "symbolizer.h"
#include "unwinder.h"

namespace connleak {

struct StackOptions {
    // A frame whose name ("func+0x1c (module) file.c:3") matches one of
    // these is not the site: libpq and driver glue. Always skipped: libpq.
    std::vector<std::string> site_skip = default_site_skip();
    std::string debug_root = "/usr/lib/debug";
    size_t max_frames = 128;
    // Where what is learnt from each stack unwound here goes: how to step
    // from each of its return addresses to the next (the kernel's
    // unwind_steps), so the kernel walks such stacks itself from then on.
    std::function<void(const unwind_key&, const unwind_step&)> learn;
    // Keep each stack's costs for cost_summary()'s median (measurements:
    // 100,000 stacks at scale, 1 MB held for good when nobody asks).
    bool keep_costs = false;

    static std::vector<std::string> default_site_skip();
};

// Per process: how the stacks went.
struct StackCounts {
    uint64_t unwound = 0;           // reached the outermost frame
    uint64_t truncated = 0;         // stopped early (copy too short, no CFI...)
    uint64_t unwind_ns = 0;         // time spent unwinding (libdwfl session made when needed)
    uint64_t name_ns = 0;           // time spent naming frames (cached per module and offset)
    uint64_t python = 0;            // stacks with Python frames
    uint64_t python_truncated = 0;  // ... whose outermost Python frames did not fit
};

class StackTable {
public:
    explicit StackTable(StackOptions opts = {});

    // One ring-buffer record (acquire_event or release_event).
    void on_event(const void* data, size_t size);

    // Splits the kernel's sites of `raw` by stack (see above): stacks get
    // keys of their own (SiteKey::stack), handles are moved to their stack.
    // Read the events first, then the maps, then refine.
    void refine(RawState& raw);
    // The same split alone, for processes whose events were all read
    // (exited before an earlier refine), at any time.
    void split(RawState& raw) const;

    // For keys made by refine(): acquiring stacks (SiteKey::stack) and
    // last users (SiteKey::last_use).
    std::string site_name(const SiteKey& key) const;
    // The stack of a key made by refine(), else null.
    std::shared_ptr<const std::vector<std::string>> frames(const SiteKey& key) const;

    // The process exited: its stacks are kept, its unwinding state freed
    // after the next refine() (its last events may still be unread).
    void process_exited(uint32_t pid);

    // How long a handle was held, if its release was seen (recent ones).
    std::optional<double> hold_ms(uint32_t pid, uint64_t conn, uint64_t acquired_ns) const;

    StackCounts counts(uint32_t pid) const;
    StackCounts total_counts() const;
    size_t stack_count() const { return stacks_.size(); }
    // (unwinding, naming) in µs of each stack so far, in order (the first
    // 100000), for measurements.
    const std::vector<std::pair<uint32_t, uint32_t>>& costs_us() const { return cost_us_; }
    // Two lines for people: counts, and mean and median costs.
    std::string cost_summary() const;

    // A frame named "start_thread+0x305 (libc.so.6)" & co: no file:line
    // is looked up for it (is_runtime_entry_function; exposed for tests).
    static bool is_runtime_entry(const std::string& name);

    // A frame list and the index of its site frame (exposed for tests).
    static size_t site_index(const std::vector<std::string>& frames, const std::vector<std::regex>& skip);

private:
    struct Stack {
        uint32_t pid = 0;
        uint64_t kernel_site = 0;
        std::string site;
        std::shared_ptr<const std::vector<std::string>> frames;
        uint64_t acquired = 0, released = 0, hold_ns_total = 0, hold_ns_max = 0;
    };
    struct Handle {
        uint64_t start_ns = 0, acquired_ns = 0;
        size_t stack = 0;
    };

    // Events are taken in two steps: on_*() at once (unwinding, learning),
    // then, in their order, settle() (naming, counting), which refine() calls.
    struct Deferred {
        uint32_t kind = 0;
        std::vector<uint8_t> event;  // the event; an acquire_event without its stack copy
        std::vector<uint64_t> pcs;   // acquire: the return addresses unwound
        bool complete = false;
        bool native = true;  // acquire: false when its process's maps were never read
    };
    void on_acquire(const struct acquire_event& e, size_t stack_len);
    void on_stack(const struct stack_event& e);
    struct NamedStack {
        std::vector<std::string> names;  // innermost first
        size_t site = 0;                 // index of the site frame
        bool complete = false, python = false;
        uint64_t unwind_ns = 0;
    };
    bool name_stack(const struct acquire_event& e, size_t stack_len, NamedStack& out);
    // The names of r's frames, Python frames (py, count) merged in. False when
    // nothing is known of the process and the kernel sent no Python frames.
    bool name_frames(uint32_t pid, UnwindResult& r, uint32_t py_generation, const struct python_frame* py,
                     uint32_t py_count, NamedStack& out);
    // Last users (stack_table_last_use.cpp): the stack of the send that
    // began a handle's latest unit of work. Kept apart from the acquiring
    // stacks: no site rows, labels of their own.
    // A use whose stack the kernel walked comes as its id on the socket
    // (ConnSocket::use_stack), the stack itself once (on_use_stack).
    void on_last_use(const struct acquire_event& e, size_t stack_len);
    void on_use_stack(const struct stack_event& e);
    size_t use_of(uint32_t pid, NamedStack& n);  // the last user (index in uses_) of these frames, made if new
    void set_last_uses(RawState& raw) const;
    std::string last_use_summary() const;
    void forget_last_uses(uint32_t pid);
    void relabel_uses(uint32_t pid);
    struct UseStack {
        uint32_t pid = 0;
        std::string site;
        std::shared_ptr<const std::vector<std::string>> frames;
        size_t site_frame = 0;
    };
    struct LastUse {
        uint64_t start_ns = 0;  // the handle's (its acquisition's), 0: acquired unseen
        uint64_t use_ns = 0;    // the send's time
        uint32_t tid = 0;
        size_t stack = 0;  // in uses_
    };
    static std::vector<std::string> last_use_skip();
    std::vector<std::regex> use_skip_, use_python_skip_;  // the site skips, and the send's own frames
    std::vector<UseStack> uses_;                          // key: SiteKey::last_use(index)
    std::map<std::pair<uint32_t, std::vector<std::string>>, size_t> uses_by_frames_;
    std::map<uint32_t, std::vector<size_t>> uses_by_pid_;
    std::map<std::pair<uint32_t, uint64_t>, LastUse> last_uses_;         // (pid, conn)
    std::map<std::pair<uint32_t, uint64_t>, size_t> use_kernel_stacks_;  // (pid, kernel stack id) -> uses_
    uint64_t last_use_copies_ = 0, use_stacks_read_ = 0;                 // for CONNLEAK_STACK_STATS
    void on_release(const struct release_event& e);
    void settle();
    void name_acquire(const struct acquire_event& e, const Deferred& d);
    void name_stack(const struct stack_event& e);
    void apply_release(const struct release_event& e);
    std::vector<Deferred> deferred_;
    size_t name_costs_ = 0;  // cost_us_ entries whose naming cost is filled in
    // The stack (index) of these frames, made if new.
    size_t stack_of(uint32_t pid, uint64_t kernel_site, UnwindResult& r, const struct python_frame* py,
                    uint32_t py_count, uint32_t py_generation);
    void learn_from(uint32_t pid, uint64_t family, const UnwindResult& r);
    void defer(uint32_t kind, const void* event, size_t size);
    UnwindResult unwind_copy(const struct acquire_event& e, size_t stack_len);
    using FrameId = std::pair<std::string, uint64_t>;  // module (build id), file offset
    FrameId frame_id(uint32_t pid, const UnwoundFrame& f);
    std::string frame_name(uint32_t pid, const UnwoundFrame& f, const FrameId& id);

    StackOptions opts_;
    std::vector<std::regex> skip_;
    Unwinder unwinder_;
    Symbolizer symbolizer_;
    std::vector<Stack> stacks_;  // key: SiteKey::stack(index)
    // Stacks named alike from their site outwards share one (function and
    // file:line, not return addresses: a Python line is one row).
    std::map<std::tuple<uint32_t, uint64_t, std::vector<std::string>>, size_t> by_frames_;
    // Python: the code objects the kernel described, glue never the site,
    // and each process's stacks (to keep their labels apart).
    std::vector<NamedPythonFrame> python_frames_of(uint32_t pid, uint32_t generation, const struct python_frame* py,
                                                   uint32_t count) const;
    void relabel(uint32_t pid);
    PythonCodes python_codes_;
    std::vector<std::regex> python_skip_;
    std::map<uint32_t, std::vector<size_t>> by_pid_;
    std::vector<size_t> site_frame_;  // per stack: index of its site frame
    std::map<std::pair<uint32_t, uint64_t>, std::vector<size_t>> by_kernel_site_;
    std::map<std::pair<uint32_t, uint64_t>, Handle> handles_;  // (pid, conn)
    // Stacks the kernel counts: (pid, kernel stack id) -> which, and how.
    struct KernelStack {
        size_t stack = 0;
        bool python = false, python_truncated = false;
    };
    std::map<std::pair<uint32_t, uint64_t>, KernelStack> kernel_stacks_;
    std::set<std::pair<uint64_t, uint64_t>> learnt_;  // (family, pc) told to the kernel
    std::map<FrameId, std::string> names_;
    std::map<uint32_t, StackCounts> counts_;
    std::vector<uint32_t> exited_, forget_next_;
    std::vector<std::pair<uint32_t, uint32_t>> cost_us_;
    using HandleId = std::tuple<uint32_t, uint64_t, uint64_t>;  // pid, conn, acquired_ns
    std::map<HandleId, uint64_t> holds_;                        // of the latest releases
    void remember_hold(const HandleId& id, uint64_t hold_ns);
    std::deque<HandleId> hold_order_;
};

}  // namespace connleak
