#pragma once
/// \file
/// The payout worker: pays draw winners whose round says `payout: wechat_pay`, as WeCom
/// enterprise red packets (protocol notes §6). One payout at a time, in ledger order:
///  1. the member's openid (WeCom convert_to_openid), kept with the payout;
///  2. the limits, checked before any call: amount range, per user per day (money and count),
///     our own daily cap, the round's budget; a payout over a limit is `held` for a person;
///  3. `in_flight` is committed, then the signed XML goes out over mutual TLS;
///  4. the answer is recorded: paid; SYSTEMERROR and frequency limits retried later with the same
///     bill number; definite refusals held; anything unknown left for a person (`check`).
/// The bill number is fixed per pick when the draw is made, so no retry, restart or crash can
/// pay a pick twice: a payout found `in_flight` at start (the process died mid-call) is first
/// looked up with queryworkwxredpack and only sent again, under the same number, if WeChat Pay
/// has no such order.

#include "bot/config.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace boost::asio {
class io_context;
}
namespace qunbot::storage {
class Journal;
struct Payout;
struct PaidToday;
}

namespace qunbot::bot {

class Registry;

/// Why a payout may not be made now (a limit), or nothing. Pure: the caller loads the sums.
[[nodiscard]] std::optional<std::string> payout_limit(const WeChatPayConfig& cfg, const storage::Payout& p, const storage::PaidToday& today,
                                                      std::int64_t round_committed_fen, std::int64_t round_budget_fen);

class Payouts {
public:
    struct Options {
        std::string database;
        WeChatPayConfig pay;
        std::vector<AppConfig> apps;
        DeliveryConfig delivery;              ///< timeouts of the WeCom API (openid conversion)
        int utc_offset_s = 8 * 3600;          ///< the local day of the daily limits
        std::function<std::int64_t()> now_ms; ///< wall clock; injectable for tests
    };
    /// Throws on start-up errors (an unreadable certificate or key, a bad base URL).
    Payouts(boost::asio::io_context& ioc, storage::Journal& journal, Registry& metrics, Options options);
    ~Payouts();
    Payouts(const Payouts&) = delete;
    Payouts& operator=(const Payouts&) = delete;

    void start();
    /// New payouts may be due (thread-safe).
    void wake();
    /// Stops taking new payouts; `done` runs once the one in flight is recorded.
    void drain(std::function<void()> done);

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace qunbot::bot
