#include "rules/engine.hpp"
#include "rules/loader.hpp"
#include "rules/text.hpp"

#include <catch2/catch.hpp>
#include <re2/re2.h>

#include <random>
#include <set>

using namespace qunbot;
using rules::Decision;
using rules::State;

namespace {

std::shared_ptr<const rules::RuleSet> compile(const std::string& text)
{
    auto r = rules::load_rule_sources({{"t.yaml", text}});
    std::string why;
    for (const auto& d : r.diagnostics) why += d.headline() + "\n";
    INFO(why);
    REQUIRE(r.ok());
    return r.rules;
}

constexpr const char* customer1 = "wmCUSTOMER0000000000000000000001";
constexpr const char* customer2 = "wmCUSTOMER0000000000000000000002";
constexpr const char* customer3 = "wmCUSTOMER0000000000000000000003";

core::Event message(const std::string& from, const std::string& text, const std::string& key = "k1")
{
    core::Event e;
    e.kind = core::EventKind::message;
    e.platform = "wecom";
    e.tenant = "corp";
    e.dedup_key = key;
    e.group_id = "wrG";
    e.actor = from;
    e.text = text;
    e.message_type = "text";
    return e;
}

core::Event join(std::vector<std::string> members, int scene, const std::string& key)
{
    core::Event e;
    e.kind = core::EventKind::member_joined;
    e.platform = "wecom";
    e.tenant = "corp";
    e.dedup_key = key;
    e.group_id = "wrG";
    e.actor = "sys";
    e.members = std::move(members);
    e.scene = scene;
    return e;
}

State group_state(std::int64_t now_ms = 1'000'000)
{
    State s;
    s.now_ms = now_ms;
    s.group = {"wrG", "徐汇门店福利群", "owner1", 100, {"vip"}};
    return s;
}

// Applies the batch parts of a decision to a state, as storage would.
void apply_batches(State& s, const Decision& d)
{
    for (const auto& b : d.batch_erases) std::erase_if(s.batches, [&](const rules::Batch& x) { return x.rule_id == b.rule_id; });
    for (const auto& b : d.batch_upserts) {
        std::erase_if(s.batches, [&](const rules::Batch& x) { return x.rule_id == b.rule_id; });
        s.batches.push_back(b);
    }
}

const char* ad_rules = R"(version: 1
lists:
  ads: [加V, 加微信, 刷单]
rules:
  - id: ads
    on: message
    when: { contains: $ads }
    do: [ { reply: "请勿发广告" } ]
)";

bool fires(const rules::RuleSet& set, const std::string& text)
{
    const auto d = rules::evaluate(set, message(customer1, text), group_state());
    return !d.actions.empty();
}

} // namespace

TEST_CASE("Chinese keyword matching sees through width, case, zero-width and spacing tricks", "[rules][engine]")
{
    const auto set = compile(ad_rules);
    CHECK(fires(*set, "加V了解一下"));
    CHECK(fires(*set, "＋Ｖ了解一下"));       // full-width plus and V
    CHECK(fires(*set, "+v 了解"));
    CHECK(fires(*set, "加 v"));
    CHECK(fires(*set, "加\u200dV"));         // zero-width joiner between the characters
    CHECK(fires(*set, "朋友们加\u200b微\u200b信领券")); // inside a sentence, zero-width spaces
    CHECK(fires(*set, "在家刷 单日赚"));
    CHECK(fires(*set, "加.微.信了解"));                   // punctuation between the characters
    CHECK(fires(*set, "在家刷\U0001F525单日赚"));          // an emoji between them
    CHECK_FALSE(fires(*set, "加油"));
    CHECK_FALSE(fires(*set, "微信支付可以吗"));
}

TEST_CASE("exact and regex conditions", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: menu
    on: message
    when: { exact: [菜单, menu] }
    do: [ { reply: "菜单见群公告" } ]
  - id: phone
    on: message
    when: { regex: "1[3-9]\\d{9}" }
    do: [ { reply: "请勿公开手机号" } ]
)");
    auto d = rules::evaluate(*set, message(customer1, " ＭＥＮＵ "), group_state());
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].rule_id == "menu");
    CHECK(rules::evaluate(*set, message(customer1, "菜单在哪"), group_state()).actions.empty());
    // Full-width digits are folded before the regex runs.
    d = rules::evaluate(*set, message(customer1, "电话１３８００１３８０００"), group_state());
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].rule_id == "phone");
}

namespace {
// The rule ids that fire on `text`.
std::set<std::string> fired(const rules::RuleSet& set, const std::string& text)
{
    std::set<std::string> out;
    for (const auto& a : rules::evaluate(set, message(customer1, text), group_state()).actions) out.insert(a.rule_id);
    return out;
}
} // namespace

