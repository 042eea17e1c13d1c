// A small read-only HTTP server (cpp-httplib) on threads of its own: GET
// (and HEAD) of a few fixed paths, each answered by a handler that must not
// block on the tracer. What the handlers serve is the app's business.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "result.h"

namespace connleak {

// --http [ADDR:]PORT, parsed: ADDR is an IPv4 or IPv6 address (IPv6 in
// brackets when a port follows), or "localhost"; port 0 asks for any free port.
struct HttpAddress {
    std::string host;  // numeric, as given to bind(): "127.0.0.1", "::1"
    uint16_t port = 0;
    bool loopback = true;  // 127.0.0.0/8 or ::1
};

// "8080", "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:80", "localhost:9187".
std::optional<HttpAddress> parse_http_address(const std::string& text);

// "http://127.0.0.1:8080", "http://[::1]:8080".
std::string http_url(const std::string& host, uint16_t port);

struct HttpReply {
    int status = 200;
    std::string content_type;
    std::shared_ptr<const std::string> body;  // shared: a cached render is not copied per request
    std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpLimits {
    int read_timeout_s = 5;   // per read of a request (a client that stops sending is dropped)
    int write_timeout_s = 5;  // per write of a reply (a client that stops reading is dropped)
    int keep_alive_s = 5;
    size_t keep_alive_requests = 100;
    size_t workers = 8;  // requests answered at once; more wait their turn
};

class HttpServer {
public:
    // Binds and listens on `addr` (nothing is served until start()). Port in
    // use, an address not on this host: an Error saying so.
    static Result<std::unique_ptr<HttpServer>> bind(const HttpAddress& addr, const HttpLimits& limits = {});
    ~HttpServer();  // stops serving and joins its threads

    // GET `path` (and HEAD) answered by `handler`, on a server thread.
    // Before start().
    void route(const std::string& path, std::function<HttpReply()> handler);
    // Serves on threads of its own, with every signal blocked there: the
    // main thread's signalfd keeps receiving SIGINT and SIGTERM.
    void start();
    uint16_t port() const;  // the bound port (the one chosen, for port 0)

    struct Impl;

private:
    explicit HttpServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace connleak
