// --server in the session: the latest pg_stat_activity reads (taken, never
// waited for) and the traced processes' sockets go into RawState::server
// each interval, for the model's join.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model.h"
#include "pg_activity_reader.h"

namespace connleak {

class ServerAnnotator {
public:
    explicit ServerAnnotator(const ActivityReaderOptions& opts) : reader_(opts), opts_(opts) {}

    // A process attached to by PID: the sockets it holds now predate the
    // attach (and are joined from the first round on).
    void add_process(uint32_t pid);
    // Starts reading (after a launched command was forked).
    void start() { reader_.start(); }
    void annotate(RawState& raw);
    // What the reader has to say, each a line for stderr.
    std::vector<std::string> take_messages() { return reader_.take_messages(); }
    // What it cost, one line (CONNLEAK_SERVER_STATS, for the benchmark).
    std::string cost_summary() const;

private:
    ActivityReader reader_;
    ActivityReaderOptions opts_;
    std::map<uint32_t, std::set<uint64_t>> pre_attach_;
    uint64_t annotations_ = 0, annotate_ns_ = 0;  // on the tracing thread
};

}  // namespace connleak
