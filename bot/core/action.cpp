#include "bot/core/action.hpp"

#include <nlohmann/json.hpp>

#include <array>

namespace qunbot::core {
namespace {
constexpr std::array<std::pair<ActionKind, std::string_view>, 5> names{{
    {ActionKind::post, "post"},
    {ActionKind::reply, "reply"},
    {ActionKind::send_welcome, "send_welcome"},
    {ActionKind::assign_tag, "assign_tag"},
    {ActionKind::remove_tag, "remove_tag"},
}};
} // namespace

std::string_view to_string(ActionKind kind) noexcept
{
    for (const auto& [k, n] : names) if (k == kind) return n;
    return "?";
}

bool action_kind_from_string(std::string_view name, ActionKind& out) noexcept
{
    for (const auto& [k, n] : names) {
        if (n == name) { out = k; return true; }
    }
    return false;
}

std::string Action::to_json() const
{
    nlohmann::ordered_json j;
    j["kind"] = to_string(kind);
    j["key"] = idempotency_key;
    j["rule"] = rule_id;
    if (!group_id.empty()) j["group"] = group_id;
    if (!target.empty()) j["target"] = target;
    if (!staff.empty()) j["staff"] = staff;
    j["text"] = text;
    if (!mentions.empty()) j["mentions"] = mentions;
    if (!welcome_code.empty()) j["welcome_code"] = welcome_code;
    if (not_after_ms) j["not_after_ms"] = not_after_ms;
    return j.dump();
}

} // namespace qunbot::core
