// The real `qunbot serve` process: nothing acknowledged is lost across SIGKILL, SIGTERM drains,
// and start-up errors are reported completely.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <mutex>
#include <set>
#include <thread>

using namespace qunbot;
using namespace std::chrono_literals;

namespace {

wecom::CallbackCrypto vector_crypto()
{
    auto c = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), test::vector_corp);
    REQUIRE(c.ok());
    return std::move(c).value();
}

// The event for sequence number `i`: a join of member "m<i>", fully determined by i, so that a
// resend is the same event (a WeCom retry) and must be deduplicated.
std::string join_payload(int i)
{
    wecom::TestEventSpec spec;
    spec.kind = "member_joined";
    spec.corp_id = test::vector_corp;
    spec.chat_id = "wrChat" + std::to_string(i % 17);
    spec.members = {"m" + std::to_string(i)};
    spec.create_time = 1'700'000'000 + i / 10;
    spec.member_version = "ver" + std::to_string(i);
    auto p = wecom::make_test_payload(spec);
    REQUIRE(p.ok());
    // The LastMemVer of the builder is random; pin it so the resend is byte-identical in meaning.
    auto text = *p;
    const auto a = text.find("<LastMemVer>");
    const auto b = text.find("</LastMemVer>");
    return text.replace(a, b - a, "<LastMemVer>prev" + std::to_string(i));
}

// Sends events [from, to) on one keep-alive connection; records those answered 200.
struct Sender {
    std::uint16_t port;
    std::mutex& mutex;
    std::set<int>& acked;
    std::atomic<bool>& stop;
    void operator()(int from, int to, int stride) const
    {
        const auto crypto = vector_crypto();
        bot::HttpClient client("127.0.0.1", port, 2s);
        for (int i = from; i < to && !stop.load(); i += stride) {
            const auto sealed = wecom::seal_callback(crypto, join_payload(i), "1700000000", "nonce" + std::to_string(i));
            auto res = client.request("POST", "/cb?" + sealed.query, sealed.body);
            if (!res) break; // the server is gone
            if (res->status == 200) {
                std::lock_guard lock(mutex);
                acked.insert(i);
            }
        }
    }
};

// Waits (with a deadline) until at least `n` callbacks have been acknowledged.
void wait_for_acks(std::mutex& mutex, const std::set<int>& acked, std::size_t n)
{
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
        {
            std::lock_guard lock(mutex);
            if (acked.size() >= n) return;
        }
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        std::this_thread::yield();
    }
}

std::map<std::string, int> member_counts(const std::string& db_path)
{
    SQLite::Database db(db_path);
    SQLite::Statement st(db, "SELECT member_id, count(*) FROM activity WHERE kind = 'member_joined' GROUP BY member_id");
    std::map<std::string, int> out;
    while (st.executeStep()) out[st.getColumn(0).getString()] = st.getColumn(1).getInt();
    return out;
}

} // namespace

TEST_CASE("SIGKILL mid-stream loses no acknowledged callback, and a restart deduplicates retries", "[process][durability]")
{
    test::TempDir dir;
    const auto config = test::write_test_config(dir);
    const auto db_path = dir.file("q.db");
    constexpr int total = 4000;
    constexpr int senders = 4;
    std::mutex mutex;
    std::set<int> acked;
    std::atomic<bool> stop{false};
    {
        std::optional<test::Child> server;
        const auto port = test::start_server(server, config);
        std::vector<std::thread> threads;
        for (int t = 0; t < senders; ++t) threads.emplace_back(Sender{port, mutex, acked, stop}, t, total, senders);
        // Kill once a good share is acknowledged, with requests certainly in flight.
        wait_for_acks(mutex, acked, 600);
        server->signal(SIGKILL);
        REQUIRE(server->wait_exit(10s) == 128 + SIGKILL);
        stop = true;
        for (auto& t : threads) t.join();
    }
    INFO("acknowledged before the kill: " << acked.size());
    REQUIRE(acked.size() >= 600);
    REQUIRE(acked.size() < static_cast<std::size_t>(total)); // the kill really was mid-stream

    // Every acknowledged event is in the journal exactly once.
    auto counts = member_counts(db_path);
    for (int i : acked) {
        INFO("event " << i);
        CHECK(counts["m" + std::to_string(i)] == 1);
    }
    for (const auto& [member, n] : counts) CHECK(n == 1);

    // Restart on the same database and resend everything, as WeCom retries what it did not get
    // a 200 for (and, here, what it did): all are accepted, none is stored twice.
    std::optional<test::Child> server;
    const auto port = test::start_server(server, config);
    std::set<int> resent;
    stop = false;
    Sender{port, mutex, resent, stop}(0, total, 1);
    CHECK(resent.size() == static_cast<std::size_t>(total));
    counts = member_counts(db_path);
    CHECK(counts.size() == static_cast<std::size_t>(total));
    for (const auto& [member, n] : counts) {
        INFO(member);
        CHECK(n == 1);
    }
    server->signal(SIGTERM);
    CHECK(server->wait_exit(20s) == 0);
}

