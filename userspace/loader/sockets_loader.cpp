#include "sockets_loader.h"

#include <algorithm>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpf_util.h"
#include "cgroup2_root.h"
#include "clock.h"
#include "connleak.h"
#include "digest_mix.h"
#include "libpq_layout_file.h"
#include "sock_io.h"
#include "socket_inputs.h"
#include "sockets.h"
#include "sockets.skel.h"

namespace connleak {
namespace {

// Not in libbpf 1.1's enum (kernel >= 6.7).
constexpr int kCgroupUnixConnect = 49;
// A closed libpq socket whose handle is gone is kept this long: its handle
// may be acquired after the conns map was read.
constexpr uint64_t kClosedGraceNs = 30ULL * 1000000000ULL;

// However little changed, a process's fd table is read in full this often,
// or, past 120 processes, once per kFdTableNetReadNs x processes: at most 4
// such reads a second (each ~0.7 ms at 100 fds; at 1,000 processes every
// 30 s cost every report 20-30 ms; now a table is read every 250 s). What
// it catches is rare: a socket fd closed while another process keeps the
// socket, and another fd opened in the same interval.
constexpr uint64_t kFdTableRefreshNs = 30ULL * 1000000000ULL;
constexpr uint64_t kFdTableNetReadNs = 250ULL * 1000000ULL;

// What of a process's socket records a scan depends on: which sockets it
// connected, and their TCP state changes.
uint64_t records_digest(const std::vector<SocketRecord>& records)
{
    uint64_t h = records.size();
    for (const SocketRecord& r : records)
        for (uint64_t v : {r.sk, r.inode, r.conn, r.connect_ns, r.established_ns, r.peer_closed_ns, r.closed_ns,
                           static_cast<uint64_t>(r.tcp())})
            h = digest_mix(h, v);
    return h;
}

SocketRecord to_record(uint64_t sk, const sock_rec& r)
{
    SocketRecord out;
    out.sk = sk;
    out.tgid = r.tgid;
    out.conn = r.conn;
    out.inode = r.inode;
    out.connect_ns = r.connect_ns;
    out.established_ns = r.established_ns;
    out.peer_closed_ns = r.peer_closed_ns;
    out.closed_ns = r.closed_ns;
    if (r.family == SOCKETS_AF_INET)
        out.peer = Peer::inet4(r.addr, r.port);
    else if (r.family == SOCKETS_AF_INET6)
        out.peer = Peer::inet6(r.addr, r.port);
    if (r.local_port && r.family == SOCKETS_AF_INET)
        out.local = Peer::inet4(r.local_addr, r.local_port);
    else if (r.local_port && r.family == SOCKETS_AF_INET6)
        out.local = Peer::inet6(r.local_addr, r.local_port);
    if (r.family == SOCKETS_AF_UNIX)
        out.peer = Peer::unix_path(r.path, sizeof(r.path));
    return out;
}

// What the send and receive hooks saw on it (bpf/sock_io.bpf.h).
void add_traffic(SocketRecord& out, const sock_io& io)
{
    out.last_io_ns = std::max({io.created_ns, io.last_send_ns, io.last_recv_ns});
    out.traffic = io.last_send_ns || io.last_recv_ns;
    out.use_ns = io.use_ns;
    out.use_tid = io.use_tid;
    out.use_stack = io.use_stack;
}

sockets_bpf* open_and_load(int procs_map_fd, const SocketConfig& cfg, bool with_unix, int& err)
{
    sockets_bpf* skel = sockets_bpf__open();
    if (!skel) {
        err = -errno;
        return nullptr;
    }
    err = bpf_map__reuse_fd(skel->maps.procs, procs_map_fd);
    if (!err && cfg.sock_io_fd >= 0)
        err = bpf_map__reuse_fd(skel->maps.sock_io, cfg.sock_io_fd);
    if (!err && cfg.sock_io_mark_fd >= 0)
        err = bpf_map__reuse_fd(skel->maps.sock_io_mark, cfg.sock_io_mark_fd);
    if (!err && cfg.sock_io_hooks_fd >= 0)
        err = bpf_map__reuse_fd(skel->maps.sock_io_hooks, cfg.sock_io_hooks_fd);
    if (!err && cfg.sock_io_writes_fd >= 0)
        err = bpf_map__reuse_fd(skel->maps.sock_io_writes, cfg.sock_io_writes_fd);
    if (!err && cfg.io_wake_fd >= 0)
        err = bpf_map__reuse_fd(skel->maps.io_wake, cfg.io_wake_fd);
    if (!err && cfg.sock_io_cgroups_fd >= 0)
        err = bpf_map__reuse_fd(skel->maps.sock_io_cgroups, cfg.sock_io_cgroups_fd);
    if (!err && cfg.max_socks)
        err = bpf_map__set_max_entries(skel->maps.socks, cfg.max_socks);
    if (!err) {
        if (with_unix)
            err = bpf_program__set_expected_attach_type(skel->progs.unix_connect,
                                                        static_cast<bpf_attach_type>(kCgroupUnixConnect));
        else
            err = bpf_program__set_autoload(skel->progs.unix_connect, false);
    }
    if (!err)
        err = sockets_bpf__load(skel);
    if (err) {
        sockets_bpf__destroy(skel);
        return nullptr;
    }
    return skel;
}

}  // namespace

Result<std::unique_ptr<SocketTracer>> SocketTracer::load(int procs_map_fd, const SocketConfig& cfg)
{
    std::unique_ptr<SocketTracer> t(new SocketTracer());
    for (uint16_t port : cfg.db_ports)
        t->rules_.ports.push_back(port);
    if (cfg.db_ports.empty())
        t->rules_.ports.push_back(5432);
    t->rules_.hosts = cfg.db_hosts;
    for (const std::string& p : cfg.db_sockets)
        if (p.size() >= SOCKETS_PATH_LEN)
            return Error{"--db-socket " + p + ": longer than a Unix socket path can be"};
    t->rules_.paths = cfg.db_sockets;
    t->traffic_ = cfg.sock_io_fd >= 0;
    // The hooks' writes are counted in the connleak object's counter: without
    // it (an own one, bumped by nothing but this object) every report walks.
    t->writes_counted_ = cfg.sock_io_writes_fd >= 0;

    // The Unix hook needs kernel >= 6.7: without it, the rest still works.
    int err = 0;
    bool with_unix = true;
    t->skel_ = open_and_load(procs_map_fd, cfg, true, err);
    if (!t->skel_) {
        with_unix = false;
        t->skel_ = open_and_load(procs_map_fd, cfg, false, err);
    }
    if (!t->skel_)
        return Error{"cannot load the socket BPF programs: " + bpf_errstr(err)};

    for (const std::string& p : cfg.db_sockets) {
        char key[SOCKETS_PATH_LEN] = {};
        std::memcpy(key, p.data(), p.size());
        uint8_t one = 1;
        if (bpf_map_update_elem(bpf_map__fd(t->skel_->maps.db_paths), key, &one, BPF_ANY) != 0)
            return Error{"cannot add --db-socket " + p + ": " + errstr(errno)};
    }

    struct {
        const char* what;
        bpf_program* prog;
    } tps[] = {{"tp_btf/inet_sock_set_state", t->skel_->progs.tcp_state},
               {"tp_btf/sched_process_exit", t->skel_->progs.thread_exit}};
    for (const auto& tp : tps) {
        bpf_link* link = bpf_program__attach(tp.prog);
        if (!link)
            return Error{std::string("cannot attach ") + tp.what + ": " + bpf_errstr(errno)};
        t->links_.push_back(link);
    }

    std::string where = "no cgroup v2";
    if (with_unix) {
        int cg = open_cgroup2_root(where);
        if (cg >= 0) {
            t->unix_link_ = bpf_program__attach_cgroup(t->skel_->progs.unix_connect, cg);
            if (!t->unix_link_)
                where += ": " + errstr(errno);
            close(cg);
        }
    } else {
        where = "the kernel lacks BPF_CGROUP_UNIX_CONNECT (6.7+)";
    }
    if (!t->unix_link_)
        std::fprintf(stderr,
                     "connleak: warning: cannot hook Unix-socket connects (%s): Unix sockets opened while "
                     "attached are counted as untracked\n",
                     where.c_str());
    return t;
}

SocketTracer::~SocketTracer()
{
    if (unix_link_)
        bpf_link__destroy(unix_link_);
    destroy_links(links_);
    sockets_bpf__destroy(skel_);
}

// Where this libpq file keeps status and xactStatus, for the send hook
// (SOCK_IO_LAYOUT_COOKIE): read from the file before its probes exist, so a
// process's first query after it connects is judged by libpq's own state.
// (CONNLEAK_NO_LIBPQ_LAYOUT: the gap rule only, for tests and the bench.)
uint64_t SocketTracer::xact_layout_cookie(const std::string& path)
{
    if (!traffic_ || getenv("CONNLEAK_NO_LIBPQ_LAYOUT"))
        return SOCK_IO_UNKNOWN_LAYOUT;
    auto layout = read_libpq_layout(layout_symbols_, path);
    if (!layout) {
        std::fprintf(stderr, "connleak: warning: %s: no libpq layout (%s): last users by the idle-gap rule\n",
                     path.c_str(), layout.error().message.c_str());
        return SOCK_IO_UNKNOWN_LAYOUT;
    }
    return SOCK_IO_LAYOUT_COOKIE(layout.value().status, layout.value().xact_status);
}

Status SocketTracer::attach_libpq(const std::string& path, const std::vector<uint32_t>& pids)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        return Error{"cannot use libpq " + path + ": " + errstr(errno)};
    if (!probed_files_.insert({st.st_dev, st.st_ino}).second)
        return Ok{};
    const uint64_t layout = xact_layout_cookie(path);
    // Its entry only: whether the call still runs is told from its stack
    // slot when a socket connects (sockets.bpf.c, poll_running), which
    // spares every call the return probe's second trap.
    for (pid_t pid : probe_pids(pids)) {
        LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = layout, .func_name = "PQconnectPoll");
        bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.connect_poll_enter, pid, path.c_str(), 0, &opts);
        if (!link)
            return Error{"cannot attach uprobe PQconnectPoll in " + path + ": " + bpf_errstr(errno)};
        links_.push_back(link);
    }
    return Ok{};
}

