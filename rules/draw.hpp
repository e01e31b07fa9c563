#pragma once
/// \file
/// Red-packet draws (红包抽奖): the rule-file definition and the pure, published algorithm that
/// turns a secret seed and the sorted entries into winners and amounts. Anyone holding the seed
/// (revealed at the draw), the entries and the prize definition can recompute the result; the
/// commitment posted when the draw opened (SHA-256 of the seed) shows the seed was fixed before
/// anyone entered. Amounts are integers in fen (分) everywhere.
///
/// The algorithm (version 1), also documented in the README:
///  - seed: 64 lowercase hex characters (32 random bytes); commitment = sha256_hex(seed).
///  - entries: member ids, sorted by byte order, without duplicates;
///    digest = sha256_hex(entries joined by "\n").
///  - a stream labelled L yields blocks sha256(seed ":" digest ":" L ":" counter) (counter in
///    decimal from 0); each block gives four big-endian 64-bit numbers; a number below n is drawn
///    by rejection (values >= 2^64 - 2^64 mod n are skipped) and taken mod n.
///  - picks: a Fisher–Yates shuffle of the sorted entries driven by stream "pick", stopped after
///    the picks needed; pick k is the entry at position k after its step. Rerolls continue the
///    same shuffle, so they never return anyone already picked.
///  - random split (拼手气): stream "split"; with n winners, budget B and minimum m, n-1 cut
///    points are drawn in [0, B - n*m], sorted; the gaps (plus m each) are the amounts by rank.
///  - tiers: ranks fill the tiers in the order written; equal: every rank gets `amount`.

#include "rules/schedule.hpp"
#include "rules/template.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::rules {

/// One prize tier (一等奖 ...).
struct PrizeTier {
    std::string name;
    int winners = 0;
    std::int64_t amount_fen = 0;
};

/// What the winners get.
struct PrizeSpec {
    enum class Kind : std::uint8_t {
        equal,  ///< `winners` winners, `amount_fen` each
        random, ///< `winners` winners share `budget_fen` exactly, at least `min_fen` each (拼手气)
        tiers,  ///< tier by tier
    };
    Kind kind = Kind::equal;
    int winners = 0;               ///< total over tiers for `tiers`
    std::int64_t amount_fen = 0;   ///< equal
    std::int64_t budget_fen = 0;   ///< random; for equal and tiers the computed total
    std::int64_t min_fen = 1;      ///< random
    std::vector<PrizeTier> tiers;

    /// Stored with each round, so a later rule edit cannot change how a past draw verifies.
    [[nodiscard]] std::string to_json() const;
    [[nodiscard]] static std::optional<PrizeSpec> from_json(std::string_view json);
    /// "10 winners share ¥100.00" / "3 × ¥5.00" / "一等奖 1 × ¥50.00, 二等奖 ..." for messages.
    [[nodiscard]] std::string describe() const;
};

[[nodiscard]] std::string_view to_string(PrizeSpec::Kind k) noexcept;

/// Who may enter. Checked when a member enters; the reason is recorded when they may not.
struct Eligibility {
    bool joined_before_open = true; ///< in the group before the draw opened
    bool allow_staff = false;
    bool exclude_blacklisted = true;
    std::vector<std::string> tags_required; ///< any of them
    std::vector<std::string> tags_excluded; ///< none of them
    int not_won_days = 0;           ///< not a winner of the same series within this many days (0: off)
    int active_at_least = 0;        ///< active on at least this many of the last `active_days` days
    int active_days = 0;
};

/// How a round's payouts are made.
enum class PayoutMethod : std::uint8_t { manual, wechat_pay };
[[nodiscard]] std::string_view to_string(PayoutMethod m) noexcept;

/// A draw as written in a rule file (`draws:`).
struct DrawSpec {
    std::string id;
    std::string series;            ///< draws sharing "not a winner within D days"; default: id
    std::string file;
    int line = 0;
    bool all_groups = true;
    std::vector<std::uint32_t> selections;
    std::vector<std::string> keywords;      ///< as written
    std::vector<std::string> keyword_norms; ///< normalised (Fold::keyword)
    bool enter_by_join = false;
    bool has_opens = false;        ///< opened by schedule; otherwise by `qunbot lottery open`
    ScheduleSpec opens;
    std::int64_t duration_ms = 0;  ///< closes this long after opening (0: not by time)
    bool has_closes_at = false;
    ScheduleSpec closes_at;        ///< closes at the first slot after opening
    int close_entries = 0;         ///< closes when this many have entered (0: not by count)
    Eligibility eligibility;
    PrizeSpec prizes;
    PayoutMethod payout = PayoutMethod::manual;
    Template open_text;            ///< posted when the draw opens (with the commitment)
    Template result_text;          ///< posted at the draw (winners, seed)
    std::string entrant_tag;       ///< tag every entrant (empty: none)
    std::string winner_tag;        ///< tag every winner (empty: none)
};

