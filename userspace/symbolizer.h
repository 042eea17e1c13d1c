// Names code addresses for people: "func+0x3c (module)", or "module+0x1234"
// when no symbol covers the address.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "elf_symbols.h"

namespace connleak {

// Caches the symbols of each ELF file (not each process), so a library
// mapped by many processes is read once. Not thread-safe.
class Symbolizer {
public:
    explicit Symbolizer(ElfOptions opts = {});

    // `elf_path` opens the file (e.g. from path_in_target), `module` is its
    // short name, `file_offset` the offset in the file of the code byte.
    // Never fails: an empty or unreadable path gives "module+0x1234".
    std::string name(const std::string& elf_path, const std::string& module, uint64_t file_offset);

    size_t cached_files() const { return cache_.size(); }

private:
    // The file's identity, so a replaced file at the same path is reread.
    struct FileKey {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = 0;
        int64_t mtime_ns = 0;
        bool operator<(const FileKey& o) const {
            return std::tie(dev, ino, size, mtime_ns) < std::tie(o.dev, o.ino, o.size, o.mtime_ns);
        }
    };

    const ElfSymbols* symbols_for(const std::string& elf_path);

    ElfOptions opts_;
    std::map<FileKey, std::optional<ElfSymbols>> cache_;  // nullopt: failed to load, not retried
};

// "_ZN2ns1fEi" → "ns::f(int)"; other names unchanged.
std::string demangle(const std::string& name);

}  // namespace connleak
