#include "storage/rule_state.hpp"

#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "rules/text.hpp"
#include "storage/journal.hpp"
#include "storage/outbox.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/VariadicBind.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace qunbot::storage {

StateReader::StateReader(const std::string& path) : owned_(open_for_reading(path)), db_(owned_.get()) {}
StateReader::StateReader(SQLite::Database& db) : db_(&db) {}
StateReader::~StateReader() = default;

SQLite::Statement& StateReader::prepared(const char* sql)
{
    // Preparing costs more than running these small lookups: each is prepared once per reader.
    auto& slot = statements_[sql];
    if (!slot) slot = std::make_unique<SQLite::Statement>(*db_, sql);
    return *slot;
}

namespace {

// Resets a cached statement after use, also when a step throws.
struct Rewind {
    SQLite::Statement& st;
    ~Rewind() { st.tryReset(); }
};

std::vector<std::string> tags_of(SQLite::Statement& st, const std::string& tenant, const std::string& id)
{
    std::vector<std::string> out;
    const Rewind rewind{st};
    st.bind(1, tenant);
    st.bind(2, id);
    while (st.executeStep()) out.push_back(st.getColumn(0).getString());
    return out;
}

} // namespace

void StateReader::fill_member(rules::State& state, const std::string& tenant, const std::string& group_id,
                              const std::string& id, const rules::RuleSet* rules)
{
    const bool activity = rules && rules->any_activity;
    if (id.empty() || state.members.contains(id)) return;
    rules::MemberInfo m;
    m.id = id;
    {
        auto& st = prepared("SELECT name FROM people WHERE tenant = ? AND member_id = ?");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, id);
        if (st.executeStep()) m.name = st.getColumn(0).getString();
    }
    m.tags = tags_of(prepared("SELECT tag FROM member_tags WHERE tenant = ? AND member_id = ? ORDER BY tag"), tenant, id);
    {
        auto& st = prepared("SELECT 1 FROM blacklist WHERE tenant = ? AND member_id = ?");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, id);
        m.blacklisted = st.executeStep();
    }
    if (rules && !group_id.empty() && rules->any_newcomer) {
        auto& st = prepared("SELECT joined_at FROM group_members WHERE tenant = ? AND group_id = ? AND member_id = ? AND present = 1");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, group_id);
        st.bind(3, id);
        if (st.executeStep() && !st.getColumn(0).isNull()) m.joined_ms = st.getColumn(0).getInt64() * 1000;
        // "First N messages": counted only for members who joined in the last 30 days (an old
        // member's count would scan the group's whole history, and is not a newcomer's anyway).
        if (m.joined_ms > 0 && state.now_ms - m.joined_ms < 30 * 86'400'000LL) {
            auto& c = prepared("SELECT count(*) FROM (SELECT 1 FROM activity WHERE group_id = ? AND at >= ? AND tenant = ? AND member_id = ?"
                               " AND kind = 'message' LIMIT 101)");
            const Rewind rewind_c{c};
            c.bind(1, group_id);
            c.bind(2, m.joined_ms / 1000);
            c.bind(3, tenant);
            c.bind(4, id);
            if (c.executeStep()) m.messages_since_join = c.getColumn(0).getInt();
        }
    }
    if (rules && !group_id.empty() && rules->flood_window_ms > 0) {
        auto& st = prepared("SELECT at FROM activity WHERE group_id = ? AND at >= ? AND tenant = ? AND member_id = ? AND kind = 'message'"
                            " ORDER BY at DESC LIMIT 200");
        const Rewind rewind_st{st};
        st.bind(1, group_id);
        st.bind(2, (state.now_ms - rules->flood_window_ms) / 1000);
        st.bind(3, tenant);
        st.bind(4, id);
        while (st.executeStep()) m.recent_messages_ms.push_back(st.getColumn(0).getInt64() * 1000);
    }
    {
        // Offences that count for strike ladders: not undone, not dry runs; the newest 64.
        auto& st = prepared("SELECT at_ms FROM moderation_log WHERE tenant = ? AND member_id = ? AND dry_run = 0 AND undone_ms IS NULL"
                            " ORDER BY at_ms DESC LIMIT 64");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, id);
        while (st.executeStep()) m.strikes_ms.push_back(st.getColumn(0).getInt64());
    }
    if (activity && !group_id.empty()) {
        // Days are local calendar days; bit 0 is today.
        const std::int64_t today = (state.now_ms / 1000 + state.utc_offset_s) / 86400;
        auto& st = prepared("SELECT DISTINCT (hour + ?1) / 86400 FROM member_hours WHERE tenant = ?2 AND group_id = ?3"
                            " AND member_id = ?4 AND hour >= ?5");
        const Rewind rewind_st{st};
        st.bind(1, state.utc_offset_s);
        st.bind(2, tenant);
        st.bind(3, group_id);
        st.bind(4, id);
        st.bind(5, static_cast<std::int64_t>((today - 63) * 86400 - state.utc_offset_s));
        while (st.executeStep()) {
            const auto ago = today - st.getColumn(0).getInt64();
            if (ago >= 0 && ago < 64) m.active_days |= 1ull << ago;
        }
    }
    state.members.emplace(id, std::move(m));
}

