// A libpq handle's fields read from a running process's memory with
// process_vm_readv: no stop, no probe, a few small reads. Only the fields
// the layout names (never the password).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libpq_handle.h"
#include "result.h"

namespace connleak {

// status, asyncStatus, xactStatus and be_pid: one system call.
Result<HandleFields> read_handle_fields(uint32_t pid, uint64_t conn, const LibpqLayout& layout);

// The same fields of many handles of one process, in as few system calls as
// fit (1,024 iovecs each), one result per handle, in order. A handle that
// cannot be read fails alone, as read_handle_fields would. When the fields
// lie within 256 bytes, the bytes between them are read too (the struct's
// own fields, never a string they point to) and dropped.
std::vector<Result<HandleFields>> read_handles_fields(uint32_t pid, const std::vector<uint64_t>& conns,
                                                      const LibpqLayout& layout);

struct HandleNames {
    std::string database, user;  // "" when the pointer is null
};

// PQdb() and PQuser(): the two pointers, then the two strings (each at most
// kMaxHandleName bytes, NUL included, else refused).
Result<HandleNames> read_handle_names(uint32_t pid, uint64_t conn, const LibpqLayout& layout);

constexpr size_t kMaxHandleName = 256;

}  // namespace connleak
