// Strike ladders (`moderate:`): offences counted within the decay window pick the rung, rungs
// become warnings, recalls, removals (owner notices on WeCom) and blacklisting, exemptions hold,
// dry runs decide and log without acting or counting, undo lifts an offence (and a
// blacklisting), and a blacklisted member is handled when joining any group. Run on the real
// state reader and decision writer over SQLite, with the clock passed in.
#include "rules/engine.hpp"
#include "rules/loader.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "storage/rule_state.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <catch2/catch.hpp>

using namespace qunbot;

namespace {

const char* ladder_rules = R"(version: 1
rules:
  - id: ads-contact
    on: message
    when: { contact_bait: [wechat, qq] }
    unless: { sender: [staff, "tag:团长"] }
    moderate:
      ladder: [warn, [recall, warn], remove, blacklist]
      decay: 7d
      warn: "{{ member.mention }} 请勿发广告"
  - id: ads-words-trial
    on: message
    when: { contains: [兼职日结] }
    moderate: { ladder: [remove], dry_run: true }
  - id: blacklisted-joins
    on: member_joined
    when: { blacklisted: true }
    moderate: { ladder: [remove] }
)";

constexpr std::int64_t day = 86'400'000;
constexpr std::int64_t t0 = 1'790'000'000'000;

struct Bench {
    test::TempDir dir;
    std::shared_ptr<const rules::RuleSet> set;
    std::unique_ptr<SQLite::Database> db;
    int serial = 0;

    Bench()
    {
        auto r = rules::load_rule_sources({{"m.yaml", ladder_rules}});
        INFO(r.report());
        REQUIRE(r.ok());
        set = r.rules;
        db = storage::open_for_writing(dir.file("q.db"), storage::Durability::full);
    }
    // One event through the reader, the engine and the writer, as the dispatcher does.
    rules::Decision run(core::Event e, std::int64_t now)
    {
        e.tenant = "ww";
        e.platform = "wecom";
        e.app = "t";
        e.dedup_key = "e" + std::to_string(++serial);
        e.message_id = "msg" + std::to_string(serial);
        storage::StateReader reader(*db);
        const auto state = reader.load(e, *set, now, 8 * 3600);
        auto d = rules::evaluate(*set, e, state);
        SQLite::Transaction tx(*db);
        storage::apply_decision(*db, d, "ww", serial, now, "v");
        tx.commit();
        return d;
    }
    rules::Decision say(const std::string& member, const std::string& group, const std::string& text, std::int64_t now)
    {
        core::Event e;
        e.kind = core::EventKind::message;
        e.group_id = group;
        e.actor = member;
        e.text = text;
        return run(std::move(e), now);
    }
    std::vector<std::string> kinds(const rules::Decision& d)
    {
        std::vector<std::string> out;
        for (const auto& a : d.actions) out.emplace_back(core::to_string(a.kind));
        return out;
    }
};

const std::string spammer = "wmSPAMMER00000000000000000000001";
const std::string other = "wmOTHER0000000000000000000000001";

} // namespace

