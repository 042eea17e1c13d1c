// Tells the send hook (bpf/sock_io.bpf.h) where each traced process's libpq
// keeps status and xactStatus in a PGconn (libpq_layouts), so a unit of
// work begins exactly when the handle is idle. Each process is looked at
// when first seen, and again (at most each second) while it has no libpq
// mapped yet (Python imports its driver late). Until then, and for a libpq
// whose accessors do not match (derive_libpq_layout refuses), the hook's
// gap rule applies.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "libpq_handle.h"
#include "model.h"
#include "symbolizer.h"

namespace connleak {

class Tracer;

class LibpqLayoutWatcher {
public:
    explicit LibpqLayoutWatcher(Tracer& tracer);
    // One look at the live processes among `procs` not settled yet.
    void poll(const std::vector<RawProcess>& procs, uint64_t now_ns);

private:
    Tracer& tracer_;
    Symbolizer symbols_;
    std::map<std::string, std::optional<LibpqLayout>> by_path_;  // derived once per file
    std::map<uint32_t, bool> settled_;                           // pid -> layout given (or refused)
    std::map<uint32_t, uint64_t> next_look_ns_;                  // pids without libpq yet
};

}  // namespace connleak
