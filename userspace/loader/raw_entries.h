// BPF map entries (connleak.h) into the model's plain raw state: the one
// place the kernel's layout meets the model's, so the model needs no BPF type.
#pragma once

#include "connleak.h"
#include "model.h"

namespace connleak {

RawProcess raw_process(uint32_t pid, const proc_stats& stats);
// The handle is counted at the kernel's caller site until StackTable refines it.
RawConn raw_conn(const conn_key& key, const conn_info& info);
RawSite raw_site(const site_key& key, const site_stats& stats);
RawStack raw_stack(const stack_key& key, const stack_stats& stats);

}  // namespace connleak
