#include "rules/loader.hpp"

#include <catch2/catch.hpp>

using qunbot::rules::LoadResult;
using qunbot::rules::load_rule_sources;

namespace {

LoadResult load(const std::string& text) { return load_rule_sources({{"r.yaml", text}}); }

// The diagnostics' headlines, one per line, for readable failure output.
std::string headlines(const LoadResult& r)
{
    std::string s;
    for (const auto& d : r.diagnostics) s += d.headline() + "\n";
    return s;
}

bool has(const LoadResult& r, const std::string& headline)
{
    for (const auto& d : r.diagnostics) {
        if (d.headline() == headline) return true;
    }
    return false;
}

} // namespace

TEST_CASE("a clean file compiles, with rules in file order", "[rules][loader]")
{
    const auto r = load(R"(version: 1
lists:
  ads: [加微信, 加V]
rules:
  - id: a
    on: message
    when: { contains: $ads }
    do: [ { reply: "请勿发广告" } ]
  - id: b
    on: member_joined
    do:
      - post: "欢迎 {{ members.mentions }}"
)");
    INFO(headlines(r));
    REQUIRE(r.ok());
    CHECK(r.diagnostics.empty());
    REQUIRE(r.rules->rules.size() == 2);
    CHECK(r.rules->rules[0].id == "a");
    CHECK(r.rules->rules[1].id == "b");
    CHECK(r.rules->rules[1].line == 9);
}

TEST_CASE("every error is reported at once, with file:line:col and suggestions", "[rules][loader]")
{
    const auto r = load(R"(version: 1
lists:
  ads: [加微信]
groups:
  vip: { tags: [vip] }
rules:
  - id: one
    on: member_joind
    do: [ { post: "x" } ]
  - id: two
    on: message
    whne: { contains: $ads }
    when: { contains: $adz }
    do: [ { reply: "x" } ]
  - id: three
    on: member_joined
    in: vipp
    do: [ { post: "hi {{ members.mention }}" } ]
)");
    INFO(headlines(r));
    CHECK_FALSE(r.ok());
    CHECK(r.error_count() == 5);
    CHECK(has(r, "r.yaml:8:9: error: unknown trigger \"member_joind\"; did you mean \"member_joined\"?"));
    CHECK(has(r, "r.yaml:12:5: error: unknown key \"whne\" in a rule; did you mean \"when\"?"));
    CHECK(has(r, "r.yaml:13:23: error: undefined list \"$adz\"; did you mean \"$ads\"?"));
    CHECK(has(r, "r.yaml:17:9: error: undefined group selection \"vipp\"; did you mean \"vip\"?"));
    CHECK(has(r, "r.yaml:18:26: error: unknown template variable \"members.mention\"; did you mean \"member.mention\"?"));
    CHECK(has(r, "r.yaml:5:3: warning: group selection \"vip\" is defined but no rule uses it"));
}

TEST_CASE("template errors point inside the string", "[rules][loader]")
{
    const auto r = load(R"(version: 1
rules:
  - id: w
    on: member_joined
    do:
      - post: "欢迎 {{ members.mention }} 来到 {{ group.name }} {{ message.text }}"
      - post: "{{ now | date: \"%m月%d日\" }} {{ group.name | upper }} {{ group.id"
)");
    INFO(headlines(r));
    CHECK(has(r, "r.yaml:6:22: error: unknown template variable \"members.mention\"; did you mean \"member.mention\"?"));
    CHECK(has(r, "r.yaml:6:64: error: template variable \"message.text\" is not available for `on: member_joined` rules; "
                 "available: member.name, member.mention, member.id, members.names, members.mentions, members.count, "
                 "group.name, group.id, group.member_count, group.owner, now, event.scene, rule.id"));
    CHECK(has(r, "r.yaml:7:61: error: unknown filter \"upper\" (filters: date, default)"));
    CHECK(has(r, "r.yaml:7:70: error: \"{{\" is not closed with \"}}\""));
    CHECK(r.error_count() == 4);
}

