// The delivery worker end to end: the real service (or the real process) drains its outbox
// against the fake WeCom server over TLS.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "bot/metrics.hpp"
#include "bot/service.hpp"
#include "fakes/fake_wecom.hpp"
#include "storage/database.hpp"
#include "storage/outbox.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <catch2/catch.hpp>

#include <csignal>
#include <ctime>
#include <functional>
#include <map>
#include <set>
#include <thread>

using namespace qunbot;
using namespace std::chrono_literals;

namespace {

const fakes::TestPki& pki() { return fakes::loopback_pki(); }

constexpr const char* corp = "wwdeliverycorp01";
constexpr const char* secret = "corp-secret-for-tests";

// A configuration whose app talks to `fake` (trusting the test CA), with fast retries.
std::string write_api_config(const test::TempDir& dir, const fakes::FakeWeCom& fake, const std::string& robots = "{}",
                             const std::string& delivery_extra = "", const std::string& rules_extra = "")
{
    fakes::write_pem(dir.file("ca.pem"), pki().ca_pem);
    test::write_file(dir.file("t.secrets.json"), std::string("{\"token\":\"") + test::vector_token + "\",\"encoding_aes_key\":\"" +
                                                     test::vector_key + "\",\"corp_secret\":\"" + secret + "\",\"robots\":" + robots + "}");
    std::filesystem::create_directories(dir.path() / "rules");
    const auto path = dir.file("qunbot.json");
    test::write_file(path, "{\"listen\":{\"address\":\"127.0.0.1\",\"port\":0},\"threads\":2,\"database\":\"" + dir.file("q.db") +
                               "\",\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false" + rules_extra + "},"
                               "\"delivery\":{\"retry_base_ms\":20,\"poll_ms\":50,\"task_check_ms\":100,\"directory_resync_ms\":100,\"frequency_pause_ms\":200,\"request_timeout_ms\":400" +
                               delivery_extra + "},"
                               "\"apps\":[{\"name\":\"t\",\"path\":\"/cb\",\"corp_id\":\"" + corp + "\",\"secrets_file\":\"" +
                               dir.file("t.secrets.json") + "\",\"api_base_url\":\"" + fake.base_url() + "\",\"api_ca_file\":\"" +
                               dir.file("ca.pem") + "\",\"agent_id\":1000002}]}");
    return path;
}

std::int64_t now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

core::Action action(core::ActionKind kind, const std::string& key, const std::string& group, const std::string& target,
                    const std::string& text)
{
    core::Action a;
    a.kind = kind;
    a.idempotency_key = key;
    a.rule_id = "test";
    a.tenant = corp;
    a.platform = "wecom";
    a.app = "t";
    a.group_id = group;
    a.target = target;
    a.text = text;
    return a;
}

// Writes actions (and optional SQL) into a fresh database before the bot starts.
void seed(const std::string& db_path, const std::vector<core::Action>& actions, const std::string& sql = "")
{
    auto db = storage::open_for_writing(db_path, storage::Durability::full);
    SQLite::Transaction tx(*db);
    for (const auto& a : actions) storage::enqueue_action(*db, a, now_ms());
    if (!sql.empty()) db->exec(sql);
    tx.commit();
}

std::map<std::string, std::int64_t> counts(const std::string& db_path)
{
    auto db = storage::open_for_reading(db_path);
    std::map<std::string, std::int64_t> out;
    for (const auto& [s, n] : storage::outbox_counts(*db)) out[s] = n;
    return out;
}

bool settled(const std::map<std::string, std::int64_t>& c)
{
    return !c.contains("pending") && !c.contains("failed") && !c.contains("in_flight");
}

// Waits (with a deadline) until `cond` holds.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline = 30s)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until) {
        if (cond()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return cond();
}

// Sends `spec` to the bot as WeCom would (encrypted and signed for the test corp); the status.
int send_callback(std::uint16_t port, wecom::TestEventSpec spec, const std::string& nonce)
{
    auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), corp);
    REQUIRE(crypto.ok());
    spec.corp_id = corp;
    auto payload = wecom::make_test_payload(spec);
    REQUIRE(payload.ok());
    const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", nonce, false);
    bot::HttpClient http("127.0.0.1", port, 5s);
    auto r = http.request("POST", "/cb?" + sealed.query, sealed.body);
    REQUIRE(r.ok());
    return r->status;
}

std::map<std::string, int> delivered_texts(const fakes::FakeWeCom& fake)
{
    std::map<std::string, int> out;
    for (const auto& e : fake.effects("message/send")) {
        if (e.body.contains("text")) ++out[e.body["text"].value("content", "")];
    }
    return out;
}

} // namespace

