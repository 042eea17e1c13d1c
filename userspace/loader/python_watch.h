// Tells the kernel which traced processes run a Python interpreter it can
// follow (python_procs), looking at each process when it is first seen and
// again after it exec'ed. Forked children inherit their parent's entry in
// the kernel. A new process is looked at every few milliseconds while it
// settles (settling()): a launched `python app.py` is ready a few ms after
// its runtime initialised, long before its imports finish and it connects.
// Acquisitions made before that have no Python frames.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "model.h"
#include "python_layout.h"

namespace connleak {

class PythonWatcher {
public:
    explicit PythonWatcher(int map_fd);
    // One look at the live processes among `procs`. traced_execs: the
    // kernel's count of execs of traced processes; while it stands, a
    // process already found not to be Python (or unsupported) is not looked
    // at again.
    void poll(const std::vector<RawProcess>& procs, uint64_t now_ns, uint64_t traced_execs);
    // Whether some process seen in the last few seconds is not settled yet
    // (not Python so far, or its runtime not initialised): the caller then
    // polls again within milliseconds, not at its usual pace.
    bool settling(uint64_t now_ns) const;
    // Whether some process is Python whose runtime was not ready at its
    // last look (looked at again at every poll, however old).
    bool waiting() const;

private:
    struct Seen {
        uint64_t exe_dev = 0, exe_ino = 0;
        PythonProbe state = PythonProbe::not_python;
        uint64_t first_seen_ns = 0;
    };
    int map_fd_;
    std::optional<uint64_t> tsd_key0_;
    bool tsd_failed_ = false;
    uint32_t generation_ = 0;
    std::map<uint32_t, Seen> seen_;
    std::optional<uint64_t> execs_;  // traced_execs at the last poll
    // What settling() and waiting() answer, worked out at the end of each
    // poll (the only place states change): they are asked every 0.1 s, and
    // a walk of 1,000 entries each time was ~2 ms of CPU a second at scale.
    uint64_t settle_until_ns_ = 0;  // settling() while now is before this
    bool waiting_ = false;
    void settle();
};

}  // namespace connleak
