#pragma once
/// \file
/// The platform-neutral event vocabulary. Adapters map what their platform delivers into
/// `Event`; everything downstream (journal, activity log, rule engine) sees only this.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qunbot::core {

/// What happened. Stable names (see `to_string`) are stored in SQLite and used as metric labels.
enum class EventKind : std::uint8_t {
    group_created,          ///< a customer group was created
    group_dismissed,        ///< the owner dismissed the group
    group_renamed,          ///< the group name changed (new name needs a directory sync)
    group_owner_changed,    ///< the owner changed
    group_notice_changed,   ///< the group announcement changed
    member_joined,          ///< one or more members joined a group
    member_left,            ///< one or more members left or were removed
    contact_added,          ///< a staff member added a customer (1:1), may carry a welcome code
    contact_half_added,     ///< a customer added a staff member who has not confirmed yet
    contact_edited,         ///< staff edited a customer's remark or tags
    contact_deleted,        ///< staff deleted the customer
    contact_unfollowed,     ///< the customer deleted the staff member
    contact_transfer_failed,///< a customer transfer between staff failed
    contact_archive_agreed, ///< a customer agreed to session archiving
    tag_changed,            ///< a corp customer tag or tag group was created/changed/deleted/shuffled
    message,                ///< a message (text or other type) sent to the bot or in a group
    message_recalled,       ///< a member recalled a message (`subject` is its message id)
    archive_notify,         ///< new session-archive messages are ready to be pulled
    unknown,                ///< kept raw: a type this version does not understand
};

[[nodiscard]] std::string_view to_string(EventKind kind) noexcept;
/// Inverse of `to_string`; `unknown` for anything else.
[[nodiscard]] EventKind event_kind_from_string(std::string_view name) noexcept;
/// Every kind, in declaration order (for metrics and help texts).
[[nodiscard]] const std::vector<EventKind>& all_event_kinds();

/// One event, as the adapter understood it.
struct Event {
    EventKind kind = EventKind::unknown;
    std::string platform;       ///< "wecom", later "onebot", "console", ...
    std::string app;            ///< configured app name that received it
    std::string tenant;         ///< corp id (WeCom receiveid): events are deduplicated per tenant
    std::string dedup_key;      ///< identical for retries of the same delivery, distinct otherwise
    std::int64_t time = 0;      ///< platform timestamp, unix seconds
    std::string group_id;       ///< chat id, empty for 1:1 events
    std::string actor;          ///< who acted: staff userid, message sender ("sys" for system events)
    std::string subject;        ///< who it is about: external userid for contact events
    std::vector<std::string> members; ///< members that joined / left
    std::optional<int> scene;   ///< join scene (0 invite, 3 QR) or quit scene (0 self, 1 removed)
    int member_change_count = 0;
    std::string last_member_version;
    std::string current_member_version;
    std::string state;          ///< channel marker of a 「联系我」 config
    std::string welcome_code;   ///< one-shot code for a 1:1 welcome, valid 20 s
    std::string message_id;
    std::string message_type;   ///< "text", "image", ... for messages
    std::string text;
    std::string raw_type;       ///< the platform's own type, e.g. "change_external_chat/update/add_member"
    /// Kind-specific extras that have no field of their own (tag Id/TagType, FailReason, Source, AgentID).
    std::vector<std::pair<std::string, std::string>> attributes;
    std::string payload;        ///< the decrypted platform payload, kept for audit and replay

    /// Value of an attribute, or empty.
    [[nodiscard]] std::string_view attribute(std::string_view name) const noexcept;
};

} // namespace qunbot::core
