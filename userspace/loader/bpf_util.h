// What both loaders (connleak's and the sockets') do the same way with
// libbpf: words for its errors, the pids to attach uprobes to, and letting
// go of many links at once.
#pragma once

#include <bpf/bpf.h>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

struct bpf_link;

namespace connleak {

// strerror of an errno or of a negative libbpf return, libbpf's own codes
// (4000 and up) as words too ("Invalid ELF format", not "Unknown error 4001").
std::string bpf_errstr(int err);

// The pid argument of the uprobe attach calls: -1 (every process) when
// `pids` is empty, else each of them.
std::vector<pid_t> probe_pids(const std::vector<uint32_t>& pids);

// Every entry of a hash map, by key. Keys deleted while we walk make
// get_next_key restart from the first key, so entries are collected by key
// (std::map) to never count one twice. The one map walk of both loaders.
template <typename K, typename V, typename Less = std::less<K>>
std::vector<std::pair<K, V>> dump_map(int fd, Less less = Less())
{
    std::map<K, V, Less> seen(less);
    K key{}, next{};
    K* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        V value{};
        if (bpf_map_lookup_elem(fd, &next, &value) == 0)
            seen[next] = value;
        key = next;
        prev = &key;
    }
    return {seen.begin(), seen.end()};
}

// Destroys the links (detaching their programs) from several threads, and
// empties the vector.
void destroy_links(std::vector<bpf_link*>& links);

}  // namespace connleak
