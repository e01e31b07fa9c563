#pragma once
/// \file
/// The running bot: one io_context served by N threads, the HTTP server, the routes, and the
/// inbox journal. Shutdown drains: stop accepting, finish and answer in-flight requests, commit,
/// then stop; only a request still running after the grace period is abandoned.

#include "bot/config.hpp"
#include "bot/core/result.hpp"

#include <cstdint>
#include <memory>

namespace qunbot::bot {

class Registry;

class Service {
public:
    /// Opens the journal, builds the routes and binds the listener. Secrets must be resolved.
    static core::Result<std::unique_ptr<Service>> create(Config config);
    ~Service();

    /// Starts the worker threads (config.threads, 0 = one per core). With `handle_signals`,
    /// SIGINT and SIGTERM start a graceful shutdown.
    void start(bool handle_signals);
    /// Thread-safe and idempotent: begin the graceful shutdown.
    void request_shutdown();
    /// Blocks until the threads have finished, then closes the journal. Returns the number of
    /// connections abandoned at the grace deadline (0 for a clean drain).
    std::size_t wait();

    [[nodiscard]] std::uint16_t port() const noexcept;
    [[nodiscard]] Registry& metrics() noexcept;
    [[nodiscard]] const Config& config() const noexcept;

    struct Parts;

private:
    explicit Service(std::unique_ptr<Parts> parts);
    std::unique_ptr<Parts> parts_;
};

} // namespace qunbot::bot
