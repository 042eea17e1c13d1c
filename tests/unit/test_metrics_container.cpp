// /metrics: a running process's container as labels of its series.
#include <catch2/catch.hpp>
#include <string>

#include "model.h"
#include "prometheus_text.h"

using namespace connleak;

namespace {

ProcessReport in_container(uint32_t pid, const std::string& id, const std::string& pod)
{
    ProcessReport p;
    p.pid = pid;
    p.comm = "api";
    p.acquired = 3;
    p.released = 1;
    p.active = 2;
    p.leaks = 1;
    p.container_id = id;
    p.pod_uid = pod;
    SiteReport s;
    s.site = "get (app.py:1)";
    s.acquired = 3;
    s.released = 1;
    s.active = 2;
    s.leaks = 1;
    p.sites.push_back(s);
    p.sockets.tracked = true;
    p.sockets.db_sockets = 2;
    return p;
}

}  // namespace

TEST_CASE("/metrics: a process's container and pod as labels, none outside any", "[http]")
{
    Snapshot s;
    s.processes.push_back(in_container(10, "0123abcd", "pod-1\"x"));
    s.processes.push_back(in_container(11, "fedc", ""));
    s.processes.push_back(in_container(12, "", ""));
    ProcessReport exited = in_container(13, "gone", "");
    exited.exited = true;
    s.processes.push_back(exited);
    const std::string text = prometheus_text(s, 10);
    CHECK(
        text.find(
            R"~(connleak_connections_active{pid="10",comm="api",container_id="0123abcd",pod_uid="pod-1\"x",site="get (app.py:1)"} 2)~") !=
        std::string::npos);
    CHECK(text.find(R"~(connleak_db_sockets{pid="10",comm="api",container_id="0123abcd",pod_uid="pod-1\"x"} 2)~") !=
          std::string::npos);
    CHECK(
        text.find(
            R"~(db_client_connection_count{pid="11",comm="api",container_id="fedc",db_client_connection_state="used"} 2)~") !=
        std::string::npos);
    CHECK(text.find(R"~(connleak_connections_leaked{pid="12",comm="api",site="get (app.py:1)"} 1)~") !=
          std::string::npos);
    // Exited processes are folded by command, across containers: no label.
    CHECK(text.find("gone") == std::string::npos);
}
