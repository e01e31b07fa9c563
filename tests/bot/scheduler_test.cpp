// The scheduler with an injected clock over a real journal: exactly once per slot across
// restarts and clock steps, missed slots (skip / catch_up), edits, manual runs.
#include "bot/metrics.hpp"
#include "bot/scheduler.hpp"
#include "rules/loader.hpp"
#include "storage/journal.hpp"
#include "storage/schedule_state.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>

using namespace qunbot;
using namespace std::chrono;

namespace {

using test::cst;

const char* morning = R"(version: 1
groups:
  stores: { name_glob: "*门店*" }
rules:
  - id: morning
    on: schedule
    schedule: "daily 09:00"
    in: stores
    do: [ { post: "{{ group.name }} 早安" } ]
)";

struct World {
    test::TempDir dir;
    std::atomic<std::int64_t> now{cst(2026, 11, 24, 8, 0)};
    bot::Registry metrics;
    std::unique_ptr<storage::Journal> journal;
    std::unique_ptr<bot::Scheduler> scheduler;
    std::shared_ptr<const rules::RuleSet> rules;

    World()
    {
        open();
        write([](SQLite::Database& db) {
            db.exec("INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, needs_sync, created_at, updated_at) VALUES"
                    " ('ww', 'wrA', 't', 'active', '门店A群', 'o1', 0, 0, 0),"
                    " ('ww', 'wrB', 't', 'active', '门店B群', 'o2', 0, 0, 0),"
                    " ('ww', 'wrC', 't', 'active', '员工群', 'o3', 0, 0, 0),"
                    " ('ww', 'wrD', 't', 'dismissed', '门店D群', 'o4', 0, 0, 0)");
        });
    }
    void open()
    {
        storage::Journal::Options jo;
        jo.path = dir.file("q.db");
        journal = std::make_unique<storage::Journal>(jo);
        bot::Scheduler::Options so;
        so.database = jo.path;
        so.now_ms = [this] { return now.load(); };
        scheduler = std::make_unique<bot::Scheduler>(*journal, metrics, so);
        if (rules) scheduler->install(rules);
    }
    // A restart: everything in memory is gone; the database stays.
    void restart()
    {
        scheduler.reset();
        journal.reset();
        open();
    }
    void write(storage::WriteWork work)
    {
        std::promise<std::string> done;
        journal->submit(std::move(work), [&done](std::string e) { done.set_value(std::move(e)); });
        REQUIRE(done.get_future().get().empty());
    }
    void load(const std::string& text)
    {
        auto r = rules::load_rule_sources({{"s.yaml", text}});
        INFO((r.diagnostics.empty() ? std::string() : r.diagnostics.front().headline()));
        REQUIRE(r.ok());
        rules = r.rules;
        scheduler->install(rules);
    }
    std::int64_t count(const std::string& sql)
    {
        SQLite::Database db(dir.file("q.db"));
        return db.execAndGet(sql).getInt64();
    }
    std::vector<storage::SlotRecord> history(const std::string& id)
    {
        SQLite::Database db(dir.file("q.db"));
        return storage::slot_history(db, id, 100);
    }
};

} // namespace

TEST_CASE("a slot fires once, for the groups its rule selects", "[scheduler]")
{
    World w;
    w.load(morning);
    CHECK(w.scheduler->tick().empty()); // 08:00: registered, nothing due
    REQUIRE(w.scheduler->next_due_ms() == cst(2026, 11, 24, 9, 0));
    w.now = cst(2026, 11, 24, 9, 0, 1);
    auto fired = w.scheduler->tick();
    REQUIRE(fired.size() == 1);
    CHECK(fired[0].slot == "2026-11-24T09:00");
    CHECK(fired[0].status == "fired");
    CHECK(fired[0].groups == 2); // 员工群 is not a store; the dismissed group is gone
    CHECK(w.count("SELECT count(*) FROM outbox") == 2);
    CHECK(w.count("SELECT count(*) FROM outbox WHERE json_extract(action_json, '$.text') = '门店A群 早安'") == 1);
    CHECK(w.count("SELECT count(*) FROM outbox WHERE idempotency_key = 'ww/schedule/morning/2026-11-24T09:00/wrB/0'") == 1);
    CHECK(w.scheduler->tick().empty());

    SECTION("a restart at the same moment does not fire it again")
    {
        w.restart();
        CHECK(w.scheduler->tick().empty());
        CHECK(w.count("SELECT count(*) FROM outbox") == 2);
    }
    SECTION("nor does the clock stepping back and forward again")
    {
        w.now = cst(2026, 11, 24, 8, 59, 50);
        CHECK(w.scheduler->tick().empty());
        w.now = cst(2026, 11, 24, 9, 0, 5);
        CHECK(w.scheduler->tick().empty());
        CHECK(w.count("SELECT count(*) FROM outbox") == 2);
    }
    SECTION("the next day fires the next slot")
    {
        w.now = cst(2026, 11, 25, 9, 0, 0);
        fired = w.scheduler->tick();
        REQUIRE(fired.size() == 1);
        CHECK(fired[0].slot == "2026-11-25T09:00");
        CHECK(w.count("SELECT count(*) FROM outbox") == 4);
    }
}

