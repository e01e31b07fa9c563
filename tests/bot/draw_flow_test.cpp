// Draws over a real journal and scheduler with an injected clock: opening on schedule with a
// commitment, eligibility at entry, closing by time and by count, the published seed matching
// the commitment, verification of stored draws (and of tampered ones), rerolls, the ledger.
// And once end to end: members joining through real encrypted callbacks enter a draw that the
// running bot draws when it is full.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/http_client.hpp"
#include "bot/metrics.hpp"
#include "bot/scheduler.hpp"
#include "bot/service.hpp"
#include "rules/loader.hpp"
#include "storage/draw_state.hpp"
#include "storage/journal.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <thread>

using namespace qunbot;
using namespace std::chrono;

namespace {

using test::cst;

std::string customer(int i) { return test::customer_id(i); }

const char* evening = R"(version: 1
groups:
  stores: { name_glob: "*门店*" }
draws:
  - id: evening
    in: stores
    enter: { keyword: 抽奖 }
    opens: "daily 20:00"
    closes: { after: 1h }
    eligible: { not_won_within: 7d }
    prizes: { random: { winners: 3, budget_fen: 1000, min_fen: 100 } }
    messages:
      open: "{{ group.name }}:回复 {{ draw.keyword }},{{ draw.prizes }},{{ draw.closes }}开奖。承诺 {{ draw.commitment }}"
      result: "共 {{ draw.entries }} 人。\n{{ draw.winners }}\n种子 {{ draw.seed }}"
    tag: { entrants: 参与抽奖, winners: 中奖 }
  - id: full
    in: stores
    enter: { keyword: 报名 }
    closes: { entries: 4 }
    prizes: { tiers: [ { name: 一等奖, winners: 1, amount_fen: 500 }, { name: 二等奖, winners: 2, amount_fen: 200 } ] }
)";

struct World {
    test::TempDir dir;
    std::atomic<std::int64_t> now{cst(2026, 11, 24, 19, 0)};
    bot::Registry metrics;
    std::unique_ptr<storage::Journal> journal;
    std::unique_ptr<bot::Scheduler> scheduler;
    std::shared_ptr<const rules::RuleSet> rules;

    World()
    {
        storage::Journal::Options jo;
        jo.path = dir.file("q.db");
        journal = std::make_unique<storage::Journal>(jo);
        bot::Scheduler::Options so;
        so.database = jo.path;
        so.now_ms = [this] { return now.load(); };
        scheduler = std::make_unique<bot::Scheduler>(*journal, metrics, so);
        auto r = rules::load_rule_sources({{"d.yaml", evening}});
        INFO((r.diagnostics.empty() ? std::string() : r.diagnostics.front().headline()));
        REQUIRE(r.ok());
        rules = r.rules;
        scheduler->install(rules);
        write([](SQLite::Database& db) {
            db.exec("INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, needs_sync, created_at, updated_at) VALUES"
                    " ('ww', 'wrA', 't', 'active', '门店A群', 'o1', 0, 0, 0),"
                    " ('ww', 'wrB', 't', 'active', '门店B群', 'o2', 0, 0, 0),"
                    " ('ww', 'wrC', 't', 'active', '员工群', 'o3', 0, 0, 0)");
        });
        // Ten customers in group A since last week, one who joins during the draw, one staff member.
        for (int i = 1; i <= 10; ++i) member("wrA", customer(i), cst(2026, 11, 17, 12, 0));
        member("wrA", "zhangsan", cst(2026, 11, 17, 12, 0));
    }
    void member(const std::string& group, const std::string& id, std::int64_t joined_ms)
    {
        write([group, id, joined_ms](SQLite::Database& db) {
            SQLite::Statement st(db, "INSERT INTO group_members (tenant, group_id, member_id, joined_at, present) VALUES ('ww', ?, ?, ?, 1)");
            st.bind(1, group);
            st.bind(2, id);
            st.bind(3, joined_ms / 1000);
            st.exec();
        });
    }
    void write(storage::WriteWork work)
    {
        std::promise<std::string> done;
        journal->submit(std::move(work), [&done](std::string e) { done.set_value(std::move(e)); });
        REQUIRE(done.get_future().get().empty());
    }
    storage::EntryResult enter(std::int64_t round, const std::string& member, const std::string& via = "keyword")
    {
        storage::EntryResult r;
        const auto* spec = rules->find_draw(storage_round(round).draw_id);
        const auto at = now.load();
        write([&r, spec, round, member, via, at](SQLite::Database& db) { r = storage::enter_round(db, spec, round, member, via, at, 8 * 3600); });
        return r;
    }
    storage::DrawRound storage_round(std::int64_t id)
    {
        SQLite::Database db(dir.file("q.db"));
        auto r = storage::find_round(db, id);
        REQUIRE(r.has_value());
        return *r;
    }
    std::int64_t open_manual(const std::string& draw, const std::string& group)
    {
        std::int64_t id = 0;
        const auto* spec = rules->find_draw(draw);
        const auto at = now.load();
        write([&id, spec, group, at](SQLite::Database& db) {
            rules::GroupInfo g;
            g.id = group;
            id = storage::open_round(db, *spec, "ww", "t", g, "manual:1", at, 8 * 3600).value_or(0);
        });
        REQUIRE(id > 0);
        return id;
    }
    std::int64_t count(const std::string& sql)
    {
        SQLite::Database db(dir.file("q.db"));
        return db.execAndGet(sql).getInt64();
    }
    std::vector<std::string> column(const std::string& sql)
    {
        SQLite::Database db(dir.file("q.db"));
        SQLite::Statement st(db, sql);
        std::vector<std::string> out;
        while (st.executeStep()) out.push_back(st.getColumn(0).getString());
        return out;
    }
    std::vector<std::string> verify(std::int64_t round)
    {
        SQLite::Database db(dir.file("q.db"));
        return storage::verify_round(db, round);
    }
};

} // namespace

