#include "storage/outbox.hpp"

#include "storage/rule_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/VariadicBind.h>

#include <set>
#include <sstream>

namespace qunbot::storage {

namespace {

constexpr const char* row_columns =
    "id, tenant, platform, app, kind, rule_id, group_id, target, action_json, cause_event_id, created_ms, not_after_ms,"
    " status, attempts, next_try_ms, last_error, result, rate_keys, updated_ms";

OutboxRow read_row(SQLite::Statement& st)
{
    OutboxRow r;
    r.id = st.getColumn(0).getInt64();
    auto& a = r.action;
    r.readable = a.from_json(st.getColumn(8).getString());
    a.tenant = st.getColumn(1).getString();
    a.platform = st.getColumn(2).getString();
    a.app = st.getColumn(3).getString();
    core::ActionKind kind{};
    if (core::action_kind_from_string(st.getColumn(4).getString(), kind)) a.kind = kind;
    a.rule_id = st.getColumn(5).getString();
    a.group_id = st.getColumn(6).getString();
    a.target = st.getColumn(7).getString();
    a.cause_event_id = st.getColumn(9).getInt64();
    r.created_ms = st.getColumn(10).getInt64();
    a.not_after_ms = st.getColumn(11).getInt64();
    r.status = st.getColumn(12).getString();
    r.attempts = st.getColumn(13).getInt();
    r.next_try_ms = st.getColumn(14).getInt64();
    r.last_error = st.getColumn(15).getString();
    r.result = st.getColumn(16).getString();
    r.rate_keys = st.getColumn(17).getString();
    r.updated_ms = st.getColumn(18).getInt64();
    return r;
}

std::vector<OutboxRow> read_rows(SQLite::Statement& st)
{
    std::vector<OutboxRow> out;
    while (st.executeStep()) out.push_back(read_row(st));
    return out;
}

std::string join(const std::vector<std::string>& v, char sep)
{
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : std::string(1, sep)) + s;
    return out;
}

} // namespace

std::vector<OutboxRow> due_outbox(SQLite::Database& db, std::int64_t now_ms, std::size_t limit)
{
    SQLite::Statement st(db, std::string("SELECT ") + row_columns +
                                 " FROM outbox WHERE status IN ('pending', 'failed') AND next_try_ms <= ? ORDER BY next_try_ms, id LIMIT ?");
    SQLite::bind(st, now_ms, static_cast<std::int64_t>(limit));
    return read_rows(st);
}

std::optional<std::int64_t> next_due(SQLite::Database& db)
{
    SQLite::Statement st(db, "SELECT min(next_try_ms) FROM outbox WHERE status IN ('pending', 'failed')");
    if (st.executeStep() && !st.getColumn(0).isNull()) return st.getColumn(0).getInt64();
    return std::nullopt;
}

std::vector<OutboxRow> list_outbox(SQLite::Database& db, const std::string& status, std::size_t limit)
{
    SQLite::Statement st(db, std::string("SELECT ") + row_columns + " FROM outbox WHERE (?1 = '' OR status = ?1) ORDER BY id DESC LIMIT ?2");
    SQLite::bind(st, status, static_cast<std::int64_t>(limit));
    return read_rows(st);
}

std::optional<OutboxRow> get_outbox(SQLite::Database& db, std::int64_t id)
{
    SQLite::Statement st(db, std::string("SELECT ") + row_columns + " FROM outbox WHERE id = ?");
    st.bind(1, id);
    if (st.executeStep()) return read_row(st);
    return std::nullopt;
}

std::vector<OutboxRow> in_flight_outbox(SQLite::Database& db)
{
    SQLite::Statement st(db, std::string("SELECT ") + row_columns + " FROM outbox WHERE status = 'in_flight' ORDER BY id");
    return read_rows(st);
}

