#pragma once
/// \file
/// The inbox journal: the durable record of every accepted event, and the single SQLite writer.
/// `append` queues an event; a dedicated thread commits whatever has queued up in one
/// transaction ("group commit"). With `Durability::full` a second thread syncs the WAL file and
/// only then reports each outcome, while the writer already commits the next batch: N
/// concurrent callbacks cost one fsync, and the writer never waits for the disk. The member
/// activity log and the group directory are written in the same transaction, so an event is
/// either fully recorded or not at all. WAL checkpoints run on a
/// thread of their own (with its own connection), so a checkpoint's fsync of the database file
/// never sits inside a commit that callers are waiting for.

#include "bot/core/event.hpp"

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/database.hpp"

namespace qunbot::storage {

/// What became of one appended event.
struct AppendOutcome {
    enum class Status { stored, duplicate, failed };
    Status status = Status::failed;
    std::int64_t event_id = 0; ///< inbox row id (also for duplicates: the first copy's id)
    std::string error;         ///< for `failed`: what went wrong (no secrets: events carry none)
};

/// Called once the event's fate is durable, on the journal's syncing thread (`Durability::full`)
/// or writer thread, or where `Options::complete` puts it; must not block.
using AppendCallback = std::function<void(AppendOutcome)>;

/// A write run inside the writer's next transaction. It may run twice (a batch that fails is
/// retried item by item), so it must only write, from data it owns. Throws on failure.
using WriteWork = std::function<void(SQLite::Database&)>;
/// Called on the journal's syncing (or writer) thread when the work is durable (empty) or
/// failed (the error).
using WriteCallback = std::function<void(std::string error)>;

/// The event as stored in `inbox.event_json` (without the payload), and back.
[[nodiscard]] std::string encode_event(const core::Event& event);
[[nodiscard]] core::Event decode_event(std::string_view json);

class Journal {
public:
    struct Options {
        std::string path;
        Durability durability = Durability::full;
        std::size_t max_batch = 1024;
        /// Called after each commit attempt on the writer thread: (seconds, events in batch).
        std::function<void(double, std::size_t)> on_commit;
        /// With `Durability::full`: makes every commit written so far durable, returning an error
        /// message or "". Unset: fdatasync of the WAL file. Injectable for tests.
        std::function<std::string()> sync;
        /// Called after each sync on the syncing thread, with its duration in seconds.
        std::function<void(double)> on_sync;
        /// Runs a committed batch's `append` callbacks (the waiting callers' answers), given as one
        /// function. Unset: on the journal's thread once durable. A server hands them to its
        /// I/O threads, so the journal's threads, which every event waits for, do not also wake
        /// every waiter.
        /// Stored hooks stay on the journal's own thread, in inbox id order.
        std::function<void(std::function<void()>)> complete;
        /// Above this size the WAL is made to start over. SQLite starts the log over only when
        /// a checkpoint has copied all of it, which under steady load never happens by itself
        /// (the writer adds to it while the checkpointer copies), so the file would grow
        /// without bound. Past this size the writer copies the last commits itself between two
        /// batches (a pause of a few ms, since the database file is written out after every
        /// checkpoint pass), and its next transaction starts the log over. A log file that grew
        /// past twice this size is cut back then.
        std::int64_t wal_restart_bytes = std::int64_t{1} << 30;
        /// Called on the checkpointer's thread after each checkpoint pass, with the bytes of WAL
        /// frames since the log last started over, and `true` when the writer has caught the log
        /// up since the last call (so its next transaction starts the log over).
        std::function<void(std::int64_t, bool)> on_wal;
        /// Called on the writer's thread after it caught the log up, with how long that took
        /// (the pause every caller waited through).
        std::function<void(double)> on_catch_up;
        /// Wall clock in milliseconds for `received_ms`; injectable for tests.
        std::function<std::int64_t()> now_ms;
    };

    /// Opens the database (migrating it) and starts the writer thread. Throws on start-up errors.
    explicit Journal(Options options);
    /// Equivalent to `close()`.
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    /// Thread-safe. After `close()` the callback is invoked at once with `failed`.
    void append(core::Event event, AppendCallback done);
    /// Thread-safe: runs `work` in the next group commit (so the engine's decisions share the
    /// single writer and its batching). After `close()` `done` is invoked at once with an error.
    void submit(WriteWork work, WriteCallback done);
    /// Thread-safe: stores `events` and runs `work` in one transaction (all or nothing), e.g. a
    /// batch pulled from the session archive together with the position it was pulled up to.
    /// `done` gets the error (empty when committed) and how many events were new; the new ones
    /// then go to the stored hook like appended events.
    void append_all(std::vector<core::Event> events, WriteWork work, std::function<void(std::string error, std::size_t stored)> done);
    /// Commits everything queued so far, then stops the writer. Idempotent.
    void close();

    /// Called on the journal's syncing (or writer) thread, once the commit is durable, with each
    /// newly stored event (not duplicates) and its inbox id, in id order: the hand-off to the
    /// dispatcher. Set before appending.
    using StoredHook = std::function<void(std::int64_t, core::Event&&)>;
    void on_stored(StoredHook hook);

private:
    struct Pending {
        core::Event event;
        std::string event_json;  ///< `encode_event(event)`, made by the appending thread
        AppendCallback done;
        WriteWork work;          ///< set for a write job (then `event` is unused)
        WriteCallback work_done;
        std::vector<core::Event> events; ///< append_all: stored with `work`, in the same transaction
        std::vector<std::string> events_json;
        std::function<void(std::string, std::size_t)> all_done;
        std::vector<AppendOutcome> event_outcomes;
    };
    class Writer;
    /// A committed batch waiting for the sync that makes it durable, then for its answers.
    struct Committed {
        std::vector<Pending> batch;
        std::vector<AppendOutcome> outcomes;
        StoredHook hook;
    };

    bool syncing() const { return options_.durability == Durability::full; }
    void run();
    void run_syncs();
    std::string sync_wal();
    void deliver(Committed& c, const std::string& sync_error);
    void run_checkpoints();
    void catch_up_wal(); ///< writer thread, between batches
    void record_all(Pending& p, std::int64_t received_ms); ///< writer thread: `p.events`

    Options options_;
    std::unique_ptr<Writer> writer_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Pending> queue_;
    StoredHook stored_hook_; ///< under mutex_
    bool closing_ = false;
    std::size_t uncheckpointed_ = 0; ///< events committed since the last checkpoint (under mutex_)
    bool checkpointer_stop_ = false;  ///< under mutex_
    bool wal_catch_up_ = false;       ///< under mutex_: set by the checkpointer, done by the writer
    bool wal_restarted_ = false;      ///< under mutex_: reported with the next `on_wal`
    bool catch_up_failing_ = false;   ///< writer thread only: its failure is logged once
    std::condition_variable checkpoint_cv_;
    std::thread thread_;
    std::mutex sync_mutex_;
    std::condition_variable sync_cv_;
    std::vector<Committed> unsynced_; ///< under sync_mutex_, in commit order
    bool writer_done_ = false;        ///< under sync_mutex_
    std::string wal_path_;
    int wal_fd_ = -1; ///< syncing thread only
    std::thread syncer_;
    std::thread checkpointer_;
};

} // namespace qunbot::storage
