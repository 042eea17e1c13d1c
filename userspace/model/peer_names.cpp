#include "peer_names.h"

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace connleak::peer_names {
namespace {

struct Entry {
    std::atomic<uint32_t> refs{0};
    bool live = false;  // in the index (false: free, or freed by another drop)
    bool unix_path = false;
    std::array<uint8_t, 16> addr{};
    std::string path;
};

// Entries live in fixed chunks that never move (an id is read without the
// lock); freed ids are used again, so ids stay as few as the names held at
// once (4M at most). The chunk table is 32 KB: zeroed when made, so kept
// small (65,536 chunks of 256 made it 512 KB resident).
constexpr uint32_t kChunkBits = 10, kChunk = 1u << kChunkBits, kMaxChunks = 1u << 12;

class Table {
public:
    uint32_t intern(bool unix_path, const std::array<uint8_t, 16>& addr, const std::string& path)
    {
        std::lock_guard<std::mutex> lock(mu_);
        uint32_t& slot = unix_path ? paths_[path] : addrs_[addr];
        if (slot) {
            at(slot).refs.fetch_add(1, std::memory_order_relaxed);
            return slot;
        }
        uint32_t id = 0;
        if (!free_.empty()) {
            id = free_.back();
            free_.pop_back();
        } else {
            if ((next_ >> kChunkBits) >= kMaxChunks)
                throw std::bad_alloc();
            if ((next_ & (kChunk - 1)) == 0)
                chunks_[next_ >> kChunkBits].store(new Entry[kChunk], std::memory_order_release);
            id = next_++ + 1;
        }
        Entry& e = at(id);
        e.unix_path = unix_path;
        e.addr = unix_path ? std::array<uint8_t, 16>{} : addr;
        e.path = unix_path ? path : std::string();
        e.live = true;
        e.refs.store(1, std::memory_order_relaxed);
        slot = id;
        live_++;
        return id;
    }

    // The count reached 0 outside the lock: another intern may have taken
    // the name again since, or another drop freed it already.
    void release(uint32_t id)
    {
        std::lock_guard<std::mutex> lock(mu_);
        Entry& e = at(id);
        if (!e.live || e.refs.load(std::memory_order_acquire) != 0)
            return;
        if (e.unix_path)
            paths_.erase(e.path);
        else
            addrs_.erase(e.addr);
        e.live = false;
        e.path = std::string();
        free_.push_back(id);
        live_--;
    }

    Entry& at(uint32_t id) const
    {
        const uint32_t i = id - 1;
        return chunks_[i >> kChunkBits].load(std::memory_order_acquire)[i & (kChunk - 1)];
    }

    size_t live() const
    {
        std::lock_guard<std::mutex> lock(mu_);
        return live_;
    }

private:
    mutable std::mutex mu_;
    std::map<std::array<uint8_t, 16>, uint32_t> addrs_;
    std::map<std::string, uint32_t> paths_;
    std::vector<uint32_t> free_;
    uint32_t next_ = 0;
    size_t live_ = 0;
    std::atomic<Entry*> chunks_[kMaxChunks] = {};
};

// Never destroyed: peers held by static objects may outlive it otherwise.
Table& table()
{
    static Table* t = new Table();
    return *t;
}

}  // namespace

uint32_t intern_v6(const uint8_t* a16)
{
    std::array<uint8_t, 16> a;
    std::memcpy(a.data(), a16, a.size());
    return table().intern(false, a, std::string());
}

uint32_t intern_path(const std::string& path)
{
    return table().intern(true, {}, path);
}

void hold(uint32_t id)
{
    table().at(id).refs.fetch_add(1, std::memory_order_relaxed);
}

void drop(uint32_t id)
{
    if (table().at(id).refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
        table().release(id);
}

const std::array<uint8_t, 16>& v6_of(uint32_t id)
{
    return table().at(id).addr;
}

const std::string& path_of(uint32_t id)
{
    return table().at(id).path;
}

size_t live()
{
    return table().live();
}

}  // namespace connleak::peer_names
