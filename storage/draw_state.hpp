#pragma once
/// \file
/// Draws in SQLite: rounds (one opening of a draw in one group), entries, picks, the payout
/// ledger and the blacklist. Every write function runs inside the caller's transaction (the
/// journal's writer, or a tool's own), and each is idempotent or guarded by the round's status,
/// so the bot and `qunbot lottery` can both act on a round and only the first one counts.
/// Decisions (eligibility, winners, amounts) are the pure functions of rules/draw.hpp.

#include "rules/engine.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace qunbot::storage {

/// A round as stored.
struct DrawRound {
    std::int64_t id = 0;
    std::string draw_id;
    std::string series;
    std::string tenant;
    std::string app;
    std::string group_id;
    std::string slot;
    std::string status;            ///< open, drawn
    std::int64_t opened_ms = 0;
    std::int64_t closes_at_ms = 0; ///< 0: not by time
    int close_entries = 0;         ///< 0: not by count
    std::string seed;              ///< secret until drawn: shown only once status is drawn
    std::string commitment;
    rules::PrizeSpec prizes;
    std::string payout;            ///< manual, wechat_pay
    std::int64_t drawn_ms = 0;
    std::string closed_by;         ///< time, entries, staff
    std::string digest;
    std::int64_t entries = 0;
};

/// Opens a round of `draw` in `group` for `slot` (a schedule slot key, or "manual:<n>") and
/// queues its opening message with the commitment. Exactly once per (draw, group, slot):
/// returns the new round's id, or nothing if that slot already has a round.
std::optional<std::int64_t> open_round(SQLite::Database& db, const rules::DrawSpec& draw, const std::string& tenant,
                                       const std::string& app, const rules::GroupInfo& group, const std::string& slot,
                                       std::int64_t now_ms, int utc_offset_s);

/// Open rounds of `draw` in one group whose window has not passed.
[[nodiscard]] std::vector<DrawRound> open_rounds(SQLite::Database& db, const std::string& tenant, const std::string& group_id);
/// Open rounds whose closing time has come (closes_at_ms <= now_ms).
[[nodiscard]] std::vector<std::int64_t> rounds_due(SQLite::Database& db, std::int64_t now_ms);
/// The earliest closing time of an open round, if any.
[[nodiscard]] std::optional<std::int64_t> next_close_ms(SQLite::Database& db);
[[nodiscard]] std::optional<DrawRound> find_round(SQLite::Database& db, std::int64_t id);
/// Newest first; `draw_id` empty for all.
[[nodiscard]] std::vector<DrawRound> list_rounds(SQLite::Database& db, const std::string& draw_id, std::size_t limit);

/// What became of an entry attempt.
struct EntryResult {
    enum class Status { entered, already, rejected, closed } status = Status::closed;
    std::string reason; ///< for rejected / closed
    bool drew = false;  ///< the entry reached `closes.entries` and the round was drawn
};

/// `member` enters round `round_id` by `via` (keyword, join, staff). Checks eligibility
/// (recording the first reason a member was turned away), tags the entrant, and draws the round
/// when it reaches its entry count. `draw` may be null when the rule is gone (no tags then).
EntryResult enter_round(SQLite::Database& db, const rules::DrawSpec* draw, std::int64_t round_id, const std::string& member,
                        const std::string& via, std::int64_t now_ms, int utc_offset_s);

/// What a draw did.
struct DrawResult {
    bool drawn = false;     ///< false: it was not open (already drawn)
    std::size_t entries = 0;
    std::size_t winners = 0;
    std::int64_t total_fen = 0;
};

/// Draws round `round_id` now: picks, amounts, the payout ledger, the result message with the
/// seed, winner tags. `draw` may be null when the rule is gone (default message, no tags).
DrawResult draw_round(SQLite::Database& db, const rules::DrawSpec* draw, std::int64_t round_id, std::int64_t now_ms,
                      int utc_offset_s, const std::string& closed_by);

/// Replaces winner `member` of a drawn round with the next pick of the same shuffle.
struct RerollResult {
    bool ok = false;
    std::string message;     ///< why not, or what happened
    std::string replacement; ///< empty when nobody is left
};
RerollResult reroll(SQLite::Database& db, const rules::DrawSpec* draw, std::int64_t round_id, const std::string& member,
                    const std::string& reason, std::int64_t now_ms, int utc_offset_s);

/// Recomputes a drawn round from the stored data: empty when everything matches.
[[nodiscard]] std::vector<std::string> verify_round(SQLite::Database& db, std::int64_t round_id);

struct EntryRow {
    std::string member;
    std::int64_t entered_ms = 0;
    std::string via;
};
[[nodiscard]] std::vector<EntryRow> round_entries(SQLite::Database& db, std::int64_t round_id);
[[nodiscard]] std::vector<std::pair<std::string, std::string>> round_rejections(SQLite::Database& db, std::int64_t round_id);
[[nodiscard]] std::vector<rules::Pick> round_picks(SQLite::Database& db, std::int64_t round_id, std::vector<std::string>* tiers = nullptr);

// ---- payouts --------------------------------------------------------------------------------