rules::State StateReader::load_group(const std::string& tenant, const std::string& group_id, const rules::RuleSet&,
                                     std::int64_t now_ms, int utc_offset_s)
{
    rules::State s;
    s.now_ms = now_ms;
    s.utc_offset_s = utc_offset_s;
    s.group.id = group_id;
    if (group_id.empty()) return s;
    {
        auto& st = prepared("SELECT name, owner FROM chat_groups WHERE tenant = ? AND group_id = ?");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, group_id);
        if (st.executeStep()) {
            s.group.name = st.getColumn(0).getString();
            s.group.owner = st.getColumn(1).getString();
        }
    }
    {
        auto& st = prepared("SELECT count(*) FROM group_members WHERE tenant = ? AND group_id = ? AND present = 1");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, group_id);
        if (st.executeStep()) s.group.member_count = st.getColumn(0).getInt();
    }
    s.group.tags = tags_of(prepared("SELECT tag FROM group_tags WHERE tenant = ? AND group_id = ? ORDER BY tag"), tenant, group_id);
    {
        auto& st = prepared("SELECT rule_id, platform, app, members, opened_ms, due_ms, origin FROM welcome_batches"
                                   " WHERE tenant = ? AND group_id = ?");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, group_id);
        while (st.executeStep()) {
            rules::Batch b;
            b.rule_id = st.getColumn(0).getString();
            b.group_id = group_id;
            b.tenant = tenant;
            b.platform = st.getColumn(1).getString();
            b.app = st.getColumn(2).getString();
            b.members = nlohmann::json::parse(st.getColumn(3).getString()).get<std::vector<std::string>>();
            b.opened_ms = st.getColumn(4).getInt64();
            b.due_ms = st.getColumn(5).getInt64();
            b.origin = st.getColumn(6).getString();
            s.batches.push_back(std::move(b));
        }
    }
    {
        auto& st = prepared("SELECT rule_id, member_id, until_ms FROM cooldowns WHERE tenant = ? AND group_id = ? AND until_ms > ?");
        const Rewind rewind_st{st};
        st.bind(1, tenant);
        st.bind(2, group_id);
        st.bind(3, now_ms);
        while (st.executeStep()) {
            const auto rule = st.getColumn(0).getString();
            const auto member = st.getColumn(1).getString();
            s.cooldowns[member.empty() ? rules::group_cooldown_key(rule, group_id) : rules::member_cooldown_key(rule, group_id, member)] =
                st.getColumn(2).getInt64();
        }
    }
    for (const auto& b : s.batches) {
        for (const auto& m : b.members) fill_member(s, tenant, group_id, m, nullptr);
    }
    return s;
}

