// Strike ladders (`moderate:`): offences counted within the decay window pick the rung, rungs
// become warnings, recalls, removals (owner notices on WeCom) and blacklisting, exemptions hold,
// dry runs decide and log without acting or counting, undo lifts an offence (and a
// blacklisting), and a blacklisted member is handled when joining any group. Run on the real
// state reader and decision writer over SQLite, with the clock passed in.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "bot/metrics.hpp"
#include "bot/service.hpp"
#include "rules/engine.hpp"
#include "rules/loader.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "storage/journal.hpp"
#include "storage/rule_state.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <catch2/catch.hpp>

#include <future>
#include <set>

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

    explicit Bench(const std::string& rules_text = ladder_rules)
    {
        auto r = rules::load_rule_sources({{"m.yaml", rules_text}});
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
        const auto history = storage::blacklist_history(*b.db, "ww", 10);
        REQUIRE(history.size() == 2); // added by the rule, removed by the undo
        CHECK_FALSE(history[0].added);
        CHECK(history[0].by == "店长小李");
        CHECK(history[1].added);
        CHECK(history[1].by == "rule");
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

TEST_CASE("behaviour: flooding, newcomers and nicknames", "[moderation][behaviour]")
{
    auto r = rules::load_rule_sources({{"b.yaml", R"(version: 1
rules:
  - id: flood
    on: message
    when: { flood: { messages: 5, within: 1m } }
    do: [ { reply: "{{ member.mention }} 请勿刷屏" } ]
  - id: newcomer-link
    on: message
    when: { all: [ { newcomer: { hours: 24, messages: 3 } }, { links: any } ] }
    do: [ { assign_tag: 新人发链接 } ]
  - id: nick
    on: member_joined
    when: { nickname: [代理, 兼职, 加V] }
    do: [ { assign_tag: 昵称可疑 } ]
)"}});
    INFO(r.report());
    REQUIRE(r.ok());
    test::TempDir dir;
    auto db = storage::open_for_writing(dir.file("q.db"), storage::Durability::full);
    const std::string m = "wmFLOODER00000000000000000000001";
    // What the journal records: the member joined an hour ago, and their messages.
    db->exec("INSERT INTO inbox (id, tenant, dedup_key, platform, app, kind, raw_type, group_id, actor, subject, event_time, received_ms,"
             " event_json, payload) VALUES (1, 'ww', 'x', 'wecom', 't', 'message', 'text', 'wrG', '', '', 0, 0, '{}', '')");
    {
        SQLite::Statement st(*db, "INSERT INTO group_members (tenant, group_id, member_id, joined_at, present) VALUES ('ww', 'wrG', ?, ?, 1)");
        st.bind(1, m);
        st.bind(2, (t0 - 3'600'000) / 1000);
        st.exec();
    }
    auto message_at = [&](std::int64_t ms) {
        SQLite::Statement st(*db, "INSERT INTO activity (event_id, at, tenant, group_id, member_id, kind, detail) VALUES (1, ?, 'ww', 'wrG', ?, 'message', 'text')");
        st.bind(1, ms / 1000);
        st.bind(2, m);
        st.exec();
    };
    storage::StateReader reader(*db);
    core::Event e;
    e.kind = core::EventKind::message;
    e.tenant = "ww";
    e.group_id = "wrG";
    e.actor = m;
    e.text = "看看 www.shop-888.vip";
    e.dedup_key = "e1";
    auto fired = [&](std::int64_t now) {
        std::vector<std::string> ids;
        for (const auto& t : rules::evaluate(*r.rules, e, reader.load(e, *r.rules, now, 8 * 3600)).trace) {
            if (t.outcome == rules::Trace::Outcome::fired) ids.push_back(t.rule_id);
        }
        return ids;
    };
    message_at(t0);
    // A newcomer (joined an hour ago, one message) posting a link; no flood yet.
    CHECK(fired(t0) == std::vector<std::string>{"newcomer-link"});
    for (int i = 1; i <= 4; ++i) message_at(t0 + i * 5'000);
    // Five messages within a minute: flooding; five messages is past "first 3", but joined < 24 h.
    CHECK(fired(t0 + 20'000) == std::vector<std::string>{"flood", "newcomer-link"});
    // Two minutes later the window has passed; two days later they are no newcomer.
    CHECK(fired(t0 + 120'000) == std::vector<std::string>{"newcomer-link"});
    CHECK(fired(t0 + 2 * day).empty());

    storage::set_member_name(*db, "ww", "wmNICK000000000000000000000000001", "兼职招聘小王", t0);
    core::Event join;
    join.kind = core::EventKind::member_joined;
    join.tenant = "ww";
    join.group_id = "wrG";
    join.members = {"wmNICK000000000000000000000000001", m};
    join.dedup_key = "j1";
    const auto d = rules::evaluate(*r.rules, join, reader.load(join, *r.rules, t0, 8 * 3600));
    REQUIRE(d.tags.size() == 1);
    CHECK(d.tags[0].member == "wmNICK000000000000000000000000001");

    const auto bad = rules::load_rule_sources({{"c.yaml", R"(version: 1
rules:
  - id: a
    on: message
    when: { flood: { messages: 5 } }
    do: [ { post: x } ]
  - id: b
    on: message
    when: { newcomer: {} }
    do: [ { post: x } ]
)"}});
    std::string all;
    for (const auto& x : bad.diagnostics) all += x.headline() + "\n";
    INFO(all);
    CHECK(bad.error_count() == 2);
    CHECK_THAT(all, Catch::Contains("`flood.within` must be a duration from 1s to 1h, e.g. 1m"));
    CHECK_THAT(all, Catch::Contains("`newcomer` needs `hours` and/or `messages`"));
}

TEST_CASE("the same text from one member in several groups, through the real journal", "[moderation][behaviour]")
{
    auto r = rules::load_rule_sources({{"r.yaml", R"(version: 1
rules:
  - id: cross-post
    on: message
    when: { repeat: { groups: 3, within: 10m } }
    do: [ { assign_tag: 跨群刷屏 } ]
)"}});
    REQUIRE(r.ok());
    test::TempDir dir;
    storage::Journal::Options jo;
    jo.path = dir.file("q.db");
    storage::Journal journal(jo);
    const std::string m = "wmCROSSPOSTER000000000000000001";
    int n = 0;
    auto post = [&](const std::string& group, const std::string& text, std::int64_t at_ms) {
        core::Event e;
        e.kind = core::EventKind::message;
        e.platform = "wecom";
        e.tenant = "ww";
        e.group_id = group;
        e.actor = m;
        e.text = text;
        e.message_type = "text";
        e.time = at_ms / 1000;
        e.dedup_key = "p" + std::to_string(++n);
        std::promise<storage::AppendOutcome> done;
        journal.append(e, [&done](storage::AppendOutcome o) { done.set_value(std::move(o)); });
        REQUIRE(done.get_future().get().status == storage::AppendOutcome::Status::stored);
        return e;
    };
    auto fires = [&](const core::Event& e, std::int64_t now) {
        storage::StateReader reader(jo.path);
        return !rules::evaluate(*r.rules, e, reader.load(e, *r.rules, now, 8 * 3600)).tags.empty();
    };
    post("wrG1", "全场一折 加V：sale_0001", t0);
    auto e = post("wrG2", "全场一折 加 v：sale_0001", t0 + 60'000); // spacing differs: the same text once normalised
    CHECK_FALSE(fires(e, t0 + 60'000));                             // two groups so far
    e = post("wrG3", "全场一折 加V：sale_0001", t0 + 120'000);
    CHECK(fires(e, t0 + 120'000));                                  // three groups within ten minutes
    e = post("wrG4", "另一句话", t0 + 130'000);
    CHECK_FALSE(fires(e, t0 + 130'000));
    e = post("wrG5", "全场一折 加V：sale_0001", t0 + 30 * 60'000);  // the earlier posts are outside the window
    CHECK_FALSE(fires(e, t0 + 30 * 60'000));
    journal.close();
}

namespace {

// The real service on loopback with one rule file, and a customer's group message sent to it
// as a sealed callback.
struct LiveBot {
    test::TempDir dir;
    std::string db_path;
    std::unique_ptr<bot::Service> service;

    explicit LiveBot(const std::string& rules_yaml)
    {
        std::filesystem::create_directories(dir.path() / "rules");
        test::write_file(dir.file("rules/m.yaml"), rules_yaml);
        service = test::start_service(test::write_test_config(dir, test::vector_token, test::vector_key, test::vector_corp,
                                                              "\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false},"),
                                      db_path);
    }
    void say(const std::string& text, const std::string& nonce)
    {
        auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), test::vector_corp);
        REQUIRE(crypto.ok());
        wecom::TestEventSpec spec;
        spec.kind = "message";
        spec.corp_id = test::vector_corp;
        spec.text = text;
        auto payload = wecom::make_test_payload(spec);
        REQUIRE(payload.ok());
        const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", nonce, false);
        bot::HttpClient client("127.0.0.1", service->port(), std::chrono::seconds(5));
        auto r = client.request("POST", "/cb?" + sealed.query, sealed.body);
        REQUIRE(r.ok());
        REQUIRE(r->status == 200);
    }
    void stop()
    {
        service->request_shutdown();
        service->wait();
    }
};

} // namespace

TEST_CASE("the running bot logs and counts strike-ladder decisions", "[moderation][e2e]")
{
    LiveBot bot(R"(version: 1
rules:
  - id: bait
    on: message
    when: { contact_bait: [wechat] }
    moderate: { ladder: [warn], dry_run: true }
)");
    bot.say("加我微信 zhang_san888", "mod1");
    REQUIRE(test::eventually([&] {
        return bot.service->metrics().render().find("qunbot_moderation_decisions_total{rule=\"bait\",steps=\"warn\",dry_run=\"true\"} 1") !=
               std::string::npos;
    }));
    bot.stop();
    SQLite::Database db(bot.db_path);
    CHECK(db.execAndGet("SELECT count(*) FROM moderation_log WHERE rule_id = 'bait' AND dry_run = 1").getInt() == 1);
    CHECK(db.execAndGet("SELECT count(*) FROM outbox").getInt() == 0); // a dry run does nothing
}

TEST_CASE("the moderation log shows what became of each action a decision queued", "[moderation][e2e]")
{
    LiveBot bot(R"(version: 1
rules:
  - id: bait
    on: message
    when: { contact_bait: [wechat] }
    moderate: { ladder: [[recall, warn]] }
)");
    bot.say("加我微信 zhang_san888", "mod2");
    // No API credentials: the log adapter performs both actions, and says so.
    auto db = std::make_unique<SQLite::Database>(bot.db_path, SQLite::OPEN_READWRITE);
    db->setBusyTimeout(5000);
    REQUIRE(test::eventually([&] { return db->execAndGet("SELECT count(*) FROM outbox WHERE status = 'done'").getInt() == 2; }));
    const auto log = storage::moderation_log(*db, "", 10);
    REQUIRE(log.size() == 1);
    CHECK(log[0].steps == "recall+warn");
    REQUIRE(log[0].outcomes.size() == 2);
    std::set<std::string> kinds;
    for (const auto& o : log[0].outcomes) {
        kinds.insert(o.kind);
        CHECK(o.status == "done");
        CHECK(o.detail.find("logged only") != std::string::npos);
    }
    CHECK(kinds == std::set<std::string>{"post", "recall"});
    // A failure shows its error instead (as the delivery worker records one).
    db->exec("UPDATE outbox SET status = 'dead', last_error = 'errcode 40058: invalid msgid' WHERE kind = 'recall'");
    const auto failed = storage::moderation_log(*db, "", 10);
    REQUIRE(failed[0].outcomes.size() == 2);
    bool saw = false;
    for (const auto& o : failed[0].outcomes) {
        if (o.kind == "recall") saw = o.status == "dead" && o.detail == "errcode 40058: invalid msgid";
    }
    CHECK(saw);
    bot.stop();
}

TEST_CASE("the default ad rules exempt staff, group leaders and whitelisted members", "[moderation]")
{
    Bench b(test::read_file(std::string(QUNBOT_SOURCE_DIR) + "/config/rules/ads.yaml"));
    const std::string ad = "加我微信 zhang_san888";
    const std::string leader = "wmLEADER00000000000000000000001", friend_of_brand = "wmPARTNER0000000000000000000001";
    REQUIRE(storage::set_manual_tag(*b.db, "ww", leader, "团长", true, "群团长", t0));
    REQUIRE(storage::set_manual_tag(*b.db, "ww", friend_of_brand, "白名单", true, "品牌合作方", t0));
    CHECK(b.say("zhangsan", "wrA", ad, t0).moderation.empty()); // staff
    CHECK(b.say(leader, "wrA", ad, t0).moderation.empty());
    CHECK(b.say(friend_of_brand, "wrA", ad, t0).moderation.empty());
    const auto d = b.say("wmCUSTOMER0000000000000000000009", "wrA", ad, t0);
    REQUIRE(d.moderation.size() == 1);
    CHECK(d.moderation[0].rule_id == "ads-contact");
    CHECK(d.moderation[0].dry_run); // as shipped: decide and log only
}
