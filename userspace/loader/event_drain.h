// The event ring drained by a thread of its own into userspace (a bounded
// RecordQueue), so the ring empties as fast as the kernel fills it, whatever
// the thread that handles the events is busy with. Unwinding a new
// process's first stacks takes libdw tens of milliseconds; until a stack is
// learnt, every acquisition through it sends a copy, and a client that
// connects in a tight loop fills a 4 MiB ring in that time (test_exactness
// dropped 471 of 10,000 stacks per process in CI, inline).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "record_queue.h"
#include "result.h"

struct ring_buffer;

namespace connleak {

class EventDrain {
public:
    // Reads the ring buffer map `map_fd`, holding at most `max_bytes` of
    // records not handled yet.
    static Result<std::unique_ptr<EventDrain>> open(int map_fd, size_t max_bytes);
    ~EventDrain();
    EventDrain(const EventDrain&) = delete;
    EventDrain& operator=(const EventDrain&) = delete;

    // Readable when records wait to be handled.
    int fd() const { return wake_fd_; }
    // Drains the ring now (so every record submitted before the call is
    // among them, but those the bound dropped), then hands each record
    // waiting to `handler`, oldest first, outside the lock: the drain goes
    // on meanwhile.
    void handle(const std::function<void(const void*, size_t)>& handler);
    // Drains the ring into the queue now, handling nothing: read after a
    // process's exit, its count of records dropped is then final.
    void drain_now();
    // Records that did not fit, per process; forget() once it is gone.
    std::map<uint32_t, uint64_t> dropped() const;
    void forget(uint32_t pid);
    size_t peak_bytes() const;

private:
    static constexpr size_t kWakeBytes = 1 << 20;

    EventDrain(size_t max_bytes) : queue_(max_bytes) {}
    void drain_loop();

    ring_buffer* ring_ = nullptr;
    int wake_fd_ = -1;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    mutable std::mutex mutex_;  // the ring's consumer position, queue_
    RecordQueue queue_;
};

}  // namespace connleak
