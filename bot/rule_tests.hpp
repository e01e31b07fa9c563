#pragma once
/// \file
/// `qunbot rules test` and `qunbot rules explain`: staff prove a rule change before it goes live.
/// Test files (`*.test.yaml` next to the rules) give groups, members and a timeline of events,
/// and the actions expected. They run through the real pipeline: the journal (in a scratch
/// database), the state reader, the engine and the decision writer, with a simulated clock
/// that also fires welcome-batch timers.

#include "rules/loader.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace qunbot::bot {

struct RuleTestReport {
    std::size_t passed = 0;
    std::size_t failed = 0;
    std::size_t files = 0;
    std::string text; ///< what to print: one line per test, details for failures, a summary
    [[nodiscard]] bool ok() const noexcept { return failed == 0 && files > 0; }
};

/// Runs every `*.test.yaml` in `dir` against the rule set loaded from `dir`. Malformed test files
/// count as failures with `file:line:col` messages.
[[nodiscard]] RuleTestReport run_rule_tests(const std::filesystem::path& dir, const rules::RuleSet& rules,
                                            int utc_offset_s);

/// Explains one scenario file: the set-up of a test case plus `event:` (one event); prints, for
/// every rule of the event's trigger, whether it fired and why, and the resulting actions.
/// Returns false (with the message in `out`) when the file is malformed.
[[nodiscard]] bool explain_event(const std::filesystem::path& scenario, const rules::RuleSet& rules, int utc_offset_s,
                                 std::string& out);

} // namespace qunbot::bot
