// A libpq handle's fields read from a running process's memory with
// process_vm_readv: no stop, no probe, a few small reads. Only the fields
// the layout names (never the password).
#pragma once

#include <cstdint>
#include <string>

#include "libpq_handle.h"
#include "result.h"

namespace connleak {

// status, asyncStatus, xactStatus and be_pid: one system call.
Result<HandleFields> read_handle_fields(uint32_t pid, uint64_t conn, const LibpqLayout& layout);

struct HandleNames {
    std::string database, user;  // "" when the pointer is null
};

// PQdb() and PQuser(): the two pointers, then the two strings (each at most
// kMaxHandleName bytes, NUL included, else refused).
Result<HandleNames> read_handle_names(uint32_t pid, uint64_t conn, const LibpqLayout& layout);

constexpr size_t kMaxHandleName = 256;

}  // namespace connleak
