// The JSON keys of the whole-host work: each process's container, and a
// bounded connections[] with connections_total beside it.
#include <catch2/catch.hpp>
#include <string>

#include "json_output.h"
#include "model.h"
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
