// The live view names a process's container on its heading line.
#include <catch2/catch.hpp>
#include <string>

#include "screen_layout.h"
#include "trends.h"

using namespace connleak;

namespace {

ProcessReport proc(uint32_t pid, const std::string& comm, const std::string& id, const std::string& pod)
{
    ProcessReport p;
    p.pid = pid;
    p.comm = comm;
    p.acquired = 2;
    p.active = 2;
    p.container_id = id;
    p.pod_uid = pod;
    SiteReport s;
    s.site = "run (app.py:3)";
    s.acquired = 2;
    s.active = 2;
    p.sites.push_back(s);
    return p;
}

std::string heading(const Screen& s, const std::string& needle)
{
    for (const Line& l : s.lines)
        if (line_text(l).find(needle) != std::string::npos)
            return line_text(l);
    return "";
}

}  // namespace

TEST_CASE("live view: a process's container and pod on its heading, short as docker and kubectl show them", "[layout]")
{
    Snapshot snap;
    snap.processes.push_back(
        proc(10, "api", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "5f1c2d3e-aaaa-bbbb"));
    snap.processes.push_back(proc(11, "job", "", ""));
    LayoutParams params;
    params.width = 160;
    params.height = 40;
    const Screen s = layout_screen(snap, Trends{}, ViewState{}, params);
    const std::string api = heading(s, "PID 10 api");
    CHECK(api.find("container 0123456789ab ") != std::string::npos);
    CHECK(api.find("0123456789abc") == std::string::npos);
    CHECK(api.find("pod 5f1c2d3e") != std::string::npos);
    const std::string job = heading(s, "PID 11 job");
    REQUIRE(!job.empty());
    CHECK(job.find("container") == std::string::npos);
    CHECK(job.find("pod") == std::string::npos);
}
