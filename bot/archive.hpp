#pragma once
/// \file
/// The session-archive puller: turns WeCom's archived conversations (group and 1:1 messages,
/// which no callback delivers) into events for the journal, like any callback's. It pulls with
/// GetChatData from the stored seq when a `msgaudit_notify` callback arrives and on a timer as a
/// fallback; decrypts each record's random key with the private key of its publickey_ver, then
/// the message with DecryptData; and stores the batch's events together with the new seq in one
/// transaction, so a crash never skips or repeats a message. A record it cannot decrypt (no key
/// of that version) stops the pull there, with the reason in `qunbot archive status`, until the
/// key is configured: later messages are not skipped past it. Its own thread: the SDK blocks.

#include "bot/config.hpp"
#include "bot/core/result.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace qunbot::storage {
class Journal;
}
namespace qunbot::wecom {
class FinanceSdk;
}

namespace qunbot::bot {

class Registry;

class Archive {
public:
    struct Options {
        std::string database;
        ArchiveConfig config;
        std::string tenant;                    ///< the corp id
        std::string app;                       ///< configured app name the events carry
        std::function<std::int64_t()> now_ms;  ///< wall clock; injectable for tests
    };
    /// Loads the SDK and the keys and initialises the SDK; the error says what is missing.
    static core::Result<std::unique_ptr<Archive>> create(storage::Journal& journal, Registry& metrics, Options options);
    ~Archive();
    Archive(const Archive&) = delete;
    Archive& operator=(const Archive&) = delete;

    void start();
    /// A msgaudit_notify arrived: pull now (thread-safe).
    void wake();
    /// Stops the thread after the pull in progress (its batch is committed or not at all).
    void stop();
    /// One pull until the archive has nothing newer (the thread's step; for tests and tools):
    /// the number of new events stored, or the error that stopped it.
    core::Result<std::size_t> pull();

    struct Impl;

private:
    explicit Archive(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// The SDK ready for use with `config` (for `qunbot archive media`).
core::Result<std::unique_ptr<wecom::FinanceSdk>> open_archive_sdk(const ArchiveConfig& config, const std::string& corp_id);

} // namespace qunbot::bot
