#pragma once
/// \file
/// The scheduler: fires the slots of `on: schedule` rules, exactly once per (rule, slot), over
/// the groups each rule selects. A slot and all its actions are committed in one transaction
/// through the journal's writer, then delivery takes over (for customer groups: mass-send tasks
/// grouped per owner, within the quotas). Slots missed while qunbot was down are skipped or,
/// with `missed: catch_up`, the latest one within `grace` fires. Editing a rule's timing starts
/// it afresh at once. Its own thread sleeps until the next slot (at most a minute, so a clock
/// step is noticed); tests drive `tick()` with an injected clock instead.

#include "rules/rule_set.hpp"

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace qunbot::storage {
class Journal;
}

namespace qunbot::bot {

class Registry;

class Scheduler {
public:
    struct Options {
        std::string database;
        int utc_offset_s = 8 * 3600;            ///< for `{{ now | date }}` in the posts
        std::int64_t on_time_ms = 60'000;       ///< a slot this late still counts as on time
        std::int64_t close_grace_ms = 10'000;   ///< draws are drawn this long after closing, for late entries
        std::function<std::int64_t()> now_ms;   ///< wall clock; injectable for tests
        std::function<void()> on_actions;       ///< after a slot's actions are committed
    };
    /// What became of one slot.
    struct Fired {
        std::string rule_id;
        std::string slot;
        std::int64_t at_ms = 0;
        std::string status;     ///< fired, skipped, manual, already (recorded before)
        std::size_t groups = 0;
        std::size_t actions = 0;
    };

    Scheduler(storage::Journal& journal, Registry& metrics, Options options);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    /// The rule set to follow from now on (thread-safe; wakes the thread).
    void install(std::shared_ptr<const rules::RuleSet> rules);
    /// Starts the thread.
    void start();
    /// Stops the thread (a slot being written is finished first).
    void stop();
    /// Fires every slot due at `now_ms()`. Blocks until their writes are committed.
    std::vector<Fired> tick();
    /// When the next slot of any rule fires (for the thread and tools), if any.
    [[nodiscard]] std::optional<std::int64_t> next_due_ms();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

/// A manual run of `rule` now, outside its timing: slot "manual:<run_id>", exactly once per run
/// id. Writes through `db` in its own transaction (for `qunbot schedule run`).
Scheduler::Fired run_schedule_now(const std::string& database, const rules::RuleSet& rules, const rules::Rule& rule,
                                  const std::string& run_id, std::int64_t now_ms, int utc_offset_s);

} // namespace qunbot::bot
