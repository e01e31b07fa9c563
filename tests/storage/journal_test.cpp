#include "storage/journal.hpp"

#include "storage/activity.hpp"
#include "support/support.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

using namespace qunbot;
using storage::AppendOutcome;
using Status = AppendOutcome::Status;
using namespace std::chrono_literals;

namespace {

core::Event chat_event(core::EventKind kind, std::string group, std::vector<std::string> members, std::int64_t t,
                       std::string key)
{
    core::Event e;
    e.kind = kind;
    e.platform = "wecom";
    e.app = "t";
    e.tenant = "wwcorp";
    e.group_id = std::move(group);
    e.members = std::move(members);
    e.time = t;
    e.dedup_key = std::move(key);
    e.raw_type = "change_external_chat/x";
    e.payload = "<xml/>";
    return e;
}

AppendOutcome append_and_wait(storage::Journal& j, core::Event e)
{
    auto p = std::make_shared<std::promise<AppendOutcome>>();
    auto f = p->get_future();
    j.append(std::move(e), [p](AppendOutcome o) { p->set_value(std::move(o)); });
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    return f.get();
}

storage::Journal::Options options(const std::string& path)
{
    storage::Journal::Options o;
    o.path = path;
    o.now_ms = [] { return std::int64_t{1'700'000'000'123}; };
    return o;
}

std::int64_t scalar(SQLite::Database& db, const std::string& sql)
{
    return db.execAndGet(sql).getInt64();
}

} // namespace

TEST_CASE("journal stores an event once and recognises its retry", "[storage][journal]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    storage::Journal j(options(path));
    auto first = append_and_wait(j, chat_event(core::EventKind::member_joined, "g1", {"m1"}, 100, "k1"));
    CHECK(first.status == Status::stored);
    CHECK(first.event_id > 0);
    auto retry = append_and_wait(j, chat_event(core::EventKind::member_joined, "g1", {"m1"}, 100, "k1"));
    CHECK(retry.status == Status::duplicate);
    CHECK(retry.event_id == first.event_id);
    // Same key in another tenant is another event.
    auto other = chat_event(core::EventKind::member_joined, "g1", {"m1"}, 100, "k1");
    other.tenant = "wwother";
    CHECK(append_and_wait(j, other).status == Status::stored);
    j.close();

    SQLite::Database db(path);
    CHECK(scalar(db, "SELECT count(*) FROM inbox") == 2);
    CHECK(scalar(db, "SELECT received_ms FROM inbox WHERE id = " + std::to_string(first.event_id)) == 1'700'000'000'123);
    CHECK(db.execAndGet("SELECT kind FROM inbox WHERE id = 1").getString() == "member_joined");
}

TEST_CASE("journal writes the activity log and the group directory in the same transaction", "[storage][journal]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    {
        storage::Journal j(options(path));
        append_and_wait(j, chat_event(core::EventKind::group_created, "g1", {}, 100, "c"));
        auto join = chat_event(core::EventKind::member_joined, "g1", {"a", "b", "c"}, 110, "j");
        join.scene = 3;
        join.current_member_version = "v2";
        append_and_wait(j, join);
        auto leave = chat_event(core::EventKind::member_left, "g1", {"b"}, 120, "l");
        leave.scene = 1;
        append_and_wait(j, leave);
    }
    SQLite::Database db(path);
    CHECK(scalar(db, "SELECT count(*) FROM group_members WHERE group_id = 'g1' AND present = 1") == 2);
    CHECK(db.execAndGet("SELECT member_version FROM chat_groups WHERE group_id = 'g1'").getString() == "v2");
    CHECK(scalar(db, "SELECT present FROM group_members WHERE member_id = 'b'") == 0);
    CHECK(scalar(db, "SELECT quit_scene FROM group_members WHERE member_id = 'b'") == 1);
    CHECK(scalar(db, "SELECT join_scene FROM group_members WHERE member_id = 'a'") == 3);

    const auto rows = storage::query_activity(db, storage::ActivityFilter{std::string("g1"), std::nullopt, 100});
    REQUIRE(rows.size() == 5); // created, three joins, one leave
    CHECK(rows.front().kind == "member_left");
    CHECK(rows.front().member_id == "b");
    CHECK(rows.front().scene == 1);
    const auto since = storage::query_activity(db, storage::ActivityFilter{std::nullopt, std::int64_t{110}, 100});
    CHECK(since.size() == 4);
    const auto limited = storage::query_activity(db, storage::ActivityFilter{std::nullopt, std::nullopt, 2});
    CHECK(limited.size() == 2);
}

