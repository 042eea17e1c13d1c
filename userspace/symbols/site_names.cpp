#include "site_names.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "proc_maps.h"

namespace connleak {
namespace {

// The kernel's internal dev_t (what the BPF side reads from s_dev).
uint32_t kernel_dev(uint32_t major, uint32_t minor)
{
    return major << 20 | minor;
}

std::string hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
    return buf;
}

}  // namespace

void SiteNames::learn_process(uint32_t pid)
{
    auto maps = read_maps(pid);
    if (!maps)
        return;
    for (const Mapping& m : *maps)
        if (m.inode != 0 && !m.path.empty())
            paths_.emplace(FileId{kernel_dev(m.dev_major, m.dev_minor), m.inode}, path_in_target(pid, m));
}

void SiteNames::learn_file(const std::string& path)
{
    struct stat st;
    if (stat(path.c_str(), &st) == 0)
        paths_.emplace(FileId{kernel_dev(major(st.st_dev), minor(st.st_dev)), st.st_ino}, path);
}

std::string SiteNames::name(const RawSite& site, bool alive)
{
    const SiteLocation& s = site.location;
    if (s.module.empty())
        return hex(site.site.value);
    const FileId file{s.dev, s.inode};
    auto key = std::make_tuple(s.dev, s.inode, s.file_offset);
    if (auto it = names_.find(key); it != names_.end())
        return it->second;

    auto path = paths_.find(file);
    if (path == paths_.end() && alive && looked_up_.insert({site.pid, file}).second) {
        learn_process(site.pid);
        path = paths_.find(file);
    }
    NativeFile in{path != paths_.end() ? path->second : "", s.module, makedev(s.dev >> 20, s.dev & 0xfffff), s.inode};
    std::string result = format_frame(symbolizer_.frame(in, s.file_offset), false);
    // A name made without the file may improve once the file is known.
    if (path != paths_.end())
        names_.emplace(key, result);
    return result;
}

}  // namespace connleak
