// Socket truth, the live part: loads sockets.bpf.c (TCP state changes, Unix
// connects, PQconnectPoll), scans the traced processes' sockets in /proc
// each interval, and hands each process's socket report to the model
// (RawState::sockets). Owns every libbpf object it makes (RAII).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model.h"
#include "proc_sockets.h"
#include "result.h"
#include "socket_model.h"
#include "symbolizer.h"

struct sockets_bpf;
struct bpf_link;

namespace connleak {

struct SocketConfig {
    std::vector<uint16_t> db_ports;       // empty: 5432
    std::vector<Peer> db_hosts;           // --db-host, parsed by the options (port 0: any)
    std::vector<std::string> db_sockets;  // Unix socket paths
    uint32_t max_socks = 0;               // socket records (--max-conns); 0: SOCKETS_MAX_SOCKS
    // The traffic maps of the connleak object (Tracer::sock_io_map_fd,
    // sock_io_mark_fd): filled here, read by its send/recv hooks. -1: own
    // ones, which no hook reads (no idle times).
    int sock_io_fd = -1, sock_io_mark_fd = -1;
    // Whether the send/recv tracepoints are attached, and the ring that
    // asks for them (Tracer::sock_io_hooks_fd, io_wake_fd). -1: own ones.
    int sock_io_hooks_fd = -1, io_wake_fd = -1;
    // The cgroups the TCP sock_ops program is attached over
    // (Tracer::sock_io_cgroups_fd). -1: an own, empty one.
    int sock_io_cgroups_fd = -1;
    // The per-CPU count of writes to sock_io (Tracer::sock_io_writes_fd):
    // an unmoved sum lets a report skip the map's walk. -1: an own one.
    int sock_io_writes_fd = -1;
};

class SocketTracer {
public:
    // Loads the BPF object sharing connleak.bpf.c's process filter (the fd
    // of its `procs` map) and attaches the TCP and Unix hooks.
    static Result<std::unique_ptr<SocketTracer>> load(int procs_map_fd, const SocketConfig& cfg);
    ~SocketTracer();
    SocketTracer(const SocketTracer&) = delete;
    SocketTracer& operator=(const SocketTracer&) = delete;

    // PQconnectPoll entry and return in this libpq (once per file), in
    // every process or in `pids` only (see Tracer::attach_libpq).
    Status attach_libpq(const std::string& path, const std::vector<uint32_t>& pids = {});

    // A process attached to by PID: the sockets it holds now predate the
    // attach. Call once the hooks are attached.
    void add_process(uint32_t pid);

    // Scans the live processes of raw, reads the records, and fills
    // raw.sockets (one report per process of raw.processes).
    void annotate(RawState& raw);

    bool unix_hook() const { return unix_link_ != nullptr; }

    // Fd tables read in full, and scans that used the last read again (scan()).
    uint64_t fd_tables_read() const { return fd_tables_read_; }
    uint64_t fd_tables_reused() const { return fd_tables_reused_; }
    // Process socket reports built, and handed out again unchanged; reads
    // of the record map (measurements, CONNLEAK_SCALE_STATS).
    uint64_t reports_built() const { return reports_built_; }
    uint64_t reports_reused() const { return reports_reused_; }
    uint64_t records_reads() const { return records_reads_; }
    // Whether a socket sock_ops serves can exist, whose receive times only
    // the TCP iterator reads (Tracer::refresh_traffic): false only when the
    // last whole walk of the traffic map found none and nothing was written
    // to it since (a new entry, sock_ops' included, is a write).
    bool sock_ops_sockets_possible() const;
    uint64_t traffic_walks() const { return traffic_walks_; }  // of the sock_io map (refresh_traffic)

private:
    SocketTracer() = default;
    // True with a fresh read in `out`; false when the process's last read
    // stands (memory_[pid].last_scan, its time moved to now_ns).
    bool scan(uint32_t pid, uint64_t now_ns, const std::vector<SocketRecord>& records, uint64_t records_digest,
              ProcessScan& out);
    // Reads the record map into records_ if the kernel changed it (or
    // userspace freed some) since the last read; true if it read it.
    bool refresh_records();
    // The traffic of every record, from the sock_io map: walked when the
    // records were read again (`records_read`) or the kernel wrote to the
    // map since the last walk (sock_io_writes).
    void refresh_traffic(bool records_read);
    uint64_t sock_io_writes() const;  // the per-CPU counts summed
    void settle_records_inputs();  // OwnRecords::inputs of the lists whose records or traffic moved
    // The sockets each of these exited processes held (and frees them).
    std::map<uint32_t, std::set<uint64_t>> take_exit_held(const std::set<uint32_t>& pids);
    void free_record(uint64_t sk);  // and its traffic entry
    void collect_garbage(const RawState& raw, const std::map<uint32_t, std::vector<HandleRef>>& handles_by_pid);
    uint64_t xact_layout_cookie(const std::string& path);

