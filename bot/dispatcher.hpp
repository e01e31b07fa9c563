#pragma once
/// \file
/// The dispatcher: takes each stored event from the journal, runs the rule engine in the event's
/// per-group lane (strictly ordered, one event in flight per group, groups in parallel), and
/// commits the decision through the journal's writer. It owns the current rule set (reloaded on
/// file change, SIGHUP or an admin request, all-or-nothing) and the welcome-batch timers.

#include "bot/config.hpp"
#include "bot/core/event.hpp"
#include "rules/loader.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace qunbot::storage {
class Journal;
}

namespace qunbot::bot {

class Registry;

class Dispatcher {
public:
    struct Options {
        std::string database;
        RulesConfig rules;
        std::vector<AppConfig> apps;          ///< to address the notify target
        std::function<std::int64_t()> now_ms; ///< wall clock; injectable for tests
        std::function<void()> on_actions;     ///< called after a commit that added outbox rows
        /// A msgaudit_notify event was stored: new archived messages to pull. Runs on the journal's
        /// own thread (writer or syncing), so it must only signal (Archive::wake).
        std::function<void()> on_archive_notify;
        /// Called with each rule set that takes effect (at start and on every good reload).
        std::function<void(std::shared_ptr<const rules::RuleSet>)> on_install;
    };

    /// Loads the rules (or the last good set stored in the database when the directory is
    /// broken at start), registers with the journal. Throws on start-up errors.
    Dispatcher(boost::asio::io_context& ioc, storage::Journal& journal, Registry& metrics, Options options);
    ~Dispatcher();
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    /// Starts watching the rule directory, re-arms open batches and replays events that were
    /// stored but not processed before the last stop.
    void start();

    /// Reloads the rule directory. On errors the current set stays and the errors are reported
    /// (log, metric, notify target). Thread-safe; returns the load result.
    rules::LoadResult reload(const std::string& reason);

    /// Stops taking new work and cancels timers, then calls `done` once every lane is idle
    /// (queued events stay in the inbox unprocessed and are replayed at the next start).
    void drain(std::function<void()> done);

    /// The current rule set (never null; empty before any successful load).
    [[nodiscard]] std::shared_ptr<const rules::RuleSet> rules() const;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace qunbot::bot
