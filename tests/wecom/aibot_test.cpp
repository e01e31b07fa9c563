// The AI bot (智能机器人) in API mode: its JSON payloads mapped to events, and end to end over
// the real HTTP path with real encryption for receiveid "": URL verification, dedup on msgid,
// a group keyword reply answered once through the message's response_url (on the fake WeCom
// over TLS), a second answer to the same message refused, and a keyword entry into a draw.
#include "adapters/wecom/aibot.hpp"
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "bot/service.hpp"
#include "fakes/fake_wecom.hpp"
#include "rules/loader.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <catch2/catch.hpp>

using namespace qunbot;
using namespace std::chrono_literals;

namespace {

const wecom::ParseContext ctx{"bot", "wwaibotcorp00001"};

std::string group_text(const std::string& msgid, const std::string& chat, const std::string& from, const std::string& text,
                       const std::string& response_url = "https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=X")
{
    return nlohmann::json{{"msgid", msgid},           {"aibotid", "AIBOTID"},  {"chatid", chat},     {"chattype", "group"},
                          {"from", {{"userid", from}}}, {"response_url", response_url}, {"msgtype", "text"},
                          {"text", {{"content", text}}}}
        .dump();
}

} // namespace

TEST_CASE("AI-bot payloads become events: group text without the mention, mixed, media, events kept raw", "[aibot]")
{
    auto e = wecom::parse_aibot_event(group_text("MSG1", "wrAIGROUP", "zhangsan", "@小助手\u2005多少钱"), ctx);
    REQUIRE(e.ok());
    CHECK(e->kind == core::EventKind::message);
    CHECK(e->group_id == "wrAIGROUP");
    CHECK(e->actor == "zhangsan");
    CHECK(e->text == "多少钱");
    CHECK(e->dedup_key == "aibot:MSG1");
    CHECK(e->tenant == "wwaibotcorp00001");
    CHECK(e->attribute("response_url") == "https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=X");
    CHECK(e->attribute("chattype") == "group");

    const auto single = nlohmann::json{{"msgid", "MSG2"}, {"chattype", "single"}, {"from", {{"userid", "lisi"}}},
                                       {"msgtype", "mixed"},
                                       {"mixed", {{"msg_item", {{{"msgtype", "text"}, {"text", {{"content", "看图 "}}}},
                                                                {{"msgtype", "image"}, {"image", {{"url", "https://x/img"}}}}}}}}}
                            .dump();
    e = wecom::parse_aibot_event(single, ctx);
    REQUIRE(e.ok());
    CHECK(e->group_id.empty()); // a 1:1 chat is kept apart from groups
    CHECK(e->message_type == "mixed");
    CHECK(e->text == "看图 ");
    CHECK(e->attribute("image_url") == "https://x/img");

    e = wecom::parse_aibot_event(R"({"msgid":"E1","msgtype":"event","from":{"corpid":"wwc","userid":"u"},"event":{"eventtype":"enter_chat"}})", ctx);
    REQUIRE(e.ok());
    CHECK(e->kind == core::EventKind::unknown);
    CHECK(e->raw_type == "aibot/event/enter_chat");
    e = wecom::parse_aibot_event(R"({"msgid":"S1","msgtype":"stream","stream":{"id":"x"}})", ctx);
    REQUIRE(e.ok());
    CHECK(e->raw_type == "aibot/stream");
    CHECK_FALSE(wecom::parse_aibot_event(R"({"msgtype":"text"})", ctx).ok());
    CHECK_FALSE(wecom::parse_aibot_event("<xml/>", ctx).ok());

    CHECK(wecom::strip_leading_mentions("@a @b 抽奖") == "抽奖");
    CHECK(wecom::strip_leading_mentions("@机器人") == "");
    CHECK(wecom::strip_leading_mentions("邮箱 a@b.com") == "邮箱 a@b.com");
}

