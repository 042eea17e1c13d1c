// libpq layouts for the kernel (see libpq_layout_watch.h).
#include "libpq_layout_watch.h"

#include <cstdio>

#include "connleak_loader.h"
#include "libpq_layout_file.h"
#include "libpq_locator.h"

namespace connleak {
namespace {

constexpr uint64_t kRelookNs = 1000000000ULL;

SymbolizerOptions no_debug_files()
{
    SymbolizerOptions o;
    o.use_debug_files = false;  // the exported accessors' addresses are in the file's own symbols
    return o;
}

}  // namespace

LibpqLayoutWatcher::LibpqLayoutWatcher(Tracer& tracer) : tracer_(tracer), symbols_(no_debug_files()) {}

void LibpqLayoutWatcher::poll(const std::vector<RawProcess>& procs, uint64_t now_ns)
{
    for (const RawProcess& p : procs) {
        if (p.stats.exited_ns) {
            settled_.erase(p.pid);
            next_look_ns_.erase(p.pid);
            continue;
        }
        if (settled_.count(p.pid))
            continue;
        // Waiting out the relook delay only while the process has not called
        // libpq: once it has made a connection, libpq is mapped, and every
        // moment without the layout leaves its first uses to the gap rule.
        if (auto it = next_look_ns_.find(p.pid);
            it != next_look_ns_.end() && now_ns < it->second && !p.stats.acquired)
            continue;
        auto path = libpq_of_process(p.pid);
        if (!path) {  // no libpq mapped yet (or gone): look again later
            next_look_ns_[p.pid] = now_ns + kRelookNs;
            continue;
        }
        next_look_ns_.erase(p.pid);
        auto known = by_path_.find(path.value());
        if (known == by_path_.end()) {
            auto layout = read_libpq_layout(symbols_, path.value());
            if (!layout)
                std::fprintf(stderr, "connleak: warning: %s: no libpq layout (%s): last users by the idle-gap rule\n",
                             path.value().c_str(), layout.error().message.c_str());
            known = by_path_.emplace(path.value(), layout ? std::optional<LibpqLayout>(layout.value()) : std::nullopt)
                        .first;
        }
        if (known->second)
            if (auto s = tracer_.set_libpq_layout(p.pid, known->second->status, known->second->xact_status); !s)
                std::fprintf(stderr, "connleak: warning: %s\n", s.error().message.c_str());
        settled_[p.pid] = known->second.has_value();
    }
}

}  // namespace connleak
