#include "http_service.h"

#include <functional>
#include <thread>

#include "dashboard_html.h"
#include "health_json.h"
#include "json_output.h"
#include "prometheus_text.h"
#include "snapshot_document.h"

namespace connleak {

using json = nlohmann::ordered_json;
using Text = std::shared_ptr<const std::string>;

struct HttpService::Rendered {
    explicit Rendered(std::shared_ptr<const Snapshot> s) : snap(std::move(s)) {}

    const json& snapshot_json()
    {
        std::call_once(json_once, [&] { doc = snapshot_to_json(*snap); });
        return doc;
    }
    // A format of this snapshot, rendered by the first request that wants it.
    const Text& format(std::once_flag& once, Text& text, const std::function<std::string(const json&)>& render)
    {
        std::call_once(once, [&] { text = std::make_shared<const std::string>(render(snapshot_json())); });
        return text;
    }

    const std::shared_ptr<const Snapshot> snap;
    std::once_flag json_once;
    json doc;
    std::once_flag document_once, health_once, metrics_once, page_once;
    Text document, health, metrics, page;
};

HttpService::HttpService(std::unique_ptr<HttpServer> server, const HttpServiceOptions& opts)
        : server_(std::move(server)), opts_(opts)
{}

Result<std::unique_ptr<HttpService>> HttpService::bind(const HttpAddress& addr, const HttpServiceOptions& opts,
                                                       const HttpLimits& limits)
{
    auto server = HttpServer::bind(addr, limits);
    if (!server)
        return server.error();
    std::unique_ptr<HttpService> service(new HttpService(std::move(server.value()), opts));
    HttpService* self = service.get();
    const HttpServiceOptions o = opts;
    auto serve = [self](const char* type, std::vector<std::pair<std::string, std::string>> headers,
                        std::function<const Text&(Rendered&)> pick) {
        return [=]() {
            std::shared_ptr<Rendered> r = self->latest();
            if (!r)
                return HttpReply{
                    503,
                    "text/plain; charset=utf-8",
                    std::make_shared<const std::string>("connleak: no snapshot yet; try again in a moment\n"),
                    {{"Retry-After", "1"}}};
            return HttpReply{200, type, pick(*r), headers};
        };
    };
    self->server_->route("/snapshot.json", serve("application/json", {}, [](Rendered& r) -> const Text& {
                             return r.format(r.document_once, r.document, snapshot_document);
                         }));
    self->server_->route("/health/detailed", serve("application/json", {}, [o](Rendered& r) -> const Text& {
                             return r.format(r.health_once, r.health, [o](const json& j) {
                                 return health_detailed_json(j, o.top_sites).dump(2) + "\n";
                             });
                         }));
    // Straight from the Snapshot: Prometheus asks most often, and never
    // pays for the JSON the other pages share.
    self->server_->route("/metrics",
                         serve("text/plain; version=0.0.4; charset=utf-8", {}, [o](Rendered& r) -> const Text& {
                             std::call_once(r.metrics_once, [&] {
                                 r.metrics = std::make_shared<const std::string>(prometheus_text(*r.snap, o.top_sites));
                             });
                             return r.metrics;
                         }));
    // No script and nothing from elsewhere: the page is inert HTML.
    self->server_->route("/", serve("text/html; charset=utf-8",
                                    {{"Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"}},
                                    [o](Rendered& r) -> const Text& {
                                        return r.format(r.page_once, r.page, [o](const json& j) {
                                            DashboardOptions d;
                                            d.refresh_s = o.refresh_s;
                                            return dashboard_html(j, d);
                                        });
                                    }));
    return service;
}

void HttpService::publish(const Snapshot& snap)
{
    auto next = std::make_shared<const Snapshot>(snap);
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.swap(next);
    // `next` now holds a snapshot no request asked for: a plain copy, freed
    // here. Rendered ones (their JSON is the big part) are freed by the
    // request that replaces them, never by the report loop.
}

std::shared_ptr<HttpService::Rendered> HttpService::latest()
{
    std::shared_ptr<Rendered> replaced;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!pending_)
            return latest_;
        replaced = std::move(latest_);
        latest_ = std::make_shared<Rendered>(std::move(pending_));
        pending_.reset();
        if (!replaced)
            return latest_;
    }
    // What it rendered (a JSON tree of every site and connection) takes
    // milliseconds to free: not on this request's time, nor the report
    // loop's. The thread inherits this one's mask (every signal blocked).
    std::thread([old = std::move(replaced)]() mutable { old.reset(); }).detach();
    std::lock_guard<std::mutex> lock(mutex_);
    return latest_;
}

namespace {

class PublishingSink : public ReportSink {
public:
    PublishingSink(std::unique_ptr<ReportSink> inner, HttpService& http) : inner_(std::move(inner)), http_(http) {}
    void show(const Snapshot& snap) override
    {
        http_.publish(snap);
        inner_->show(snap);
    }
    void finish(const Snapshot& snap) override
    {
        http_.publish(snap);
        inner_->finish(snap);
    }
    int input_fd() const override { return inner_->input_fd(); }
    bool handle_input() override { return inner_->handle_input(); }
    void resized() override { inner_->resized(); }
    int output_error() const override { return inner_->output_error(); }

private:
    std::unique_ptr<ReportSink> inner_;
    HttpService& http_;
};

}  // namespace

std::unique_ptr<ReportSink> publishing_sink(std::unique_ptr<ReportSink> inner, HttpService& http)
{
    return std::make_unique<PublishingSink>(std::move(inner), http);
}

}  // namespace connleak
