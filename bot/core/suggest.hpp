#pragma once
/// \file
/// "Did you mean" suggestions for misspelled names (config keys, rule-file keys, list names).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::core {

/// Edit distance in bytes (insert, delete, substitute, swap neighbours).
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word` if it is within a small distance (about a third of the
/// word, at least 1, at most 3), else empty.
[[nodiscard]] std::string closest(std::string_view word, const std::vector<std::string_view>& candidates);

} // namespace qunbot::core
