// Planning one schedule slot over N groups (default 100,000): reading the group directory,
// selecting the groups (name glob) and rendering each group's post, then committing the slot
// and its N outbox rows in one transaction (durability full).
//   build/bench/qunbot_schedule_plan [N]
#include "rules/loader.hpp"
#include "storage/database.hpp"
#include "storage/schedule_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

using namespace qunbot;
namespace fs = std::filesystem;

int main(int argc, char** argv)
{
    const int n = argc > 1 ? std::atoi(argv[1]) : 100'000;
    const auto dir = fs::temp_directory_path() / ("qunbot-plan-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto path = (dir / "q.db").string();
    {
        auto db = storage::open_for_writing(path, storage::Durability::full);
        SQLite::Transaction tx(*db);
        SQLite::Statement ins(*db, "INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, needs_sync, created_at, updated_at)"
                                   " VALUES ('wwbench', ?, 'b', 'active', ?, ?, 0, 0, 0)");
        for (int i = 0; i < n; ++i) {
            ins.bind(1, "wr" + std::to_string(1'000'000 + i));
            ins.bind(2, (i % 10 == 9 ? "员工群" : "门店福利群") + std::to_string(i));
            ins.bind(3, "owner" + std::to_string(i % 2000));
            ins.exec();
            ins.reset();
        }
        tx.commit();
    }
    auto loaded = rules::load_rule_sources({{"bench.yaml", R"(version: 1
groups:
  stores: { name_glob: "*门店福利群*" }
rules:
  - id: morning
    on: schedule
    schedule: "daily 09:00"
    in: stores
    do: [ { post: "{{ group.name }} 早上好☀️ 今天({{ now | date: \"%m月%d日\" }})的福利 10 点开抢~" } ]
)"}});
    if (!loaded.ok()) return 1;
    const auto& rule = *loaded.rules->find("morning");
    auto db = storage::open_for_writing(path, storage::Durability::full);
    std::printf("one schedule slot over %d groups (90%% selected by a name glob)\n", n);
    for (int run = 0; run < 3; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto targets = storage::schedule_targets(*db);
        const auto t1 = std::chrono::steady_clock::now();
        std::size_t groups = 0;
        const auto actions = storage::plan_slot(*loaded.rules, rule, targets, "2026-11-25T09:0" + std::to_string(run), 1'795'568'400'000,
                                                8 * 3600, groups);
        const auto t2 = std::chrono::steady_clock::now();
        {
            SQLite::Transaction tx(*db);
            storage::record_slot(*db, {"morning", "2026-11-25T09:0" + std::to_string(run), 0, 0, "fired", static_cast<std::int64_t>(groups), 0},
                                 actions, 0);
            tx.commit();
        }
        const auto t3 = std::chrono::steady_clock::now();
        auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
        std::printf("  run %d: read directory %.0f ms, select + render %zu posts %.0f ms (planning %.0f ms), commit %.0f ms\n", run + 1,
                    ms(t0, t1), actions.size(), ms(t1, t2), ms(t0, t2), ms(t2, t3));
    }
    fs::remove_all(dir);
    return 0;
}
