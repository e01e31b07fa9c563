// Red-packet payouts: the signatures against the documented example (its MD5 computed with
// md5sum), the answers' meanings, the limits; then the running bot paying draw winners against
// the fake WeChat Pay server over mutual TLS (and the fake WeCom for openids): retries under
// the same bill number, lost answers settled by a query, unknown answers left for a person,
// dry runs, a missing merchant certificate, and a SIGKILL between the payment and its record.
#include "adapters/wechat_pay/redpack.hpp"
#include "bot/payouts.hpp"
#include "bot/service.hpp"
#include "fakes/fake_pay.hpp"
#include "fakes/fake_wecom.hpp"
#include "rules/loader.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <functional>
#include <set>
#include <thread>

using namespace qunbot;
using namespace std::chrono_literals;

namespace {

const fakes::TestPki& pki() { return fakes::loopback_pki(); }

constexpr const char* corp = "wwpaycorp0000001";
constexpr const char* corp_secret = "corp-secret-for-pay-tests";
constexpr const char* mch_id = "1900000109";
constexpr const char* mch_key = "merchantkey0123456789abcdefABCDEF";
constexpr const char* payment_secret = "payment-app-secret-for-tests";

std::string customer(int i) { return test::customer_id(i); }

std::string write_pay_config(const test::TempDir& dir, const fakes::FakeWeCom& wecom, const fakes::FakeWeChatPay& pay,
                             const std::string& pay_extra = "", const fakes::TestPki* client = nullptr)
{
    const auto& c = client ? *client : pki();
    fakes::write_pem(dir.file("ca.pem"), pki().ca_pem);
    fakes::write_pem(dir.file("merchant.pem"), c.client_cert_pem);
    fakes::write_pem(dir.file("merchant.key"), c.client_key_pem);
    test::write_file(dir.file("t.secrets.json"), std::string("{\"token\":\"") + test::vector_token + "\",\"encoding_aes_key\":\"" +
                                                     test::vector_key + "\",\"corp_secret\":\"" + corp_secret + "\"}");
    test::write_file(dir.file("pay.secrets.json"), std::string("{\"mch_key\":\"") + mch_key + "\",\"payment_secret\":\"" + payment_secret + "\"}");
    std::filesystem::create_directories(dir.path() / "rules");
    const auto path = dir.file("qunbot.json");
    test::write_file(path, "{\"listen\":{\"address\":\"127.0.0.1\",\"port\":0},\"threads\":2,\"database\":\"" + dir.file("q.db") +
                               "\",\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false},"
                               "\"delivery\":{\"retry_base_ms\":20,\"poll_ms\":50,\"directory_sync\":false,\"request_timeout_ms\":2000},"
                               "\"wechat_pay\":{\"mch_id\":\"" + mch_id + "\",\"app\":\"t\",\"api_base_url\":\"" + pay.base_url() +
                               "\",\"ca_file\":\"" + dir.file("ca.pem") + "\",\"cert_file\":\"" + dir.file("merchant.pem") + "\",\"key_file\":\"" +
                               dir.file("merchant.key") + "\",\"secrets_file\":\"" + dir.file("pay.secrets.json") +
                               "\",\"retry_base_ms\":20,\"poll_ms\":50,\"request_timeout_ms\":1000" + pay_extra + "},"
                               "\"apps\":[{\"name\":\"t\",\"path\":\"/cb\",\"corp_id\":\"" + corp + "\",\"secrets_file\":\"" +
                               dir.file("t.secrets.json") + "\",\"api_base_url\":\"" + wecom.base_url() + "\",\"api_ca_file\":\"" +
                               dir.file("ca.pem") + "\"}]}");
    return path;
}

// A drawn round of an equal-prize wechat_pay draw among `entrants`; returns its id.
std::int64_t seed_round(const std::string& db_path, int winners, std::int64_t amount_fen, const std::vector<std::string>& entrants,
                        const std::string& slot = "manual:1")
{
    const auto yaml = "version: 1\ndraws:\n  - id: pay\n    enter: { keyword: 抽奖 }\n    closes: { after: 1h }\n"
                      "    prizes: { equal: { winners: " + std::to_string(winners) + ", amount_fen: " + std::to_string(amount_fen) +
                      " } }\n    payout: wechat_pay\n";
    auto loaded = rules::load_rule_sources({{"pay.yaml", yaml}});
    REQUIRE(loaded.ok());
    const auto& spec = loaded.rules->draws.at(0);
    auto db = storage::open_for_writing(db_path, storage::Durability::full);
    SQLite::Transaction tx(*db);
    rules::GroupInfo g;
    g.id = "wrPayGroup";
    const std::int64_t now = 1'790'000'000'000;
    const auto id = storage::open_round(*db, spec, corp, "t", g, slot, now, 8 * 3600);
    REQUIRE(id.has_value());
    for (const auto& m : entrants) {
        REQUIRE(storage::enter_round(*db, &spec, *id, m, "staff", now + 1000, 8 * 3600).status == storage::EntryResult::Status::entered);
    }
    REQUIRE(storage::draw_round(*db, &spec, *id, now + 2000, 8 * 3600, "staff").drawn);
    tx.commit();
    return *id;
}

std::vector<storage::Payout> ledger(const std::string& db_path, std::int64_t round)
{
    auto db = storage::open_for_reading(db_path);
    return storage::round_payouts(*db, round);
}

using test::eventually;

bool all_in(const std::vector<storage::Payout>& ps, const std::set<std::string>& statuses)
{
    for (const auto& p : ps) {
        if (!statuses.contains(p.status)) return false;
    }
    return !ps.empty();
}

} // namespace