TEST_CASE("a scheduled draw: commitment at the opening, eligibility, drawn at its time, seed revealed, verifiable", "[draw][scheduler]")
{
    World w;
    CHECK(w.scheduler->tick().empty());
    REQUIRE(w.scheduler->next_due_ms() == cst(2026, 11, 24, 20, 0));
    w.now = cst(2026, 11, 24, 20, 0, 1);
    auto fired = w.scheduler->tick();
    REQUIRE(fired.size() == 1);
    CHECK(fired[0].rule_id == "draw/evening");
    CHECK(fired[0].groups == 2); // the two store groups, not 员工群
    REQUIRE(w.count("SELECT count(*) FROM draw_rounds WHERE status = 'open'") == 2);
    const auto round = std::stoll(w.column("SELECT id FROM draw_rounds WHERE group_id = 'wrA'").at(0));
    const auto commitment = w.storage_round(round).commitment;
    const auto opening = w.column("SELECT json_extract(action_json, '$.text') FROM outbox WHERE group_id = 'wrA'").at(0);
    CHECK(opening == "门店A群:回复 抽奖,3人瓜分 ¥10.00,11月24日 21:00开奖。承诺 " + commitment);
    CHECK(w.scheduler->next_due_ms() == cst(2026, 11, 24, 21, 0, 10)); // closing time plus the grace for late entries
    CHECK(w.scheduler->tick().empty());

    // Entries: eight customers; staff, a late joiner and someone outside the group are turned away.
    for (int i = 1; i <= 8; ++i) REQUIRE(w.enter(round, customer(i)).status == storage::EntryResult::Status::entered);
    CHECK(w.enter(round, customer(1)).status == storage::EntryResult::Status::already);
    CHECK(w.enter(round, "zhangsan").reason == "staff do not take part");
    w.member("wrA", customer(11), cst(2026, 11, 24, 20, 5));
    CHECK(w.enter(round, customer(11)).reason == "joined after the draw opened");
    // Speaking in the group shows presence, but not since when.
    CHECK(w.enter(round, customer(12)).reason == "join time unknown (not seen joining before the draw opened)");
    CHECK(w.enter(round, customer(13), "join").reason == "not a member of the group");
    CHECK(w.count("SELECT count(*) FROM draw_entries") == 8);
    CHECK(w.count("SELECT count(*) FROM draw_rejections") == 4);
    CHECK(w.count("SELECT count(*) FROM member_tags WHERE tag = '参与抽奖'") == 8);

    // 21:00 has come, but the round waits for late entries' grace; at 21:00:10 it is drawn.
    w.now = cst(2026, 11, 24, 21, 0, 5);
    CHECK(w.enter(round, customer(9)).status == storage::EntryResult::Status::closed);
    CHECK(w.scheduler->tick().empty());
    w.now = cst(2026, 11, 24, 21, 0, 10);
    fired = w.scheduler->tick();
    REQUIRE(fired.size() == 2); // both store groups' rounds
    CHECK(fired[0].status == "drawn");
    const auto r = w.storage_round(round);
    CHECK(r.status == "drawn");
    CHECK(r.closed_by == "time");
    CHECK(rules::commitment_of(r.seed) == commitment); // the revealed seed is the committed one
    const auto result = w.column("SELECT json_extract(action_json, '$.text') FROM outbox WHERE group_id = 'wrA' AND json_extract(action_json, '$.kind') = 'post' ORDER BY id").at(1);
    CHECK(result.starts_with("共 8 人。\n@wm"));
    CHECK(result.ends_with("种子 " + r.seed));
    // Winners are the algorithm's picks over the sorted entries, their amounts add up to the budget.
    std::vector<std::string> sorted;
    for (int i = 1; i <= 8; ++i) sorted.push_back(customer(i));
    const auto order = rules::pick_order(r.seed, rules::entries_digest(sorted), sorted.size(), 3);
    const auto winners = w.column("SELECT member_id FROM draw_picks WHERE round_id = " + std::to_string(round) + " ORDER BY pick");
    REQUIRE(winners.size() == 3);
    for (std::size_t k = 0; k < 3; ++k) CHECK(winners[k] == sorted[order[k]]);
    CHECK(w.count("SELECT sum(amount_fen) FROM payouts WHERE round_id = " + std::to_string(round)) == 1000);
    CHECK(w.count("SELECT count(*) FROM payouts WHERE status = 'manual' AND round_id = " + std::to_string(round)) == 3);
    CHECK(w.count("SELECT count(*) FROM member_tags WHERE tag = '中奖'") == 3);
    CHECK(w.count("SELECT count(*) FROM outbox WHERE json_extract(action_json, '$.kind') = 'assign_tag'") == 11);
    CHECK(w.verify(round).empty());
    // The other store's round had no entries: drawn with nobody, and says so.
    CHECK(w.column("SELECT json_extract(action_json, '$.text') FROM outbox WHERE group_id = 'wrB' AND json_extract(action_json, '$.kind') = 'post' ORDER BY id").at(1).starts_with("本轮抽奖无人参与"));

    SECTION("tampering with a stored draw is detected") {
        w.write([round, &winners](SQLite::Database& db) {
            SQLite::Statement st(db, "UPDATE draw_picks SET member_id = ? WHERE round_id = ? AND pick = 0");
            st.bind(1, winners[0] == customer(8) ? customer(7) : customer(8));
            st.bind(2, static_cast<std::int64_t>(round));
            st.exec();
        });
        const auto problems = w.verify(round);
        REQUIRE(problems.size() == 1);
        CHECK(problems[0].starts_with("pick 0 should be " + winners[0]));
    }
    SECTION("so is a seed that does not match the commitment") {
        w.write([round](SQLite::Database& db) { db.exec("UPDATE draw_rounds SET seed = '" + std::string(64, 'a') + "' WHERE id = " + std::to_string(round)); });
        CHECK_FALSE(w.verify(round).empty());
    }
    SECTION("a winner cannot win the same series again within 7 days") {
        w.now = cst(2026, 11, 25, 20, 0, 1);
        REQUIRE(w.scheduler->tick().size() == 1);
        const auto next = std::stoll(w.column("SELECT max(id) FROM draw_rounds WHERE group_id = 'wrA'").at(0));
        CHECK(next != round);
        CHECK(w.enter(next, winners[0]).reason == "won in this series within 7 days");
        // Any of the eight who did not win may enter again (three won: one of the first four did not).
        std::string loser;
        for (int i = 1; i <= 8 && loser.empty(); ++i) {
            if (std::find(winners.begin(), winners.end(), customer(i)) == winners.end()) loser = customer(i);
        }
        REQUIRE_FALSE(loser.empty());
        CHECK(w.enter(next, loser).status == storage::EntryResult::Status::entered);
    }
    SECTION("a blacklisted member is turned away") {
        w.now = cst(2026, 11, 25, 20, 0, 1);
        REQUIRE(w.scheduler->tick().size() == 1);
        const auto next = std::stoll(w.column("SELECT max(id) FROM draw_rounds WHERE group_id = 'wrA'").at(0));
        w.write([](SQLite::Database& db) { storage::blacklist_add(db, "ww", customer(10), "广告", 0); });
        CHECK(w.enter(next, customer(10)).reason == "blacklisted");
    }
}

