#include "handle_states.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iterator>
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

HandleState HandleStates::state_of(const Known& k) const
{
    HandleState s;
    s.state = k.mark.state;
    s.backend_pid = k.backend_pid;
    if (k.names) {
        s.database = names_.database(k.names);
        s.user = names_.user(k.names);
    }
    s.state_since_ns = k.state_since_ns;
    return s;
}

void HandleStates::annotate(RawState& raw)
{
    // CPU time once per annotate: the thread's clock is a system call, and
    // was taken twice per process (1,000 at scale).
    const uint64_t start_cpu = thread_cpu_ns();
    std::set<uint32_t> live;
    for (const RawProcess& p : raw.processes)
        if (!p.stats.exited_ns)
            live.insert(p.pid);
    generation_++;
    cursor_ = 0;
    refresh_ns_ = handle_refresh_period(std::max(known_.size(), raw.conns.size()));
    raw.handles.reserve(raw.conns.size());  // at most one each, appended without regrowing
    added_.clear();
    // A process's handles (a run of one pid: the maps are read in key
    // order) in one batch of reads.
    for (size_t i = 0; i < raw.conns.size();) {
        const uint32_t pid = raw.conns[i].pid;
        size_t end = i;
        while (end < raw.conns.size() && raw.conns[end].pid == pid)
            end++;
        if (const LibpqLayout* layout = live.count(pid) ? layout_of(pid) : nullptr)
            annotate_process(raw, pid, i, end, *layout);
        i = end;
    }
    settle_known();
    for (auto it = file_of_pid_.begin(); it != file_of_pid_.end();)
        it = live.count(it->first) ? std::next(it) : file_of_pid_.erase(it);
    read_cpu_ns_ += thread_cpu_ns() - start_cpu;
}

void HandleStates::settle_known()
{
    auto by_id = [](const Known& a, const Known& b) { return a.id() < b.id(); };
    // Finished, exited, or its read failed.
    known_.erase(std::remove_if(known_.begin(), known_.end(), [&](const Known& k) { return k.seen != generation_; }),
                 known_.end());
    if (!added_.empty()) {
        if (!std::is_sorted(added_.begin(), added_.end(), by_id))
            std::sort(added_.begin(), added_.end(), by_id);
        std::vector<Known> merged;
        merged.reserve(known_.size() + added_.size());
        std::merge(known_.begin(), known_.end(), added_.begin(), added_.end(), std::back_inserter(merged), by_id);
        known_.swap(merged);
        added_.clear();
        added_.shrink_to_fit();  // the first report adds every handle
    } else if (known_.capacity() > 2 * known_.size() + 1024) {
        known_.shrink_to_fit();  // many finished at once
    }
    if (names_.wants_compact()) {
        std::vector<NamePairs::Id> used;
        used.reserve(known_.size());
        for (const Known& k : known_)
            used.push_back(k.names);
        const std::vector<NamePairs::Id> renumber = names_.compact(used);
        for (Known& k : known_)
            k.names = renumber[k.names];
    }
}

