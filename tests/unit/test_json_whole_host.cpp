// The JSON keys of the whole-host work: each process's container, and a
// bounded connections[] with connections_total beside it.
#include <catch2/catch.hpp>
#include <string>

#include "json_output.h"
#include "model.h"
#include "snapshot_document.h"
#include "text_report.h"

using namespace connleak;

namespace {

Snapshot with_connections(size_t live, size_t shown)
{
    Snapshot snap;
    snap.connections_shown = shown;
    ProcessReport p;
    p.pid = 42;
    p.comm = "worker";
    for (size_t i = 0; i < live; i++) {
        ConnReport c;
        c.conn = 0x1000 + i;
        c.age_ms = 1000.0 * (live - i);  // oldest first, as the model orders them
        c.leak = i < 3;
        p.connections.push_back(c);
    }
    p.active = live;
    p.leaks = 3;
    snap.processes.push_back(p);
    return snap;
}

}  // namespace

TEST_CASE("connections[] lists the oldest up to the limit; connections_total counts all")
{
    const auto j = snapshot_to_json(with_connections(250, 100));
    const auto& p = j["processes"][0];
    REQUIRE(p["connections"].size() == 100);
    CHECK(p["connections_total"] == 250);
    CHECK(p["connections"][0]["conn"] == "0x1000");  // the oldest
    CHECK(p["connections"][99]["conn"] == "0x1063");
    CHECK(p["connections"][0]["leak"] == true);  // leaks are the oldest: never cut first
    CHECK(p["active"] == 250);
}

TEST_CASE("below the limit every connection is listed")
{
    const auto j = snapshot_to_json(with_connections(7, 100));
    CHECK(j["processes"][0]["connections"].size() == 7);
    CHECK(j["processes"][0]["connections_total"] == 7);
}

// Processes of `live` handles each, ages `first_age_ms` - 1000 * i (oldest first).
Snapshot processes_with_ages(const std::vector<std::pair<size_t, double>>& procs, size_t shown, size_t listed_max)
{
    Snapshot snap;
    snap.connections_shown = shown;
    snap.connections_listed_max = listed_max;
    uint32_t pid = 100;
    for (const auto& [live, first_age_ms] : procs) {
        ProcessReport p;
        p.pid = pid++;
        for (size_t i = 0; i < live; i++) {
            ConnReport c;
            c.conn = 0x1000 * p.pid + i;
            c.age_ms = first_age_ms - 1000.0 * i;
            p.connections.push_back(c);
        }
        p.active = live;
        snap.processes.push_back(p);
    }
    return snap;
}

TEST_CASE("--connections-max: the oldest over all processes, each process a prefix of its own")
{
    // Ages: A 10k,9k,..; B 9.5k,8.5k,..; C 100 (young). Five in all: A 10k, B 9.5k, A 9k, B 8.5k, A 8k.
    const Snapshot snap = processes_with_ages({{50, 10000}, {50, 9500}, {1, 100}}, 100, 5);
    CHECK(connections_listed(snap) == std::vector<size_t>{3, 2, 0});
    const auto j = snapshot_to_json(snap);
    CHECK(j["connections_listed"] == 5);
    CHECK(j["processes"][0]["connections"].size() == 3);
    CHECK(j["processes"][0]["connections_total"] == 50);
    CHECK(j["processes"][1]["connections"].size() == 2);
    CHECK(j["processes"][1]["connections"][1]["conn"] == "0x65001");  // B's second oldest
    CHECK(j["processes"][2]["connections"].empty());
    CHECK(j["processes"][2]["connections_total"] == 1);
    CHECK(snapshot_text(snap) == snapshot_document(j));  // the streamed text lists the same
}

TEST_CASE("--connections-max: equal ages go to the earlier process; the per-process limit still holds")
{
    CHECK(connections_listed(processes_with_ages({{3, 5000}, {3, 5000}}, 100, 4)) == std::vector<size_t>{2, 2});
    CHECK(connections_listed(processes_with_ages({{3, 5000}, {3, 5000}}, 100, 3)) == std::vector<size_t>{2, 1});
    // Per process at most 2 (--connections 2): 4 candidates fit a bound of 10.
    CHECK(connections_listed(processes_with_ages({{3, 9000}, {3, 5000}}, 2, 10)) == std::vector<size_t>{2, 2});
    CHECK(connections_listed(processes_with_ages({{3, 9000}, {3, 5000}}, 2, 3)) == std::vector<size_t>{2, 1});
    CHECK(connections_listed(processes_with_ages({}, 2, 3)).empty());
}

TEST_CASE("container: null outside a container, {id, pod_uid} inside, a missing part null")
{
    Snapshot snap = with_connections(0, 100);
    CHECK(snapshot_to_json(snap)["processes"][0]["container"].is_null());

    snap.processes[0].container_id = std::string(64, 'a');
    auto c = snapshot_to_json(snap)["processes"][0]["container"];
    CHECK(c["id"] == std::string(64, 'a'));
    CHECK(c["pod_uid"].is_null());

    snap.processes[0].pod_uid = "8d3f6c2e-1a2b-4c5d-9e8f-0a1b2c3d4e5f";
    c = snapshot_to_json(snap)["processes"][0]["container"];
    CHECK(c["pod_uid"] == "8d3f6c2e-1a2b-4c5d-9e8f-0a1b2c3d4e5f");
}

TEST_CASE("the text report names the container (short ID) and the pod")
{
    Snapshot snap = with_connections(0, 100);
    snap.processes[0].container_id = "3f4b2d0a9c8e" + std::string(52, '0');
    snap.processes[0].pod_uid = "8d3f6c2e-1a2b-4c5d-9e8f-0a1b2c3d4e5f";
    const std::string text = render_text_report(snap);
    CHECK(text.find("container 3f4b2d0a9c8e  pod 8d3f6c2e-1a2b-4c5d-9e8f-0a1b2c3d4e5f") != std::string::npos);
    CHECK(text.find("3f4b2d0a9c8e0") == std::string::npos);
}
