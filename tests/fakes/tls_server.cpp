#include "fakes/tls_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/params_view.hpp>

#include <thread>
#include <vector>

namespace qunbot::fakes {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
}

std::string FakeRequest::param(const std::string& name) const
{
    boost::urls::params_view params(query);
    auto it = params.find(name);
    return it == params.end() ? std::string() : std::string((*it).value);
}

struct TlsServer::Impl {
    net::io_context ioc;
    ssl::context tls{ssl::context::tls_server};
    tcp::acceptor acceptor{ioc};
    Handler handler;
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> failed_handshakes{0};
    std::vector<std::thread> threads;
};

namespace {

net::awaitable<void> session(std::shared_ptr<TlsServer::Impl> impl, tcp::socket socket)
{
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), impl->tls);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    if (hec) {
        ++impl->failed_handshakes;
        co_return;
    }
    ++impl->connections;
    beast::flat_buffer buffer;
    for (;;) {
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(60));
        http::request<http::string_body> req;
        auto [rec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
        (void)n;
        if (rec) co_return;
        FakeRequest fr;
        fr.method = std::string(req.method_string());
        const std::string target(req.target());
        const auto q = target.find('?');
        fr.path = target.substr(0, q);
        if (q != std::string::npos) fr.query = target.substr(q + 1);
        fr.body = std::move(req.body());
        FakeReply reply = impl->handler(fr);
        if (reply.delay.count() > 0) {
            net::steady_timer t(stream.get_executor());
            t.expires_after(reply.delay);
            co_await t.async_wait(use_tuple);
        }
        if (reply.drop) {
            boost::system::error_code ec;
            beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ec);
            co_return;
        }
        http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
        res.set(http::field::content_type, reply.content_type);
        res.body() = std::move(reply.body);
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, w] = co_await http::async_write(stream, res, use_tuple);
        (void)w;
        if (wec || !res.keep_alive()) co_return;
    }
}

net::awaitable<void> accept_loop(std::shared_ptr<TlsServer::Impl> impl)
{
    for (;;) {
        auto [ec, socket] = co_await impl->acceptor.async_accept(net::make_strand(impl->ioc), use_tuple);
        if (ec) {
            if (ec == net::error::operation_aborted || !impl->acceptor.is_open()) co_return;
            continue;
        }
        auto ex = socket.get_executor();
        net::co_spawn(ex, session(impl, std::move(socket)), net::detached);
    }
}

} // namespace

TlsServer::TlsServer(const TestPki& pki, Handler handler, unsigned threads, bool require_client_cert) : impl_(std::make_shared<Impl>())
{
    impl_->handler = std::move(handler);
    if (require_client_cert) {
        impl_->tls.add_certificate_authority(net::buffer(pki.ca_pem));
        impl_->tls.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    impl_->tls.use_certificate_chain(net::buffer(pki.server_cert_pem));
    impl_->tls.use_private_key(net::buffer(pki.server_key_pem), ssl::context::pem);
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    net::co_spawn(impl_->ioc, accept_loop(impl_), net::detached);
    for (unsigned i = 0; i < threads; ++i) impl_->threads.emplace_back([impl = impl_] { impl->ioc.run(); });
}

TlsServer::~TlsServer()
{
    impl_->ioc.stop();
    for (auto& t : impl_->threads) t.join();
}

std::uint64_t TlsServer::failed_handshakes() const noexcept { return impl_->failed_handshakes.load(); }

std::uint16_t TlsServer::port() const noexcept { return impl_->acceptor.local_endpoint().port(); }
std::uint64_t TlsServer::connections() const noexcept { return impl_->connections.load(); }

} // namespace qunbot::fakes