TEST_CASE("missed slots: skip, or catch up within grace", "[scheduler]")
{
    World w;
    w.load(R"(version: 1
rules:
  - id: skipper
    on: schedule
    schedule: "daily 09:00"
    do: [ { post: "skip" } ]
  - id: catcher
    on: schedule
    schedule: { at: "daily 09:00", missed: catch_up, grace: 30m }
    do: [ { post: "catch" } ]
)");
    w.now = cst(2026, 11, 24, 8, 55);
    CHECK(w.scheduler->tick().empty());
    // qunbot is down from 08:55 to 09:10.
    w.restart();
    w.now = cst(2026, 11, 24, 9, 10);
    auto fired = w.scheduler->tick();
    REQUIRE(fired.size() == 2);
    CHECK(fired[0].rule_id == "skipper");
    CHECK(fired[0].status == "skipped");
    CHECK(fired[1].rule_id == "catcher");
    CHECK(fired[1].status == "fired");
    CHECK(w.count("SELECT count(*) FROM outbox WHERE json_extract(action_json, '$.text') = 'skip'") == 0);
    CHECK(w.count("SELECT count(*) FROM outbox WHERE json_extract(action_json, '$.text') = 'catch'") == 3);
    CHECK(w.history("skipper").at(0).status == "skipped");

    // Down again, from before 09:00 the next day until 09:40: beyond the grace, both skip.
    w.now = cst(2026, 11, 25, 9, 40);
    w.restart();
    fired = w.scheduler->tick();
    REQUIRE(fired.size() == 2);
    CHECK(fired[0].status == "skipped");
    CHECK(fired[1].status == "skipped");
    CHECK(w.count("SELECT count(*) FROM outbox") == 3);
}

TEST_CASE("editing a schedule's time cancels the old trigger at once", "[scheduler]")
{
    World w;
    w.load(morning);
    w.now = cst(2026, 11, 24, 8, 50);
    CHECK(w.scheduler->tick().empty());
    w.now = cst(2026, 11, 24, 8, 59);
    std::string later = morning;
    later.replace(later.find("daily 09:00"), 11, "daily 09:30");
    w.load(later);
    CHECK(w.scheduler->tick().empty());
    w.now = cst(2026, 11, 24, 9, 0, 30);
    CHECK(w.scheduler->tick().empty()); // 09:00 is gone
    w.now = cst(2026, 11, 24, 9, 30);
    auto fired = w.scheduler->tick();
    REQUIRE(fired.size() == 1);
    CHECK(fired[0].slot == "2026-11-24T09:30");
    CHECK(w.count("SELECT count(*) FROM outbox") == 2);
}

TEST_CASE("daylight saving: a New York 02:30 slot fires once on the day the clocks jump", "[scheduler]")
{
    World w;
    w.load(R"(version: 1
rules:
  - id: ny
    on: schedule
    schedule: { at: "30 2 * * *", tz: America/New_York }
    do: [ { post: "hi" } ]
)");
    // 2026-03-08 07:00 UTC: 02:00 EST becomes 03:00 EDT.
    const sys_days march8 = year_month_day{year{2026}, month{3}, day{8}};
    const std::int64_t gap_end = duration_cast<milliseconds>((march8 + hours{7}).time_since_epoch()).count();
    w.now = gap_end - 3'600'000; // 01:00 EST
    CHECK(w.scheduler->tick().empty());
    w.now = gap_end;
    auto fired = w.scheduler->tick();
    REQUIRE(fired.size() == 1);
    CHECK(fired[0].slot == "2026-03-08T02:30");
    w.now = gap_end + 30 * 60'000;
    CHECK(w.scheduler->tick().empty());
    CHECK(w.count("SELECT count(*) FROM outbox") == 3);
}

TEST_CASE("a manual run happens once per run id", "[scheduler]")
{
    World w;
    w.load(morning);
    CHECK(w.scheduler->tick().empty()); // 08:00: the schedule holds from now
    const auto& rule = *w.rules->find("morning");
    auto first = bot::run_schedule_now(w.dir.file("q.db"), *w.rules, rule, "ops-1", w.now, 8 * 3600);
    CHECK(first.status == "manual");
    CHECK(first.actions == 2);
    auto again = bot::run_schedule_now(w.dir.file("q.db"), *w.rules, rule, "ops-1", w.now + 1000, 8 * 3600);
    CHECK(again.status == "already");
    CHECK(w.count("SELECT count(*) FROM outbox") == 2);
    CHECK(bot::run_schedule_now(w.dir.file("q.db"), *w.rules, rule, "ops-2", w.now, 8 * 3600).actions == 2);
    CHECK(w.count("SELECT count(*) FROM outbox") == 4);
    // A manual run does not move the regular timing: 09:00 still fires.
    w.now = cst(2026, 11, 24, 9, 0);
    CHECK(w.scheduler->tick().size() == 1);
}

TEST_CASE("a slot's actions are queued owner by owner, so each owner gets one mass-send task", "[scheduler]")
{
    World w;
    w.write([](SQLite::Database& db) {
        db.exec("INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, needs_sync, created_at, updated_at) VALUES"
                " ('ww', 'wr1', 't', 'active', '门店1', 'zoe', 0, 0, 0), ('ww', 'wr2', 't', 'active', '门店2', 'amy', 0, 0, 0),"
                " ('ww', 'wr3', 't', 'active', '门店3', 'zoe', 0, 0, 0), ('ww', 'wr4', 't', 'active', '门店4', 'amy', 0, 0, 0)");
    });
    w.load(morning);
    CHECK(w.scheduler->tick().empty());
    w.now = cst(2026, 11, 24, 9, 0);
    REQUIRE(w.scheduler->tick().size() == 1);
    SQLite::Database db(w.dir.file("q.db"));
    SQLite::Statement st(db, "SELECT o.group_id FROM outbox o JOIN chat_groups g ON g.group_id = o.group_id ORDER BY o.id");
    std::vector<std::string> order;
    while (st.executeStep()) order.push_back(st.getColumn(0).getString());
    // amy (wr2, wr4), o1 (wrA), o2 (wrB), zoe (wr1, wr3).
    CHECK(order == std::vector<std::string>{"wr2", "wr4", "wrA", "wrB", "wr1", "wr3"});
}
