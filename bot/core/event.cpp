#include "bot/core/event.hpp"

#include <array>

namespace qunbot::core {
namespace {

constexpr std::array<std::string_view, 19> kind_names{
    "group_created",      "group_dismissed",      "group_renamed",
    "group_owner_changed","group_notice_changed", "member_joined",
    "member_left",        "contact_added",        "contact_half_added",
    "contact_edited",     "contact_deleted",      "contact_unfollowed",
    "contact_transfer_failed", "contact_archive_agreed", "tag_changed",
    "message",            "message_recalled",     "archive_notify",
    "unknown",
};
static_assert(kind_names.size() == static_cast<std::size_t>(EventKind::unknown) + 1);

} // namespace

std::string_view to_string(EventKind kind) noexcept
{
    return kind_names[static_cast<std::size_t>(kind)];
}

EventKind event_kind_from_string(std::string_view name) noexcept
{
    for (std::size_t i = 0; i < kind_names.size(); ++i) {
        if (kind_names[i] == name) return static_cast<EventKind>(i);
    }
    return EventKind::unknown;
}

const std::vector<EventKind>& all_event_kinds()
{
    static const std::vector<EventKind> kinds = [] {
        std::vector<EventKind> v;
        for (std::size_t i = 0; i < kind_names.size(); ++i) v.push_back(static_cast<EventKind>(i));
        return v;
    }();
    return kinds;
}

std::string_view Event::attribute(std::string_view name) const noexcept
{
    for (const auto& [k, v] : attributes) {
        if (k == name) return v;
    }
    return {};
}

} // namespace qunbot::core
