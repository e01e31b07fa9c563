#include "storage/outbox.hpp"

#include "storage/rule_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

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
    (void)a.from_json(st.getColumn(8).getString());
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
    st.bind(1, now_ms);
    st.bind(2, static_cast<std::int64_t>(limit));
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
    st.bind(1, status);
    st.bind(2, static_cast<std::int64_t>(limit));
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
    st.bind(1, now_ms);
    st.bind(2, rate_keys);
    st.bind(3, id);
    st.exec();
}

void mark_outbox(SQLite::Database& db, std::int64_t id, const std::string& status, std::int64_t now_ms, std::int64_t next_try_ms,
                 const std::string& last_error, const std::string& result)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = ?, updated_ms = ?, next_try_ms = ?,"
                             " last_error = CASE WHEN ? <> '' THEN ? ELSE last_error END, result = ? WHERE id = ?");
    st.bind(1, status);
    st.bind(2, now_ms);
    st.bind(3, next_try_ms);
    st.bind(4, last_error);
    st.bind(5, last_error);
    st.bind(6, result);
    st.bind(7, id);
    st.exec();
}

void defer_outbox(SQLite::Database& db, std::int64_t id, std::int64_t next_try_ms)
{
    SQLite::Statement st(db, "UPDATE outbox SET next_try_ms = ? WHERE id = ? AND status IN ('pending', 'failed')");
    st.bind(1, next_try_ms);
    st.bind(2, id);
    st.exec();
}

bool retry_outbox(SQLite::Database& db, std::int64_t id, std::int64_t now_ms)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = 'pending', next_try_ms = 0, updated_ms = ?"
                             " WHERE id = ? AND status IN ('failed', 'dead', 'check', 'skipped')");
    st.bind(1, now_ms);
    st.bind(2, id);
    return st.exec() > 0;
}

bool drop_outbox(SQLite::Database& db, std::int64_t id, std::int64_t now_ms)
{
    SQLite::Statement st(db, "UPDATE outbox SET status = 'dropped', updated_ms = ? WHERE id = ? AND status NOT IN ('done', 'dropped')");
    st.bind(1, now_ms);
    st.bind(2, id);
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
        st.bind(1, a.idempotency_key);
        st.bind(2, a.tenant);
        st.bind(3, a.platform);
        st.bind(4, a.app);
        st.bind(5, std::string(core::to_string(a.kind)));
        st.bind(6, a.rule_id);
        st.bind(7, a.group_id);
        st.bind(8, a.target);
        st.bind(9, a.to_json());
        st.bind(10, a.cause_event_id);
        st.bind(11, now_ms);
        st.bind(12, a.not_after_ms);
        st.bind(13, a.not_before_ms);
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
    st.bind(1, tenant);
    st.bind(2, app);
    st.bind(3, group_id);
    st.bind(4, day);
    return st.executeStep() ? st.getColumn(0).getInt() : 0;
}

void add_mass_send(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& msgid,
                   const std::string& sender, const std::vector<std::string>& groups, std::int64_t day, std::int64_t now_ms)
{
    SQLite::Statement q(db, "INSERT INTO mass_send_quota (tenant, app, group_id, day, used) VALUES (?,?,?,?,1)"
                            " ON CONFLICT DO UPDATE SET used = used + 1");
    for (const auto& g : groups) {
        q.bind(1, tenant);
        q.bind(2, app);
        q.bind(3, g);
        q.bind(4, day);
        q.exec();
        q.reset();
    }
    SQLite::Statement t(db, "INSERT INTO mass_tasks (msgid, tenant, app, sender, groups, created_ms) VALUES (?,?,?,?,?,?)"
                            " ON CONFLICT DO NOTHING");
    t.bind(1, msgid);
    t.bind(2, tenant);
    t.bind(3, app);
    t.bind(4, sender);
    t.bind(5, join(groups, ' '));
    t.bind(6, now_ms);
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
    st.bind(1, app);
    st.bind(2, since_ms);
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
        st.bind(1, msgid);
        st.bind(2, chat);
        st.bind(3, status);
        st.bind(4, sent);
        st.bind(5, now_ms);
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
    st.bind(1, tenant);
    st.bind(2, name);
    if (st.executeStep()) return st.getColumn(0).getString();
    return std::nullopt;
}

void set_corp_tag_id(SQLite::Database& db, const std::string& tenant, const std::string& name, const std::string& id)
{
    SQLite::Statement st(db, "INSERT INTO corp_tags (tenant, name, tag_id) VALUES (?,?,?) ON CONFLICT DO UPDATE SET tag_id = excluded.tag_id");
    st.bind(1, tenant);
    st.bind(2, name);
    st.bind(3, id);
    st.exec();
}

