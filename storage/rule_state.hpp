#pragma once
/// \file
/// The rule engine's state in SQLite: reading what one evaluation needs (group, members, tags,
/// activity, open batches, cooldowns) and writing a decision (outbox, counters, batches, tags,
/// the processed mark) in one transaction.

#include "bot/core/event.hpp"
#include "rules/engine.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace SQLite {
class Database;
class Statement;
}

namespace qunbot::storage {

/// Reads engine state. One instance per thread (it owns a connection).
class StateReader {
public:
    /// Opens its own read connection to `path`.
    explicit StateReader(const std::string& path);
    /// Uses `db` (which must outlive the reader); for tools working on one connection.
    explicit StateReader(SQLite::Database& db);
    ~StateReader();
    StateReader(const StateReader&) = delete;
    StateReader& operator=(const StateReader&) = delete;

    /// The state `event` needs under `rules` at `now_ms`.
    [[nodiscard]] rules::State load(const core::Event& event, const rules::RuleSet& rules, std::int64_t now_ms,
                                    int utc_offset_s);
    /// The state of one group for flushing its batches.
    [[nodiscard]] rules::State load_group(const std::string& tenant, const std::string& group_id,
                                          const rules::RuleSet& rules, std::int64_t now_ms, int utc_offset_s);
    /// Every open batch (to re-arm timers after a restart).
    [[nodiscard]] std::vector<rules::Batch> open_batches();
    /// Inbox events with id > `after` that feed a rule trigger and have no processed mark.
    [[nodiscard]] std::vector<std::pair<std::int64_t, core::Event>> unprocessed(std::int64_t after);
    /// The recovery cursor (0 if never set).
    [[nodiscard]] std::int64_t dispatch_cursor();
    /// Highest inbox id (0 when empty).
    [[nodiscard]] std::int64_t last_event_id();

private:
    void fill_member(rules::State& state, const std::string& tenant, const std::string& group_id, const std::string& id,
                     const rules::RuleSet* rules);
    SQLite::Statement& prepared(const char* sql);
    std::unique_ptr<SQLite::Database> owned_;
    SQLite::Database* db_;
    std::unordered_map<const char*, std::unique_ptr<SQLite::Statement>> statements_; ///< by literal
};

/// Writes `decision` (caused by inbox row `event_id`, 0 for timers). Call inside a transaction.
/// Outbox rows are keyed by idempotency key: replaying a cause adds nothing.
void apply_decision(SQLite::Database& db, const rules::Decision& decision, const std::string& tenant,
                    std::int64_t event_id, std::int64_t now_ms, const std::string& rules_version);

/// The last rule sources that loaded cleanly, as (file, text) pairs: a restart with a broken
/// rule directory runs these instead of nothing.
void save_good_rules(SQLite::Database& db, const std::vector<std::pair<std::string, std::string>>& sources);
[[nodiscard]] std::vector<std::pair<std::string, std::string>> load_good_rules(SQLite::Database& db);

/// Records the dispatcher's recovery cursor. Call inside a transaction.
void set_dispatch_cursor(SQLite::Database& db, std::int64_t id);

/// A manual tag change by staff (recorded with the reason); returns false if nothing changed.
bool set_manual_tag(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& tag,
                    bool add, const std::string& reason, std::int64_t now_ms);
/// A group tag change (used by group selections); returns false if nothing changed.
bool set_group_tag(SQLite::Database& db, const std::string& tenant, const std::string& group_id, const std::string& tag,
                   bool add, std::int64_t now_ms);
/// Records a member's display name (from a directory sync, or staff).
void set_member_name(SQLite::Database& db, const std::string& tenant, const std::string& member,
                     const std::string& name, std::int64_t now_ms);

/// A member's tags with when and why, for reports.
struct TagRow {
    std::string member;
    std::string tag;
    std::int64_t since_ms = 0;
    std::string source; ///< "rule" or "manual"
    std::string rule_id;
    std::string reason;
};
[[nodiscard]] std::vector<TagRow> list_tags(SQLite::Database& db, const std::string& tenant, const std::string& member);

/// Outbox rows as JSON lines (for tools and tests), oldest first.
[[nodiscard]] std::vector<std::string> outbox_actions(SQLite::Database& db);

} // namespace qunbot::storage
