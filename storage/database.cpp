#include "storage/database.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>

#include <array>
#include <filesystem>
#include <stdexcept>
#include <string_view>

namespace qunbot::storage {
namespace {

// Append-only: a migration, once released, is never edited; the next change is a new entry.
constexpr std::array<std::string_view, 10> migrations{
    R"sql(
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    dedup_key   TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    app         TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    raw_type    TEXT    NOT NULL,
    group_id    TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    event_time  INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    event_json  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    UNIQUE (tenant, dedup_key)
);
CREATE TABLE activity (
    id        INTEGER PRIMARY KEY,
    event_id  INTEGER NOT NULL REFERENCES inbox(id),
    at        INTEGER NOT NULL,
    tenant    TEXT    NOT NULL,
    group_id  TEXT    NOT NULL,
    member_id TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    scene     INTEGER,
    detail    TEXT    NOT NULL
);
CREATE INDEX activity_by_group ON activity (group_id, at);
CREATE INDEX activity_by_time ON activity (at);
CREATE TABLE chat_groups (
    tenant        TEXT    NOT NULL,
    group_id      TEXT    NOT NULL,
    app           TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    name          TEXT    NOT NULL DEFAULT '',
    owner         TEXT    NOT NULL DEFAULT '',
    member_version TEXT   NOT NULL DEFAULT '',
    needs_sync    INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id)
);
CREATE TABLE group_members (
    tenant     TEXT    NOT NULL,
    group_id   TEXT    NOT NULL,
    member_id  TEXT    NOT NULL,
    joined_at  INTEGER,
    join_scene INTEGER,
    left_at    INTEGER,
    quit_scene INTEGER,
    present    INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id, member_id)
);
)sql",
    // 2: rule engine state. member_hours keeps one row per member, group and hour with a
    // message (written with the message, at most once an hour; hours so that local days work
    // for any whole-hour offset), so activity thresholds need no per-message index. Counters, batches and tags live here so reloads and restarts never
    // reset them; the outbox holds decided actions until delivery performs them.
    R"sql(
CREATE TABLE member_hours (
    tenant    TEXT    NOT NULL,
    group_id  TEXT    NOT NULL,
    member_id TEXT    NOT NULL,
    hour      INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id, member_id, hour)
) WITHOUT ROWID;
CREATE TABLE people (
    tenant     TEXT    NOT NULL,
    member_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, member_id)
);
CREATE TABLE member_tags (
    tenant    TEXT    NOT NULL,
    member_id TEXT    NOT NULL,
    tag       TEXT    NOT NULL,
    since_ms  INTEGER NOT NULL,
    source    TEXT    NOT NULL,
    rule_id   TEXT    NOT NULL DEFAULT '',
    reason    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, member_id, tag)
);
CREATE TABLE group_tags (
    tenant   TEXT    NOT NULL,
    group_id TEXT    NOT NULL,
    tag      TEXT    NOT NULL,
    since_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id, tag)
);
CREATE TABLE tag_history (
    id        INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    tenant    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    tag       TEXT    NOT NULL,
    added     INTEGER NOT NULL,
    source    TEXT    NOT NULL,
    rule_id   TEXT    NOT NULL DEFAULT '',
    reason    TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE cooldowns (
    tenant    TEXT    NOT NULL,
    group_id  TEXT    NOT NULL,
    member_id TEXT    NOT NULL,
    rule_id   TEXT    NOT NULL,
    until_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id, rule_id, member_id)
);
CREATE TABLE welcome_batches (
    tenant    TEXT    NOT NULL,
    group_id  TEXT    NOT NULL,
    rule_id   TEXT    NOT NULL,
    platform  TEXT    NOT NULL,
    app       TEXT    NOT NULL,
    members   TEXT    NOT NULL,
    opened_ms INTEGER NOT NULL,
    due_ms    INTEGER NOT NULL,
    origin    TEXT    NOT NULL,
    PRIMARY KEY (tenant, group_id, rule_id)
);
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    tenant          TEXT    NOT NULL,
    platform        TEXT    NOT NULL,
    app             TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    rule_id         TEXT    NOT NULL,
    group_id        TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    action_json     TEXT    NOT NULL,
    cause_event_id  INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    not_after_ms    INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
);
CREATE TABLE processed (
    event_id INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    rules    TEXT    NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
)sql",
    // 3: delivery. The outbox rows get their life cycle (attempts, next try, last error, what was
    // done); mass-send quotas, corp tag ids and staff–customer relations are kept for the WeCom
    // adapter; app_chats lists the internal groups this bot created (it may post to and remove
    // members from those).
    R"sql(