TEST_CASE("a window closed by count draws at the Nth entry and takes nobody after", "[draw]")
{
    World w;
    const auto round = w.open_manual("full", "wrA");
    CHECK(w.count("SELECT count(*) FROM outbox WHERE json_extract(action_json, '$.text') LIKE '%SHA-256 = %'") == 1);
    for (int i = 1; i <= 3; ++i) {
        const auto e = w.enter(round, customer(i));
        REQUIRE(e.status == storage::EntryResult::Status::entered);
        CHECK_FALSE(e.drew);
    }
    const auto fourth = w.enter(round, customer(4));
    CHECK(fourth.status == storage::EntryResult::Status::entered);
    CHECK(fourth.drew);
    const auto r = w.storage_round(round);
    CHECK(r.status == "drawn");
    CHECK(r.closed_by == "entries");
    CHECK(w.enter(round, customer(5)).status == storage::EntryResult::Status::closed);
    CHECK(w.count("SELECT count(*) FROM draw_entries") == 4);
    CHECK(w.column("SELECT tier FROM draw_picks ORDER BY pick") == std::vector<std::string>{"一等奖", "二等奖", "二等奖"});
    CHECK(w.count("SELECT sum(amount_fen) FROM payouts") == 900);
    CHECK(w.verify(round).empty());
}

