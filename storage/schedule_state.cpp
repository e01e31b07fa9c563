#include "storage/schedule_state.hpp"

#include "storage/outbox.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/VariadicBind.h>

#include <algorithm>
#include <tuple>
#include <unordered_map>

namespace qunbot::storage {

std::int64_t note_schedule(SQLite::Database& db, const std::string& rule_id, const std::string& timing, std::int64_t now_ms)
{
    SQLite::Statement up(db, "INSERT INTO schedules (rule_id, timing, since_ms) VALUES (?1, ?2, ?3) ON CONFLICT (rule_id) DO UPDATE"
                             " SET since_ms = CASE WHEN timing = ?2 THEN since_ms ELSE ?3 END, timing = ?2");
    SQLite::bind(up, rule_id, timing, now_ms);
    up.exec();
    SQLite::Statement st(db, "SELECT since_ms FROM schedules WHERE rule_id = ?");
    st.bind(1, rule_id);
    st.executeStep();
    return st.getColumn(0).getInt64();
}

std::optional<std::int64_t> last_slot_ms(SQLite::Database& db, const std::string& rule_id)
{
    SQLite::Statement st(db, "SELECT max(at_ms) FROM schedule_slots WHERE rule_id = ? AND status <> 'manual'");
    st.bind(1, rule_id);
    if (st.executeStep() && !st.getColumn(0).isNull()) return st.getColumn(0).getInt64();
    return std::nullopt;
}

bool record_slot(SQLite::Database& db, const SlotRecord& slot, const std::vector<core::Action>& actions, std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO schedule_slots (rule_id, slot, at_ms, fired_ms, status, groups, actions)"
                             " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING");
    SQLite::bind(st, slot.rule_id, slot.slot, slot.at_ms,
                 now_ms, slot.status, slot.groups, static_cast<std::int64_t>(actions.size()));
    if (st.exec() == 0) return false;
    enqueue_actions(db, actions, now_ms);
    return true;
}

std::vector<SlotRecord> slot_history(SQLite::Database& db, const std::string& rule_id, std::size_t limit)
{
    SQLite::Statement st(db, "SELECT rule_id, slot, at_ms, fired_ms, status, groups, actions FROM schedule_slots WHERE rule_id = ?"
                             " ORDER BY at_ms DESC, fired_ms DESC LIMIT ?");
    SQLite::bind(st, rule_id, static_cast<std::int64_t>(limit));
    std::vector<SlotRecord> out;
    while (st.executeStep()) {
        out.push_back({st.getColumn(0).getString(), st.getColumn(1).getString(), st.getColumn(2).getInt64(), st.getColumn(3).getInt64(),
                       st.getColumn(4).getString(), st.getColumn(5).getInt64(), st.getColumn(6).getInt64()});
    }
    return out;
}

std::vector<ScheduleTarget> schedule_targets(SQLite::Database& db)
{
    std::vector<ScheduleTarget> out;
    std::unordered_map<std::string, std::size_t> index; // tenant \x1f group → position
    SQLite::Statement g(db, "SELECT tenant, group_id, app, name, owner FROM chat_groups WHERE status = 'active' ORDER BY tenant, group_id");
    while (g.executeStep()) {
        ScheduleTarget t;
        t.tenant = g.getColumn(0).getString();
        t.group.id = g.getColumn(1).getString();
        t.app = g.getColumn(2).getString();
        t.group.name = g.getColumn(3).getString();
        t.group.owner = g.getColumn(4).getString();
        index.emplace(t.tenant + '\x1f' + t.group.id, out.size());
        out.push_back(std::move(t));
    }
    SQLite::Statement tags(db, "SELECT tenant, group_id, tag FROM group_tags");
    while (tags.executeStep()) {
        auto it = index.find(tags.getColumn(0).getString() + '\x1f' + tags.getColumn(1).getString());
        if (it != index.end()) out[it->second].group.tags.push_back(tags.getColumn(2).getString());
    }
    SQLite::Statement counts(db, "SELECT tenant, group_id, count(*) FROM group_members WHERE present = 1 GROUP BY tenant, group_id");
    while (counts.executeStep()) {
        auto it = index.find(counts.getColumn(0).getString() + '\x1f' + counts.getColumn(1).getString());
        if (it != index.end()) out[it->second].group.member_count = counts.getColumn(2).getInt();
    }
    return out;
}

std::vector<core::Action> plan_slot(const rules::RuleSet& rules, const rules::Rule& rule, const std::vector<ScheduleTarget>& targets,
                                    const std::string& slot_key, std::int64_t at_ms, int utc_offset_s, std::size_t& groups)
{
    std::vector<core::Action> out;
    groups = 0;
    rules::State state;
    state.now_ms = at_ms;
    state.utc_offset_s = utc_offset_s;
    // Owner by owner: delivery reads due rows in id order, so each owner's groups arrive
    // together and become one mass-send task for them to confirm, not one per delivery round.
    std::vector<const ScheduleTarget*> order;
    order.reserve(targets.size());
    for (const auto& t : targets) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const ScheduleTarget* a, const ScheduleTarget* b) {
        return std::tie(a->tenant, a->app, a->group.owner, a->group.id) < std::tie(b->tenant, b->app, b->group.owner, b->group.id);
    });
    for (const auto* tp : order) {
        const auto& t = *tp;
        if (!rules::selects(rules, rule, t.group)) continue;
        ++groups;
        state.group = t.group;
        auto d = rules::plan_scheduled(rule, state, slot_key, t.tenant, "wecom", t.app);
        // Jitter: the same group always gets the same offset within the slot's spread.
        std::int64_t offset = 0;
        if (rule.schedule.jitter_ms > 0) {
            std::uint64_t h = 1469598103934665603ull;
            for (const char c : t.group.id) {
                h ^= static_cast<unsigned char>(c);
                h *= 1099511628211ull;
            }
            offset = static_cast<std::int64_t>(h % static_cast<std::uint64_t>(rule.schedule.jitter_ms));
        }
        for (auto& a : d.actions) {
            if (offset > 0) a.not_before_ms = at_ms + offset;
            out.push_back(std::move(a));
        }
    }
    return out;
}

} // namespace qunbot::storage
