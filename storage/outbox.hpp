#pragma once
/// \file
/// The outbox's life cycle: pending → in_flight → done, or failed (retried at next_try_ms) →
/// dead after too many attempts. Two more ends: `check` (the process died, or the answer was
/// lost, while a call that is not safe to repeat was in flight: a person must look) and
/// `skipped` (a platform quota said no, e.g. one mass send per customer group per day), plus
/// `dropped` by staff. Reads take any connection; writes run inside the journal's writer
/// transaction.

#include "bot/core/action.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace SQLite {
class Database;
}

namespace qunbot::storage {

struct OutboxRow {
    std::int64_t id = 0;
    core::Action action; ///< with tenant, platform, app, kind, rule, group, target from the columns
    std::string status;
    int attempts = 0;
    std::int64_t next_try_ms = 0;
    std::int64_t created_ms = 0;
    std::int64_t updated_ms = 0;
    std::string last_error;
    std::string result;
    std::string rate_keys;
    bool readable = true; ///< false when action_json could not be read back (the row is not performed)
};

/// Rows due at `now_ms` (pending or failed), oldest first.
[[nodiscard]] std::vector<OutboxRow> due_outbox(SQLite::Database& db, std::int64_t now_ms, std::size_t limit);
/// The earliest next_try_ms among pending/failed rows, if any.
[[nodiscard]] std::optional<std::int64_t> next_due(SQLite::Database& db);
/// Rows by status ("" = all), newest first.
[[nodiscard]] std::vector<OutboxRow> list_outbox(SQLite::Database& db, const std::string& status, std::size_t limit);
[[nodiscard]] std::optional<OutboxRow> get_outbox(SQLite::Database& db, std::int64_t id);
/// Rows left in flight by a previous process.
[[nodiscard]] std::vector<OutboxRow> in_flight_outbox(SQLite::Database& db);
/// (rate key, time) of calls made since `since_ms` (done, in flight or check), to rebuild the
/// rate limiters after a restart.
[[nodiscard]] std::vector<std::pair<std::string, std::int64_t>> recent_rate_keys(SQLite::Database& db, std::int64_t since_ms);
/// Count of rows per status.
[[nodiscard]] std::vector<std::pair<std::string, std::int64_t>> outbox_counts(SQLite::Database& db);

// Writes (inside a transaction).

/// Marks rows in flight, counting an attempt, with the rate keys the call will use.
void mark_in_flight(SQLite::Database& db, std::int64_t id, std::int64_t now_ms, const std::string& rate_keys);
/// Final or retry states. `result` says what was done (or how it was degraded).
void mark_outbox(SQLite::Database& db, std::int64_t id, const std::string& status, std::int64_t now_ms,
                 std::int64_t next_try_ms, const std::string& last_error, const std::string& result);
/// Puts a row back without counting an attempt (rate limit or pause).
void defer_outbox(SQLite::Database& db, std::int64_t id, std::int64_t next_try_ms);
/// Staff: retry a failed/dead/check/skipped row now (false if no such row or it is not in one
/// of those states), or drop a row that is not done (false likewise).
bool retry_outbox(SQLite::Database& db, std::int64_t id, std::int64_t now_ms);
bool drop_outbox(SQLite::Database& db, std::int64_t id, std::int64_t now_ms);
/// Adds a follow-up action (an owner notice); keyed by its idempotency key like any other.
void enqueue_action(SQLite::Database& db, const core::Action& action, std::int64_t now_ms);
void enqueue_actions(SQLite::Database& db, const std::vector<core::Action>& actions, std::int64_t now_ms);

// The WeCom adapter's small tables.

/// Mass sends used for (tenant, app, group) on local `day`.
[[nodiscard]] int mass_send_used(SQLite::Database& db, const std::string& tenant, const std::string& app,
                                 const std::string& group_id, std::int64_t day);
void add_mass_send(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& msgid,
                   const std::string& sender, const std::vector<std::string>& groups, std::int64_t day, std::int64_t now_ms);
/// A mass-send task and what became of it in each group (get_groupmsg_send_result status:
/// 0 not sent yet, 1 sent, 2 failed: not a friend, 3 failed: the group already got one today).
struct MassTask {
    std::string msgid;
    std::string tenant;
    std::string app;
    std::string sender;
    std::vector<std::string> groups;
    std::int64_t created_ms = 0;
    bool settled = false;
    std::vector<std::pair<std::string, int>> results; ///< (chat id, status)
};
/// Tasks of `app` still waiting for their senders, created after `since_ms`.
[[nodiscard]] std::vector<MassTask> open_mass_tasks(SQLite::Database& db, const std::string& app, std::int64_t since_ms);
/// Newest tasks first, with their results.
[[nodiscard]] std::vector<MassTask> list_mass_tasks(SQLite::Database& db, std::size_t limit);
/// Records per-group results; `settled` when nothing is left to wait for.
void record_mass_task_results(SQLite::Database& db, const std::string& msgid,
                              const std::vector<std::tuple<std::string, int, std::int64_t>>& results, bool settled,
                              std::int64_t now_ms);
[[nodiscard]] std::optional<std::string> corp_tag_id(SQLite::Database& db, const std::string& tenant, const std::string& name);
void set_corp_tag_id(SQLite::Database& db, const std::string& tenant, const std::string& name, const std::string& id);
/// A staff member who has `customer` as a contact (most recent first), or empty.
[[nodiscard]] std::string contact_staff(SQLite::Database& db, const std::string& tenant, const std::string& customer);
[[nodiscard]] bool is_app_chat(SQLite::Database& db, const std::string& tenant, const std::string& chat_id);
void add_app_chat(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& chat_id,
                  const std::string& name, const std::string& owner, std::int64_t now_ms);

/// Group welcome templates this app keeps on WeCom for `wecom_template` rules.
struct WelcomeTemplate {
    std::string rule_id;
    std::string template_id;
    std::string text;
};
[[nodiscard]] std::vector<WelcomeTemplate> welcome_templates(SQLite::Database& db, const std::string& tenant, const std::string& app);
void set_welcome_template(SQLite::Database& db, const std::string& tenant, const std::string& app, const WelcomeTemplate& t,
                          std::int64_t now_ms);
void delete_welcome_template(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& rule_id);

/// A group as the directory knows it.
struct GroupDirectoryEntry {
    std::string name;
    std::string owner;
    std::vector<std::string> admins;
    bool needs_sync = true;
    bool known = false;
};
[[nodiscard]] GroupDirectoryEntry group_entry(SQLite::Database& db, const std::string& tenant, const std::string& group_id);
/// Groups of `app` whose details are stale (changed since the last sync), up to `limit`.
[[nodiscard]] std::vector<std::string> groups_needing_sync(SQLite::Database& db, const std::string& tenant,
                                                           std::size_t limit);

/// One member of a synced group.
struct SyncedMember {
    std::string id;
    std::string name;
    std::int64_t join_time = 0;
    int join_scene = 0;
};
/// Records a group's details from the platform and reconciles its member list (members not
/// listed are marked absent, listed ones present), clearing the sync mark.
void sync_group(SQLite::Database& db, const std::string& tenant, const std::string& app, const std::string& group_id,
                const std::string& name, const std::string& owner, const std::vector<std::string>& admins,
                const std::vector<SyncedMember>& members, std::int64_t now_ms);

/// An AI-bot message's reply channel: its response_url and when the event was received.
struct AibotResponse {
    std::string url;
    std::int64_t received_ms = 0;
};
/// The response_url of inbox event `event_id`, if it has one.
[[nodiscard]] std::optional<AibotResponse> aibot_response(SQLite::Database& db, std::int64_t event_id);
/// Claims event `event_id`'s response_url for the action keyed `action_key` (one answer per
/// message): true when it was free or is already this action's.
bool claim_aibot_response(SQLite::Database& db, std::int64_t event_id, const std::string& action_key, std::int64_t now_ms);

} // namespace qunbot::storage