TEST_CASE("rerolls take the next pick of the same shuffle and never a previous winner", "[draw]")
{
    World w;
    const auto round = w.open_manual("full", "wrA");
    for (int i = 1; i <= 4; ++i) REQUIRE(w.enter(round, customer(i)).status == storage::EntryResult::Status::entered);
    auto winners = w.column("SELECT member_id FROM draw_picks ORDER BY pick");
    REQUIRE(winners.size() == 3);
    const auto amount_of_first = w.count("SELECT amount_fen FROM draw_picks WHERE pick = 0");

    storage::RerollResult rr;
    const auto now = w.now.load();
    w.write([&rr, &w, round, first = winners[0], now](SQLite::Database& db) {
        rr = storage::reroll(db, w.rules->find_draw("full"), round, first, "unreachable", now, 8 * 3600);
    });
    REQUIRE(rr.ok);
    // Four entrants, three picked: the fourth is the only one left, and takes rank 0 and its prize.
    std::set<std::string> all{customer(1), customer(2), customer(3), customer(4)};
    for (const auto& m : winners) all.erase(m);
    REQUIRE(all.size() == 1);
    CHECK(rr.replacement == *all.begin());
    CHECK(w.count("SELECT rank FROM draw_picks WHERE pick = 3") == 0);
    CHECK(w.count("SELECT amount_fen FROM draw_picks WHERE pick = 3") == amount_of_first);
    CHECK(w.column("SELECT status FROM payouts ORDER BY pick") == std::vector<std::string>{"cancelled", "manual", "manual", "manual"});
    CHECK(w.verify(round).empty());
    CHECK(w.count("SELECT count(*) FROM outbox WHERE json_extract(action_json, '$.text') LIKE '补抽%'") == 1);

    // Nobody is left: the place stays empty rather than going to a previous winner.
    w.write([&rr, &w, round, second = winners[1], now](SQLite::Database& db) {
        rr = storage::reroll(db, w.rules->find_draw("full"), round, second, "left the group", now, 8 * 3600);
    });
    CHECK(rr.ok);
    CHECK(rr.replacement.empty());
    CHECK(w.count("SELECT count(*) FROM draw_picks") == 4);
    CHECK(w.verify(round).empty());

    // A paid winner cannot be rerolled.
    w.write([round](SQLite::Database& db) { db.exec("UPDATE payouts SET status = 'paid' WHERE pick = 2 AND round_id = " + std::to_string(round)); });
    w.write([&rr, &w, round, third = winners[2], now](SQLite::Database& db) {
        rr = storage::reroll(db, w.rules->find_draw("full"), round, third, "x", now, 8 * 3600);
    });
    CHECK_FALSE(rr.ok);
    CHECK(rr.message.find("cannot be rerolled") != std::string::npos);
}