TEST_CASE("SIGTERM drains: in-flight callbacks are answered and committed, then exit 0", "[process][shutdown]")
{
    test::TempDir dir;
    const auto config = test::write_test_config(dir);
    std::optional<test::Child> server;
    const auto port = test::start_server(server, config);
    std::mutex mutex;
    std::set<int> acked;
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back(Sender{port, mutex, acked, stop}, t, 100000, 4);
    wait_for_acks(mutex, acked, 200);
    server->signal(SIGTERM);
    const auto status = server->wait_exit(20s);
    stop = true;
    for (auto& t : threads) t.join();
    CHECK(status == 0);
    CHECK_THAT(server->err(), Catch::Contains("shutting down gracefully") && Catch::Contains("all connections finished"));
    const auto counts = member_counts(dir.file("q.db"));
    for (int i : acked) CHECK(counts.count("m" + std::to_string(i)) == 1);
    // No new connection is accepted after the drain.
    bot::HttpClient late("127.0.0.1", port, 1s);
    CHECK_FALSE(late.request("GET", "/healthz").ok());
}

TEST_CASE("a broken configuration is reported completely and the process exits non-zero", "[process][config]")
{
    test::TempDir dir;
    test::write_file(dir.file("bad.json"), R"({"listen":{"port":"x"},"treads":2,"apps":[{"name":"a"}]})");
    test::Child child({QUNBOT_BINARY, "serve", "--config", dir.file("bad.json")});
    CHECK(child.wait_exit(10s) == 1);
    const auto err = child.err();
    CHECK_THAT(err, Catch::Contains("/listen/port: expected a port number"));
    CHECK_THAT(err, Catch::Contains("unknown key \"treads\"; did you mean \"threads\"?"));
    CHECK_THAT(err, Catch::Contains("/apps/0/path: required"));
}

TEST_CASE("send-test-event and activity work against a running server", "[process][cli]")
{
    test::TempDir dir;
    const auto config = test::write_test_config(dir);
    std::optional<test::Child> server;
    const auto port = test::start_server(server, config);
    const auto url = "http://127.0.0.1:" + std::to_string(port) + "/cb";
    test::Child send({QUNBOT_BINARY, "send-test-event", "--to", url, "--app", "t", "--config", config, "--kind", "member_joined",
                      "--chat", "wrCliChat", "--members", "wmAlice,wmBob", "--scene", "3"});
    REQUIRE(send.wait_exit(20s) == 0);
    CHECK(send.wait_for_line("POST member_joined -> HTTP 200", 1s));
    test::Child verify({QUNBOT_BINARY, "send-test-event", "--to", url, "--app", "t", "--config", config, "--verify-url"});
    REQUIRE(verify.wait_exit(20s) == 0);
    test::Child activity({QUNBOT_BINARY, "activity", "--db", dir.file("q.db"), "--group", "wrCliChat"});
    REQUIRE(activity.wait_exit(20s) == 0);
    CHECK(activity.wait_for_line("wmAlice", 1s));
    CHECK(activity.wait_for_line("2 row(s)", 1s));
    server->signal(SIGTERM);
    CHECK(server->wait_exit(20s) == 0);
}