ALTER TABLE outbox ADD COLUMN attempts    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_try_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error  TEXT    NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN result      TEXT    NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN rate_keys   TEXT    NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN updated_ms  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chat_groups ADD COLUMN admins TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_due ON outbox (next_try_ms, id) WHERE status IN ('pending', 'failed');
CREATE INDEX outbox_by_status ON outbox (status, id);
CREATE TABLE mass_send_quota (
    tenant   TEXT    NOT NULL,
    app      TEXT    NOT NULL,
    group_id TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    used     INTEGER NOT NULL,
    PRIMARY KEY (tenant, app, group_id, day)
) WITHOUT ROWID;
CREATE TABLE mass_tasks (
    msgid      TEXT    PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    app        TEXT    NOT NULL,
    sender     TEXT    NOT NULL,
    groups     TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    settled    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE mass_task_results (
    msgid      TEXT    NOT NULL,
    chat_id    TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    send_time  INTEGER NOT NULL,
    checked_ms INTEGER NOT NULL,
    PRIMARY KEY (msgid, chat_id)
) WITHOUT ROWID;
CREATE TABLE corp_tags (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    tag_id TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE contacts (
    tenant   TEXT    NOT NULL,
    customer TEXT    NOT NULL,
    staff    TEXT    NOT NULL,
    since    INTEGER NOT NULL,
    PRIMARY KEY (tenant, customer, staff)
) WITHOUT ROWID;
CREATE TABLE welcome_templates (
    tenant      TEXT    NOT NULL,
    app         TEXT    NOT NULL,
    rule_id     TEXT    NOT NULL,
    template_id TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, app, rule_id)
) WITHOUT ROWID;
CREATE TABLE app_chats (
    tenant     TEXT    NOT NULL,
    chat_id    TEXT    NOT NULL,
    app        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, chat_id)
) WITHOUT ROWID;
)sql",
    // 4: schedules. `schedules` remembers each scheduled rule's timing and since when it holds
    // (an edit restarts it, so the old trigger is gone at once); `schedule_slots` records every
    // slot that fired (or was skipped), written in the same transaction as the slot's actions:
    // a slot is planned at most once, whatever crashes or restarts.
    R"sql(
CREATE TABLE schedules (
    rule_id  TEXT    PRIMARY KEY,
    timing   TEXT    NOT NULL,
    since_ms INTEGER NOT NULL
);
CREATE TABLE schedule_slots (
    rule_id  TEXT    NOT NULL,
    slot     TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    fired_ms INTEGER NOT NULL,
    status   TEXT    NOT NULL,
    groups   INTEGER NOT NULL,
    actions  INTEGER NOT NULL,
    PRIMARY KEY (rule_id, slot)
) WITHOUT ROWID;
CREATE INDEX schedule_slots_by_time ON schedule_slots (rule_id, at_ms);
)sql",
    // 5: draws. A round is one opening of a draw in one group, with its seed and commitment and
    // the prize definition as it was then (so a later rule edit cannot change how it verifies).
    // Picks are numbered in draw order (rerolls continue the numbering); payouts are the money
    // ledger, one row per pick, keyed by a bill number derived from the round and the pick.
    // `blacklist` excludes members from draws (and is where ad cleanup will record them).
    R"sql(
