// /proc/PID/maps: parsing, and finding files as the target process sees them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace connleak {

struct Mapping {
    uint64_t start = 0, end = 0;  // virtual addresses [start, end)
    uint64_t offset = 0;          // file offset of `start`
    std::string perms;            // "r-xp"
    uint32_t dev_major = 0, dev_minor = 0;
    uint64_t inode = 0;
    std::string path;      // as the target sees it; "" for anonymous
    bool deleted = false;  // path ended in " (deleted)" (suffix removed)
};

// Parses the text of a maps file; malformed lines are skipped.
std::vector<Mapping> parse_maps(const std::string& text);

// Reads /proc/PID/maps; nullopt when the process is gone or unreadable.
std::optional<std::vector<Mapping>> read_maps(uint32_t pid);

// A path that opens, from connleak's mount namespace, the file the target
// mapped: /proc/PID/map_files/START-END for deleted or replaced files,
// /proc/PID/root/PATH otherwise (so processes in containers work).
std::string path_in_target(uint32_t pid, const Mapping& m);

// path_in_target while the process lives; once it exited (its /proc entry
// gone), the mapping's own path if that is the same file here (device and
// inode), as for any process of connleak's mount namespace; else "".
std::string path_in_target_or_here(uint32_t pid, const Mapping& m);

// The mapping whose address range holds `addr`.
const Mapping* find_mapping(const std::vector<Mapping>& maps, uint64_t addr);

}  // namespace connleak
