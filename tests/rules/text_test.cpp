#include "rules/keyword_index.hpp"
#include "rules/text.hpp"

#include <catch2/catch.hpp>

#include <set>

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