TEST_CASE("regex rules fire exactly when their pattern matches, with and without the literal prefilter", "[rules][engine]")
{
    // Each pattern needs a literal (a CJK word or ASCII letters), so the prefilter is on; adding
    // a pattern with no literal, or a literal with non-ASCII case, turns it off.
    const std::vector<std::string> gated = {"价格.{0,4}[0-9]{3}", "(优惠|福利)券", "加.?微", "[a-z]{2}店", "(?:团购|秒杀)[0-9]+",
                                            "klm", "qq.*群"};
    const std::vector<std::vector<std::string>> sets = {gated, {"价格.{0,4}[0-9]{3}", "[0-9]{11}"}, {"加.?微", "café"}};
    const std::vector<std::string> fragments = {"价格", "123", "4567", "优惠", "福利", "券", "加", "微", "店", "ab", "KLM", "\u212Alm",
                                                "团购", "秒杀", "99", " ", "qq", "QQ", "群", "13800138000", "CAFÉ", "café", "的", "好"};
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::size_t> pick(0, fragments.size() - 1);
    std::uniform_int_distribution<int> count(1, 7);
    RE2::Options opts;
    opts.set_case_sensitive(false);
    for (std::size_t si = 0; si < sets.size(); ++si) {
        std::string yaml = "version: 1\nrules:\n";
        std::vector<std::unique_ptr<RE2>> oracles;
        for (std::size_t i = 0; i < sets[si].size(); ++i) {
            yaml += "  - id: r" + std::to_string(i) + "\n    on: message\n    when: { regex: \"" + sets[si][i] + "\" }\n    do: [ { reply: x } ]\n";
            oracles.push_back(std::make_unique<RE2>(sets[si][i], opts));
            REQUIRE(oracles.back()->ok());
        }
        const auto set = compile(yaml);
        CHECK(rules::regex_prefilter_active(*set) == (si == 0));
        int fired_somewhere = 0;
        for (int t = 0; t < 2000; ++t) {
            std::string text;
            for (int k = count(rng); k > 0; --k) text += fragments[pick(rng)];
            std::set<std::string> expected;
            const auto folded = rules::normalize(text, rules::Fold::regex);
            for (std::size_t i = 0; i < oracles.size(); ++i) {
                if (RE2::PartialMatch(folded, *oracles[i])) expected.insert("r" + std::to_string(i));
            }
            fired_somewhere += expected.empty() ? 0 : 1;
            INFO(text);
            REQUIRE(fired(*set, text) == expected);
        }
        CHECK(fired_somewhere > 200); // the texts do exercise the patterns
    }
    // The Kelvin sign is a k to a case-insensitive regex; it is folded, so the literal "klm" is found.
    CHECK(fired(*compile("version: 1\nrules:\n  - id: k\n    on: message\n    when: { regex: klm }\n    do: [ { reply: x } ]\n"), "\u212Alm") ==
          std::set<std::string>{"k"});
}

TEST_CASE("a catastrophic-backtracking pattern runs in linear time on RE2", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: evil
    on: message
    when: { regex: "(a+)+$" }
    do: [ { reply: "x" } ]
)");
    // 50,000 a's and a b: exponential for a backtracking engine, one pass for RE2.
    const auto d = rules::evaluate(*set, message(customer1, std::string(50'000, 'a') + "!b"), group_state());
    CHECK(d.actions.empty());
}

TEST_CASE("rules run in file order and stop ends the pipeline", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: first
    on: message
    when: { contains: [价格] }
    do: [ { reply: "1" } ]
  - id: second
    on: message
    when: { contains: [价格] }
    stop: true
    do: [ { reply: "2" } ]
  - id: third
    on: message
    when: { contains: [价] }
    do: [ { reply: "3" } ]
)");
    const auto d = rules::evaluate(*set, message(customer1, "价格多少"), group_state());
    REQUIRE(d.actions.size() == 2);
    CHECK(d.actions[0].text == "1");
    CHECK(d.actions[1].text == "2");
    CHECK(d.stopped);
}

TEST_CASE("scope: group selections by name glob, tag, owner and id", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
groups:
  stores: { name_glob: "*门店*" }
  vip_of_owner2: { tags: [vip], owner: owner2 }
  one: { ids: [wrOther] }
rules:
  - id: a
    on: message
    in: stores
    when: { contains: [hi] }
    do: [ { reply: a } ]
  - id: b
    on: message
    in: [vip_of_owner2, one]
    when: { contains: [hi] }
    do: [ { reply: b } ]
)");
    auto s = group_state();
    auto d = rules::evaluate(*set, message(customer1, "hi"), s);
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].rule_id == "a");
    s.group.owner = "owner2"; // now the vip group of owner2 too
    d = rules::evaluate(*set, message(customer1, "hi"), s);
    CHECK(d.actions.size() == 2);
    s.group.name = "内部群";
    s.group.tags.clear();
    CHECK(rules::evaluate(*set, message(customer1, "hi"), s).actions.empty());
}