void SocketTracer::add_process(uint32_t pid)
{
    if (auto inodes = read_socket_inodes(pid)) {
        memory_[pid].pre_attach = inodes.value();
        initial_[pid].assign(inodes.value().begin(), inodes.value().end());
    }
}

// What the process holds. The tables of its network namespace are read only
// when some socket needs them: one the TCP hooks do not follow (made before
// the attach, inherited) leading to a database, one of those not classified
// yet, or a Unix socket to a database (whether its server closed it). A
// socket to something else keeps its first classification: its peer does
// not change. A socket that appears later without a record was not
// connected by the process (every TCP connect, and every Unix connect to a
// database's path, leaves one): accepted, most likely; it is not looked up,
// so a busy server's accepts cost no table reads.
//
// The fd table itself is read again only when something can have changed
// what it showed: its fd count changed (a socket closed or one opened), a
// socket record of the process changed (a connect, a TCP state change), the
// last read needed the tables (sockets whose state only the tables tell:
// held since before the attach, Unix sockets), or kFdTableRefreshNs passed.
// At 1,000 processes x 100 sockets, that is one stat() a process an
// interval instead of 100 readlink()s.
bool SocketTracer::scan(uint32_t pid, uint64_t now_ns, const std::vector<SocketRecord>& records, uint64_t digest,
                        ProcessScan& s)
{
    const uint64_t fds = open_fd_count(pid);  // before the read: a change after it is seen next time
    auto memo = fd_reads_.find(pid);
    auto last = memory_.find(pid);
    if (memo != fd_reads_.end() && memo->second.reusable && fds && fds == memo->second.fds &&
        digest == memo->second.records && now_ns < memo->second.refresh_ns && last != memory_.end() &&
        last->second.last_scan.ok) {
        fd_tables_reused_++;
        last->second.last_scan.time_ns = now_ns;  // used in place, not copied (100 sockets a process)
        return false;
    }
    s = ProcessScan{};
    s.time_ns = now_ns;
    auto inodes = read_socket_inodes(pid);
    if (!inodes)
        return true;
    fd_tables_read_++;
    std::map<uint64_t, const SocketRecord*> recorded;
    for (const SocketRecord& r : records)
        if (r.tgid == pid)
            recorded[r.inode] = &r;
    std::map<uint64_t, Classified>& kinds = kinds_[pid];
    for (auto it = kinds.begin(); it != kinds.end();)
        it = inodes.value().count(it->first) ? std::next(it) : kinds.erase(it);
    auto first = initial_.find(pid);
    if (first == initial_.end())  // first look: what it holds was not seen connecting
        first = initial_.emplace(pid, std::vector<uint64_t>(inodes.value().begin(), inodes.value().end())).first;
    std::vector<uint64_t>& initial = first->second;
    initial.erase(std::remove_if(initial.begin(), initial.end(), [&](uint64_t ino) { return !inodes.value().count(ino); }),
                  initial.end());
    auto held_first = [&](uint64_t ino) { return std::binary_search(initial.begin(), initial.end(), ino); };
    const std::set<Peer>& learned = memory_[pid].learned;
    auto db = [&](const Peer& p) { return rules_.matches(p) || learned.count(p); };

    bool need_tcp = false, need_unix = false;
    for (uint64_t ino : inodes.value()) {
        auto r = recorded.find(ino);
        auto k = kinds.find(ino);
        // Without a record at its first look: accepted, or connected after
        // the records were read (they are read before the scans). Settled
        // at the next look, whose records were read after this scan.
        if (k != kinds.end() && k->second.kind == Classified::Other && !k->second.settled) {
            if (r == recorded.end()) {
                k->second.settled = true;
            } else {
                kinds.erase(k);  // it connected after all: classified as any recorded socket
                k = kinds.end();
            }
        }
        if (k == kinds.end()) {
            if (r != recorded.end() ? !r->second->tcp() : held_first(ino))
                need_tcp = need_unix = true;  // classify it (a Unix record: the table says its state)
            else if (r == recorded.end())
                kinds[ino] = {Classified::Other, Peer(), false};  // appeared without connecting (so far)
            continue;
        }
        if (k->second.kind == Classified::Tcp && r == recorded.end() && db(k->second.peer))
            need_tcp = true;
        if (k->second.kind == Classified::Unix && db(k->second.peer))
            need_unix = true;
    }
    const uint64_t ns = netns_of(pid);
    const std::vector<InetSocket>* tcp = nullptr;
    const std::vector<UnixSocket>* unix_sockets = nullptr;
    if (need_tcp) {
        auto t = tcp_cache_.find(ns);
        if (t == tcp_cache_.end()) {
            auto read = read_tcp_sockets(pid);
            t = tcp_cache_.emplace(ns, read ? std::move(read.value()) : std::vector<InetSocket>{}).first;
        }
        tcp = &t->second;
    }
    if (need_unix) {
        auto u = unix_cache_.find(ns);
        if (u == unix_cache_.end()) {
            auto read = read_unix_sockets(pid);
            u = unix_cache_.emplace(ns, read ? std::move(read.value()) : std::vector<UnixSocket>{}).first;
        }
        unix_sockets = &u->second;
    }
    static const std::vector<InetSocket> no_tcp;
    static const std::vector<UnixSocket> no_unix;
    std::map<uint64_t, HeldSocket> fresh;
    for (const HeldSocket& h :
         held_sockets(inodes.value(), tcp ? *tcp : no_tcp, unix_sockets ? *unix_sockets : no_unix))
        fresh[h.inode] = h;

    // Classify what was looked up: TCP and Unix stream sockets by their
    // peer; anything else (listening, UDP, netlink...) for good.
    if (tcp && unix_sockets) {
        std::set<uint64_t> in_tcp, in_unix;
        for (const InetSocket& i : *tcp)
            in_tcp.insert(i.inode);
        for (const UnixSocket& u : *unix_sockets)
            in_unix.insert(u.inode);
        for (uint64_t ino : inodes.value()) {
            if (kinds.count(ino))
                continue;
            auto f = fresh.find(ino);
            if (f == fresh.end()) {
                kinds[ino] = {Classified::Other, Peer(), true};
            } else if (in_tcp.count(ino)) {
                kinds[ino] = {Classified::Tcp, f->second.peer, true};
                // Held at the first look (before the attach, or inherited):
                // libpq was not seen connecting it, the server may say what it is.
                const Peer& peer = f->second.peer;
                if (held_first(ino) && !db(peer) && is_local_pg_server(peer, *tcp, *unix_sockets))
                    rules_.learned.insert(peer);
            } else if (in_unix.count(ino)) {
                kinds[ino] = {f->second.peer.kind() == Peer::Kind::None ? Classified::Other : Classified::Unix,
                              f->second.peer, true};
            }
        }
    }
    for (uint64_t ino : inodes.value()) {
        if (auto f = fresh.find(ino); f != fresh.end()) {
            s.sockets.push_back(f->second);
        } else if (auto r = recorded.find(ino); r != recorded.end()) {
            s.sockets.push_back(
                {ino, r->second->peer, SocketState::Live, r->second->local});  // the record's TCP times tell
        } else if (auto k = kinds.find(ino); k != kinds.end() && k->second.kind != Classified::Other) {
            s.sockets.push_back({ino, k->second.peer, SocketState::Live, Peer()});  // not a database's: not looked at
        }
    }
    s.ok = true;
    // Used again only if every socket it holds tells its changes through
    // its record (TCP, connected while traced) or is nothing to look at
    // for good.
    bool reusable = !need_tcp && !need_unix;
    for (uint64_t ino : inodes.value()) {
        auto r = recorded.find(ino);
        auto k = kinds.find(ino);
        if (!(r != recorded.end() && r->second->tcp()) &&
            !(k != kinds.end() && k->second.kind == Classified::Other && k->second.settled))
            reusable = false;
    }
    FdTableRead& read = fd_reads_[pid];
    // A process's first refresh is spread by its pid over the period, so
    // processes started together are not read again all at once.
    const uint64_t net = std::max<uint64_t>(kFdTableRefreshNs, scanning_ * kFdTableNetReadNs);
    const uint64_t period = memo == fd_reads_.end() ? net + (pid % 30) * (net / 30) : net;
    read = {fds, digest, now_ns + period, reusable};
    return true;
}