    // The exported accessors' addresses are in libpq's own symbols.
    static SymbolizerOptions without_debug_files()
    {
        SymbolizerOptions o;
        o.use_debug_files = false;
        return o;
    }

    sockets_bpf* skel_ = nullptr;
    std::vector<bpf_link*> links_;
    bpf_link* unix_link_ = nullptr;
    std::set<std::pair<dev_t, ino_t>> probed_files_;
    Symbolizer layout_symbols_{without_debug_files()};
    DbServers rules_;
    bool traffic_ = false;         // the send/recv hooks fill sock_io
    bool writes_counted_ = false;  // their writes counted in the shared sock_io_writes (SocketConfig)
    std::map<uint32_t, ProcessSocketMemory> memory_;
    std::map<uint32_t, ProcessSocketReport> final_;  // exited processes
    std::set<uint32_t> exit_pending_;                // exited, their fd walk awaited (exit_walk_pending)
    // pid -> record key -> when first seen closed (its handle finished)
    std::map<uint32_t, std::map<uint64_t, uint64_t>> gone_since_;
    struct Classified {
        enum Kind { Tcp, Unix, Other } kind;
        Peer peer;
        // Other without a record at its first look may have connected
        // after the records were read: settled at the next look.
        bool settled = true;
    };
    std::map<uint32_t, std::map<uint64_t, Classified>> kinds_;  // pid -> inode -> what it is
    // pid -> held at its first look, still held; sorted (a tree node was 48
    // bytes an inode, and at scale every socket is held at the first look).
    std::map<uint32_t, std::vector<uint64_t>> initial_;
    // A process's last full read of its fd table (scan()), used again while
    // nothing can have changed what it found.
    // (What it found is the process's memory_ last_scan.)
    struct FdTableRead {
        uint64_t fds = 0;         // its open fd count then (0: not known, never used again)
        uint64_t records = 0;     // a digest of its socket records then
        uint64_t refresh_ns = 0;  // from then on read in full again, whatever
        bool reusable = false;    // no socket it held needed the tables
    };
    std::map<uint32_t, FdTableRead> fd_reads_;
    size_t scanning_ = 0;  // processes this annotate() scans (the safety read's pace: kFdTableNetReadNs)
    // The record map's last read, by owner, each list by key; the kernel's
    // count of its changes then (sockets.bpf.c's socks_changes).
    struct OwnRecords {
        std::vector<SocketRecord> records;
        uint64_t digest = 0;  // records_digest, for scan()
        // socket_records_inputs (traffic included), for the report's
        // inputs; false: its records or their traffic moved, computed again.
        uint64_t inputs = 0;
        bool inputs_valid = false;
        size_t numbered_from = 0;  // the number of its first record, counted over records_ in order
    };
    std::map<uint32_t, OwnRecords> records_;
    // Into records_, by sk; the key read through the pointer (a pair with
    // the key was 16 bytes a record, 100,000 at scale).
    std::vector<SocketRecord*> records_by_key_;
    uint64_t records_changes_ = 0;
    bool records_valid_ = false;  // false: read again (never read, or userspace freed some)
    // Each process's last socket report, handed out again while what it
    // was built from is the same (model/socket_inputs).
    struct Built {
        uint64_t scan_version = 0;  // which fd table read it used
        uint64_t inputs = 0;        // socket_inputs_digest after the build
        bool valid = false;
        ProcessSocketReport report;
    };
    std::map<uint32_t, Built> built_;
    uint64_t scan_versions_ = 0;                 // fd table reads made (the last one's version)
    std::map<uint32_t, uint64_t> scan_version_;  // pid -> its scan's version
    std::map<uint32_t, uint64_t> garbage_keys_;  // pid -> what its last collect_garbage() pass decided from
    uint64_t reports_built_ = 0, reports_reused_ = 0, records_reads_ = 0;
    uint64_t traffic_walks_ = 0;
    std::optional<uint64_t> io_writes_walked_;  // sock_io_writes() before the last walk
    size_t sock_ops_entries_ = 0;               // entries sock_ops serves, in the last whole walk
    uint64_t fd_tables_read_ = 0, fd_tables_reused_ = 0;
    // Per network namespace, read once per annotate().
    std::map<uint64_t, std::vector<InetSocket>> tcp_cache_;
    std::map<uint64_t, std::vector<UnixSocket>> unix_cache_;
};

}  // namespace connleak
