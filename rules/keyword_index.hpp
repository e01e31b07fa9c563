#pragma once
/// \file
/// Multi-pattern substring search (Aho–Corasick over UTF-8 bytes). One pass over a message
/// finds every keyword of every rule, however many rules there are; no word boundaries are
/// assumed, so keywords match inside Chinese text.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::rules {

class KeywordIndex {
public:
    KeywordIndex();
    ~KeywordIndex();
    KeywordIndex(KeywordIndex&&) noexcept;
    KeywordIndex& operator=(KeywordIndex&&) noexcept;

    /// Adds a (normalised, non-empty) pattern; returns its pattern number. Adding the same
    /// text twice returns the same number.
    std::uint32_t add(std::string_view pattern);
    /// Computes failure links. `add` may not be called afterwards.
    void build();

    [[nodiscard]] std::size_t pattern_count() const noexcept { return patterns_.size(); }
    [[nodiscard]] const std::string& pattern(std::uint32_t id) const { return patterns_[id]; }
    [[nodiscard]] std::size_t state_count() const noexcept { return nodes_.size(); }

    /// Calls `found(pattern_id)` for every occurrence of every pattern in `text` (a pattern
    /// found twice is reported twice).
    template <class F>
    void scan(std::string_view text, F&& found) const
    {
        if (nodes_.empty()) return; // not built, or no patterns
        std::uint32_t s = 0;
        for (const char ch : text) {
            const auto c = static_cast<unsigned char>(ch);
            for (;;) {
                const std::uint32_t t = s == 0 ? root_[c] : step(s, c);
                if (t != none) { s = t; break; }
                if (s == 0) break;
                s = nodes_[s].fail;
            }
            for (std::uint32_t n = nodes_[s].pattern != none ? s : nodes_[s].dict; n != none; n = nodes_[n].dict) {
                found(nodes_[n].pattern);
            }
        }
    }

private:
    static constexpr std::uint32_t none = 0xFFFFFFFF;
    struct Node {
        std::uint32_t first_edge = 0; ///< edges_[first_edge, first_edge + edge_count), sorted by byte
        std::uint32_t edge_count = 0;
        std::uint32_t fail = 0;
        std::uint32_t dict = none;    ///< nearest node on the failure chain that ends a pattern
        std::uint32_t pattern = none; ///< pattern ending exactly here
    };
    struct Edge {
        unsigned char byte;
        std::uint32_t target;
    };

    [[nodiscard]] std::uint32_t step(std::uint32_t s, unsigned char c) const noexcept
    {
        const Node& n = nodes_[s];
        const Edge* e = edges_.data() + n.first_edge;
        const Edge* end = e + n.edge_count;
        for (; e != end; ++e) {
            if (e->byte == c) return e->target;
            if (e->byte > c) break;
        }
        return none;
    }

    std::vector<std::string> patterns_;
    std::vector<Node> nodes_;
    std::vector<Edge> edges_;
    std::uint32_t root_[256] = {};
    struct Building; ///< the trie while patterns are added; released by `build`
    std::unique_ptr<Building> building_;
};

} // namespace qunbot::rules
