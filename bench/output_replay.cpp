// Every output connleak makes of a report, for one seeded random sequence
// of raw states: the model, pool slots, leak notices (JSON and stderr
// text), the JSON snapshot, the text report, the live view's screen,
// /metrics and /health/detailed. Built against two versions of the
// libraries, the two outputs must be byte for byte the same: how a change
// to the model or the outputs is checked to change nothing (issue 16).
//   output_replay [SEED [REPORTS]] > out.txt
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "health_json.h"
#include "json_output.h"
#include "leak_notices.h"
#include "model.h"
#include "notices_text.h"
#include "pool_slots.h"
#include "prometheus_text.h"
#include "screen_layout.h"
#include "snapshot_document.h"
#include "text_report.h"
#include "trends.h"

using namespace connleak;

namespace {

const uint8_t kLoopback[4] = {127, 0, 0, 1};

struct Held {
    uint32_t pid;
    uint64_t conn, acquired_ns;
    SiteKey site, last_use;
    uint64_t last_use_ns;
};

class Replay {
public:
    explicit Replay(unsigned seed) : rng_(seed) {}

    RawState next()
    {
        now_ns_ += 2'000'000'000ull;
        // Processes come and go; handles are made, finished, change state.
        if (pids_.size() < 12 || pick(4) == 0)
            pids_.push_back(next_pid_++);
        if (pids_.size() > 6 && pick(6) == 0)
            exited_[pids_[pick(pids_.size())]] = now_ns_;
        for (uint32_t pid : pids_) {
            if (exited_.count(pid))
                continue;
            const size_t made = pick(40);
            for (size_t i = 0; i < made; i++) {
                Held h{pid,
                       0x550000000000ull + (next_conn_++) * 0x1e0,
                       now_ns_ - pick(5'000'000'000ull),
                       pick(5) == 0 ? SiteKey::caller(0x401000 + pick(3) * 0x10) : SiteKey::stack(pick(9)),
                       SiteKey::last_use(pick(7)),
                       pick(3) ? now_ns_ - pick(3'000'000'000ull) : 0};
                held_.push_back(h);
                acquired_[pid]++;
            }
        }
        std::vector<Held> kept;
        for (const Held& h : held_)
            if (exited_.count(h.pid) || pick(5))
                kept.push_back(h);
            else
                released_[h.pid]++;
        held_ = kept;

        RawState raw;
        raw.now_ns = now_ns_;
        raw.wall_time_s = 1'790'000'000 + static_cast<int64_t>(now_ns_ / 1'000'000'000ull);
        raw.sockets_tracked = true;
        for (uint32_t pid : pids_) {
            RawProcess p;
            p.pid = pid;
            p.comm = pid % 3 ? "api-worker" : "batch\tjob \xc3\xa9";
            p.stats.acquired = acquired_[pid];
            p.stats.released = released_[pid];
            p.stats.pings = pid % 4;
            if (auto e = exited_.find(pid); e != exited_.end())
                p.stats.exited_ns = e->second;
            p.container_id = pid % 5 == 0 ? "0123456789abcdef" : "";
            raw.processes.push_back(p);
            for (uint64_t k = 0; k < 9; k++) {
                if ((pid + k) % 4 == 0)
                    continue;  // a site entry dropped: named by its key
                RawSite s;
                s.pid = pid;
                s.site = k < 3 ? SiteKey::caller(0x401000 + k * 0x10) : SiteKey::stack(k);
                s.stats.acquired = acquired_[pid] / (k + 1);
                s.stats.released = released_[pid] / (k + 2);
                s.stats.hold_ns_total = s.stats.released * 1'234'567ull;
                s.stats.hold_ns_max = 9'876'543ull * (k + 1);
                raw.sites.push_back(s);
            }
            ProcessSocketReport& sr = raw.sockets[pid];
            sr.tracked = pid % 7 != 0;
            sr.db_sockets = pick(50);
            sr.untracked = pick(3);
            if (sr.untracked)
                sr.untracked_peers["10.0.0." + std::to_string(pid % 9) + ":5432"] = sr.untracked;
        }
        for (const Held& h : held_) {
            RawConn c;
            c.pid = h.pid;
            c.conn = h.conn;
            c.info.acquired_ns = h.acquired_ns;
            c.info.start_ns = h.acquired_ns - 1000;
            c.info.tid = h.pid + static_cast<uint32_t>(h.conn % 3);
            c.site = h.site;
            c.last_use = h.last_use;
            c.last_use_ns = h.last_use_ns;
            c.last_use_tid = c.info.tid;
            raw.conns.push_back(c);
            if (pick(6)) {
                HandleState st;
                st.state = static_cast<ConnState>(pick(7));
                st.backend_pid = static_cast<int32_t>(pick(3) ? 1000 + h.conn % 500 : 0);
                st.database = pick(4) ? "shop" : "analytics_reporting_db";
                st.user = pick(3) ? "app" : "reporting_user_name";
                st.state_since_ns = now_ns_ - pick(40'000'000'000ull);
                raw.handles[{h.pid, h.conn}] = st;
            }
            if (pick(5)) {
                ConnSocket s;
                s.peer = pick(2) ? "127.0.0.1:5432" : "[2001:db8::1234:5678]:6432";
                s.state = pick(6) ? "open" : pick(2) ? "peer_closed" : "closed";
                s.local = pick(2) ? Peer::inet4(kLoopback, static_cast<uint16_t>(40000 + h.conn % 20000)) : Peer();
                s.inode = 100000 + h.conn % 100000;
                s.last_io_ns = pick(4) ? now_ns_ - pick(30'000'000'000ull) : 0;
                s.use_ns = pick(3) ? h.last_use_ns : 0;
                raw.sockets[h.pid].conns[h.conn] = s;
            }
        }
        return raw;
    }

private:
    uint64_t pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

    std::mt19937_64 rng_;
    uint64_t now_ns_ = 1'000'000'000'000ull;
    uint32_t next_pid_ = 4000;
    uint64_t next_conn_ = 1;
    std::vector<uint32_t> pids_;
    std::map<uint32_t, uint64_t> exited_, acquired_, released_;
    std::vector<Held> held_;
};

std::string site_label(const SiteKey& k)
{
    const char* kind = k.kind == SiteKey::Kind::caller ? "caller" : k.kind == SiteKey::Kind::stack ? "stack" : "use";
    return std::string("handler_") + kind + "_" + std::to_string(k.value) +
           " (shop/routes_module.py:" + std::to_string(10 + k.value) + ")";
}

}  // namespace

int main(int argc, char** argv)
{
    const unsigned seed = argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 1;
    const int reports = argc > 2 ? std::atoi(argv[2]) : 200;
    Replay replay(seed);
    std::map<std::pair<int, uint64_t>, Frames> frames;
    auto frames_of = [&](const SiteKey& k) {
        Frames& f = frames[{static_cast<int>(k.kind), k.value}];
        if (!f) {
            std::vector<std::string> v{site_label(k), "dispatch_request (flask/app.py:1796)"};
            if (k.value % 3 == 0)
                v.push_back("getconn (/usr/lib/python3/dist-packages/psycopg2/pool.py:1)");
            f = std::make_shared<const std::vector<std::string>>(std::move(v));
        }
        return f;
    };
    ModelOptions opts;
    opts.leak_after_s = 3;
    opts.top_sites = 4;
    opts.connections_shown = 7;
    opts.connections_listed_max = 40;
    PoolSlots pools;
    LeakNotices notices;
    NoticeText notice_text;
    Trends trends;
    for (int r = 0; r < reports; r++) {
        RawState raw = replay.next();
        Snapshot snap = build_snapshot(
            std::move(raw), opts, [](const RawSite& s) { return site_label(s.site); },
            [&](const RawSite& s) { return frames_of(s.site); });
        pools.update(snap);
        const std::vector<Notice> batch = notices.update(snap);
        snap.notices.assign(notices.recent().begin(), notices.recent().end());
        trends.record(snap);
        std::string out = "=== report " + std::to_string(r) + "\n";
        out += notice_text.render(batch, {opts.leak_after_s, 3, r % 2 == 1});
        out += snapshot_text(snap);
        out += render_text_report(snap);
        for (const Line& line : layout_screen(snap, trends, ViewState{}, LayoutParams{120, 60}).lines)
            out += line_text(line) + "\n";
        out += prometheus_text(snap, 4);
        out += health_detailed_json(snapshot_to_json(snap), 4).dump(2) + "\n";
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
}