TEST_CASE("conditions and actions must fit the trigger", "[rules][loader]")
{
    const auto r = load(R"(version: 1
rules:
  - id: j
    on: member_joined
    when: { contains: [广告] }
    do: [ { reply: "x" } ]
  - id: c
    on: contact_added
    in: all
    batch: 30s
    do: [ { post: "x" } ]
  - id: m
    on: message
    when: { scene: qr_code, regex: "(a", active_days: { at_least: 9, last: 7d } }
    batch: 3x
    do: [ { reply: "ok" } ]
)");
    INFO(headlines(r));
    CHECK(has(r, "r.yaml:5:13: error: condition `contains` does not apply to `on: member_joined` rules (it needs message)"));
    CHECK(has(r, "r.yaml:6:13: error: `reply` answers a message; use `post` for `on: member_joined`"));
    CHECK(has(r, "r.yaml:9:9: error: `in` selects groups, but contact_added events are 1:1 and have no group"));
    CHECK(has(r, "r.yaml:10:12: error: `batch` merges joins; it applies to `on: member_joined` rules only"));
    CHECK(has(r, "r.yaml:11:13: error: contact_added is a 1:1 event with no group to post in; use `welcome`"));
    CHECK(has(r, "r.yaml:14:13: error: condition `scene` does not apply to `on: message` rules (it needs member_joined, member_left)"));
    CHECK(has(r, "r.yaml:14:36: error: regex \"(a\" does not compile: missing ): (a (RE2 syntax: no backreferences or lookaround)"));
    CHECK(has(r, "r.yaml:14:67: error: `active_days.at_least` (9) is more than `last` (7 days): it could never hold"));
    CHECK(has(r, "r.yaml:15:12: error: `batch`: \"3x\" is not a duration like 30s, 2m"));
}

TEST_CASE("structure errors: version, ids, duplicates, empty keywords", "[rules][loader]")
{
    const auto r = load(R"(versoin: 1
lists:
  blank: ["\u200b", ok]
rules:
  - on: message
    when: { contains: $blank }
    do: [ { reply: "x" } ]
  - id: same
    on: schedule
    do: [ { post: "x" } ]
  - id: same
    on: member_left
    stop: maybe
    do: []
)");
    INFO(headlines(r));
    CHECK(has(r, "r.yaml:1:1: error: unknown key \"versoin\" in the file; did you mean \"version\"?"));
    CHECK(has(r, "r.yaml:1:1: error: missing `version: 1` at the top of the file"));
    CHECK(has(r, "r.yaml:5:5: error: rule without `id`: give every rule a stable id (it keys counters and idempotency)"));
    CHECK(has(r, "r.yaml:6:23: error: keyword \"\u200b\" is empty after normalisation (only spaces or invisible characters)"));
    CHECK(has(r, "r.yaml:8:5: error: `on: schedule` needs `schedule:`, e.g. schedule: \"daily 09:00\" or a cron expression \"0 9 * * 1-5\""));
    CHECK(has(r, "r.yaml:11:9: error: duplicate rule id \"same\", first used at r.yaml:8:9"));
    CHECK(has(r, "r.yaml:13:11: error: `stop` must be true or false"));
    CHECK(has(r, "r.yaml:14:9: error: `do` must list at least one action, e.g. - post: \"...\""));
}

TEST_CASE("YAML syntax errors name the position, and other files are still checked", "[rules][loader]")
{
    const auto r = load_rule_sources({
        {"a.yaml", "version: 1\nrules:\n  - id: x\n    on: message\n    do: [ { reply: \"unterminated } ]\n"},
        {"b.yaml", "version: 1\nlists:\n  l: [x]\n"},
        {"c.yaml", "version: 1\nlists:\n  l: [y]\n"},
    });
    INFO(headlines(r));
    REQUIRE(r.diagnostics.size() >= 2);
    CHECK(r.diagnostics[0].file == "a.yaml");
    CHECK(r.diagnostics[0].message.starts_with("YAML syntax: "));
    CHECK(has(r, "c.yaml:3:3: error: list \"l\" is already defined at b.yaml:3:3"));
    CHECK_FALSE(r.ok());
}