TEST_CASE("moderate: in rule files, every error at once", "[moderation][loader]")
{
    const auto r = rules::load_rule_sources({{"m.yaml", R"(version: 1
rules:
  - id: a
    on: message
    when: { contains: [x] }
    moderate: { ladder: [warn, [recal, warn]], decay: forever }
  - id: b
    on: member_joined
    moderate: { ladder: [recall] }
  - id: c
    on: contact_added
    moderate: { ladder: [warn] }
  - id: d
    on: message
    when: { contains: [y] }
    moderate: { decay: 7d }
)"}});
    std::string all;
    for (const auto& d : r.diagnostics) all += d.headline() + "\n";
    INFO(all);
    CHECK(r.error_count() == 5);
    CHECK_THAT(all, Catch::Contains("m.yaml:6:33: error: unknown ladder step \"recal\"; did you mean \"recall\"?"));
    CHECK_THAT(all, Catch::Contains("m.yaml:6:55: error: `decay`: \"forever\" is not a duration from 1m to 366d, e.g. 7d"));
    CHECK_THAT(all, Catch::Contains("m.yaml:9:26: error: `recall` needs a message: it does not apply to `on: member_joined`"));
    CHECK_THAT(all, Catch::Contains("m.yaml:12:15: error: `moderate` applies to `on: message` and `on: member_joined` rules"));
    CHECK_THAT(all, Catch::Contains("m.yaml:16:15: error: `moderate` needs a `ladder`"));
}

TEST_CASE("a strike ladder escalates per offence within the decay window, across groups", "[moderation]")
{
    Bench b;
    auto d = b.say(spammer, "wrA", "加我微信 zhang_san888", t0);
    CHECK(b.kinds(d) == std::vector<std::string>{"post"});
    CHECK(d.actions[0].text == "@" + spammer + " 请勿发广告");
    CHECK(d.actions[0].mentions == std::vector<std::string>{spammer});
    REQUIRE(d.moderation.size() == 1);
    CHECK(d.moderation[0].offence == 1);
    // The second offence, in another group: offences follow the member, not the group.
    d = b.say(spammer, "wrB", "vx：abc12345 私聊", t0 + day);
    CHECK(b.kinds(d) == std::vector<std::string>{"recall", "post"});
    CHECK(d.actions[0].target == "msg2");
    d = b.say(spammer, "wrA", "QQ 123456789", t0 + 2 * day);
    CHECK(b.kinds(d) == std::vector<std::string>{"remove_member"});
    CHECK(d.actions[0].target == spammer);
    CHECK_THAT(d.actions[0].text, Catch::Contains("offence 3"));
    d = b.say(spammer, "wrC", "加V：money8899", t0 + 3 * day);
    CHECK(d.moderation[0].steps == "blacklist");
    CHECK(d.blacklist_adds.size() == 1);
    CHECK(storage::is_blacklisted(*b.db, "ww", spammer));
    // The last rung repeats.
    d = b.say(spammer, "wrC", "加V：money8899", t0 + 3 * day + 1000);
    CHECK(d.moderation[0].offence == 5);
    CHECK(d.moderation[0].steps == "blacklist");

    // Now blacklisted, the member joining any group is handled at once.
    core::Event join;
    join.kind = core::EventKind::member_joined;
    join.group_id = "wrZ";
    join.members = {spammer, other};
    d = b.run(join, t0 + 4 * day);
    REQUIRE(d.actions.size() == 1);
    CHECK(d.actions[0].kind == core::ActionKind::remove_member);
    CHECK(d.actions[0].target == spammer);
    CHECK(d.actions[0].group_id == "wrZ");

    // The audit log has every decision, newest first.
    const auto log = storage::moderation_log(*b.db, spammer, 100);
    REQUIRE(log.size() == 6);
    CHECK(log.back().offence == 1);
    CHECK(log.back().excerpt == "加我微信 zhang_san888");
    CHECK(log.back().group_id == "wrA");

    SECTION("undo lifts an offence and its blacklisting") {
        const auto fourth = log[2]; // offence 4 (blacklist)
        REQUIRE(fourth.offence == 4);
        REQUIRE(storage::undo_moderation(*b.db, fourth.id, "店长小李", "误判", t0 + 5 * day).has_value());
        CHECK_FALSE(storage::is_blacklisted(*b.db, "ww", spammer));
        CHECK_FALSE(storage::undo_moderation(*b.db, fourth.id, "店长小李", "again", t0 + 5 * day).has_value());
        const auto after = storage::moderation_log(*b.db, spammer, 100);
        CHECK(after[2].undone_by == "店长小李");
    }
}

TEST_CASE("offences decay, exemptions hold, and dry runs act on nothing and count nothing", "[moderation]")
{
    Bench b;
    CHECK(b.say(other, "wrA", "加我微信 zhang_san888", t0).moderation.at(0).offence == 1);
    // Eight days later the first offence no longer counts.
    CHECK(b.say(other, "wrA", "加我微信 zhang_san888", t0 + 8 * day).moderation.at(0).offence == 1);
    CHECK(b.say(other, "wrA", "加我微信 zhang_san888", t0 + 9 * day).moderation.at(0).offence == 2);

    // Staff and members tagged 团长 are exempt.
    CHECK(b.say("zhangsan", "wrA", "加我微信 zhang_san888", t0).moderation.empty());
    REQUIRE(storage::set_manual_tag(*b.db, "ww", "wmLEADER00000000000000000000001", "团长", true, "群团长", t0));
    CHECK(b.say("wmLEADER00000000000000000000001", "wrA", "加我微信 zhang_san888", t0).moderation.empty());

    // A dry run: logged, nothing done, and it does not count towards the ladder.
    auto d = b.say(spammer, "wrA", "兼职日结，详情私聊", t0);
    CHECK(d.actions.empty());
    REQUIRE(d.moderation.size() == 1);
    CHECK(d.moderation[0].dry_run);
    CHECK(d.moderation[0].steps == "remove");
    CHECK(b.say(spammer, "wrA", "加我微信 zhang_san888", t0 + 1000).moderation.at(0).offence == 1);
    CHECK(storage::moderation_log(*b.db, spammer, 10).back().dry_run);
}