// One read of the exit map for every process that exited since the last
// report (1,000 processes exiting together read it once, not 1,000 times).
std::map<uint32_t, std::set<uint64_t>> SocketTracer::take_exit_held(const std::set<uint32_t>& pids)
{
    const int fd = bpf_map__fd(skel_->maps.exit_held);
    auto exit_key_less = [](const exit_key& a, const exit_key& b) {
        return a.tgid != b.tgid ? a.tgid < b.tgid : a.inode < b.inode;
    };
    std::map<uint32_t, std::set<uint64_t>> out;
    if (pids.empty())
        return out;
    for (const auto& [k, held] : dump_map<exit_key, uint8_t>(fd, exit_key_less)) {
        if (!pids.count(k.tgid))
            continue;
        out[k.tgid].insert(k.inode);
        bpf_map_delete_elem(fd, &k);
    }
    return out;
}

bool SocketTracer::refresh_records()
{
    // The count first, then the map: the kernel bumps it after each change
    // is made, so a change the read missed leaves the count moved.
    const uint64_t changes = __atomic_load_n(&skel_->bss->socks_changes, __ATOMIC_ACQUIRE);
    if (records_valid_ && changes == records_changes_)
        return false;
    records_.clear();
    records_by_key_.clear();
    const auto rows = dump_map<uint64_t, sock_rec>(bpf_map__fd(skel_->maps.socks));
    // Each list made at its size: kept until the next change (100 records
    // a process at scale, which doubling would give room for 128).
    std::map<uint32_t, size_t> per_owner;
    for (const auto& row : rows)
        per_owner[row.second.tgid]++;
    for (const auto& [tgid, n] : per_owner)
        records_[tgid].records.reserve(n);
    for (const auto& [sk, r] : rows)
        records_[r.tgid].records.push_back(to_record(sk, r));
    records_by_key_.reserve(rows.size());
    // Pointers taken once every list is complete (no reallocation after).
    size_t numbered = 0;
    for (auto& [tgid, own] : records_) {
        own.numbered_from = numbered;
        numbered += own.records.size();
        own.digest = records_digest(own.records);
        for (SocketRecord& r : own.records)
            records_by_key_.push_back(&r);
    }
    std::sort(records_by_key_.begin(), records_by_key_.end(),
              [](const SocketRecord* a, const SocketRecord* b) { return a->sk < b->sk; });
    for (const auto& [tgid, own] : records_)
        learn_servers(own.records, rules_);
    records_changes_ = changes;
    records_valid_ = true;
    records_reads_++;
    return true;
}

