#include "bot/core/action.hpp"

#include <nlohmann/json.hpp>

#include <array>

namespace qunbot::core {
namespace {
constexpr std::array<std::pair<ActionKind, std::string_view>, 7> names{{
    {ActionKind::post, "post"},
    {ActionKind::reply, "reply"},
    {ActionKind::send_welcome, "send_welcome"},
    {ActionKind::assign_tag, "assign_tag"},
    {ActionKind::remove_tag, "remove_tag"},
    {ActionKind::remove_member, "remove_member"},
    {ActionKind::recall, "recall"},
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
    if (!attachments.empty()) j["attachments"] = nlohmann::ordered_json::parse(attachments, nullptr, false);
    if (!welcome_code.empty()) j["welcome_code"] = welcome_code;
    if (not_after_ms) j["not_after_ms"] = not_after_ms;
    return j.dump();
}

bool Action::from_json(std::string_view text_json)
{
    const auto j = nlohmann::json::parse(text_json, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("kind") || !j["kind"].is_string()) return false;
    if (!action_kind_from_string(j["kind"].get<std::string>(), kind)) return false;
    try {
        idempotency_key = j.value("key", std::string());
        rule_id = j.value("rule", std::string());
        group_id = j.value("group", std::string());
        target = j.value("target", std::string());
        staff = j.value("staff", std::string());
        text = j.value("text", std::string());
        mentions = j.value("mentions", std::vector<std::string>{});
        welcome_code = j.value("welcome_code", std::string());
        attachments = j.contains("attachments") && j["attachments"].is_array() ? j["attachments"].dump() : std::string();
        not_after_ms = j.value("not_after_ms", std::int64_t{0});
    } catch (const nlohmann::json::exception&) {
        return false; // a field of the wrong type
    }
    return true;
}

} // namespace qunbot::core