rules::State StateReader::load(const core::Event& event, const rules::RuleSet& rules, std::int64_t now_ms, int utc_offset_s)
{
    auto s = load_group(event.tenant, event.group_id, rules, now_ms, utc_offset_s);
    if (event.group_id.empty()) {
        // 1:1 events: cooldowns are kept under the empty group id.
        auto& st = prepared("SELECT rule_id, member_id, until_ms FROM cooldowns WHERE tenant = ? AND group_id = '' AND until_ms > ?");
        const Rewind rewind_st{st};
        st.bind(1, event.tenant);
        st.bind(2, now_ms);
        while (st.executeStep()) {
            const auto rule = st.getColumn(0).getString();
            const auto member = st.getColumn(1).getString();
            s.cooldowns[member.empty() ? rules::group_cooldown_key(rule, "") : rules::member_cooldown_key(rule, "", member)] =
                st.getColumn(2).getInt64();
        }
    }
    for (const auto& m : event.members) fill_member(s, event.tenant, event.group_id, m, &rules);
    fill_member(s, event.tenant, event.group_id, event.actor, &rules);
    fill_member(s, event.tenant, event.group_id, event.subject, &rules);
    if (rules.repeat_window_ms > 0 && event.kind == core::EventKind::message && !event.group_id.empty() && !event.actor.empty()) {
        // Where the sender posted this same text lately (this message included: the journal wrote it).
        const auto hash = rules::text_fingerprint(event.text);
        auto it = s.members.find(event.actor);
        if (!hash.empty() && it != s.members.end()) {
            auto& st = prepared("SELECT group_id, at FROM activity WHERE tenant = ? AND text_hash = ? AND at >= ? AND member_id = ? LIMIT 500");
            const Rewind rewind_st{st};
            st.bind(1, event.tenant);
            st.bind(2, hash);
            st.bind(3, (now_ms - rules.repeat_window_ms) / 1000);
            st.bind(4, event.actor);
            while (st.executeStep()) it->second.same_text.emplace_back(st.getColumn(0).getString(), st.getColumn(1).getInt64() * 1000);
        }
    }
    return s;
}

std::vector<rules::Batch> StateReader::open_batches()
{
    std::vector<rules::Batch> out;
    auto& st = prepared("SELECT tenant, group_id, rule_id, due_ms FROM welcome_batches ORDER BY due_ms");
        const Rewind rewind_st{st};
    while (st.executeStep()) {
        rules::Batch b;
        b.tenant = st.getColumn(0).getString();
        b.group_id = st.getColumn(1).getString();
        b.rule_id = st.getColumn(2).getString();
        b.due_ms = st.getColumn(3).getInt64();
        out.push_back(std::move(b));
    }
    return out;
}

std::vector<std::pair<std::int64_t, core::Event>> StateReader::unprocessed(std::int64_t after)
{
    std::vector<std::pair<std::int64_t, core::Event>> out;
    auto& st = prepared("SELECT id, event_json FROM inbox WHERE id > ? AND kind IN"
                               " ('member_joined', 'member_left', 'message', 'contact_added', 'contact_half_added')"
                               " AND id NOT IN (SELECT event_id FROM processed WHERE event_id > ?1) ORDER BY id");
        const Rewind rewind_st{st};
    st.bind(1, after);
    while (st.executeStep()) out.emplace_back(st.getColumn(0).getInt64(), decode_event(st.getColumn(1).getString()));
    return out;
}

std::int64_t StateReader::dispatch_cursor()
{
    auto& st = prepared("SELECT value FROM meta WHERE key = 'dispatch_cursor'");
        const Rewind rewind_st{st};
    return st.executeStep() ? std::stoll(st.getColumn(0).getString()) : 0;
}

std::int64_t StateReader::last_event_id()
{
    auto& st = prepared("SELECT coalesce(max(id), 0) FROM inbox");
        const Rewind rewind_st{st};
    return st.executeStep() ? st.getColumn(0).getInt64() : 0;
}

