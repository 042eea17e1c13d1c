// Native frames for people: which function (and file:line) holds a byte of
// an ELF file, through elfutils libdwfl. Every native frame is named here,
// the kernel's caller sites and unwound stacks alike. The separate debug
// file of a stripped file is found on local paths only, never through
// debuginfod: build-id tree, then .gnu_debuglink beside the file, in
// .debug/, under the debug root (same build id; CRC-checked without one).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "frame.h"
#include "result.h"

namespace connleak {

struct SymbolizerOptions {
    // Where separate debug files live: ROOT/.build-id/xx/yyyy.debug and
    // ROOT/DIR/DEBUGLINK. For a file opened as /proc/PID/root/... (or
    // /proc/PID/map_files/...), ROOT is looked up inside that process's root.
    std::string debug_root = "/usr/lib/debug";
    // Whether to look for a separate debug file when the file has no .symtab.
    bool use_debug_files = true;
};

// A file to name code in: `path` opens it from here (path_in_target:
// /proc/PID/root/..., /proc/PID/map_files/... for deleted files); `module`
// is its short name ("" takes the path's base name). `dev` and `inode`
// (when known, e.g. from /proc/PID/maps) find it among the files already
// read once `path` cannot be opened any more (the process exited).
struct NativeFile {
    std::string path;
    std::string module;
    dev_t dev = 0;
    ino_t inode = 0;
};

// Caches each ELF file (not each process) by its identity, so a library
// mapped by many processes is read once, and a file replaced at the same
// path is read again. Not thread-safe.
class Symbolizer {
public:
    explicit Symbolizer(SymbolizerOptions opts = {});
    ~Symbolizer();
    Symbolizer(const Symbolizer&) = delete;
    Symbolizer& operator=(const Symbolizer&) = delete;

    // The frame at `file_offset` of the file. With `with_source`, the
    // file:line of the call before it (a return address), except in the C
    // runtime's entry frames. Never fails: an unreadable file gives a frame
    // with module and offset only.
    NativeFrame frame(const NativeFile& file, uint64_t file_offset, bool with_source = false);
    // frame() formatted without file:line: "func+0x3c (module)", "module+0x1234".
    std::string name(const std::string& path, const std::string& module, uint64_t file_offset);

    // Where function `function` starts in the file, as a file offset.
    std::optional<uint64_t> function_offset(const std::string& path, const std::string& function);
    // Where symbol `symbol` (a function or data: _PyRuntime) lies, as a file offset.
    std::optional<uint64_t> symbol_offset(const std::string& path, const std::string& symbol);
    // The separate debug file symbols came from ("" if none), for tests.
    std::string debug_file(const std::string& path);

    size_t cached_files() const { return cache_.size(); }

    struct Module;  // one file opened with libdwfl (symbolizer.cpp)

private:
    // The file's identity, so a replaced file at the same path is reread.
    struct FileKey {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = 0;
        int64_t mtime_ns = 0;
        bool operator<(const FileKey& o) const
        {
            return std::tie(dev, ino, size, mtime_ns) < std::tie(o.dev, o.ino, o.size, o.mtime_ns);
        }
    };

    Module* module_for(const NativeFile& file);

    SymbolizerOptions opts_;
    std::map<FileKey, std::unique_ptr<Module>> cache_;     // null: failed to load, not retried
    std::map<std::pair<dev_t, ino_t>, Module*> by_inode_;  // the latest of each inode
};

// One file, one offset, nothing cached: what a fuzz target or a tool calls.
// Fails only when `path` is unreadable or not an ELF file.
Result<NativeFrame> symbolize_file_offset(const std::string& path, uint64_t file_offset,
                                          const SymbolizerOptions& opts = {});

// "_ZN2ns1fEi" → "ns::f(int)"; other names unchanged.
std::string demangle(const std::string& name);

// The C runtime's process and thread entry points (_start, start_thread...):
// they end every stack and are never a site.
bool is_runtime_entry_function(const std::string& function);

}  // namespace connleak
