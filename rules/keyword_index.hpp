#pragma once
/// \file
/// Multi-pattern substring search. One pass over a message finds every keyword of every rule,
/// however many rules there are; no word boundaries are assumed, so keywords match inside
/// Chinese text. Work is per character, not per byte.
///
/// A scan first maps each character to an id (0: in no keyword) and tests each adjacent pair
/// against a small bitmap of the pairs keywords start with. Most positions of ordinary chatter
/// fail that test, and the few that pass are checked by walking the trie. Texts with many
/// candidates (so that walking from each could cost more than a pass) are scanned with the
/// Aho–Corasick automaton instead, so the worst case stays linear in the text.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
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
    /// found twice is reported twice). Invalid UTF-8 bytes count as characters of their own.
    /// Uses per-thread scratch space: `found` must not start another scan.
    template <class F>
    void scan(std::string_view text, F&& found) const
    {
        if (nodes_.empty()) return; // not built, or no patterns
        thread_local ScanScratch scratch;
        auto& ids = scratch.ids;
        auto& starts = scratch.starts;
        if (ids.size() < text.size()) ids.resize(text.size()); // at most one character per byte
        starts.clear();
        std::uint32_t prev = 0, n = 0;
        for (std::size_t i = 0; i < text.size(); ++n) {
            const std::uint32_t c = char_id(text, i);
            if (c != 0) {
                if (prev != 0 && pair_possible(prev, c)) starts.push_back(n - 1);
                if (single_[c]) starts.push_back(n);
            }
            ids[n] = c;
            prev = c;
        }
        if (starts.empty()) return;
        // Each candidate costs at most max_depth_ steps; a pass costs one step per character.
        if (starts.size() * max_depth_ > 2 * std::size_t{n} + 64) {
            scan_automaton(ids.data(), n, found);
            return;
        }
        // A position can be listed twice (a one-character keyword there, and a pair from it).
        std::uint32_t last = none;
        for (const std::uint32_t at : starts) {
            if (at == last) continue;
            last = at;
            std::uint32_t s = root_[ids[at]];
            if (s == none) continue; // a pair hash collision on a character no keyword starts with
            for (std::size_t k = at;;) {
                if (nodes_[s].pattern != none) found(nodes_[s].pattern);
                if (++k == n || ids[k] == 0) break;
                s = step(s, ids[k]);
                if (s == none) break;
            }
        }
    }

    /// The length in characters of the longest pattern.
    [[nodiscard]] std::size_t max_depth() const noexcept { return max_depth_; }

private:
    static constexpr std::uint32_t none = 0xFFFFFFFF;
    static constexpr unsigned pair_bits = 17; ///< 16 KB: fits L1 beside the text

    struct ScanScratch {
        std::vector<std::uint32_t> ids;    ///< char id of each character of the text
        std::vector<std::uint32_t> starts; ///< character positions where a keyword may start
    };

    [[nodiscard]] static std::uint32_t pair_hash(std::uint32_t a, std::uint32_t b) noexcept
    {
        return ((a * 0x9E3779B1u) ^ (b * 0x85EBCA77u)) >> (32 - pair_bits);
    }
    [[nodiscard]] bool pair_possible(std::uint32_t a, std::uint32_t b) const noexcept
    {
        const auto h = pair_hash(a, b);
        return (pairs_[h >> 6] >> (h & 63)) & 1u;
    }

    template <class F>
    void scan_automaton(const std::uint32_t* ids, std::uint32_t n, F& found) const
    {
        std::uint32_t s = 0;
        for (std::uint32_t i = 0; i < n; ++i) {
            const std::uint32_t c = ids[i];
            if (c == 0) { s = 0; continue; } // in no keyword: no match can span it
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

    struct Node {
        std::uint32_t first_edge = 0; ///< edges_[first_edge, first_edge + edge_count), sorted by char
        std::uint32_t edge_count = 0;
        std::uint32_t fail = 0;
        std::uint32_t dict = none;    ///< nearest node on the failure chain that ends a pattern
        std::uint32_t pattern = none; ///< pattern ending exactly here
        std::uint32_t dense = none;   ///< offset of a full transition row in dense_, for busy nodes
    };
    struct Edge {
        std::uint32_t ch;
        std::uint32_t target;
    };

    /// Decodes the code point at `i` and advances `i`; a stray byte b becomes 0x110000 + b.
    static std::uint32_t decode(std::string_view s, std::size_t& i) noexcept
    {
        const auto b0 = static_cast<unsigned char>(s[i]);
        auto cont = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]) & 0x3Fu; };
        auto ok = [&](std::size_t n) {
            if (i + n > s.size()) return false;
            for (std::size_t k = 1; k < n; ++k) {
                if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
            }
            return true;
        };
        std::uint32_t cp = 0;
        if (b0 < 0x80) { cp = b0; i += 1; }
        else if ((b0 & 0xE0) == 0xC0 && ok(2)) { cp = ((b0 & 0x1Fu) << 6) | cont(1); i += 2; }
        else if ((b0 & 0xF0) == 0xE0 && ok(3)) { cp = ((b0 & 0x0Fu) << 12) | (cont(1) << 6) | cont(2); i += 3; }
        else if ((b0 & 0xF8) == 0xF0 && ok(4)) { cp = ((b0 & 0x07u) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3); i += 4; }
        else { cp = 0x110000u + b0; i += 1; }
        return cp;
    }

    /// Decodes the character at `i`, advances `i`, and returns its id (0: in no pattern).
    [[nodiscard]] std::uint32_t char_id(std::string_view s, std::size_t& i) const noexcept
    {
        const auto cp = decode(s, i);
        if (cp < bmp_.size()) return bmp_[cp];
        if (astral_.empty()) return 0;
        auto it = astral_.find(cp);
        return it == astral_.end() ? 0 : it->second;
    }

    [[nodiscard]] std::uint32_t step(std::uint32_t s, std::uint32_t c) const noexcept
    {
        const Node& n = nodes_[s];
        if (n.dense != none) return dense_[n.dense + c];
        const Edge* e = edges_.data() + n.first_edge;
        const Edge* end = e + n.edge_count;
        if (n.edge_count > 8) {
            // Binary search over the sorted edges.
            std::size_t lo = 0, hi = n.edge_count;
            while (lo < hi) {
                const std::size_t mid = (lo + hi) / 2;
                if (e[mid].ch < c) lo = mid + 1;
                else hi = mid;
            }
            return lo < n.edge_count && e[lo].ch == c ? e[lo].target : none;
        }
        for (; e != end; ++e) {
            if (e->ch == c) return e->target;
            if (e->ch > c) break;
        }
        return none;
    }

    std::vector<std::string> patterns_;
    std::vector<Node> nodes_;
    std::vector<Edge> edges_;
    std::vector<std::uint32_t> root_;  ///< char id → child of the root (dense)
    std::vector<std::uint32_t> dense_; ///< full rows (one entry per char id) of busy nodes
    std::vector<std::uint8_t> single_; ///< char id → whether that one character is a pattern
    std::vector<std::uint64_t> pairs_; ///< bitmap of pair_hash(first, second) of longer patterns
    std::size_t max_depth_ = 0;
    std::vector<std::uint32_t> bmp_;   ///< code point (BMP) → char id (0: in no pattern)
    std::unordered_map<std::uint32_t, std::uint32_t> astral_; ///< other code points → char id
    struct Building; ///< the trie while patterns are added; released by `build`
    std::unique_ptr<Building> building_;
};

} // namespace qunbot::rules
