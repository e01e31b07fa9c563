// The draw algorithm against values computed outside qunbot: SHA-256 from FIPS 180-2 and
// `sha256sum`, stream values, pick order and split from a 25-line Python re-implementation of
// the algorithm as the README states it (hashlib; not from qunbot's output).
#include "rules/draw.hpp"
#include "rules/engine.hpp"
#include "rules/loader.hpp"

#include <catch2/catch.hpp>

#include <numeric>
#include <random>
#include <set>

using namespace qunbot::rules;

namespace {


std::string seven_f() { std::string s; for (int i = 0; i < 32; ++i) s += "7f"; return s; }
const std::vector<std::string> five{"wmA", "wmB", "wmC", "wmD", "wmE"};

std::string headlines(const LoadResult& r)
{
    std::string s;
    for (const auto& d : r.diagnostics) s += d.headline() + "\n";
    return s;
}

bool has(const LoadResult& r, const std::string& headline)
{
    for (const auto& d : r.diagnostics) if (d.headline() == headline) return true;
    return false;
}

} // namespace

TEST_CASE("SHA-256, commitment and entries digest match independent values", "[draw]")
{
    // FIPS 180-2, appendix B.1.
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const auto seed = seven_f();
    CHECK(commitment_of(seed) == "587078d635168058f0e4dcf8ebeca05ae6b845ba2392308953a7b902c4d20b94");
    CHECK(entries_digest(five) == "99a607bb136c4a553fac9008b7aa57ef6a29ff88cbcdfeef76ad156be8c502fa");
    const auto fresh = new_seed();
    CHECK(fresh.size() == 64);
    CHECK(fresh.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(new_seed() != fresh);
}

TEST_CASE("the stream, the picks and the split reproduce the reference implementation", "[draw]")
{
    const auto seed = seven_f();
    const auto digest = entries_digest(five);
    DrawStream s(seed, digest, "pick");
    CHECK(s.next() == 11829879776683405280ull);
    CHECK(pick_order(seed, digest, 5, 5) == std::vector<std::size_t>{0, 1, 2, 4, 3});
    CHECK(split_budget(1000, 3, 100, seed, digest) == std::vector<std::int64_t>{244, 453, 303});
    // The first picks do not depend on how many are taken: rerolls extend, never reshuffle.
    CHECK(pick_order(seed, digest, 5, 2) == std::vector<std::size_t>{0, 1});
}

TEST_CASE("below() is within range and covers it", "[draw]")
{
    DrawStream s("seed", "digest", "t");
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 2000; ++i) {
        const auto v = s.below(7);
        REQUIRE(v < 7);
        seen.insert(v);
    }
    CHECK(seen.size() == 7);
    CHECK(s.below(1) == 0);
    // n = 2^63 + 1 rejects almost half of all values; it must still terminate and stay in range.
    const std::uint64_t big = (1ull << 63) + 1;
    for (int i = 0; i < 50; ++i) REQUIRE(s.below(big) < big);
}

TEST_CASE("the random split always adds up to the budget and respects the minimum", "[draw][property]")
{
    std::mt19937_64 gen(20261124);
    for (int round = 0; round < 3000; ++round) {
        const std::size_t n = 1 + gen() % 200;
        const std::int64_t min = 1 + static_cast<std::int64_t>(gen() % 500);
        const std::int64_t budget = min * static_cast<std::int64_t>(n) + static_cast<std::int64_t>(gen() % 1'000'000);
        const auto seed = std::to_string(gen());
        const auto parts = split_budget(budget, n, min, seed, "d");
        REQUIRE(parts.size() == n);
        REQUIRE(std::accumulate(parts.begin(), parts.end(), std::int64_t{0}) == budget);
        for (const auto p : parts) REQUIRE(p >= min);
    }
    // No slack: everyone gets exactly the minimum.
    CHECK(split_budget(300, 3, 100, "s", "d") == std::vector<std::int64_t>{100, 100, 100});
    CHECK_THROWS(split_budget(299, 3, 100, "s", "d"));
}