TEST_CASE("workwx_sign and sign follow the documented construction", "[pay]")
{
    CHECK(wechat_pay::md5_upper("") == "D41D8CD98F00B204E9800998ECF8427E"); // RFC 1321 test suite
    // The worked example of doc 90281 (notes §6); its MD5 computed independently with md5sum.
    const wechat_pay::Fields f{{"act_name", "XXX"},          {"mch_billno", "11111234567890"}, {"mch_id", "10000098"},
                               {"nonce_str", "qFKEgfig76DF9912fewmkp"}, {"re_openid", "oxTWIuGaIt6gTKsQRLau2M0yL16E"},
                               {"total_amount", "100"},      {"wxappid", "wx123456789"},     {"wishing", "not part of workwx_sign"}};
    CHECK(wechat_pay::workwx_sign(f, core::Secret("192006250b4c09247ec02edce69f6a2d")) == "8B8D04AFC9FD08094CC5A0C2FA8BB60C");
    // sign: every non-empty field but sign, sorted, then &key=.
    const wechat_pay::Fields g{{"b", "2"}, {"a", "1"}, {"empty", ""}, {"sign", "x"}};
    CHECK(wechat_pay::sign_string(g) == "a=1&b=2");
    CHECK(wechat_pay::pay_sign(g, core::Secret("k")) == wechat_pay::md5_upper("a=1&b=2&key=k"));

    wechat_pay::RedpackRequest r;
    r.mch_billno = "ABC123R000000000001P00000";
    r.mch_id = mch_id;
    r.wxappid = corp;
    r.sender_name = "门店福利";
    r.re_openid = "oOPENID";
    r.total_amount = 150;
    r.wishing = "恭喜";
    r.act_name = "抽奖";
    r.nonce_str = wechat_pay::nonce();
    const auto fields = wechat_pay::send_fields(r, core::Secret(payment_secret), core::Secret(mch_key));
    CHECK(fields.at("workwx_sign") == wechat_pay::workwx_sign(fields, core::Secret(payment_secret)));
    CHECK(fields.at("sign") == wechat_pay::pay_sign(fields, core::Secret(mch_key))); // workwx_sign is inside sign
    CHECK_FALSE(fields.contains("agentid"));
    CHECK_FALSE(fields.contains("remark")); // empty fields are left out
    wechat_pay::Fields back;
    REQUIRE(wechat_pay::from_xml(wechat_pay::to_xml(fields), back));
    CHECK(back == fields);
    CHECK(r.nonce_str.size() == 32);
}

