#include "rules/draw.hpp"

#include "bot/core/hex.hpp"
#include "rules/engine.hpp"
#include "rules/text.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace qunbot::rules {

std::string_view to_string(PrizeSpec::Kind k) noexcept
{
    switch (k) {
    case PrizeSpec::Kind::equal: return "equal";
    case PrizeSpec::Kind::random: return "random";
    case PrizeSpec::Kind::tiers: return "tiers";
    }
    return "?";
}

std::string_view to_string(PayoutMethod m) noexcept
{
    return m == PayoutMethod::wechat_pay ? "wechat_pay" : "manual";
}

std::string format_fen(std::int64_t fen)
{
    const bool negative = fen < 0;
    const auto a = negative ? -fen : fen;
    const auto cents = a % 100;
    return std::string(negative ? "-" : "") + "¥" + std::to_string(a / 100) + "." + (cents < 10 ? "0" : "") + std::to_string(cents);
}

std::string PrizeSpec::to_json() const
{
    nlohmann::json j{{"kind", std::string(rules::to_string(kind))}, {"winners", winners}, {"amount_fen", amount_fen},
                     {"budget_fen", budget_fen}, {"min_fen", min_fen}};
    auto t = nlohmann::json::array();
    for (const auto& tier : tiers) t.push_back({{"name", tier.name}, {"winners", tier.winners}, {"amount_fen", tier.amount_fen}});
    j["tiers"] = std::move(t);
    return j.dump();
}

std::optional<PrizeSpec> PrizeSpec::from_json(std::string_view json)
{
    const auto j = nlohmann::json::parse(json, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    try {
        PrizeSpec p;
        const auto kind = j.at("kind").get<std::string>();
        if (kind == "equal") p.kind = Kind::equal;
        else if (kind == "random") p.kind = Kind::random;
        else if (kind == "tiers") p.kind = Kind::tiers;
        else return std::nullopt;
        p.winners = j.at("winners").get<int>();
        p.amount_fen = j.at("amount_fen").get<std::int64_t>();
        p.budget_fen = j.at("budget_fen").get<std::int64_t>();
        p.min_fen = j.at("min_fen").get<std::int64_t>();
        for (const auto& t : j.at("tiers")) {
            p.tiers.push_back({t.at("name").get<std::string>(), t.at("winners").get<int>(), t.at("amount_fen").get<std::int64_t>()});
        }
        return p;
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
}

std::string PrizeSpec::describe() const
{
    switch (kind) {
    case Kind::equal: return std::to_string(winners) + " × " + format_fen(amount_fen);
    case Kind::random: return std::to_string(winners) + "人瓜分 " + format_fen(budget_fen);
    case Kind::tiers: {
        std::string s;
        for (const auto& t : tiers) s += (s.empty() ? "" : ", ") + t.name + " " + std::to_string(t.winners) + " × " + format_fen(t.amount_fen);
        return s;
    }
    }
    return {};
}

bool is_entry_text(const DrawSpec& spec, std::string_view text)
{
    if (spec.keyword_norms.empty()) return false;
    auto n = normalize(text, Fold::keyword);
    // "抽奖!" and "抽奖～" enter as well as "抽奖": strip trailing ASCII and full-width punctuation.
    static constexpr std::string_view tails[] = {"!", "！", "。", ".", "~", "～", "?", "？", ",", "，"};
    for (bool again = true; again && !n.empty();) {
        again = false;
        for (auto t : tails) {
            if (n.size() >= t.size() && std::string_view(n).ends_with(t)) {
                n.resize(n.size() - t.size());
                again = true;
            }
        }
    }
    return std::find(spec.keyword_norms.begin(), spec.keyword_norms.end(), n) != spec.keyword_norms.end();
}

// ---- the algorithm -------------------------------------------------------------------------

namespace {

void sha256(std::string_view data, unsigned char out[32])
{
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
        throw std::runtime_error("SHA-256 failed in OpenSSL");
    }
}

} // namespace

std::string sha256_hex(std::string_view data)
{
    unsigned char d[32];
    sha256(data, d);
    return core::to_hex(d, 32);
}

std::string new_seed()
{
    unsigned char b[32];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("the system random generator failed");
    return core::to_hex(b, sizeof b);
}

std::string commitment_of(std::string_view seed) { return sha256_hex(seed); }

std::string entries_digest(const std::vector<std::string>& entries)
{
    std::string joined;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (i) joined += '\n';
        joined += entries[i];
    }
    return sha256_hex(joined);
}

DrawStream::DrawStream(std::string_view seed, std::string_view digest, std::string_view label)
    : prefix_(std::string(seed) + ":" + std::string(digest) + ":" + std::string(label) + ":")
{
}

