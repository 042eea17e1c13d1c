// The processes of the host and their parent links, from /proc.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace connleak {

// Every process id under /proc (thread groups only), ascending.
std::vector<uint32_t> all_pids();

// The parent pid in the text of /proc/PID/stat ("pid (comm) state ppid ..."):
// comm may hold spaces and parentheses, so the fields are read after the last
// ')'. nullopt when the text is not a stat line.
std::optional<uint32_t> parse_stat_ppid(const std::string& stat);

// pid -> parent pid, for every process readable now.
std::map<uint32_t, uint32_t> parent_links();

// The processes under each root (children, grandchildren, ...), not the
// roots themselves, ascending. From one pass over /proc.
std::vector<uint32_t> descendants(const std::vector<uint32_t>& roots);

// Pure part of descendants(): walks `parents` (pid -> ppid).
std::vector<uint32_t> descendants_in(const std::map<uint32_t, uint32_t>& parents, const std::vector<uint32_t>& roots);

// The processes of `tree` whose parent (by `parents`, pid -> ppid) is not
// in `tree`: those no other member of it can end. Ascending.
std::vector<uint32_t> tree_tops(const std::map<uint32_t, uint32_t>& parents, const std::vector<uint32_t>& tree);

}  // namespace connleak
