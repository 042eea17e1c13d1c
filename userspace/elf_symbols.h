// Function symbols of one ELF file, looked up by file offset.
// Everything is read once at load time; no fd or Elf* stays open after.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "result.h"

namespace connleak {

struct ElfOptions {
    // Where separate debug files live: ROOT/.build-id/xx/yyyy.debug and
    // ROOT/DIR/DEBUGLINK. When the ELF path is /proc/PID/root/..., ROOT is
    // looked up inside that process's root too.
    std::string debug_root = "/usr/lib/debug";
    // Whether to look for a separate debug file when the file has no .symtab.
    bool use_debug_files = true;
};

struct SymbolHit {
    std::string name;     // as in the symbol table (mangled for C++)
    uint64_t offset = 0;  // from the start of the function
};

class ElfSymbols {
public:
    // Reads `path`, and its separate debug file if it has no .symtab. A file
    // without any symbols loads fine; only an unreadable or non-ELF one fails.
    static Result<ElfSymbols> load(const std::string& path, const ElfOptions& opts = {});

    // The function holding the byte at `file_offset` of the file.
    std::optional<SymbolHit> lookup_offset(uint64_t file_offset) const;
    // The function holding virtual address `vaddr` (as linked, unrelocated).
    std::optional<SymbolHit> lookup_vaddr(uint64_t vaddr) const;
    // Through the PT_LOAD segment whose file bytes hold `file_offset`.
    std::optional<uint64_t> offset_to_vaddr(uint64_t file_offset) const;
    // The file offset where function `name` starts.
    std::optional<uint64_t> function_offset(const std::string& name) const;

    const std::string& build_id() const { return build_id_; }    // hex, "" if none
    const std::string& debuglink() const { return debuglink_; }  // .gnu_debuglink name, "" if none
    const std::string& debug_file() const { return debug_file_; }  // where extra symbols came from, "" if none
    size_t symbol_count() const { return symbols_.size(); }

    // The tables load() fills; public only for the helpers in the .cpp.
    struct Symbol {
        uint64_t addr = 0, end = 0;  // [addr, end)
        std::string name;
    };
    struct Segment {
        uint64_t offset = 0, filesz = 0, vaddr = 0;
        bool exec = false;
    };

private:
    ElfSymbols() = default;

    std::vector<Symbol> symbols_;  // sorted by addr, one per address
    std::vector<Segment> segments_;
    std::string build_id_, debuglink_, debug_file_;
};

}  // namespace connleak