std::string contact_staff(SQLite::Database& db, const std::string& tenant, const std::string& customer)
{
    SQLite::Statement st(db, "SELECT staff FROM contacts WHERE tenant = ? AND customer = ? ORDER BY since DESC LIMIT 1");
    st.bind(1, tenant);
    st.bind(2, customer);
    return st.executeStep() ? st.getColumn(0).getString() : std::string();
}

bool is_app_chat(SQLite::Database& db, const std::string& tenant, const std::string& chat_id)
{
    SQLite::Statement st(db, "SELECT 1 FROM app_chats WHERE tenant = ? AND chat_id = ?");
    st.bind(1, tenant);
    st.bind(2, chat_id);
    return st.executeStep();
}

void add_app_chat(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& chat_id,
                  const std::string& name, const std::string& owner, std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO app_chats (tenant, chat_id, app, name, owner, created_ms) VALUES (?,?,?,?,?,?)"
                             " ON CONFLICT DO UPDATE SET name = excluded.name, owner = excluded.owner");
    st.bind(1, tenant);
    st.bind(2, chat_id);
    st.bind(3, app);
    st.bind(4, name);
    st.bind(5, owner);
    st.bind(6, now_ms);
    st.exec();
}

std::vector<WelcomeTemplate> welcome_templates(SQLite::Database& db, const std::string& tenant, const std::string& app)
{
    SQLite::Statement st(db, "SELECT rule_id, template_id, text FROM welcome_templates WHERE tenant = ? AND app = ? ORDER BY rule_id");
    st.bind(1, tenant);
    st.bind(2, app);
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
    st.bind(1, tenant);
    st.bind(2, app);
    st.bind(3, t.rule_id);
    st.bind(4, t.template_id);
    st.bind(5, t.text);
    st.bind(6, now_ms);
    st.exec();
}

void delete_welcome_template(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& rule_id)
{
    SQLite::Statement st(db, "DELETE FROM welcome_templates WHERE tenant = ? AND app = ? AND rule_id = ?");
    st.bind(1, tenant);
    st.bind(2, app);
    st.bind(3, rule_id);
    st.exec();
}

GroupDirectoryEntry group_entry(SQLite::Database& db, const std::string& tenant, const std::string& group_id)
{
    SQLite::Statement st(db, "SELECT name, owner, admins, needs_sync FROM chat_groups WHERE tenant = ? AND group_id = ?");
    st.bind(1, tenant);
    st.bind(2, group_id);
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
    st.bind(1, tenant);
    st.bind(2, static_cast<std::int64_t>(limit));
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
    g.bind(1, tenant);
    g.bind(2, group_id);
    g.bind(3, app);
    g.bind(4, name);
    g.bind(5, owner);
    g.bind(6, join(admins, ' '));
    g.bind(7, now_s);
    g.exec();
    std::set<std::string> listed;
    SQLite::Statement m(db, "INSERT INTO group_members (tenant, group_id, member_id, joined_at, join_scene, present)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT (tenant, group_id, member_id) DO UPDATE SET"
                            " present = 1, left_at = NULL, joined_at = coalesce(joined_at, ?4), join_scene = coalesce(join_scene, ?5)");
    for (const auto& mem : members) {
        listed.insert(mem.id);
        m.bind(1, tenant);
        m.bind(2, group_id);
        m.bind(3, mem.id);
        m.bind(4, mem.join_time);
        m.bind(5, mem.join_scene);
        m.exec();
        m.reset();
        if (!mem.name.empty()) set_member_name(db, tenant, mem.id, mem.name, now_ms);
    }
    SQLite::Statement present(db, "SELECT member_id FROM group_members WHERE tenant = ? AND group_id = ? AND present = 1");
    present.bind(1, tenant);
    present.bind(2, group_id);
    std::vector<std::string> gone;
    while (present.executeStep()) {
        auto id = present.getColumn(0).getString();
        if (!listed.contains(id)) gone.push_back(std::move(id));
    }
    SQLite::Statement leave(db, "UPDATE group_members SET present = 0, left_at = ? WHERE tenant = ? AND group_id = ? AND member_id = ?");
    for (const auto& id : gone) {
        leave.bind(1, now_s);
        leave.bind(2, tenant);
        leave.bind(3, group_id);
        leave.bind(4, id);
        leave.exec();
        leave.reset();
    }
}

} // namespace qunbot::storage
