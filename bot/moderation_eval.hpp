#pragma once
/// \file
/// Measures ad rules on labelled messages (`label<TAB>text`, label `ad` or `ok`): each message
/// is evaluated as a customer's group message by the real engine, and counts as flagged when a
/// rule whose id matches one of the globs fires. Precision, recall, F1 and the misses.

#include "rules/rule_set.hpp"

#include <string>
#include <vector>

namespace qunbot::bot {

struct EvalResult {
    std::size_t true_positives = 0;
    std::size_t false_positives = 0;
    std::size_t true_negatives = 0;
    std::size_t false_negatives = 0;
    std::vector<std::string> false_positive_texts;
    std::vector<std::string> false_negative_texts;
    std::vector<std::string> problems; ///< lines that are not `ad|ok<TAB>text`, as "line N: ..."
    [[nodiscard]] double precision() const noexcept;
    [[nodiscard]] double recall() const noexcept;
    [[nodiscard]] double f1() const noexcept;
};

/// Evaluates `labelled` (the file's text) under `rules`, counting rules matching `rule_globs`.
[[nodiscard]] EvalResult evaluate_labelled(const rules::RuleSet& rules, const std::string& labelled, const std::vector<std::string>& rule_globs);

} // namespace qunbot::bot
