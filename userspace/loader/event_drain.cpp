#include "event_drain.h"

#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <new>
#include <poll.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

#include "bpf_util.h"
#include "connleak.h"
#include "thread_without_signals.h"

namespace connleak {

Result<std::unique_ptr<EventDrain>> EventDrain::open(int map_fd, size_t max_bytes)
{
    std::unique_ptr<EventDrain> d(new EventDrain(max_bytes));
    d->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->wake_fd_ < 0)
        return Error{"cannot make an eventfd for the event ring: " + bpf_errstr(errno)};
    d->ring_ = ring_buffer__new(
        map_fd,
        [](void* ctx, void* data, size_t size) {
            // Only the records whose loss the kernel counts in
            // dropped_stacks may be dropped here; the others (a stack
            // walked, a Python code object, a process entered) it sends once.
            uint32_t kind = 0;
            if (size >= sizeof(kind))
                std::memcpy(&kind, data, sizeof(kind));
            const bool may_drop = kind == EVENT_ACQUIRE || kind == EVENT_LAST_USE || kind == EVENT_RELEASE;
            try {
                static_cast<EventDrain*>(ctx)->queue_.push(data, size, may_drop);
            } catch (const std::bad_alloc&) {  // never through libbpf's C frames
                return 0;
            }
            return 0;
        },
        d.get(), nullptr);
    if (!d->ring_)
        return Error{"cannot open the event ring buffer: " + bpf_errstr(errno)};
    d->thread_ = thread_without_signals([self = d.get()] { self->drain_loop(); });
    return d;
}

EventDrain::~EventDrain()
{
    stop_ = true;
    if (thread_.joinable())
        thread_.join();
    ring_buffer__free(ring_);
    if (wake_fd_ >= 0)
        close(wake_fd_);
}

// The kernel wakes the ring's reader for the first copy of a stack not
// learnt yet and when the ring is half full; other records wait for the
// next look, every 20 ms. The handling thread is woken as the kernel woke
// this one, or once a MiB waits; else its own 100 ms tick takes them.
void EventDrain::drain_loop()
{
    // Ahead of the traced process's threads: a client that saturates the
    // CPUs (16 threads connecting in a loop on 2 cores) kept this thread
    // off them up to 61 ms at nice 0, long enough for a burst of stack
    // copies to fill the ring; at -10, 29 ms at most. It does a few
    // microseconds of copying per wakeup, so the workload loses nothing.
    // Without CAP_SYS_NICE it stays at 0.
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), -10);
    pollfd p{ring_buffer__epoll_fd(ring_), POLLIN, 0};
    while (!stop_.load()) {
        const bool woken = poll(&p, 1, 20) > 0;
        bool wake;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ring_buffer__consume(ring_);
            wake = queue_.bytes() > 0 && (woken || queue_.bytes() >= kWakeBytes);
        }
        if (wake) {
            const uint64_t one = 1;
            (void)!write(wake_fd_, &one, sizeof(one));
        }
    }
}

void EventDrain::handle(const std::function<void(const void*, size_t)>& handler)
{
    uint64_t n;
    (void)!read(wake_fd_, &n, sizeof(n));
    std::vector<std::unique_ptr<RecordBlock>> batch;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ring_buffer__consume(ring_);
        batch = queue_.take();
    }
    for (const auto& block : batch)
        block->for_each(handler);
}  // the blocks are unmapped here: a burst's memory goes back at once

void EventDrain::drain_now()
{
    std::lock_guard<std::mutex> lock(mutex_);
    ring_buffer__consume(ring_);
}

std::map<uint32_t, uint64_t> EventDrain::dropped() const
{
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.dropped();
}

void EventDrain::forget(uint32_t pid)
{
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.forget(pid);
}

size_t EventDrain::peak_bytes() const
{
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.peak_bytes();
}

}  // namespace connleak