void HandleStates::annotate_process(RawState& raw, uint32_t pid, size_t begin, size_t end, const LibpqLayout& layout)
{
    const uint64_t start = monotonic_ns();
    // The socket tracer's view of each handle's socket, read before now.
    const ProcessSocketReport* sockets = nullptr;
    if (auto it = raw.sockets.find(pid); it != raw.sockets.end() && it->second.tracked)
        sockets = &it->second;
    const bool traffic = sockets && sockets->traffic, dropped = sockets && sockets->dropped;
    const uint64_t poll_ns = sockets ? sockets->last_poll_ns : 0;

    struct Entry {
        size_t known;  // index into known_, or into added_ once read (new); kNone: read failed or never read
        bool added;
        HandleActivity activity;
        bool first;
    };
    constexpr size_t kNone = SIZE_MAX;
    std::vector<Entry> entries;
    entries.reserve(end - begin);
    std::vector<uint64_t> to_read;
    std::vector<size_t> read_index;  // into entries
    auto find_known = [&](const HandleId& id) -> size_t {
        // raw.conns is in key order, as known_: the next one is usually at hand.
        if (cursor_ >= known_.size() || known_[cursor_].id() != id)
            cursor_ = std::lower_bound(known_.begin(), known_.end(), id,
                                       [](const Known& k, const HandleId& i) { return k.id() < i; }) -
                      known_.begin();
        return cursor_ < known_.size() && known_[cursor_].id() == id ? cursor_ : kNone;
    };
    for (size_t k = begin; k < end; k++) {
        const RawConn& c = raw.conns[k];
        const size_t found = find_known(HandleId{c.pid, c.conn, c.info.acquired_ns});
        Known* known = found != kNone ? &known_[found] : nullptr;
        auto activity = [&] {
            const ConnSocket* sock = nullptr;
            if (sockets)
                if (auto s = sockets->conns.find(c.conn); s != sockets->conns.end())
                    sock = &s->second;
            return handle_activity(sock, traffic, dropped, poll_ns);
        };
        // A connecting handle's socket does not matter to the rule (only
        // PQconnectPoll changes it): looked up only when it is read.
        const bool connecting = known && known->mark.state == ConnState::connecting;
        Entry e{found, false, connecting ? handle_activity(nullptr, traffic, dropped, poll_ns) : activity(), !known};
        if (known)
            ++cursor_;
        const bool need = handle_needs_read(known ? &known->mark : nullptr, e.activity, start);
        if (need && connecting)
            e.activity = activity();  // for its mark
        if (need) {
            to_read.push_back(c.conn);
            read_index.push_back(entries.size());
        } else {
            skipped_++;
        }
        entries.push_back(e);
    }

    const std::vector<Result<HandleFields>> read = read_handles_fields(pid, to_read, layout);
    reads_ += read.size();
    std::vector<bool> failed(entries.size(), false);
    for (size_t r = 0; r < read.size(); r++) {
        Entry& e = entries[read_index[r]];
        const RawConn& c = raw.conns[begin + read_index[r]];
        const auto& fields = read[r];
        if (!fields) {
            failed_++;
            failed[read_index[r]] = true;  // gone (exited, or finished since the maps were read)
            continue;
        }
        if (e.known == kNone) {
            Known fresh;
            fresh.pid = c.pid;
            fresh.conn = c.conn;
            fresh.acquired_ns = c.info.acquired_ns;
            added_.push_back(fresh);
            e.known = added_.size() - 1;
            e.added = true;
        }
        Known& k_state = e.added ? added_[e.known] : known_[e.known];
        const ConnState state = conn_state_of(fields.value());
        if (k_state.state_since_ns == 0 || k_state.mark.state != state)  // the last read's, marked below
            k_state.state_since_ns = raw.now_ns;
        // PQbackendPID()'s rule: 0 unless connected.
        k_state.backend_pid = fields.value().status == 0 ? fields.value().be_pid : 0;
        if (!k_state.names && state != ConnState::unknown) {
            if (auto names = read_handle_names(c.pid, c.conn, layout))
                k_state.names = names_.id(names.value().database, names.value().user);
        }
        // Marked as of the start of the reads: a change during them is
        // within the settle time of the traffic that made it.
        k_state.mark = handle_read_mark(state, e.activity, start, e.first ? nullptr : &k_state.mark,
                                        handle_refresh_phase(c.pid), refresh_ns_);
    }
    for (size_t k = 0; k < entries.size(); k++) {
        const Entry& e = entries[k];
        if (failed[k] || e.known == kNone)
            continue;
        const RawConn& c = raw.conns[begin + k];
        Known& known = e.added ? added_[e.known] : known_[e.known];
        known.seen = generation_;
        // In key order, as read: each insert is an append.
        raw.handles[std::make_pair(c.pid, c.conn)] = state_of(known);
    }
    read_ns_ += monotonic_ns() - start;
}

}  // namespace connleak