TEST_CASE("picks are a permutation prefix: never the same entry twice", "[draw][property]")
{
    for (int t = 0; t < 200; ++t) {
        const auto seed = sha256_hex(std::to_string(t));
        const std::size_t count = 1 + static_cast<std::size_t>(t % 37);
        const auto order = pick_order(seed, "d", count, count);
        std::set<std::size_t> unique(order.begin(), order.end());
        REQUIRE(unique.size() == count);
        REQUIRE(*unique.rbegin() == count - 1);
    }
}

TEST_CASE("awards: equal, tiers filled from the top, random over the winners there are", "[draw]")
{
    PrizeSpec tiers;
    tiers.kind = PrizeSpec::Kind::tiers;
    tiers.tiers = {{"一等奖", 1, 5000}, {"二等奖", 2, 2000}, {"三等奖", 3, 500}};
    tiers.winners = 6;
    CHECK(winner_count(tiers, 100) == 6);
    CHECK(winner_count(tiers, 2) == 2);
    const auto a = awards(tiers, 4, "s", "d");
    REQUIRE(a.size() == 4);
    CHECK(a[0].tier == "一等奖");
    CHECK(a[0].amount_fen == 5000);
    CHECK(a[2].tier == "二等奖");
    CHECK(a[3].tier == "三等奖");
    CHECK(a[3].amount_fen == 500);

    PrizeSpec random;
    random.kind = PrizeSpec::Kind::random;
    random.winners = 10;
    random.budget_fen = 10000;
    random.min_fen = 100;
    const auto r = awards(random, 3, "s", "d"); // only 3 entered: they share the whole budget
    CHECK(r[0].amount_fen + r[1].amount_fen + r[2].amount_fen == 10000);
    CHECK(random.describe() == "10人瓜分 ¥100.00");
    CHECK(format_fen(5) == "¥0.05");
    CHECK(format_fen(123456) == "¥1234.56");

    const auto json = tiers.to_json();
    const auto back = PrizeSpec::from_json(json);
    REQUIRE(back.has_value());
    CHECK(back->to_json() == json);
    CHECK_FALSE(PrizeSpec::from_json("{\"kind\":\"lucky\"}").has_value());
}

TEST_CASE("verification accepts an honest draw with a reroll and names every tampering", "[draw]")
{
    const auto seed = seven_f();
    const auto commitment = commitment_of(seed);
    const auto digest = entries_digest(five);
    PrizeSpec p;
    p.kind = PrizeSpec::Kind::random;
    p.winners = 2;
    p.budget_fen = 1000;
    p.min_fen = 100;
    const auto amounts = awards(p, 2, seed, digest);
    // Order [0, 1, 2, ...]: wmA and wmB win; wmB is rerolled and wmC takes rank 1.
    std::vector<Pick> picks{{0, "wmA", 0, amounts[0].amount_fen, false},
                            {1, "wmB", 1, amounts[1].amount_fen, true},
                            {2, "wmC", 1, amounts[1].amount_fen, false}};
    CHECK(verify_draw(seed, commitment, five, digest, p, picks).empty());

    SECTION("another seed than the committed one") {
        CHECK_FALSE(verify_draw(sha256_hex("other"), commitment, five, digest, p, picks).empty());
    }
    SECTION("a winner swapped") {
        auto bad = picks;
        bad[0].member = "wmE";
        const auto problems = verify_draw(seed, commitment, five, digest, p, bad);
        REQUIRE(problems.size() == 1);
        CHECK(problems[0] == "pick 0 should be wmA, stored wmE");
    }
    SECTION("an amount changed") {
        auto bad = picks;
        bad[2].amount_fen += 1;
        CHECK(verify_draw(seed, commitment, five, digest, p, bad).size() == 1);
    }
    SECTION("an entry added after the draw") {
        auto more = five;
        more.push_back("wmF");
        CHECK_FALSE(verify_draw(seed, commitment, more, digest, p, picks).empty());
    }
    SECTION("a reroll of a winner who was not replaced") {
        auto bad = picks;
        bad[1].replaced = false;
        CHECK_FALSE(verify_draw(seed, commitment, five, digest, p, bad).empty());
    }
}

