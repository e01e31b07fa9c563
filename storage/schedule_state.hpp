#pragma once
/// \file
/// Schedules in SQLite: since when each scheduled rule's timing holds, the slots that fired or
/// were skipped, and the group directory a slot is planned over. `record_slot` and the slot's
/// actions are written in one transaction, which is what makes a slot exactly-once.

#include "bot/core/action.hpp"
#include "rules/engine.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace qunbot::storage {

/// Since when `rule_id` has had `timing`; a new rule or a changed timing starts at `now_ms`.
/// Call inside a transaction.
std::int64_t note_schedule(SQLite::Database& db, const std::string& rule_id, const std::string& timing, std::int64_t now_ms);
/// The instant of the latest recorded slot of `rule_id` (fired or skipped), if any.
[[nodiscard]] std::optional<std::int64_t> last_slot_ms(SQLite::Database& db, const std::string& rule_id);

struct SlotRecord {
    std::string rule_id;
    std::string slot;
    std::int64_t at_ms = 0;
    std::int64_t fired_ms = 0;
    std::string status; ///< fired, skipped, manual
    std::int64_t groups = 0;
    std::int64_t actions = 0;
};
/// Records a slot and, only if it was not recorded before, its actions. Returns false when the
/// slot was already there (nothing written). Call inside a transaction.
bool record_slot(SQLite::Database& db, const SlotRecord& slot, const std::vector<core::Action>& actions, std::int64_t now_ms);
/// Newest first.
[[nodiscard]] std::vector<SlotRecord> slot_history(SQLite::Database& db, const std::string& rule_id, std::size_t limit);

/// A group as schedules see it, with where its actions go.
struct ScheduleTarget {
    rules::GroupInfo group;
    std::string tenant;
    std::string app;
};
/// Every active group of the directory with its tags and present member count.
[[nodiscard]] std::vector<ScheduleTarget> schedule_targets(SQLite::Database& db);

/// Plans one slot of `rule` over `targets` (those it selects), rendering each group's actions
/// at the slot's time; spreads them over the rule's jitter (stable per group).
[[nodiscard]] std::vector<core::Action> plan_slot(const rules::RuleSet& rules, const rules::Rule& rule,
                                                  const std::vector<ScheduleTarget>& targets, const std::string& slot_key,
                                                  std::int64_t at_ms, int utc_offset_s, std::size_t& groups);

} // namespace qunbot::storage
