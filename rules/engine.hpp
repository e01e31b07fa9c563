#pragma once
/// \file
/// The rule engine: a pure function from (rule set, event, state) to a decision. No I/O, no
/// clock: the caller loads the state the event needs, passes the time in, and commits the
/// decision (actions, counters, batches, tags) in one transaction.

#include "bot/core/action.hpp"
#include "bot/core/event.hpp"
#include "rules/rule_set.hpp"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace qunbot::rules {

/// What the engine knows about a member.
struct MemberInfo {
    std::string id;
    std::string name;               ///< display name if known, else empty (renders as the id)
    std::vector<std::string> tags;
    std::uint64_t active_days = 0;  ///< bit i: active i days ago (bit 0 = today, local time)
    bool blacklisted = false;       ///< on the deployment's shared blacklist (every group)
    std::int64_t joined_ms = 0;     ///< when they joined this group (0: unknown); loaded for `newcomer`
    int messages_since_join = -1;   ///< their messages in this group since then, up to 101 (-1: unknown)
    std::vector<std::int64_t> recent_messages_ms{}; ///< their messages in this group within the longest `flood` window
    std::vector<std::pair<std::string, std::int64_t>> same_text{}; ///< (group, time) of their posts of this message's text, within the longest `repeat` window
    std::vector<std::int64_t> strikes_ms{}; ///< moderation offences that count (not undone, not dry runs), newest first
};

struct GroupInfo {
    std::string id;
    std::string name;
    std::string owner;
    int member_count = 0;
    std::vector<std::string> tags;
};

/// A welcome batch in progress: joins merged until `due_ms`.
struct Batch {
    std::string rule_id;
    std::string group_id;
    std::string tenant;
    std::string platform;
    std::string app;
    std::vector<std::string> members;
    std::int64_t opened_ms = 0;
    std::int64_t due_ms = 0;
    std::string origin; ///< dedup key of the event that opened it (idempotency of the flush)
};

/// The state one evaluation reads. Loaded by storage for the event's group and members.
struct State {
    std::int64_t now_ms = 0;
    int utc_offset_s = 8 * 3600;    ///< local time for dates and "days" (China Standard Time)
    GroupInfo group;
    std::unordered_map<std::string, MemberInfo, TextHash, std::equal_to<>> members; ///< by id; missing ones count as unknown
    std::vector<Batch> batches;     ///< open batches of this group
    /// Cooldown key (see `cooldown_key`) → until (ms). Only keys that may matter need be present.
    std::unordered_map<std::string, std::int64_t> cooldowns;

    [[nodiscard]] const MemberInfo* member(std::string_view id) const;
};

[[nodiscard]] std::string group_cooldown_key(std::string_view rule_id, std::string_view group_id);
[[nodiscard]] std::string member_cooldown_key(std::string_view rule_id, std::string_view group_id,
                                              std::string_view member_id);

/// Whether `id` looks like a customer (WeCom external userid: "wm"/"wo" + 30 characters);
/// everything else is staff.
[[nodiscard]] bool is_customer_id(std::string_view id) noexcept;

/// A tag change to record (with when and why).
struct TagChange {
    std::string member;
    std::string tag;
    bool add = true;
    std::string rule_id;
    std::string reason;
};

/// One moderation decision, for the audit log (`qunbot moderation log`).
struct ModerationEntry {
    std::string rule_id;
    std::string group_id;
    std::string member;
    std::string message_id;
    std::string excerpt;   ///< the start of the message
    std::string hits;      ///< what matched (the rule's condition)
    int offence = 0;       ///< 1 for a first offence within the decay window
    std::string steps;     ///< "warn", "recall+warn", ...
    bool dry_run = false;
    std::string action_keys; ///< the prefix of its actions' idempotency keys ("" when none)
};

/// How one rule fared, for `rules explain` and logs.
struct Trace {
    std::string rule_id;
    enum class Outcome { fired, batched, out_of_scope, condition_false, unless_true, cooldown, no_effect };
    Outcome outcome = Outcome::condition_false;
    std::string detail;
};
[[nodiscard]] std::string_view to_string(Trace::Outcome o) noexcept;

/// Everything an evaluation decided. Applied atomically by the caller.
struct Decision {
    std::vector<core::Action> actions;
    std::vector<Batch> batch_upserts;          ///< create or replace (rule_id, group_id)
    std::vector<Batch> batch_erases;           ///< (rule_id, group_id) done or emptied
    std::vector<std::pair<std::string, std::int64_t>> cooldowns; ///< key → until
    std::vector<TagChange> tags;
    std::vector<ModerationEntry> moderation;
    std::vector<std::pair<std::string, std::string>> blacklist_adds; ///< (member, reason)
    std::vector<Trace> trace;
    bool stopped = false;                      ///< a `stop: true` rule ended the pipeline
};

struct EvaluateOptions {
    bool explain = false;  ///< evaluate and trace every rule of the trigger, not only candidates
    std::int64_t cause_event_id = 0;
};

/// Decides what to do about `event`.
[[nodiscard]] Decision evaluate(const RuleSet& rules, const core::Event& event, const State& state,
                                const EvaluateOptions& options = {});

/// Flushes every batch in `state.batches` whose `due_ms` <= `state.now_ms`.
[[nodiscard]] Decision flush_due(const RuleSet& rules, const State& state);

/// Whether `rule`'s `in` selects `group`.
[[nodiscard]] bool selects(const RuleSet& rules, const Rule& rule, const GroupInfo& group);
/// Whether `draw`'s `in` selects `group`.
[[nodiscard]] bool selects(const RuleSet& rules, const DrawSpec& draw, const GroupInfo& group);
/// One slot of a scheduled rule in one group (`state.group`, `state.now_ms`): its actions,
/// keyed by tenant, rule, slot and group, so a slot is performed at most once per group.
[[nodiscard]] Decision plan_scheduled(const Rule& rule, const State& state, const std::string& slot_key, const std::string& tenant,
                                      const std::string& platform, const std::string& app);
/// Builds `rules.regex_set` from its regex conditions, and adds the literals its prefilter
/// looks for to `rules.keywords`, which must not be built yet (the loader calls it).
void build_regex_set(RuleSet& rules);
/// Whether message regexes are gated by their literal prefilter (a message holding none of the
/// literals the patterns need skips the regex pass). Off when some pattern needs no literal.
[[nodiscard]] bool regex_prefilter_active(const RuleSet& rules) noexcept;

/// A member who may be entering a draw by this event, and how ("keyword" or "join").
struct DrawEntry {
    std::string draw_id;
    std::string member;
    std::string via;
    std::int64_t at_ms = 0; ///< when the member acted (the platform's time), 0: unknown
};
/// The draws `event` could enter (a group message whose text is an entry keyword, or a join
/// into a draw that takes joins). Pure, and cheap for ordinary messages: no storage is read.
[[nodiscard]] std::vector<DrawEntry> draw_entries(const RuleSet& rules, const core::Event& event);

/// `ms` as local time (`utc_offset_s` east of UTC) through strftime `fmt`.
[[nodiscard]] std::string format_time_at(std::int64_t ms, int utc_offset_s, const std::string& fmt);
/// The rule trigger an event kind feeds, if any.
[[nodiscard]] bool trigger_for(core::EventKind kind, Trigger& out) noexcept;

} // namespace qunbot::rules
