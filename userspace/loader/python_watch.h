// Tells the kernel which traced processes run a Python interpreter it can
// follow (python_procs), looking at each process when it is first seen and
// again after it exec'ed. Forked children inherit their parent's entry in
// the kernel; acquisitions made before a process was looked at (its first
// ~100 ms, or before its interpreter initialised) have no Python frames.
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
    // One look at the live processes among `procs`.
    void poll(const std::vector<RawProcess>& procs);

private:
    struct Seen {
        uint64_t exe_dev = 0, exe_ino = 0;
        PythonProbe state = PythonProbe::not_python;
    };
    int map_fd_;
    std::optional<uint64_t> tsd_key0_;
    bool tsd_failed_ = false;
    uint32_t generation_ = 0;
    std::map<uint32_t, Seen> seen_;
};

}  // namespace connleak
