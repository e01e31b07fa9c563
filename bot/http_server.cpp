#include "bot/http_server.hpp"

#include "bot/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <set>

namespace qunbot::bot {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

struct Connection {
    explicit Connection(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    bool busy = false; // a complete request is being handled; touched only on the strand
};

// Turns the callback-style Handler into something a coroutine can await. The completion is
// posted back to the awaiting coroutine's executor (its connection strand), whichever thread
// (e.g. the journal writer) calls `respond`; the work guard keeps run() from returning meanwhile.
template <class Token>
auto async_handle(const Handler& handler, HttpRequest request, Token&& token)
{
    return net::async_initiate<Token, void(HttpResponse)>(
        [&handler](auto completion, HttpRequest req) {
            auto work = net::make_work_guard(net::get_associated_executor(completion));
            auto shared = std::make_shared<decltype(completion)>(std::move(completion));
            handler(std::move(req), [shared, work](HttpResponse res) mutable {
                auto ex = work.get_executor();
                net::post(ex, [shared, res = std::move(res)]() mutable { (*shared)(std::move(res)); });
                work.reset();
            });
        },
        token, std::move(request));
}

http::response<http::string_body> make_response(int status, unsigned version, std::string content_type, std::string body,
                                                bool keep_alive)
{
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::server, "qunbot");
    res.set(http::field::content_type, content_type);
    res.body() = std::move(body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
}

} // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
    Impl(net::io_context& io, std::string addr, std::uint16_t p, HttpLimits l, Registry& m, Handler h)
        : ioc(io), acceptor(net::make_strand(io)), address(std::move(addr)), port(p), limits(l), handler(std::move(h)),
          connections_active(m.gauge("qunbot_http_connections_active", "Open HTTP connections")),
          accepted(m.counter("qunbot_http_connections_accepted_total", "Connections accepted")),
          rejected_max(m.counter("qunbot_http_connections_rejected_total", "Connections refused at accept time",
                                 {{"reason", "max_connections"}})),
          too_large(m.counter("qunbot_http_protocol_errors_total", "Requests refused before routing",
                              {{"reason", "body_too_large"}})),
          header_too_large(m.counter("qunbot_http_protocol_errors_total", "Requests refused before routing",
                                     {{"reason", "header_too_large"}})),
          read_timeout(m.counter("qunbot_http_protocol_errors_total", "Requests refused before routing",
                                 {{"reason", "read_timeout"}})),
          bad_request(m.counter("qunbot_http_protocol_errors_total", "Requests refused before routing",
                                {{"reason", "bad_request"}}))
    {
    }

    net::io_context& ioc;
    tcp::acceptor acceptor;
    std::string address;
    std::uint16_t port;
    HttpLimits limits;
    Handler handler;
    Gauge& connections_active;
    Counter& accepted;
    Counter& rejected_max;
    Counter& too_large;
    Counter& header_too_large;
    Counter& read_timeout;
    Counter& bad_request;

    std::atomic<bool> draining{false};
    std::atomic<std::size_t> active{0};
    std::mutex mutex; // guards `connections` and `on_drained`
    std::set<std::shared_ptr<Connection>> connections;
    std::function<void()> on_drained;

    void finished(const std::shared_ptr<Connection>& c)
    {
        std::function<void()> notify;
        {
            std::lock_guard lock(mutex);
            connections.erase(c);
            active.fetch_sub(1);
            connections_active.add(-1);
            if (draining && connections.empty() && on_drained) notify = std::exchange(on_drained, nullptr);
        }
        if (notify) notify();
    }
};

