#pragma once
/// \file
/// A compiled rule set: the immutable snapshot the engine evaluates. Built by the loader from
/// the rule files, shared read-only between threads, replaced as a whole on reload.

#include "rules/draw.hpp"
#include "rules/keyword_index.hpp"
#include "rules/schedule.hpp"
#include "rules/template.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace re2 {
class RE2;
}
namespace qunbot::rules {
/// Every regex condition of a rule set in one RE2::Set: one pass decides all of them.
struct RegexSet;
}

namespace qunbot::rules {

/// What a rule reacts to.
enum class Trigger : std::uint8_t {
    member_joined, member_left, message, contact_added, schedule,
    draw, ///< not a rule trigger: the context of a draw's messages (its own template variables)
};
inline constexpr std::size_t trigger_count = 5; ///< rule triggers (`draw` excluded)
[[nodiscard]] std::string_view to_string(Trigger t) noexcept;

/// A named selection of groups (`groups:`). Every given criterion must hold; each list matches
/// if any of its entries does. An empty selection matches every group.
/// Hash for maps keyed by text that are looked up by `std::string_view` without a copy.
struct TextHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct GroupSelection {
    std::string name;
    std::vector<std::string> ids;
    std::vector<std::string> name_globs;
    std::vector<std::string> tags;
    std::vector<std::string> owners;
};

/// A condition tree node.
struct Condition {
    enum class Op : std::uint8_t {
        all, any, not_,
        contains,     ///< any keyword of `keyword_set` occurs in the normalised text
        exact,        ///< the normalised text equals one of `keyword_set`
        regex,        ///< RE2 search over the regex-normalised text
        role,         ///< the member is staff / customer (`values`)
        has_tag,      ///< the member has any of `values` as a tag
        scene,        ///< join / quit scene is any of `ints`
        state,        ///< channel State matches any glob of `values`
        message_type, ///< message type is any of `values`
        active_days,  ///< member active on at least `at_least` of the last `days` days
        links,        ///< the text links to or spells a domain not in `values` (the allow-list)
        contact_bait, ///< the text offers a contact of a kind in `values` (wechat, phone, qq)
        blacklisted,  ///< the member is (at_least 1) or is not (0) on the shared blacklist
        nickname,     ///< the member's display name contains a keyword of `values` (normalised)
        newcomer,     ///< joined this group within `days` hours, or sent fewer than `at_least` messages in it
        flood,        ///< sent at least `at_least` messages in this group within the last `days` seconds
        repeat,       ///< posted this same text in at least `at_least` groups within the last `days` seconds
        qr_code,      ///< the message's image holds a QR code whose content is not an allowed domain (`values`)
    };
    Op op = Op::all;
    std::vector<Condition> children;
    std::uint32_t keyword_set = 0;
    std::shared_ptr<const re2::RE2> regex;
    int regex_index = -1;          ///< its pattern's index in RuleSet::regex_set (-1: none)
    std::vector<std::string> values;
    std::vector<int> ints;
    int at_least = 0;
    int days = 0;
    std::string text; ///< as written, for explanations
};

/// An action template of a rule (`do:`).
struct ActionSpec {
    enum class Kind : std::uint8_t { post, reply, welcome, assign_tag, remove_tag };
    Kind kind = Kind::post;
    Template body; ///< message text, or the tag name (tags may use variables too)
    /// `post` with content beyond text: a JSON array of {"type": "image"|"link"|"miniprogram", …}
    /// (platform-neutral; adapters map it, or degrade it where their platform cannot send it).
    std::string attachments;
};
[[nodiscard]] std::string_view to_string(ActionSpec::Kind k) noexcept;

/// `moderate:` of a rule: what each offence within the decay window leads to (a strike ladder).
struct Moderation {
    enum class Step : std::uint8_t { warn, recall, remove, blacklist };
    std::vector<std::vector<Step>> ladder; ///< offence n (1-based) → its steps; the last rung repeats
    std::int64_t decay_ms = 7 * 86'400'000; ///< offences older than this no longer count
    bool dry_run = false;                  ///< decide and log, do nothing, count nothing
    Template warn;                         ///< the warning posted by `warn` (a default when empty)
};
[[nodiscard]] std::string_view to_string(Moderation::Step s) noexcept;

struct Rule {
    std::string id;
    std::string file;
    int line = 0;
    Trigger trigger = Trigger::message;
    bool all_groups = true;                    ///< `in: all` (or no `in`)
    std::vector<std::uint32_t> selections;     ///< indices into RuleSet::selections
    bool has_when = false;
    Condition when;
    bool has_unless = false;
    Condition unless;
    std::vector<ActionSpec> actions;
    bool stop = false;
    std::int64_t batch_ms = 0;           ///< member_joined: merge joins within this window
    std::int64_t group_cooldown_ms = 0;  ///< after firing in a group, silent there for this long
    std::int64_t member_cooldown_ms = 0; ///< after firing for a member, silent for them this long
    bool uses_activity = false;
    /// `wecom_template: true`: the rule's post is kept as a WeCom group welcome template
    /// (group_welcome_template, which WeCom itself sends on joins once the owner applies it)
    /// instead of being posted per join; `template_text` is its text with %NICKNAME%.
    bool wecom_template = false;
    std::string template_text;
    /// `on: schedule`: when it fires (and the missed-slot policy); its groups come from `in`.
    ScheduleSpec schedule;
    bool moderated = false;  ///< has `moderate:`
    Moderation moderation;
};

/// The compiled, immutable rule set.
struct RuleSet {
    std::vector<Rule> rules;                  ///< file order
    std::vector<GroupSelection> selections;
    std::unordered_map<std::string, std::uint32_t> rule_by_id;
    /// keyword sets: one per contains/exact leaf.
    std::uint32_t keyword_set_count = 0;
    KeywordIndex keywords;                            ///< every `contains` keyword of every rule
    std::vector<std::vector<std::uint32_t>> pattern_sets; ///< pattern id → keyword sets containing it
    std::unordered_map<std::string, std::vector<std::uint32_t>, TextHash, std::equal_to<>> exact_sets; ///< normalised text → sets
    /// Per trigger: rules that must be checked for every event (file order), and for message
    /// rules that need a keyword, keyword set → rules anchored on it.
    std::vector<std::uint32_t> unanchored[trigger_count];
    std::vector<std::vector<std::uint32_t>> set_rules;
    bool any_activity = false;       ///< some rule needs activity figures
    bool any_newcomer = false;       ///< some rule has `newcomer` (join times and early message counts)
    std::int64_t flood_window_ms = 0; ///< the longest `flood` window (0: none)
    std::int64_t repeat_window_ms = 0; ///< the longest `repeat` window (0: none)
    bool any_batch = false;          ///< some rule gathers joins into batches
    std::size_t per_trigger[trigger_count] = {}; ///< rules per trigger
    std::size_t keyword_count = 0;   ///< keywords as written (before dedup), for reports
    std::string fingerprint;         ///< hash of the rule files' bytes: identifies the version
    /// (rule id, text) of every `wecom_template` rule, to be kept in sync on WeCom.
    std::vector<std::pair<std::string, std::string>> welcome_templates;
    std::vector<DrawSpec> draws;     ///< `draws:` in file order
    std::shared_ptr<const RegexSet> regex_set; ///< null when no rule uses `regex`
    /// Message rules whose `when` needs a regex: pattern index in `regex_set` → rules (they are
    /// candidates only when the set matched that pattern, like keyword-anchored rules).
    std::vector<std::vector<std::uint32_t>> regex_rules;

    [[nodiscard]] const Rule* find(std::string_view id) const;
    [[nodiscard]] const DrawSpec* find_draw(std::string_view id) const;
};

} // namespace qunbot::rules
