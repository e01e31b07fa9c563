#include "rules/keyword_index.hpp"
#include "rules/text.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <set>
#include <vector>

using qunbot::rules::Fold;
using qunbot::rules::glob_match;
using qunbot::rules::KeywordIndex;
using qunbot::rules::normalize;

TEST_CASE("full-width letters and digits fold to half-width, and case folds", "[rules][text]")
{
    // U+FF36 U+FF38 = ＶＸ; U+FF11 U+FF13 = １３
    CHECK(normalize("加ＶＸ１３８", Fold::keyword) == "加vx138");
    CHECK(normalize("ＡＢＣabc", Fold::regex) == "abcabc");
    CHECK(normalize("Ⓥⓧ", Fold::keyword) == "vx"); // circled letters used to dodge filters
}

TEST_CASE("+ and ＋ read as 加 for keywords, not for regexes", "[rules][text]")
{
    CHECK(normalize("＋Ｖ", Fold::keyword) == "加v");
    CHECK(normalize("+V", Fold::keyword) == "加v");
    CHECK(normalize("加V", Fold::keyword) == "加v");
    CHECK(normalize("+86 138", Fold::regex) == "+86 138");
}

TEST_CASE("zero-width and format characters vanish", "[rules][text]")
{
    // U+200B zero-width space, U+200D zero-width joiner, U+FEFF BOM, U+2060 word joiner
    CHECK(normalize("加\u200b微\u200d信\ufeff", Fold::keyword) == "加微信");
    CHECK(normalize("刷\u2060单", Fold::regex) == "刷单");
}

TEST_CASE("spaces: removed for keywords, collapsed for regexes", "[rules][text]")
{
    // U+3000 ideographic space and U+00A0 no-break space count as spaces.
    CHECK(normalize("加 \u3000 微\u00a0信", Fold::keyword) == "加微信");
    CHECK(normalize("  hello \u3000\t world  ", Fold::regex) == "hello world");
}

TEST_CASE("invalid UTF-8 bytes pass through unchanged", "[rules][text]")
{
    const std::string bad = std::string("a\xff") + "b\xe4\xb8";
    CHECK(normalize(bad, Fold::keyword) == bad);
    // An overlong space (C0 A0) and an overlong "A" (E0 81 81) are invalid, not a space or a letter.
    const std::string overlong = std::string("x\xc0\xa0y\xe0\x81\x81");
    CHECK(normalize(overlong, Fold::keyword) == overlong);
    CHECK(normalize(overlong, Fold::regex) == overlong);
}

TEST_CASE("punctuation, symbols and emoji between characters vanish for keywords", "[rules][text]")
{
    CHECK(normalize("加.微.信", Fold::keyword) == "加微信");
    CHECK(normalize("加-微_信!", Fold::keyword) == "加微信");
    CHECK(normalize("刷\U0001F525单", Fold::keyword) == "刷单");            // 🔥
    CHECK(normalize("加\u2764\ufe0f微\u2605信", Fold::keyword) == "加微信"); // ❤️ (with VS16), ★
    CHECK(normalize("代\u3001理\u3002", Fold::keyword) == "代理");         // 、 。
    CHECK(normalize("兼\uff0c职", Fold::keyword) == "兼职");                // full-width comma
    CHECK(normalize("\U0001F44D\U0001F3FB好的", Fold::keyword) == "好的"); // 👍🏻
    // Between two ASCII letters or digits punctuation is part of the token.
    CHECK(normalize("3.15 大促", Fold::keyword) == "3.15大促");
    CHECK(normalize("ab-c", Fold::keyword) == "ab-c");
    CHECK(normalize("v: abc", Fold::keyword) == "v:abc");
    CHECK(normalize("39.9元!!", Fold::keyword) == "39.9元");
    // Look-alike letters and digits are not separators; ➕ is a plus.
    CHECK(normalize("①②", Fold::keyword) == "①②");
    CHECK(normalize("〇", Fold::keyword) == "〇");
    CHECK(normalize("\u2795V", Fold::keyword) == "加v");
    // Letters a case-insensitive regex would equate with k and s are k and s.
    CHECK(normalize("\u212A\u017Fu", Fold::regex) == "ksu");
    // Regexes still see the punctuation.
    CHECK(normalize("加.微.信", Fold::regex) == "加.微.信");
}

TEST_CASE("normalized() hands back the text itself when nothing changes", "[rules][text]")
{
    std::string buffer = "untouched";
    const std::string plain = "今天的价格优惠活动123";
    const auto v = qunbot::rules::normalized(plain, Fold::keyword, buffer);
    CHECK(v == plain);
    CHECK(v.data() == plain.data()); // no copy
    CHECK(buffer == "untouched");
    const std::string mixed = "今天ＶＸ价格";
    CHECK(qunbot::rules::normalized(mixed, Fold::keyword, buffer) == "今天vx价格");
    CHECK(qunbot::rules::normalized("a b", Fold::regex, buffer) == "a b");
    CHECK(qunbot::rules::normalized("a b", Fold::keyword, buffer) == "ab");
}