uint64_t SocketTracer::sock_io_writes() const
{
    static const int cpus = libbpf_num_possible_cpus();
    std::vector<uint64_t> per_cpu(cpus > 0 ? cpus : 1);
    const uint32_t zero = 0;
    if (cpus <= 0 || bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sock_io_writes), &zero, per_cpu.data()) != 0)
        return UINT64_MAX;  // unknown: never equal to a walk's count, so always walked
    uint64_t sum = 0;
    for (uint64_t n : per_cpu)
        sum += n;
    return sum == UINT64_MAX ? 0 : sum;
}

void SocketTracer::refresh_traffic(bool records_read)
{
    if (!traffic_)
        return;
    // The count first, then the map (as with the records): a write the walk
    // misses leaves the count moved for the next report. Idle sockets (a
    // pool's, the scale benchmark's 100,000) cost one lookup, not a walk.
    const uint64_t writes = writes_counted_ ? sock_io_writes() : UINT64_MAX;
    if (!records_read && writes != UINT64_MAX && io_writes_walked_ == writes)
        return;
    io_writes_walked_.reset();  // set again once this walk is whole
    traffic_walks_++;
    // The map walked a batch at a time, not copied whole. Each batch is
    // sorted by owner and key, so each owner's records (sorted by key) are
    // walked forward beside it: looking 100,000 keys up in the records by
    // key instead read a record at random at each step of each search
    // (~4.5 ms a report at scale). A record without an entry of its own
    // handle has no traffic (its entry freed, or another socket's at that
    // key).
    std::vector<char> seen(records_by_key_.size(), 0);  // by OwnRecords::numbered_from + index
    std::set<uint32_t> moved;                            // owners whose records' traffic changed
    auto update = [&](SocketRecord& r, const sock_io* io) {
        SocketRecord now;  // only its traffic fields are used (no copy of the record's peers)
        if (io)
            add_traffic(now, *io);
        if (now.last_io_ns != r.last_io_ns || now.traffic != r.traffic || now.use_ns != r.use_ns ||
            now.use_tid != r.use_tid || now.use_stack != r.use_stack) {
            r.last_io_ns = now.last_io_ns;
            r.traffic = now.traffic;
            r.use_ns = now.use_ns;
            r.use_tid = now.use_tid;
            r.use_stack = now.use_stack;
            moved.insert(r.tgid);
        }
    };
    auto apply = [&](SocketRecord* r, const OwnRecords* own, const sock_io& io) {
        if (!r || r->conn != io.conn)
            return;
        if (!own)
            own = &records_.at(r->tgid);
        seen[own->numbered_from + static_cast<size_t>(r - own->records.data())] = 1;
        update(*r, &io);
    };
    // By key alone: an entry whose owner has no record at that key.
    auto by_key = [&](uint64_t sk) -> SocketRecord* {
        const auto it = std::lower_bound(records_by_key_.begin(), records_by_key_.end(), sk,
                                         [](const SocketRecord* r, uint64_t key) { return r->sk < key; });
        return it != records_by_key_.end() && (*it)->sk == sk ? *it : nullptr;
    };
    std::vector<uint32_t> order;
    // Entries sock_ops serves on a socket that may still be open (a closed
    // one receives nothing): a refused connect's stays with its live handle.
    size_t sock_ops_entries = 0;
    auto open_sock_ops = [](const SocketRecord* r, const sock_io& io) {
        return io.via_sock_ops && !(r && r->conn == io.conn && r->closed_ns);
    };
    const bool walked = walk_map_batches<uint64_t, sock_io>(
        bpf_map__fd(skel_->maps.sock_io), [&](const uint64_t* keys, const sock_io* ios, __u32 count) {
            order.resize(count);
            for (uint32_t i = 0; i < count; i++)
                order[i] = i;
            std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
                return std::tie(ios[a].tgid, keys[a]) < std::tie(ios[b].tgid, keys[b]);
            });
            auto own = records_.end();
            size_t pos = 0;
            for (uint32_t i : order) {
                if (own == records_.end() || own->first != ios[i].tgid) {
                    own = records_.find(ios[i].tgid);
                    pos = 0;
                }
                SocketRecord* r = nullptr;
                if (own != records_.end()) {
                    std::vector<SocketRecord>& recs = own->second.records;
                    while (pos < recs.size() && recs[pos].sk < keys[i])
                        pos++;
                    if (pos < recs.size() && recs[pos].sk == keys[i])
                        r = &recs[pos];
                }
                const bool owners = r != nullptr;  // found among its owner's records
                if (!r)
                    r = by_key(keys[i]);
                sock_ops_entries += open_sock_ops(r, ios[i]);
                apply(r, owners ? &own->second : nullptr, ios[i]);
            }
        });
    if (!walked) {  // no batch operations: every entry by key
        std::fill(seen.begin(), seen.end(), 0);
        sock_ops_entries = 0;
        for (const auto& [sk, io] : dump_map<uint64_t, sock_io>(bpf_map__fd(skel_->maps.sock_io))) {
            SocketRecord* r = by_key(sk);
            sock_ops_entries += open_sock_ops(r, io);
            apply(r, nullptr, io);
        }
    }
    for (auto& [tgid, own] : records_)
        for (size_t i = 0; i < own.records.size(); i++)
            if (!seen[own.numbered_from + i])
                update(own.records[i], nullptr);
    for (uint32_t tgid : moved)
        if (auto own = records_.find(tgid); own != records_.end())
            own->second.inputs_valid = false;
    io_writes_walked_ = writes;
    sock_ops_entries_ = sock_ops_entries;
}