TEST_CASE("what an answer means: paid, retry with the same number, refused, unknown", "[pay]")
{
    const core::Secret key(mch_key);
    auto signed_xml = [&](wechat_pay::Fields f) {
        f["sign"] = wechat_pay::pay_sign(f, key);
        return wechat_pay::to_xml(f);
    };
    std::string detail, listid;
    CHECK(wechat_pay::judge_send(signed_xml({{"return_code", "SUCCESS"}, {"result_code", "SUCCESS"}, {"send_listid", "L1"}}), key, detail, listid) ==
          wechat_pay::Verdict::paid);
    CHECK(listid == "L1");
    CHECK(wechat_pay::judge_send(signed_xml({{"return_code", "SUCCESS"}, {"result_code", "FAIL"}, {"err_code", "SYSTEMERROR"}}), key, detail, listid) ==
          wechat_pay::Verdict::retry);
    CHECK(wechat_pay::judge_send(signed_xml({{"return_code", "SUCCESS"}, {"result_code", "FAIL"}, {"err_code", "NOTENOUGH"}}), key, detail, listid) ==
          wechat_pay::Verdict::refused);
    CHECK(detail == "err_code NOTENOUGH: ");
    CHECK(wechat_pay::judge_send(signed_xml({{"return_code", "SUCCESS"}, {"result_code", "FAIL"}, {"err_code", "SOMETHING_NEW"}}), key, detail, listid) ==
          wechat_pay::Verdict::unknown);
    CHECK(wechat_pay::judge_send(signed_xml({{"return_code", "FAIL"}, {"return_msg", "签名错误"}}), key, detail, listid) == wechat_pay::Verdict::refused);
    CHECK(wechat_pay::judge_send("<html>502</html>", key, detail, listid) == wechat_pay::Verdict::unknown);
    // A forged success (signed with another key) is not believed.
    wechat_pay::Fields forged{{"return_code", "SUCCESS"}, {"result_code", "SUCCESS"}};
    forged["sign"] = wechat_pay::pay_sign(forged, core::Secret("another key"));
    CHECK(wechat_pay::judge_send(wechat_pay::to_xml(forged), key, detail, listid) == wechat_pay::Verdict::unknown);
    CHECK(wechat_pay::judge_query(signed_xml({{"return_code", "SUCCESS"}, {"result_code", "FAIL"}, {"err_code", "NOT_FOUND"}}), key, detail, listid) ==
          wechat_pay::QueryResult::not_found);
    CHECK(wechat_pay::judge_query(signed_xml({{"return_code", "SUCCESS"}, {"result_code", "SUCCESS"}, {"status", "RECEIVED"}}), key, detail, listid) ==
          wechat_pay::QueryResult::paid);
}

TEST_CASE("payout limits: amount range, per user per day, daily cap, the round's budget", "[pay]")
{
    bot::WeChatPayConfig cfg;
    storage::Payout p;
    p.amount_fen = 500;
    storage::PaidToday today;
    CHECK_FALSE(bot::payout_limit(cfg, p, today, 0, 1000).has_value());
    p.amount_fen = 50;
    CHECK(bot::payout_limit(cfg, p, today, 0, 1000)->starts_with("amount ¥0.50 is outside"));
    cfg.scene_id = "PRODUCT_1";
    CHECK_FALSE(bot::payout_limit(cfg, p, today, 0, 1000).has_value());
    p.amount_fen = 500;
    today.member_fen = 99'600;
    CHECK(bot::payout_limit(cfg, p, today, 0, 1000)->find("per-user limit of ¥1000.00") != std::string::npos);
    today.member_fen = 0;
    today.member_count = 10;
    CHECK(bot::payout_limit(cfg, p, today, 0, 1000)->find("per-user limit is 10") != std::string::npos);
    today.member_count = 0;
    cfg.daily_total_fen = 1000;
    today.total_fen = 600;
    CHECK(bot::payout_limit(cfg, p, today, 0, 1000)->find("daily cap") != std::string::npos);
    cfg.daily_total_fen = 0;
    CHECK(bot::payout_limit(cfg, p, today, 600, 1000)->find("over its budget of ¥10.00") != std::string::npos);
}