std::vector<std::pair<std::string, std::int64_t>> recent_rate_keys(SQLite::Database& db, std::int64_t since_ms)
{
    SQLite::Statement st(db, "SELECT rate_keys, updated_ms FROM outbox WHERE updated_ms > ? AND rate_keys <> ''"
                             " AND status IN ('done', 'in_flight', 'check')");
    st.bind(1, since_ms);
    std::vector<std::pair<std::string, std::int64_t>> out;
    while (st.executeStep()) {
        std::istringstream keys(st.getColumn(0).getString());
        const auto at = st.getColumn(1).getInt64();
        for (std::string k; keys >> k;) out.emplace_back(k, at);
    }
    return out;
}

std::vector<std::pair<std::string, std::int64_t>> outbox_counts(SQLite::Database& db)
{
    SQLite::Statement st(db, "SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status");
    std::vector<std::pair<std::string, std::int64_t>> out;
    while (st.executeStep()) out.emplace_back(st.getColumn(0).getString(), st.getColumn(1).getInt64());
    return out;
}

void mark_in_flight(SQLite::Database& db, std::int64_t id, std::int64_t now_ms, const std::string& rate_keys)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, updated_ms = ?, rate_keys = ?"
                             " WHERE id = ?");
    SQLite::bind(st, now_ms, rate_keys, id);
    st.exec();
}

void mark_outbox(SQLite::Database& db, std::int64_t id, const std::string& status, std::int64_t now_ms, std::int64_t next_try_ms,
                 const std::string& last_error, const std::string& result)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = ?, updated_ms = ?, next_try_ms = ?,"
                             " last_error = CASE WHEN ? <> '' THEN ? ELSE last_error END, result = ? WHERE id = ?");
    SQLite::bind(st, status, now_ms, next_try_ms, last_error, last_error, result, id);
    st.exec();
}

void defer_outbox(SQLite::Database& db, std::int64_t id, std::int64_t next_try_ms)
{
    SQLite::Statement st(db, "UPDATE outbox SET next_try_ms = ? WHERE id = ? AND status IN ('pending', 'failed')");
    SQLite::bind(st, next_try_ms, id);
    st.exec();
}

bool retry_outbox(SQLite::Database& db, std::int64_t id, std::int64_t now_ms)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = 'pending', next_try_ms = 0, updated_ms = ?"
                             " WHERE id = ? AND status IN ('failed', 'dead', 'check', 'skipped')");
    SQLite::bind(st, now_ms, id);
    return st.exec() > 0;
}

bool drop_outbox(SQLite::Database& db, std::int64_t id, std::int64_t now_ms)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = 'dropped', updated_ms = ? WHERE id = ? AND status NOT IN ('done', 'dropped')");
    SQLite::bind(st, now_ms, id);
    return st.exec() > 0;
}