bool SocketTracer::sock_ops_sockets_possible() const
{
    if (!traffic_ || !writes_counted_ || !io_writes_walked_ || *io_writes_walked_ == UINT64_MAX)
        return true;
    return sock_ops_entries_ != 0 || sock_io_writes() != *io_writes_walked_;
}

void SocketTracer::settle_records_inputs()
{
    for (auto& [tgid, own] : records_)
        if (!own.inputs_valid) {
            own.inputs = socket_records_inputs(own.records);
            own.inputs_valid = true;
        }
}

void SocketTracer::free_record(uint64_t sk)
{
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.socks), &sk);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.sock_io), &sk);
    records_valid_ = false;  // the kernel does not count userspace's deletes
}

void SocketTracer::annotate(RawState& raw)
{
    tcp_cache_.clear();
    unix_cache_.clear();
    // The records are read once, before the scans: a socket connected
    // after the read and held in a scan has no record yet (its kind is
    // settled at the next look, scan()), one closed after it is not held.
    refresh_traffic(refresh_records());
    settle_records_inputs();
    // An exited process's final report lasts while the session lists it:
    // once folded it is not listed again, and a running process with its
    // pid is another process (it must be scanned, not given the old report).
    std::map<uint32_t, bool> listed_exited;
    for (const RawProcess& p : raw.processes)
        listed_exited[p.pid] = p.stats.exited_ns != 0;
    for (auto it = final_.begin(); it != final_.end();) {
        auto l = listed_exited.find(it->first);
        it = l == listed_exited.end() || !l->second ? final_.erase(it) : std::next(it);
    }
    static const std::vector<SocketRecord> none;
    auto records_of = [&](uint32_t pid) -> const std::vector<SocketRecord>& {
        auto it = records_.find(pid);
        return it != records_.end() ? it->second.records : none;
    };
    static const uint64_t no_records_inputs = socket_records_inputs(none);
    auto records_inputs_of = [&](uint32_t pid) {
        auto it = records_.find(pid);
        return it != records_.end() ? it->second.inputs : no_records_inputs;
    };
    std::map<uint32_t, ProcessScan> scans;  // fresh reads; the others stand in memory_
    std::set<uint32_t> scanned;
    scanning_ = 0;
    for (const RawProcess& p : raw.processes)
        scanning_ += !p.stats.exited_ns && !final_.count(p.pid);
    for (const RawProcess& p : raw.processes)
        if (!p.stats.exited_ns && !final_.count(p.pid)) {
            scanned.insert(p.pid);
            auto own = records_.find(p.pid);
            ProcessScan s;
            const bool fresh = scan(p.pid, monotonic_ns(), own != records_.end() ? own->second.records : none,
                                    own != records_.end() ? own->second.digest : records_digest(none), s);
            if (fresh || !scan_version_.count(p.pid)) {
                scan_version_[p.pid] = ++scan_versions_;
                if (fresh)
                    scans[p.pid] = std::move(s);
            }
        }
    for (auto it = fd_reads_.begin(); it != fd_reads_.end();)  // no longer traced, or exited
        it = scanned.count(it->first) ? std::next(it) : fd_reads_.erase(it);

    // raw.conns comes by key (pid, then conn): one lookup per process's run.
    std::map<uint32_t, std::vector<HandleRef>> handles;
    std::vector<HandleRef>* run = nullptr;
    uint32_t run_pid = 0;
    for (const RawConn& c : raw.conns) {
        if (!run || c.pid != run_pid) {
            run = &handles[c.pid];
            run_pid = c.pid;
        }
        run->push_back({c.conn, c.info.tid, c.info.start_ns});
    }
    static const std::vector<HandleRef> no_handles;
    const int stats_fd = bpf_map__fd(skel_->maps.sock_stats);
    // Every process's counts in one read of the map, not a lookup each
    // (1,000 system calls a report at scale).
    const auto all_stats = dump_map<uint32_t, sock_stats>(stats_fd);
    auto stats = [&](uint32_t pid) {
        auto it = std::lower_bound(all_stats.begin(), all_stats.end(), pid,
                                   [](const auto& e, uint32_t key) { return e.first < key; });
        return it != all_stats.end() && it->first == pid ? it->second : sock_stats{};
    };

    // Exited processes: their walk flags first, then the exit map once. The
    // kernel notes a process's sockets before it flags the walk done, so a
    // flag read before the map means every socket of that process is in it.
    // A process whose walk has not come yet keeps its running report this
    // time (exit_walk_pending).
    std::map<uint32_t, std::pair<bool, sock_stats>> exit_stats;  // (found, stats)
    std::set<uint32_t> exited;
    const uint64_t now_ns = monotonic_ns();
    for (const RawProcess& p : raw.processes) {
        if (p.stats.exited_ns && !final_.count(p.pid)) {
            sock_stats st{};
            const bool found = bpf_map_lookup_elem(stats_fd, &p.pid, &st) == 0;
            if (exit_walk_pending(found && st.exit_walked, p.stats.exited_ns, now_ns)) {
                exit_pending_.insert(p.pid);
                continue;
            }
            exit_pending_.erase(p.pid);
            exit_stats[p.pid] = {found, st};
            exited.insert(p.pid);
        }
    }
    // One folded by the session while its walk was awaited: its kernel
    // entries go (a pid used again must not find them).
    std::set<uint32_t> vanished;
    for (uint32_t pid : exit_pending_)
        if (!listed_exited.count(pid))
            vanished.insert(pid);
    for (uint32_t pid : vanished) {
        exit_pending_.erase(pid);
        exited.insert(pid);
        bpf_map_delete_elem(stats_fd, &pid);
    }
    std::map<uint32_t, std::set<uint64_t>> exit_held = take_exit_held(exited);

    for (const RawProcess& p : raw.processes) {
        if (auto f = final_.find(p.pid); f != final_.end()) {
            raw.sockets[p.pid] = f->second;
            continue;
        }
        ProcessSocketMemory& mem = memory_[p.pid];
        if (p.stats.exited_ns && !exit_pending_.count(p.pid)) {
            // The kernel closed what it held: account it once, free its records.
            const std::set<uint64_t>& held = exit_held[p.pid];
            const auto& [found, st] = exit_stats[p.pid];
            const bool walked = found && st.exit_walked && !st.exit_dropped;
            const std::vector<SocketRecord>& own = records_of(p.pid);
            ProcessSocketReport rep = build_exit_report(p.stats.exited_ns, own, rules_, mem, walked ? &held : nullptr);
            rep.dropped = st.dropped;
            for (const SocketRecord& r : own)
                free_record(r.sk);
            bpf_map_delete_elem(stats_fd, &p.pid);
            memory_.erase(p.pid);
            kinds_.erase(p.pid);
            initial_.erase(p.pid);
            built_.erase(p.pid);
            scan_version_.erase(p.pid);
            final_[p.pid] = rep;
            raw.sockets[p.pid] = rep;
            continue;
        }
        auto fresh = scans.find(p.pid);
        const ProcessScan& scan = fresh != scans.end() ? fresh->second : mem.last_scan;
        const std::vector<SocketRecord>& own = records_of(p.pid);
        auto h = handles.find(p.pid);
        const std::vector<HandleRef>& own_handles = h != handles.end() ? h->second : no_handles;
        const uint64_t version = scan_version_[p.pid];
        Built& b = built_[p.pid];
        // The records' part kept from refresh_records/refresh_traffic:
        // 100,000 records at scale were digested field by field each report.
        const uint64_t records_inputs = records_inputs_of(p.pid);
        const uint64_t inputs = socket_inputs_of(records_inputs, own_handles, version, rules_.learned.size(), mem);
        if (!b.valid || b.scan_version != version || b.inputs != inputs) {
            b.report = build_socket_report(scan, own, own_handles, rules_, mem);
            b.scan_version = version;
            // build_socket_report may learn servers or prune pre-attach sockets (mem).
            b.inputs = socket_inputs_of(records_inputs, own_handles, version, rules_.learned.size(), mem);
            b.valid = true;
            reports_built_++;
        } else {
            reports_reused_++;
        }
        ProcessSocketReport rep = b.report;  // its handles' sockets shared, not copied (shared_map.h)
        const sock_stats st = stats(p.pid);
        rep.dropped = st.dropped;
        rep.traffic = traffic_;
        rep.last_poll_ns = p.last_poll_ns;  // the PQconnectPoll probe marks it in the process's filter entry
        raw.sockets[p.pid] = std::move(rep);
    }
    for (auto it = built_.begin(); it != built_.end();)  // no longer traced
        it = scanned.count(it->first) ? std::next(it) : built_.erase(it);
    for (auto it = scan_version_.begin(); it != scan_version_.end();)
        it = scanned.count(it->first) ? std::next(it) : scan_version_.erase(it);
    raw.sockets_tracked = true;
    collect_garbage(raw, handles);
}

