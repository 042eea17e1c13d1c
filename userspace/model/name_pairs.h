// A handle's database and user, kept once per distinct pair: every handle
// of a process (100 at scale, 100,000 in all) names the same one or two, and
// two strings a handle were most of what was held per handle between reports.
// Ids stay valid until compact(); unused pairs go only there.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "shared_text.h"

namespace connleak {

class NamePairs {
public:
    using Id = uint32_t;  // 0: none

    // The id of (database, user), made if new.
    Id id(const std::string& database, const std::string& user);
    // Shared: each handle's HandleState and report row hold the pair's one copy.
    const SharedText& database(Id id) const { return pairs_.at(id - 1).first; }
    const SharedText& user(Id id) const { return pairs_.at(id - 1).second; }
    size_t size() const { return pairs_.size(); }

    // Whether enough pairs were made since the last compact() to warrant
    // one (more than twice the pairs in use then, and at least 64).
    bool wants_compact() const { return pairs_.size() > limit_; }
    // Keeps only the pairs `used` (ids, any order, repeats allowed) and
    // renumbers them: returns the new id of each old one (index: old id,
    // 0 for a dropped one).
    std::vector<Id> compact(const std::vector<Id>& used);

private:
    std::vector<std::pair<SharedText, SharedText>> pairs_;  // id - 1
    std::map<std::pair<std::string, std::string>, Id> ids_;
    size_t limit_ = 64;
};

}  // namespace connleak