TEST_CASE("customer-group posts become one mass-send task per owner, once per group per day, with a notice to the owner",
          "[delivery]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    for (int i = 1; i <= 4; ++i) fake.add_group({"wrG" + std::to_string(i), "门店福利群" + std::to_string(i), "owner1", {}, {}});
    fake.add_group({"wrG5", "门店福利群5", "owner2", {{"wmCUSTOMER000000000001", 2, "小王", 1700000000, 3}}, {"admin5"}});
    const auto config = write_api_config(dir, fake);
    std::vector<core::Action> actions;
    for (int i = 1; i <= 5; ++i) actions.push_back(action(core::ActionKind::post, "k" + std::to_string(i), "wrG" + std::to_string(i), "", "今日福利：满99减20"));
    actions.push_back(action(core::ActionKind::post, "k1-again", "wrG1", "", "今日福利：满99减20"));
    seed(dir.file("q.db"), actions);

    std::string db;
    auto service = test::start_service(config, db);
    REQUIRE(eventually([&] {
        auto c = counts(db);
        return settled(c) && c["done"] == 7; // 5 posts + 2 owner notices
    }));
    const auto tasks = fake.effects("externalcontact/add_msg_template");
    REQUIRE(tasks.size() == 2);
    std::map<std::string, std::vector<std::string>> by_sender;
    for (const auto& t : tasks) {
        CHECK(t.body["chat_type"] == "group");
        CHECK(t.body["text"]["content"] == "今日福利：满99减20");
        by_sender[t.body["sender"]] = t.body["chat_id_list"].get<std::vector<std::string>>();
    }
    CHECK(by_sender["owner1"] == std::vector<std::string>{"wrG1", "wrG2", "wrG3", "wrG4"});
    CHECK(by_sender["owner2"] == std::vector<std::string>{"wrG5"});
    CHECK(counts(db)["skipped"] == 1);
    // The owners are told to confirm.
    std::set<std::string> told;
    for (const auto& e : fake.effects("message/send")) told.insert(e.body["touser"]);
    CHECK(told == std::set<std::string>{"owner1", "owner2"});
    // The directory learned the groups (names, owners, members) from groupchat/get.
    auto rdb = storage::open_for_reading(db);
    CHECK(storage::group_entry(*rdb, corp, "wrG5").owner == "owner2");
    CHECK(storage::group_entry(*rdb, corp, "wrG5").admins == std::vector<std::string>{"admin5"});
    CHECK(rdb->execAndGet("SELECT name FROM people WHERE member_id = 'wmCUSTOMER000000000001'").getString() == "小王");
    auto skipped = storage::list_outbox(*rdb, "skipped", 10);
    REQUIRE(skipped.size() == 1);
    CHECK(skipped[0].last_error.find("quota") != std::string::npos);
    CHECK(service->metrics().render().find("qunbot_delivery_limit{limit=\"mass_send_daily_quota\"} 1") != std::string::npos);

    // The follow-up learns which owner sent the task.
    std::string owner1_task;
    for (const auto& t : storage::list_mass_tasks(*rdb, 10)) {
        CHECK(t.groups.size() == (t.sender == "owner1" ? 4u : 1u));
        if (t.sender == "owner1") owner1_task = t.msgid;
    }
    REQUIRE_FALSE(owner1_task.empty());
    fake.confirm_task(owner1_task);
    REQUIRE(eventually([&] {
        auto list = storage::list_mass_tasks(*storage::open_for_reading(db), 10);
        for (const auto& t : list) {
            if (t.msgid == owner1_task) return t.settled && t.results.size() == 4;
        }
        return false;
    }));
    for (const auto& t : storage::list_mass_tasks(*rdb, 10)) {
        if (t.msgid == owner1_task) {
            for (const auto& [chat, status] : t.results) CHECK(status == 1);
        } else {
            CHECK_FALSE(t.settled); // owner2 has not sent yet
        }
    }
}