void enqueue_actions(SQLite::Database& db, const std::vector<core::Action>& actions, std::int64_t now_ms)
{
    if (actions.empty()) return;
    // One prepared statement for all of them: a schedule slot can bring 100,000.
    SQLite::Statement st(db, "INSERT INTO outbox (idempotency_key, tenant, platform, app, kind, rule_id, group_id, target,"
                             " action_json, cause_event_id, created_ms, not_after_ms, next_try_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                             " ON CONFLICT (idempotency_key) DO NOTHING");
    for (const auto& a : actions) {
        SQLite::bind(st, a.idempotency_key, a.tenant, a.platform, a.app, std::string(core::to_string(a.kind)), a.rule_id,
                     a.group_id, a.target, a.to_json(), a.cause_event_id, now_ms, a.not_after_ms, a.not_before_ms);
        st.exec();
        st.reset();
    }
}

void enqueue_action(SQLite::Database& db, const core::Action& action, std::int64_t now_ms)
{
    enqueue_actions(db, std::vector<core::Action>{action}, now_ms);
}

int mass_send_used(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& group_id,
                   std::int64_t day)
{
    SQLite::Statement st(db, "SELECT used FROM mass_send_quota WHERE tenant = ? AND app = ? AND group_id = ? AND day = ?");
    SQLite::bind(st, tenant, app, group_id, day);
    return st.executeStep() ? st.getColumn(0).getInt() : 0;
}

void add_mass_send(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& msgid,
                   const std::string& sender, const std::vector<std::string>& groups, std::int64_t day, std::int64_t now_ms)
{
    SQLite::Statement q(db, "INSERT INTO mass_send_quota (tenant, app, group_id, day, used) VALUES (?,?,?,?,1)"
                            " ON CONFLICT DO UPDATE SET used = used + 1");
    for (const auto& g : groups) {
        SQLite::bind(q, tenant, app, g, day);
        q.exec();
        q.reset();
    }
    SQLite::Statement t(db, "INSERT INTO mass_tasks (msgid, tenant, app, sender, groups, created_ms) VALUES (?,?,?,?,?,?)"
                            " ON CONFLICT DO NOTHING");
    SQLite::bind(t, msgid, tenant, app, sender, join(groups, ' '), now_ms);
    t.exec();
}

namespace {
std::vector<MassTask> read_tasks(SQLite::Database& db, SQLite::Statement& st)
{
    std::vector<MassTask> out;
    while (st.executeStep()) {
        MassTask t;
        t.msgid = st.getColumn(0).getString();
        t.tenant = st.getColumn(1).getString();
        t.app = st.getColumn(2).getString();
        t.sender = st.getColumn(3).getString();
        std::istringstream groups(st.getColumn(4).getString());
        for (std::string g; groups >> g;) t.groups.push_back(g);
        t.created_ms = st.getColumn(5).getInt64();
        t.settled = st.getColumn(6).getInt() != 0;
        out.push_back(std::move(t));
    }
    SQLite::Statement r(db, "SELECT chat_id, status FROM mass_task_results WHERE msgid = ? ORDER BY chat_id");
    for (auto& t : out) {
        r.bind(1, t.msgid);
        while (r.executeStep()) t.results.emplace_back(r.getColumn(0).getString(), r.getColumn(1).getInt());
        r.reset();
    }
    return out;
}
} // namespace

std::vector<MassTask> open_mass_tasks(SQLite::Database& db, const std::string& app, std::int64_t since_ms)
{
    SQLite::Statement st(db, "SELECT msgid, tenant, app, sender, groups, created_ms, settled FROM mass_tasks"
                             " WHERE app = ? AND settled = 0 AND created_ms > ? ORDER BY created_ms");
    SQLite::bind(st, app, since_ms);
    return read_tasks(db, st);
}

std::vector<MassTask> list_mass_tasks(SQLite::Database& db, std::size_t limit)
{
    SQLite::Statement st(db, "SELECT msgid, tenant, app, sender, groups, created_ms, settled FROM mass_tasks"
                             " ORDER BY created_ms DESC LIMIT ?");
    st.bind(1, static_cast<std::int64_t>(limit));
    return read_tasks(db, st);
}

void record_mass_task_results(SQLite::Database& db, const std::string& msgid,
                              const std::vector<std::tuple<std::string, int, std::int64_t>>& results, bool settled, std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO mass_task_results (msgid, chat_id, status, send_time, checked_ms) VALUES (?,?,?,?,?)"
                             " ON CONFLICT DO UPDATE SET status = excluded.status, send_time = excluded.send_time,"
                             " checked_ms = excluded.checked_ms");
    for (const auto& [chat, status, sent] : results) {
        SQLite::bind(st, msgid, chat, status, sent, now_ms);
        st.exec();
        st.reset();
    }
    if (settled) {
        SQLite::Statement u(db, "UPDATE mass_tasks SET settled = 1 WHERE msgid = ?");
        u.bind(1, msgid);
        u.exec();
    }
}