namespace {

using Impl = HttpServer::Impl;

// After an early error response the client may still be sending; closing with unread data
// makes the kernel send RST, which can destroy the response before the client reads it. So
// half-close and discard what arrives, briefly.
net::awaitable<void> linger_close(std::shared_ptr<Connection> c)
{
    beast::error_code ec;
    c->stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    c->stream.expires_after(500ms);
    char sink[4096];
    std::size_t total = 0;
    while (total < 1024 * 1024) {
        auto [rec, n] = co_await c->stream.async_read_some(net::buffer(sink), use_tuple);
        if (rec) break;
        total += n;
    }
    c->stream.socket().close(ec);
}

net::awaitable<void> write_error(std::shared_ptr<Connection> c, int status, std::string message)
{
    auto res = make_response(status, 11, "text/plain; charset=utf-8", std::move(message) + "\n", false);
    c->stream.expires_after(2s);
    co_await http::async_write(c->stream, res, use_tuple);
    co_await linger_close(c);
}

net::awaitable<void> session(std::shared_ptr<Impl> impl, std::shared_ptr<Connection> c)
{
    const auto read_timeout = std::chrono::milliseconds(impl->limits.read_timeout_ms);
    const auto idle_timeout = std::chrono::milliseconds(impl->limits.idle_timeout_ms);
    beast::flat_buffer buffer;
    bool first = true;
    std::string remote;
    {
        beast::error_code ec;
        const auto ep = c->stream.socket().remote_endpoint(ec);
        if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
    }
    for (;;) {
        // A drain that arrived while this connection was busy skipped it; check again here, on
        // the strand, before waiting for another request that would hold the shutdown.
        if (impl->draining.load()) break;
        if (buffer.size() == 0) {
            // Waiting for the next request on a kept-alive connection is idle time, not a slow client.
            c->stream.expires_after(first ? read_timeout : idle_timeout);
            auto [ec, n] = co_await c->stream.async_read_some(buffer.prepare(4096), use_tuple);
            if (ec) {
                if (ec == beast::error::timeout && first) impl->read_timeout.inc();
                break;
            }
            buffer.commit(n);
        }
        first = false;
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(impl->limits.max_header_bytes));
        parser.body_limit(impl->limits.max_body_bytes);
        c->stream.expires_after(read_timeout); // the whole request must arrive within this
        auto [ec, n] = co_await http::async_read_header(c->stream, buffer, parser, use_tuple);
        if (!ec && !parser.is_done()) {
            // Clients such as curl send "Expect: 100-continue" for larger bodies and wait for
            // this interim answer before sending the body.
            if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
                http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
                std::tie(ec, n) = co_await http::async_write(c->stream, go_on, use_tuple);
            }
            if (!ec) std::tie(ec, n) = co_await http::async_read(c->stream, buffer, parser, use_tuple);
        }
        if (ec == http::error::body_limit) {
            impl->too_large.inc();
            spdlog::warn("http: request body over {} bytes refused (413) from {}", impl->limits.max_body_bytes, remote);
            co_await write_error(c, 413, "request body too large");
            co_return;
        }
        if (ec == http::error::header_limit) {
            impl->header_too_large.inc();
            spdlog::warn("http: request header over {} bytes refused (431) from {}", impl->limits.max_header_bytes, remote);
            co_await write_error(c, 431, "request header fields too large");
            co_return;
        }
        if (ec == beast::error::timeout) {
            // tcp_stream has already closed the socket: a 408 cannot be sent, the cut-off is the answer.
            impl->read_timeout.inc();
            spdlog::info("http: request from {} not complete within {} ms, connection closed", remote,
                         impl->limits.read_timeout_ms);
            co_return;
        }
        if (ec == http::error::end_of_stream || ec == net::error::operation_aborted || ec == net::error::eof ||
            ec == net::error::connection_reset) {
            break;
        }
        if (ec) {
            impl->bad_request.inc();
            spdlog::info("http: malformed request from {}: {}", remote, ec.message());
            co_await write_error(c, 400, "bad request: " + ec.message());
            co_return;
        }

        auto req = parser.release();
        c->busy = true;
        c->stream.expires_never(); // the handler's own time is not the client's fault
        HttpRequest hr{std::string(req.method_string()), std::string(req.target()), std::move(req.body()), remote};
        HttpResponse answer = co_await async_handle(impl->handler, std::move(hr), net::use_awaitable);

        const bool keep = req.keep_alive() && !impl->draining.load();
        auto res = make_response(answer.status, req.version(), std::move(answer.content_type), std::move(answer.body), keep);
        c->stream.expires_after(read_timeout);
        auto [wec, wn] = co_await http::async_write(c->stream, res, use_tuple);
        c->busy = false; // only now may a drain cut this connection: the answer is out
        if (wec || !keep) break;
    }
    beast::error_code ec;
    c->stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    c->stream.socket().close(ec);
}

