#include "model.h"

#include "last_user.h"
#include "last_users.h"

#include <algorithm>
#include <array>
#include <map>
#include <regex>
#include <tuple>
#include <unordered_map>

namespace connleak {
namespace {

constexpr double kNsPerMs = 1e6;

uint64_t dropped_of(const ProcessCounts& s)
{
    return s.dropped_conns + s.dropped_sites + s.dropped_threads + s.dropped_children + s.dropped_inherited;
}

// The texts a report's rows repeat, one copy each for the whole report.
struct RowTexts {
    TextPool peers, sockets;  // a handle's database and user come shared already (HandleState)
};

// A live handle's socket, as the socket report paired it (by PGconn).
void join_socket(ConnReport& c, const ConnSocket& s, RowTexts& texts)
{
    c.peer = texts.peers.get(s.peer);
    c.local = s.local;
    c.socket = texts.sockets.get(s.state.empty() ? no_socket_text() : s.state);  // a handle the socket read did not see yet
    c.socket_inode = s.inode;
}

// Worst first: leaks, then live handles, then volume; site name breaks ties
// so the order is stable between intervals.
bool worse_site(const SiteReport& a, const SiteReport& b)
{
    auto rank = [](const SiteReport& s) { return std::make_tuple(s.leaks, s.leaked_at_exit, s.active, s.acquired); };
    if (rank(a) != rank(b))
        return rank(a) > rank(b);
    return a.site < b.site;
}

bool in_transaction(ConnState s)
{
    return s == ConnState::in_transaction || s == ConnState::in_error;
}

// Whether a stack passes through a pool's code; one answer per stack.
class PoolFrames {
public:
    explicit PoolFrames(const std::vector<std::string>& patterns)
    {
        for (const std::string& p : patterns)
            res_.emplace_back(p, std::regex::ECMAScript | std::regex::optimize);
    }
    bool pooled(const Frames& frames)
    {
        if (!frames)
            return false;
        auto [it, fresh] = seen_.emplace(frames.get(), false);
        if (fresh)
            for (const std::string& f : *frames)
                if (matches(f))
                    it->second = true;
        return it->second;
    }

private:
    // One search per frame text: forked processes have stacks of their
    // own but the same frames (1,000 processes, a search each, were ~20 %
    // of the model at scale).
    bool matches(const std::string& frame)
    {
        auto [it, fresh] = texts_.try_emplace(frame, false);
        if (fresh)
            for (const std::regex& re : res_)
                if (std::regex_search(frame, re))
                    it->second = true;
        return it->second;
    }

