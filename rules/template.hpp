#pragma once
/// \file
/// Message templates: literal text with `{{ variable }}` and `{{ variable | filter: "arg" }}`.
/// Templates are compiled when the rule file loads, against the variables the rule's trigger
/// provides, so a typo is a load error with its position, never a blank in a group message.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::rules {

enum class Trigger : std::uint8_t;

/// Everything a template can name.
enum class Var : std::uint8_t {
    member_name,        ///< the member the rule is about (joiner, sender, new contact)
    member_mention,     ///< "@name", and the member is added to the message's mention list
    member_id,
    members_names,      ///< all members of a (batched) join, "、"-separated
    members_mentions,   ///< "@a @b ...", all mentioned
    members_count,
    group_name,
    group_id,
    group_member_count,
    group_owner,
    now,                ///< processing time; `date: "%m月%d日"` formats it (default "%Y-%m-%d %H:%M")
    event_state,        ///< channel State of a contact
    event_scene,        ///< "qr_code" / "invitation" for joins, "left" / "removed" for leaves
    message_text,
    staff_id,           ///< the staff member a contact added
    rule_id,
    draw_id,            ///< draw messages: the draw's id
    draw_round,         ///< the round number (for `qunbot lottery show`)
    draw_keyword,       ///< the first entry keyword
    draw_prizes,        ///< "10人瓜分 ¥100.00", "3 × ¥5.00", tiers
    draw_closes,        ///< when it closes, in words
    draw_commitment,    ///< sha256 of the seed, posted at the opening
    draw_seed,          ///< the seed, revealed at the draw
    draw_digest,        ///< sha256 of the sorted entries
    draw_entries,       ///< how many entered
    draw_winners,       ///< one line per winner: "@name ¥12.34" (with tier names), all mentioned
};

/// Stable name (`member.name`, ...).
[[nodiscard]] std::string_view to_string(Var v) noexcept;
/// Whether `trigger` provides `v`.
[[nodiscard]] bool provides(Trigger trigger, Var v) noexcept;
/// Names of the variables `trigger` provides (for error messages).
[[nodiscard]] std::vector<std::string_view> provided_names(Trigger trigger);

/// A problem found while compiling; `offset` is a byte offset into the template text.
struct TemplateError {
    std::size_t offset = 0;
    std::string message;
};

class Template {
public:
    struct Part {
        std::string literal;    ///< used when `is_var` is false
        bool is_var = false;
        Var var = Var::member_name;
        std::string date_format; ///< `date` filter
        std::string fallback;    ///< `default` filter: used when the value is empty
        bool has_fallback = false;
    };

    /// Compiles `text` for `trigger`; errors are appended to `errors` (all of them).
    [[nodiscard]] static Template compile(std::string_view text, Trigger trigger, std::vector<TemplateError>& errors);

    [[nodiscard]] const std::vector<Part>& parts() const noexcept { return parts_; }
    [[nodiscard]] bool uses(Var v) const noexcept;
    [[nodiscard]] bool empty() const noexcept { return parts_.empty(); }
    [[nodiscard]] const std::string& source() const noexcept { return source_; }

private:
    std::vector<Part> parts_;
    std::string source_;
};

} // namespace qunbot::rules
