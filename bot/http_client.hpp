#pragma once
/// \file
/// A blocking HTTP/1.1 client over one keep-alive connection (Beast). For the command-line
/// tools, the tests and the load generator, not for the serving path.

#include "bot/core/result.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace qunbot::bot {

struct ClientResponse {
    int status = 0;
    std::string body;
    bool keep_alive = true;
};

/// Splits "http://host:port/path?query" into its parts; only plain http is accepted.
struct HttpUrl {
    std::string host;
    std::uint16_t port = 80;
    std::string target; ///< path and query
};
[[nodiscard]] core::Result<HttpUrl> parse_http_url(const std::string& url);

class HttpClient {
public:
    HttpClient(std::string host, std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~HttpClient();
    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;

    /// Sends one request, connecting (or reconnecting) as needed. Network errors are values
    /// ("connect_failed", "io_error", "timeout").
    core::Result<ClientResponse> request(const std::string& method, const std::string& target, const std::string& body = {},
                                         const std::string& content_type = "text/xml");
    /// Drops the connection (the next request reconnects).
    void disconnect();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace qunbot::bot
