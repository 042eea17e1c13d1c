// --http: the latest snapshot, served (DESIGN.md "HTTP"). The report loop
// publishes each interval's snapshot (a copy: no map is read per request);
// the server's threads render each format from it once, on first request,
// and free what they rendered, so a slow or hostile client costs the
// tracing loop nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "http_server.h"
#include "model.h"
#include "report_sink.h"
#include "result.h"

namespace connleak {

struct HttpServiceOptions {
    size_t top_sites = 10;  // rows of /health/detailed, sites per exited command in /metrics
    int refresh_s = 2;      // the dashboard reloads itself this often
};

class HttpService {
public:
    static Result<std::unique_ptr<HttpService>> bind(const HttpAddress& addr, const HttpServiceOptions& opts,
                                                     const HttpLimits& limits = {});
    // Serves from now on (503 until the first snapshot is published).
    void start() { server_->start(); }
    // The report loop's snapshot of this interval.
    void publish(const Snapshot& snap);
    uint16_t port() const { return server_->port(); }

    struct Rendered;  // one snapshot and its formats, rendered on demand

private:
    HttpService(std::unique_ptr<HttpServer> server, const HttpServiceOptions& opts);
    std::shared_ptr<Rendered> latest();

    std::unique_ptr<HttpServer> server_;
    HttpServiceOptions opts_;
    std::mutex mutex_;                         // guards the two pointers only
    std::shared_ptr<const Snapshot> pending_;  // published, not yet asked for
    std::shared_ptr<Rendered> latest_;         // the one requests are served from
};

// A sink that shows each report through `inner` and publishes it to `http`.
std::unique_ptr<ReportSink> publishing_sink(std::unique_ptr<ReportSink> inner, HttpService& http);

}  // namespace connleak
