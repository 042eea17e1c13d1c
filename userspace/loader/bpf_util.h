// What both loaders (connleak's and the sockets') do the same way with
// libbpf: words for its errors, the pids to attach uprobes to, and letting
// go of many links at once.
#pragma once

#include <algorithm>
#include <bpf/bpf.h>
#include <cerrno>
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

// Every entry of a hash map, by key. In batches of buckets (one syscall per
// few thousand entries: 100,000 live handles read in a few ms, where two
// syscalls per entry took ~200 ms); each bucket is visited once, so no
// entry is counted twice. Kernels without batch ops: the walk below.
template <typename K, typename V, typename OnBatch>
bool walk_map_batches(int fd, OnBatch&& on_batch)
{
    std::vector<K> keys(4096);
    std::vector<V> values(4096);
    uint64_t token = 0;  // the kernel's bucket cursor (a u32 for hash maps)
    bool first = true;
    for (;;) {
        __u32 count = static_cast<__u32>(keys.size());
        const int err =
            bpf_map_lookup_batch(fd, first ? nullptr : &token, &token, keys.data(), values.data(), &count, nullptr);
        const int e = err ? errno : 0;
        if (err && e == ENOSPC && count == 0) {  // one bucket holds more than the buffer
            keys.resize(keys.size() * 2);
            values.resize(values.size() * 2);
            continue;
        }
        if (err && e != ENOENT)
            return false;
        on_batch(keys.data(), values.data(), count);
        if (err)  // ENOENT: the last batch
            break;
        first = false;
    }
    return true;
}

template <typename K, typename V, typename Less = std::less<K>>
bool dump_map_batch(int fd, std::vector<std::pair<K, V>>& out, Less less)
{
    const bool ok = walk_map_batches<K, V>(fd, [&](const K* keys, const V* values, __u32 count) {
        for (__u32 i = 0; i < count; i++)
            out.emplace_back(keys[i], values[i]);
    });
    if (!ok)
        return false;
    std::sort(out.begin(), out.end(), [&](const auto& a, const auto& b) { return less(a.first, b.first); });
    return true;
}

// Every entry of a hash map by get_next_key, one system call or two per
// entry: for kernels without batch operations. Keys deleted while we walk
// make get_next_key restart from the first key, so entries are collected
// by key (std::map) to never count one twice.
template <typename K, typename V, typename Less = std::less<K>>
std::map<K, V, Less> walk_map_by_key(int fd, Less less = Less())
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
    return seen;
}

// Every entry of a hash map, by key: in batches, else by get_next_key. The
// one map walk of both loaders.
template <typename K, typename V, typename Less = std::less<K>>
std::vector<std::pair<K, V>> dump_map(int fd, Less less = Less())
{
    std::vector<std::pair<K, V>> batch;
    if (dump_map_batch(fd, batch, less))
        return batch;
    const std::map<K, V, Less> seen = walk_map_by_key<K, V>(fd, less);
    return {seen.begin(), seen.end()};
}

// Each entry of a hash map handed to fn(key, value), a batch at a time in
// the kernel's order: no copy of the whole map, no sort (the sockets'
// traffic each report: 100,000 entries at scale, a 9.6 MB vector that was
// faulted in, doubled and sorted every time). Kernels without batch ops:
// walk_map_by_key. fn must not mind seeing an entry twice (a batch
// walk that fails midway is done again by that walk).
template <typename K, typename V, typename Fn>
void for_each_map_entry(int fd, Fn&& fn)
{
    const bool ok = walk_map_batches<K, V>(fd, [&](const K* keys, const V* values, __u32 count) {
        for (__u32 i = 0; i < count; i++)
            fn(keys[i], values[i]);
    });
    if (ok)
        return;
    for (const auto& [k, v] : walk_map_by_key<K, V>(fd))
        fn(k, v);
}

// Destroys the links (detaching their programs) from several threads, and
// empties the vector.
void destroy_links(std::vector<bpf_link*>& links);

}  // namespace connleak