CREATE TABLE draw_rounds (
    id            INTEGER PRIMARY KEY,
    draw_id       TEXT    NOT NULL,
    series        TEXT    NOT NULL,
    tenant        TEXT    NOT NULL,
    app           TEXT    NOT NULL,
    group_id      TEXT    NOT NULL,
    slot          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    opened_ms     INTEGER NOT NULL,
    closes_at_ms  INTEGER NOT NULL DEFAULT 0,
    close_entries INTEGER NOT NULL DEFAULT 0,
    seed          TEXT    NOT NULL,
    commitment    TEXT    NOT NULL,
    prizes        TEXT    NOT NULL,
    payout        TEXT    NOT NULL,
    drawn_ms      INTEGER,
    closed_by     TEXT    NOT NULL DEFAULT '',
    digest        TEXT    NOT NULL DEFAULT '',
    UNIQUE (draw_id, tenant, group_id, slot)
);
CREATE INDEX draw_rounds_open ON draw_rounds (status, tenant, group_id);
CREATE TABLE draw_entries (
    round_id   INTEGER NOT NULL,
    member_id  TEXT    NOT NULL,
    entered_ms INTEGER NOT NULL,
    via        TEXT    NOT NULL,
    PRIMARY KEY (round_id, member_id)
) WITHOUT ROWID;
CREATE TABLE draw_rejections (
    round_id  INTEGER NOT NULL,
    member_id TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    PRIMARY KEY (round_id, member_id)
) WITHOUT ROWID;
CREATE TABLE draw_picks (
    round_id   INTEGER NOT NULL,
    pick       INTEGER NOT NULL,
    tenant     TEXT    NOT NULL,
    series     TEXT    NOT NULL,
    member_id  TEXT    NOT NULL,
    rank       INTEGER NOT NULL,
    tier       TEXT    NOT NULL,
    amount_fen INTEGER NOT NULL,
    replaced   INTEGER NOT NULL DEFAULT 0,
    reason     TEXT    NOT NULL DEFAULT '',
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (round_id, pick)
);
CREATE INDEX draw_picks_by_member ON draw_picks (tenant, member_id, series, at_ms);
CREATE TABLE payouts (
    id          INTEGER PRIMARY KEY,
    round_id    INTEGER NOT NULL,
    pick        INTEGER NOT NULL,
    tenant      TEXT    NOT NULL,
    app         TEXT    NOT NULL,
    member_id   TEXT    NOT NULL,
    amount_fen  INTEGER NOT NULL,
    method      TEXT    NOT NULL,
    billno      TEXT    NOT NULL UNIQUE,
    status      TEXT    NOT NULL,
    openid      TEXT    NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try_ms INTEGER NOT NULL DEFAULT 0,
    detail      TEXT    NOT NULL DEFAULT '',
    send_listid TEXT    NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    paid_ms     INTEGER,
    UNIQUE (round_id, pick)
);
CREATE INDEX payouts_due ON payouts (status, next_try_ms);
CREATE TABLE blacklist (
    tenant    TEXT    NOT NULL,
    member_id TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    since_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, member_id)
);
)sql",
    // 6: group messages in. `aibot_responses` records which action used an AI-bot message's
    // one-time response_url; `archive_state` is the session archive's position per corp (the
    // seq is written in the same transaction as the events it produced).
    R"sql(
CREATE TABLE aibot_responses (
    event_id   INTEGER PRIMARY KEY,
    action_key TEXT    NOT NULL,
    claimed_ms INTEGER NOT NULL
);
CREATE TABLE archive_state (
    tenant          TEXT    PRIMARY KEY,
    seq             INTEGER NOT NULL DEFAULT 0,
    last_pull_ms    INTEGER NOT NULL DEFAULT 0,
    last_message_ms INTEGER NOT NULL DEFAULT 0,
    messages        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    error_ms        INTEGER NOT NULL DEFAULT 0
);
)sql",
    // 7: moderation. Every decision of a `moderate:` rule is kept (who, where, what, which rung),
    // dry runs included; an undone entry no longer counts as an offence. The blacklist says who
    // put a member on it.
    R"sql(
