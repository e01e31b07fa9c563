#pragma once
/// \file
/// Loads staff-edited YAML rule files into a compiled `RuleSet`. Strict and complete: every
/// problem in every file is reported at once as `file:line:col: error|warning: message`, with
/// the offending line and a caret, and any error means no rule set (the caller keeps the last
/// good one).

#include "rules/rule_set.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qunbot::rules {

struct Diagnostic {
    enum class Severity { error, warning };
    Severity severity = Severity::error;
    std::string file;
    int line = 0;   ///< 1-based
    int column = 0; ///< 1-based, in characters
    std::string message;
    std::string source_line; ///< the line as written (empty if unknown)

    /// "file:line:col: error: message" (one line).
    [[nodiscard]] std::string headline() const;
    /// The headline, then the source line and a caret under the column.
    [[nodiscard]] std::string format() const;
};

struct LoadResult {
    std::shared_ptr<const RuleSet> rules; ///< null when there is any error
    std::vector<Diagnostic> diagnostics;  ///< errors and warnings, by file then position
    std::vector<std::string> files;       ///< the rule files read, in load order
    std::vector<std::pair<std::string, std::string>> sources; ///< (file, text) as read

    [[nodiscard]] std::size_t error_count() const noexcept;
    [[nodiscard]] std::size_t warning_count() const noexcept;
    [[nodiscard]] bool ok() const noexcept { return rules != nullptr; }
    /// Every diagnostic formatted, then a summary line.
    [[nodiscard]] std::string report() const;
};

/// Rule files of `dir`: `*.yaml` / `*.yml`, excluding `*.test.yaml` (rule tests), sorted by name.
[[nodiscard]] std::vector<std::filesystem::path> rule_files(const std::filesystem::path& dir);
/// Rule test files of `dir`: `*.test.yaml`, sorted by name.
[[nodiscard]] std::vector<std::filesystem::path> rule_test_files(const std::filesystem::path& dir);

/// Loads every rule file in `dir`. A missing or unreadable directory is an error diagnostic.
[[nodiscard]] LoadResult load_rules(const std::filesystem::path& dir);
/// Loads rule sources given as (display name, text) pairs, in order.
[[nodiscard]] LoadResult load_rule_sources(const std::vector<std::pair<std::string, std::string>>& sources);

/// Parses "30s", "5m", "2h", "1d", "1h30m", "500ms". False on anything else or zero.
[[nodiscard]] bool parse_duration(std::string_view text, std::int64_t& ms);

} // namespace qunbot::rules
