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
    generation_++;
    std::vector<uint64_t> conns;
    std::vector<const RawConn*> of_pid;
    // A process's handles (a run of one pid: the maps are read in key
    // order) in one batch of reads.
    for (size_t i = 0; i < raw.conns.size();) {
        const uint32_t pid = raw.conns[i].pid;
        size_t end = i;
        while (end < raw.conns.size() && raw.conns[end].pid == pid)
            end++;
        const LibpqLayout* layout = live.count(pid) ? layout_of(pid) : nullptr;
        if (layout) {
            conns.clear();
            of_pid.clear();
            for (size_t k = i; k < end; k++) {
                conns.push_back(raw.conns[k].conn);
                of_pid.push_back(&raw.conns[k]);
            }
            annotate_process(raw, pid, conns, of_pid, *layout);
        }
        i = end;
    }
    for (auto it = known_.begin(); it != known_.end();)  // finished, exited, or not read this time
        it = it->second.seen == generation_ ? std::next(it) : known_.erase(it);
    for (auto it = file_of_pid_.begin(); it != file_of_pid_.end();)
        it = live.count(it->first) ? std::next(it) : file_of_pid_.erase(it);
}

void HandleStates::annotate_process(RawState& raw, uint32_t pid, const std::vector<uint64_t>& conns,
                                    const std::vector<const RawConn*>& of_pid, const LibpqLayout& layout)
{
    const uint64_t start = monotonic_ns(), start_cpu = thread_cpu_ns();
    const std::vector<Result<HandleFields>> read = read_handles_fields(pid, conns, layout);
    reads_ += read.size();
    for (size_t k = 0; k < read.size(); k++) {
        const RawConn& c = *of_pid[k];
        const auto& fields = read[k];
        if (!fields) {
            failed_++;
            continue;  // gone (exited, or finished since the maps were read)
        }
        const HandleId id{c.pid, c.conn, c.info.acquired_ns};
        auto hint = known_.lower_bound(id);
        if (hint == known_.end() || hint->first != id)
            hint = known_.emplace_hint(hint, id, Known{});
        Known& k_state = hint->second;
        k_state.seen = generation_;
        const ConnState state = conn_state_of(fields.value());
        if (k_state.state.state_since_ns == 0 || k_state.state.state != state)
            k_state.state.state_since_ns = raw.now_ns;
        k_state.state.state = state;
        // PQbackendPID()'s rule: 0 unless connected.
        k_state.state.backend_pid = fields.value().status == 0 ? fields.value().be_pid : 0;
        if (!k_state.named && state != ConnState::unknown) {
            if (auto names = read_handle_names(c.pid, c.conn, layout)) {
                k_state.state.database = names.value().database;
                k_state.state.user = names.value().user;
                k_state.named = true;
            }
        }
        // In key order, as read: each insert lands at the end.
        raw.handles.emplace_hint(raw.handles.end(), std::make_pair(c.pid, c.conn), k_state.state);
    }
    read_ns_ += monotonic_ns() - start;
    read_cpu_ns_ += thread_cpu_ns() - start_cpu;
}

}  // namespace connleak