std::optional<std::string> corp_tag_id(SQLite::Database& db, const std::string& tenant, const std::string& name)
{
    SQLite::Statement st(db, "SELECT tag_id FROM corp_tags WHERE tenant = ? AND name = ?");
    SQLite::bind(st, tenant, name);
    if (st.executeStep()) return st.getColumn(0).getString();
    return std::nullopt;
}

void set_corp_tag_id(SQLite::Database& db, const std::string& tenant, const std::string& name, const std::string& id)
{
    SQLite::Statement st(db, "INSERT INTO corp_tags (tenant, name, tag_id) VALUES (?,?,?) ON CONFLICT DO UPDATE SET tag_id = excluded.tag_id");
    SQLite::bind(st, tenant, name, id);
    st.exec();
}

std::string contact_staff(SQLite::Database& db, const std::string& tenant, const std::string& customer)
{
    SQLite::Statement st(db, "SELECT staff FROM contacts WHERE tenant = ? AND customer = ? ORDER BY since DESC LIMIT 1");
    SQLite::bind(st, tenant, customer);
    return st.executeStep() ? st.getColumn(0).getString() : std::string();
}

bool is_app_chat(SQLite::Database& db, const std::string& tenant, const std::string& chat_id)
{
    SQLite::Statement st(db, "SELECT 1 FROM app_chats WHERE tenant = ? AND chat_id = ?");
    SQLite::bind(st, tenant, chat_id);
    return st.executeStep();
}

void add_app_chat(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& chat_id,
                  const std::string& name, const std::string& owner, std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO app_chats (tenant, chat_id, app, name, owner, created_ms) VALUES (?,?,?,?,?,?)"
                             " ON CONFLICT DO UPDATE SET name = excluded.name, owner = excluded.owner");
    SQLite::bind(st, tenant, chat_id, app, name, owner, now_ms);
    st.exec();
}

std::vector<WelcomeTemplate> welcome_templates(SQLite::Database& db, const std::string& tenant, const std::string& app)
{
    SQLite::Statement st(db, "SELECT rule_id, template_id, text FROM welcome_templates WHERE tenant = ? AND app = ? ORDER BY rule_id");
    SQLite::bind(st, tenant, app);
    std::vector<WelcomeTemplate> out;
    while (st.executeStep()) out.push_back({st.getColumn(0).getString(), st.getColumn(1).getString(), st.getColumn(2).getString()});
    return out;
}

void set_welcome_template(SQLite::Database& db, const std::string& tenant, const std::string& app, const WelcomeTemplate& t,
                          std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO welcome_templates (tenant, app, rule_id, template_id, text, updated_ms) VALUES (?,?,?,?,?,?)"
                             " ON CONFLICT DO UPDATE SET template_id = excluded.template_id, text = excluded.text,"
                             " updated_ms = excluded.updated_ms");
    SQLite::bind(st, tenant, app, t.rule_id, t.template_id, t.text, now_ms);
    st.exec();
}

void delete_welcome_template(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& rule_id)
{
    SQLite::Statement st(db, "DELETE FROM welcome_templates WHERE tenant = ? AND app = ? AND rule_id = ?");
    SQLite::bind(st, tenant, app, rule_id);
    st.exec();
}

GroupDirectoryEntry group_entry(SQLite::Database& db, const std::string& tenant, const std::string& group_id)
{
    SQLite::Statement st(db, "SELECT name, owner, admins, needs_sync FROM chat_groups WHERE tenant = ? AND group_id = ?");
    SQLite::bind(st, tenant, group_id);
    GroupDirectoryEntry e;
    if (!st.executeStep()) return e;
    e.known = true;
    e.name = st.getColumn(0).getString();
    e.owner = st.getColumn(1).getString();
    std::istringstream admins(st.getColumn(2).getString());
    for (std::string a; admins >> a;) e.admins.push_back(a);
    e.needs_sync = st.getColumn(3).getInt() != 0;
    return e;
}

