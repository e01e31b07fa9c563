#pragma once
/// \file
/// `qunbot lottery list|show|open|enter|draw|reroll|verify|export|payout` and
/// `qunbot blacklist add|remove|list`: draws and their ledger from the command line. Every
/// change is one transaction on the database the bot uses, guarded like the bot's own writes
/// (a round is drawn once, whoever asks first); queued messages go out through the bot's
/// delivery.

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace qunbot::bot {

struct LotteryArgs {
    std::string verb;
    std::string config;
    std::string rules;
    std::string database;
    std::string draw;     ///< draw id (open, list filter)
    std::int64_t id = 0;  ///< round id (payout id for `payout`)
    std::string member;
    std::string group;
    std::string reason;
    std::string by;
    std::string run_id;
    std::string status;
    std::string payout_verb;
    bool now = false;
    bool csv = false;
    std::size_t limit = 20;
};

/// Adds the `lottery` and `blacklist` commands to `cli`, filling `args`.
void add_lottery_commands(CLI::App& cli, LotteryArgs& args);
/// Runs the command the parse selected; returns false in `handled` when none was.
int run_lottery_commands(const LotteryArgs& args, bool& handled);

} // namespace qunbot::bot