TEST_CASE("a storm of token revocation, -1, 45009, 5xx and timeouts loses nothing and performs nothing twice", "[delivery]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    fake.add_robot("robot-key-1");
    fake.add_group({"wrROBOTGROUP", "内部群", "boss", {}, {}});
    fake.add_tag_group("客户等级", {"VIP"});
    const auto config = write_api_config(dir, fake, "{\"wrROBOTGROUP\":\"robot-key-1\"}");
    std::vector<core::Action> actions;
    for (int i = 0; i < 40; ++i) {
        actions.push_back(action(core::ActionKind::reply, "m" + std::to_string(i), "", "staff" + std::to_string(i % 7), "通知 #" + std::to_string(i)));
    }
    std::string contacts_sql;
    for (int i = 0; i < 10; ++i) {
        const auto customer = "wmCUSTOMER0000000000" + std::to_string(10 + i);
        fake.add_contact("sales1", customer);
        contacts_sql += "INSERT INTO contacts VALUES ('" + std::string(corp) + "', '" + customer + "', 'sales1', 1);";
        actions.push_back(action(core::ActionKind::assign_tag, "t" + std::to_string(i), "", customer, i % 2 ? "VIP" : "新客"));
    }
    for (int i = 0; i < 2; ++i) actions.push_back(action(core::ActionKind::post, "r" + std::to_string(i), "wrROBOTGROUP", "", "机器人 #" + std::to_string(i)));
    auto welcome = action(core::ActionKind::send_welcome, "w0", "", "wmCUSTOMER000000000099", "你好，欢迎！");
    welcome.welcome_code = fake.issue_welcome_code();
    welcome.not_after_ms = now_ms() + 20'000;
    actions.push_back(welcome);
    seed(dir.file("q.db"), actions, contacts_sql);

    fake.fail("message/send", fakes::Fault{.errcode = -1}, 6);
    fake.fail("message/send", fakes::Fault{.errcode = 45009}, 1);
    fake.fail("message/send", fakes::Fault{.http_status = 502}, 4);
    fake.fail("message/send", fakes::Fault{.delay = 1000ms, .before_acting = false}, 2);
    fake.fail("externalcontact/mark_tag", fakes::Fault{.errcode = 45033}, 1);
    fake.fail("externalcontact/mark_tag", fakes::Fault{.delay = 1000ms, .before_acting = false}, 1);
    fake.fail("webhook/send", fakes::Fault{.http_status = 503}, 1);

    std::string db;
    auto service = test::start_service(config, db);
    REQUIRE(eventually([&] { return fake.effects("message/send").size() >= 10; }));
    fake.revoke_tokens(); // WeCom may invalidate a token early, mid-run
    REQUIRE(eventually([&] { return settled(counts(db)); }));

    const auto c = counts(db);
    CHECK(c.at("done") == 53);
    CHECK(c.size() == 1);
    const auto texts = delivered_texts(fake);
    CHECK(texts.size() == 40);
    for (const auto& [t, n] : texts) CHECK(n == 1);
    const auto tags = fake.customer_tags();
    for (int i = 0; i < 10; ++i) {
        const auto customer = "wmCUSTOMER0000000000" + std::to_string(10 + i);
        CHECK(tags.at(customer) == std::set<std::string>{i % 2 ? "VIP" : "新客"});
    }
    CHECK(fake.effects("externalcontact/add_corp_tag").size() == 1); // 新客 created once, then known
    CHECK(fake.effects("webhook/send").size() == 2);
    CHECK(fake.effects("externalcontact/send_welcome_msg").size() == 1);
    CHECK(fake.calls("gettoken") >= 2);
    const auto metrics = service->metrics().render();
    CHECK(metrics.find("qunbot_wecom_api_errors_total{api=\"message/send\",kind=\"frequency_limited\"} 1") != std::string::npos);
    CHECK(metrics.find("qunbot_wecom_api_errors_total{api=\"externalcontact/mark_tag\",kind=\"concurrency_limited\"} 1") !=
          std::string::npos);
    // 45033 halved the cap (8 → 4); it grows back by one per 20 successes.
    const auto at = metrics.find("\nqunbot_delivery_concurrency ");
    REQUIRE(at != std::string::npos);
    const int cap = std::stoi(metrics.substr(at + 29));
    CHECK(cap >= 4);
    CHECK(cap < 8);
}

TEST_CASE("without API credentials actions go to the log adapter", "[delivery]")
{
    test::TempDir dir;
    const auto config = test::write_test_config(dir);
    seed(dir.file("q.db"), {action(core::ActionKind::post, "log1", "wrANYGROUP", "", "hello"),
                            action(core::ActionKind::post, "broken", "wrANYGROUP", "", "x")},
         "UPDATE outbox SET action_json = '{not json' WHERE idempotency_key = 'broken';");
    std::string db;
    auto service = test::start_service(config, db);
    REQUIRE(eventually([&] { return counts(db)["done"] == 1 && counts(db)["dead"] == 1; }));
    // A row that cannot be read back is never performed half-understood: it is dead, with why.
    CHECK(storage::get_outbox(*storage::open_for_reading(db), 2)->last_error.find("not readable") != std::string::npos);
    auto rdb = storage::open_for_reading(db);
    const auto rows = storage::list_outbox(*rdb, "done", 1);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].result.find("logged only") != std::string::npos);
}

