#pragma once
/// \file
/// An asynchronous HTTPS/1.1 client (Beast over OpenSSL) for calling outside APIs: peers are
/// verified against the system CA store (plus an optional extra CA file), with SNI and host-name
/// verification; connections are kept alive and reused per host; connect and request deadlines
/// turn hung peers into `timeout` errors. Not thread-safe: use one client from one strand (the
/// coroutines that call it must run on that strand).

#include "bot/core/result.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace qunbot::https {

/// Where to connect: parsed from a base URL such as "https://qyapi.weixin.qq.com" or
/// "https://127.0.0.1:8443/prefix" (the path becomes a prefix of every target).
struct Origin {
    std::string host;
    std::uint16_t port = 443;
    std::string prefix; ///< path prefix without a trailing '/', often empty
};
/// Only https URLs are accepted ("bad_url" otherwise).
[[nodiscard]] core::Result<Origin> parse_origin(const std::string& base_url);

struct Options {
    std::chrono::milliseconds connect_timeout{5000}; ///< resolve + TCP connect + TLS handshake
    std::chrono::milliseconds request_timeout{10000}; ///< write the request and read the answer
    bool system_ca = true;   ///< trust the system CA store (/etc/ssl/certs)
    std::string ca_file;     ///< also trust the CAs in this PEM file (tests, private gateways)
    std::string cert_file;   ///< client certificate chain (PEM) for mutual TLS, e.g. a WeChat Pay merchant certificate
    std::string key_file;    ///< its private key (PEM)
    std::size_t max_idle_per_origin = 16;
    /// A kept-alive connection that the peer closed before answering is replaced and the request
    /// sent again once. Off for calls whose caller must decide what a lost answer means (payments).
    bool retry_stale = true;
    std::size_t max_body_bytes = 8 * 1024 * 1024;
};

struct Response {
    int status = 0;
    std::string body;
};

/// Counters for metrics and tests.
struct ClientStats {
    std::uint64_t connections = 0; ///< TLS connections established
    std::uint64_t reused = 0;      ///< requests sent on a kept-alive connection
};

class Client {
public:
    /// Throws std::runtime_error when `ca_file`, `cert_file` or `key_file` cannot be loaded (a
    /// start-up error; the message names the file, never its content).
    Client(boost::asio::any_io_executor executor, Options options);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// One request. Failures are values. Before anything was sent: "resolve_failed",
    /// "connect_failed", "connect_timeout", "tls_failed" (the message says why verification
    /// failed). After the request may have reached the peer: "timeout", "io_error".
    /// A kept-alive connection that turns out to be closed is replaced once, transparently
    /// (unless `Options::retry_stale` is off).
    boost::asio::awaitable<core::Result<Response>> request(Origin origin, std::string method, std::string target,
                                                           std::string body, std::string content_type);
    /// Closes idle connections (at shutdown).
    void close_idle();
    [[nodiscard]] ClientStats stats() const noexcept;
    /// The executor (strand) the client and its callers run on.
    [[nodiscard]] boost::asio::any_io_executor executor() const;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace qunbot::https