TEST_CASE("eligibility: every rule gives its reason", "[draw]")
{
    Eligibility e;
    e.tags_required = {"会员"};
    e.tags_excluded = {"黑名单"};
    e.not_won_days = 7;
    e.active_at_least = 2;
    e.active_days = 7;
    EntrantFacts ok;
    ok.in_group = true;
    ok.joined_s = 1'700'000'000;
    ok.tags = {"会员"};
    ok.active_bits = 0b101;
    const std::int64_t opened = 1'800'000'000'000, now = opened + 3'600'000;
    CHECK_FALSE(ineligible(e, ok, opened, now, false).has_value());

    auto f = ok;
    f.staff = true;
    CHECK(ineligible(e, f, opened, now, false) == "staff do not take part");
    f = ok;
    f.blacklisted = true;
    CHECK(ineligible(e, f, opened, now, false) == "blacklisted");
    f = ok;
    f.joined_s = opened / 1000; // the very second it opened
    CHECK(ineligible(e, f, opened, now, false) == "joined after the draw opened");
    CHECK_FALSE(ineligible(e, f, opened, now, true).has_value()); // entering by joining
    f = ok;
    f.joined_s.reset();
    CHECK(ineligible(e, f, opened, now, false)->starts_with("join time unknown"));
    f = ok;
    f.tags = {};
    CHECK(ineligible(e, f, opened, now, false) == "lacks a required tag");
    f = ok;
    f.tags = {"会员", "黑名单"};
    CHECK(ineligible(e, f, opened, now, false) == "has the excluded tag 黑名单");
    f = ok;
    f.last_win_ms = now - 6 * 86'400'000LL;
    CHECK(ineligible(e, f, opened, now, false) == "won in this series within 7 days");
    f.last_win_ms = now - 7 * 86'400'000LL;
    CHECK_FALSE(ineligible(e, f, opened, now, false).has_value());
    f = ok;
    f.active_bits = 0b1;
    CHECK(ineligible(e, f, opened, now, false) == "active on 1 of the last 7 days, needs 2");
    f = ok;
    f.in_group = false;
    CHECK(ineligible(e, f, opened, now, false) == "not a member of the group");
}

TEST_CASE("entry keywords match variants and trailing punctuation only", "[draw]")
{
    DrawSpec d;
    d.keywords = {"抽奖"};
    d.keyword_norms = {"抽奖"};
    CHECK(is_entry_text(d, "抽奖"));
    CHECK(is_entry_text(d, " 抽 奖！！"));
    CHECK(is_entry_text(d, "抽奖~"));
    CHECK_FALSE(is_entry_text(d, "我要抽奖"));
    CHECK_FALSE(is_entry_text(d, "抽奖 吗"));
}

