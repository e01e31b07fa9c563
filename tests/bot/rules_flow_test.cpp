// The rule engine in the running bot: real encrypted callbacks over loopback, the journal, the
// per-group lanes, decisions in the outbox; reloads (admin request, file watch) with
// keep-last-good, welcome batches on the real clock, state that survives a restart.
#include "bot/service.hpp"

#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "bot/metrics.hpp"
#include "storage/journal.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

using namespace qunbot;
using namespace std::chrono_literals;

namespace {

const char* faq_v1 = R"(version: 1
rules:
  - id: faq
    on: message
    when: { contains: [多少钱] }
    do: [ { reply: "v1 价格见公告" } ]
)";

const char* faq_v2 = R"(version: 1
rules:
  - id: faq
    on: message
    when: { contains: [多少钱] }
    do: [ { reply: "v2 价格见公告" } ]
)";

// A typo'd key and an undefined list: rejected as a whole.
const char* faq_broken = R"(version: 1
rules:
  - id: faq
    on: message
    whne: { contains: $prices }
    do: [ { reply: "broken" } ]
)";

void write_rules(test::TempDir& dir, const std::string& name, const std::string& text)
{
    std::filesystem::create_directories(dir.path() / "rules");
    // Written aside and renamed in, as editors do: the watcher never sees half a file.
    const auto tmp = dir.file("rules/." + name + ".tmp");
    test::write_file(tmp, text);
    std::filesystem::rename(tmp, dir.file("rules/" + name));
}

struct Bot {
    test::TempDir& dir;
    std::string db_path;
    std::unique_ptr<bot::Service> service;
    std::unique_ptr<wecom::CallbackCrypto> crypto;
    int serial = 0;

    Bot(test::TempDir& d, bool watch, const std::string& notify = "") : dir(d)
    {
        std::filesystem::create_directories(dir.path() / "rules");
        const auto extra = "\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":" + (watch ? "true" : "false") +
                           ",\"reload_debounce_ms\":50" + notify + "},";
        service = test::start_service(
            test::write_test_config(dir, test::vector_token, test::vector_key, test::vector_corp, extra), db_path);
        auto c = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), test::vector_corp);
        REQUIRE(c.ok());
        crypto = std::make_unique<wecom::CallbackCrypto>(std::move(*c));
    }
    ~Bot() { stop(); }
    void stop()
    {
        if (!service) return;
        service->request_shutdown();
        service->wait();
        service.reset();
    }

    int send(wecom::TestEventSpec spec, bot::HttpClient& c)
    {
        spec.corp_id = test::vector_corp;
        spec.create_time = 1'700'000'000 + serial;
        auto payload = wecom::make_test_payload(spec);
        REQUIRE(payload.ok());
        const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", "n" + std::to_string(serial++), false);
        auto r = c.request("POST", "/cb?" + sealed.query, sealed.body);
        REQUIRE(r.ok());
        return r->status;
    }
    int message(const std::string& text, bot::HttpClient& c)
    {
        wecom::TestEventSpec spec;
        spec.kind = "message";
        spec.text = text;
        return send(spec, c);
    }
    bot::HttpClient client() { return bot::HttpClient("127.0.0.1", service->port(), 5s); }

    std::int64_t count(const std::string& sql)
    {
        SQLite::Database db(db_path);
        return db.execAndGet(sql).getInt64();
    }
    std::vector<std::string> column(const std::string& sql)
    {
        SQLite::Database db(db_path);
        SQLite::Statement st(db, sql);
        std::vector<std::string> out;
        while (st.executeStep()) out.push_back(st.getColumn(0).getString());
        return out;
    }
    // Polls a condition with a deadline: the outbox is written by another thread and there is
    // no event to wait on from outside the process.
    bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline = 10s)
    {
        const auto until = std::chrono::steady_clock::now() + deadline;
        while (!cond()) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::sleep_for(2ms);
        }
        return true;
    }
    bool metric(const std::string& line) { return service->metrics().render().find(line) != std::string::npos; }
};

} // namespace

