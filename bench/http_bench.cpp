// /metrics (and the other --http pages) on a synthetic snapshot: PROCS
// processes x SITES sites (default 1000 x 10), each process with a few live
// connections, served by connleak's own HttpService on a free loopback port
// and fetched with cpp-httplib's client. Prints one line
// `http_bench {...}` of milliseconds: the first request of a snapshot
// (renders it) and the next ones (cached), per path, and what publishing a
// snapshot costs the report loop.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cpp-httplib/httplib.h>
#include <string>
#include <sys/resource.h>
#include <vector>

#include "http_service.h"
#include "model.h"

using namespace connleak;
using Clock = std::chrono::steady_clock;

namespace {

// CPU time of this process (server and client threads), ms: less swayed
// than wall time by a busy machine.
double cpu_ms()
{
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

double ms_since(Clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Snapshot synthetic(size_t procs, size_t sites, size_t conns)
{
    Snapshot s;
    s.wall_time_s = 1795723200;
    for (size_t p = 0; p < procs; p++) {
        ProcessReport pr;
        pr.pid = static_cast<uint32_t>(10000 + p);
        pr.comm = "gunicorn";
        for (size_t i = 0; i < sites; i++) {
            SiteReport sr;
            sr.site = "route_" + std::to_string(i) + " (shop/routes_" + std::to_string(i) +
                      ".py:" + std::to_string(10 + i) + ")";
            sr.acquired = 1000 + i;
            sr.released = 990 + i;
            sr.active = 10;
            sr.leaks = i % 3 == 0 ? 2 : 0;
            sr.avg_ms = 12.5;
            sr.max_ms = 900;
            sr.frames = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{
                sr.site, "dispatch_request (flask/app.py:1796)", "wsgi_app (flask/app.py:2190)"});
            pr.acquired += sr.acquired;
            pr.released += sr.released;
            pr.active += sr.active;
            pr.leaks += sr.leaks;
            pr.sites.push_back(sr);
        }
        for (size_t c = 0; c < conns; c++) {
            ConnReport cr;
            cr.conn = 0x55d0c8a1b2c0 + c * 0x1000;
            cr.tid = pr.pid;
            cr.site = pr.sites[c % sites].site;
            cr.age_ms = 1000.0 * c;
            cr.leak = c % 2 == 0;
            pr.connections.push_back(cr);
        }
        s.totals.acquired += pr.acquired;
        s.totals.released += pr.released;
        s.totals.active += pr.active;
        s.totals.leaks += pr.leaks;
        s.processes.push_back(std::move(pr));
    }
    return s;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv)
{
    const size_t procs = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000;
    const size_t sites = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
    const Snapshot snap = synthetic(procs, sites, 3);
    HttpAddress addr;
    addr.host = "127.0.0.1";
    addr.port = 0;
    auto service = HttpService::bind(addr, HttpServiceOptions{10, 2});
    if (!service) {
        std::fprintf(stderr, "http_bench: %s\n", service.error().message.c_str());
        return 1;
    }
    service.value()->start();
    httplib::Client client("127.0.0.1", service.value()->port());
    client.set_read_timeout(30, 0);
    std::string out = "http_bench {\"processes\": " + std::to_string(procs) +
                      ", \"sites_per_process\": " + std::to_string(sites) + ", \"rounds\": " + std::to_string(rounds);
    // Prometheus alone: each interval's snapshot asked for /metrics only
    // (the JSON the other pages share is never built).
    std::vector<double> scrape_first, scrape_first_cpu, scrape_cached;
    for (int r = 0; r < rounds; r++) {
        service.value()->publish(snap);
        auto t0 = Clock::now();
        double c0 = cpu_ms();
        auto res = client.Get("/metrics");
        scrape_first.push_back(ms_since(t0));
        scrape_first_cpu.push_back(cpu_ms() - c0);
        if (!res || res->status != 200) {
            std::fprintf(stderr, "http_bench: GET /metrics failed\n");
            return 1;
        }
        t0 = Clock::now();
        client.Get("/metrics");
        scrape_cached.push_back(ms_since(t0));
    }
    char head[256];
    std::snprintf(head, sizeof(head),
                  ", \"metrics_only\": {\"first_ms\": %.2f, \"first_ms_max\": %.2f, \"first_cpu_ms\": %.2f, "
                  "\"cached_ms\": %.2f}",
                  median(scrape_first), *std::max_element(scrape_first.begin(), scrape_first.end()),
                  median(scrape_first_cpu), median(scrape_cached));
    out += head;
    std::vector<double> publish_ms;
    const char* paths[] = {"/metrics", "/health/detailed", "/snapshot.json", "/"};
    std::vector<double> first[4], cached[4], first_cpu[4], cached_cpu[4];
    size_t bytes[4] = {};
    for (int r = 0; r < rounds; r++) {
        auto t0 = Clock::now();
        service.value()->publish(snap);  // what the report loop pays per interval
        publish_ms.push_back(ms_since(t0));
        for (int i = 0; i < 4; i++) {
            t0 = Clock::now();
            double c0 = cpu_ms();
            auto res = client.Get(paths[i]);
            first[i].push_back(ms_since(t0));
            first_cpu[i].push_back(cpu_ms() - c0);
            if (!res || res->status != 200) {
                std::fprintf(stderr, "http_bench: GET %s failed\n", paths[i]);
                return 1;
            }
            bytes[i] = res->body.size();
            t0 = Clock::now();
            c0 = cpu_ms();
            res = client.Get(paths[i]);
            cached[i].push_back(ms_since(t0));
            cached_cpu[i].push_back(cpu_ms() - c0);
        }
    }
    char buf[256];
    std::snprintf(buf, sizeof(buf), ", \"publish_ms\": %.3f", median(publish_ms));
    out += buf;
    for (int i = 0; i < 4; i++) {
        std::snprintf(buf, sizeof(buf),
                      ", \"%s\": {\"first_ms\": %.2f, \"first_ms_max\": %.2f, \"first_cpu_ms\": %.2f, "
                      "\"cached_ms\": %.2f, \"cached_cpu_ms\": %.2f, \"bytes\": %zu}",
                      paths[i], median(first[i]), *std::max_element(first[i].begin(), first[i].end()),
                      median(first_cpu[i]), median(cached[i]), median(cached_cpu[i]), bytes[i]);
        out += buf;
    }
    // What a client asking for compression gets (Prometheus: gzip; a
    // browser: gzip, deflate, br), on the cached renders.
    const std::pair<const char*, const char*> encoded[] = {{"/metrics", "gzip"}, {"/", "gzip, deflate, br"}};
    for (const auto& [path, enc] : encoded) {
        auto t0 = Clock::now();
        auto res = client.Get(path, httplib::Headers{{"Accept-Encoding", enc}});
        const double ms = ms_since(t0);
        std::snprintf(buf, sizeof(buf), ", \"%s accept-encoding %s\": {\"ms\": %.2f, \"content_encoding\": \"%s\"}",
                      path, enc, ms, res ? res->get_header_value("Content-Encoding").c_str() : "failed");
        out += buf;
    }
    std::printf("%s}\n", out.c_str());
    return 0;
}