TEST_CASE("winners are paid over mutual TLS, each pick once, through SYSTEMERROR and a lost answer", "[pay][e2e]")
{
    test::TempDir dir;
    fakes::FakeWeCom wecom(corp, corp_secret, pki());
    fakes::FakeWeChatPay pay(pki(), mch_id, corp, mch_key, payment_secret);
    pay.fail({"SYSTEMERROR"}, 2);
    pay.fail({"", true, true}); // pays, then the connection drops: the answer is lost
    const auto config = write_pay_config(dir, wecom, pay);
    const auto round = seed_round(dir.file("q.db"), 3, 150, {customer(1), customer(2), customer(3), customer(4), customer(5)});
    std::string db_path;
    auto service = test::start_service(config, db_path);
    REQUIRE(eventually([&] { return all_in(ledger(db_path, round), {"paid"}); }));
    service->request_shutdown();
    service->wait();

    const auto rows = ledger(db_path, round);
    const auto paid = pay.payments();
    REQUIRE(paid.size() == 3);
    std::set<std::string> billnos;
    for (const auto& p : rows) {
        billnos.insert(p.billno);
        bool found = false;
        for (const auto& f : paid) {
            if (f.billno != p.billno) continue;
            found = true;
            CHECK(f.amount == 150);
            CHECK(f.openid == fakes::openid_of(p.member));
            CHECK(p.send_listid == f.send_listid);
        }
        CHECK(found);
        CHECK(p.billno.size() <= 28);
    }
    CHECK(billnos.size() == 3);
    CHECK(pay.send_calls() == 5);    // two SYSTEMERRORs resent under the same numbers, nothing more
    CHECK(pay.query_calls() >= 1);   // the lost answer was looked up, not resent
    CHECK(pay.rejections().empty()); // every request was well signed
    // No secret in the database.
    SQLite::Database db(db_path);
    for (const char* s : {mch_key, payment_secret, corp_secret}) {
        SQLite::Statement st(db, "SELECT count(*) FROM payouts WHERE detail LIKE '%' || ?1 || '%' OR openid LIKE '%' || ?1 || '%'");
        st.bind(1, s);
        st.executeStep();
        CHECK(st.getColumn(0).getInt() == 0);
    }
}

TEST_CASE("an unknown answer goes to a person and is never resent until they say so, then under the same number", "[pay][e2e]")
{
    test::TempDir dir;
    fakes::FakeWeCom wecom(corp, corp_secret, pki());
    fakes::FakeWeChatPay pay(pki(), mch_id, corp, mch_key, payment_secret);
    pay.fail({"BRAND_NEW_CODE"});
    const auto config = write_pay_config(dir, wecom, pay);
    const auto first = seed_round(dir.file("q.db"), 1, 200, {customer(1)}, "manual:a");
    std::string db_path;
    auto service = test::start_service(config, db_path);
    REQUIRE(eventually([&] { return all_in(ledger(db_path, first), {"check"}); }));
    CHECK(ledger(db_path, first)[0].detail.find("BRAND_NEW_CODE") != std::string::npos);
    // Another round is paid meanwhile: the worker went round several times without touching it.
    const auto second = seed_round(db_path, 1, 300, {customer(2)}, "manual:b");
    REQUIRE(eventually([&] { return all_in(ledger(db_path, second), {"paid"}); }));
    CHECK(pay.send_calls() == 2);
    CHECK(all_in(ledger(db_path, first), {"check"}));
    // Staff checked the merchant platform and retry it (what `qunbot lottery payout retry` does).
    {
        auto db = storage::open_for_writing(db_path, storage::Durability::full);
        const auto p = ledger(db_path, first)[0];
        REQUIRE(storage::set_payout(*db, p.id, "check", "pending", "retry by staff", 0));
    }
    REQUIRE(eventually([&] { return all_in(ledger(db_path, first), {"paid"}); }));
    service->request_shutdown();
    service->wait();
    CHECK(pay.payments().size() == 2);
    CHECK(pay.send_calls() == 3);
}