TEST_CASE("sender roles and tags, unless", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: ads
    on: message
    when: { contains: [加微信] }
    unless: { sender: [staff, "tag:团长"] }
    do: [ { reply: "请勿发广告" } ]
)");
    auto s = group_state();
    CHECK_FALSE(rules::evaluate(*set, message("zhangsan", "加微信"), s).actions.size());
    CHECK(rules::evaluate(*set, message(customer1, "加微信"), s).actions.size() == 1);
    s.members[customer1] = rules::MemberInfo{customer1, "团长老王", {"团长"}, 0};
    CHECK(rules::evaluate(*set, message(customer1, "加微信"), s).actions.empty());
}

TEST_CASE("cooldowns per group and per member", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: faq
    on: message
    when: { contains: [多少钱] }
    cooldown: { group: 2m, member: 30m }
    do: [ { reply: "见公告" } ]
)");
    auto s = group_state(1'000'000);
    auto d = rules::evaluate(*set, message(customer1, "多少钱"), s);
    REQUIRE(d.actions.size() == 1);
    REQUIRE(d.cooldowns.size() == 2);
    for (const auto& [k, until] : d.cooldowns) s.cooldowns[k] = until;
    CHECK(s.cooldowns[rules::group_cooldown_key("faq", "wrG")] == 1'000'000 + 120'000);
    CHECK(s.cooldowns[rules::member_cooldown_key("faq", "wrG", customer1)] == 1'000'000 + 1'800'000);

    s.now_ms += 60'000; // within the group cooldown: nobody is answered
    d = rules::evaluate(*set, message(customer2, "多少钱"), s);
    CHECK(d.actions.empty());
    REQUIRE(d.trace.size() == 1);
    CHECK(d.trace[0].outcome == rules::Trace::Outcome::cooldown);

    s.now_ms += 61'000; // group cooldown over; customer1 still in the member cooldown
    CHECK(rules::evaluate(*set, message(customer1, "多少钱"), s).actions.empty());
    CHECK(rules::evaluate(*set, message(customer2, "多少钱"), s).actions.size() == 1);
}

TEST_CASE("welcome batching merges joins and drops those who left", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: welcome
    on: member_joined
    unless: { sender: staff }
    batch: 30s
    do:
      - post: "欢迎 {{ members.mentions }}({{ members.count }} 位)加入「{{ group.name }}」"
)");
    auto s = group_state(1'000'000);
    s.members[customer1] = {customer1, "小王", {}, 0};
    s.members[customer3] = {customer3, "", {}, 0}; // name unknown: mentioned by id

    auto d = rules::evaluate(*set, join({customer1, "lisi"}, 3, "j1"), s);
    CHECK(d.actions.empty());
    REQUIRE(d.batch_upserts.size() == 1);
    CHECK(d.batch_upserts[0].members == std::vector<std::string>{customer1}); // staff lisi left out
    CHECK(d.batch_upserts[0].due_ms == 1'030'000);
    apply_batches(s, d);

    s.now_ms = 1'010'000;
    d = rules::evaluate(*set, join({customer2, customer3}, 3, "j2"), s);
    apply_batches(s, d);
    REQUIRE(s.batches.size() == 1);
    CHECK(s.batches[0].members == std::vector<std::string>{customer1, customer2, customer3});
    CHECK(s.batches[0].due_ms == 1'030'000); // the window does not slide

    core::Event leave;
    leave.kind = core::EventKind::member_left;
    leave.tenant = "corp";
    leave.group_id = "wrG";
    leave.members = {customer2};
    leave.scene = 0;
    s.now_ms = 1'020'000;
    d = rules::evaluate(*set, leave, s);
    apply_batches(s, d);
    CHECK(s.batches[0].members == std::vector<std::string>{customer1, customer3});

    s.now_ms = 1'029'999; // not due yet
    CHECK(rules::flush_due(*set, s).actions.empty());
    s.now_ms = 1'030'000;
    d = rules::flush_due(*set, s);
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].text == std::string("欢迎 @小王 @") + customer3 + "(2 位)加入「徐汇门店福利群」");
    CHECK(d.actions[0].mentions == std::vector<std::string>{customer1, customer3});
    CHECK(d.actions[0].idempotency_key == "corp/batch/wrG/welcome/j1/0");
    CHECK(d.batch_erases.size() == 1);
}

TEST_CASE("a batch whose members all left sends nothing", "[rules][engine]")
{
    const auto set = compile("version: 1\nrules:\n  - id: w\n    on: member_joined\n    batch: 10s\n    do: [ { post: hi } ]\n");
    auto s = group_state(0);
    apply_batches(s, rules::evaluate(*set, join({customer1}, 0, "j"), s));
    core::Event leave;
    leave.kind = core::EventKind::member_left;
    leave.group_id = "wrG";
    leave.members = {customer1};
    const auto d = rules::evaluate(*set, leave, s);
    CHECK(d.batch_erases.size() == 1);
    apply_batches(s, d);
    CHECK(s.batches.empty());
}