TEST_CASE("a broken edit is rejected as a whole while events flow, and the last good rules keep answering", "[rules][reload]")
{
    test::TempDir dir;
    write_rules(dir, "faq.yaml", faq_v1);
    Bot bot(dir, false);
    auto admin = bot.client();

    // Events keep arriving on their own connection while the rules are edited.
    std::atomic<bool> stop{false};
    std::atomic<int> sent{0}, not_ok{0};
    std::thread sender([&] {
        auto c = bot.client();
        while (!stop) {
            if (bot.message("请问多少钱", c) != 200) ++not_ok;
            ++sent;
        }
    });
    REQUIRE(bot.eventually([&] { return sent >= 20; }));

    write_rules(dir, "faq.yaml", faq_broken);
    auto r = admin.request("POST", "/admin/reload", "");
    REQUIRE(r.ok());
    CHECK(r->status == 422);
    CHECK_THAT(r->body, Catch::Contains("faq.yaml:5:5: error: unknown key \"whne\" in a rule; did you mean \"when\"?"));
    CHECK(bot.metric("qunbot_rules_reloads_total{result=\"error\"} 1"));
    CHECK(bot.metric("qunbot_rules_errors 1"));
    CHECK(bot.metric("qunbot_rules_loaded 1"));

    const int during_broken = sent.load();
    // Twenty more messages decided (not just acknowledged) while the broken file is on disk.
    REQUIRE(bot.eventually([&] { return bot.count("SELECT count(*) FROM outbox") >= during_broken + 20; }));

    write_rules(dir, "faq.yaml", faq_v2);
    r = admin.request("POST", "/admin/reload", "");
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    const int after_fix = sent.load();
    REQUIRE(bot.eventually([&] { return sent >= after_fix + 20; }));
    stop = true;
    sender.join();
    CHECK(not_ok == 0);

    // Every message got its decision: one reply per stored message, none lost, none doubled.
    const auto messages = bot.count("SELECT count(*) FROM inbox WHERE kind = 'message'");
    CHECK(messages == sent.load());
    REQUIRE(bot.eventually([&] { return bot.count("SELECT count(*) FROM outbox") == messages; }));
    CHECK(bot.count("SELECT count(*) FROM outbox WHERE action_json LIKE '%broken%'") == 0);
    // Messages sent while the broken file sat on disk were answered by v1; the fix brought v2.
    const auto texts = bot.column("SELECT json_extract(action_json, '$.text') FROM outbox ORDER BY cause_event_id");
    const auto first_v2 = std::find(texts.begin(), texts.end(), "v2 价格见公告");
    REQUIRE(first_v2 != texts.end());
    // Everything decided before the fix met v1: at least the twenty decided while it was broken.
    CHECK(std::distance(texts.begin(), first_v2) >= during_broken + 20);
    CHECK(std::all_of(texts.begin(), first_v2, [](const std::string& t) { return t == "v1 价格见公告"; }));
    CHECK(std::all_of(first_v2, texts.end(), [](const std::string& t) { return t == "v2 价格见公告"; }));
}

TEST_CASE("saving a rule file reloads it, and a broken save is reported to the notify target", "[rules][reload][watch]")
{
    test::TempDir dir;
    write_rules(dir, "faq.yaml", faq_v1);
    Bot bot(dir, true, ",\"notify\":{\"app\":\"t\",\"user\":\"ops-lead\"}");
    REQUIRE(bot.metric("qunbot_rules_reloads_total{result=\"ok\"} 1"));

    write_rules(dir, "faq.yaml", faq_broken);
    REQUIRE(bot.eventually([&] { return bot.metric("qunbot_rules_reloads_total{result=\"error\"} 1"); }));
    REQUIRE(bot.eventually([&] { return bot.count("SELECT count(*) FROM outbox WHERE rule_id = 'qunbot.rules_reload'") == 1; }));
    const auto notice = bot.column("SELECT action_json FROM outbox WHERE rule_id = 'qunbot.rules_reload'");
    CHECK_THAT(notice.at(0), Catch::Contains("ops-lead"));
    CHECK_THAT(notice.at(0), Catch::Contains("faq.yaml:5:5: error: unknown key"));

    write_rules(dir, "faq.yaml", faq_v2);
    REQUIRE(bot.eventually([&] { return bot.metric("qunbot_rules_reloads_total{result=\"ok\"} 2"); }));
    auto c = bot.client();
    CHECK(bot.message("多少钱", c) == 200);
    REQUIRE(bot.eventually([&] { return bot.count("SELECT count(*) FROM outbox WHERE action_json LIKE '%v2 价格%'") == 1; }));
}

