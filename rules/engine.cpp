#include "rules/engine.hpp"

#include "rules/detect.hpp"
#include "rules/text.hpp"

#include <re2/filtered_re2.h>
#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <bit>
#include <ctime>
#include <optional>

namespace qunbot::rules {

std::string_view to_string(Trigger t) noexcept
{
    switch (t) {
    case Trigger::member_joined: return "member_joined";
    case Trigger::member_left: return "member_left";
    case Trigger::message: return "message";
    case Trigger::contact_added: return "contact_added";
    case Trigger::schedule: return "schedule";
    case Trigger::draw: return "draw";
    }
    return "?";
}

std::string_view to_string(Moderation::Step st) noexcept
{
    switch (st) {
    case Moderation::Step::warn: return "warn";
    case Moderation::Step::recall: return "recall";
    case Moderation::Step::remove: return "remove";
    case Moderation::Step::blacklist: return "blacklist";
    }
    return "?";
}

std::string_view to_string(ActionSpec::Kind k) noexcept
{
    switch (k) {
    case ActionSpec::Kind::post: return "post";
    case ActionSpec::Kind::reply: return "reply";
    case ActionSpec::Kind::welcome: return "welcome";
    case ActionSpec::Kind::assign_tag: return "assign_tag";
    case ActionSpec::Kind::remove_tag: return "remove_tag";
    }
    return "?";
}

std::string_view to_string(Trace::Outcome o) noexcept
{
    switch (o) {
    case Trace::Outcome::fired: return "fired";
    case Trace::Outcome::batched: return "batched";
    case Trace::Outcome::out_of_scope: return "out_of_scope";
    case Trace::Outcome::condition_false: return "condition_false";
    case Trace::Outcome::unless_true: return "unless_true";
    case Trace::Outcome::cooldown: return "cooldown";
    case Trace::Outcome::no_effect: return "no_effect";
    }
    return "?";
}

const Rule* RuleSet::find(std::string_view id) const
{
    auto it = rule_by_id.find(std::string(id));
    return it == rule_by_id.end() ? nullptr : &rules[it->second];
}

std::vector<DrawEntry> draw_entries(const RuleSet& set, const core::Event& e)
{
    std::vector<DrawEntry> out;
    if (set.draws.empty() || e.group_id.empty()) return out;
    for (const auto& d : set.draws) {
        if (e.kind == core::EventKind::message && !e.actor.empty() && is_entry_text(d, e.text)) {
            out.push_back({d.id, e.actor, "keyword", e.time * 1000});
        } else if (e.kind == core::EventKind::member_joined && d.enter_by_join) {
            for (const auto& m : e.members) out.push_back({d.id, m, "join", e.time * 1000});
        }
    }
    return out;
}

struct RegexSet {
    explicit RegexSet(const RE2::Options& opts) : set(opts, RE2::UNANCHORED), filter(2) {}
    RE2::Set set;
    int size = 0;
    /// The prefilter: literal strings ("atoms") at least one of which each pattern needs. They
    /// join the keyword index, so the one keyword scan finds them too; when none is present no
    /// pattern can match and the set is not run. Off when some pattern needs no literal, or an
    /// atom holds a character keyword normalisation changes or drops (see `gate_atom`).
    re2::FilteredRE2 filter;
    std::vector<int> atom_number; ///< keyword pattern id → the filter's atom index (-1: none)
    bool gate = false;
};

namespace {

void collect_regex(Condition& c, RegexSet& set, const RE2::Options& opts, bool& ok, bool& gate)
{
    if (c.op == Condition::Op::regex && c.regex) {
        std::string error;
        c.regex_index = set.set.Add(c.regex->pattern(), &error);
        ok = ok && c.regex_index >= 0;
        int filter_index = -1;
        gate = gate && set.filter.Add(c.regex->pattern(), opts, &filter_index) == RE2::NoError && filter_index == c.regex_index;
        ++set.size;
    }
    for (auto& child : c.children) collect_regex(child, set, opts, ok, gate);
}

// Whether an atom found missing from the keyword text is missing from the regex text too.
// That holds when every character is one both normalisations keep as it is and regex matching
// cannot reach by case folding: a-z, 0-9, and CJK, kana and Hangul (atoms are lower case;
// messages are lower-cased for ASCII only). Keyword normalisation then only removes characters
// around such a run, never inside it.
bool gate_atom(std::string_view atom)
{
    for (std::size_t i = 0; i < atom.size();) {
        const auto b = static_cast<unsigned char>(atom[i]);
        if (b < 0x80) {
            if (!((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9'))) return false;
            ++i;
            continue;
        }
        std::uint32_t cp = 0;
        std::size_t n = 0;
        if ((b & 0xF0) == 0xE0) { cp = b & 0x0Fu; n = 3; }
        else if ((b & 0xF8) == 0xF0) { cp = b & 0x07u; n = 4; }
        else return false; // two-byte characters: Latin, Greek, Cyrillic letters with case
        if (i + n > atom.size()) return false;
        for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(atom[i + k]) & 0x3Fu);
        i += n;
        const bool cjk = ((cp >= 0x2E80 && cp <= 0x9FFF) && !(cp >= 0x3000 && cp <= 0x303F) && cp != 0x30FB) ||
                         (cp >= 0xAC00 && cp <= 0xD7AF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x3FFFF);
        if (!cjk) return false;
    }
    return true;
}

// Sets up the prefilter once all patterns are in the filter: its atoms join `keywords`.
void build_gate(RegexSet& set, KeywordIndex& keywords)
{
    std::vector<std::string> atoms;
    set.filter.Compile(&atoms);
    std::vector<int> unfiltered;
    set.filter.AllPotentials({}, &unfiltered);
    if (!unfiltered.empty() || atoms.empty()) {
        set.gate = false;
        return;
    }
    for (std::size_t i = 0; i < atoms.size(); ++i) {
        if (atoms[i].empty() || !gate_atom(atoms[i])) {
            set.gate = false;
            return;
        }
    }
    for (std::size_t i = 0; i < atoms.size(); ++i) {
        const auto p = keywords.add(atoms[i]);
        if (set.atom_number.size() <= p) set.atom_number.resize(p + 1, -1);
        set.atom_number[p] = static_cast<int>(i);
    }
    set.atom_number.resize(keywords.pattern_count(), -1);
}

// The regex pattern a condition cannot hold without (a regex leaf, or one inside an `all`).
int regex_anchor(const Condition& c)
{
    if (c.op == Condition::Op::regex) return c.regex_index;
    if (c.op == Condition::Op::all) {
        for (const auto& child : c.children) {
            if (const int a = regex_anchor(child); a >= 0) return a;
        }
    }
    return -1;
}

void clear_regex_index(Condition& c)
{
    c.regex_index = -1;
    for (auto& child : c.children) clear_regex_index(child);
}

} // namespace

void build_regex_set(RuleSet& rules)
{
    RE2::Options opts;
    opts.set_log_errors(false);
    opts.set_case_sensitive(false);
    opts.set_never_capture(true);
    auto set = std::make_shared<RegexSet>(opts);
    bool ok = true;
    bool gate = true;
    for (auto& r : rules.rules) {
        if (r.has_when) collect_regex(r.when, *set, opts, ok, gate);
        if (r.has_unless) collect_regex(r.unless, *set, opts, ok, gate);
    }
    // Any pattern the set cannot take (or a failed compile) falls back to one search per condition.
    if (!ok || set->size == 0 || !set->set.Compile()) {
        for (auto& r : rules.rules) {
            clear_regex_index(r.when);
            clear_regex_index(r.unless);
        }
        rules.regex_set.reset();
        return;
    }
    set->gate = gate;
    if (gate) build_gate(*set, rules.keywords);
    rules.regex_set = std::move(set);
    // Message rules that need a regex leave the every-event list: the set's one pass decides
    // whether they are candidates at all.
    auto& every = rules.unanchored[static_cast<std::size_t>(Trigger::message)];
    rules.regex_rules.assign(static_cast<std::size_t>(rules.regex_set->size), {});
    std::erase_if(every, [&rules](std::uint32_t idx) {
        const auto& r = rules.rules[idx];
        const int a = r.has_when ? regex_anchor(r.when) : -1;
        if (a < 0) return false;
        rules.regex_rules[static_cast<std::size_t>(a)].push_back(idx);
        return true;
    });
}

bool regex_prefilter_active(const RuleSet& rules) noexcept
{
    return rules.regex_set && rules.regex_set->gate;
}

const DrawSpec* RuleSet::find_draw(std::string_view id) const
{
    for (const auto& d : draws) if (d.id == id) return &d;
    return nullptr;
}

const MemberInfo* State::member(std::string_view id) const
{
    auto it = members.find(id);
    return it == members.end() ? nullptr : &it->second;
}

std::string group_cooldown_key(std::string_view rule_id, std::string_view group_id)
{
    return "g\x1f" + std::string(rule_id) + "\x1f" + std::string(group_id);
}

std::string member_cooldown_key(std::string_view rule_id, std::string_view group_id, std::string_view member_id)
{
    return "m\x1f" + std::string(rule_id) + "\x1f" + std::string(group_id) + "\x1f" + std::string(member_id);
}

bool is_customer_id(std::string_view id) noexcept
{
    return id.size() >= 20 && (id.starts_with("wm") || id.starts_with("wo"));
}

bool trigger_for(core::EventKind kind, Trigger& out) noexcept
{
    switch (kind) {
    case core::EventKind::member_joined: out = Trigger::member_joined; return true;
    case core::EventKind::member_left: out = Trigger::member_left; return true;
    case core::EventKind::message: out = Trigger::message; return true;
    case core::EventKind::contact_added:
    case core::EventKind::contact_half_added: out = Trigger::contact_added; return true;
    default: return false;
    }
}

namespace {

bool contains(const std::vector<std::string>& v, std::string_view x)
{
    return std::find(v.begin(), v.end(), x) != v.end();
}

// Per-thread scratch so a message evaluation allocates nothing in the steady state.
struct Scratch {
    std::vector<int> regex_hits;      // indices of regex_set patterns that matched this text
    std::vector<int> atom_hits;       // prefilter atoms found in the text by the keyword scan
    bool atoms_scanned = false;
    std::vector<int> potentials;      // patterns the prefilter lets through
    bool regex_set_ready = false;
    std::vector<std::uint32_t> stamp; // keyword set → generation it last matched in
    std::uint32_t generation = 0;
    std::vector<std::uint32_t> matched_sets;
    std::vector<std::uint32_t> matched_patterns;
    std::vector<std::uint32_t> candidates;
    std::string keyword_buffer;
    std::string regex_buffer;
    std::string_view keyword_text; // the event's text itself, or a buffer
    std::string_view regex_text;
    bool regex_ready = false;
    std::optional<LatinCount> latin; // Latin letters and digits of the text, once needed
    std::vector<std::string_view> subjects;
};

Scratch& scratch()
{
    thread_local Scratch s;
    return s;
}

struct Context {
    const RuleSet& rules;
    const core::Event& event;
    const State& state;
    Scratch& s;
    bool explain;

    [[nodiscard]] bool set_matched(std::uint32_t set) const { return s.stamp[set] == s.generation; }

    // The link and contact detectors need Latin letters or digits; most messages have none.
    const LatinCount& latin()
    {
        if (!s.latin) s.latin = s.atoms_scanned ? count_latin_folded(s.keyword_text) : count_latin(event.text);
        return *s.latin;
    }

    // Whether regex condition `index` matches: the whole set is run once per text.
    bool regex_hit(int index)
    {
        if (!s.regex_set_ready) {
            s.regex_hits.clear();
            s.regex_set_ready = true;
            const auto& rs = *rules.regex_set;
            if (rs.gate && s.atoms_scanned) {
                if (s.atom_hits.empty()) return false;
                std::sort(s.atom_hits.begin(), s.atom_hits.end());
                s.atom_hits.erase(std::unique(s.atom_hits.begin(), s.atom_hits.end()), s.atom_hits.end());
                rs.filter.AllPotentials(s.atom_hits, &s.potentials);
                if (s.potentials.empty()) return false;
            }
            rs.set.Match(regex_text(), &s.regex_hits);
            std::sort(s.regex_hits.begin(), s.regex_hits.end());
        }
        return std::binary_search(s.regex_hits.begin(), s.regex_hits.end(), index);
    }

    std::string_view regex_text()
    {
        if (!s.regex_ready) {
            s.regex_text = normalized(event.text, Fold::regex, s.regex_buffer);
            s.regex_ready = true;
        }
        return s.regex_text;
    }
};

// Evaluates `c` for `member`; on false, `why` (when asked) says which leaf decided it.
bool holds(const Condition& c, Context& ctx, std::string_view member_id, std::string* why)
{
    switch (c.op) {
    case Condition::Op::all:
        for (const auto& child : c.children) {
            if (!holds(child, ctx, member_id, why)) return false;
        }
        return true;
    case Condition::Op::any: {
        for (const auto& child : c.children) {
            if (holds(child, ctx, member_id, nullptr)) return true;
        }
        if (why) *why = "none of: " + c.text;
        return false;
    }
    case Condition::Op::not_:
        if (holds(c.children.front(), ctx, member_id, nullptr)) {
            if (why) *why = "not: " + c.children.front().text + " was true";
            return false;
        }
        return true;
    default: break;
    }
    // Only the conditions about the member look them up: text conditions run for every message.
    using Op = Condition::Op;
    const bool about_member = c.op == Op::blacklisted || c.op == Op::nickname || c.op == Op::newcomer || c.op == Op::repeat ||
                              c.op == Op::flood || c.op == Op::has_tag || c.op == Op::active_days;
    const MemberInfo* member = about_member ? ctx.state.member(member_id) : nullptr;
    bool r = false;
    switch (c.op) {
    case Condition::Op::contains:
    case Condition::Op::exact: r = ctx.set_matched(c.keyword_set); break;
    case Condition::Op::regex:
        r = c.regex_index >= 0 && ctx.rules.regex_set ? ctx.regex_hit(c.regex_index) : RE2::PartialMatch(ctx.regex_text(), *c.regex);
        break;
    case Condition::Op::links:
        if (!ctx.latin().may_hold_domain()) break;
        for (const auto& d : find_domains(ctx.event.text)) {
            if (!domain_allowed(d, c.values)) {
                r = true;
                break;
            }
        }
        break;
    case Condition::Op::blacklisted: r = (member && member->blacklisted) == (c.at_least == 1); break;
    case Condition::Op::nickname:
        if (member && !member->name.empty()) {
            const auto name = normalize(member->name, Fold::keyword);
            for (const auto& v : c.values) r = r || name.find(v) != std::string::npos;
        }
        break;
    case Condition::Op::newcomer:
        if (member) {
            const bool by_time = c.days > 0 && member->joined_ms > 0 && ctx.state.now_ms - member->joined_ms < std::int64_t(c.days) * 3'600'000;
            const bool by_count = c.at_least > 0 && member->messages_since_join >= 0 && member->messages_since_join <= c.at_least;
            r = by_time || by_count;
        }
        break;
    case Condition::Op::qr_code: {
        // The adapter decoded the image (attribute "qr", one code per line).
        const auto codes = ctx.event.attribute("qr");
        std::size_t start = 0;
        while (!r && start < codes.size()) {
            auto end = codes.find('\n', start);
            if (end == std::string_view::npos) end = codes.size();
            const auto code = codes.substr(start, end - start);
            start = end + 1;
            if (code.empty()) continue;
            if (c.values.empty()) {
                r = true;
                break;
            }
            const auto domains = find_domains(code);
            r = domains.empty() || std::any_of(domains.begin(), domains.end(), [&](const std::string& d) { return !domain_allowed(d, c.values); });
        }
        break;
    }
    case Condition::Op::repeat:
        if (member) {
            std::vector<std::string_view> groups;
            for (const auto& [g, at] : member->same_text) {
                if (at < ctx.state.now_ms - std::int64_t(c.days) * 1000) continue;
                if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
            }
            r = static_cast<int>(groups.size()) >= c.at_least;
        }
        break;
    case Condition::Op::flood:
        if (member) {
            int n = 0;
            for (const auto at : member->recent_messages_ms) n += at >= ctx.state.now_ms - std::int64_t(c.days) * 1000 ? 1 : 0;
            r = n >= c.at_least;
        }
        break;
    case Condition::Op::contact_bait: {
        if (!ctx.latin().may_hold_contact()) break;
        const auto b = find_contact_bait(ctx.event.text);
        r = (b.wechat && contains(c.values, "wechat")) || (b.phone && contains(c.values, "phone")) || (b.qq && contains(c.values, "qq"));
        break;
    }
    case Condition::Op::role: {
        const bool customer = is_customer_id(member_id);
        r = contains(c.values, customer ? "customer" : "staff");
        break;
    }
    case Condition::Op::has_tag:
        if (member) {
            for (const auto& t : c.values) r = r || contains(member->tags, t);
        }
        break;
    case Condition::Op::scene:
        r = ctx.event.scene && std::find(c.ints.begin(), c.ints.end(), *ctx.event.scene) != c.ints.end();
        break;
    case Condition::Op::state:
        for (const auto& g : c.values) r = r || glob_match(g, ctx.event.state);
        break;
    case Condition::Op::message_type: r = contains(c.values, ctx.event.message_type); break;
    case Condition::Op::active_days: {
        const std::uint64_t window = c.days >= 64 ? ~0ull : ((1ull << c.days) - 1);
        const int n = member ? std::popcount(member->active_days & window) : 0;
        r = n >= c.at_least;
        if (!r && why) *why = c.text + " (active on " + std::to_string(n) + ")";
        return r;
    }
    default: break;
    }
    if (!r && why) *why = c.text + " was false";
    return r;
}

// Keywords of `set` found in the message, for explanations.
std::string matched_keywords(const Context& ctx, std::uint32_t set)
{
    std::string out;
    for (auto p : ctx.s.matched_patterns) {
        const auto& sets = ctx.rules.pattern_sets[p];
        if (std::find(sets.begin(), sets.end(), set) == sets.end()) continue;
        const auto& kw = ctx.rules.keywords.pattern(p);
        if (out.find("\"" + kw + "\"") != std::string::npos) continue;
        out += (out.empty() ? "\"" : ", \"") + kw + "\"";
    }
    return out;
}

void collect_matches(const Condition& c, const Context& ctx, std::string& out)
{
    if ((c.op == Condition::Op::contains || c.op == Condition::Op::exact) && ctx.set_matched(c.keyword_set)) {
        const auto kws = c.op == Condition::Op::exact ? std::string("the whole message") : matched_keywords(ctx, c.keyword_set);
        out += (out.empty() ? "" : "; ") + c.text + " matched " + kws;
    }
    for (const auto& child : c.children) collect_matches(child, ctx, out);
}

bool in_scope(const RuleSet& rules, bool all_groups, const std::vector<std::uint32_t>& selections, const GroupInfo& group)
{
    if (all_groups) return true;
    for (auto idx : selections) {
        const auto& sel = rules.selections[idx];
        auto any_of = [](const std::vector<std::string>& list, auto pred) {
            if (list.empty()) return true;
            return std::any_of(list.begin(), list.end(), pred);
        };
        const bool ok =
            any_of(sel.ids, [&](const std::string& id) { return id == group.id; }) &&
            any_of(sel.name_globs, [&](const std::string& g) { return glob_match(g, group.name); }) &&
            any_of(sel.tags, [&](const std::string& t) { return contains(group.tags, t); }) &&
            any_of(sel.owners, [&](const std::string& o) { return o == group.owner; });
        if (ok && !group.id.empty()) return true;
    }
    return false;
}

std::string format_time(std::int64_t now_ms, int offset_s, const std::string& fmt)
{
    const std::time_t t = static_cast<std::time_t>(now_ms / 1000 + offset_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[256];
    const auto n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
    return std::string(buf, n);
}

struct RenderInput {
    const State& state;
    const core::Event* event;         // null for a batch flush
    const Rule& rule;
    std::string_view member;          // the member the rule is about
    const std::vector<std::string>& members;
};

std::string display_name(const State& state, std::string_view id)
{
    const auto* m = state.member(id);
    return m && !m->name.empty() ? m->name : std::string(id);
}

std::string render(const Template& t, const RenderInput& in, std::vector<std::string>* mentions)
{
    std::string out;
    auto mention = [&](std::string_view id) {
        if (mentions && std::find(mentions->begin(), mentions->end(), id) == mentions->end()) mentions->emplace_back(id);
        return "@" + display_name(in.state, id);
    };
    for (const auto& p : t.parts()) {
        if (!p.is_var) { out += p.literal; continue; }
        std::string v;
        switch (p.var) {
        case Var::member_name: {
            // Unknown names stay empty (templates use `default:`); an external userid is no name.
            const auto* m = in.member.empty() ? nullptr : in.state.member(in.member);
            v = m ? m->name : "";
            break;
        }
        case Var::member_mention: v = in.member.empty() ? "" : mention(in.member); break;
        case Var::member_id: v = std::string(in.member); break;
        case Var::members_names:
            for (const auto& m : in.members) v += (v.empty() ? "" : "、") + display_name(in.state, m);
            break;
        case Var::members_mentions:
            for (const auto& m : in.members) v += (v.empty() ? "" : " ") + mention(m);
            break;
        case Var::members_count: v = std::to_string(in.members.size()); break;
        case Var::group_name: v = in.state.group.name; break;
        case Var::group_id: v = in.state.group.id; break;
        case Var::group_member_count: v = std::to_string(in.state.group.member_count); break;
        case Var::group_owner: v = in.state.group.owner; break;
        case Var::now:
            v = format_time(in.state.now_ms, in.state.utc_offset_s, p.date_format.empty() ? "%Y-%m-%d %H:%M" : p.date_format);
            break;
        case Var::event_state: v = in.event ? in.event->state : ""; break;
        case Var::event_scene:
            if (in.event && in.event->scene) {
                const int sc = *in.event->scene;
                if (in.event->kind == core::EventKind::member_joined) v = sc == 3 ? "qr_code" : sc == 0 ? "invitation" : std::to_string(sc);
                else v = sc == 1 ? "removed" : sc == 0 ? "left" : std::to_string(sc);
            }
            break;
        case Var::message_text: v = in.event ? in.event->text : ""; break;
        case Var::staff_id: v = in.event ? in.event->actor : ""; break;
        case Var::rule_id: v = in.rule.id; break;
        case Var::draw_id: case Var::draw_round: case Var::draw_keyword: case Var::draw_prizes: case Var::draw_closes:
        case Var::draw_commitment: case Var::draw_seed: case Var::draw_digest: case Var::draw_entries: case Var::draw_winners:
            break; // draw messages only (rules/draw.cpp); the loader keeps them out of rules
        }
        if (v.empty() && p.has_fallback) v = p.fallback;
        out += v;
    }
    return out;
}

bool has_tag(const State& state, std::string_view member, std::string_view tag)
{
    const auto* m = state.member(member);
    return m && contains(m->tags, tag);
}

// Turns a firing rule into actions and tag changes.
void emit(const Rule& rule, const RenderInput& in, const std::string& key_base,
          const std::string& tenant, const std::string& platform, const std::string& app,
          std::int64_t cause, Decision& d, Trace& trace)
{
    std::size_t produced = 0;
    for (std::size_t i = 0; i < rule.actions.size(); ++i) {
        const auto& spec = rule.actions[i];
        core::Action a;
        a.rule_id = rule.id;
        a.tenant = tenant;
        a.platform = platform;
        a.app = app;
        a.group_id = in.state.group.id;
        a.cause_event_id = cause;
        const std::string key = key_base + "/" + std::to_string(i);
        switch (spec.kind) {
        case ActionSpec::Kind::post:
            a.kind = core::ActionKind::post;
            a.text = render(spec.body, in, &a.mentions);
            a.attachments = spec.attachments;
            a.idempotency_key = key;
            d.actions.push_back(std::move(a));
            ++produced;
            break;
        case ActionSpec::Kind::reply:
            a.kind = core::ActionKind::reply;
            a.target = std::string(in.member);
            a.text = render(spec.body, in, &a.mentions);
            a.idempotency_key = key;
            d.actions.push_back(std::move(a));
            ++produced;
            break;
        case ActionSpec::Kind::welcome:
            if (!in.event || in.event->welcome_code.empty()) {
                trace.detail += (trace.detail.empty() ? "" : "; ") +
                                std::string("welcome skipped: the event carries no WelcomeCode");
                break;
            }
            a.kind = core::ActionKind::send_welcome;
            a.group_id.clear();
            a.target = std::string(in.member);
            a.staff = in.event->actor;
            a.welcome_code = in.event->welcome_code;
            // WeCom accepts the code for 20 s after the event; counted from the event's own time.
            a.not_after_ms = in.event->time * 1000 + 20'000;
            a.text = render(spec.body, in, nullptr);
            a.idempotency_key = key;
            d.actions.push_back(std::move(a));
            ++produced;
            break;
        case ActionSpec::Kind::assign_tag:
        case ActionSpec::Kind::remove_tag: {
            const bool add = spec.kind == ActionSpec::Kind::assign_tag;
            const auto& targets = in.members.empty() ? std::vector<std::string>{std::string(in.member)} : in.members;
            for (const auto& m : targets) {
                RenderInput one{in.state, in.event, rule, m, in.members};
                const auto tag = render(spec.body, one, nullptr);
                if (tag.empty() || has_tag(in.state, m, tag) == add) continue; // nothing to change
                core::Action t = a;
                t.kind = add ? core::ActionKind::assign_tag : core::ActionKind::remove_tag;
                t.target = m;
                t.text = tag;
                t.idempotency_key = key + "/" + m;
                d.tags.push_back(TagChange{m, tag, add, rule.id, in.event ? std::string(core::to_string(in.event->kind)) : "batch"});
                d.actions.push_back(std::move(t));
                ++produced;
            }
            break;
        }
        }
    }
    if (produced == 0 && trace.outcome == Trace::Outcome::fired) trace.outcome = Trace::Outcome::no_effect;
}

} // namespace

std::string format_time_at(std::int64_t ms, int utc_offset_s, const std::string& fmt) { return format_time(ms, utc_offset_s, fmt); }

namespace {

// The start of a message for the audit log, cut on a character boundary.
std::string excerpt_of(std::string_view text, std::size_t max_bytes = 120)
{
    if (text.size() <= max_bytes) return std::string(text);
    std::size_t n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    return std::string(text.substr(0, n)) + "…";
}

// A moderated rule fired for `members`: each one's offence number within the decay window
// picks the rung of the ladder; its steps become actions (unless dry_run) and an audit entry.
void moderate(const Rule& rule, const RenderInput& in, const std::vector<std::string>& members, const std::string& key_base,
              std::int64_t cause, Decision& d)
{
    const auto& m = rule.moderation;
    const auto& event = *in.event;
    for (const auto& member : members) {
        const auto* info = in.state.member(member);
        int prior = 0;
        if (info) {
            for (const auto at : info->strikes_ms) prior += at > in.state.now_ms - m.decay_ms ? 1 : 0;
        }
        ModerationEntry e;
        e.rule_id = rule.id;
        e.group_id = in.state.group.id;
        e.member = member;
        e.message_id = event.message_id;
        e.excerpt = excerpt_of(event.text);
        e.hits = rule.when.text;
        e.offence = prior + 1;
        e.dry_run = m.dry_run;
        const auto& rung = m.ladder[static_cast<std::size_t>(std::min<int>(e.offence, static_cast<int>(m.ladder.size()))) - 1];
        for (const auto st : rung) e.steps += (e.steps.empty() ? "" : "+") + std::string(to_string(st));
        if (!m.dry_run) {
            const auto base = key_base + "/moderate/" + member + "/";
            e.action_keys = base;
            auto action = [&](core::ActionKind kind, const std::string& suffix) {
                core::Action a;
                a.kind = kind;
                a.rule_id = rule.id;
                a.tenant = event.tenant;
                a.platform = event.platform;
                a.app = event.app;
                a.group_id = in.state.group.id;
                a.target = member;
                a.cause_event_id = cause;
                a.idempotency_key = base + suffix;
                return a;
            };
            for (const auto st : rung) {
                switch (st) {
                case Moderation::Step::warn: {
                    auto a = action(core::ActionKind::post, "warn");
                    RenderInput one{in.state, in.event, rule, member, {}};
                    a.text = m.warn.empty() ? "@" + (info && !info->name.empty() ? info->name : member) + " 请勿发送广告，多次违规将被移出群聊"
                                            : render(m.warn, one, &a.mentions);
                    if (m.warn.empty()) a.mentions.push_back(member);
                    d.actions.push_back(std::move(a));
                    break;
                }
                case Moderation::Step::recall:
                    if (!event.message_id.empty()) {
                        auto a = action(core::ActionKind::recall, "recall");
                        a.target = event.message_id;
                        a.text = "from " + member + ": " + e.excerpt;
                        d.actions.push_back(std::move(a));
                    }
                    break;
                case Moderation::Step::remove: {
                    auto a = action(core::ActionKind::remove_member, "remove");
                    a.text = "rule " + rule.id + ", offence " + std::to_string(e.offence) + ": " + e.excerpt;
                    d.actions.push_back(std::move(a));
                    break;
                }
                case Moderation::Step::blacklist:
                    d.blacklist_adds.emplace_back(member, "rule " + rule.id + ", offence " + std::to_string(e.offence));
                    break;
                }
            }
        }
        d.moderation.push_back(std::move(e));
    }
}

} // namespace

Decision evaluate(const RuleSet& rules, const core::Event& event, const State& state, const EvaluateOptions& options)
{
    Decision d;
    Trigger trigger{};
    if (!trigger_for(event.kind, trigger)) return d;

    // Leavers are taken out of any welcome still being gathered: nobody is welcomed after leaving.
    if (trigger == Trigger::member_left) {
        for (const auto& b : state.batches) {
            Batch nb = b;
            std::erase_if(nb.members, [&](const std::string& m) { return contains(event.members, m); });
            if (nb.members.size() == b.members.size()) continue;
            if (nb.members.empty()) d.batch_erases.push_back(std::move(nb));
            else d.batch_upserts.push_back(std::move(nb));
        }
    }

    Scratch& s = scratch();
    if (s.stamp.size() < rules.keyword_set_count) s.stamp.assign(rules.keyword_set_count, 0);
    if (++s.generation == 0) { // wrapped: old stamps could alias
        std::fill(s.stamp.begin(), s.stamp.end(), 0);
        s.generation = 1;
    }
    s.matched_sets.clear();
    s.matched_patterns.clear();
    s.atom_hits.clear();
    s.atoms_scanned = false;
    s.regex_ready = false;
    s.regex_set_ready = false;
    s.latin.reset();
    Context ctx{rules, event, state, s, options.explain};

    const auto ti = static_cast<std::size_t>(trigger);
    s.candidates.clear();
    if (trigger == Trigger::message) {
        s.keyword_text = normalized(event.text, Fold::keyword, s.keyword_buffer);
        auto mark = [&](std::uint32_t set) {
            if (s.stamp[set] == s.generation) return;
            s.stamp[set] = s.generation;
            s.matched_sets.push_back(set);
        };
        const std::vector<int>* atoms = rules.regex_set && rules.regex_set->gate ? &rules.regex_set->atom_number : nullptr;
        rules.keywords.scan(s.keyword_text, [&](std::uint32_t p) {
            if (options.explain) s.matched_patterns.push_back(p);
            for (auto set : rules.pattern_sets[p]) mark(set);
            if (atoms && (*atoms)[p] >= 0) s.atom_hits.push_back((*atoms)[p]);
        });
        s.atoms_scanned = true;
        if (!rules.exact_sets.empty()) {
            if (auto it = rules.exact_sets.find(s.keyword_text); it != rules.exact_sets.end()) {
                for (auto set : it->second) mark(set);
            }
        }
    }
    if (options.explain) {
        for (std::uint32_t i = 0; i < rules.rules.size(); ++i) {
            if (rules.rules[i].trigger == trigger) s.candidates.push_back(i);
        }
    } else {
        s.candidates = rules.unanchored[ti];
        bool added = false;
        if (!s.matched_sets.empty()) {
            for (auto set : s.matched_sets) {
                const auto& rs = rules.set_rules[set];
                s.candidates.insert(s.candidates.end(), rs.begin(), rs.end());
            }
            added = true;
        }
        if (trigger == Trigger::message && !rules.regex_rules.empty()) {
            ctx.regex_hit(0); // runs the set once
            for (const int hit : s.regex_hits) {
                const auto& rs = rules.regex_rules[static_cast<std::size_t>(hit)];
                s.candidates.insert(s.candidates.end(), rs.begin(), rs.end());
                added = added || !rs.empty();
            }
        }
        if (added) {
            std::sort(s.candidates.begin(), s.candidates.end());
            s.candidates.erase(std::unique(s.candidates.begin(), s.candidates.end()), s.candidates.end());
        }
    }

    // Who a rule is about: each joiner / leaver, the sender, the new contact.
    auto& subjects = s.subjects;
    subjects.clear();
    if (trigger == Trigger::member_joined || trigger == Trigger::member_left) subjects.assign(event.members.begin(), event.members.end());
    else if (trigger == Trigger::message) subjects.push_back(event.actor);
    else subjects.push_back(event.subject);

    for (const auto idx : s.candidates) {
        const Rule& rule = rules.rules[idx];
        Trace trace{rule.id};
        auto record = [&](Trace::Outcome o, std::string detail) {
            if (!options.explain && o != Trace::Outcome::fired && o != Trace::Outcome::batched &&
                o != Trace::Outcome::cooldown && o != Trace::Outcome::no_effect) {
                return;
            }
            trace.outcome = o;
            if (!detail.empty()) trace.detail = detail + (trace.detail.empty() ? "" : "; " + trace.detail);
            d.trace.push_back(std::move(trace));
        };
        if (trigger != Trigger::contact_added && !in_scope(rules, rule.all_groups, rule.selections, state.group)) {
            // Details are built only when they are kept: this path runs for every rule and message.
            if (options.explain) record(Trace::Outcome::out_of_scope, "group \"" + state.group.name + "\" is not in `in:`");
            continue;
        }
        std::vector<std::string> passing;
        std::string why_not;
        Trace::Outcome fail = Trace::Outcome::condition_false;
        bool reason_taken = false;
        for (const auto& m : subjects) {
            std::string why;
            // The first subject that fails gives the reason.
            if (rule.has_when && !holds(rule.when, ctx, m, options.explain ? &why : nullptr)) {
                if (!reason_taken && options.explain) why_not = "when: " + why;
                reason_taken = true;
                continue;
            }
            if (rule.has_unless && holds(rule.unless, ctx, m, nullptr)) {
                if (!reason_taken) {
                    fail = Trace::Outcome::unless_true;
                    if (options.explain) why_not = "unless: " + rule.unless.text + " was true";
                }
                reason_taken = true;
                continue;
            }
            passing.emplace_back(m);
        }
        if (passing.empty()) {
            if (options.explain) record(fail, why_not);
            continue;
        }
        if (rule.group_cooldown_ms) {
            auto it = state.cooldowns.find(group_cooldown_key(rule.id, state.group.id));
            if (it != state.cooldowns.end() && it->second > state.now_ms) {
                record(Trace::Outcome::cooldown, "group cooldown for " + std::to_string((it->second - state.now_ms + 999) / 1000) + " s more");
                continue;
            }
        }
        if (rule.member_cooldown_ms) {
            std::erase_if(passing, [&](const std::string& m) {
                auto it = state.cooldowns.find(member_cooldown_key(rule.id, state.group.id, m));
                return it != state.cooldowns.end() && it->second > state.now_ms;
            });
            if (passing.empty()) {
                record(Trace::Outcome::cooldown, "member cooldown");
                continue;
            }
        }
        std::string matched;
        if (options.explain) collect_matches(rule.when, ctx, matched);

        if (rule.batch_ms > 0 && trigger == Trigger::member_joined) {
            Batch b;
            const Batch* open = nullptr;
            for (const auto& ob : state.batches) if (ob.rule_id == rule.id) open = &ob;
            if (open) {
                b = *open;
            } else {
                b.rule_id = rule.id;
                b.group_id = state.group.id;
                b.tenant = event.tenant;
                b.platform = event.platform;
                b.app = event.app;
                b.opened_ms = state.now_ms;
                b.due_ms = state.now_ms + rule.batch_ms;
                b.origin = event.dedup_key;
            }
            for (const auto& m : passing) if (!contains(b.members, m)) b.members.push_back(m);
            // A join in the same event as a leave of someone else keeps the leave's removal.
            for (auto& up : d.batch_upserts) if (up.rule_id == b.rule_id) up = b;
            if (std::none_of(d.batch_upserts.begin(), d.batch_upserts.end(), [&](const Batch& x) { return x.rule_id == b.rule_id; })) {
                d.batch_upserts.push_back(b);
            }
            record(Trace::Outcome::batched, "welcome gathered until +" + std::to_string((b.due_ms - state.now_ms) / 1000) +
                                                " s (" + std::to_string(b.members.size()) + " member(s))");
        } else {
            RenderInput in{state, &event, rule, passing.front(),
                           trigger == Trigger::member_joined || trigger == Trigger::member_left ? passing : std::vector<std::string>{}};
            trace.outcome = Trace::Outcome::fired;
            emit(rule, in, event.tenant + "/" + event.dedup_key + "/" + rule.id, event.tenant, event.platform,
                 event.app, options.cause_event_id, d, trace);
            if (rule.moderated) moderate(rule, in, passing, event.tenant + "/" + event.dedup_key + "/" + rule.id, options.cause_event_id, d);
            if (rule.group_cooldown_ms) d.cooldowns.emplace_back(group_cooldown_key(rule.id, state.group.id), state.now_ms + rule.group_cooldown_ms);
            if (rule.member_cooldown_ms) {
                for (const auto& m : passing) {
                    d.cooldowns.emplace_back(member_cooldown_key(rule.id, state.group.id, m), state.now_ms + rule.member_cooldown_ms);
                }
            }
            record(trace.outcome, matched);
        }
        if (rule.stop) {
            d.stopped = true;
            break;
        }
    }
    return d;
}

bool selects(const RuleSet& rules, const Rule& rule, const GroupInfo& group)
{
    return in_scope(rules, rule.all_groups, rule.selections, group);
}

bool selects(const RuleSet& rules, const DrawSpec& draw, const GroupInfo& group)
{
    return in_scope(rules, draw.all_groups, draw.selections, group);
}

Decision plan_scheduled(const Rule& rule, const State& state, const std::string& slot_key, const std::string& tenant,
                        const std::string& platform, const std::string& app)
{
    Decision d;
    Trace trace{rule.id, Trace::Outcome::fired, "slot " + slot_key};
    const std::vector<std::string> none;
    RenderInput in{state, nullptr, rule, {}, none};
    emit(rule, in, tenant + "/schedule/" + rule.id + "/" + slot_key + "/" + state.group.id, tenant, platform, app, 0, d, trace);
    d.trace.push_back(std::move(trace));
    return d;
}

Decision flush_due(const RuleSet& rules, const State& state)
{
    Decision d;
    for (const auto& b : state.batches) {
        if (b.due_ms > state.now_ms) continue;
        d.batch_erases.push_back(b);
        const Rule* rule = rules.find(b.rule_id);
        Trace trace{b.rule_id};
        if (!rule || rule->trigger != Trigger::member_joined) {
            trace.outcome = Trace::Outcome::no_effect;
            trace.detail = "rule no longer exists; " + std::to_string(b.members.size()) + " member(s) not welcomed";
            d.trace.push_back(std::move(trace));
            continue;
        }
        if (b.members.empty()) continue;
        if (rule->group_cooldown_ms) {
            auto it = state.cooldowns.find(group_cooldown_key(rule->id, state.group.id));
            if (it != state.cooldowns.end() && it->second > state.now_ms) {
                trace.outcome = Trace::Outcome::cooldown;
                d.trace.push_back(std::move(trace));
                continue;
            }
            d.cooldowns.emplace_back(group_cooldown_key(rule->id, state.group.id), state.now_ms + rule->group_cooldown_ms);
        }
        RenderInput in{state, nullptr, *rule, b.members.front(), b.members};
        trace.outcome = Trace::Outcome::fired;
        emit(*rule, in, b.tenant + "/batch/" + b.group_id + "/" + rule->id + "/" + b.origin, b.tenant, b.platform, b.app, 0,
             d, trace);
        trace.detail = std::to_string(b.members.size()) + " member(s) welcomed together";
        d.trace.push_back(std::move(trace));
    }
    return d;
}

} // namespace qunbot::rules