std::vector<std::string> groups_needing_sync(SQLite::Database& db, const std::string& tenant, std::size_t limit)
{
    SQLite::Statement st(db, "SELECT group_id FROM chat_groups WHERE tenant = ? AND needs_sync = 1 AND status = 'active'"
                             " ORDER BY updated_at LIMIT ?");
    SQLite::bind(st, tenant, static_cast<std::int64_t>(limit));
    std::vector<std::string> out;
    while (st.executeStep()) out.push_back(st.getColumn(0).getString());
    return out;
}

void sync_group(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& group_id,
                const std::string& name, const std::string& owner, const std::vector<std::string>& admins,
                const std::vector<SyncedMember>& members, std::int64_t now_ms)
{
    const std::int64_t now_s = now_ms / 1000;
    // An event newer than the start of this sync keeps the mark: its change may not be in what
    // WeCom answered ("部分信息是异步处理").
    SQLite::Statement g(db, "INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, admins, needs_sync, created_at, updated_at)"
                            " VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, 0, ?7, ?7) ON CONFLICT (tenant, group_id) DO UPDATE SET"
                            " name = ?4, owner = ?5, admins = ?6, needs_sync = CASE WHEN updated_at > ?7 THEN 1 ELSE 0 END");
    SQLite::bind(g, tenant, group_id, app, name, owner, join(admins, ' '), now_s);
    g.exec();
    std::set<std::string> listed;
    SQLite::Statement m(db, "INSERT INTO group_members (tenant, group_id, member_id, joined_at, join_scene, present)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT (tenant, group_id, member_id) DO UPDATE SET"
                            " present = 1, left_at = NULL, joined_at = coalesce(joined_at, ?4), join_scene = coalesce(join_scene, ?5)");
    for (const auto& mem : members) {
        listed.insert(mem.id);
        SQLite::bind(m, tenant, group_id, mem.id, mem.join_time, mem.join_scene);
        m.exec();
        m.reset();
        if (!mem.name.empty()) set_member_name(db, tenant, mem.id, mem.name, now_ms);
    }
    SQLite::Statement present(db, "SELECT member_id FROM group_members WHERE tenant = ? AND group_id = ? AND present = 1");
    SQLite::bind(present, tenant, group_id);
    std::vector<std::string> gone;
    while (present.executeStep()) {
        auto id = present.getColumn(0).getString();
        if (!listed.contains(id)) gone.push_back(std::move(id));
    }
    SQLite::Statement leave(db, "UPDATE group_members SET present = 0, left_at = ? WHERE tenant = ? AND group_id = ? AND member_id = ?");
    for (const auto& id : gone) {
        SQLite::bind(leave, now_s, tenant, group_id, id);
        leave.exec();
        leave.reset();
    }
}

std::optional<AibotResponse> aibot_response(SQLite::Database& db, std::int64_t event_id)
{
    SQLite::Statement st(db, "SELECT json_extract(event_json, '$.attributes.response_url'), received_ms FROM inbox WHERE id = ?");
    st.bind(1, event_id);
    if (!st.executeStep() || st.getColumn(0).isNull()) return std::nullopt;
    return AibotResponse{st.getColumn(0).getString(), st.getColumn(1).getInt64()};
}

bool claim_aibot_response(SQLite::Database& db, std::int64_t event_id, const std::string& action_key, std::int64_t now_ms)
{
    SQLite::Statement ins(db, "INSERT INTO aibot_responses (event_id, action_key, claimed_ms) VALUES (?,?,?) ON CONFLICT DO NOTHING");
    SQLite::bind(ins, event_id, action_key, now_ms);
    if (ins.exec() > 0) return true;
    SQLite::Statement st(db, "SELECT action_key FROM aibot_responses WHERE event_id = ?");
    st.bind(1, event_id);
    return st.executeStep() && st.getColumn(0).getString() == action_key;
}

} // namespace qunbot::storage