TEST_CASE("join scene and 1:1 welcome with its deadline", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: qr
    on: member_joined
    when: { scene: qr_code }
    do: [ { post: "扫码欢迎 {{ member.mention }} via {{ event.scene }}" } ]
  - id: contact
    on: contact_added
    when: { state: ["store-*"] }
    do:
      - welcome: "您好 {{ member.name | default: \"朋友\" }},来自 {{ event.state }}"
      - assign_tag: "渠道:{{ event.state }}"
)");
    auto s = group_state();
    CHECK(rules::evaluate(*set, join({customer1}, 0, "a"), s).actions.empty());
    auto d = rules::evaluate(*set, join({customer1}, 3, "b"), s);
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].text == std::string("扫码欢迎 @") + customer1 + " via qr_code");

    core::Event c;
    c.kind = core::EventKind::contact_added;
    c.tenant = "corp";
    c.dedup_key = "c1";
    c.time = 1'700'000'000;
    c.actor = "zhangsan";
    c.subject = customer2;
    c.state = "store-7";
    c.welcome_code = "WC";
    State one;
    one.now_ms = 1'700'000'000'000;
    d = rules::evaluate(*set, c, one);
    REQUIRE(d.actions.size() == 2);
    CHECK(d.actions[0].kind == core::ActionKind::send_welcome);
    CHECK(d.actions[0].text == "您好 朋友,来自 store-7");
    CHECK(d.actions[0].welcome_code == "WC");
    CHECK(d.actions[0].staff == "zhangsan");
    CHECK(d.actions[0].not_after_ms == 1'700'000'020'000);
    CHECK(d.actions[1].kind == core::ActionKind::assign_tag);
    CHECK(d.actions[1].text == "渠道:store-7");
    REQUIRE(d.tags.size() == 1);
    CHECK(d.tags[0].tag == "渠道:store-7");

    c.state = "event-1";
    CHECK(rules::evaluate(*set, c, one).actions.empty());
}

TEST_CASE("activity thresholds assign a tag once", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: active
    on: message
    when: { active_days: { at_least: 5, last: 7d } }
    do: [ { assign_tag: 活跃 } ]
)");
    auto s = group_state();
    s.members[customer1] = {customer1, "", {}, 0b0001111}; // today and 3 days before: 4 of 7
    CHECK(rules::evaluate(*set, message(customer1, "早"), s).actions.empty());
    s.members[customer1].active_days = 0b1010111; // 5 of the last 7
    auto d = rules::evaluate(*set, message(customer1, "早"), s);
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].kind == core::ActionKind::assign_tag);
    CHECK(d.actions[0].target == customer1);
    s.members[customer1].active_days = 0b1111100000000; // 8 days: outside the window
    CHECK(rules::evaluate(*set, message(customer1, "早"), s).actions.empty());
    s.members[customer1].active_days = 0b1011111;
    s.members[customer1].tags = {"活跃"}; // already tagged: nothing to do
    CHECK(rules::evaluate(*set, message(customer1, "早"), s).actions.empty());
}

TEST_CASE("templates render dates in local time and fall back", "[rules][engine]")
{
    const auto set = compile(R"(version: 1
rules:
  - id: t
    on: message
    when: { contains: [几号] }
    do: [ { reply: "今天是{{ now | date: \"%m月%d日 %H:%M\" }},{{ member.name | default: \"朋友\" }},群里 {{ group.member_count }} 人" } ]
)");
    auto s = group_state(1'767'578'400'000); // 2026-01-05 02:00 UTC = 10:00 in UTC+8
    const auto d = rules::evaluate(*set, message(customer1, "今天几号"), s);
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].text == "今天是01月05日 10:00,朋友,群里 100 人");
}

TEST_CASE("idempotency keys come from the cause", "[rules][engine]")
{
    const auto set = compile(ad_rules);
    const auto a = rules::evaluate(*set, message(customer1, "加V", "evt-1"), group_state());
    const auto b = rules::evaluate(*set, message(customer1, "加V", "evt-1"), group_state());
    const auto c = rules::evaluate(*set, message(customer1, "加V", "evt-2"), group_state());
    REQUIRE((a.actions.size() == 1 && b.actions.size() == 1 && c.actions.size() == 1));
    CHECK(a.actions[0].idempotency_key == "corp/evt-1/ads/0");
    CHECK(a.actions[0].idempotency_key == b.actions[0].idempotency_key);
    CHECK(a.actions[0].idempotency_key != c.actions[0].idempotency_key);
}