TEST_CASE("rules check and rules test: diagnostics and exit codes for CI", "[process][rules]")
{
    test::TempDir dir;
    std::filesystem::create_directories(dir.path() / "good");
    std::filesystem::create_directories(dir.path() / "bad");
    test::write_file(dir.file("good/faq.yaml"), "version: 1\nrules:\n  - id: faq\n    on: message\n"
                                                "    when: { contains: [多少钱] }\n    do: [ { reply: \"见公告\" } ]\n");
    test::write_file(dir.file("good/faq.test.yaml"), "tests:\n  - name: answers\n    events:\n"
                                                     "      - message: { from: wmX0000000000000000000000000001, text: \"多少钱?\" }\n"
                                                     "    expect:\n      - reply: { rule: faq, text: \"见公告\" }\n"
                                                     "  - name: wrong expectation\n    events:\n"
                                                     "      - message: { from: wmX0000000000000000000000000001, text: \"你好\" }\n"
                                                     "    expect:\n      - reply: { rule: faq }\n");
    test::write_file(dir.file("bad/a.yaml"), "version: 1\nrules:\n  - id: a\n    on: mesage\n    do: [ { reply: x } ]\n");
    test::write_file(dir.file("bad/b.yaml"), "version: 1\nrules:\n  - id: b\n    on: message\n    when: { contians: [x] }\n    do: [ { reply: x } ]\n");
    {
        test::Child c({QUNBOT_BINARY, "rules", "check", dir.file("good")});
        REQUIRE(c.wait_for_line("error(s)", 30s));
        CHECK(c.wait_exit(30s) == 0);
        CHECK_THAT(c.out(), Catch::Contains("1 file(s), 1 rule(s), 0 error(s), 0 warning(s)"));
    }
    {
        test::Child c({QUNBOT_BINARY, "rules", "check", dir.file("bad")});
        REQUIRE(c.wait_for_line("error(s)", 30s));
        CHECK(c.wait_exit(30s) == 1);
        // Both files' errors, not just the first.
        CHECK_THAT(c.out(), Catch::Contains(dir.file("bad/a.yaml") + ":4:9: error: unknown trigger \"mesage\"; did you mean \"message\"?"));
        CHECK_THAT(c.out(), Catch::Contains(dir.file("bad/b.yaml") + ":5:13: error: unknown key \"contians\" in a condition; did you mean \"contains\"?"));
        CHECK_THAT(c.out(), Catch::Contains("2 error(s)"));
    }
    {
        test::Child c({QUNBOT_BINARY, "rules", "test", dir.file("good")});
        REQUIRE(c.wait_for_line(" passed, ", 30s));
        CHECK(c.wait_exit(30s) == 1);
        CHECK_THAT(c.out(), Catch::Contains("ok    answers"));
        CHECK_THAT(c.out(), Catch::Contains("FAIL  wrong expectation"));
        CHECK_THAT(c.out(), Catch::Contains("missing action #1"));
        CHECK_THAT(c.out(), Catch::Contains("1 passed, 1 failed"));
    }
}

TEST_CASE("the example rules in config/ pass their own tests", "[process][rules]")
{
    const auto dir = std::string(QUNBOT_SOURCE_DIR) + "/config/rules";
    test::Child c({QUNBOT_BINARY, "rules", "test", dir});
    const auto summary = c.wait_for_line(" passed, ", 60s);
    REQUIRE(summary);
    CHECK_THAT(*summary, Catch::EndsWith(" passed, 0 failed"));
    CHECK(c.wait_exit(60s) == 0);
}

