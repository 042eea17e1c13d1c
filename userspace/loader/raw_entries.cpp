#include "raw_entries.h"

#include <cstring>

namespace connleak {

RawProcess raw_process(uint32_t pid, const proc_stats& stats)
{
    RawProcess p;
    p.pid = pid;
    p.comm.assign(stats.comm, strnlen(stats.comm, sizeof(stats.comm)));
    p.last_poll_ns = stats.last_poll_ns;
    ProcessCounts& c = p.stats;
    c.acquired = stats.acquired;
    c.released = stats.released;
    c.released_untracked = stats.released_untracked;
    c.released_inherited = stats.released_inherited;
    c.pings = stats.pings;
    c.resets = stats.resets;
    c.dropped_conns = stats.dropped_conns;
    c.dropped_sites = stats.dropped_sites;
    c.dropped_threads = stats.dropped_threads;
    c.dropped_children = stats.dropped_children;
    c.dropped_inherited = stats.dropped_inherited;
    c.dropped_stacks = stats.dropped_stacks;
    c.exited_ns = stats.exited_ns;
    return p;
}

ConnRow conn_row(const conn_key& key, const conn_info& info)
{
    ConnRow r;
    r.tgid = key.tgid;
    r.conn = key.conn;
    r.start_ns = info.start_ns;
    r.acquired_ns = info.acquired_ns;
    r.tid = info.tid;
    r.stack = info.stack;
    r.site = info.site;
    return r;
}

RawConn raw_conn(const ConnRow& row)
{
    RawConn c;
    c.pid = row.tgid;
    c.conn = row.conn;
    c.info.start_ns = row.start_ns;
    c.info.acquired_ns = row.acquired_ns;
    c.info.tid = row.tid;
    c.info.stack = row.stack;
    c.site = SiteKey::caller(row.site);
    return c;
}

RawStack raw_stack(const stack_key& key, const stack_stats& stats)
{
    RawStack s;
    s.pid = key.tgid;
    s.stack = key.stack;
    s.stats.acquired = stats.acquired;
    s.stats.released = stats.released;
    s.stats.hold_ns_total = stats.hold_ns_total;
    s.stats.hold_ns_max = stats.hold_ns_max;
    s.caller_site = stats.site;
    return s;
}

RawSite raw_site(const site_key& key, const site_stats& stats)
{
    RawSite s;
    s.pid = key.tgid;
    s.site = SiteKey::caller(key.site);
    s.stats.acquired = stats.acquired;
    s.stats.released = stats.released;
    s.stats.hold_ns_total = stats.hold_ns_total;
    s.stats.hold_ns_max = stats.hold_ns_max;
    s.location.file_offset = stats.file_offset;
    s.location.inode = stats.inode;
    s.location.dev = stats.dev;
    s.location.module.assign(stats.module, strnlen(stats.module, sizeof(stats.module)));
    return s;
}

}  // namespace connleak
