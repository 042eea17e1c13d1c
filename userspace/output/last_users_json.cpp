#include "last_users_json.h"

#include "safe_text.h"

namespace connleak {
namespace {

using json = nlohmann::ordered_json;

// site and frames null when the last user is not known.
json users_json(const std::vector<LastUserReport>& users)
{
    json out = json::array();
    for (const LastUserReport& u : users) {
        json frames = nullptr;
        if (!u.site.empty()) {
            frames = json::array();
            if (u.frames)
                for (const std::string& f : *u.frames)
                    frames.push_back(utf8_text(f));
        }
        out.push_back({{"site", u.site.empty() ? json(nullptr) : json(utf8_text(u.site))},
                       {"frames", std::move(frames)},
                       {"connections", u.connections},
                       {"pooled", u.pooled},
                       {"checked_out", u.checked_out},
                       {"leaks", u.leaks}});
    }
    return out;
}

}  // namespace

void add_process_last_users(json& process, const ProcessReport& p)
{
    process["last_users"] = users_json(p.last_users);
    process["last_users_total"] = p.last_users_total;
}

void add_snapshot_last_users(json& snapshot, const Snapshot& snap)
{
    snapshot["last_users"] = users_json(snap.last_users);
    snapshot["last_users_total"] = snap.last_users_total;
}

}  // namespace connleak