CREATE TABLE moderation_log (
    id          INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    tenant      TEXT    NOT NULL,
    group_id    TEXT    NOT NULL,
    member_id   TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    excerpt     TEXT    NOT NULL,
    rule_id     TEXT    NOT NULL,
    hits        TEXT    NOT NULL,
    offence     INTEGER NOT NULL,
    steps       TEXT    NOT NULL,
    dry_run     INTEGER NOT NULL,
    event_id    INTEGER NOT NULL DEFAULT 0,
    undone_ms   INTEGER,
    undone_by   TEXT    NOT NULL DEFAULT '',
    undo_reason TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX moderation_by_member ON moderation_log (tenant, member_id, at_ms);
ALTER TABLE blacklist ADD COLUMN added_by TEXT NOT NULL DEFAULT '';
)sql",
    // 8: a group message's text fingerprint in the activity log (a hash of its normalised text),
    // so "the same text in several groups" is one indexed lookup, not a scan of the inbox.
    R"sql(
ALTER TABLE activity ADD COLUMN text_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX activity_by_text ON activity (tenant, text_hash, at) WHERE text_hash <> '';
)sql",
    // 9: who put a member on the blacklist or took them off, and why, kept after the entry is gone.
    R"sql(
CREATE TABLE blacklist_history (
    id        INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    tenant    TEXT    NOT NULL,
    member_id TEXT    NOT NULL,
    added     INTEGER NOT NULL,
    by_whom   TEXT    NOT NULL,
    reason    TEXT    NOT NULL
);
)sql",
    // 10: a moderation decision names its actions (the prefix of their idempotency keys), so the
    // log can show what became of each: sent, failed and why, still pending.
    R"sql(
ALTER TABLE moderation_log ADD COLUMN action_keys TEXT NOT NULL DEFAULT '';
)sql",
};

} // namespace

int schema_version() noexcept { return static_cast<int>(migrations.size()); }

std::unique_ptr<SQLite::Database> open_for_writing(const std::string& path, Durability durability)
{
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    auto db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db->exec("PRAGMA journal_mode=WAL");
    db->exec(durability == Durability::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    db->exec("PRAGMA foreign_keys=ON");
    // 2 MiB, about SQLite's default. At the end of each write transaction SQLite trims the page
    // cache (read from a profile of the symbol-less library), at a cost that grew with the cache:
    // the journal writer spent 49 us per callback with 2 MiB, 53 with 8, 57 with 16 and 58-67
    // with 64 MiB (bench/intake_load, closed loop, development VM). Pages it misses come from the
    // OS page cache.
    db->exec("PRAGMA cache_size=-2048");
    db->exec("PRAGMA temp_store=MEMORY");
    db->setBusyTimeout(5000);

    const int current = db->execAndGet("PRAGMA user_version").getInt();
    if (current > schema_version()) {
        throw std::runtime_error(path + " has schema version " + std::to_string(current) + ", newer than this build's " +
                                 std::to_string(schema_version()) + "; refusing to touch it");
    }
    for (int v = current; v < schema_version(); ++v) {
        SQLite::Transaction tx(*db);
        db->exec(std::string(migrations[static_cast<std::size_t>(v)]));
        db->exec("PRAGMA user_version=" + std::to_string(v + 1));
        tx.commit();
    }
    return db;
}

std::unique_ptr<SQLite::Database> open_for_reading(const std::string& path)
{
    auto db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READONLY);
    db->setBusyTimeout(5000);
    return db;
}

} // namespace qunbot::storage