    std::vector<std::regex> res_;
    std::map<const void*, bool> seen_;
    std::unordered_map<std::string, bool> texts_;
};

// A site's row while its process's handles are counted: its name shared by
// their rows, and whether its stack passes through a pool, asked once.
struct SiteRow {
    SiteReport report;
    SharedText name;
    bool pooled = false;
};

// Where each of a process's live handles has its state read and its socket
// (null: none): the handles sorted by address, walked alongside both (by
// address too) instead of a tree lookup per handle (100,000 at scale).
struct HandleFacts {
    const HandleState* state = nullptr;
    const ConnSocket* socket = nullptr;
};

std::vector<HandleFacts> facts_of(uint32_t pid, const std::vector<const RawConn*>& conns, const RawState& raw,
                                  const ProcessSocketReport& sockets)
{
    std::vector<HandleFacts> facts(conns.size());
    std::vector<std::pair<uint64_t, uint32_t>> by_address(conns.size());
    for (size_t i = 0; i < conns.size(); i++)
        by_address[i] = {conns[i]->conn, static_cast<uint32_t>(i)};
    // The maps are read in key order: usually sorted already.
    if (!std::is_sorted(by_address.begin(), by_address.end()))
        std::sort(by_address.begin(), by_address.end());
    const auto& handles = raw.handles.map();
    auto state = std::lower_bound(handles.begin(), handles.end(), std::make_pair(pid, uint64_t{0}),
                                  [](const auto& e, const std::pair<uint32_t, uint64_t>& k) { return e.first < k; });
    auto socket = sockets.conns.begin();
    for (const auto& [conn, i] : by_address) {
        while (state != handles.end() && state->first.first == pid && state->first.second < conn)
            ++state;
        if (state != handles.end() && state->first == std::make_pair(pid, conn))
            facts[i].state = &state->second;
        while (socket != sockets.conns.end() && socket->first < conn)
            ++socket;
        if (socket != sockets.conns.end() && socket->first == conn)
            facts[i].socket = &socket->second;
    }
    return facts;
}

struct ProcessView {
    const RawProcess* proc = nullptr;
    std::vector<const RawConn*> conns;
    std::map<SiteKey, const RawSite*> sites;
};

// sockets: the process's socket report, or null; `take`: moved out of it, not copied.
ProcessReport build_process(const ProcessView& view, const RawState& raw, const ProcessSocketReport* sockets,
                            ProcessSocketReport* take, const ModelOptions& opts, const SiteNamer& name_site,
                            const SiteFrames& site_frames, PoolFrames& pools, RowTexts& texts)
{
    const RawProcess& p = *view.proc;
    const bool exited = p.stats.exited_ns != 0;
    // In double: a huge --leak-after must not overflow 64-bit nanoseconds.
    const double leak_after_ns = opts.leak_after_s * 1e9;

    ProcessReport r;
    r.pid = p.pid;
    r.comm = p.comm;
    r.container_id = p.container_id;
    r.pod_uid = p.pod_uid;
    r.exited = exited;
    r.acquired = p.stats.acquired;
    r.released = p.stats.released;
    r.released_untracked = p.stats.released_untracked;
    r.released_inherited = p.stats.released_inherited;
    r.pings = p.stats.pings;
    r.resets = p.stats.resets;
    r.dropped = dropped_of(p.stats);
    if (take)
        r.sockets = std::move(*take);
    else if (sockets)
        r.sockets = *sockets;
    r.dropped_stacks = p.stats.dropped_stacks;
    r.stacks_unwound = p.stacks_unwound;
    r.stacks_truncated = p.stacks_truncated;
    r.python_stacks = p.python_stacks;
    r.python_truncated = p.python_truncated;

    std::map<SiteKey, SiteRow> sites;
    // Names of sites whose entry was dropped, and of last users: once per key.
    std::map<SiteKey, SharedText> unnamed, last_users;
    auto site_name = [&](const SiteKey& key) {
        auto [it, fresh] = unnamed.try_emplace(key);
        if (fresh) {
            RawSite unknown;  // its site entry was dropped: name it by its key alone
            unknown.pid = p.pid;
            unknown.site = key;
            it->second = name_site(unknown);
        }
        return it->second;
    };
    auto last_user_name = [&](const RawSite& use) {
        auto [it, fresh] = last_users.try_emplace(use.site);
        if (fresh)
            it->second = name_site(use);
        return it->second;
    };
    for (const auto& [key, s] : view.sites) {
        SiteRow& row = sites[key];
        SiteReport& sr = row.report;
        sr.site = name_site(*s);
        sr.acquired = s->stats.acquired;
        sr.released = s->stats.released;
        sr.avg_ms = s->stats.released ? s->stats.hold_ns_total / kNsPerMs / s->stats.released : 0;
        sr.max_ms = s->stats.hold_ns_max / kNsPerMs;
        if (site_frames)
            sr.frames = site_frames(*s);
        row.name = sr.site;
        row.pooled = pools.pooled(sr.frames);
    }

    // Live handles oldest first (ties by address), sorted before their rows
    // are made: a row is big, a pointer is not (100,000 rows at scale).
    // The order is of indices into view.conns, each with its age and
    // address at hand (a sort of pointers read both through them at each
    // comparison); each handle's facts are found in the maps' own order.
    struct Aged {
        double age_ms;
        uint64_t conn;
        uint32_t index;
    };
    const std::vector<const RawConn*>& conns = view.conns;
    std::vector<Aged> order(conns.size());
    for (size_t i = 0; i < conns.size(); i++) {
        const RawConn* c = conns[i];
        const uint64_t age_ns = raw.now_ns > c->info.acquired_ns ? raw.now_ns - c->info.acquired_ns : 0;
        order[i] = {age_ns / kNsPerMs, c->conn, static_cast<uint32_t>(i)};
    }
    if (!exited)
        std::sort(order.begin(), order.end(), [](const Aged& a, const Aged& b) {
            return a.age_ms != b.age_ms ? a.age_ms > b.age_ms : a.conn < b.conn;
        });
    r.connections.reserve(exited ? 0 : conns.size());
    const std::vector<HandleFacts> facts = exited ? std::vector<HandleFacts>{} : facts_of(p.pid, conns, raw, r.sockets);
    static const ConnSocket no_socket;
    // Live handles by known state, counted by enum and named at the end.
    using StateCounts = std::array<uint64_t, static_cast<size_t>(ConnState::broken) + 1>;
    StateCounts proc_states{};
    std::map<SiteReport*, StateCounts> site_states;
    SiteReport* counted_site = nullptr;  // the last handle's site and its counts: a process's handles repeat it
    StateCounts* counted = nullptr;
    // A pooled handle's leak is its borrower's, its last user's (DESIGN.md),
    // not the site where the pool made it: the row of that name, else a row
    // of its own, where nothing was acquired. Without a known last user it
    // stays at its acquiring site.
    std::map<std::string, SiteReport> borrowers;
    std::map<std::string, SiteReport*, std::less<>> rows_by_name;  // made at the first borrower
    auto charge_borrower = [&](const ConnReport& cr, double held_ms) {
        if (rows_by_name.empty())
            for (auto& [key, row] : sites)
                rows_by_name.emplace(row.report.site, &row.report);
        SiteReport*& row = rows_by_name[cr.last_used_site.str()];
        if (!row) {
            SiteReport& b = borrowers[cr.last_used_site.str()];
            b.site = cr.last_used_site.str();
            b.frames = cr.last_used_frames;
            row = &b;
        }
        row->leaks++;
        row->max_ms = std::max(row->max_ms, held_ms);
    };
    // A process's handles mostly share a site: the last one's row at hand.
    const SiteKey* looked_up = nullptr;
    SiteRow* looked_up_row = nullptr;
    for (const Aged& a : order) {
        const size_t i = a.index;
        const RawConn* c = conns[i];
        if (!looked_up || !(*looked_up == c->site)) {
            auto it = sites.find(c->site);
            looked_up = &c->site;
            looked_up_row = it != sites.end() ? &it->second : nullptr;
        }
        SiteRow* row = looked_up_row;
        SiteReport* sr = row ? &row->report : nullptr;
        if (exited) {
            r.leaked_at_exit++;
            if (sr) {
                sr->leaked_at_exit++;
                // Held until the exit: still the site's longest hold (it
                // showed while live, and must not drop to 0 once exited).
                if (p.stats.exited_ns > c->info.acquired_ns)
                    sr->max_ms = std::max(sr->max_ms, (p.stats.exited_ns - c->info.acquired_ns) / kNsPerMs);
            }
            continue;
        }
        // A handle acquired after the maps were read has a later timestamp.
        const uint64_t age_ns = raw.now_ns > c->info.acquired_ns ? raw.now_ns - c->info.acquired_ns : 0;
        r.connections.emplace_back();
        ConnReport& cr = r.connections.back();
        cr.conn = c->conn;
        cr.tid = c->info.tid;
        cr.site = row ? row->name : site_name(c->site);
        cr.age_ms = age_ns / kNsPerMs;
        cr.acquired_ns = c->info.acquired_ns;
        cr.frames = sr ? sr->frames : nullptr;
        cr.pooled = row && row->pooled;
        if (const HandleState* h = facts[i].state) {
            cr.state_known = true;
            cr.state = h->state;
            cr.backend_pid = h->backend_pid;
            cr.database = h->database;
            cr.user = h->user;
            const uint64_t since = std::max<uint64_t>(h->state_since_ns, c->info.acquired_ns);
            cr.state_ms = raw.now_ns > since ? (raw.now_ns - since) / kNsPerMs : 0;
        }
        const ConnSocket& sock = facts[i].socket ? *facts[i].socket : no_socket;
        add_last_user(cr, *c, sock, raw.now_ns, last_user_name, site_frames, raw.use_stacks);
        if (r.sockets.tracked)
            join_socket(cr, sock, texts);
        // A pooled handle is held by its pool for good: it leaks when
        // borrowed and not given back, seen as a transaction left open with
        // no traffic: the kernel's idle_ms where known, else no state
        // change between reads.
        double held_ms = age_ns / kNsPerMs;  // what the rule below measures
        // Only a leak by the pooled rule (borrowed, kept in a transaction) is
        // its last user's: one by age (its state not read) may sit idle in
        // its pool, its last user long done with it.
        const bool pooled_rule = cr.pooled && cr.state_known && cr.state != ConnState::unknown;
        if (pooled_rule) {
            held_ms = cr.idle_ms >= 0 ? cr.idle_ms : cr.state_ms;
            cr.leak = in_transaction(cr.state) && held_ms * kNsPerMs >= leak_after_ns;
        } else {
            cr.leak = static_cast<double>(age_ns) >= leak_after_ns;
        }
        r.active++;
        r.leaks += cr.leak;
        const bool borrowed_leak = cr.leak && pooled_rule && !cr.last_used_site.empty();
        if (borrowed_leak)
            charge_borrower(cr, held_ms);
        const bool state_counted = cr.state_known && cr.state != ConnState::unknown;
        if (state_counted)
            proc_states[static_cast<size_t>(cr.state)]++;
        if (sr) {
            sr->active++;
            sr->leaks += cr.leak && !borrowed_leak;
            sr->max_ms = std::max(sr->max_ms, age_ns / kNsPerMs);
            if (state_counted) {
                if (sr != counted_site) {
                    counted_site = sr;
                    counted = &site_states[sr];
                }
                (*counted)[static_cast<size_t>(cr.state)]++;
            }
        }
    }
    auto name_states = [](const StateCounts& counts, std::map<std::string, uint64_t>& into) {
        for (size_t s = 0; s < counts.size(); s++)
            if (counts[s])
                into[conn_state_name(static_cast<ConnState>(s))] += counts[s];
    };
    name_states(proc_states, r.states);
    for (auto& [sr, counts] : site_states)
        name_states(counts, sr->states);
    r.last_users = tally_last_users(r.connections);

    for (auto& [key, row] : sites)
        r.sites.push_back(std::move(row.report));
    for (auto& [name, row] : borrowers)
        r.sites.push_back(std::move(row));
    std::sort(r.sites.begin(), r.sites.end(), worse_site);
    if (r.sites.size() > opts.top_sites)
        r.sites.resize(opts.top_sites);
    r.sockets.tracking_discrepancy = static_cast<int64_t>(r.sockets.db_sockets) - static_cast<int64_t>(r.active);
    return r;
}

}  // namespace

std::vector<std::string> ModelOptions::default_pool_frames()
{
    // Python frames read "getconn (/usr/lib/python3/dist-packages/psycopg2/pool.py:1)".
    return {R"([(/]psycopg2/pool\.py:)", R"([(/]sqlalchemy/pool/)", R"([(/]psycopg_pool/)"};
}

void fold_exited(ExitedGroup& group, const ProcessReport& p)
{
    if (group.comm.empty())
        group.comm = p.comm;
    group.processes++;
    group.acquired += p.acquired;
    group.released += p.released;
    group.released_untracked += p.released_untracked;
    group.released_inherited += p.released_inherited;
    group.leaked_at_exit += p.leaked_at_exit;
    group.pings += p.pings;
    group.resets += p.resets;
    group.dropped += p.dropped;
    group.dropped_stacks += p.dropped_stacks;
    group.stacks_unwound += p.stacks_unwound;
    group.stacks_truncated += p.stacks_truncated;
    for (const SiteReport& s : p.sites) {
        auto it =
            std::find_if(group.sites.begin(), group.sites.end(), [&](const SiteReport& g) { return g.site == s.site; });
        if (it == group.sites.end()) {
            SiteReport folded = s;
            folded.frames = nullptr;  // stacks of exited processes are not kept
            folded.active = folded.leaks = 0;
            group.sites.push_back(std::move(folded));
            continue;
        }
        const uint64_t released = it->released + s.released;
        // The mean over both, weighted by the releases behind each.
        it->avg_ms = released ? (it->avg_ms * it->released + s.avg_ms * s.released) / released : 0;
        it->max_ms = std::max(it->max_ms, s.max_ms);
        it->acquired += s.acquired;
        it->released = released;
        it->leaked_at_exit += s.leaked_at_exit;
    }
    std::sort(group.sites.begin(), group.sites.end(), worse_site);
}

namespace {

// take_sockets (raw.sockets itself, or null): each process's socket report
// is moved out of it rather than copied (100,000 handles' sockets at scale).
Snapshot build(const RawState& raw, std::map<uint32_t, ProcessSocketReport>* take_sockets, const ModelOptions& opts,
               const SiteNamer& name_site, const SiteFrames& site_frames)
{
    std::map<uint32_t, ProcessView> views;
    for (const RawProcess& p : raw.processes)
        views[p.pid].proc = &p;
    // The handles come in runs of one pid (the maps are read in key order):
    // one lookup per run, not per handle (100,000 at scale).
    auto view = views.end();
    for (const RawConn& c : raw.conns) {
        if (view == views.end() || view->first != c.pid)
            view = views.find(c.pid);
        if (view != views.end())
            view->second.conns.push_back(&c);
    }
    for (const RawSite& s : raw.sites)
        if (auto it = views.find(s.pid); it != views.end())
            it->second.sites[s.site] = &s;

    Snapshot snap;
    snap.wall_time_s = raw.wall_time_s;
    snap.leak_after_s = opts.leak_after_s;
    snap.totals.sockets_tracked = raw.sockets_tracked;
    snap.frames_shown = opts.frames_shown;
    snap.connections_shown = opts.connections_shown;
    snap.connections_listed_max = opts.connections_listed_max;
    PoolFrames pools(opts.pool_frames);
    RowTexts texts;
    for (const auto& [pid, view] : views) {
        const ProcessSocketReport* sockets = nullptr;
        ProcessSocketReport* take = nullptr;
        if (auto it = raw.sockets.find(pid); it != raw.sockets.end())
            sockets = &it->second;
        if (sockets && take_sockets)
            take = &take_sockets->at(pid);
        ProcessReport pr = build_process(view, raw, sockets, take, opts, name_site, site_frames, pools, texts);
        Totals& t = snap.totals;
        t.acquired += pr.acquired;
        t.released += pr.released;
        t.active += pr.active;
        t.leaks += pr.leaks;
        t.leaked_at_exit += pr.leaked_at_exit;
        t.dropped += pr.dropped;
        t.db_sockets += pr.sockets.db_sockets;
        t.tracking_discrepancy += pr.sockets.tracking_discrepancy;
        snap.processes.push_back(std::move(pr));
    }
    for (const ExitedGroup& g : raw.exited_folded) {
        Totals& t = snap.totals;
        t.acquired += g.acquired;
        t.released += g.released;
        t.leaked_at_exit += g.leaked_at_exit;
        t.dropped += g.dropped;
        snap.exited_folded_processes += g.processes;
    }
    snap.exited_folded = raw.exited_folded;
    if (snap.totals.acquired)
        snap.totals.leak_ratio = 100.0 * snap.totals.leaks / snap.totals.acquired;
    bound_last_users(snap, opts.top_sites);
    return snap;
}

}  // namespace

Snapshot build_snapshot(const RawState& raw, const ModelOptions& opts, const SiteNamer& name_site,
                        const SiteFrames& site_frames)
{
    return build(raw, nullptr, opts, name_site, site_frames);
}

Snapshot build_snapshot(RawState&& raw, const ModelOptions& opts, const SiteNamer& name_site,
                        const SiteFrames& site_frames)
{
    return build(raw, &raw.sockets, opts, name_site, site_frames);
}

std::vector<size_t> connections_listed(const Snapshot& snap)
{
    std::vector<size_t> listed(snap.processes.size());
    size_t candidates = 0;
    for (size_t i = 0; i < snap.processes.size(); i++)
        candidates += listed[i] = std::min(snap.processes[i].connections.size(), snap.connections_shown);
    if (candidates <= snap.connections_listed_max)
        return listed;
    // Over the bound: the oldest connections_listed_max of the candidates.
    struct Candidate {
        double age_ms;
        uint32_t process;
        uint32_t index;
    };
    std::vector<Candidate> all;
    all.reserve(candidates);
    for (size_t i = 0; i < snap.processes.size(); i++)
        for (size_t c = 0; c < listed[i]; c++)
            all.push_back(
                {snap.processes[i].connections[c].age_ms, static_cast<uint32_t>(i), static_cast<uint32_t>(c)});
    auto older = [](const Candidate& a, const Candidate& b) {
        if (a.age_ms != b.age_ms)
            return a.age_ms > b.age_ms;
        return std::tie(a.process, a.index) < std::tie(b.process, b.index);
    };
    const auto keep = all.begin() + static_cast<std::ptrdiff_t>(snap.connections_listed_max);
    std::nth_element(all.begin(), keep, all.end(), older);
    std::fill(listed.begin(), listed.end(), 0);
    for (auto it = all.begin(); it != keep; ++it)
        listed[it->process]++;
    return listed;
}

bool touched_libpq(const ProcessReport& p)
{
    return p.acquired || p.released || p.released_untracked || p.released_inherited || p.pings || p.resets ||
           p.leaked_at_exit || p.dropped || p.dropped_stacks || !p.sites.empty() || !p.connections.empty() ||
           p.sockets.db_sockets || p.sockets.closed_at_exit || p.sockets.dropped;
}

bool quiet_helper(const ProcessReport& p)
{
    return p.exited && !touched_libpq(p);
}

}  // namespace connleak