TEST_CASE("glob matching is by character", "[rules][text]")
{
    CHECK(glob_match("*门店福利群*", "徐汇门店福利群3"));
    CHECK(glob_match("store-*", "store-12"));
    CHECK_FALSE(glob_match("store-*", "shop-12"));
    CHECK(glob_match("?汇店", "徐汇店"));
    CHECK_FALSE(glob_match("?店", "徐汇店"));
    CHECK(glob_match("*", ""));
}

namespace {
std::multiset<std::string> scan_all(const KeywordIndex& idx, const std::string& text)
{
    std::multiset<std::string> out;
    idx.scan(text, [&](std::uint32_t p) { out.insert(idx.pattern(p)); });
    return out;
}
} // namespace

TEST_CASE("keyword index finds every occurrence, overlapping ones too, inside Chinese text", "[rules][text]")
{
    KeywordIndex idx;
    for (const char* k : {"加微信", "微信", "刷单", "he", "she", "hers"}) idx.add(normalize(k, Fold::keyword));
    idx.build();
    CHECK(scan_all(idx, normalize("快来加 微 信刷单赚钱", Fold::keyword)) == std::multiset<std::string>{"加微信", "微信", "刷单"});
    CHECK(scan_all(idx, "ushers") == std::multiset<std::string>{"she", "he", "hers"});
    CHECK(scan_all(idx, "微信微信") == std::multiset<std::string>{"微信", "微信"});
    CHECK(scan_all(idx, "什么都没有").empty());
}

namespace {
// Every occurrence of every pattern, by plain substring search at each offset (UTF-8 is
// self-synchronising, so a byte match of valid UTF-8 starts on a character).
std::multiset<std::string> naive_all(const std::vector<std::string>& patterns, const std::string& text)
{
    std::multiset<std::string> out;
    for (const auto& p : patterns) {
        for (auto at = text.find(p); at != std::string::npos; at = text.find(p, at + 1)) out.insert(p);
    }
    return out;
}

std::string random_chars(std::mt19937& rng, const std::vector<std::string>& alphabet, int n)
{
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string s;
    for (int i = 0; i < n; ++i) s += alphabet[pick(rng)];
    return s;
}
} // namespace

TEST_CASE("keyword index agrees with a naive search, on sparse and on dense texts", "[rules][text]")
{
    std::mt19937 rng(20261125);
    // 400 characters (CJK, ASCII, one astral); keywords of 1–6 of the first 60, so texts over all
    // 400 have few candidate positions (the trie walk), texts over the first 4 have nothing but
    // candidates (the automaton).
    std::vector<std::string> alphabet;
    for (std::uint32_t cp = 0x4E00; cp < 0x4E00 + 390; ++cp) {
        alphabet.push_back({static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))});
    }
    for (const char* c : {"a", "b", "1", "2", ".", "\xF0\x9F\x98\x80", "\xC3\xA9", "x", "y", "z"}) alphabet.insert(alphabet.begin() + 2, c);
    const std::vector<std::string> head(alphabet.begin(), alphabet.begin() + 60);
    const std::vector<std::string> tiny(alphabet.begin(), alphabet.begin() + 4);
    std::vector<std::string> patterns;
    KeywordIndex idx;
    std::uniform_int_distribution<int> len(1, 6);
    for (int i = 0; i < 300; ++i) {
        auto p = random_chars(rng, i < 40 ? tiny : head, len(rng));
        if (idx.add(p) == patterns.size()) patterns.push_back(p);
    }
    idx.build();
    REQUIRE(idx.max_depth() == 6);
    for (int t = 0; t < 3000; ++t) {
        const auto text = random_chars(rng, t % 3 == 0 ? alphabet : t % 3 == 1 ? head : tiny, 1 + t % 80);
        INFO(text);
        REQUIRE(scan_all(idx, text) == naive_all(patterns, text));
    }
}

TEST_CASE("keyword index deduplicates patterns and refuses adds after build", "[rules][text]")
{
    KeywordIndex idx;
    const auto a = idx.add("价格");
    CHECK(idx.add("价格") == a);
    idx.build();
    CHECK(idx.pattern_count() == 1);
    CHECK_THROWS(idx.add("x"));
}

TEST_CASE("an empty or unbuilt keyword index finds nothing", "[rules][text]")
{
    KeywordIndex unbuilt;
    CHECK(scan_all(unbuilt, "任何文字").empty());
    KeywordIndex empty;
    empty.build();
    CHECK(scan_all(empty, "任何文字").empty());
}
