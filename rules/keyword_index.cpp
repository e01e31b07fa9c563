#include "rules/keyword_index.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace qunbot::rules {

// While patterns are being added the trie lives in maps; `build` flattens it into sorted edge
// arrays in breadth-first order, which keeps 10,000 keywords compact and the scan cache-friendly.
struct KeywordIndex::Building {
    std::vector<std::map<std::uint32_t, std::uint32_t>> children{1};
    std::vector<std::uint32_t> pattern_at{0xFFFFFFFF};
    std::unordered_map<std::string, std::uint32_t> ids;
    std::unordered_map<std::uint32_t, std::uint32_t> char_ids; ///< code point → char id (from 1)
};

KeywordIndex::KeywordIndex() : building_(std::make_unique<Building>()) {}
KeywordIndex::~KeywordIndex() = default;
KeywordIndex::KeywordIndex(KeywordIndex&&) noexcept = default;
KeywordIndex& KeywordIndex::operator=(KeywordIndex&&) noexcept = default;

std::uint32_t KeywordIndex::add(std::string_view pattern)
{
    if (!building_) throw std::logic_error("KeywordIndex::add after build");
    if (pattern.empty()) throw std::invalid_argument("KeywordIndex: empty pattern");
    auto& b = *building_;
    if (auto it = b.ids.find(std::string(pattern)); it != b.ids.end()) return it->second;
    std::uint32_t s = 0;
    for (std::size_t i = 0; i < pattern.size();) {
        const auto cp = decode(pattern, i);
        const auto c = b.char_ids.try_emplace(cp, static_cast<std::uint32_t>(b.char_ids.size() + 1)).first->second;
        auto it = b.children[s].find(c);
        if (it == b.children[s].end()) {
            const auto next = static_cast<std::uint32_t>(b.children.size());
            b.children[s].emplace(c, next);
            b.children.emplace_back();
            b.pattern_at.push_back(none);
            s = next;
        } else {
            s = it->second;
        }
    }
    const auto id = static_cast<std::uint32_t>(patterns_.size());
    patterns_.emplace_back(pattern);
    b.pattern_at[s] = id;
    b.ids.emplace(std::string(pattern), id);
    return id;
}

void KeywordIndex::build()
{
    if (!building_) return;
    const Building b = std::move(*building_);
    building_.reset();
    const std::size_t n = b.children.size();

    bmp_.assign(0x10000, 0);
    astral_.clear();
    for (const auto& [cp, id] : b.char_ids) {
        if (cp < bmp_.size()) bmp_[cp] = id;
        else astral_.emplace(cp, id);
    }

    // Renumber breadth-first: the shallow nodes, which nearly every character of a message
    // visits, end up next to each other in memory instead of scattered in insertion order.
    std::vector<std::uint32_t> order{0}, renum(n, none);
    renum[0] = 0;
    order.reserve(n);
    for (std::size_t qi = 0; qi < order.size(); ++qi) {
        for (const auto& [c, t] : b.children[order[qi]]) {
            renum[t] = static_cast<std::uint32_t>(order.size());
            order.push_back(t);
        }
    }
    std::vector<std::vector<std::pair<std::uint32_t, std::uint32_t>>> kids(n);
    nodes_.assign(n, Node{});
    edges_.clear();
    for (std::size_t i = 0; i < n; ++i) {
        const auto old = order[i];
        for (const auto& [c, t] : b.children[old]) kids[i].emplace_back(c, renum[t]);
        nodes_[i].first_edge = static_cast<std::uint32_t>(edges_.size());
        nodes_[i].edge_count = static_cast<std::uint32_t>(kids[i].size());
        nodes_[i].pattern = b.pattern_at[old];
        for (const auto& [c, t] : kids[i]) edges_.push_back(Edge{c, t});
    }
    root_.assign(b.char_ids.size() + 1, none);
    for (const auto& [c, t] : kids[0]) root_[c] = t;
    // Busy nodes (a common first character with many continuations) get a full row: one load
    // instead of a search. Shallow nodes come first, and the rows are capped at 32 MB.
    const std::size_t width = root_.size();
    constexpr std::size_t max_entries = 8u << 20;
    dense_.clear();
    for (std::size_t i = 1; i < n && dense_.size() + width <= max_entries; ++i) {
        if (nodes_[i].edge_count < 12) continue;
        nodes_[i].dense = static_cast<std::uint32_t>(dense_.size());
        dense_.resize(dense_.size() + width, none);
        for (const auto& [c, t] : kids[i]) dense_[nodes_[i].dense + c] = t;
    }

    // The prefilter: one-character patterns by char id, and the first two characters of the others.
    single_.assign(width, 0);
    pairs_.assign((std::size_t{1} << pair_bits) / 64, 0);
    max_depth_ = 0;
    for (const auto& [c, t] : kids[0]) {
        if (nodes_[t].pattern != none) single_[c] = 1;
        for (const auto& [c2, t2] : kids[t]) {
            (void)t2;
            const auto h = pair_hash(c, c2);
            pairs_[h >> 6] |= std::uint64_t{1} << (h & 63);
        }
    }
    for (const auto& p : patterns_) {
        std::size_t chars = 0;
        for (std::size_t i = 0; i < p.size(); ++chars) decode(p, i);
        max_depth_ = std::max(max_depth_, chars);
    }

    // Node order is breadth-first, so a node's failure target is final before its children's.
    for (std::uint32_t s = 0; s < n; ++s) {
        for (const auto& [c, t] : kids[s]) {
            std::uint32_t target = none;
            if (s != 0) {
                std::uint32_t f = nodes_[s].fail;
                for (;;) {
                    target = f == 0 ? root_[c] : step(f, c);
                    if (target != none || f == 0) break;
                    f = nodes_[f].fail;
                }
            }
            nodes_[t].fail = target == none ? 0 : target;
            const auto& ft = nodes_[nodes_[t].fail];
            nodes_[t].dict = nodes_[t].fail != 0 && ft.pattern != none ? nodes_[t].fail : ft.dict;
        }
    }
}

} // namespace qunbot::rules
