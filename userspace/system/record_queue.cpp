#include "record_queue.h"

#include <cstring>
#include <sys/mman.h>
#include <utility>

namespace connleak {

RecordBlock::RecordBlock(size_t capacity)
{
    void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        base_ = static_cast<char*>(p);
        capacity_ = capacity;
    }
}

RecordBlock::~RecordBlock()
{
    if (base_)
        munmap(base_, capacity_);
}

bool RecordBlock::append(const void* data, size_t size)
{
    const size_t need = footprint(size);
    if (!base_ || size > UINT32_MAX || used_ + need > capacity_)
        return false;
    const uint32_t size32 = static_cast<uint32_t>(size);
    std::memcpy(base_ + used_, &size32, sizeof(size32));
    std::memcpy(base_ + used_ + kHeader, data, size);
    used_ += need;
    return true;
}

bool RecordQueue::push(const void* data, size_t size, bool may_drop)
{
    uint32_t pid = 0;
    const bool named = size >= 2 * sizeof(uint32_t);
    if (named)
        std::memcpy(&pid, static_cast<const char*>(data) + sizeof(uint32_t), sizeof(pid));
    const size_t need = RecordBlock::footprint(size);
    bool ok = named && (!may_drop || bytes_ + need <= max_bytes_);
    if (ok && (blocks_.empty() || !blocks_.back()->append(data, size))) {
        blocks_.push_back(std::make_unique<RecordBlock>(need > kBlockBytes ? need : kBlockBytes));
        ok = blocks_.back()->append(data, size);
        if (!ok)  // no memory mapped
            blocks_.pop_back();
    }
    if (!ok) {
        dropped_[pid]++;
        return false;
    }
    bytes_ += need;
    if (bytes_ > peak_bytes_)
        peak_bytes_ = bytes_;
    return true;
}

std::vector<std::unique_ptr<RecordBlock>> RecordQueue::take()
{
    std::vector<std::unique_ptr<RecordBlock>> out;
    out.swap(blocks_);
    bytes_ = 0;
    return out;
}

}  // namespace connleak