TEST_CASE("warnings do not block loading", "[rules][loader]")
{
    const auto r = load(R"(version: 1
lists:
  unused: [x, X, ｘ]
rules:
  - id: everything
    on: message
    do: [ { reply: "{{ member.name }}" } ]
)");
    INFO(headlines(r));
    REQUIRE(r.ok());
    CHECK(r.error_count() == 0);
    CHECK(has(r, "r.yaml:3:3: warning: list \"unused\" is defined but no rule uses it"));
    CHECK(has(r, "r.yaml:3:15: warning: list \"unused\": \"X\" repeats an earlier entry (after normalisation)"));
    CHECK(has(r, "r.yaml:3:18: warning: list \"unused\": \"ｘ\" repeats an earlier entry (after normalisation)"));
    CHECK(has(r, "r.yaml:5:5: warning: rule \"everything\" has no `when`: it answers every message in its groups"));
    CHECK(has(r, "r.yaml:7:20: warning: {{ member.name }} is empty while the member's name is not known yet; add a fallback, "
                 "e.g. {{ member.name | default: \"朋友\" }}"));
}

TEST_CASE("the formatted diagnostic shows the line and a caret", "[rules][loader]")
{
    const auto r = load("version: 1\nrules:\n  - id: a\n    on: mesage\n    do: [ { reply: x } ]\n");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].format() ==
          "r.yaml:4:9: error: unknown trigger \"mesage\"; did you mean \"message\"?\n      on: mesage\n          ^");
}