TEST_CASE("lottery from the command line: open, enter, draw, show, verify, export, and a tampered draw fails verify", "[process][draw]")
{
    test::TempDir dir;
    std::filesystem::create_directories(dir.path() / "rules");
    test::write_file(dir.file("rules/d.yaml"), "version: 1\ndraws:\n  - id: cli\n    enter: { keyword: 抽奖 }\n    closes: { after: 1h }\n"
                                               "    prizes: { random: { winners: 2, budget_fen: 500, min_fen: 100 } }\n");
    const auto config = test::write_test_config(dir, test::vector_token, test::vector_key, test::vector_corp,
                                                "\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false},");
    auto run = [&](std::vector<std::string> args, std::optional<int> expect_exit = 0) {
        std::vector<std::string> argv{QUNBOT_BINARY, "lottery"};
        argv.insert(argv.end(), args.begin(), args.end());
        argv.push_back("--config");
        argv.push_back(config);
        test::Child c(argv);
        const auto code = c.wait_exit(30s);
        c.wait_for_line("\x01", 5s); // reads stdout to its end (the process has exited)
        INFO(c.out() << c.err());
        CHECK(code == expect_exit);
        return c.out() + c.err();
    };
    // The group must be in the directory: as the bot's directory sync would have left it.
    {
        test::Child init({QUNBOT_BINARY, "lottery", "list", "--config", config});
        REQUIRE(init.wait_exit(30s).has_value()); // no database yet: a clear error, not a crash
        CHECK_THAT(init.err(), Catch::Contains("no database at"));
    }
    CHECK_THAT(run({"open", "cli", "--group", "wrCLI"}, 1), Catch::Contains("is not an active group in the directory"));
    {
        SQLite::Database db(dir.file("q.db"), SQLite::OPEN_READWRITE);
        db.exec("INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, needs_sync, created_at, updated_at) VALUES"
                " ('" + std::string(test::vector_corp) + "', 'wrCLI', 't', 'active', '门店CLI群', 'o1', 0, 0, 0)");
    }
    CHECK_THAT(run({"open", "cli", "--group", "wrCLI", "--run-id", "r1"}), Catch::Contains("opened round 1 of cli in wrCLI"));
    CHECK_THAT(run({"open", "cli", "--group", "wrCLI", "--run-id", "r1"}), Catch::Contains("was opened before: nothing done"));
    for (const char* m : {"wmCLIENTRANT00000000000000000001", "wmCLIENTRANT00000000000000000002", "wmCLIENTRANT00000000000000000003"}) {
        CHECK_THAT(run({"enter", "1", m}), Catch::Contains(std::string("entered: ") + m));
    }
    CHECK_THAT(run({"enter", "1", "zhangsan"}, 1), Catch::Contains("may not enter: staff do not take part"));
    CHECK_THAT(run({"draw", "1"}, 1), Catch::Contains("needs --now"));
    CHECK_THAT(run({"draw", "1", "--now"}), Catch::Contains("drawn: 3 entries, 2 winner(s), ¥5.00"));
    CHECK_THAT(run({"draw", "1", "--now"}, 1), Catch::Contains("is drawn: nothing to draw"));
    const auto shown = run({"show", "1"});
    CHECK_THAT(shown, Catch::Contains("seed "));
    CHECK_THAT(shown, Catch::Contains("zhangsan  staff do not take part"));
    CHECK_THAT(run({"verify", "1"}), Catch::Contains("round 1: verified."));
    const auto csv = run({"export", "1", "--csv"});
    CHECK_THAT(csv, Catch::StartsWith("round,draw,group,pick,rank,tier,member,name,amount_fen,amount_yuan,method,status,billno,detail\n"));
    {
        SQLite::Database db(dir.file("q.db"));
        CHECK(db.execAndGet("SELECT sum(amount_fen) FROM payouts").getInt64() == 500);
    }
    // Someone edits an amount in the database: verify notices and exits 1.
    {
        SQLite::Database db(dir.file("q.db"), SQLite::OPEN_READWRITE);
        db.exec("UPDATE draw_picks SET amount_fen = amount_fen + 1 WHERE pick = 0");
    }
    const auto bad = run({"verify", "1"}, 1);
    CHECK_THAT(bad, Catch::Contains("DOES NOT VERIFY"));
    CHECK_THAT(bad, Catch::Contains("pick 0 (rank 0) should get"));
}
