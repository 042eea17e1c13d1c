#include "handle_states.h"

#include <sys/stat.h>
#include <time.h>

#include <cstdio>
#include <set>

#include "clock.h"
#include "handle_reader.h"
#include "libpq_layout_file.h"
#include "libpq_locator.h"

namespace connleak {
namespace {

uint64_t thread_cpu_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

const LibpqLayout* HandleStates::layout_of(uint32_t pid)
{
    auto known = file_of_pid_.find(pid);
    if (known == file_of_pid_.end()) {
        auto path = libpq_of_process(pid);
        if (!path)
            return nullptr;  // looked at again next interval
        struct stat st {};
        if (stat(path.value().c_str(), &st) != 0)
            return nullptr;
        const std::pair<dev_t, ino_t> file{st.st_dev, st.st_ino};
        if (!layouts_.count(file)) {
            auto layout = read_libpq_layout(symbols_, path.value());
            if (layout)
                layouts_[file] = layout.value();
            else {
                layouts_[file] = std::nullopt;
                std::fprintf(stderr, "connleak: warning: %s: %s: connection state unknown for this libpq\n",
                             path.value().c_str(), layout.error().message.c_str());
            }
        }
        known = file_of_pid_.emplace(pid, file).first;
    }
    const auto& layout = layouts_[known->second];
    return layout ? &*layout : nullptr;
}

void HandleStates::annotate(RawState& raw)
{
    std::set<uint32_t> live;
    for (const RawProcess& p : raw.processes)
        if (!p.stats.exited_ns)
            live.insert(p.pid);
    std::map<HandleId, Known> now;
    for (const RawConn& c : raw.conns) {
        if (!live.count(c.pid))
            continue;
        const LibpqLayout* layout = layout_of(c.pid);
        if (!layout)
            continue;
        const HandleId id{c.pid, c.conn, c.info.acquired_ns};
        const uint64_t start = monotonic_ns(), start_cpu = thread_cpu_ns();
        auto fields = read_handle_fields(c.pid, c.conn, *layout);
        reads_++;
        if (!fields) {
            failed_++;
            read_ns_ += monotonic_ns() - start;
            read_cpu_ns_ += thread_cpu_ns() - start_cpu;
            continue;  // gone (exited, or finished since the maps were read)
        }
        Known k;
        if (auto before = known_.find(id); before != known_.end())
            k = before->second;
        const ConnState state = conn_state_of(fields.value());
        if (k.state.state_since_ns == 0 || k.state.state != state)
            k.state.state_since_ns = raw.now_ns;
        k.state.state = state;
        // PQbackendPID()'s rule: 0 unless connected.
        k.state.backend_pid = fields.value().status == 0 ? fields.value().be_pid : 0;
        if (!k.named && state != ConnState::unknown) {
            if (auto names = read_handle_names(c.pid, c.conn, *layout)) {
                k.state.database = names.value().database;
                k.state.user = names.value().user;
                k.named = true;
            }
        }
        read_ns_ += monotonic_ns() - start;
        read_cpu_ns_ += thread_cpu_ns() - start_cpu;
        raw.handles[{c.pid, c.conn}] = k.state;
        now[id] = k;
    }
    known_ = std::move(now);
    for (auto it = file_of_pid_.begin(); it != file_of_pid_.end();)
        it = live.count(it->first) ? std::next(it) : file_of_pid_.erase(it);
}

}  // namespace connleak
