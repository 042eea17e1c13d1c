// Symbolizer: per-file cache of ElfSymbols plus the naming format.
#include "symbolizer.h"

#include <cxxabi.h>
#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>

namespace connleak {
namespace {

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

std::string base_name(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string demangle(const std::string& name) {
    if (name.compare(0, 2, "_Z") != 0) return name;
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status),
                                               std::free);
    return status == 0 && out ? std::string(out.get()) : name;
}

Symbolizer::Symbolizer(ElfOptions opts) : opts_(std::move(opts)) {}

const ElfSymbols* Symbolizer::symbols_for(const std::string& elf_path) {
    struct stat st;
    if (elf_path.empty() || ::stat(elf_path.c_str(), &st) != 0) return nullptr;
    FileKey key{st.st_dev, st.st_ino, st.st_size, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
    auto it = cache_.find(key);
    if (it == cache_.end()) {
        Result<ElfSymbols> loaded = ElfSymbols::load(elf_path, opts_);
        std::optional<ElfSymbols> syms;
        if (loaded) syms = std::move(loaded.value());
        it = cache_.emplace(key, std::move(syms)).first;
    }
    return it->second ? &*it->second : nullptr;
}

std::string Symbolizer::name(const std::string& elf_path, const std::string& module, uint64_t file_offset) {
    std::string mod = module.empty() ? base_name(elf_path) : module;
    if (const ElfSymbols* syms = symbols_for(elf_path))
        if (std::optional<SymbolHit> hit = syms->lookup_offset(file_offset))
            return demangle(hit->name) + "+" + hex(hit->offset) + " (" + mod + ")";
    return mod + "+" + hex(file_offset);
}

}  // namespace connleak
