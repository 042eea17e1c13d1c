// How each site's live handle count moves from one report to the next, so
// a person can tell a leak (active climbs, interval after interval) from a
// pool (active rises once, then stays flat). Pure: snapshots in, numbers out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "model.h"

namespace connleak {

// Where active went over the last few reports (the window), comparing its
// older half with its newer half: Up when both the lowest and the highest
// value rose (the leak signature), Down when both fell, else Flat.
enum class Direction { New, Up, Flat, Down };

// A site that appears in a process already seen held nothing before: it
// starts from an implied 0 in the previous report, so a new leaking site
// shows as climbing at once. Sites of the first report of a process start
// from what they hold then (what came before attaching is unknown).
struct Trend {
    int64_t since_last = 0;   // active now minus active in the previous report listing it
    int64_t since_first = 0;  // active now minus active when first seen
    size_t samples = 0;       // values known (reports listing it, plus the implied 0); 0: never seen
    Direction direction = Direction::New;
};

class Trends {
public:
    // Reports looked back over for direction: long enough that a slow leak
    // shows as Up, short enough that a pool's warm-up is soon Flat again.
    static constexpr size_t kWindow = 10;

    // Call once per report (not per redraw).
    void record(const Snapshot& snap);

    Trend site(uint32_t pid, const std::string& site) const;
    Trend total() const;  // of totals.active

private:
    struct History {
        int64_t first = 0;
        size_t samples = 0;
        std::deque<int64_t> recent;  // the last kWindow values, oldest first
    };
    static void add(History& h, int64_t value);
    static Trend trend_of(const History& h);

    std::map<std::pair<uint32_t, std::string>, History> sites_;
    std::set<uint32_t> pids_;  // processes of earlier reports
    History total_;
};

}  // namespace connleak