TEST_CASE("welcome bursts are merged on the real clock and leavers are left out", "[rules][batch]")
{
    test::TempDir dir;
    write_rules(dir, "welcome.yaml", R"(version: 1
rules:
  - id: welcome
    on: member_joined
    batch: 1s
    do:
      - post: "欢迎 {{ members.mentions }}"
)");
    Bot bot(dir, false);
    auto c = bot.client();
    wecom::TestEventSpec join;
    join.kind = "member_joined";
    join.chat_id = "wrStore1";
    join.members = {"wmNEWCOMER00000000000000000000001"};
    REQUIRE(bot.send(join, c) == 200);
    join.members = {"wmNEWCOMER00000000000000000000002", "wmNEWCOMER00000000000000000000003"};
    REQUIRE(bot.send(join, c) == 200);
    wecom::TestEventSpec leave = join;
    leave.kind = "member_left";
    leave.members = {"wmNEWCOMER00000000000000000000002"};
    leave.scene = 0;
    REQUIRE(bot.send(leave, c) == 200);

    REQUIRE(bot.eventually([&] { return bot.count("SELECT count(*) FROM outbox") == 1; }));
    const auto text = bot.column("SELECT json_extract(action_json, '$.text') FROM outbox").at(0);
    CHECK(text == "欢迎 @wmNEWCOMER00000000000000000000001 @wmNEWCOMER00000000000000000000003");
    CHECK(bot.count("SELECT count(*) FROM welcome_batches") == 0);
    CHECK(bot.metric("qunbot_welcome_batches_flushed_total 1"));
}

TEST_CASE("cooldowns survive a restart, and stored but unprocessed events are replayed", "[rules][restart]")
{
    test::TempDir dir;
    write_rules(dir, "faq.yaml", R"(version: 1
rules:
  - id: faq
    on: message
    when: { contains: [多少钱] }
    cooldown: { group: 1h }
    do: [ { reply: "价格见公告" } ]
)");
    std::string db;
    {
        Bot bot(dir, false);
        db = bot.db_path;
        auto c = bot.client();
        REQUIRE(bot.message("多少钱", c) == 200);
        REQUIRE(bot.eventually([&] { return bot.count("SELECT count(*) FROM outbox") == 1; }));
    }
    // An event committed by a journal whose process died before the dispatcher saw it.
    {
        storage::Journal::Options o;
        o.path = db;
        storage::Journal j(std::move(o));
        core::Event e;
        e.kind = core::EventKind::message;
        e.platform = "wecom";
        e.app = "t";
        e.tenant = test::vector_corp;
        e.dedup_key = "orphan-1";
        e.actor = "lisi";
        e.text = "多少钱";
        e.message_type = "text";
        e.raw_type = "msg/text";
        std::promise<void> done;
        j.append(e, [&](storage::AppendOutcome) { done.set_value(); });
        done.get_future().wait();
    }
    Bot again(dir, false);
    // The orphan is replayed at start: it meets the cooldown the first reply set an hour long.
    REQUIRE(again.eventually([&] { return again.count("SELECT count(*) FROM cooldowns") == 1; }));
    auto c = again.client();
    REQUIRE(again.message("还是想问多少钱", c) == 200);
    REQUIRE(again.eventually([&] { return again.metric("qunbot_engine_events_total 2"); }));
    CHECK(again.count("SELECT count(*) FROM outbox") == 1);
}