void refuse(tcp::socket socket)
{
    // Over the connection cap: answer without spending a coroutine or a timer on the peer.
    static constexpr std::string_view busy =
        "HTTP/1.1 503 Service Unavailable\r\nServer: qunbot\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n"
        "Connection: close\r\nRetry-After: 1\r\n\r\ntoo many open connections";
    beast::error_code ec;
    socket.non_blocking(true, ec);
    socket.write_some(net::buffer(busy.data(), busy.size()), ec);
    socket.shutdown(tcp::socket::shutdown_send, ec);
    socket.close(ec);
}

net::awaitable<void> accept_loop(std::shared_ptr<Impl> impl)
{
    for (;;) {
        auto [ec, socket] = co_await impl->acceptor.async_accept(net::make_strand(impl->ioc), use_tuple);
        if (ec) {
            if (ec == net::error::operation_aborted || !impl->acceptor.is_open()) co_return;
            spdlog::error("http: accept failed: {}", ec.message());
            // Out of descriptors: back off briefly instead of spinning on the error.
            net::steady_timer pause(impl->acceptor.get_executor(), 50ms);
            co_await pause.async_wait(use_tuple);
            continue;
        }
        if (impl->draining) {
            beast::error_code ignore;
            socket.close(ignore);
            continue;
        }
        if (impl->active.load() >= impl->limits.max_connections) {
            impl->rejected_max.inc();
            refuse(std::move(socket));
            continue;
        }
        impl->accepted.inc();
        socket.set_option(tcp::no_delay(true), ec);
        auto c = std::make_shared<Connection>(std::move(socket));
        {
            std::lock_guard lock(impl->mutex);
            impl->connections.insert(c);
            impl->active.fetch_add(1);
            impl->connections_active.add(1);
        }
        net::co_spawn(c->stream.get_executor(), session(impl, c), [impl, c](std::exception_ptr ep) {
            if (ep) {
                try {
                    std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    spdlog::error("http: connection task failed: {}", e.what());
                }
            }
            impl->finished(c);
        });
    }
}

} // namespace

HttpServer::HttpServer(boost::asio::io_context& ioc, std::string address, std::uint16_t port, HttpLimits limits,
                       Registry& metrics, Handler handler)
    : impl_(std::make_shared<Impl>(ioc, std::move(address), port, limits, metrics, std::move(handler)))
{
}

HttpServer::~HttpServer()
{
    beast::error_code ec;
    impl_->acceptor.close(ec);
}

core::Status HttpServer::start()
{
    beast::error_code ec;
    const auto addr = net::ip::make_address(impl_->address, ec);
    if (ec) return core::make_error("bad_address", "cannot parse listen address '" + impl_->address + "': " + ec.message());
    const tcp::endpoint ep(addr, impl_->port);
    auto& a = impl_->acceptor;
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
        return core::make_error("listen_failed", "cannot listen on " + impl_->address + ":" + std::to_string(impl_->port) +
                                                     ": " + ec.message());
    }
    impl_->port = a.local_endpoint().port();
    net::co_spawn(a.get_executor(), accept_loop(impl_), net::detached);
    return core::Ok{};
}

std::uint16_t HttpServer::port() const noexcept { return impl_->port; }

std::size_t HttpServer::active_connections() const noexcept { return impl_->active.load(); }

void HttpServer::drain(std::function<void()> on_drained)
{
    auto impl = impl_;
    impl->draining = true;
    net::post(impl->acceptor.get_executor(), [impl] {
        beast::error_code ec;
        impl->acceptor.close(ec);
    });
    std::function<void()> notify;
    {
        std::lock_guard lock(impl->mutex);
        if (impl->connections.empty()) notify = std::move(on_drained);
        else impl->on_drained = std::move(on_drained);
        // Idle keep-alive connections would otherwise hold the drain until their idle timeout.
        for (const auto& c : impl->connections) {
            net::post(c->stream.get_executor(), [c] {
                if (!c->busy) c->stream.cancel();
            });
        }
    }
    if (notify) notify();
}

} // namespace qunbot::bot
