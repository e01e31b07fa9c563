#pragma once
/// \file
/// The inbox journal: the durable record of every accepted event, and the single SQLite writer.
/// `append` queues an event; a dedicated thread commits whatever has queued up in one
/// transaction ("group commit"), so N concurrent callbacks cost one fsync, then reports each
/// outcome. The member activity log and the group directory are written in the same
/// transaction, so an event is either fully recorded or not at all. WAL checkpoints run on a
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

/// Called on the writer thread once the event's fate is durable; must not block.
using AppendCallback = std::function<void(AppendOutcome)>;

/// A write run inside the writer's next transaction. It may run twice (a batch that fails is
/// retried item by item), so it must only write, from data it owns. Throws on failure.
using WriteWork = std::function<void(SQLite::Database&)>;
/// Called on the writer thread when the work is committed (empty) or failed (the error).
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

    /// Called on the writer thread, after the commit, with each newly stored event (not
    /// duplicates) and its inbox id: the hand-off to the dispatcher. Set before appending.
    using StoredHook = std::function<void(std::int64_t, core::Event&&)>;
    void on_stored(StoredHook hook);

private:
    struct Pending {
        core::Event event;
        AppendCallback done;
        WriteWork work;          ///< set for a write job (then `event` is unused)
        WriteCallback work_done;
        std::vector<core::Event> events; ///< append_all: stored with `work`, in the same transaction
        std::function<void(std::string, std::size_t)> all_done;
        std::vector<AppendOutcome> event_outcomes;
    };
    class Writer;

    void run();
    void run_checkpoints();

    Options options_;
    std::unique_ptr<Writer> writer_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Pending> queue_;
    StoredHook stored_hook_; ///< under mutex_
    bool closing_ = false;
    std::size_t uncheckpointed_ = 0; ///< events committed since the last checkpoint (under mutex_)
    bool checkpointer_stop_ = false;  ///< under mutex_
    std::condition_variable checkpoint_cv_;
    std::thread thread_;
    std::thread checkpointer_;
};

} // namespace qunbot::storage