TEST_CASE("a late join retry does not revive a dismissed group", "[storage][journal]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    {
        storage::Journal j(options(path));
        append_and_wait(j, chat_event(core::EventKind::group_created, "g1", {}, 100, "c"));
        append_and_wait(j, chat_event(core::EventKind::group_dismissed, "g1", {}, 200, "d"));
        append_and_wait(j, chat_event(core::EventKind::member_joined, "g1", {"x"}, 150, "late"));
    }
    SQLite::Database db(path);
    CHECK(db.execAndGet("SELECT status FROM chat_groups WHERE group_id = 'g1'").getString() == "dismissed");
    CHECK(scalar(db, "SELECT updated_at FROM chat_groups WHERE group_id = 'g1'") == 200);
}

TEST_CASE("concurrent appends are group-committed and none is lost", "[storage][journal]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    constexpr int threads = 8;
    constexpr int per_thread = 250;
    std::atomic<int> stored{0};
    std::atomic<std::size_t> commits{0};
    {
        auto o = options(path);
        o.on_commit = [&commits](double, std::size_t) { commits.fetch_add(1); };
        storage::Journal j(o);
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t) {
            ts.emplace_back([&j, &stored, t] {
                std::vector<std::future<AppendOutcome>> fs;
                for (int i = 0; i < per_thread; ++i) {
                    auto p = std::make_shared<std::promise<AppendOutcome>>();
                    fs.push_back(p->get_future());
                    const auto id = std::to_string(t) + "-" + std::to_string(i);
                    j.append(chat_event(core::EventKind::member_joined, "g" + std::to_string(t), {"m" + id}, i, "k" + id),
                             [p](AppendOutcome o) { p->set_value(std::move(o)); });
                }
                for (auto& f : fs) {
                    if (f.wait_for(30s) == std::future_status::ready && f.get().status == Status::stored) stored.fetch_add(1);
                }
            });
        }
        for (auto& t : ts) t.join();
    }
    CHECK(stored.load() == threads * per_thread);
    // Group commit: fewer transactions than events (the writer takes all that queued meanwhile).
    CHECK(commits.load() < static_cast<std::size_t>(threads * per_thread));
    SQLite::Database db(path);
    CHECK(scalar(db, "SELECT count(*) FROM inbox") == threads * per_thread);
    CHECK(scalar(db, "SELECT count(*) FROM activity") == threads * per_thread);
}

TEST_CASE("after close, append fails at once instead of losing the event silently", "[storage][journal]")
{
    test::TempDir dir;
    storage::Journal j(options(dir.file("j.db")));
    j.close();
    auto o = append_and_wait(j, chat_event(core::EventKind::member_joined, "g", {"m"}, 1, "k"));
    CHECK(o.status == Status::failed);
    CHECK(o.error == "journal is closed");
}

TEST_CASE("schema migrations apply once and a newer schema is refused", "[storage][migrations]")
{
    test::TempDir dir;
    const auto path = dir.file("m.db");
    { auto db = storage::open_for_writing(path, storage::Durability::normal); }
    {
        auto db = storage::open_for_writing(path, storage::Durability::normal); // second open: no-op
        CHECK(db->execAndGet("PRAGMA user_version").getInt() == storage::schema_version());
        CHECK(db->execAndGet("PRAGMA journal_mode").getString() == "wal");
        db->exec("PRAGMA user_version = 999");
    }
    CHECK_THROWS_WITH(storage::open_for_writing(path, storage::Durability::full), Catch::Contains("newer than this build"));
}

TEST_CASE("a commit failure is reported per event and the journal keeps working", "[storage][journal][negative]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    storage::Journal j(options(path));
    // Make exactly one event's insert fail: a trigger that rejects a specific key.
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        db.exec("CREATE TRIGGER reject_poison BEFORE INSERT ON inbox WHEN NEW.dedup_key = 'poison'"
                " BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
    }
    auto p1 = std::make_shared<std::promise<AppendOutcome>>();
    auto p2 = std::make_shared<std::promise<AppendOutcome>>();
    auto f1 = p1->get_future();
    auto f2 = p2->get_future();
    j.append(chat_event(core::EventKind::member_joined, "g", {"m"}, 1, "poison"), [p1](AppendOutcome o) { p1->set_value(o); });
    j.append(chat_event(core::EventKind::member_joined, "g", {"n"}, 1, "fine"), [p2](AppendOutcome o) { p2->set_value(o); });
    REQUIRE(f1.wait_for(10s) == std::future_status::ready);
    REQUIRE(f2.wait_for(10s) == std::future_status::ready);
    const auto o1 = f1.get();
    CHECK(o1.status == Status::failed);
    CHECK_THAT(o1.error, Catch::Contains("poisoned"));
    CHECK(f2.get().status == Status::stored); // its batch neighbour is not lost
    CHECK(append_and_wait(j, chat_event(core::EventKind::member_joined, "g", {"o"}, 2, "after")).status == Status::stored);
}

