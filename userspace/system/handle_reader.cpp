#include "handle_reader.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace connleak {
namespace {

constexpr uint64_t kPage = 4096;

// Reads whole iovecs or fails: process_vm_readv stops at the first iovec
// it cannot read whole.
Status read_remote(uint32_t pid, const iovec* local, const iovec* remote, size_t count)
{
    size_t want = 0;
    for (size_t i = 0; i < count; ++i)
        want += local[i].iov_len;
    const ssize_t n = process_vm_readv(static_cast<pid_t>(pid), local, count, remote, count, 0);
    if (n < 0)
        return Error{"process_vm_readv: " + errstr(errno)};
    if (static_cast<size_t>(n) != want)
        return Error{"process_vm_readv: short read"};
    return Ok{};
}

iovec at(uint64_t address, size_t len)
{
    return {reinterpret_cast<void*>(static_cast<uintptr_t>(address)), len};
}

// One C string of at most kMaxHandleName bytes. Its tail may lie on an
// unmapped page: read page by page, stop at the NUL.
Result<std::string> read_string(uint32_t pid, uint64_t address)
{
    if (address == 0)
        return std::string();
    std::array<char, kMaxHandleName> buf{};
    size_t have = 0;
    while (have < buf.size()) {
        const uint64_t from = address + have;
        const size_t len = std::min<uint64_t>(buf.size() - have, kPage - from % kPage);
        iovec local{buf.data() + have, len};
        iovec remote = at(from, len);
        if (auto s = read_remote(pid, &local, &remote, 1); !s)
            return s.error();
        if (const void* nul = std::memchr(buf.data() + have, 0, len))
            return std::string(buf.data(), static_cast<size_t>(static_cast<const char*>(nul) - buf.data()));
        have += len;
    }
    return Error{"no NUL within " + std::to_string(buf.size()) + " bytes"};
}

}  // namespace

Result<HandleFields> read_handle_fields(uint32_t pid, uint64_t conn, const LibpqLayout& layout)
{
    HandleFields f;
    const iovec local[4] = {{&f.status, 4}, {&f.async_status, 4}, {&f.xact_status, 4}, {&f.be_pid, 4}};
    const iovec remote[4] = {at(conn + layout.status, 4), at(conn + layout.async_status, 4),
                             at(conn + layout.xact_status, 4), at(conn + layout.be_pid, 4)};
    if (auto s = read_remote(pid, local, remote, 4); !s)
        return s.error();
    return f;
}

std::vector<Result<HandleFields>> read_handles_fields(uint32_t pid, const std::vector<uint64_t>& conns,
                                                      const LibpqLayout& layout)
{
    // The four fields lie in one struct: read the bytes from the first to
    // the last of them, one iovec per handle (the kernel pins pages per
    // iovec), when they are close; else four small iovecs per handle.
    const uint32_t offsets[4] = {layout.status, layout.async_status, layout.xact_status, layout.be_pid};
    const uint32_t lo = *std::min_element(offsets, offsets + 4), hi = *std::max_element(offsets, offsets + 4) + 4;
    constexpr uint32_t kMaxSpan = 1024;
    const bool span = hi - lo <= kMaxSpan;
    const size_t pieces = span ? 1 : 4, bytes = span ? hi - lo : 16;
    const size_t per_call = 1024 / pieces;
    std::vector<Result<HandleFields>> out;
    out.reserve(conns.size());
    std::vector<unsigned char> buf(std::min(conns.size(), per_call) * bytes);
    std::vector<iovec> local, remote;
    size_t next = 0;
    while (next < conns.size()) {
        const size_t count = std::min(conns.size() - next, per_call);
        local.clear();
        remote.clear();
        for (size_t i = 0; i < count; i++) {
            unsigned char* to = buf.data() + i * bytes;
            const uint64_t conn = conns[next + i];
            if (span) {
                local.push_back({to, bytes});
                remote.push_back(at(conn + lo, bytes));
            } else {
                for (size_t k = 0; k < 4; k++) {
                    local.push_back({to + 4 * k, 4});
                    remote.push_back(at(conn + offsets[k], 4));
                }
            }
        }
        const ssize_t n =
            process_vm_readv(static_cast<pid_t>(pid), local.data(), local.size(), remote.data(), remote.size(), 0);
        if (n < 0 && errno == ESRCH) {  // gone: so is every handle of it
            while (out.size() < conns.size())
                out.push_back(Error{"process_vm_readv: " + errstr(ESRCH)});
            return out;
        }
        // It stops at the first iovec it cannot read: the handles before
        // are whole; that one is read alone (its own error), the rest again.
        const size_t whole = n < 0 ? 0 : static_cast<size_t>(n) / bytes;
        for (size_t i = 0; i < whole; i++) {
            const unsigned char* from = buf.data() + i * bytes;
            int32_t v[4];
            for (size_t k = 0; k < 4; k++)
                std::memcpy(&v[k], from + (span ? offsets[k] - lo : 4 * k), 4);
            out.push_back(HandleFields{v[0], v[1], v[2], v[3]});
        }
        next += whole;
        if (whole < count) {
            out.push_back(read_handle_fields(pid, conns[next], layout));
            next++;
        }
    }
    return out;
}

Result<HandleNames> read_handle_names(uint32_t pid, uint64_t conn, const LibpqLayout& layout)
{
    uint64_t db = 0, user = 0;
    const iovec local[2] = {{&db, 8}, {&user, 8}};
    const iovec remote[2] = {at(conn + layout.db_name, 8), at(conn + layout.pguser, 8)};
    if (auto s = read_remote(pid, local, remote, 2); !s)
        return s.error();
    HandleNames names;
    auto d = read_string(pid, db);
    if (!d)
        return d.error();
    auto u = read_string(pid, user);
    if (!u)
        return u.error();
    names.database = d.value();
    names.user = u.value();
    return names;
}

}  // namespace connleak