TEST_CASE("SIGKILL while the outbox drains: after a restart nothing is lost and nothing is done twice", "[delivery][process]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    fake.set_latency(15ms);
    std::vector<core::Action> actions;
    for (int i = 0; i < 150; ++i) {
        actions.push_back(action(core::ActionKind::reply, "m" + std::to_string(i), "", "staff" + std::to_string(i % 20), "消息 " + std::to_string(i)));
    }
    for (int i = 0; i < 30; ++i) {
        const auto g = "wrKILL" + std::to_string(i);
        fake.add_group({g, "群" + std::to_string(i), "owner" + std::to_string(i), {}, {}});
        // Distinct texts: one task per group, so tasks are in flight at the kill.
        actions.push_back(action(core::ActionKind::post, "p" + std::to_string(i), g, "", "活动 " + std::to_string(i)));
    }
    seed(dir.file("q.db"), actions);
    const auto config = write_api_config(dir, fake, "{}", ",\"directory_sync\":false");

    std::optional<test::Child> child;
    test::start_server(child, config);
    REQUIRE(eventually([&] { return fake.effects().size() >= 40; }));
    child->signal(SIGKILL);
    REQUIRE(child->wait_exit(10s).has_value());
    const auto at_kill = counts(dir.file("q.db"));
    INFO("at kill: in_flight=" << (at_kill.contains("in_flight") ? at_kill.at("in_flight") : 0));
    CHECK(at_kill.contains("pending")); // the kill really interrupted the drain

    test::start_server(child, config);
    REQUIRE(eventually([&] { return settled(counts(dir.file("q.db"))); }));
    const auto c = counts(dir.file("q.db"));
    // Each message exactly once: resent ones were dropped by WeCom's duplicate check.
    const auto texts = delivered_texts(fake);
    int messages = 0;
    for (const auto& [t, n] : texts) {
        if (t.starts_with("消息 ")) {
            ++messages;
            CHECK(n == 1);
        }
    }
    CHECK(messages == 150);
    // Mass sends are not safe to repeat: each group got at most one task; a task in flight at
    // the kill is left for a person ("check") instead of being created twice.
    std::map<std::string, int> per_group;
    for (const auto& e : fake.effects("externalcontact/add_msg_template")) {
        for (const auto& g : e.body["chat_id_list"]) ++per_group[g.get<std::string>()];
    }
    for (const auto& [g, n] : per_group) CHECK(n == 1);
    auto rdb = storage::open_for_reading(dir.file("q.db"));
    std::int64_t posts_done = rdb->execAndGet("SELECT count(*) FROM outbox WHERE kind = 'post' AND status = 'done'").getInt64();
    std::int64_t posts_check = rdb->execAndGet("SELECT count(*) FROM outbox WHERE kind = 'post' AND status = 'check'").getInt64();
    CHECK(posts_done + posts_check == 30);
    CHECK(static_cast<std::int64_t>(per_group.size()) >= posts_done);
    CHECK(posts_check <= 8); // at most the calls in flight
    CHECK(c.at("done") >= 150 + posts_done);
    child->signal(SIGTERM);
    CHECK(child->wait_exit(10s) == 0);
}

