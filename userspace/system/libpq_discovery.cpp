#include "libpq_discovery.h"

#include <set>

namespace connleak {

bool maps_libpq_code(const Mapping& m)
{
    const std::string base = m.path.substr(m.path.rfind('/') + 1);
    return m.inode != 0 && base.rfind("libpq.so", 0) == 0 && m.perms.find('x') != std::string::npos;
}

std::vector<LibpqFile> libpq_files_in(uint32_t pid, const std::vector<Mapping>& maps)
{
    std::set<LibpqFile> files;
    for (const Mapping& m : maps)
        if (maps_libpq_code(m)) {
            LibpqFile f{m.dev_major, m.dev_minor, m.inode, path_in_target(pid, m)};
            if (!f.path.empty())
                files.insert(std::move(f));
        }
    return {files.begin(), files.end()};
}

std::vector<LibpqFile> libpq_files_of(uint32_t pid)
{
    auto maps = read_maps(pid);
    return maps ? libpq_files_in(pid, *maps) : std::vector<LibpqFile>{};
}

}  // namespace connleak
