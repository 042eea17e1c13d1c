// ELF files the target maps (its binary and libraries) are the target's
// bytes: loading their symbol tables, notes and segments must take any file.
// Kept to the symbolizer's public face (a path and offsets to name).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_check.h"
#include "symbolizer.h"

namespace {

// A memfd holding the input, closed at scope end.
struct MemFile {
    int fd = -1;
    explicit MemFile(const uint8_t* data, size_t size)
    {
        fd = memfd_create("fuzz_elf", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        for (size_t done = 0; done < size;) {
            ssize_t n = write(fd, data + done, size - done);
            FUZZ_CHECK(n > 0);
            done += static_cast<size_t>(n);
        }
    }
    ~MemFile() { close(fd); }
    std::string path() const { return "/proc/self/fd/" + std::to_string(fd); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    MemFile file(data, size);
    connleak::SymbolizerOptions opts;
    opts.use_debug_files = false;  // the input alone, not files it names
    // Offsets spread over the file, and the largest there is.
    for (uint64_t off : {uint64_t{0}, uint64_t{size / 4}, uint64_t{size / 2}, uint64_t{size - 1}, UINT64_MAX}) {
        auto frame = connleak::symbolize_file_offset(file.path(), off, opts);
        if (frame && !frame->function.empty())
            FUZZ_CHECK(frame->file_offset == off);
    }
    connleak::Symbolizer cached(opts);
    (void)cached.function_offset(file.path(), "main");
    (void)cached.frame({file.path(), "fuzz", 0, 0}, size / 2, true);
    return 0;
}