TEST_CASE("rule actions happen on WeCom: the welcome within its 20 s, the channel tag by mark_tag, a bad reload told to staff",
          "[delivery][rules]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    const std::string customer = "wmCUSTOMERfromQRcode0001";
    fake.add_contact("sales1", customer);
    std::filesystem::create_directories(dir.path() / "rules");
    test::write_file(dir.file("rules/hello.yaml"), R"(version: 1
rules:
  - id: hello
    on: contact_added
    do:
      - welcome: "您好，欢迎光临！"
      - assign_tag: "渠道:{{ event.state }}"
)");
    const auto config = write_api_config(dir, fake, "{}", "", ",\"notify\":{\"app\":\"t\",\"user\":\"ops1\"}");
    std::string db;
    auto service = test::start_service(config, db);

    wecom::TestEventSpec spec;
    spec.kind = "contact_added";
    spec.user = "sales1";
    spec.external_user = customer;
    spec.state = "store-12";
    spec.welcome_code = fake.issue_welcome_code();
    REQUIRE(send_callback(service->port(), spec, "nonce1") == 200);

    // WeCom acts before qunbot records the answer: wait for the record, not only the effect.
    REQUIRE(eventually([&] { return counts(db)["done"] == 2; }, 20s));
    CHECK(fake.effects("externalcontact/mark_tag").size() == 1);
    const auto welcomes = fake.effects("externalcontact/send_welcome_msg");
    REQUIRE(welcomes.size() == 1);
    CHECK(welcomes[0].body["welcome_code"] == spec.welcome_code);
    CHECK(welcomes[0].body["text"]["content"] == "您好，欢迎光临！");
    CHECK(fake.customer_tags().at(customer) == std::set<std::string>{"渠道:store-12"});
    CHECK(fake.tag_ids_by_name().contains("渠道:store-12")); // created on WeCom, as it was missing
    {
        auto rdb = storage::open_for_reading(db);
        auto done = storage::list_outbox(*rdb, "done", 10);
        REQUIRE(done.size() == 2);
        for (const auto& row : done) {
            if (row.action.kind == core::ActionKind::send_welcome) CHECK(row.updated_ms <= row.action.not_after_ms);
        }
    }

    // A broken edit: the staff member named in rules.notify gets the errors by app message.
    test::write_file(dir.file("rules/hello.yaml"), "version: 1\nrules:\n  - id: hello\n    on: contact_addded\n    do: []\n");
    bot::HttpClient http("127.0.0.1", service->port(), 5s);
    auto admin = http.request("POST", "/admin/reload", "");
    REQUIRE(admin.ok());
    CHECK(admin->status == 422);
    REQUIRE(eventually([&] { return !fake.effects("message/send").empty(); }, 20s));
    const auto notice = fake.effects("message/send").front();
    CHECK(notice.body["touser"] == "ops1");
    CHECK(notice.body["text"]["content"].get<std::string>().find("hello.yaml:4:9") != std::string::npos);
}

TEST_CASE("qunbot outbox lists, retries and drops actions", "[delivery][process]")
{
    test::TempDir dir;
    const auto db = dir.file("q.db");
    seed(db, {action(core::ActionKind::reply, "a1", "", "staff1", "one"), action(core::ActionKind::reply, "a2", "", "staff2", "two")});
    {
        auto w = storage::open_for_writing(db, storage::Durability::full);
        storage::mark_outbox(*w, 1, "dead", now_ms(), 0, "message/send: 81013 (all recipients are invalid)", "");
        storage::mark_outbox(*w, 2, "done", now_ms(), 0, "", "message/send to staff2");
    }
    auto run = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {QUNBOT_BINARY, "outbox", "--db", db});
        test::Child c(args);
        (void)c.wait_for_line("\x01 no such line: read to the end", 10s);
        const auto status = c.wait_exit(10s);
        REQUIRE(status.has_value());
        return std::make_pair(*status, c.out() + c.err());
    };
    auto [st, out] = run({"--status", "dead"});
    CHECK(st == 0);
    CHECK(out.find("1  dead  reply  -  staff1") != std::string::npos);
    CHECK(out.find("last error: message/send: 81013") != std::string::npos);
    CHECK(out.find("staff2") == std::string::npos);

    std::tie(st, out) = run({"retry", "1"});
    CHECK(st == 0);
    CHECK(storage::get_outbox(*storage::open_for_reading(db), 1)->status == "pending");
    std::tie(st, out) = run({"drop", "2"});
    CHECK(st != 0);
    CHECK(out.find("outbox row 2 is done") != std::string::npos);
    std::tie(st, out) = run({"drop", "1"});
    CHECK(st == 0);
    CHECK(storage::get_outbox(*storage::open_for_reading(db), 1)->status == "dropped");
}