namespace {

// A sync that waits until the test opens the gate, and counts how often it ran.
struct GatedSync {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    int calls = 0;
    std::string error; // what the sync reports once the gate opens

    std::string operator()()
    {
        std::unique_lock lock(m);
        ++calls;
        cv.notify_all();
        cv.wait(lock, [&] { return open; });
        return error;
    }
    void let_through(std::string result = {})
    {
        std::lock_guard lock(m);
        open = true;
        error = std::move(result);
        cv.notify_all();
    }
    bool wait_for_calls(int n)
    {
        std::unique_lock lock(m);
        return cv.wait_for(lock, 10s, [&] { return calls >= n; });
    }
};

} // namespace

TEST_CASE("with full durability an append is answered only after the sync that covers it, and one sync covers every commit before it",
          "[storage][journal]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    auto gate = std::make_shared<GatedSync>();
    std::mutex m;
    std::condition_variable cv;
    std::size_t committed = 0;
    auto o = options(path);
    o.durability = storage::Durability::full;
    o.max_batch = 10; // the 50 below take at least five commits
    o.sync = [gate] { return (*gate)(); };
    o.on_commit = [&](double, std::size_t n) {
        std::lock_guard lock(m);
        committed += n;
        cv.notify_all();
    };
    storage::Journal j(o);
    auto wait_committed = [&](std::size_t n) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, 10s, [&] { return committed >= n; });
    };

    auto first = std::make_shared<std::promise<AppendOutcome>>();
    auto first_answer = first->get_future();
    j.append(chat_event(core::EventKind::member_joined, "g", {"m0"}, 1, "k0"), [first](AppendOutcome r) { first->set_value(r); });
    REQUIRE(gate->wait_for_calls(1)); // committed, and its sync is in progress
    // While the disk has not confirmed it, nobody is told the event is stored...
    CHECK(first_answer.wait_for(0s) == std::future_status::timeout);
    // ...and the writer does not wait for the disk: it commits what arrives meanwhile.
    std::vector<std::future<AppendOutcome>> later;
    for (int i = 1; i <= 50; ++i) {
        auto p = std::make_shared<std::promise<AppendOutcome>>();
        later.push_back(p->get_future());
        const auto key = "k" + std::to_string(i);
        j.append(chat_event(core::EventKind::member_joined, "g", {"m" + std::to_string(i)}, 1, key),
                 [p](AppendOutcome r) { p->set_value(r); });
    }
    REQUIRE(wait_committed(51));
    for (auto& f : later) CHECK(f.wait_for(0s) == std::future_status::timeout);

    gate->let_through();
    REQUIRE(first_answer.wait_for(10s) == std::future_status::ready);
    CHECK(first_answer.get().status == Status::stored);
    for (auto& f : later) {
        REQUIRE(f.wait_for(10s) == std::future_status::ready);
        CHECK(f.get().status == Status::stored);
    }
    // The 50 took five commits or more, all done before the second sync began: that one sync
    // covered them all.
    j.close();
    CHECK(gate->calls == 2);
}

TEST_CASE("a failed sync is answered as a failure, the committed event stays and its retry is a duplicate",
          "[storage][journal][negative]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    auto fail_next = std::make_shared<std::atomic<bool>>(true);
    auto o = options(path);
    o.durability = storage::Durability::full;
    o.sync = [fail_next] { return fail_next->exchange(false) ? std::string("fdatasync of j.db-wal failed: Input/output error") : std::string(); };
    storage::Journal j(o);
    std::vector<std::int64_t> handed_on;
    std::mutex m;
    j.on_stored([&](std::int64_t id, core::Event&&) {
        std::lock_guard lock(m);
        handed_on.push_back(id);
    });

    const auto failed = append_and_wait(j, chat_event(core::EventKind::member_joined, "g", {"m"}, 1, "k"));
    CHECK(failed.status == Status::failed);
    CHECK(failed.error == "committed but not confirmed on disk: fdatasync of j.db-wal failed: Input/output error");
    // WeCom retries a failed callback; the event is in the inbox, so the retry is recognised.
    const auto retry = append_and_wait(j, chat_event(core::EventKind::member_joined, "g", {"m"}, 1, "k"));
    CHECK(retry.status == Status::duplicate);
    j.close();
    SQLite::Database db(path);
    CHECK(scalar(db, "SELECT count(*) FROM inbox") == 1);
    // The rule engine still saw it once: its recovery cursor must not skip a committed event.
    CHECK(handed_on == std::vector<std::int64_t>{retry.event_id});
}