TEST_CASE("durations", "[rules][loader]")
{
    std::int64_t ms = 0;
    CHECK((qunbot::rules::parse_duration("30s", ms) && ms == 30'000));
    CHECK((qunbot::rules::parse_duration("1h30m", ms) && ms == 5'400'000));
    CHECK((qunbot::rules::parse_duration("7d", ms) && ms == 604'800'000));
    CHECK((qunbot::rules::parse_duration("250ms", ms) && ms == 250));
    CHECK_FALSE(qunbot::rules::parse_duration("0s", ms));
    CHECK_FALSE(qunbot::rules::parse_duration("5", ms));
    CHECK_FALSE(qunbot::rules::parse_duration("s", ms));
    CHECK_FALSE(qunbot::rules::parse_duration("", ms));
}

TEST_CASE("value errors: message types, senders, scenes, cooldowns, filters, selections", "[rules][loader]")
{
    const auto r = load(R"(version: 1
groups:
  all: { tags: [x] }
  nothing: {}
rules:
  - id: a
    on: message
    when: { message_type: imgae, sender: boss }
    cooldown: { group: soon }
    do: [ { reply: "{{ group.name | date: \"%H\" }} }}" } ]
  - id: b
    on: member_left
    when: { scene: qr_code }
    in: [all]
    do: [ { post: "bye" } ]
)");
    INFO(headlines(r));
    CHECK(has(r, "r.yaml:3:3: error: \"all\" is reserved: `in: all` already means every group"));
    CHECK(has(r, "r.yaml:4:12: error: group selection \"nothing\" selects nothing: give ids, name_glob, tags or owner"));
    CHECK(has(r, "r.yaml:8:27: error: `message_type`: unknown type \"imgae\"; did you mean \"image\"?"));
    CHECK(has(r, "r.yaml:8:42: error: `sender`: \"boss\" is neither staff, customer nor \"tag:<name>\""));
    CHECK(has(r, "r.yaml:9:24: error: `cooldown`: \"soon\" is not a duration like 30s, 10m, 1h"));
    CHECK(has(r, "r.yaml:10:37: error: filter \"date\" applies to \"now\" only"));
    CHECK(has(r, "r.yaml:10:53: error: \"}}\" without a matching \"{{\""));
    CHECK(has(r, "r.yaml:13:20: error: `scene`: \"qr_code\" is not a quit scene (left, removed)"));
    CHECK(r.error_count() == 8);
}

TEST_CASE("wecom_template rules become group welcome templates, with %NICKNAME% for the member's name", "[rules][loader]")
{
    const auto r = load(R"(version: 1
rules:
  - id: tpl
    on: member_joined
    wecom_template: true
    do:
      - post: "亲爱的{{ member.name }}，欢迎加入！每天 10 点有福利。"
  - id: other
    on: member_joined
    do: [ { post: "hi" } ]
)");
    INFO(headlines(r));
    REQUIRE(r.ok());
    REQUIRE(r.rules->welcome_templates.size() == 1);
    CHECK(r.rules->welcome_templates[0].first == "tpl");
    CHECK(r.rules->welcome_templates[0].second == "亲爱的%NICKNAME%，欢迎加入！每天 10 点有福利。");
    // The engine does not evaluate it (WeCom sends it): only `other` is indexed for joins.
    CHECK(r.rules->per_trigger[static_cast<std::size_t>(qunbot::rules::Trigger::member_joined)] == 1);
}

TEST_CASE("wecom_template rules are checked: trigger, conditions, variables, one post", "[rules][loader]")
{
    const auto r = load(R"(version: 1
rules:
  - id: on-message
    on: message
    when: { contains: [hi] }
    wecom_template: true
    do: [ { reply: "x" } ]
  - id: per-group
    on: member_joined
    wecom_template: true
    do: [ { post: "欢迎来到{{ group.name }}" } ]
  - id: conditional
    on: member_joined
    when: { scene: qr_code }
    wecom_template: yes
    do: [ { post: "欢迎" } ]
  - id: two
    on: member_joined
    wecom_template: true
    do: [ { post: "a" }, { post: "b" } ]
)");
    INFO(headlines(r));
    CHECK_FALSE(r.ok());
    CHECK(has(r, "r.yaml:6:21: error: `wecom_template` makes a group welcome template: it applies to `on: member_joined` rules only"));
    CHECK(has(r, "r.yaml:10:21: error: a WeCom welcome template is one text for every group: only {{ member.name }} (sent as "
                 "%NICKNAME%) can be used, not {{ group.name }}"));
    CHECK(has(r, "r.yaml:15:21: error: WeCom sends the template itself on every join in the groups that use it, so `when` cannot "
                 "apply to a `wecom_template` rule"));
    CHECK(has(r, "r.yaml:19:21: error: a `wecom_template` rule has exactly one action, a `post` (the template text)"));
}

TEST_CASE("scheduled rules: timing, zone, policies, and what they may not have", "[rules][loader][schedule]")
{
    const auto ok = load(R"(version: 1
groups:
  stores: { name_glob: "*门店*" }
rules:
  - id: morning
    on: schedule
    schedule: "daily 09:00"
    in: stores
    do:
      - post: "{{ group.name }} 早安！今天是 {{ now | date: \"%m月%d日\" }}"
  - id: flash-sale
    on: schedule
    schedule: { at: "mon,wed,fri 20:00", tz: America/New_York, missed: catch_up, grace: 15m, jitter: 2m }
    do: [ { post: "秒杀开始" } ]
)");
    INFO(headlines(ok));
    REQUIRE(ok.ok());
    const auto* sale = ok.rules->find("flash-sale");
    REQUIRE(sale != nullptr);
    CHECK(sale->schedule.tz == "America/New_York");
    CHECK(sale->schedule.missed == qunbot::rules::ScheduleSpec::Missed::catch_up);
    CHECK(sale->schedule.grace_ms == 15 * 60'000);
    CHECK(sale->schedule.jitter_ms == 2 * 60'000);
    CHECK(ok.rules->find("morning")->schedule.tz == "Asia/Shanghai");

    const auto bad = load(R"(version: 1
rules:
  - id: a
    on: schedule
    schedule: "dialy 09:00"
    do: [ { post: "x" } ]
  - id: b
    on: schedule
    schedule: { at: "daily 09:00", tz: Asia/Shanghia, missed: later }
    when: { contains: [x] }
    do: [ { assign_tag: vip }, { post: "{{ member.name }}" } ]
  - id: c
    on: message
    schedule: "daily 09:00"
    when: { contains: [x] }
    do: [ { reply: "x" } ]
)");
    INFO(headlines(bad));
    CHECK_FALSE(bad.ok());
    CHECK(has(bad, "r.yaml:5:15: error: schedule: \"dialy\": expected daily, weekdays, weekends or days like mon,wed,fri"));
    CHECK(has(bad, "r.yaml:9:40: error: unknown time zone \"Asia/Shanghia\" (IANA names like Asia/Shanghai)"));
    CHECK(has(bad, "r.yaml:9:63: error: `missed` is skip or catch_up, not \"later\""));
    CHECK(has(bad, "r.yaml:10:11: error: a scheduled rule has no event to test or merge: `when` does not apply (choose its groups with `in`)"));
    CHECK(has(bad, "r.yaml:11:13: error: a scheduled rule is about groups, not a member: `assign_tag` has no one to tag"));
    CHECK(has(bad, "r.yaml:14:15: error: `schedule` says when an `on: schedule` rule fires; this rule is `on: message`"));
    bool member_name_refused = false;
    for (const auto& d : bad.diagnostics) {
        if (d.headline().find("member.name") != std::string::npos && d.headline().find("r.yaml:11:") == 0) member_name_refused = true;
    }
    CHECK(member_name_refused);
}

TEST_CASE("posts with content: image, link card, mini-program", "[rules][loader]")
{
    const auto r = load(R"(version: 1
rules:
  - id: promo
    on: member_joined
    do:
      - post:
          text: "欢迎 {{ members.mentions }}"
          link: { title: "新人礼包", url: "https://shop.example.com/gift", desc: "领 20 元券", picurl: "https://shop.example.com/g.png" }
          miniprogram: { title: "门店小程序", appid: "wx1234", page: "pages/index", pic_media_id: "MEDIA1" }
  - id: picture
    on: member_joined
    do: [ { post: { image: "https://shop.example.com/poster.jpg" } } ]
)");
    INFO(headlines(r));
    REQUIRE(r.ok());
    const auto& promo = r.rules->find("promo")->actions.at(0);
    CHECK(promo.body.source() == "欢迎 {{ members.mentions }}");
    CHECK(promo.attachments ==
          R"([{"desc":"领 20 元券","picurl":"https://shop.example.com/g.png","title":"新人礼包","type":"link","url":"https://shop.example.com/gift"},)"
          R"({"appid":"wx1234","page":"pages/index","pic_media_id":"MEDIA1","title":"门店小程序","type":"miniprogram"}])");
    CHECK(r.rules->find("picture")->actions.at(0).attachments == R"([{"type":"image","url":"https://shop.example.com/poster.jpg"}])");

    const auto bad = load(R"(version: 1
rules:
  - id: a
    on: member_joined
    do:
      - post: { txt: "x", image: "ftp://x/y.png", link: { url: "https://x" } }
  - id: b
    on: member_joined
    do: [ { post: { miniprogram: { title: "t" } } } ]
)");
    INFO(headlines(bad));
    CHECK_FALSE(bad.ok());
    CHECK(has(bad, "r.yaml:6:17: error: unknown key \"txt\" in a post; did you mean \"text\"?"));
    CHECK(has(bad, "r.yaml:6:34: error: `image` must be an http(s) URL"));
    CHECK(has(bad, "r.yaml:6:57: error: a link card needs `title`"));
    CHECK(has(bad, "r.yaml:9:34: error: a mini-program card needs `appid`"));
}
