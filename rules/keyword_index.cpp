#include "rules/keyword_index.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <unordered_map>

namespace qunbot::rules {

// While patterns are being added the trie lives in maps; `build` flattens it into sorted edge
// arrays, which keeps 10,000 keywords in a few MB and the scan cache-friendly.
struct KeywordIndex::Building {
    std::vector<std::map<unsigned char, std::uint32_t>> children{1};
    std::vector<std::uint32_t> pattern_at{0xFFFFFFFF};
    std::unordered_map<std::string, std::uint32_t> ids;
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
    for (const char ch : pattern) {
        const auto c = static_cast<unsigned char>(ch);
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
    const std::size_t n = b.children.size();
    nodes_.assign(n, Node{});
    edges_.clear();
    for (std::size_t i = 0; i < n; ++i) {
        nodes_[i].first_edge = static_cast<std::uint32_t>(edges_.size());
        nodes_[i].edge_count = static_cast<std::uint32_t>(b.children[i].size());
        nodes_[i].pattern = b.pattern_at[i];
        for (const auto& [c, t] : b.children[i]) edges_.push_back(Edge{c, t});
    }
    std::fill(std::begin(root_), std::end(root_), none);
    for (const auto& [c, t] : b.children[0]) root_[c] = t;

    // Breadth-first, so a node's failure target is finished before the node itself.
    std::vector<std::uint32_t> queue;
    queue.reserve(n);
    for (const auto& [c, t] : b.children[0]) {
        nodes_[t].fail = 0;
        queue.push_back(t);
    }
    for (std::size_t qi = 0; qi < queue.size(); ++qi) {
        const auto s = queue[qi];
        for (const auto& [c, t] : b.children[s]) {
            std::uint32_t f = nodes_[s].fail;
            std::uint32_t target = none;
            for (;;) {
                target = f == 0 ? root_[c] : step(f, c);
                if (target != none || f == 0) break;
                f = nodes_[f].fail;
            }
            nodes_[t].fail = target == none ? 0 : target;
            const auto& ft = nodes_[nodes_[t].fail];
            nodes_[t].dict = ft.pattern != none ? nodes_[t].fail : ft.dict;
            queue.push_back(t);
        }
    }
    building_.reset();
}

} // namespace qunbot::rules
