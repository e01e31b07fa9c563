#pragma once
/// \file
/// What the rule engine decided to do, in platform-neutral terms. Adapters perform actions (or
/// degrade them where their platform cannot, and record that); the outbox stores them.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::core {

enum class ActionKind : std::uint8_t {
    post,         ///< a message into the group
    reply,        ///< an answer to a member's message, in the same group (or 1:1)
    send_welcome, ///< WeCom 1:1 welcome via send_welcome_msg (one-shot welcome code, 20 s)
    assign_tag,   ///< tag a member (mirrored to the platform, e.g. WeCom mark_tag)
    remove_tag,   ///< untag a member
    remove_member,///< take a member out of the group (degraded to an owner notice where no API exists)
    recall,       ///< recall a message (`target` is the message id; degraded likewise)
};

[[nodiscard]] std::string_view to_string(ActionKind kind) noexcept;
/// Inverse of `to_string`; false if unknown.
[[nodiscard]] bool action_kind_from_string(std::string_view name, ActionKind& out) noexcept;

struct Action {
    ActionKind kind = ActionKind::post;
    /// Derived from the cause (event + rule + position, or batch + rule + position): the outbox
    /// performs a key at most once, however often the cause is replayed.
    std::string idempotency_key;
    std::string rule_id;
    std::string tenant;
    std::string platform;
    std::string app;
    std::string group_id;              ///< empty for 1:1
    std::string target;                ///< member / contact the action is about (reply, welcome, tags)
    std::string staff;                 ///< staff member a 1:1 action goes through
    std::string text;                  ///< message text, or the tag name
    std::vector<std::string> mentions; ///< members @-mentioned in `text`
    /// Content beyond text, a JSON array of {"type": "image"|"link"|"miniprogram", …} (empty: none).
    std::string attachments;
    std::string welcome_code;
    std::int64_t not_after_ms = 0;     ///< deadline after which performing is pointless (0: none)
    std::int64_t not_before_ms = 0;    ///< do not perform earlier (a schedule's jitter; 0: at once)
    std::int64_t cause_event_id = 0;   ///< inbox row that caused it (0 for timers)

    /// One-line JSON (stored in the outbox, printed by `rules test` / `explain`).
    [[nodiscard]] std::string to_json() const;
    /// Fills the fields `to_json` wrote (kind, key, rule, group, target, staff, text, mentions,
    /// welcome code, deadline); false if `json` is not such an object.
    [[nodiscard]] bool from_json(std::string_view json);
};

} // namespace qunbot::core