TEST_CASE("members joining through real callbacks enter a join draw, which the bot draws when full", "[draw][e2e]")
{
    test::TempDir dir;
    std::filesystem::create_directories(dir.path() / "rules");
    test::write_file(dir.file("rules/draw.yaml"), R"(version: 1
draws:
  - id: testers
    enter: { join: true }
    closes: { entries: 3 }
    prizes: { equal: { winners: 2, amount_fen: 100 } }
)");
    std::string db_path;
    const auto extra = "\"rules\":{\"dir\":\"" + dir.file("rules") + "\",\"watch\":false},";
    auto service = test::start_service(test::write_test_config(dir, test::vector_token, test::vector_key, test::vector_corp, extra), db_path);
    auto crypto = wecom::CallbackCrypto::create(core::Secret(test::vector_token), core::Secret(test::vector_key), test::vector_corp);
    REQUIRE(crypto.ok());
    std::int64_t round = 0;
    {
        SQLite::Database db(db_path, SQLite::OPEN_READWRITE);
        db.exec("PRAGMA busy_timeout = 5000");
        const auto loaded = rules::load_rules(dir.file("rules"));
        REQUIRE(loaded.ok());
        const auto& spec = *loaded.rules->find_draw("testers");
        rules::GroupInfo g;
        g.id = "wrStore1";
        round = storage::open_round(db, spec, test::vector_corp, "t", g, "manual:e2e", 1'700'000'000'000, 8 * 3600).value_or(0);
        REQUIRE(round > 0);
    }
    bot::HttpClient c("127.0.0.1", service->port(), 5s);
    for (int i = 1; i <= 4; ++i) {
        wecom::TestEventSpec join;
        join.kind = "member_joined";
        join.corp_id = test::vector_corp;
        join.chat_id = "wrStore1";
        join.members = {customer(i)};
        join.create_time = 1'700'000'100 + i;
        auto payload = wecom::make_test_payload(join);
        REQUIRE(payload.ok());
        const auto sealed = wecom::seal_callback(*crypto, *payload, "1700000000", "n" + std::to_string(i), false);
        auto r = c.request("POST", "/cb?" + sealed.query, sealed.body);
        REQUIRE(r.ok());
        REQUIRE(r->status == 200);
    }
    auto query = [&](const std::string& sql) {
        SQLite::Database db(db_path);
        return db.execAndGet(sql).getInt64();
    };
    REQUIRE(test::eventually([&] { return query("SELECT count(*) FROM draw_rounds WHERE status = 'drawn'") == 1; }));
    // Counted inside the transaction that drew the round, so already visible.
    CHECK_THAT(service->metrics().render(), Catch::Contains("qunbot_draw_entries_total{result=\"entered\"} 3"));
    service->request_shutdown();
    service->wait();
    CHECK(query("SELECT count(*) FROM draw_entries") == 3); // the fourth joined after it was full
    CHECK(query("SELECT count(*) FROM draw_picks") == 2);
    CHECK(query("SELECT count(*) FROM outbox WHERE idempotency_key LIKE '%/draw/%/result'") == 1);
    SQLite::Database db(db_path);
    CHECK(storage::verify_round(db, round).empty());
}