/// One payout (a pick's money). Status: manual (finance pays from the CSV), pending, in_flight,
/// paid, failed (retried at next_try_ms with the same bill number), held (a limit said no: a
/// person decides), check (outcome unknown: a person must look), dry_run, cancelled (rerolled).
struct Payout {
    std::int64_t id = 0;
    std::int64_t round_id = 0;
    int pick = 0;
    std::string tenant;
    std::string app;
    std::string member;
    std::int64_t amount_fen = 0;
    std::string method;
    std::string billno;
    std::string status;
    std::string openid;
    int attempts = 0;
    std::int64_t next_try_ms = 0;
    std::string detail;
    std::string send_listid;
    std::int64_t created_ms = 0;
    std::int64_t updated_ms = 0;
};

/// wechat_pay payouts due at `now_ms` (pending or failed), oldest first.
[[nodiscard]] std::vector<Payout> due_payouts(SQLite::Database& db, std::int64_t now_ms, std::size_t limit);
/// wechat_pay payouts a previous process left in flight.
[[nodiscard]] std::vector<Payout> in_flight_payouts(SQLite::Database& db);
[[nodiscard]] std::optional<std::int64_t> next_payout_ms(SQLite::Database& db);
[[nodiscard]] std::vector<Payout> round_payouts(SQLite::Database& db, std::int64_t round_id);
[[nodiscard]] std::optional<Payout> find_payout(SQLite::Database& db, std::int64_t id);
/// Sets a payout's status (and detail, openid, send_listid when non-empty); counts an attempt
/// when `attempt`. Guarded: only from `from` (any when empty). Returns whether it changed.
bool set_payout(SQLite::Database& db, std::int64_t id, const std::string& from, const std::string& status, const std::string& detail,
                std::int64_t now_ms, bool attempt = false, std::int64_t next_try_ms = 0, const std::string& openid = {},
                const std::string& send_listid = {});
/// What `member` was paid (or is being paid) on local day `day` (days since 1970, local), and
/// how many payouts; and the tenant's total that day. Counts in_flight, paid and check rows.
struct PaidToday {
    std::int64_t member_fen = 0;
    int member_count = 0;
    std::int64_t total_fen = 0;
};
[[nodiscard]] PaidToday paid_on_day(SQLite::Database& db, const std::string& tenant, const std::string& member, std::int64_t day,
                                    int utc_offset_s);
/// Money of round `round_id` already committed (in flight, paid, check), for the budget.
[[nodiscard]] std::int64_t round_committed_fen(SQLite::Database& db, std::int64_t round_id);
/// Payouts as CSV for finance (header line first).
[[nodiscard]] std::string payouts_csv(SQLite::Database& db, std::int64_t round_id);
/// A six-character id of this database, drawn once: part of every bill number, so a fresh
/// database can never reuse a bill number an older one paid under the same merchant.
[[nodiscard]] std::string instance_id(SQLite::Database& db);

// ---- blacklist ------------------------------------------------------------------------------

/// Adds `member` (false if already there); `by` says who: a person's name, or "rule".
bool blacklist_add(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& reason,
                   std::int64_t now_ms, const std::string& by = "staff");
/// Takes `member` off (false if not there), recording who and why.
bool blacklist_remove(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& by = "staff",
                      const std::string& reason = {}, std::int64_t now_ms = 0);
/// Every addition and removal, newest first: (time, member, "added"/"removed", by, reason).
struct BlacklistChange {
    std::int64_t at_ms = 0;
    std::string member;
    bool added = false;
    std::string by;
    std::string reason;
};
[[nodiscard]] std::vector<BlacklistChange> blacklist_history(SQLite::Database& db, const std::string& tenant, std::size_t limit);

// ---- moderation audit log -------------------------------------------------------------------

struct ModerationRow {
    std::int64_t id = 0;
    std::int64_t at_ms = 0;
    std::string tenant;
    std::string group_id;
    std::string member;
    std::string message_id;
    std::string excerpt;
    std::string rule_id;
    std::string hits;
    int offence = 0;
    std::string steps;
    bool dry_run = false;
    std::int64_t undone_ms = 0;
    std::string undone_by;
    std::string undo_reason;
    std::string action_keys; ///< the prefix of its actions' idempotency keys ("" for a dry run)
    /// What became of each action the decision queued (from the outbox; filled by
    /// `moderation_log`).
    struct Outcome {
        std::string kind;   ///< post, recall, remove_member
        std::string status; ///< pending, in_flight, done, failed, dead, expired
        std::string detail; ///< what was done, or the last error
    };
    std::vector<Outcome> outcomes;
};
/// Newest first; `member` empty for all. Each entry comes with its actions' outcomes.
[[nodiscard]] std::vector<ModerationRow> moderation_log(SQLite::Database& db, const std::string& member, std::size_t limit);
/// Lifts one decision: it no longer counts as an offence, and a blacklisting it made is
/// removed. Returns what was undone, or nothing if there is no such entry or it was undone.
std::optional<ModerationRow> undo_moderation(SQLite::Database& db, std::int64_t id, const std::string& by, const std::string& reason,
                                             std::int64_t now_ms);
[[nodiscard]] bool is_blacklisted(SQLite::Database& db, const std::string& tenant, const std::string& member);
[[nodiscard]] std::vector<std::pair<std::string, std::string>> blacklist_list(SQLite::Database& db, const std::string& tenant);

} // namespace qunbot::storage
