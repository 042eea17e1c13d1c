// Records (a ring buffer's, each starting with a u32 kind and a u32 tgid)
// held in userspace between the thread that drains the ring and the one
// that handles them: bounded in bytes, and what does not fit is counted per
// process, as the ring counts what it has no room for. Not thread-safe: the
// owner locks.
//
// Records are packed in blocks of 1 MiB mapped for the purpose, not one
// allocation each: the draining thread then seldom waits on the
// allocator's locks (the handling thread freed each record, and malloc_trim
// walking the arenas held the drain up to 65 ms), and a burst's memory goes
// back to the system as soon as it is handled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace connleak {

class RecordBlock {
public:
    explicit RecordBlock(size_t capacity);
    ~RecordBlock();
    RecordBlock(const RecordBlock&) = delete;
    RecordBlock& operator=(const RecordBlock&) = delete;

    // Appends one record; false when it does not fit.
    bool append(const void* data, size_t size);
    // Calls f(data, size) for each record, in order.
    template <typename F>
    void for_each(F&& f) const
    {
        for (size_t off = 0; off < used_;) {
            uint32_t size;
            __builtin_memcpy(&size, base_ + off, sizeof(size));
            f(static_cast<const void*>(base_ + off + kHeader), size_t{size});
            off += footprint(size);
        }
    }
    static size_t footprint(size_t size) { return (kHeader + size + 7) & ~size_t{7}; }

private:
    static constexpr size_t kHeader = 8;
    char* base_ = nullptr;
    size_t capacity_ = 0, used_ = 0;
};

class RecordQueue {
public:
    static constexpr size_t kBlockBytes = 1 << 20;

    explicit RecordQueue(size_t max_bytes) : max_bytes_(max_bytes) {}

    // Copies the record in; false (and counted against its process) when
    // it may be dropped and would pass the bound, or no memory is left. A
    // record too short to name its process is not queued and counted
    // against pid 0. Records that may not be dropped (the kernel sends them
    // once) pass the bound.
    bool push(const void* data, size_t size, bool may_drop = true);
    // Every record queued, oldest first, in blocks; the queue is then empty.
    std::vector<std::unique_ptr<RecordBlock>> take();

    // Bytes the queued records take (their headers and padding included).
    size_t bytes() const { return bytes_; }
    size_t peak_bytes() const { return peak_bytes_; }
    // Records not queued, per process (their tgid).
    const std::map<uint32_t, uint64_t>& dropped() const { return dropped_; }
    void forget(uint32_t pid) { dropped_.erase(pid); }

private:
    size_t max_bytes_;
    size_t bytes_ = 0, peak_bytes_ = 0;
    std::vector<std::unique_ptr<RecordBlock>> blocks_;
    std::map<uint32_t, uint64_t> dropped_;
};

}  // namespace connleak
