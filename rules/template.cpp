#include "rules/template.hpp"

#include "bot/core/suggest.hpp"
#include "rules/rule_set.hpp"

#include <array>

namespace qunbot::rules {
namespace {

struct VarInfo {
    Var var;
    std::string_view name;
    std::uint8_t triggers; // bit per Trigger
};

constexpr std::uint8_t bit(Trigger t) { return static_cast<std::uint8_t>(1u << static_cast<unsigned>(t)); }
constexpr std::uint8_t joins = bit(Trigger::member_joined) | bit(Trigger::member_left);
constexpr std::uint8_t every = joins | bit(Trigger::message) | bit(Trigger::contact_added);
constexpr std::uint8_t in_group = joins | bit(Trigger::message) | bit(Trigger::schedule);
constexpr std::uint8_t always = every | bit(Trigger::schedule);
constexpr std::uint8_t draw = bit(Trigger::draw);

constexpr std::array<VarInfo, 26> vars{{
    {Var::member_name, "member.name", every},
    {Var::member_mention, "member.mention", joins | bit(Trigger::message)},
    {Var::member_id, "member.id", every},
    {Var::members_names, "members.names", joins},
    {Var::members_mentions, "members.mentions", joins},
    {Var::members_count, "members.count", joins},
    {Var::group_name, "group.name", in_group | draw},
    {Var::group_id, "group.id", in_group | draw},
    {Var::group_member_count, "group.member_count", in_group | draw},
    {Var::group_owner, "group.owner", in_group | draw},
    {Var::now, "now", always | draw},
    {Var::event_state, "event.state", bit(Trigger::contact_added)},
    {Var::event_scene, "event.scene", joins},
    {Var::message_text, "message.text", bit(Trigger::message)},
    {Var::staff_id, "staff.id", bit(Trigger::contact_added)},
    {Var::rule_id, "rule.id", always},
    {Var::draw_id, "draw.id", draw},
    {Var::draw_round, "draw.round", draw},
    {Var::draw_keyword, "draw.keyword", draw},
    {Var::draw_prizes, "draw.prizes", draw},
    {Var::draw_closes, "draw.closes", draw},
    {Var::draw_commitment, "draw.commitment", draw},
    {Var::draw_seed, "draw.seed", draw},
    {Var::draw_digest, "draw.digest", draw},
    {Var::draw_entries, "draw.entries", draw},
    {Var::draw_winners, "draw.winners", draw},
}};

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Splits on '|' outside quotes; offsets are relative to `s`.
std::vector<std::pair<std::size_t, std::string_view>> split_pipes(std::string_view s)
{
    std::vector<std::pair<std::size_t, std::string_view>> out;
    std::size_t start = 0;
    char quote = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        if (i < s.size() && quote) {
            if (s[i] == quote) quote = 0;
            continue;
        }
        if (i < s.size() && (s[i] == '"' || s[i] == '\'')) { quote = s[i]; continue; }
        if (i == s.size() || s[i] == '|') {
            out.emplace_back(start, s.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

} // namespace

std::string_view to_string(Var v) noexcept
{
    for (const auto& info : vars) if (info.var == v) return info.name;
    return "?";
}

bool provides(Trigger trigger, Var v) noexcept
{
    for (const auto& info : vars) if (info.var == v) return (info.triggers & bit(trigger)) != 0;
    return false;
}

std::vector<std::string_view> provided_names(Trigger trigger)
{
    std::vector<std::string_view> out;
    for (const auto& info : vars) if (info.triggers & bit(trigger)) out.push_back(info.name);
    return out;
}

bool Template::uses(Var v) const noexcept
{
    for (const auto& p : parts_) if (p.is_var && p.var == v) return true;
    return false;
}

Template Template::compile(std::string_view text, Trigger trigger, std::vector<TemplateError>& errors)
{
    Template t;
    t.source_ = std::string(text);
    std::size_t pos = 0;
    auto add_literal = [&t](std::string_view lit) {
        if (lit.empty()) return;
        if (!t.parts_.empty() && !t.parts_.back().is_var) t.parts_.back().literal += lit;
        else {
            Part p;
            p.literal = std::string(lit);
            t.parts_.push_back(std::move(p));
        }
    };
    while (pos < text.size()) {
        const auto open = text.find("{{", pos);
        const auto stray_close = text.find("}}", pos);
        if (stray_close != std::string_view::npos && (open == std::string_view::npos || stray_close < open)) {
            errors.push_back({stray_close, "\"}}\" without a matching \"{{\""});
        }
        if (open == std::string_view::npos) { add_literal(text.substr(pos)); break; }
        add_literal(text.substr(pos, open - pos));
        const auto close = text.find("}}", open + 2);
        if (close == std::string_view::npos) {
            errors.push_back({open, "\"{{\" is not closed with \"}}\""});
            break;
        }
        const auto inner_at = open + 2;
        const auto inner = text.substr(inner_at, close - inner_at);
        pos = close + 2;
        const auto pieces = split_pipes(inner);
        Part part;
        part.is_var = true;
        const auto name_raw = pieces.front().second;
        const auto name = trim(name_raw);
        const std::size_t name_at = inner_at + static_cast<std::size_t>(name.data() - inner.data());
        if (name.empty()) {
            errors.push_back({open, "empty \"{{ }}\": name a variable, e.g. {{ member.name }}"});
            continue;
        }
        const VarInfo* found = nullptr;
        for (const auto& info : vars) if (info.name == name) found = &info;
        if (!found) {
            std::vector<std::string_view> all;
            for (const auto& info : vars) all.push_back(info.name);
            std::string msg = "unknown template variable \"" + std::string(name) + "\"";
            if (auto best = core::closest(name, all); !best.empty()) msg += "; did you mean \"" + best + "\"?";
            errors.push_back({name_at, std::move(msg)});
            continue;
        }
        if (!(found->triggers & bit(trigger))) {
            std::string msg = "template variable \"" + std::string(name) + "\" is not available for `on: " +
                              std::string(to_string(trigger)) + "` rules; available: ";
            bool first = true;
            for (auto n : provided_names(trigger)) { msg += (first ? "" : ", ") + std::string(n); first = false; }
            errors.push_back({name_at, std::move(msg)});
            continue;
        }
        part.var = found->var;
        bool ok = true;
        for (std::size_t k = 1; k < pieces.size(); ++k) {
            const auto raw = pieces[k].second;
            const auto filter = trim(raw);
            const std::size_t filter_at = inner_at + pieces[k].first + static_cast<std::size_t>(filter.data() - raw.data());
            const auto colon = filter.find(':');
            const auto fname = trim(filter.substr(0, colon));
            std::string arg;
            bool has_arg = false;
            if (colon != std::string_view::npos) {
                const auto a = trim(filter.substr(colon + 1));
                if (a.size() < 2 || (a.front() != '"' && a.front() != '\'') || a.back() != a.front()) {
                    errors.push_back({filter_at, "filter argument must be quoted, e.g. date: \"%m月%d日\""});
                    ok = false;
                    continue;
                }
                arg = std::string(a.substr(1, a.size() - 2));
                has_arg = true;
            }
            if (fname == "date") {
                if (part.var != Var::now) {
                    errors.push_back({filter_at, "filter \"date\" applies to \"now\" only"});
                    ok = false;
                } else if (!has_arg || arg.empty()) {
                    errors.push_back({filter_at, "filter \"date\" needs a format, e.g. date: \"%Y-%m-%d\""});
                    ok = false;
                } else {
                    part.date_format = arg;
                }
            } else if (fname == "default") {
                if (!has_arg) {
                    errors.push_back({filter_at, "filter \"default\" needs a value, e.g. default: \"朋友\""});
                    ok = false;
                } else {
                    part.fallback = arg;
                    part.has_fallback = true;
                }
            } else {
                std::string msg = "unknown filter \"" + std::string(fname) + "\"";
                if (auto best = core::closest(fname, {"date", "default"}); !best.empty()) {
                    msg += "; did you mean \"" + best + "\"?";
                }
                errors.push_back({filter_at, msg + " (filters: date, default)"});
                ok = false;
            }
        }
        if (ok) t.parts_.push_back(std::move(part));
    }
    return t;
}

} // namespace qunbot::rules