TEST_CASE("draws in rule files: a clean definition compiles", "[draw][loader]")
{
    const auto r = load_rule_sources({{"d.yaml", R"(version: 1
groups:
  stores: { name_glob: "*门店*" }
draws:
  - id: evening
    in: stores
    enter: { keyword: [抽奖, 参与] }
    opens: "daily 20:00"
    closes: { after: 1h, entries: 200 }
    eligible: { not_won_within: 7d, active: { days: 7, at_least: 1 }, not_tags: [黑名单] }
    prizes: { random: { winners: 10, budget_fen: 10000, min_fen: 100 } }
    payout: wechat_pay
    messages:
      open: "回复 {{ draw.keyword }} 参与,{{ draw.prizes }}。承诺值 {{ draw.commitment }}"
      result: "中奖名单:\n{{ draw.winners }}\n种子 {{ draw.seed }}"
    tag: { entrants: 参与抽奖, winners: 中奖 }
  - id: testers
    enter: { join: true }
    closes: { entries: 30 }
    prizes: { tiers: [ { name: 体验官, winners: 5, amount_fen: 100 } ] }
)"}});
    INFO(headlines(r));
    REQUIRE(r.ok());
    REQUIRE(r.rules->draws.size() == 2);
    const auto& d = r.rules->draws[0];
    CHECK(d.keyword_norms == std::vector<std::string>{"抽奖", "参与"});
    CHECK(d.has_opens);
    CHECK(d.duration_ms == 3'600'000);
    CHECK(d.close_entries == 200);
    CHECK(d.eligibility.joined_before_open);
    CHECK(d.eligibility.not_won_days == 7);
    CHECK(d.prizes.kind == PrizeSpec::Kind::random);
    CHECK(d.prizes.budget_fen == 10000);
    CHECK(d.payout == PayoutMethod::wechat_pay);
    CHECK(d.winner_tag == "中奖");
    const auto& t = r.rules->draws[1];
    CHECK(t.enter_by_join);
    CHECK_FALSE(t.eligibility.joined_before_open);
    CHECK(t.prizes.winners == 5);
    CHECK(t.prizes.budget_fen == 500);
    CHECK(r.rules->find_draw("testers") == &t);
}

TEST_CASE("draws in rule files: every error at once, with positions", "[draw][loader]")
{
    const auto r = load_rule_sources({{"d.yaml", R"(version: 1
draws:
  - id: a
    enter: { keywrd: 抽奖 }
    closes: { after: 1h }
    prizes: { random: { winners: 10, budget_fen: 500, min_fen: 100 } }
  - id: b
    enter: { keyword: 抽奖 }
    closes: { entries: 3 }
    prizes: { equal: { winners: 5, amount_fen: 1.5 } }
    messages: { open: "种子 {{ draw.seed }}" }
  - id: a
    enter: { join: true }
    eligible: { joined_before_open: true }
    closes: {}
    prizes: { tiers: [] }
)"}});
    INFO(headlines(r));
    CHECK_FALSE(r.ok());
    CHECK(has(r, "d.yaml:4:14: error: unknown key \"keywrd\" in `enter`; did you mean \"keyword\"?"));
    CHECK(has(r, "d.yaml:6:23: error: `random`: a budget of 500 fen cannot give 10 winners 100 fen each"));
    CHECK(has(r, "d.yaml:10:48: error: `amount_fen`: \"1.5\" is not a whole number of fen (分) from 1; amounts are integers in fen, e.g. 10000 for ¥100"));
    CHECK(has(r, "d.yaml:11:23: error: the opening message cannot show {{ draw.seed }}: it is not known (or must stay secret) until the draw"));
    CHECK(has(r, "d.yaml:12:9: error: duplicate draw id \"a\", first used at d.yaml:3:9"));
    CHECK(has(r, "d.yaml:14:37: error: `joined_before_open: true` excludes everyone who enters by joining"));
    CHECK(has(r, "d.yaml:15:13: error: `closes` needs `after`, `at` or `entries`"));
    CHECK(has(r, "d.yaml:16:22: error: `tiers` is a list of {name, winners, amount_fen}"));
    CHECK(has(r, "d.yaml:9:24: error: the draw closes at 3 entries but has 5 winners"));
    CHECK(r.error_count() == 9);
}

TEST_CASE("which events enter which draws: keyword messages in groups, joins where joining enters", "[draw]")
{
    const auto r = load_rule_sources({{"d.yaml", R"(version: 1
draws:
  - id: kw
    enter: { keyword: [抽奖] }
    closes: { after: 1h }
    prizes: { equal: { winners: 1, amount_fen: 100 } }
  - id: joins
    enter: { join: true }
    closes: { entries: 10 }
    prizes: { equal: { winners: 1, amount_fen: 100 } }
)"}});
    REQUIRE(r.ok());
    qunbot::core::Event m;
    m.kind = qunbot::core::EventKind::message;
    m.group_id = "wrG";
    m.actor = "wmX";
    m.text = "抽奖！";
    m.time = 1'800'000'000;
    auto e = draw_entries(*r.rules, m);
    REQUIRE(e.size() == 1);
    CHECK(e[0].draw_id == "kw");
    CHECK(e[0].member == "wmX");
    CHECK(e[0].via == "keyword");
    CHECK(e[0].at_ms == 1'800'000'000'000);
    m.text = "今天抽奖吗";
    CHECK(draw_entries(*r.rules, m).empty());
    m.text = "抽奖";
    m.group_id.clear(); // a 1:1 message enters nothing
    CHECK(draw_entries(*r.rules, m).empty());
    qunbot::core::Event j;
    j.kind = qunbot::core::EventKind::member_joined;
    j.group_id = "wrG";
    j.members = {"wmA", "wmB"};
    e = draw_entries(*r.rules, j);
    REQUIRE(e.size() == 2);
    CHECK(e[1].draw_id == "joins");
    CHECK(e[1].member == "wmB");
    CHECK(e[1].via == "join");
}