/// Whether a message's text enters `spec` (its normalised text is one of the keywords, trailing
/// punctuation and emoji-free exclamations ignored).
[[nodiscard]] bool is_entry_text(const DrawSpec& spec, std::string_view text);

// ---- the algorithm -------------------------------------------------------------------------

[[nodiscard]] std::string sha256_hex(std::string_view data);
/// 64 hex characters of fresh randomness (OpenSSL RAND_bytes); throws if the RNG fails.
[[nodiscard]] std::string new_seed();
[[nodiscard]] std::string commitment_of(std::string_view seed);
/// `entries` must be sorted and unique.
[[nodiscard]] std::string entries_digest(const std::vector<std::string>& entries);

/// The deterministic random stream of the algorithm.
class DrawStream {
public:
    DrawStream(std::string_view seed, std::string_view digest, std::string_view label);
    [[nodiscard]] std::uint64_t next();
    /// Uniform in [0, n), n > 0.
    [[nodiscard]] std::uint64_t below(std::uint64_t n);

private:
    std::string prefix_;
    std::uint64_t counter_ = 0;
    unsigned char block_[32] = {};
    int used_ = 4;
};

/// Positions in `count` sorted entries of the first `picks` picks (picks <= count).
[[nodiscard]] std::vector<std::size_t> pick_order(std::string_view seed, std::string_view digest, std::size_t count,
                                                  std::size_t picks);

/// `n` amounts that add up to `budget` exactly, each >= `min` (requires n*min <= budget).
[[nodiscard]] std::vector<std::int64_t> split_budget(std::int64_t budget, std::size_t n, std::int64_t min,
                                                     std::string_view seed, std::string_view digest);

/// What rank r (0-based) wins.
struct Award {
    std::string tier;          ///< tier name, empty for equal / random
    std::int64_t amount_fen = 0;
};

/// How many winners a round with `entries` entries has.
[[nodiscard]] std::size_t winner_count(const PrizeSpec& prizes, std::size_t entries) noexcept;
/// The award of every rank for `winners` winners. With fewer entries than places, a random
/// split shares the whole budget among those there are, and the top tiers are filled first.
[[nodiscard]] std::vector<Award> awards(const PrizeSpec& prizes, std::size_t winners, std::string_view seed,
                                        std::string_view digest);

/// One stored pick of a round.
struct Pick {
    std::size_t index = 0;     ///< position in the pick sequence (0, 1, ...)
    std::string member;
    int rank = 0;              ///< the place it fills
    std::int64_t amount_fen = 0;
    bool replaced = false;     ///< rerolled away
};

/// Recomputes a drawn round from what was stored; empty when it all matches, else every
/// difference found, in words.
[[nodiscard]] std::vector<std::string> verify_draw(std::string_view seed, std::string_view commitment,
                                                   const std::vector<std::string>& entries, std::string_view digest,
                                                   const PrizeSpec& prizes, const std::vector<Pick>& picks);

// ---- eligibility ---------------------------------------------------------------------------

/// What is known about a member who wants to enter.
struct EntrantFacts {
    bool staff = false;
    bool blacklisted = false;
    bool in_group = false;              ///< known as a present member
    std::optional<std::int64_t> joined_s; ///< when they (last) joined, if known
    std::vector<std::string> tags;
    std::uint64_t active_bits = 0;      ///< bit i: active i local days ago
    std::int64_t last_win_ms = 0;       ///< latest win in the same series (0: never)
};

/// Why a member may not enter, or nothing when they may. `via_join`: the entry is their join.
[[nodiscard]] std::optional<std::string> ineligible(const Eligibility& rules, const EntrantFacts& facts, std::int64_t opened_ms,
                                                    std::int64_t now_ms, bool via_join);

// ---- messages ------------------------------------------------------------------------------

struct GroupInfo;

/// What a draw's messages (`open`, `result`) can show.
struct DrawMessage {
    const DrawSpec* spec = nullptr;
    std::int64_t round = 0;
    std::string closes;
    std::string commitment;
    std::string seed;    ///< empty until the draw
    std::string digest;
    std::size_t entries = 0;
    struct Winner {
        std::string member;
        std::string name; ///< display name, or empty
        std::string tier;
        std::int64_t amount_fen = 0;
    };
    std::vector<Winner> winners;
};

/// Renders a draw message (compiled for `Trigger::draw`); winners are added to `mentions`.
[[nodiscard]] std::string render_draw(const Template& t, const DrawMessage& m, const GroupInfo& group, std::int64_t now_ms,
                                      int utc_offset_s, std::vector<std::string>* mentions);

/// "¥12.34" for 1234 fen.
[[nodiscard]] std::string format_fen(std::int64_t fen);

} // namespace qunbot::rules
