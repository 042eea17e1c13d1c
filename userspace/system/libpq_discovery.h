// Which libpq files a process has mapped, named by the file itself
// (device and inode, as the kernel sees it) and by a path that opens it from
// connleak's mount namespace, whatever namespace the process lives in.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "proc_maps.h"

namespace connleak {

struct LibpqFile {
    uint32_t dev_major = 0, dev_minor = 0;
    uint64_t inode = 0;
    std::string path;  // /proc/PID/root/... or /proc/PID/map_files/... (see path_in_target)

    auto key() const { return std::tie(dev_major, dev_minor, inode); }
    bool operator<(const LibpqFile& o) const { return key() < o.key(); }
};

// Whether a mapping is executable code of a file named libpq.so*.
bool maps_libpq_code(const Mapping& m);

// The distinct libpq files in a parsed map, openable through `pid`.
std::vector<LibpqFile> libpq_files_in(uint32_t pid, const std::vector<Mapping>& maps);

// The same, read from /proc/PID/maps; empty when gone or unreadable.
std::vector<LibpqFile> libpq_files_of(uint32_t pid);

}  // namespace connleak
