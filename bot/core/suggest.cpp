#include "bot/core/suggest.hpp"

#include <algorithm>

namespace qunbot::core {

std::size_t edit_distance(std::string_view a, std::string_view b)
{
    // Optimal string alignment: a swap of two neighbours ("whne") counts as one typo.
    std::vector<std::size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
        prev2 = prev;
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string closest(std::string_view word, const std::vector<std::string_view>& candidates)
{
    // Scale with length so "in" does not suggest "on" for every two-letter typo of a long key.
    const std::size_t limit = std::clamp<std::size_t>(word.size() / 3, 1, 3);
    std::string_view best;
    std::size_t best_d = limit + 1;
    for (auto cand : candidates) {
        const auto d = edit_distance(word, cand);
        if (d < best_d) { best_d = d; best = cand; }
    }
    return std::string(best);
}

} // namespace qunbot::core
