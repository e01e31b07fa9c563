#include "storage/journal.hpp"

#include "bot/core/thread_name.hpp"
#include "rules/text.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <sqlite3.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace qunbot::storage {
namespace {

using core::EventKind;

// Events after which the checkpointer runs without waiting for its 100 ms tick.
constexpr std::size_t checkpoint_after_events = 1000;

std::int64_t system_now_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// PASSIVE checkpoint: (frames in the log, frames copied to the database), both -1 when another
// checkpoint was running. Throws SQLite::Exception on errors.
std::pair<int, int> checkpoint_passive(SQLite::Database& db)
{
    SQLite::Statement st(db, "PRAGMA wal_checkpoint(PASSIVE)");
    if (!st.executeStep()) return {-1, -1};
    if (st.getColumn(0).getInt() != 0) return {-1, -1};
    return {st.getColumn(1).getInt(), st.getColumn(2).getInt()};
}

} // namespace

std::string encode_event(const core::Event& e)
{
    nlohmann::json j;
    j["kind"] = core::to_string(e.kind);
    j["platform"] = e.platform;
    j["app"] = e.app;
    j["tenant"] = e.tenant;
    j["time"] = e.time;
    if (!e.group_id.empty()) j["group_id"] = e.group_id;
    if (!e.actor.empty()) j["actor"] = e.actor;
    if (!e.subject.empty()) j["subject"] = e.subject;
    if (!e.members.empty()) j["members"] = e.members;
    if (e.scene) j["scene"] = *e.scene;
    if (e.member_change_count) j["member_change_count"] = e.member_change_count;
    if (!e.last_member_version.empty()) j["last_member_version"] = e.last_member_version;
    if (!e.current_member_version.empty()) j["current_member_version"] = e.current_member_version;
    if (!e.state.empty()) j["state"] = e.state;
    if (!e.welcome_code.empty()) j["welcome_code"] = e.welcome_code;
    if (!e.message_id.empty()) j["message_id"] = e.message_id;
    if (!e.message_type.empty()) j["message_type"] = e.message_type;
    if (!e.text.empty()) j["text"] = e.text;
    j["raw_type"] = e.raw_type;
    for (const auto& [k, v] : e.attributes) j["attributes"][k] = v;
    // Payloads come from outside; a byte sequence that is not UTF-8 must not fail the commit.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

core::Event decode_event(std::string_view text)
{
    const auto j = nlohmann::json::parse(text);
    core::Event e;
    auto str = [&](const char* k) { return j.contains(k) ? j.at(k).get<std::string>() : std::string(); };
    e.kind = core::event_kind_from_string(str("kind"));
    e.platform = str("platform");
    e.app = str("app");
    e.tenant = str("tenant");
    e.time = j.value("time", std::int64_t{0});
    e.group_id = str("group_id");
    e.actor = str("actor");
    e.subject = str("subject");
    if (j.contains("members")) e.members = j.at("members").get<std::vector<std::string>>();
    if (j.contains("scene")) e.scene = j.at("scene").get<int>();
    e.member_change_count = j.value("member_change_count", 0);
    e.last_member_version = str("last_member_version");
    e.current_member_version = str("current_member_version");
    e.state = str("state");
    e.welcome_code = str("welcome_code");
    e.message_id = str("message_id");
    e.message_type = str("message_type");
    e.text = str("text");
    e.raw_type = str("raw_type");
    if (j.contains("attributes")) {
        for (const auto& [k, v] : j.at("attributes").items()) e.attributes.emplace_back(k, v.get<std::string>());
    }
    return e;
}

// Owns the connection and the prepared statements; used only on the writer thread.
class Journal::Writer {
public:
    Writer(const Options& o)
        : db_(open_for_writing(o.path, o.durability)),
          insert_event_(*db_, "INSERT INTO inbox (tenant, dedup_key, platform, app, kind, raw_type, group_id, actor, subject,"
                              " event_time, received_ms, event_json, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                              " ON CONFLICT (tenant, dedup_key) DO NOTHING"),
          find_event_(*db_, "SELECT id FROM inbox WHERE tenant = ? AND dedup_key = ?"),
          insert_activity_(*db_, "INSERT INTO activity (event_id, at, tenant, group_id, member_id, kind, scene, detail, text_hash)"
                                 " VALUES (?,?,?,?,?,?,?,?,?)"),
          upsert_group_(*db_, "INSERT INTO chat_groups (tenant, group_id, app, status, member_version, needs_sync,"
                              " created_at, updated_at) VALUES (?1, ?2, ?3, CASE ?4 WHEN 'keep' THEN 'active' ELSE ?4 END,"
                              " ?5, 1, ?6, ?6)"
                              " ON CONFLICT (tenant, group_id) DO UPDATE SET"
                              " status = CASE ?4 WHEN 'keep' THEN status ELSE ?4 END,"
                              " member_version = CASE WHEN ?5 <> '' THEN ?5 ELSE member_version END,"
                              " needs_sync = 1, updated_at = max(updated_at, ?6)"),
          join_member_(*db_, "INSERT INTO group_members (tenant, group_id, member_id, joined_at, join_scene, present)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT (tenant, group_id, member_id) DO UPDATE SET"
                             " joined_at = ?4, join_scene = ?5, left_at = NULL, quit_scene = NULL, present = 1"),
          member_day_(*db_, "INSERT INTO member_hours (tenant, group_id, member_id, hour) VALUES (?,?,?,?)"
                            " ON CONFLICT DO NOTHING"),
          add_contact_(*db_, "INSERT INTO contacts (tenant, customer, staff, since) VALUES (?,?,?,?) ON CONFLICT DO NOTHING"),
          drop_contact_(*db_, "DELETE FROM contacts WHERE tenant = ? AND customer = ? AND staff = ?"),
          leave_member_(*db_, "INSERT INTO group_members (tenant, group_id, member_id, left_at, quit_scene, present)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, 0) ON CONFLICT (tenant, group_id, member_id) DO UPDATE SET"
                              " left_at = ?4, quit_scene = ?5, present = 0")
    {
    }

    SQLite::Database& db() { return *db_; }

    // Returns the outcome; throws SQLite::Exception if the statement fails (the caller rolls back).
    // `event_json` is `encode_event(e)`, made by the appending thread: the writer is the one
    // thread every event waits for, so it does no work that another thread can do first.
    AppendOutcome record(const core::Event& e, const std::string& event_json, std::int64_t received_ms)
    {
        run(insert_event_, e.tenant, e.dedup_key, e.platform, e.app, std::string(core::to_string(e.kind)), e.raw_type,
            e.group_id, e.actor, e.subject, e.time, received_ms, event_json, e.payload);
        if (db_->getChanges() == 0) {
            AppendOutcome dup{AppendOutcome::Status::duplicate, 0, {}};
            Rewind rewind{find_event_};
            find_event_.bind(1, e.tenant);
            find_event_.bind(2, e.dedup_key);
            if (find_event_.executeStep()) dup.event_id = find_event_.getColumn(0).getInt64();
            return dup;
        }
        const std::int64_t id = db_->getLastInsertRowid();
        record_activity(id, e);
        update_directory(e);
        return {AppendOutcome::Status::stored, id, {}};
    }

private:
    // Resets a statement even when a step throws: a statement left mid-step makes every later
    // use of it fail with "API misuse", which would turn one bad event into a dead journal.
    struct Rewind {
        SQLite::Statement& st;
        ~Rewind()
        {
            st.tryReset();
            st.clearBindings();
        }
    };

    template <class... Args>
    void run(SQLite::Statement& st, const Args&... args)
    {
        Rewind rewind{st};
        int i = 0;
        (bind(st, ++i, args), ...);
        st.exec();
    }
    // Without a copy: every argument outlives the statement's execution (`run` binds, executes
    // and clears the bindings within one call).
    static void bind(SQLite::Statement& st, int i, const std::string& v) { st.bindNoCopy(i, v); }
    static void bind(SQLite::Statement& st, int i, std::int64_t v) { st.bind(i, v); }
    static void bind(SQLite::Statement& st, int i, int v) { st.bind(i, v); }
    static void bind(SQLite::Statement& st, int i, const std::optional<int>& v)
    {
        if (v) st.bind(i, *v);
        else st.bind(i);
    }

    void activity_row(std::int64_t id, const core::Event& e, const std::string& member, const std::string& detail,
                      const std::string& text_hash = {})
    {
        run(insert_activity_, id, e.time, e.tenant, e.group_id, member, std::string(core::to_string(e.kind)), e.scene,
            detail, text_hash);
    }

    void record_activity(std::int64_t id, const core::Event& e)
    {
        switch (e.kind) {
        case EventKind::member_joined:
        case EventKind::member_left:
            if (e.members.empty()) activity_row(id, e, "", e.raw_type);
            for (const auto& m : e.members) activity_row(id, e, m, e.raw_type);
            return;
        case EventKind::contact_added:
        case EventKind::contact_half_added:
        case EventKind::contact_edited:
        case EventKind::contact_deleted:
        case EventKind::contact_unfollowed:
        case EventKind::contact_transfer_failed:
        case EventKind::contact_archive_agreed:
            activity_row(id, e, e.subject, "staff=" + e.actor + (e.state.empty() ? "" : " state=" + e.state));
            // Who a customer is a contact of: mark_tag must go through such a staff member.
            if (e.kind == EventKind::contact_added && !e.actor.empty() && !e.subject.empty()) {
                run(add_contact_, e.tenant, e.subject, e.actor, e.time);
            } else if ((e.kind == EventKind::contact_deleted || e.kind == EventKind::contact_unfollowed) && !e.subject.empty()) {
                run(drop_contact_, e.tenant, e.subject, e.actor);
            }
            return;
        case EventKind::message:
            // Group messages only: "the same text in several groups" is about groups.
            activity_row(id, e, e.actor, e.message_type, e.group_id.empty() ? std::string() : rules::text_fingerprint(e.text));
            if (!e.group_id.empty()) run(member_day_, e.tenant, e.group_id, e.actor, e.time / 3600 * 3600);
            return;
        default:
            activity_row(id, e, e.actor, e.raw_type);
            return;
        }
    }

    void update_directory(const core::Event& e)
    {
        if (e.group_id.empty()) return;
        const bool group_event = e.raw_type.starts_with("change_external_chat/");
        if (!group_event) return;
        const std::string status = e.kind == EventKind::group_dismissed ? "dismissed" : "active";
        // A late retry of an old join must not revive a dismissed group: only create/dismiss set status.
        const bool authoritative = (e.kind == EventKind::group_created || e.kind == EventKind::group_dismissed);
        run(upsert_group_, e.tenant, e.group_id, e.app, authoritative ? status : std::string("keep"),
            e.current_member_version, e.time);
        if (e.kind == EventKind::member_joined) {
            for (const auto& m : e.members) run(join_member_, e.tenant, e.group_id, m, e.time, e.scene);
        } else if (e.kind == EventKind::member_left) {
            for (const auto& m : e.members) run(leave_member_, e.tenant, e.group_id, m, e.time, e.scene);
        }
    }

    std::unique_ptr<SQLite::Database> db_;
    SQLite::Statement insert_event_;
    SQLite::Statement find_event_;
    SQLite::Statement insert_activity_;
    SQLite::Statement upsert_group_;
    SQLite::Statement join_member_;
    SQLite::Statement member_day_;
    SQLite::Statement add_contact_;
    SQLite::Statement drop_contact_;
    SQLite::Statement leave_member_;
};

Journal::Journal(Options options) : options_(std::move(options))
{
    if (!options_.now_ms) options_.now_ms = system_now_ms;
    if (options_.max_batch == 0) options_.max_batch = 1;
    writer_ = std::make_unique<Writer>(options_);
    // Checkpoints are this class's job (see run_checkpoints), not the committing writer's.
    writer_->db().exec("PRAGMA wal_autocheckpoint=0");
    // When the log starts over, a file that grew far past the limit (a reader held an old
    // snapshot for long) is cut back. Not to the limit itself: the log passes it by the commits
    // made before the catch-up, so every restart would cut the file and grow it again, and
    // both cost the disk (freed blocks, size changes that make every sync a journal commit).
    // Below this the file keeps its size and later commits overwrite it in place.
    writer_->db().exec("PRAGMA journal_size_limit=" + std::to_string(2 * options_.wal_restart_bytes));
    if (syncing()) {
        // The syncing thread makes commits durable (see run_syncs), so the writer's own commits
        // only write. NORMAL still syncs around checkpoints, which keeps the file consistent.
        writer_->db().exec("PRAGMA synchronous=NORMAL");
        wal_path_ = sqlite3_filename_wal(sqlite3_db_filename(writer_->db().getHandle(), "main"));
        syncer_ = std::thread([this] {
            core::name_this_thread("qb-journal-sync");
            run_syncs();
        });
    }
    thread_ = std::thread([this] {
        core::name_this_thread("qb-journal");
        run();
    });
    checkpointer_ = std::thread([this] {
        core::name_this_thread("qb-checkpoint");
        run_checkpoints();
    });
}

Journal::~Journal() { close(); }

void Journal::record_all(Pending& p, std::int64_t received_ms)
{
    p.event_outcomes.clear();
    for (std::size_t i = 0; i < p.events.size(); ++i) {
        p.event_outcomes.push_back(writer_->record(p.events[i], p.events_json[i], received_ms));
    }
}

void Journal::append(core::Event event, AppendCallback done)
{
    Pending p;
    p.event_json = encode_event(event);
    p.event = std::move(event);
    p.done = std::move(done);
    {
        std::lock_guard lock(mutex_);
        if (!closing_) {
            queue_.push_back(std::move(p));
            cv_.notify_one();
            return;
        }
    }
    p.done(AppendOutcome{AppendOutcome::Status::failed, 0, "journal is closed"});
}

void Journal::submit(WriteWork work, WriteCallback done)
{
    {
        std::lock_guard lock(mutex_);
        if (!closing_) {
            Pending p;
            p.work = std::move(work);
            p.work_done = std::move(done);
            queue_.push_back(std::move(p));
            cv_.notify_one();
            return;
        }
    }
    done("journal is closed");
}

void Journal::append_all(std::vector<core::Event> events, WriteWork work, std::function<void(std::string, std::size_t)> done)
{
    Pending p;
    p.events_json.reserve(events.size());
    for (const auto& e : events) p.events_json.push_back(encode_event(e));
    p.events = std::move(events);
    p.work = std::move(work);
    p.all_done = std::move(done);
    {
        std::lock_guard lock(mutex_);
        if (!closing_) {
            queue_.push_back(std::move(p));
            cv_.notify_one();
            return;
        }
    }
    p.all_done("journal is closed", 0);
}

void Journal::on_stored(StoredHook hook)
{
    std::lock_guard lock(mutex_);
    stored_hook_ = std::move(hook);
}

void Journal::close()
{
    {
        std::lock_guard lock(mutex_);
        if (closing_ && !thread_.joinable()) return;
        closing_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    {
        std::lock_guard lock(sync_mutex_);
        writer_done_ = true;
    }
    sync_cv_.notify_one();
    if (syncer_.joinable()) syncer_.join();
    if (wal_fd_ >= 0) {
        ::close(wal_fd_);
        wal_fd_ = -1;
    }
    {
        std::lock_guard lock(mutex_);
        checkpointer_stop_ = true;
    }
    checkpoint_cv_.notify_one();
    if (checkpointer_.joinable()) checkpointer_.join();
}

void Journal::run_checkpoints()
{
    // A checkpoint copies committed WAL frames into the database file. PASSIVE never blocks the
    // writer; small and frequent (every 100 ms, or sooner after enough events) keeps each one's
    // fsync short, so the WAL's own fdatasync does not queue behind a large one.
    std::unique_ptr<SQLite::Database> db;
    try {
        db = std::make_unique<SQLite::Database>(options_.path, SQLite::OPEN_READWRITE);
        db->setBusyTimeout(5000);
    } catch (const std::exception& e) {
        // The writer opened the same file a moment ago, so this is unexpected. Commits still
        // work without checkpoints; the WAL file just keeps growing.
        spdlog::error("journal: cannot open a checkpoint connection to {}: {}; the WAL will not be checkpointed",
                      options_.path, e.what());
        return;
    }
    bool failing = false; // log a failure once, and its recovery, not every 100 ms
    const std::int64_t frame_bytes = db->execAndGet("PRAGMA page_size").getInt64() + 24;
    // SQLite syncs the database file only when a checkpoint has copied the whole log, which
    // under steady load is the writer's catch-up (catch_up_wal): that sync then wrote out every
    // page the passes before it had copied, tens of MB, 30-80 ms with every caller waiting. So
    // after each pass that copied something the kernel is asked to start writing the file out
    // (sync_file_range, which waits neither for the disk nor for a filesystem journal commit),
    // and the catch-up's sync finds little left to write. A full fdatasync here instead raised
    // the p99 at 5,000 callbacks/s from about 7 to 11-12 ms (it competes with the WAL's syncs).
    const int db_fd = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (db_fd < 0) spdlog::warn("journal: cannot open {} to write it out after checkpoints: {}", options_.path, std::strerror(errno));
    int flushed_copied = 0;   // frames copied when the file was last handed to writeback
    bool flush_failing = false;
    std::unique_lock lock(mutex_);
    for (;;) {
        checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(100),
                                [&] { return checkpointer_stop_ || uncheckpointed_ >= checkpoint_after_events; });
        const bool stop = checkpointer_stop_;
        if (uncheckpointed_ == 0 && !stop) continue;
        uncheckpointed_ = 0;
        lock.unlock();
        int frames = -1; // unknown: a failed or busy pass reports nothing
        int copied = -1;
        try {
            if (stop) {
                // On close the writer is gone: fold the whole WAL back and truncate it.
                db->exec("PRAGMA wal_checkpoint(TRUNCATE)");
            } else {
                // Busy (the writer is catching the log up itself, see catch_up_wal) is not a failure.
                const auto progress = checkpoint_passive(*db);
                frames = progress.first;
                copied = progress.second;
            }
            if (failing) spdlog::info("journal: WAL checkpoints work again");
            failing = false;
        } catch (const std::exception& e) {
            // The frames stay in the WAL, which is durable; the next round tries again.
            if (!failing) spdlog::warn("journal: WAL checkpoint failed, will retry: {}", e.what());
            failing = true;
        }
        if (stop) {
            if (db_fd >= 0) ::close(db_fd);
            return;
        }
        if (copied > 0 && copied != flushed_copied && db_fd >= 0) {
            // Only a head start: durability does not depend on it (SQLite syncs the file itself
            // before the log starts over), so a failure is logged once and otherwise ignored.
            const bool ok = ::sync_file_range(db_fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0;
            if (!ok && !flush_failing) {
                spdlog::warn("journal: cannot start writing out {} after a checkpoint: {}", options_.path, std::strerror(errno));
            }
            if (ok && flush_failing) spdlog::info("journal: {} is written out after checkpoints again", options_.path);
            flush_failing = !ok;
        }
        if (copied >= 0) flushed_copied = copied;
        const std::int64_t wal_bytes = frames > 0 ? 32 + frames * frame_bytes : 0;
        lock.lock();
        // Even a pass that copied every frame it saw leaves the commits made while it ran, so
        // under steady load the log never starts over by itself: past the limit, always ask.
        if (wal_bytes > options_.wal_restart_bytes) wal_catch_up_ = true;
        const bool restarted = std::exchange(wal_restarted_, false);
        if (options_.on_wal && frames >= 0) {
            lock.unlock();
            options_.on_wal(wal_bytes, restarted);
            lock.lock();
        }
    }
}

void Journal::catch_up_wal()
{
    {
        std::lock_guard lock(mutex_);
        if (!wal_catch_up_) return;
    }
    // Between two batches nothing else writes, so this copies what the checkpointer's last pass
    // left (the commits made while it ran) and the log is complete in the database file. The
    // writer's next transaction then starts the log over from its beginning, which keeps the
    // WAL file at a fixed size: no growth to sync, and a short replay after a crash.
    std::pair<int, int> progress;
    const auto start = std::chrono::steady_clock::now();
    try {
        progress = checkpoint_passive(writer_->db());
    } catch (const std::exception& e) {
        // Tried again after every batch: say it once, and when it works again.
        if (!catch_up_failing_) spdlog::warn("journal: could not copy the WAL's last commits to start it over, will retry: {}", e.what());
        catch_up_failing_ = true;
        return;
    }
    if (catch_up_failing_) spdlog::info("journal: the WAL can be started over again");
    catch_up_failing_ = false;
    // Busy (the checkpointer is mid-pass) or a reader still on an old snapshot: after the next batch.
    if (progress.first < 0 || progress.second < progress.first) return;
    if (options_.on_catch_up) options_.on_catch_up(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::lock_guard lock(mutex_);
    wal_catch_up_ = false;
    wal_restarted_ = true;
}

void Journal::run()
{
    std::vector<Pending> batch;
    std::vector<AppendOutcome> outcomes;
    StoredHook hook;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
            hook = stored_hook_; // after the wait: a hook set while idle applies to this batch
            if (queue_.empty()) return; // closing, and everything is committed
            if (queue_.size() <= options_.max_batch) {
                batch.swap(queue_);
            } else {
                auto split = queue_.begin() + static_cast<std::ptrdiff_t>(options_.max_batch);
                batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(split));
                queue_.erase(queue_.begin(), split);
            }
        }
        const auto start = std::chrono::steady_clock::now();
        const std::int64_t received = options_.now_ms();
        outcomes.clear();
        try {
            SQLite::Transaction tx(writer_->db());
            for (auto& p : batch) {
                if (p.work) {
                    record_all(p, received);
                    p.work(writer_->db());
                    outcomes.push_back(AppendOutcome{AppendOutcome::Status::stored, 0, {}});
                } else {
                    outcomes.push_back(writer_->record(p.event, p.event_json, received));
                }
            }
            tx.commit();
        } catch (const std::exception& batch_error) {
            // Isolate the failure: commit the events one by one, so one bad event (or a transient
            // error) does not fail its neighbours. Each failure is reported to its own caller, whose
            // client (WeCom) retries.
            outcomes.clear();
            for (auto& p : batch) {
                try {
                    SQLite::Transaction tx(writer_->db());
                    AppendOutcome outcome{AppendOutcome::Status::stored, 0, {}};
                    if (p.work) {
                        record_all(p, received);
                        p.work(writer_->db());
                    } else {
                        outcome = writer_->record(p.event, p.event_json, received);
                    }
                    tx.commit();
                    outcomes.push_back(std::move(outcome));
                } catch (const std::exception& e) {
                    outcomes.push_back(AppendOutcome{AppendOutcome::Status::failed, 0, e.what()});
                }
            }
        }
        if (options_.on_commit) {
            options_.on_commit(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                               batch.size());
        }
        Committed c{std::move(batch), std::move(outcomes), std::move(hook)};
        batch = {};
        outcomes = {};
        hook = nullptr;
        if (syncing()) {
            {
                std::lock_guard lock(sync_mutex_);
                unsynced_.push_back(std::move(c));
            }
            sync_cv_.notify_one();
        } else {
            deliver(c, {});
        }
        catch_up_wal();
    }
}

void Journal::run_syncs()
{
    std::vector<Committed> groups;
    for (;;) {
        {
            std::unique_lock lock(sync_mutex_);
            sync_cv_.wait(lock, [&] { return !unsynced_.empty() || writer_done_; });
            if (unsynced_.empty()) return; // the writer has stopped and every commit is answered
            groups.swap(unsynced_);
        }
        // One sync covers every commit written before it started: that is the group commit.
        const auto start = std::chrono::steady_clock::now();
        const std::string error = options_.sync ? options_.sync() : sync_wal();
        if (options_.on_sync) options_.on_sync(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        if (!error.empty()) spdlog::error("journal: {} commit(s) are not confirmed on disk: {}", groups.size(), error);
        for (auto& c : groups) deliver(c, error);
        groups.clear();
    }
}

std::string Journal::sync_wal()
{
    if (wal_fd_ < 0) {
        wal_fd_ = ::open(wal_path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (wal_fd_ < 0) return "cannot open " + wal_path_ + " to sync it: " + std::strerror(errno);
    }
    if (::fdatasync(wal_fd_) != 0) return "fdatasync of " + wal_path_ + " failed: " + std::strerror(errno);
    return {};
}

void Journal::deliver(Committed& c, const std::string& sync_error)
{
    // A failed sync leaves the commit in the database, so the stored hook still sees its events
    // (the dispatcher's recovery cursor must not skip them), but no caller is told "durable".
    auto told = [&](AppendOutcome& o) {
        if (!sync_error.empty() && o.status != AppendOutcome::Status::failed) {
            return AppendOutcome{AppendOutcome::Status::failed, 0, "committed but not confirmed on disk: " + sync_error};
        }
        return std::move(o);
    };
    std::vector<std::pair<AppendCallback, AppendOutcome>> answers; // for options_.complete
    auto& batch = c.batch;
    auto& outcomes = c.outcomes;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].all_done) {
            const bool ok = outcomes[i].status != AppendOutcome::Status::failed;
            std::size_t stored = 0;
            for (std::size_t k = 0; ok && k < batch[i].event_outcomes.size(); ++k) {
                if (batch[i].event_outcomes[k].status != AppendOutcome::Status::stored) continue;
                ++stored;
                if (c.hook) c.hook(batch[i].event_outcomes[k].event_id, std::move(batch[i].events[k]));
            }
            const auto answer = told(outcomes[i]);
            batch[i].all_done(answer.error, answer.status == AppendOutcome::Status::failed ? 0 : stored);
        } else if (batch[i].work) {
            const auto answer = told(outcomes[i]);
            batch[i].work_done(answer.error);
        } else {
            const bool stored = outcomes[i].status == AppendOutcome::Status::stored;
            const auto id = outcomes[i].event_id;
            auto answer = told(outcomes[i]);
            if (options_.complete) answers.emplace_back(std::move(batch[i].done), std::move(answer));
            else batch[i].done(std::move(answer));
            if (stored && c.hook) c.hook(id, std::move(batch[i].event));
        }
    }
    if (!answers.empty()) {
        options_.complete([answers = std::move(answers)]() mutable {
            for (auto& [done, outcome] : answers) done(std::move(outcome));
        });
    }
    {
        std::lock_guard lock(mutex_);
        uncheckpointed_ += batch.size();
        if (uncheckpointed_ >= checkpoint_after_events) checkpoint_cv_.notify_one();
    }
}

} // namespace qunbot::storage
