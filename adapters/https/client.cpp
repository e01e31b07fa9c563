#include "adapters/https/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <map>
#include <stdexcept>
#include <vector>

namespace qunbot::https {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

struct Connection {
    Connection(const net::any_io_executor& ex, ssl::context& ctx) : stream(ex, ctx) {}
    beast::ssl_stream<beast::tcp_stream> stream;
    beast::flat_buffer buffer;
};

std::string origin_key(const Origin& o) { return o.host + ":" + std::to_string(o.port); }

bool is_ip_literal(const std::string& host)
{
    boost::system::error_code ec;
    (void)net::ip::make_address(host, ec);
    return !ec;
}
} // namespace

core::Result<Origin> parse_origin(const std::string& base_url)
{
    auto u = boost::urls::parse_uri(base_url);
    if (!u || u->scheme() != "https" || u->host().empty() || u->has_query()) {
        return core::make_error("bad_url", "expected a base URL like https://qyapi.weixin.qq.com, got '" + base_url + "'");
    }
    Origin o;
    o.host = u->host();
    if (!o.host.empty() && o.host.front() == '[') o.host = o.host.substr(1, o.host.size() - 2);
    if (u->has_port()) o.port = u->port_number();
    o.prefix = std::string(u->encoded_path());
    while (!o.prefix.empty() && o.prefix.back() == '/') o.prefix.pop_back();
    return o;
}

struct Client::Impl {
    Impl(net::any_io_executor ex, Options o) : executor(std::move(ex)), options(std::move(o)), tls(ssl::context::tls_client)
    {
        tls.set_verify_mode(ssl::verify_peer);
        SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
        if (options.system_ca) tls.set_default_verify_paths();
        if (!options.ca_file.empty()) {
            boost::system::error_code ec;
            tls.load_verify_file(options.ca_file, ec);
            if (ec) throw std::runtime_error("cannot load CA file " + options.ca_file + ": " + ec.message());
        }
        if (!options.cert_file.empty() || !options.key_file.empty()) {
            boost::system::error_code ec;
            tls.use_certificate_chain_file(options.cert_file, ec);
            if (ec) throw std::runtime_error("cannot load client certificate " + options.cert_file + ": " + ec.message());
            tls.use_private_key_file(options.key_file, ssl::context::pem, ec);
            if (ec) throw std::runtime_error("cannot load client key " + options.key_file + ": " + ec.message());
            if (SSL_CTX_check_private_key(tls.native_handle()) != 1) {
                throw std::runtime_error("client key " + options.key_file + " does not belong to certificate " + options.cert_file);
            }
        }
    }

    net::any_io_executor executor;
    Options options;
    ssl::context tls;
    std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle;
    ClientStats stats;
};

namespace {

// Why a handshake failed, in words a person can act on (the certificate check is the usual cause).
std::string handshake_error(Connection& c, const boost::system::error_code& ec)
{
    const long verify = SSL_get_verify_result(c.stream.native_handle());
    if (verify != X509_V_OK) return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
    return ec.message();
}

net::awaitable<core::Result<std::unique_ptr<Connection>>> connect(std::shared_ptr<Client::Impl> impl, Origin origin)
{
    auto c = std::make_unique<Connection>(impl->executor, impl->tls);
    const auto where = origin.host + ":" + std::to_string(origin.port);
    tcp::resolver resolver(impl->executor);
    auto [rec, endpoints] = co_await resolver.async_resolve(origin.host, std::to_string(origin.port), use_tuple);
    if (rec) co_return core::make_error("resolve_failed", "cannot resolve " + origin.host + ": " + rec.message());
    auto& tcp_layer = beast::get_lowest_layer(c->stream);
    tcp_layer.expires_after(impl->options.connect_timeout);
    auto [cec, ep] = co_await tcp_layer.async_connect(endpoints, use_tuple);
    (void)ep;
    if (cec == beast::error::timeout) co_return core::make_error("connect_timeout", "connecting to " + where + " timed out");
    if (cec) co_return core::make_error("connect_failed", "cannot connect to " + where + ": " + cec.message());
    // SNI carries host names only (RFC 6066 forbids IP literals there).
    if (!is_ip_literal(origin.host) && !SSL_set_tlsext_host_name(c->stream.native_handle(), origin.host.c_str())) {
        co_return core::make_error("tls_failed", "cannot set SNI for " + origin.host);
    }
    c->stream.set_verify_callback(ssl::host_name_verification(origin.host));
    auto [hec] = co_await c->stream.async_handshake(ssl::stream_base::client, use_tuple);
    if (hec == beast::error::timeout) co_return core::make_error("connect_timeout", "TLS handshake with " + where + " timed out");
    if (hec) co_return core::make_error("tls_failed", "TLS handshake with " + where + " failed: " + handshake_error(*c, hec));
    ++impl->stats.connections;
    co_return std::move(c);
}

} // namespace

