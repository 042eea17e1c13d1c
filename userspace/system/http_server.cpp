#include "http_server.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <cpp-httplib/httplib.h>
#include <mutex>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace connleak {

std::optional<HttpAddress> parse_http_address(const std::string& text)
{
    std::string host = "127.0.0.1", port_text = text;
    if (!text.empty() && text[0] == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return std::nullopt;
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
        in6_addr a6;
        if (inet_pton(AF_INET6, host.c_str(), &a6) != 1)
            return std::nullopt;
    } else if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host == "localhost")
            host = "127.0.0.1";
        in_addr a4;
        if (inet_pton(AF_INET, host.c_str(), &a4) != 1)
            return std::nullopt;  // a bare IPv6 address needs brackets
    }
    if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    const unsigned long port = std::stoul(port_text);
    if (port > 65535)
        return std::nullopt;
    HttpAddress out;
    out.host = host;
    out.port = static_cast<uint16_t>(port);
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, host.c_str(), &a4) == 1)
        out.loopback = (ntohl(a4.s_addr) >> 24) == 127;
    else
        out.loopback = inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    return out;
}

std::string http_url(const std::string& host, uint16_t port)
{
    const bool v6 = host.find(':') != std::string::npos;
    return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

struct HttpServer::Impl {
    httplib::Server server;
    int port = 0;
    std::thread thread;
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;  // listen_after_bind returned
};

namespace {

// bind() on a socket of our own first, for its errno: cpp-httplib only says
// that binding failed. Same options as cpp-httplib's (SO_REUSEADDR).
Status try_bind(const HttpAddress& addr)
{
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, addr.host.c_str(), &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(addr.port);
        len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr.host.c_str(), &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(addr.port);
        len = sizeof(*s6);
    } else {
        return Error{"--http: " + addr.host + " is not an IP address"};
    }
    const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return Error{std::string("--http: socket: ") + std::strerror(errno)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
    const int err = errno;
    close(fd);
    if (rc == 0)
        return Ok{};
    const std::string where = http_url(addr.host, addr.port);
    if (err == EADDRINUSE)
        return Error{"--http: cannot serve on " + where + ": the port is in use (choose another with --http)"};
    if (err == EADDRNOTAVAIL)
        return Error{"--http: cannot serve on " + where + ": " + addr.host + " is not an address of this host"};
    return Error{"--http: cannot serve on " + where + ": " + std::strerror(err)};
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::bind(const HttpAddress& addr, const HttpLimits& limits)
{
    if (auto s = try_bind(addr); !s)
        return s.error();
    auto impl = std::make_unique<Impl>();
    httplib::Server& svr = impl->server;
    const size_t workers = limits.workers;
    svr.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    svr.set_read_timeout(limits.read_timeout_s, 0);
    svr.set_write_timeout(limits.write_timeout_s, 0);
    svr.set_keep_alive_timeout(limits.keep_alive_s);
    svr.set_keep_alive_max_count(limits.keep_alive_requests);
    svr.set_payload_max_length(4096);  // nothing here takes a body
    // Replies go as they are. cpp-httplib would otherwise compress every
    // reply anew for each client that accepts it: brotli at its highest
    // quality takes over 30 s for a 2 MB dashboard (bench/http_bench), so
    // one browser tab reloading it would keep a core busy. Dropping the
    // header is legal: the Request behind the const reference is the
    // server's own, non-const object. (third_party's copy is built without
    // zlib and brotli, so it would not compress anyway; dropping the header
    // keeps a build with them the same.)
    svr.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
        const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
        return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty())
            return;
        if (res.status == 404)
            res.set_content("connleak: no such page; there are /, /health/detailed, /snapshot.json and /metrics\n",
                            "text/plain; charset=utf-8");
        else
            res.set_content("connleak: " + std::to_string(res.status) + "\n", "text/plain; charset=utf-8");
    });
    impl->port =
        addr.port ? (svr.bind_to_port(addr.host, addr.port) ? addr.port : -1) : svr.bind_to_any_port(addr.host);
    if (impl->port <= 0)
        return Error{"--http: cannot serve on " + http_url(addr.host, addr.port)};
    return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer()
{
    if (!impl_->thread.joinable())
        return;
    // Stopping waits for the requests under way; a client that stalls one
    // holds it up to the timeouts. connleak is about to exit then: it does
    // not wait, and the server is left to the end of the process. (stop()
    // again each round: the first may come before the thread listens.)
    std::unique_lock<std::mutex> lock(impl_->mutex);
    for (int round = 0; round < 20; round++) {
        impl_->server.stop();
        if (impl_->cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return impl_->done; })) {
            lock.unlock();
            impl_->thread.join();
            return;
        }
    }
    lock.unlock();
    impl_->thread.detach();
    (void)impl_.release();  // still in use by its threads
}

void HttpServer::route(const std::string& path, std::function<HttpReply()> handler)
{
    auto serve = [handler](const httplib::Request&, httplib::Response& res) {
        HttpReply r = handler();
        res.status = r.status;
        res.set_header("Cache-Control", "no-store");
        res.set_header("X-Content-Type-Options", "nosniff");
        for (const auto& [name, value] : r.headers)
            res.set_header(name.c_str(), value);
        if (r.body)
            res.set_content(*r.body, r.content_type.c_str());
    };
    // cpp-httplib takes a regular expression: the path's dots are literal.
    std::string pattern;
    for (char c : path) {
        if (c == '.')
            pattern += '\\';
        pattern += c;
    }
    impl_->server.Get(pattern, serve);  // HEAD too: cpp-httplib answers it from the GET handler
    auto not_allowed = [](const httplib::Request&, httplib::Response& res) {
        res.status = 405;
        res.set_header("Allow", "GET, HEAD");
        res.set_content("connleak: read-only: GET or HEAD\n", "text/plain; charset=utf-8");
    };
    impl_->server.Post(pattern, not_allowed);
    impl_->server.Put(pattern, not_allowed);
    impl_->server.Delete(pattern, not_allowed);
    impl_->server.Patch(pattern, not_allowed);
}

void HttpServer::start()
{
    // The listening thread and the workers it creates inherit this mask.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    Impl* impl = impl_.get();
    impl_->thread = std::thread([impl] {
        impl->server.listen_after_bind();
        std::lock_guard<std::mutex> lock(impl->mutex);
        impl->done = true;
        impl->cv.notify_all();
    });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

uint16_t HttpServer::port() const
{
    return static_cast<uint16_t>(impl_->port);
}

}  // namespace connleak