TEST_CASE("group welcome templates follow the wecom_template rules: added, edited, deleted", "[delivery][rules]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    std::filesystem::create_directories(dir.path() / "rules");
    auto rule = [](const std::string& text) {
        return "version: 1\nrules:\n  - id: store-welcome\n    on: member_joined\n    wecom_template: true\n    do:\n      - post: \"" + text + "\"\n";
    };
    test::write_file(dir.file("rules/welcome.yaml"), rule("亲爱的{{ member.name }}，欢迎！"));
    const auto config = write_api_config(dir, fake);
    std::string db;
    auto service = test::start_service(config, db);
    bot::HttpClient admin("127.0.0.1", service->port(), 5s);

    REQUIRE(eventually([&] { return fake.effects("externalcontact/group_welcome_template/add").size() == 1; }));
    const auto added = fake.effects("externalcontact/group_welcome_template/add").front();
    CHECK(added.body["text"]["content"] == "亲爱的%NICKNAME%，欢迎！");
    CHECK(added.body["notify"] == 1);
    std::string template_id;
    REQUIRE(eventually([&] {
        auto t = storage::welcome_templates(*storage::open_for_reading(db), corp, "t");
        if (t.size() == 1) template_id = t[0].template_id;
        return !template_id.empty();
    }));

    test::write_file(dir.file("rules/welcome.yaml"), rule("{{ member.name }}，欢迎来到本店福利群！"));
    REQUIRE(admin.request("POST", "/admin/reload", "")->status == 200);
    REQUIRE(eventually([&] { return fake.effects("externalcontact/group_welcome_template/edit").size() == 1; }));
    const auto edited = fake.effects("externalcontact/group_welcome_template/edit").front();
    CHECK(edited.body["template_id"] == template_id);
    CHECK(edited.body["text"]["content"] == "%NICKNAME%，欢迎来到本店福利群！");

    test::write_file(dir.file("rules/welcome.yaml"), "version: 1\nrules: []\n");
    REQUIRE(admin.request("POST", "/admin/reload", "")->status == 200);
    REQUIRE(eventually([&] { return fake.effects("externalcontact/group_welcome_template/del").size() == 1; }));
    CHECK(fake.effects("externalcontact/group_welcome_template/del").front().body["template_id"] == template_id);
    REQUIRE(eventually([&] { return storage::welcome_templates(*storage::open_for_reading(db), corp, "t").empty(); }));
    CHECK(fake.effects("externalcontact/group_welcome_template/add").size() == 1); // never added twice
}

TEST_CASE("capabilities: app chats get appchat/send and appchat/update, and customer groups get owner notices for removal and recall",
          "[delivery][process]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    fake.add_group({"wrCUSTOMERGROUP", "门店福利群", "owner9", {}, {"admin9"}});
    const auto config = write_api_config(dir, fake);

    // `qunbot appchat create` makes an internal group through the app and records it.
    {
        test::Child c({QUNBOT_BINARY, "appchat", "create", "--config", config, "--name", "店长群", "--owner", "boss", "--users",
                       "boss,zhang,li", "--chatid", "storeleads1"});
        (void)c.wait_for_line("\x01 read to the end", 15s);
        REQUIRE(c.wait_exit(15s) == 0);
        CHECK(c.out().find("created app chat storeleads1") != std::string::npos);
    }
    REQUIRE(fake.effects("appchat/create").size() == 1);
    CHECK(fake.effects("appchat/create")[0].body["userlist"] == std::vector<std::string>{"boss", "zhang", "li"});

    auto remove = action(core::ActionKind::remove_member, "rm1", "storeleads1", "li", "");
    auto spam = action(core::ActionKind::remove_member, "rm2", "wrCUSTOMERGROUP", "wmSPAMMER00000000000001", "连续发广告 3 次");
    auto recall = action(core::ActionKind::recall, "rc1", "wrCUSTOMERGROUP", "msgAD123", "");
    seed(dir.file("q.db"), {action(core::ActionKind::post, "p1", "storeleads1", "", "今晚 8 点开会"), remove, spam, recall});
    std::string db;
    auto service = test::start_service(config, db);
    REQUIRE(eventually([&] {
        auto c = counts(db);
        return settled(c) && c["done"] == 4;
    }));
    const auto sends = fake.effects("appchat/send");
    REQUIRE(sends.size() == 1);
    CHECK(sends[0].body["chatid"] == "storeleads1");
    CHECK(sends[0].body["text"]["content"] == "今晚 8 点开会");
    const auto updates = fake.effects("appchat/update");
    REQUIRE(updates.size() == 1);
    CHECK(updates[0].body["del_user_list"] == std::vector<std::string>{"li"});
    // No API removes from or recalls in a customer group: the owner and admins get a card.
    const auto cards = fake.effects("message/send");
    REQUIRE(cards.size() == 2);
    for (const auto& c : cards) {
        CHECK(c.body["touser"] == "owner9|admin9");
        CHECK(c.body["msgtype"] == "template_card");
        CHECK(c.body["template_card"]["main_title"]["desc"] == "门店福利群");
    }
    // The two are performed concurrently: find the removal card by its title.
    const auto& removal = cards[0].body["template_card"]["main_title"]["title"] == "请将成员移出客户群" ? cards[0] : cards[1];
    CHECK(removal.body["template_card"]["main_title"]["title"] == "请将成员移出客户群");
    CHECK(removal.body.dump().find("wmSPAMMER00000000000001") != std::string::npos);
    CHECK(removal.body.dump().find("连续发广告 3 次") != std::string::npos);
    auto rdb = storage::open_for_reading(db);
    CHECK(storage::get_outbox(*rdb, 3)->result.find("degraded (no WeCom API)") != std::string::npos);
}

