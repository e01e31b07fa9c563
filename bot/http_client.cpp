#include "bot/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

namespace qunbot::bot {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

core::Result<HttpUrl> parse_http_url(const std::string& url)
{
    auto u = boost::urls::parse_uri(url);
    if (!u || u->scheme() != "http" || u->host().empty()) {
        return core::make_error("bad_url", "expected a URL like http://127.0.0.1:8080/path, got '" + url + "'");
    }
    HttpUrl out;
    out.host = u->host();
    if (u->has_port()) out.port = u->port_number();
    out.target = std::string(u->encoded_path());
    if (out.target.empty()) out.target = "/";
    if (u->has_query()) out.target += "?" + std::string(u->encoded_query());
    return out;
}

struct HttpClient::Impl {
    std::string host;
    std::uint16_t port;
    std::chrono::milliseconds timeout;
    net::io_context ioc;
    std::unique_ptr<beast::tcp_stream> stream;
    beast::flat_buffer buffer;
};

HttpClient::HttpClient(std::string host, std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>())
{
    impl_->host = std::move(host);
    impl_->port = port;
    impl_->timeout = timeout;
}

HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

void HttpClient::disconnect()
{
    if (impl_->stream) {
        beast::error_code ec;
        impl_->stream->socket().shutdown(tcp::socket::shutdown_both, ec);
        impl_->stream.reset();
    }
    impl_->buffer.clear();
}

core::Result<ClientResponse> HttpClient::request(const std::string& method, const std::string& target,
                                                 const std::string& body, const std::string& content_type)
{
    auto& s = *impl_;
    // Blocking operations with a deadline: run the async forms on our private io_context.
    auto run_for = [&s](auto&& start) -> beast::error_code {
        beast::error_code result = net::error::would_block;
        start(result);
        s.ioc.restart();
        s.ioc.run();
        return result;
    };
    if (!s.stream) {
        s.stream = std::make_unique<beast::tcp_stream>(s.ioc);
        tcp::resolver resolver(s.ioc);
        beast::error_code ec;
        auto results = resolver.resolve(s.host, std::to_string(s.port), ec);
        if (ec) {
            s.stream.reset();
            return core::make_error("connect_failed", "cannot resolve " + s.host + ": " + ec.message());
        }
        s.stream->expires_after(s.timeout);
        ec = run_for([&](beast::error_code& out) {
            s.stream->async_connect(results, [&out](beast::error_code e, const tcp::endpoint&) { out = e; });
        });
        if (ec) {
            s.stream.reset();
            return core::make_error("connect_failed",
                                    "cannot connect to " + s.host + ":" + std::to_string(s.port) + ": " + ec.message());
        }
        s.stream->socket().set_option(tcp::no_delay(true));
    }
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, s.host + ":" + std::to_string(s.port));
    req.set(http::field::user_agent, "qunbot-client");
    if (!body.empty() || method == "POST") {
        req.set(http::field::content_type, content_type);
        req.body() = body;
        req.prepare_payload();
    }
    req.keep_alive(true);
    s.stream->expires_after(s.timeout);
    auto ec = run_for([&](beast::error_code& out) {
        http::async_write(*s.stream, req, [&out](beast::error_code e, std::size_t) { out = e; });
    });
    http::response<http::string_body> res;
    if (!ec) {
        ec = run_for([&](beast::error_code& out) {
            http::async_read(*s.stream, s.buffer, res, [&out](beast::error_code e, std::size_t) { out = e; });
        });
    }
    if (ec) {
        disconnect();
        return core::make_error(ec == beast::error::timeout ? "timeout" : "io_error", ec.message());
    }
    ClientResponse out{static_cast<int>(res.result_int()), std::move(res.body()), res.keep_alive()};
    if (!out.keep_alive) disconnect();
    return out;
}

} // namespace qunbot::bot