namespace {

// Appends from several threads, each keeping `in_flight` events waiting, until `stop()` says so
// (checked between appends) or `deadline` passes. Returns how many were answered `stored`.
int append_steadily(storage::Journal& j, const std::function<bool()>& stop, std::chrono::steady_clock::time_point deadline)
{
    constexpr int threads = 4;
    constexpr std::size_t in_flight = 64;
    std::atomic<int> stored{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
            std::deque<std::future<AppendOutcome>> waiting;
            auto settle_one = [&] {
                if (waiting.front().wait_for(30s) == std::future_status::ready && waiting.front().get().status == Status::stored) {
                    stored.fetch_add(1);
                }
                waiting.pop_front();
            };
            for (int i = 0; !stop() && std::chrono::steady_clock::now() < deadline; ++i) {
                if (waiting.size() >= in_flight) settle_one();
                auto p = std::make_shared<std::promise<AppendOutcome>>();
                waiting.push_back(p->get_future());
                const auto id = std::to_string(t) + "-" + std::to_string(i);
                j.append(chat_event(core::EventKind::member_joined, "g" + std::to_string(i % 500), {"m" + id}, i, "k" + id),
                         [p](AppendOutcome o) { p->set_value(std::move(o)); });
            }
            while (!waiting.empty()) settle_one();
        });
    }
    for (auto& t : ts) t.join();
    return stored.load();
}

// The WAL header's checkpoint sequence number (bytes 12..15, big-endian): SQLite adds one each
// time the log starts over from its beginning.
std::uint32_t wal_checkpoint_sequence(const std::string& db_path)
{
    std::ifstream in(db_path + "-wal", std::ios::binary);
    unsigned char header[32] = {};
    in.read(reinterpret_cast<char*>(header), sizeof header);
    if (in.gcount() != sizeof header) return 0;
    return (std::uint32_t{header[12]} << 24) | (std::uint32_t{header[13]} << 16) | (std::uint32_t{header[14]} << 8) | header[15];
}

} // namespace

TEST_CASE("under steady load the WAL is made to start over once it passes its size limit and nothing is lost", "[storage][journal]")
{
    test::TempDir dir;
    const auto path = dir.file("j.db");
    std::atomic<int> catch_ups{0};
    std::atomic<std::int64_t> largest{0};
    std::atomic<int> pauses{0}; // on_catch_up: the writer's side of each catch-up
    std::atomic<bool> pause_measured{true};
    auto o = options(path);
    o.on_wal = [&](std::int64_t bytes, bool restarted) {
        if (restarted) catch_ups.fetch_add(1);
        if (bytes > largest.load()) largest.store(bytes);
    };
    o.on_catch_up = [&](double seconds) {
        pauses.fetch_add(1);
        if (!(seconds > 0 && seconds < 60)) pause_measured = false;
    };
    int stored = 0;
    SECTION("past the limit the writer catches the log up and it starts over")
    {
        o.wal_restart_bytes = 256 << 10; // a few commits' worth
        storage::Journal j(o);
        stored = append_steadily(j, [&] { return catch_ups.load() >= 3; }, std::chrono::steady_clock::now() + 20s);
        CHECK(catch_ups.load() >= 3);
        // Each restart reported by the checkpointer followed a pause the writer reported, with
        // its duration (the last pause may not be reported as a restart yet).
        CHECK(pauses.load() >= catch_ups.load());
        CHECK(pause_measured.load());
        // Read before close (which folds the log back and truncates it).
        CHECK(wal_checkpoint_sequence(path) >= 3);
    }
    SECTION("below the limit the writer never pauses for it")
    {
        o.wal_restart_bytes = std::int64_t{1} << 40;
        storage::Journal j(o);
        stored = append_steadily(j, [&] { return largest.load() > (std::int64_t{1} << 20); }, std::chrono::steady_clock::now() + 60s);
        REQUIRE(largest.load() > (std::int64_t{1} << 20)); // the log did grow under the load
        CHECK(catch_ups.load() == 0);
        CHECK(pauses.load() == 0);
    }
    CHECK(stored > 0);
    SQLite::Database db(path);
    CHECK(scalar(db, "SELECT count(*) FROM inbox") == stored);
}
