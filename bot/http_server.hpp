#pragma once
/// \file
/// The HTTP/1.1 listener (Boost.Beast): keep-alive, one strand per connection, C++20
/// coroutines, and the limits a public endpoint needs: body size (413), header size (431),
/// read and idle timeouts (slow clients are cut off), a cap on concurrent connections (503).

#include "bot/config.hpp"
#include "bot/core/result.hpp"
#include "bot/http_types.hpp"

#include <cstdint>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace qunbot::bot {

class Registry;

class HttpServer {
public:
    HttpServer(boost::asio::io_context& ioc, std::string address, std::uint16_t port, HttpLimits limits,
               Registry& metrics, Handler handler);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Binds and starts accepting; an error value if the address cannot be bound.
    core::Status start();
    /// The bound port (useful with port 0).
    [[nodiscard]] std::uint16_t port() const noexcept;
    /// Graceful stop, step one: close the acceptor and the idle keep-alive connections. Requests
    /// already being read or handled complete and are answered with `Connection: close`.
    /// `on_drained` is called (on some connection's strand) once no connection is left.
    void drain(std::function<void()> on_drained);
    [[nodiscard]] std::size_t active_connections() const noexcept;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace qunbot::bot
