// Names for acquiring sites: which file a site lies in, found through the
// maps of the process while it lives (or the file connleak launched), then
// symbolized. Names are cached per file and offset, not per process.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "model.h"
#include "symbolizer.h"

namespace connleak {

class SiteNames {
public:
    // Remembers where every file mapped by `pid` can be opened from here.
    void learn_process(uint32_t pid);
    // Remembers a file connleak knows by path (e.g. the launched command).
    void learn_file(const std::string& path);

    // "func+0x3c (module)", "module+0x1234", or "0x7f..." when the kernel
    // found no file for the site. `alive`: the process's maps may be read.
    // For the kernel's caller sites (SiteKey::Kind::caller).
    std::string name(const RawSite& site, bool alive);

private:
    using FileId = std::pair<uint32_t, uint64_t>;  // kernel device number, inode
    std::map<FileId, std::string> paths_;
    std::set<std::pair<uint32_t, FileId>> looked_up_;  // (pid, file) whose maps were re-read already
    std::map<std::tuple<uint32_t, uint64_t, uint64_t>, std::string> names_;
    Symbolizer symbolizer_;
};

}  // namespace connleak