TEST_CASE("the directory follows group change events: a rename callback brings the new name from groupchat/get", "[delivery]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    fake.add_group({"wrRENAMED", "旧群名", "owner1", {{"wmMEMBERaaaaaaaaaaaaaaa1", 2, "甲", 1700000000, 3}}, {}});
    const auto config = write_api_config(dir, fake);
    std::string db;
    auto service = test::start_service(config, db);
    auto name = [&] { return storage::group_entry(*storage::open_for_reading(db), corp, "wrRENAMED").name; };
    REQUIRE(eventually([&] { return name() == "旧群名"; }));

    // The owner renames the group and one member leaves; WeCom sends change_external_chat.
    fake.add_group({"wrRENAMED", "新群名", "owner1", {}, {}});
    wecom::TestEventSpec spec;
    spec.kind = "group_renamed";
    spec.chat_id = "wrRENAMED";
    REQUIRE(send_callback(service->port(), spec, "nonce2") == 200);
    REQUIRE(eventually([&] { return name() == "新群名"; }));
    // Members are reconciled with WeCom's list: the one no longer listed is marked absent.
    REQUIRE(eventually([&] {
        return storage::open_for_reading(db)
                   ->execAndGet("SELECT present FROM group_members WHERE group_id = 'wrRENAMED' AND member_id = 'wmMEMBERaaaaaaaaaaaaaaa1'")
                   .getInt() == 0;
    }));
}

TEST_CASE("a scheduled slot survives a SIGKILL between planning and delivery: planned once, delivered once", "[schedule][process]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    for (int i = 0; i < 40; ++i) fake.add_group({"wrSLOT" + std::to_string(i), "门店福利群" + std::to_string(i), "owner" + std::to_string(i), {}, {}});
    // A one-shot slot a few seconds from now, local China time.
    const std::time_t at = static_cast<std::time_t>(now_ms() / 1000 + 6 + 8 * 3600);
    std::tm tm{};
    gmtime_r(&at, &tm);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    std::filesystem::create_directories(dir.path() / "rules");
    test::write_file(dir.file("rules/sale.yaml"), std::string("version: 1\ngroups:\n  stores: { name_glob: \"*门店福利群*\" }\nrules:\n"
                                                              "  - id: flash\n    on: schedule\n    schedule: \"at ") +
                                                      when + "\"\n    in: stores\n    do: [ { post: \"{{ group.name }} 秒杀开始\" } ]\n");
    const auto config = write_api_config(dir, fake);
    const auto db = dir.file("q.db");
    auto count = [&](const std::string& sql) {
        try {
            return storage::open_for_reading(db)->execAndGet(sql).getInt64();
        } catch (const std::exception&) {
            return std::int64_t{-1};
        }
    };

    std::optional<test::Child> child;
    test::start_server(child, config);
    REQUIRE(eventually([&] { return count("SELECT count(*) FROM chat_groups WHERE owner <> ''") == 40; }, 5s)); // before the slot
    fake.set_latency(150ms);
    REQUIRE(eventually([&] { return fake.effects("externalcontact/add_msg_template").size() >= 5; }, 20s));
    child->signal(SIGKILL);
    REQUIRE(child->wait_exit(10s).has_value());
    CHECK(count("SELECT count(*) FROM schedule_slots WHERE rule_id = 'flash'") == 1);
    CHECK(count("SELECT count(*) FROM outbox WHERE kind = 'post'") == 40); // the whole slot was planned in one commit
    CHECK(count("SELECT count(*) FROM outbox WHERE kind = 'post' AND status = 'done'") < 40); // and not yet delivered

    fake.set_latency(0ms);
    test::start_server(child, config);
    REQUIRE(eventually([&] { return settled(counts(db)) && count("SELECT count(*) FROM outbox WHERE kind = 'post' AND status IN ('done', 'check')") == 40; }));
    CHECK(count("SELECT count(*) FROM schedule_slots WHERE rule_id = 'flash'") == 1); // not planned again
    CHECK(count("SELECT count(*) FROM outbox WHERE kind = 'post'") == 40);
    std::map<std::string, int> per_group;
    for (const auto& e : fake.effects("externalcontact/add_msg_template")) {
        for (const auto& g : e.body["chat_id_list"]) ++per_group[g.get<std::string>()];
        CHECK(e.body["text"]["content"].get<std::string>().find("秒杀开始") != std::string::npos);
    }
    for (const auto& [g, n] : per_group) CHECK(n == 1);
    const auto checks = count("SELECT count(*) FROM outbox WHERE kind = 'post' AND status = 'check'");
    CHECK(checks <= 8);
    CHECK(static_cast<std::int64_t>(per_group.size()) >= 40 - checks);

    // The history and the next firings, as ops see them.
    test::Child history({QUNBOT_BINARY, "schedule", "history", "flash", "--config", config});
    (void)history.wait_for_line("\x01 read to the end", 10s);
    REQUIRE(history.wait_exit(10s) == 0);
    CHECK(history.out().find("fired") != std::string::npos);
    CHECK(history.out().find("groups=40  actions=40") != std::string::npos);
    child->signal(SIGTERM);
    CHECK(child->wait_exit(10s) == 0);
}