std::uint64_t DrawStream::next()
{
    if (used_ == 4) {
        sha256(prefix_ + std::to_string(counter_++), block_);
        used_ = 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | block_[used_ * 8 + i];
    ++used_;
    return v;
}

std::uint64_t DrawStream::below(std::uint64_t n)
{
    if (n == 0) throw std::logic_error("DrawStream::below(0)");
    // Values at or above the largest multiple of n would favour small results: skip them.
    const std::uint64_t limit = std::uint64_t(0) - (std::uint64_t(0) - n) % n; // 2^64 - (2^64 mod n), 0 meaning 2^64
    for (;;) {
        const auto v = next();
        if (limit == 0 || v < limit) return v % n;
    }
}

std::vector<std::size_t> pick_order(std::string_view seed, std::string_view digest, std::size_t count, std::size_t picks)
{
    picks = std::min(picks, count);
    std::vector<std::size_t> positions(count);
    for (std::size_t i = 0; i < count; ++i) positions[i] = i;
    DrawStream stream(seed, digest, "pick");
    std::vector<std::size_t> out;
    out.reserve(picks);
    for (std::size_t k = 0; k < picks; ++k) {
        const auto j = k + static_cast<std::size_t>(stream.below(count - k));
        std::swap(positions[k], positions[j]);
        out.push_back(positions[k]);
    }
    return out;
}

std::vector<std::int64_t> split_budget(std::int64_t budget, std::size_t n, std::int64_t min, std::string_view seed,
                                       std::string_view digest)
{
    if (n == 0) return {};
    const auto spare = budget - static_cast<std::int64_t>(n) * min;
    if (spare < 0 || min < 0) throw std::logic_error("split_budget: budget below n * min");
    DrawStream stream(seed, digest, "split");
    std::vector<std::int64_t> cuts;
    cuts.reserve(n + 1);
    cuts.push_back(0);
    for (std::size_t i = 0; i + 1 < n; ++i) cuts.push_back(static_cast<std::int64_t>(stream.below(static_cast<std::uint64_t>(spare) + 1)));
    cuts.push_back(spare);
    std::sort(cuts.begin(), cuts.end());
    std::vector<std::int64_t> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.push_back(min + cuts[i + 1] - cuts[i]);
    return out;
}

std::size_t winner_count(const PrizeSpec& prizes, std::size_t entries) noexcept
{
    return std::min(entries, static_cast<std::size_t>(std::max(0, prizes.winners)));
}

std::vector<Award> awards(const PrizeSpec& prizes, std::size_t winners, std::string_view seed, std::string_view digest)
{
    std::vector<Award> out;
    out.reserve(winners);
    switch (prizes.kind) {
    case PrizeSpec::Kind::equal:
        for (std::size_t i = 0; i < winners; ++i) out.push_back({"", prizes.amount_fen});
        break;
    case PrizeSpec::Kind::random:
        for (const auto a : split_budget(prizes.budget_fen, winners, prizes.min_fen, seed, digest)) out.push_back({"", a});
        break;
    case PrizeSpec::Kind::tiers:
        for (const auto& t : prizes.tiers) {
            for (int i = 0; i < t.winners && out.size() < winners; ++i) out.push_back({t.name, t.amount_fen});
        }
        break;
    }
    return out;
}

std::vector<std::string> verify_draw(std::string_view seed, std::string_view commitment, const std::vector<std::string>& entries,
                                     std::string_view digest, const PrizeSpec& prizes, const std::vector<Pick>& picks)
{
    std::vector<std::string> problems;
    if (commitment_of(seed) != commitment) {
        problems.push_back("the seed does not match the commitment published at the opening (sha256(seed) = " +
                           commitment_of(seed) + ", published " + std::string(commitment) + ")");
    }
    if (!std::is_sorted(entries.begin(), entries.end()) || std::adjacent_find(entries.begin(), entries.end()) != entries.end()) {
        problems.push_back("the stored entries are not a sorted list of distinct members");
        return problems;
    }
    if (entries_digest(entries) != digest) {
        problems.push_back("the entries no longer match the digest taken at the draw (entries were changed afterwards)");
    }
    const auto winners = winner_count(prizes, entries.size());
    const auto expected_awards = awards(prizes, winners, seed, digest);
    const auto order = pick_order(seed, digest, entries.size(), picks.size());
    if (order.size() < picks.size()) problems.push_back("more picks stored than there are entries");
    std::vector<int> holder(winners, -1); // rank → current pick
    for (std::size_t i = 0; i < picks.size(); ++i) {
        const auto& p = picks[i];
        if (p.index != i) {
            problems.push_back("pick " + std::to_string(i) + " is missing (picks must be numbered 0, 1, ... without gaps)");
            break;
        }
        if (i < order.size() && entries[order[i]] != p.member) {
            problems.push_back("pick " + std::to_string(i) + " should be " + entries[order[i]] + ", stored " + p.member);
        }
        if (p.rank < 0 || static_cast<std::size_t>(p.rank) >= winners) {
            problems.push_back("pick " + std::to_string(i) + " fills rank " + std::to_string(p.rank) + " of only " + std::to_string(winners));
            continue;
        }
        // Initial picks fill ranks in order; a reroll fills a rank whose holder was replaced.
        if (i < winners && p.rank != static_cast<int>(i)) {
            problems.push_back("pick " + std::to_string(i) + " should fill rank " + std::to_string(i));
        }
        if (i >= winners) {
            const auto prev = holder[static_cast<std::size_t>(p.rank)];
            if (prev < 0 || !picks[static_cast<std::size_t>(prev)].replaced) {
                problems.push_back("reroll pick " + std::to_string(i) + " fills rank " + std::to_string(p.rank) + ", whose winner was not replaced");
            }
        }
        holder[static_cast<std::size_t>(p.rank)] = static_cast<int>(i);
        if (p.amount_fen != expected_awards[static_cast<std::size_t>(p.rank)].amount_fen) {
            problems.push_back("pick " + std::to_string(i) + " (rank " + std::to_string(p.rank) + ") should get " +
                               format_fen(expected_awards[static_cast<std::size_t>(p.rank)].amount_fen) + ", stored " + format_fen(p.amount_fen));
        }
    }
    if (picks.size() < winners) {
        problems.push_back(std::to_string(winners) + " winners expected, " + std::to_string(picks.size()) + " picks stored");
    }
    return problems;
}

// ---- eligibility ---------------------------------------------------------------------------

std::optional<std::string> ineligible(const Eligibility& rules, const EntrantFacts& facts, std::int64_t opened_ms, std::int64_t now_ms,
                                      bool via_join)
{
    if (facts.staff && !rules.allow_staff) return "staff do not take part";
    if (facts.blacklisted && rules.exclude_blacklisted) return "blacklisted";
    if (!facts.in_group) return "not a member of the group";
    if (rules.joined_before_open && !via_join) {
        if (!facts.joined_s) return "join time unknown (not seen joining before the draw opened)";
        if (*facts.joined_s * 1000 >= opened_ms) return "joined after the draw opened";
    }
    auto has = [&](const std::string& t) { return std::find(facts.tags.begin(), facts.tags.end(), t) != facts.tags.end(); };
    if (!rules.tags_required.empty() && std::none_of(rules.tags_required.begin(), rules.tags_required.end(), has)) {
        return "lacks a required tag";
    }
    for (const auto& t : rules.tags_excluded) {
        if (has(t)) return "has the excluded tag " + t;
    }
    if (rules.not_won_days > 0 && facts.last_win_ms > 0 && now_ms - facts.last_win_ms < std::int64_t(rules.not_won_days) * 86'400'000) {
        return "won in this series within " + std::to_string(rules.not_won_days) + " days";
    }
    if (rules.active_at_least > 0) {
        int active = 0;
        for (int d = 0; d < rules.active_days && d < 64; ++d) active += ((facts.active_bits >> d) & 1u) ? 1 : 0;
        if (active < rules.active_at_least) {
            return "active on " + std::to_string(active) + " of the last " + std::to_string(rules.active_days) + " days, needs " +
                   std::to_string(rules.active_at_least);
        }
    }
    return std::nullopt;
}

} // namespace qunbot::rules