void save_good_rules(SQLite::Database& db, const std::vector<std::pair<std::string, std::string>>& sources)
{
    SQLite::Statement st(db, "INSERT INTO meta (key, value) VALUES ('rules_last_good', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    st.bind(1, nlohmann::json(sources).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    st.exec();
}

std::vector<std::pair<std::string, std::string>> load_good_rules(SQLite::Database& db)
{
    SQLite::Statement st(db, "SELECT value FROM meta WHERE key = 'rules_last_good'");
    if (!st.executeStep()) return {};
    return nlohmann::json::parse(st.getColumn(0).getString()).get<std::vector<std::pair<std::string, std::string>>>();
}

void set_dispatch_cursor(SQLite::Database& db, std::int64_t id)
{
    SQLite::Statement st(db, "INSERT INTO meta (key, value) VALUES ('dispatch_cursor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    st.bind(1, std::to_string(id));
    st.exec();
}

namespace {

void record_tag(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& tag, bool add,
                const std::string& source, const std::string& rule_id, const std::string& reason, std::int64_t now_ms, bool& changed)
{
    if (add) {
        SQLite::Statement st(db, "INSERT INTO member_tags (tenant, member_id, tag, since_ms, source, rule_id, reason)"
                                 " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING");
        st.bind(1, tenant);
        st.bind(2, member);
        st.bind(3, tag);
        st.bind(4, now_ms);
        st.bind(5, source);
        st.bind(6, rule_id);
        st.bind(7, reason);
        changed = st.exec() > 0;
    } else {
        SQLite::Statement st(db, "DELETE FROM member_tags WHERE tenant = ? AND member_id = ? AND tag = ?");
        st.bind(1, tenant);
        st.bind(2, member);
        st.bind(3, tag);
        changed = st.exec() > 0;
    }
    if (!changed) return;
    SQLite::Statement h(db, "INSERT INTO tag_history (at_ms, tenant, subject, tag, added, source, rule_id, reason) VALUES (?,?,?,?,?,?,?,?)");
    h.bind(1, now_ms);
    h.bind(2, tenant);
    h.bind(3, member);
    h.bind(4, tag);
    h.bind(5, add ? 1 : 0);
    h.bind(6, source);
    h.bind(7, rule_id);
    h.bind(8, reason);
    h.exec();
}

// Splits a cooldown key back into (rule, group, member); see rules::group_cooldown_key.
void split_key(const std::string& key, std::string& rule, std::string& group, std::string& member)
{
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= key.size(); ++i) {
        if (i == key.size() || key[i] == '\x1f') {
            parts.push_back(key.substr(start, i - start));
            start = i + 1;
        }
    }
    rule = parts.size() > 1 ? parts[1] : "";
    group = parts.size() > 2 ? parts[2] : "";
    member = parts.size() > 3 ? parts[3] : "";
}

} // namespace

void apply_decision(SQLite::Database& db, const rules::Decision& d, const std::string& tenant, std::int64_t event_id,
                    std::int64_t now_ms, const std::string& rules_version)
{
    if (event_id > 0) {
        SQLite::Statement st(db, "INSERT INTO processed (event_id, at_ms, rules) VALUES (?,?,?) ON CONFLICT DO NOTHING");
        st.bind(1, event_id);
        st.bind(2, now_ms);
        st.bind(3, rules_version);
        // Already processed (a replay after a crash between commit and acknowledgement): the
        // first decision stands and nothing is written twice.
        if (st.exec() == 0) return;
    }
    for (const auto& b : d.batch_erases) {
        SQLite::Statement st(db, "DELETE FROM welcome_batches WHERE tenant = ? AND group_id = ? AND rule_id = ?");
        st.bind(1, b.tenant.empty() ? tenant : b.tenant);
        st.bind(2, b.group_id);
        st.bind(3, b.rule_id);
        st.exec();
    }
    for (const auto& b : d.batch_upserts) {
        SQLite::Statement st(db, "INSERT INTO welcome_batches (tenant, group_id, rule_id, platform, app, members, opened_ms, due_ms, origin)"
                                 " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (tenant, group_id, rule_id) DO UPDATE SET"
                                 " members = excluded.members");
        st.bind(1, b.tenant.empty() ? tenant : b.tenant);
        st.bind(2, b.group_id);
        st.bind(3, b.rule_id);
        st.bind(4, b.platform);
        st.bind(5, b.app);
        st.bind(6, nlohmann::json(b.members).dump());
        st.bind(7, b.opened_ms);
        st.bind(8, b.due_ms);
        st.bind(9, b.origin);
        st.exec();
    }
    for (const auto& [key, until] : d.cooldowns) {
        std::string rule, group, member;
        split_key(key, rule, group, member);
        SQLite::Statement st(db, "INSERT INTO cooldowns (tenant, group_id, member_id, rule_id, until_ms) VALUES (?,?,?,?,?)"
                                 " ON CONFLICT DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)");
        st.bind(1, tenant);
        st.bind(2, group);
        st.bind(3, member);
        st.bind(4, rule);
        st.bind(5, until);
        st.exec();
    }
    for (const auto& t : d.tags) {
        bool changed = false;
        record_tag(db, tenant, t.member, t.tag, t.add, "rule", t.rule_id, t.reason, now_ms, changed);
    }
    for (const auto& e : d.moderation) {
        SQLite::Statement st(db, "INSERT INTO moderation_log (at_ms, tenant, group_id, member_id, message_id, excerpt, rule_id, hits, offence,"
                                 " steps, dry_run, event_id, action_keys) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
        SQLite::bind(st, now_ms, tenant, e.group_id, e.member, e.message_id, e.excerpt, e.rule_id, e.hits, e.offence, e.steps, e.dry_run ? 1 : 0,
                     event_id, e.action_keys);
        st.exec();
    }
    for (const auto& [member, reason] : d.blacklist_adds) blacklist_add(db, tenant, member, reason, now_ms, "rule");
    enqueue_actions(db, d.actions, now_ms);
    // Expired cooldowns are dead weight; dropping a few per decision keeps the table small.
    SQLite::Statement prune(db, "DELETE FROM cooldowns WHERE rowid IN (SELECT rowid FROM cooldowns WHERE until_ms < ? LIMIT 16)");
    prune.bind(1, now_ms);
    prune.exec();
}

bool set_manual_tag(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& tag, bool add,
                    const std::string& reason, std::int64_t now_ms)
{
    bool changed = false;
    record_tag(db, tenant, member, tag, add, "manual", "", reason, now_ms, changed);
    return changed;
}

bool set_group_tag(SQLite::Database& db, const std::string& tenant, const std::string& group_id, const std::string& tag, bool add,
                   std::int64_t now_ms)
{
    if (add) {
        SQLite::Statement st(db, "INSERT INTO group_tags (tenant, group_id, tag, since_ms) VALUES (?,?,?,?) ON CONFLICT DO NOTHING");
        st.bind(1, tenant);
        st.bind(2, group_id);
        st.bind(3, tag);
        st.bind(4, now_ms);
        return st.exec() > 0;
    }
    SQLite::Statement st(db, "DELETE FROM group_tags WHERE tenant = ? AND group_id = ? AND tag = ?");
    st.bind(1, tenant);
    st.bind(2, group_id);
    st.bind(3, tag);
    return st.exec() > 0;
}

void set_member_name(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& name,
                     std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO people (tenant, member_id, name, updated_ms) VALUES (?,?,?,?)"
                             " ON CONFLICT DO UPDATE SET name = excluded.name, updated_ms = excluded.updated_ms");
    st.bind(1, tenant);
    st.bind(2, member);
    st.bind(3, name);
    st.bind(4, now_ms);
    st.exec();
}

std::vector<TagRow> list_tags(SQLite::Database& db, const std::string& tenant, const std::string& member)
{
    std::vector<TagRow> out;
    SQLite::Statement st(db, "SELECT member_id, tag, since_ms, source, rule_id, reason FROM member_tags WHERE tenant = ?"
                             " AND (? = '' OR member_id = ?2) ORDER BY member_id, tag");
    st.bind(1, tenant);
    st.bind(2, member);
    while (st.executeStep()) {
        out.push_back(TagRow{st.getColumn(0).getString(), st.getColumn(1).getString(), st.getColumn(2).getInt64(),
                             st.getColumn(3).getString(), st.getColumn(4).getString(), st.getColumn(5).getString()});
    }
    return out;
}

std::vector<std::string> outbox_actions(SQLite::Database& db)
{
    std::vector<std::string> out;
    SQLite::Statement st(db, "SELECT action_json FROM outbox ORDER BY id");
    while (st.executeStep()) out.push_back(st.getColumn(0).getString());
    return out;
}

} // namespace qunbot::storage