TEST_CASE("an AI bot in a group: verified URL, one event per msgid, answered once through response_url, draw entries", "[aibot][e2e]")
{
    test::TempDir dir;
    constexpr const char* corp = "wwaibotcorp00001";
    fakes::FakeWeCom fake(corp, "unused-secret", fakes::loopback_pki());
    fakes::write_pem(dir.file("ca.pem"), fakes::loopback_pki().ca_pem);
    std::filesystem::create_directories(dir.path() / "rules");
    test::write_file(dir.file("rules/r.yaml"), R"(version: 1
rules:
  - id: price
    on: message
    when: { contains: [多少钱] }
    do: [ { reply: "价格见群公告" } ]
  - id: price-again
    on: message
    when: { contains: [多少钱] }
    do: [ { reply: "一条消息只能回答一次" } ]
draws:
  - id: kw
    enter: { keyword: 抽奖 }
    closes: { after: 1h }
    eligible: { joined_before_open: false }
    prizes: { equal: { winners: 1, amount_fen: 100 } }
)");
    test::write_file(dir.file("bot.secrets.json"), std::string("{\"token\":\"") + test::vector_token + "\",\"encoding_aes_key\":\"" +
                                                       test::vector_key + "\"}");
    const auto config = dir.file("qunbot.json");
    test::write_file(config, "{\"listen\":{\"address\":\"127.0.0.1\",\"port\":0},\"threads\":2,\"database\":\"" + dir.file("q.db") +
                                 "\",\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false},"
                                 "\"delivery\":{\"retry_base_ms\":20,\"poll_ms\":50,\"directory_sync\":false},"
                                 "\"apps\":[{\"name\":\"bot\",\"kind\":\"aibot\",\"path\":\"/aibot\",\"corp_id\":\"" + corp +
                                 "\",\"secrets_file\":\"" + dir.file("bot.secrets.json") + "\",\"api_base_url\":\"" + fake.base_url() +
                                 "\",\"api_ca_file\":\"" + dir.file("ca.pem") + "\"}]}");
    std::string db_path;
    auto service = test::start_service(config, db_path);
    std::int64_t round = 0;
    {
        auto db = storage::open_for_writing(db_path, storage::Durability::full);
        const auto loaded = rules::load_rules(dir.file("rules"));
        REQUIRE(loaded.ok());
        rules::GroupInfo g;
        g.id = "wrAIGROUP";
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        round = storage::open_round(*db, *loaded.rules->find_draw("kw"), corp, "bot", g, "manual:1", now, 8 * 3600)
                    .value_or(0);
        REQUIRE(round > 0);
    }
    auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), "");
    REQUIRE(crypto.ok());
    bot::HttpClient client("127.0.0.1", service->port(), 5s);

    // URL verification: the plaintext carries no receiveid.
    const auto query = wecom::seal_url_verification(*crypto, "echo-42", "1700000000", "nonce-v");
    auto v = client.request("GET", "/aibot?" + query, "");
    REQUIRE(v.ok());
    CHECK(v->status == 200);
    CHECK(v->body == "echo-42");

    auto post = [&](const std::string& payload, const std::string& nonce) {
        const auto encrypted = crypto->encrypt(payload);
        const auto q = "msg_signature=" + crypto->signature("1700000000", nonce, encrypted) + "&timestamp=1700000000&nonce=" + nonce;
        auto r = client.request("POST", "/aibot?" + q, "{\"encrypt\":\"" + encrypted + "\"}");
        REQUIRE(r.ok());
        return r->status;
    };
    const auto url = fake.issue_response_url();
    const auto price = group_text("MSGPRICE", "wrAIGROUP", "wmCUSTOMER0000000000000000000001", "@小助手 这个多少钱", url);
    CHECK(post(price, "n1") == 200);
    CHECK(post(price, "n2") == 200); // WeCom's retry of the same msgid
    CHECK(post(group_text("MSGDRAW", "wrAIGROUP", "wmCUSTOMER0000000000000000000002", "@小助手 抽奖", fake.issue_response_url()), "n3") == 200);

    auto count = [&](const std::string& sql) {
        SQLite::Database db(db_path);
        return db.execAndGet(sql).getInt64();
    };
    REQUIRE(test::eventually(
        [&] { return count("SELECT count(*) FROM outbox WHERE status IN ('done', 'dead') AND idempotency_key LIKE '%MSGPRICE%'") == 2; }));
    CHECK(count("SELECT count(*) FROM inbox WHERE dedup_key = 'aibot:MSGPRICE'") == 1);
    const auto answers = fake.effects("aibot/response");
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].body["msgtype"] == "markdown");
    CHECK(answers[0].body["markdown"]["content"] == "价格见群公告");
    CHECK(count("SELECT count(*) FROM outbox WHERE status = 'dead' AND (last_error LIKE '%already used%' OR result LIKE '%already used%')") == 1);
    // The draw's opening cannot be posted by an AI bot (it only answers): dead, with the reason.
    CHECK(count("SELECT count(*) FROM outbox WHERE status = 'dead' AND idempotency_key LIKE '%/draw/%/open' AND (last_error LIKE '%cannot post on its own%' OR result LIKE '%cannot post on its own%')") == 1);
    CHECK(count("SELECT count(*) FROM draw_entries WHERE member_id = 'wmCUSTOMER0000000000000000000002' AND via = 'keyword'") == 1);
    service->request_shutdown();
    service->wait();
}
