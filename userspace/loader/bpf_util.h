// What both loaders (connleak's and the sockets') do the same way with
// libbpf: words for its errors, the pids to attach uprobes to, and letting
// go of many links at once.
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

struct bpf_link;

namespace connleak {

// strerror of an errno or of a negative libbpf return, libbpf's own codes
// (4000 and up) as words too ("Invalid ELF format", not "Unknown error 4001").
std::string bpf_errstr(int err);

// The pid argument of the uprobe attach calls: -1 (every process) when
// `pids` is empty, else each of them.
std::vector<pid_t> probe_pids(const std::vector<uint32_t>& pids);

// Destroys the links (detaching their programs) from several threads, and
// empties the vector.
void destroy_links(std::vector<bpf_link*>& links);

}  // namespace connleak