// Frees records nobody needs: closed sockets outside libpq, libpq sockets a
// newer one of the same handle replaced, and those of finished handles
// (after a grace period). Per process, and only for a process where what
// it decides from can have changed: its records, its fd table read, its
// handles, or a grace period running (a quiet process costs one digest).
void SocketTracer::collect_garbage(const RawState& raw,
                                   const std::map<uint32_t, std::vector<HandleRef>>& handles_by_pid)
{
    const uint64_t now = monotonic_ns();
    std::set<uint32_t> running;
    for (const RawProcess& p : raw.processes)
        if (!final_.count(p.pid))
            running.insert(p.pid);
    static const std::vector<HandleRef> no_handles;
    std::map<uint32_t, uint64_t> keys;
    for (const auto& [tgid, own] : records_) {
        if (final_.count(tgid))
            continue;                // freed at exit
        if (!running.count(tgid)) {  // no longer traced
            for (const SocketRecord& r : own.records)
                free_record(r.sk);
            gone_since_.erase(tgid);
            continue;
        }
        auto h = handles_by_pid.find(tgid);
        const std::vector<HandleRef>& handles = h != handles_by_pid.end() ? h->second : no_handles;
        auto v = scan_version_.find(tgid);
        uint64_t key = digest_mix(own.digest, v != scan_version_.end() ? v->second : 0);
        for (const HandleRef& c : handles)
            key = digest_mix(key, c.conn);
        keys[tgid] = key;
        auto gone = gone_since_.find(tgid);
        if (auto last = garbage_keys_.find(tgid);
            last != garbage_keys_.end() && last->second == key && gone == gone_since_.end())
            continue;

        // This process's live handles and, per handle, its newest record.
        std::vector<uint64_t> live;
        live.reserve(handles.size());
        for (const HandleRef& c : handles)
            live.push_back(c.conn);
        std::sort(live.begin(), live.end());
        std::map<uint64_t, uint64_t> newest;  // conn -> its newest record's connect_ns
        for (const SocketRecord& r : own.records)
            if (r.conn) {
                uint64_t& n = newest[r.conn];
                n = std::max(n, r.connect_ns);
            }
        auto m = memory_.find(tgid);
        const ProcessScan* scan = m != memory_.end() ? &m->second.last_scan : nullptr;
        std::map<uint64_t, uint64_t> still_gone;  // record key -> when first seen closed
        for (const SocketRecord& r : own.records) {
            bool closed = r.closed_ns != 0;
            if (!closed && scan && scan->ok && r.connect_ns < scan->time_ns) {
                closed = true;
                for (const HeldSocket& held : scan->sockets)
                    if (held.inode == r.inode && held.state != SocketState::Closed)
                        closed = false;
            }
            if (!closed)
                continue;
            if (!r.conn) {
                free_record(r.sk);
                continue;
            }
            if (std::binary_search(live.begin(), live.end(), r.conn)) {
                if (newest[r.conn] > r.connect_ns)
                    free_record(r.sk);  // replaced by a newer socket of the same handle
                continue;
            }
            uint64_t since = now;
            if (gone != gone_since_.end())
                if (auto g = gone->second.find(r.sk); g != gone->second.end())
                    since = g->second;
            if (now - since >= kClosedGraceNs)
                free_record(r.sk);
            else
                still_gone[r.sk] = since;
        }
        if (still_gone.empty())
            gone_since_.erase(tgid);
        else
            gone_since_[tgid] = std::move(still_gone);
    }
    for (auto it = gone_since_.begin(); it != gone_since_.end();)
        it = keys.count(it->first) ? std::next(it) : gone_since_.erase(it);
    garbage_keys_ = std::move(keys);
}

}  // namespace connleak
