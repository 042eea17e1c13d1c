// Records (a ring buffer's, each starting with a u32 kind and a u32 tgid)
// held in userspace between the thread that drains the ring and the one
// that handles them: bounded in bytes, and what does not fit is counted per
// process, as the ring counts what it has no room for. Not thread-safe: the
// owner locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace connleak {

class RecordQueue {
public:
    explicit RecordQueue(size_t max_bytes) : max_bytes_(max_bytes) {}

    // Copies the record in; false (and counted against its process) when
    // it would pass the bound. A record too short to name its process is
    // not queued and counted against pid 0.
    bool push(const void* data, size_t size);
    // Every record queued, oldest first; the queue is then empty.
    std::vector<std::string> take();

    size_t bytes() const { return bytes_; }
    size_t peak_bytes() const { return peak_bytes_; }
    // Records not queued, per process (their tgid).
    uint64_t dropped(uint32_t pid) const;
    void forget(uint32_t pid) { dropped_.erase(pid); }

private:
    size_t max_bytes_;
    size_t bytes_ = 0, peak_bytes_ = 0;
    std::vector<std::string> records_;
    std::map<uint32_t, uint64_t> dropped_;
};

}  // namespace connleak
