// The model's rows of live handles (ConnReport), made at scale (100,000 a
// report) from a walk of each process's handles by address alongside the
// state reads and the sockets, with their texts shared: each row must say
// what a lookup of its own handle says, on a random state.
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <string>

#include "model.h"
#include "shared_text.h"

using namespace connleak;

TEST_CASE("shared texts: one copy per text, read as a string", "[model]")
{
    TextPool pool;
    const SharedText a = pool.get("shop"), b = pool.get("analytics"), c = pool.get("shop");
    CHECK(&a.str() == &c.str());
    CHECK(&a.str() != &b.str());
    CHECK(a == std::string("shop"));
    CHECK(a != b);
    CHECK(pool.get("").empty());
    CHECK(SharedText().str().empty());
    SharedText t = std::string("x");
    CHECK(t.size() == 1);
    t.clear();
    CHECK(t.empty());
}

TEST_CASE("model rows: each live handle's state, socket and site, whatever the order", "[model]")
{
    std::mt19937_64 rng(16);
    auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
    RawState raw;
    raw.now_ns = 1'000'000'000'000ull;
    raw.sockets_tracked = true;
    for (uint32_t pid = 100; pid < 130; pid++) {
        RawProcess p;
        p.pid = pid;
        p.comm = "w";
        raw.processes.push_back(p);
        raw.sockets[pid].tracked = true;
        for (uint64_t k = 0; k < 3; k++) {
            RawSite s;
            s.pid = pid;
            s.site = SiteKey::stack(k);
            raw.sites.push_back(s);
        }
        const size_t handles = pick(60);
        for (size_t i = 0; i < handles; i++) {
            RawConn c;
            c.pid = pid;
            c.conn = 0x5000 + pick(1u << 20) * 16;  // any order, some ages equal
            c.info.acquired_ns = raw.now_ns - pick(4) * 1'000'000;
            c.site = SiteKey::stack(pick(4));  // 3: its site entry was dropped
            raw.conns.push_back(c);
            if (pick(3)) {
                HandleState h;
                h.state = static_cast<ConnState>(1 + pick(6));
                h.database = "db" + std::to_string(pick(3));
                h.user = "user_with_a_long_name_" + std::to_string(pick(2));
                h.backend_pid = static_cast<int32_t>(c.conn & 0xffff);
                raw.handles[{pid, c.conn}] = h;
            }
            if (pick(3)) {
                ConnSocket s;
                s.peer = "10.0.0." + std::to_string(pick(2)) + ":5432";
                s.state = pick(2) ? "open" : "";
                s.local = *parse_db_host("10.1.1.1:" + std::to_string(c.conn & 0xffff));
                s.inode = c.conn + 1;
                raw.sockets[pid].conns[c.conn] = s;
            }
        }
        // A state read and a socket of handles not live: matched to nothing.
        raw.handles[{pid, 0x1}] = HandleState{};
        raw.sockets[pid].conns[0x1] = ConnSocket{};
    }
    const RawState copy = raw;
    const Snapshot snap = build_snapshot(std::move(raw), ModelOptions{}, [](const RawSite& s) {
        return "site_" + std::to_string(s.site.value) + " (app/handlers.py:" + std::to_string(s.pid) + ")";
    });
    size_t rows = 0, with_state = 0, with_socket = 0;
    for (const ProcessReport& p : snap.processes) {
        std::map<std::string, const std::string*> site_copies;
        for (const ConnReport& c : p.connections) {
            rows++;
            auto h = copy.handles.find({p.pid, c.conn});
            REQUIRE(c.state_known == (h != copy.handles.end()));
            if (c.state_known) {
                with_state++;
                CHECK(c.state == h->second.state);
                CHECK(c.database == h->second.database);
                CHECK(c.user == h->second.user);
                // The handle's own copy (NamePairs' at run time), not one the model made.
                CHECK(&c.database.str() == &h->second.database.str());
                CHECK(&c.user.str() == &h->second.user.str());
                CHECK(c.backend_pid == h->second.backend_pid);
            }
            const auto& socks = copy.sockets.at(p.pid).conns;
            auto s = socks.find(c.conn);
            if (s != socks.end()) {
                with_socket++;
                CHECK(c.peer == s->second.peer);
                CHECK(c.local == s->second.local);
                CHECK(c.socket == (s->second.state.empty() ? "none" : s->second.state));
                CHECK(c.socket_inode == s->second.inode);
            } else {
                CHECK(c.peer.empty());
                CHECK(c.socket == "none");
                CHECK(c.socket_inode == 0);
            }
            // The rows of one site share its name's one copy.
            auto [it, fresh] = site_copies.emplace(c.site.str(), &c.site.str());
            CHECK(it->second == &c.site.str());
        }
    }
    CHECK(rows == copy.conns.size());
    CHECK(with_state > 100);
    CHECK(with_socket > 100);
}
