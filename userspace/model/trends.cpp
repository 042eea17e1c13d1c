#include "trends.h"

#include <algorithm>

namespace connleak {

void Trends::add(History& h, int64_t value)
{
    if (h.samples++ == 0)
        h.first = value;
    h.recent.push_back(value);
    if (h.recent.size() > kWindow)
        h.recent.pop_front();
}

Trend Trends::trend_of(const History& h)
{
    Trend t;
    t.samples = h.samples;
    if (h.recent.empty())
        return t;
    const int64_t now = h.recent.back();
    t.since_first = now - h.first;
    if (h.recent.size() < 2)
        return t;  // New: nothing to compare with yet
    t.since_last = now - h.recent[h.recent.size() - 2];

    // Up when the whole band moved up: the quietest recent report holds
    // more than the quietest earlier one (leaked handles never come back)
    // and the busiest more than the busiest. Handles caught in flight, or a
    // busy pool going up and down, move only one edge: Flat.
    const auto mid = h.recent.begin() + static_cast<std::ptrdiff_t>(h.recent.size() / 2);
    const int64_t early_min = *std::min_element(h.recent.begin(), mid);
    const int64_t late_min = *std::min_element(mid, h.recent.end());
    const int64_t early_max = *std::max_element(h.recent.begin(), mid);
    const int64_t late_max = *std::max_element(mid, h.recent.end());
    t.direction = late_min > early_min && late_max > early_max   ? Direction::Up
                  : late_min < early_min && late_max < early_max ? Direction::Down
                                                                 : Direction::Flat;
    return t;
}

void Trends::record(const Snapshot& snap)
{
    for (const ProcessReport& p : snap.processes) {
        const bool known = pids_.count(p.pid) > 0;
        for (const SiteReport& s : p.sites) {
            auto [it, is_new] = sites_.try_emplace({p.pid, s.site});
            if (is_new && known)
                add(it->second, 0);
            add(it->second, static_cast<int64_t>(s.active));
        }
    }
    for (const ProcessReport& p : snap.processes)
        pids_.insert(p.pid);
    add(total_, static_cast<int64_t>(snap.totals.active));
}

Trend Trends::site(uint32_t pid, const std::string& site) const
{
    auto it = sites_.find({pid, site});
    return it == sites_.end() ? Trend{} : trend_of(it->second);
}

Trend Trends::total() const
{
    return trend_of(total_);
}

}  // namespace connleak
