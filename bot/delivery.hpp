#pragma once
/// \file
/// The delivery worker: drains the outbox through each app's adapter (the WeCom API, or the log
/// adapter when an app has no API credentials), enforcing WeCom's limits before WeCom does
/// (message/send per member, robots per minute, one mass send per customer group per day,
/// per-API budgets), batching customer-group posts with the same text into one mass-send task
/// per owner, retrying with back-off, and never performing an idempotency key twice: an action
/// in flight when the process died is repeated only where the API makes that harmless, and is
/// otherwise left for a person (`check`). Also keeps the group directory in sync (groupchat
/// list/get) at start and after group change events.

#include "bot/config.hpp"

#include <cstdint>
#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}
namespace qunbot::storage {
class Journal;
}

namespace qunbot::bot {

class Registry;

class Delivery {
public:
    struct Options {
        std::string database;
        DeliveryConfig config;
        std::vector<AppConfig> apps;
        int utc_offset_s = 8 * 3600;          ///< local day for the mass-send quota
        std::function<std::int64_t()> now_ms; ///< wall clock; injectable for tests
    };
    /// Throws on start-up errors (an unreadable CA file, a bad base URL).
    Delivery(boost::asio::io_context& ioc, storage::Journal& journal, Registry& metrics, Options options);
    ~Delivery();
    Delivery(const Delivery&) = delete;
    Delivery& operator=(const Delivery&) = delete;

    /// Settles actions a previous process left in flight, rebuilds the rate limiters from the
    /// last hour's calls, starts draining and the directory sync.
    void start();
    /// New outbox rows may be due (thread-safe; cheap).
    void wake();
    /// The (rule id, text) group welcome templates the rules want on WeCom: added, edited and
    /// deleted there to match (thread-safe; the sync runs once started).
    void set_welcome_templates(std::vector<std::pair<std::string, std::string>> templates);
    /// Stops taking new work; `done` runs when the calls in flight have been recorded.
    void drain(std::function<void()> done);

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace qunbot::bot
