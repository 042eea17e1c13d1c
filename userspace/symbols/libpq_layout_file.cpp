#include "libpq_layout_file.h"

#include <fcntl.h>
#include <unistd.h>

#include "libpq_layout.h"

namespace connleak {
namespace {

// Far more than any of the accessors (each is under 64 bytes); the decoder
// stops at their returns, so what follows them is never looked at.
constexpr size_t kAccessorBytes = 128;

}  // namespace

Result<LibpqLayout> read_libpq_layout(Symbolizer& symbols, const std::string& path)
{
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return Error{"cannot open " + path + ": " + errstr(errno)};
    AccessorCode code;
    for (const std::string& name : libpq_layout_accessors()) {
        auto offset = symbols.function_offset(path, name);
        if (!offset)
            continue;  // derive_libpq_layout says which one is missing
        std::vector<uint8_t> bytes(kAccessorBytes);
        const ssize_t n = pread(fd, bytes.data(), bytes.size(), static_cast<off_t>(*offset));
        if (n <= 0)
            continue;
        bytes.resize(static_cast<size_t>(n));
        code[name] = std::move(bytes);
    }
    close(fd);
    return derive_libpq_layout(code);
}

}  // namespace connleak