TEST_CASE("limits hold payouts before any call, and a dry run calls nothing", "[pay][e2e]")
{
    test::TempDir dir;
    fakes::FakeWeCom wecom(corp, corp_secret, pki());
    fakes::FakeWeChatPay pay(pki(), mch_id, corp, mch_key, payment_secret);
    SECTION("limits") {
        const auto config = write_pay_config(dir, wecom, pay, ",\"daily_total_fen\":200");
        const auto small = seed_round(dir.file("q.db"), 1, 50, {customer(1)}, "manual:small");
        const auto two = seed_round(dir.file("q.db"), 2, 150, {customer(2), customer(3)}, "manual:two");
        std::string db_path;
        auto service = test::start_service(config, db_path);
        REQUIRE(eventually([&] { return all_in(ledger(db_path, small), {"held"}) && all_in(ledger(db_path, two), {"paid", "held"}); }));
        service->request_shutdown();
        service->wait();
        CHECK(ledger(db_path, small)[0].detail.find("outside ¥1.00–¥200.00") != std::string::npos);
        const auto rows = ledger(db_path, two);
        CHECK(std::count_if(rows.begin(), rows.end(), [](const storage::Payout& p) { return p.status == "paid"; }) == 1);
        CHECK(std::count_if(rows.begin(), rows.end(), [](const storage::Payout& p) { return p.detail.find("daily cap of ¥2.00") != std::string::npos; }) == 1);
        CHECK(pay.send_calls() == 1);
    }
    SECTION("dry run") {
        const auto config = write_pay_config(dir, wecom, pay, ",\"dry_run\":true");
        const auto round = seed_round(dir.file("q.db"), 2, 150, {customer(1), customer(2)});
        std::string db_path;
        auto service = test::start_service(config, db_path);
        REQUIRE(eventually([&] { return all_in(ledger(db_path, round), {"dry_run"}); }));
        service->request_shutdown();
        service->wait();
        CHECK(pay.send_calls() == 0);
        CHECK(ledger(db_path, round)[0].openid == fakes::openid_of(ledger(db_path, round)[0].member));
    }
}

TEST_CASE("without a merchant certificate the pay server refuses the handshake and nothing is paid", "[pay][e2e]")
{
    test::TempDir dir;
    fakes::FakeWeCom wecom(corp, corp_secret, pki());
    fakes::FakeWeChatPay pay(pki(), mch_id, corp, mch_key, payment_secret);
    const auto stranger = fakes::make_test_pki({"localhost"}); // a certificate from a CA the server does not trust
    const auto config = write_pay_config(dir, wecom, pay, ",\"max_attempts\":2", &stranger);
    const auto round = seed_round(dir.file("q.db"), 1, 150, {customer(1)});
    std::string db_path;
    auto service = test::start_service(config, db_path);
    REQUIRE(eventually([&] { return all_in(ledger(db_path, round), {"held"}); }));
    service->request_shutdown();
    service->wait();
    CHECK(ledger(db_path, round)[0].detail.find("not sent after 2 attempts") != std::string::npos);
    CHECK(pay.failed_handshakes() >= 2);
    CHECK(pay.payments().empty());
}

TEST_CASE("SIGKILL between the pay call and its recording: the restart does not pay again", "[pay][process]")
{
    test::TempDir dir;
    fakes::FakeWeCom wecom(corp, corp_secret, pki());
    fakes::FakeWeChatPay pay(pki(), mch_id, corp, mch_key, payment_secret);
    const auto config = write_pay_config(dir, wecom, pay);
    const auto round = seed_round(dir.file("q.db"), 3, 150, {customer(1), customer(2), customer(3)});
    std::atomic<pid_t> victim{0};
    std::atomic<int> kills{0};
    // The first payment is made; the bot is killed before the answer leaves the server.
    pay.on_paid([&](const fakes::FakePayment&) {
        if (kills.fetch_add(1) == 0 && victim.load() > 0) ::kill(victim.load(), SIGKILL);
    });
    std::optional<test::Child> child;
    test::start_server(child, config);
    victim = child->pid();
    REQUIRE(child->wait_exit(30s) == 128 + SIGKILL);
    auto rows = ledger(dir.file("q.db"), round);
    REQUIRE(std::count_if(rows.begin(), rows.end(), [](const storage::Payout& p) { return p.status == "in_flight"; }) == 1);
    REQUIRE(pay.payments().size() == 1);

    victim = 0;
    test::start_server(child, config);
    REQUIRE(eventually([&] { return all_in(ledger(dir.file("q.db"), round), {"paid"}); }));
    child->signal(SIGTERM);
    CHECK(child->wait_exit(10s) == 0);
    const auto paid = pay.payments();
    CHECK(paid.size() == 3);
    std::set<std::string> billnos;
    for (const auto& p : paid) billnos.insert(p.billno);
    CHECK(billnos.size() == 3);
    CHECK(pay.send_calls() == 3); // the interrupted one was looked up, not sent again
    CHECK(pay.query_calls() >= 1);
    rows = ledger(dir.file("q.db"), round);
    CHECK(std::count_if(rows.begin(), rows.end(), [](const storage::Payout& p) { return p.detail.starts_with("found paid after a restart"); }) == 1);
}
