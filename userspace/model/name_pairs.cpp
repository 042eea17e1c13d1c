#include "name_pairs.h"

#include <algorithm>

namespace connleak {

NamePairs::Id NamePairs::id(const std::string& database, const std::string& user)
{
    auto key = std::make_pair(database, user);
    if (auto it = ids_.find(key); it != ids_.end())
        return it->second;
    pairs_.emplace_back(SharedText(database), SharedText(user));
    const Id made = static_cast<Id>(pairs_.size());
    ids_.emplace(std::move(key), made);
    return made;
}

std::vector<NamePairs::Id> NamePairs::compact(const std::vector<Id>& used)
{
    std::vector<Id> renumber(pairs_.size() + 1, 0);
    for (Id u : used)
        if (u && u <= pairs_.size())
            renumber[u] = 1;  // kept; numbered below, in the old order
    std::vector<std::pair<SharedText, SharedText>> kept;
    ids_.clear();
    for (size_t old = 1; old < renumber.size(); old++) {
        if (!renumber[old])
            continue;
        kept.push_back(std::move(pairs_[old - 1]));
        renumber[old] = static_cast<Id>(kept.size());
        ids_.emplace(std::make_pair(kept.back().first.str(), kept.back().second.str()), renumber[old]);
    }
    pairs_ = std::move(kept);
    limit_ = std::max<size_t>(64, 2 * pairs_.size());
    return renumber;
}

}  // namespace connleak
