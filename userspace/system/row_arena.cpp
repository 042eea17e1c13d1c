#include "row_arena.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "row_memory.h"

namespace connleak {

namespace {

constexpr size_t kChunk = size_t{2} << 20;  // one huge page on x86-64 and arm64 (4 KiB base pages)
// Smaller requests (a process with a few handles) are not worth a chunk's room.
constexpr size_t kSmallest = 16 * 1024;

struct Chunk {
    size_t size = 0;
    size_t used = 0;  // bump offset
    size_t live = 0;  // allocations not freed yet
};

class Arena {
public:
    void* allocate(size_t bytes)
    {
        if (bytes < kSmallest)
            return nullptr;
        bytes = (bytes + 63) & ~size_t{63};
        std::lock_guard<std::mutex> lock(mutex_);
        if (bytes > kChunk / 2) {  // a chunk of its own
            char* p = map(round_up(bytes));
            if (!p)
                return nullptr;
            chunks_[p] = Chunk{round_up(bytes), round_up(bytes), 1};
            bytes_live_ += bytes;
            return p;
        }
        if (!current_ || chunks_[current_].used + bytes > kChunk) {
            char* p = map(kChunk);
            if (!p)
                return nullptr;
            chunks_[p] = Chunk{kChunk, 0, 0};
            retire_current();
            current_ = p;
        }
        Chunk& c = chunks_[current_];
        void* out = current_ + c.used;
        c.used += bytes;
        c.live++;
        bytes_live_ += bytes;
        return out;
    }

    void deallocate(void* ptr, size_t bytes)
    {
        if (!ptr)
            return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            char* p = static_cast<char*>(ptr);
            auto it = chunks_.upper_bound(p);
            if (it != chunks_.begin()) {
                --it;
                if (p < it->first + it->second.size) {
                    bytes_live_ -= (bytes + 63) & ~size_t{63};
                    if (--it->second.live == 0) {  // the current one too: nothing kept between reports
                        if (it->first == current_)
                            current_ = nullptr;
                        unmap(it);
                    }
                    return;
                }
            }
        }
        ::operator delete(ptr);  // not one of ours: operator new made it (RowAllocator's fallback)
    }

    RowArenaStats stats()
    {
        std::lock_guard<std::mutex> lock(mutex_);
        return {mapped_, chunks_.size(), bytes_live_};
    }

private:
    static size_t round_up(size_t bytes) { return (bytes + kChunk - 1) & ~(kChunk - 1); }

    // size bytes at a kChunk boundary (THP needs the alignment), advised.
    char* map(size_t size)
    {
        void* raw = mmap(nullptr, size + kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            return nullptr;
        const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
        const uintptr_t aligned = (start + kChunk - 1) & ~(uintptr_t{kChunk} - 1);
        if (aligned > start)
            munmap(raw, aligned - start);
        if (const uintptr_t tail = start + size + kChunk - (aligned + size))
            munmap(reinterpret_cast<void*>(aligned + size), tail);
        char* p = reinterpret_cast<char*>(aligned);
        madvise(p, size, MADV_HUGEPAGE);  // no THP: small pages, as operator new's
        mapped_++;
        return p;
    }

    // The current chunk is replaced: unmapped now if nothing in it lives.
    void retire_current()
    {
        if (!current_)
            return;
        auto it = chunks_.find(current_);
        current_ = nullptr;
        if (it != chunks_.end() && it->second.live == 0)
            unmap(it);
    }

    void unmap(std::map<char*, Chunk>::iterator it)
    {
        munmap(it->first, it->second.size);
        chunks_.erase(it);
    }

    std::mutex mutex_;
    std::map<char*, Chunk> chunks_;  // by address
    char* current_ = nullptr;        // the chunk being filled
    uint64_t mapped_ = 0;
    size_t bytes_live_ = 0;
};

Arena& arena()
{
    static Arena* a = new Arena;  // never destroyed: rows may be freed at exit, after statics
    return *a;
}

}  // namespace

void install_row_arena()
{
    if (getenv("CONNLEAK_NO_HUGE_ROWS"))
        return;
    arena();
    RowMemory m;
    m.allocate = [](size_t bytes) { return arena().allocate(bytes); };
    m.deallocate = [](void* p, size_t bytes) { arena().deallocate(p, bytes); };
    install_row_memory(m);
}

RowArenaStats row_arena_stats()
{
    return arena().stats();
}

}  // namespace connleak