namespace qunbot::rules {

std::string render_draw(const Template& t, const DrawMessage& m, const GroupInfo& group, std::int64_t now_ms, int utc_offset_s,
                        std::vector<std::string>* mentions)
{
    std::string out;
    for (const auto& p : t.parts()) {
        if (!p.is_var) {
            out += p.literal;
            continue;
        }
        std::string v;
        switch (p.var) {
        case Var::group_name: v = group.name; break;
        case Var::group_id: v = group.id; break;
        case Var::group_member_count: v = std::to_string(group.member_count); break;
        case Var::group_owner: v = group.owner; break;
        case Var::now: v = format_time_at(now_ms, utc_offset_s, p.date_format.empty() ? "%Y-%m-%d %H:%M" : p.date_format); break;
        case Var::draw_id: v = m.spec ? m.spec->id : ""; break;
        case Var::draw_round: v = std::to_string(m.round); break;
        case Var::draw_keyword: v = m.spec && !m.spec->keywords.empty() ? m.spec->keywords.front() : ""; break;
        case Var::draw_prizes: v = m.spec ? m.spec->prizes.describe() : ""; break;
        case Var::draw_closes: v = m.closes; break;
        case Var::draw_commitment: v = m.commitment; break;
        case Var::draw_seed: v = m.seed; break;
        case Var::draw_digest: v = m.digest; break;
        case Var::draw_entries: v = std::to_string(m.entries); break;
        case Var::draw_winners:
            for (const auto& w : m.winners) {
                if (!v.empty()) v += "\n";
                v += "@" + (w.name.empty() ? w.member : w.name);
                if (!w.tier.empty()) v += " " + w.tier;
                v += " " + format_fen(w.amount_fen);
                if (mentions && std::find(mentions->begin(), mentions->end(), w.member) == mentions->end()) mentions->push_back(w.member);
            }
            break;
        default: break; // not provided for draws; the loader rejects them
        }
        if (v.empty() && p.has_fallback) v = p.fallback;
        out += v;
    }
    return out;
}

} // namespace qunbot::rules