Client::Client(net::any_io_executor executor, Options options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options)))
{
}

Client::~Client() { close_idle(); }

void Client::close_idle()
{
    for (auto& [key, conns] : impl_->idle) {
        for (auto& c : conns) {
            boost::system::error_code ec;
            beast::get_lowest_layer(c->stream).socket().close(ec);
        }
    }
    impl_->idle.clear();
}

ClientStats Client::stats() const noexcept { return impl_->stats; }
net::any_io_executor Client::executor() const { return impl_->executor; }

net::awaitable<core::Result<Response>> Client::request(Origin origin, std::string method, std::string target,
                                                       std::string body, std::string content_type)
{
    auto impl = impl_; // the coroutine keeps the pool alive
    const auto key = origin_key(origin);
    http::request<http::string_body> req{http::string_to_verb(method), origin.prefix + target, 11};
    req.set(http::field::host, origin.port == 443 ? origin.host : key);
    req.set(http::field::user_agent, "qunbot/0.1");
    if (!body.empty() || req.method() == http::verb::post) {
        req.set(http::field::content_type, content_type);
        req.body() = std::move(body);
        req.prepare_payload();
    }
    req.keep_alive(true);
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::unique_ptr<Connection> c;
        bool reused = false;
        if (auto it = impl->idle.find(key); it != impl->idle.end() && !it->second.empty()) {
            c = std::move(it->second.back());
            it->second.pop_back();
            reused = true;
        } else {
            auto made = co_await connect(impl, origin);
            if (!made) co_return made.error();
            c = std::move(*made);
        }
        auto& tcp_layer = beast::get_lowest_layer(c->stream);
        tcp_layer.expires_after(impl->options.request_timeout);
        auto [wec, written] = co_await http::async_write(c->stream, req, use_tuple);
        (void)written;
        http::response_parser<http::string_body> parser;
        parser.body_limit(impl->options.max_body_bytes);
        boost::system::error_code rec = wec;
        if (!wec) {
            auto [ec, n] = co_await http::async_read(c->stream, c->buffer, parser, use_tuple);
            (void)n;
            rec = ec;
        }
        if (rec) {
            // A peer may close an idle keep-alive connection at any moment; that is not a
            // failure of this request, so it goes once more on a fresh connection. A timeout is
            // a real answer (the peer is slow) and is not hidden by a retry here.
            const bool stale = reused && rec != beast::error::timeout && !parser.got_some();
            if (stale && attempt == 0 && impl->options.retry_stale) continue;
            // With TLS 1.3 the server checks our certificate after our side of the handshake is
            // done, so its refusal (a fatal alert) arrives on the first read. On a fresh
            // connection with nothing received, the request never reached the application.
            if (!reused && !parser.got_some() && rec.category() == net::error::get_ssl_category() &&
                ERR_GET_REASON(static_cast<unsigned long>(rec.value())) >= SSL_AD_REASON_OFFSET) {
                co_return core::make_error("tls_failed", "the peer refused the TLS session with " + key + " (is the client certificate accepted?): " +
                                                             rec.message());
            }
            if (rec == beast::error::timeout) co_return core::make_error("timeout", "no answer from " + key + " within " +
                                                                         std::to_string(impl->options.request_timeout.count()) + " ms");
            co_return core::make_error("io_error", "exchange with " + key + " failed: " + rec.message());
        }
        if (reused) ++impl->stats.reused;
        auto res = parser.release();
        Response out{static_cast<int>(res.result_int()), std::move(res.body())};
        tcp_layer.expires_never();
        if (res.keep_alive()) {
            auto& pool = impl->idle[key];
            if (pool.size() < impl->options.max_idle_per_origin) pool.push_back(std::move(c));
        }
        co_return out;
    }
    co_return core::make_error("io_error", "exchange with " + key + " failed twice on closed connections");
}

} // namespace qunbot::https
