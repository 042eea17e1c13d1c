#include "record_queue.h"

#include <cstring>
#include <utility>

namespace connleak {

bool RecordQueue::push(const void* data, size_t size)
{
    uint32_t pid = 0;
    if (size >= 2 * sizeof(uint32_t))
        std::memcpy(&pid, static_cast<const char*>(data) + sizeof(uint32_t), sizeof(pid));
    if (size < 2 * sizeof(uint32_t) || bytes_ + size > max_bytes_) {
        dropped_[pid]++;
        return false;
    }
    records_.emplace_back(static_cast<const char*>(data), size);
    bytes_ += size;
    if (bytes_ > peak_bytes_)
        peak_bytes_ = bytes_;
    return true;
}

std::vector<std::string> RecordQueue::take()
{
    std::vector<std::string> out;
    out.swap(records_);
    bytes_ = 0;
    return out;
}

uint64_t RecordQueue::dropped(uint32_t pid) const
{
    auto it = dropped_.find(pid);
    return it == dropped_.end() ? 0 : it->second;
}

}  // namespace connleak