TEST_CASE("post content: attachments in mass-send tasks, one news card for app chats and robots", "[delivery]")
{
    test::TempDir dir;
    fakes::FakeWeCom fake(corp, secret, pki());
    fake.add_robot("robot-key-2");
    fake.add_group({"wrCUST1", "门店福利群1", "owner1", {}, {}});
    const auto config = write_api_config(dir, fake, "{\"wrROBOT1\":\"robot-key-2\"}");
    {
        // An app chat the bot created earlier.
        auto w = storage::open_for_writing(dir.file("q.db"), storage::Durability::full);
        storage::add_app_chat(*w, corp, "t", "appchat1", "店长群", "boss", now_ms());
    }
    fake.add_appchat("appchat1", {"boss", "zhang"});
    const std::string link = R"([{"type":"link","title":"新人礼包","url":"https://shop.example.com/gift","desc":"领券","picurl":"https://shop.example.com/g.png"},)"
                             R"({"type":"miniprogram","title":"门店小程序","appid":"wx1234","page":"pages/index","pic_media_id":"MEDIA1"}])";
    const std::string image = R"([{"type":"image","url":"https://shop.example.com/poster.jpg"}])";
    auto cust = action(core::ActionKind::post, "c1", "wrCUST1", "", "欢迎！");
    cust.attachments = link;
    auto chat = action(core::ActionKind::post, "c2", "appchat1", "", "今晚开会");
    chat.attachments = link;
    auto robot = action(core::ActionKind::post, "c3", "wrROBOT1", "", "新海报");
    robot.attachments = image;
    seed(dir.file("q.db"), {cust, chat, robot});
    std::string db;
    auto service = test::start_service(config, db);
    REQUIRE(eventually([&] {
        auto c = counts(db);
        return settled(c) && c["done"] == 4; // 3 posts + the owner's notice
    }));
    // The customer group's task carries WeCom's attachment shapes (notes §4.3).
    const auto tasks = fake.effects("externalcontact/add_msg_template");
    REQUIRE(tasks.size() == 1);
    const auto& att = tasks[0].body["attachments"];
    REQUIRE(att.size() == 2);
    CHECK(att[0]["msgtype"] == "link");
    CHECK(att[0]["link"]["title"] == "新人礼包");
    CHECK(att[0]["link"]["url"] == "https://shop.example.com/gift");
    CHECK(att[0]["link"]["picurl"] == "https://shop.example.com/g.png");
    CHECK(att[1]["msgtype"] == "miniprogram");
    CHECK(att[1]["miniprogram"]["appid"] == "wx1234");
    CHECK(att[1]["miniprogram"]["pic_media_id"] == "MEDIA1");
    CHECK(tasks[0].body["text"]["content"] == "欢迎！");
    // The app chat gets one message: the link as a news card, the text and the mini-program in it.
    const auto sends = fake.effects("appchat/send");
    REQUIRE(sends.size() == 1);
    CHECK(sends[0].body["msgtype"] == "news");
    const auto& article = sends[0].body["news"]["articles"][0];
    CHECK(article["title"] == "新人礼包");
    CHECK(article["url"] == "https://shop.example.com/gift");
    CHECK(article["description"] == "今晚开会\n（小程序：门店小程序）\n领券");
    // The robot gets one news card with the image (robots need the image bytes for an image message).
    const auto hooks = fake.effects("webhook/send");
    REQUIRE(hooks.size() == 1);
    CHECK(hooks[0].body["msgtype"] == "news");
    CHECK(hooks[0].body["news"]["articles"][0]["picurl"] == "https://shop.example.com/poster.jpg");
    CHECK(hooks[0].body["news"]["articles"][0]["title"] == "新海报");
    auto rdb = storage::open_for_reading(db);
    CHECK(storage::get_outbox(*rdb, 3)->result.find("degraded: image sent as a news card") != std::string::npos);
}
