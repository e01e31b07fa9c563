#pragma once
/// \file
/// A small HTTPS/1.1 server on loopback for protocol fakes: keep-alive, its own threads, and
/// replies that can be delayed (to provoke client timeouts) or replaced by a dropped connection.

#include "fakes/test_ca.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace qunbot::fakes {

struct FakeRequest {
    std::string method;
    std::string path;  ///< without the query
    std::string query; ///< raw, without '?'
    std::string body;
    /// Decoded value of a query parameter, or empty.
    [[nodiscard]] std::string param(const std::string& name) const;
};

struct FakeReply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json; charset=UTF-8";
    std::chrono::milliseconds delay{0}; ///< wait before answering
    bool drop = false;                  ///< close the connection instead of answering
};

class TlsServer {
public:
    using Handler = std::function<FakeReply(const FakeRequest&)>;
    /// Listens on 127.0.0.1 (ephemeral port) with `pki`'s server certificate. With
    /// `require_client_cert`, the handshake fails unless the client presents a certificate
    /// signed by `pki`'s CA (mutual TLS, as WeChat Pay's merchant APIs require).
    TlsServer(const TestPki& pki, Handler handler, unsigned threads = 2, bool require_client_cert = false);
    ~TlsServer();
    TlsServer(const TlsServer&) = delete;
    TlsServer& operator=(const TlsServer&) = delete;

    [[nodiscard]] std::uint16_t port() const noexcept;
    /// TLS connections accepted so far.
    [[nodiscard]] std::uint64_t connections() const noexcept;
    /// Handshakes that failed (e.g. no or an untrusted client certificate).
    [[nodiscard]] std::uint64_t failed_handshakes() const noexcept;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace qunbot::fakes
