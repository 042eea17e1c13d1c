// BPF map entries (connleak.h) into the model's plain raw state: the one
// place the kernel's layout meets the model's, so the model needs no BPF type.
#pragma once

#include "connleak.h"
#include "model.h"

namespace connleak {

RawProcess raw_process(uint32_t pid, const proc_stats& stats);

// A live-handle map entry as kept between reports (Tracer::conn_rows, one
// per live handle: 100,000 at scale): 48 bytes, the key's and the value's
// padding left out (the pair of kernel structs was 56).
struct ConnRow {
    uint64_t conn = 0;
    uint64_t start_ns = 0, acquired_ns = 0;
    uint64_t site = 0, stack = 0;
    uint32_t tgid = 0, tid = 0;
};
ConnRow conn_row(const conn_key& key, const conn_info& info);
// The handle is counted at the kernel's caller site until StackTable refines it.
RawConn raw_conn(const ConnRow& row);
RawSite raw_site(const site_key& key, const site_stats& stats);
RawStack raw_stack(const stack_key& key, const stack_stats& stats);

}  // namespace connleak
