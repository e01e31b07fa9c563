#include "bot/archive.hpp"

#include "adapters/media/qr.hpp"
#include "adapters/wecom/archive_message.hpp"
#include "adapters/wecom/finance_sdk.hpp"
#include "bot/core/thread_name.hpp"
#include "bot/metrics.hpp"
#include "storage/archive_state.hpp"
#include "storage/database.hpp"
#include "storage/journal.hpp"

#include <SQLiteCpp/Database.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

namespace qunbot::bot {

core::Result<std::unique_ptr<wecom::FinanceSdk>> open_archive_sdk(const ArchiveConfig& config, const std::string& corp_id)
{
    auto sdk = wecom::FinanceSdk::load(config.library);
    if (!sdk) return sdk.error();
    if (auto st = (*sdk)->init(corp_id, config.secret); !st) return st.error();
    return std::move(*sdk);
}

struct Archive::Impl {
    Impl(storage::Journal& j, Registry& m, Options o)
        : journal(j), metrics(m), opts(std::move(o)),
          pull_seconds(m.histogram("qunbot_archive_pull_seconds", "Time of one GetChatData call", {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
          lag_seconds(m.gauge("qunbot_archive_lag_seconds", "Age of the newest archived message stored, at the last pull")),
          stored_total(m.counter("qunbot_archive_messages_total", "Archived messages stored as events"))
    {
        if (!opts.now_ms) {
            opts.now_ms = [] {
                return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
            };
        }
    }

    storage::Journal& journal;
    Registry& metrics;
    Options opts;
    Histogram& pull_seconds;
    Gauge& lag_seconds;
    Counter& stored_total;
    std::unique_ptr<wecom::FinanceSdk> sdk;
    wecom::ArchiveKeys keys;
    std::unique_ptr<SQLite::Database> reader; // the pulling thread's
    std::mutex mutex;
    std::condition_variable cv;
    bool woken = false;
    bool stopping = false;
    std::thread thread;
    std::mutex pull_mutex; // one pull at a time (thread, tests)

    void error_metric(const std::string& code)
    {
        metrics.counter("qunbot_archive_errors_total", "Session-archive pulls that stopped on an error, by code", {{"code", code}}).inc();
    }

    std::string write(storage::WriteWork work)
    {
        std::promise<std::string> done;
        auto f = done.get_future();
        journal.submit(std::move(work), [&done](std::string e) { done.set_value(std::move(e)); });
        return f.get();
    }

    void note(const std::string& error)
    {
        const auto now = opts.now_ms();
        const auto err = write([tenant = opts.tenant, error, now](SQLite::Database& db) { storage::note_archive_pull(db, tenant, error, now); });
        if (!err.empty()) spdlog::error("archive: could not record the pull: {}", err);
    }

    core::Result<std::size_t> pull()
    {
        std::lock_guard lock(pull_mutex);
        std::size_t stored = 0;
        auto seq = storage::archive_position(*reader, opts.tenant).seq;
        for (;;) {
            const auto started = std::chrono::steady_clock::now();
            auto data = sdk->chat_data(seq, opts.config.batch, opts.config.timeout_s);
            pull_seconds.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
            if (!data) return fail(data.error());
            auto records = wecom::parse_chat_data(*data);
            if (!records) return fail(records.error());
            if (records->empty()) break;
            std::vector<core::Event> events;
            std::uint64_t last = seq;
            std::int64_t newest = 0;
            std::optional<core::Error> stop;
            for (const auto& r : *records) {
                auto key = keys.random_key(r.publickey_ver, r.encrypt_random_key);
                if (!key) {
                    stop = key.error();
                    break;
                }
                auto plain = sdk->decrypt(*key, r.encrypt_chat_msg);
                if (!plain) {
                    stop = plain.error();
                    break;
                }
                auto e = wecom::map_archive_message(*plain, wecom::ParseContext{opts.app, opts.tenant});
                if (!e) {
                    // Kept, not dropped: an unreadable message is stored raw under its seq.
                    core::Event raw;
                    raw.kind = core::EventKind::unknown;
                    raw.platform = "wecom";
                    raw.app = opts.app;
                    raw.tenant = opts.tenant;
                    raw.dedup_key = "archive:seq:" + std::to_string(r.seq);
                    raw.raw_type = "archive/unreadable";
                    raw.payload = *plain;
                    e = std::move(raw);
                }
                if (opts.config.scan_qr && e->message_type == "image" && !e->group_id.empty()) scan_qr(*e);
                newest = std::max(newest, e->time * 1000);
                metrics.counter("qunbot_archive_records_total", "Archived records pulled, by message type",
                                {{"type", e->raw_type.starts_with("archive/") ? e->raw_type.substr(8) : e->raw_type}})
                    .inc();
                events.push_back(std::move(*e));
                last = r.seq;
            }
            if (!events.empty()) {
                const auto n = static_cast<std::int64_t>(events.size());
                const auto now = opts.now_ms();
                std::promise<std::pair<std::string, std::size_t>> done;
                auto f = done.get_future();
                journal.append_all(std::move(events),
                                   [tenant = opts.tenant, last, n, newest, now](SQLite::Database& db) {
                                       storage::advance_archive(db, tenant, last, n, newest, now);
                                   },
                                   [&done](std::string error, std::size_t fresh) { done.set_value({std::move(error), fresh}); });
                const auto [error, fresh] = f.get();
                if (!error.empty()) return fail(core::make_error("archive_store", "storing archived messages failed: " + error));
                stored += fresh;
                stored_total.inc(fresh);
                seq = last;
                if (newest > 0) lag_seconds.set((now - newest) / 1000);
            }
            if (stop) return fail(*stop);
            if (records->size() < opts.config.batch) break;
        }
        note("");
        return stored;
    }

    // Group images: fetch the bytes (chunked, capped) and record any QR code's contents as the
    // attribute "qr" (one per line), or why it could not be read as "qr_error".
    void scan_qr(core::Event& e)
    {
        const auto id = std::string(e.attribute("sdkfileid"));
        if (id.empty()) return;
        auto bytes = sdk->media(id, opts.config.media_max_bytes, opts.config.timeout_s);
        if (!bytes) {
            e.attributes.emplace_back("qr_error", bytes.error().code);
            return;
        }
        auto codes = media::find_qr_codes(*bytes);
        if (!codes) {
            e.attributes.emplace_back("qr_error", codes.error().code);
            return;
        }
        std::string joined;
        for (const auto& c : *codes) joined += (joined.empty() ? "" : "\n") + c;
        if (!joined.empty()) {
            e.attributes.emplace_back("qr", joined);
            metrics.counter("qunbot_archive_qr_codes_total", "Group images with a QR code").inc();
        }
    }

    core::Error fail(const core::Error& e)
    {
        error_metric(e.code);
        spdlog::error("archive: pull stopped: {}", e.message);
        note(e.message);
        return e;
    }

    void run()
    {
        for (;;) {
            try {
                (void)pull();
            } catch (const std::exception& e) {
                spdlog::error("archive: {}", e.what());
            }
            std::unique_lock lock(mutex);
            cv.wait_for(lock, std::chrono::milliseconds(opts.config.poll_ms), [this] { return stopping || woken; });
            woken = false;
            if (stopping) return;
        }
    }
};

Archive::Archive(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Archive::~Archive() { stop(); }

core::Result<std::unique_ptr<Archive>> Archive::create(storage::Journal& journal, Registry& metrics, Options options)
{
    auto impl = std::make_unique<Impl>(journal, metrics, std::move(options));
    for (const auto& [version, file] : impl->opts.config.private_keys) {
        std::ifstream in(file, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        if (!in && !in.eof()) return core::make_error("archive_key", "cannot read the archive private key file " + file);
        if (auto st = impl->keys.add(version, ss.str()); !st) return core::make_error(st.error().code, file + ": " + st.error().message);
    }
    auto sdk = open_archive_sdk(impl->opts.config, impl->opts.tenant);
    if (!sdk) return sdk.error();
    impl->sdk = std::move(*sdk);
    impl->reader = storage::open_for_reading(impl->opts.database);
    return std::unique_ptr<Archive>(new Archive(std::move(impl)));
}

void Archive::start()
{
    impl_->thread = std::thread([impl = impl_.get()] {
        core::name_this_thread("qb-archive");
        impl->run();
    });
}

void Archive::wake()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->woken = true;
    }
    impl_->cv.notify_all();
}

void Archive::stop()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->cv.notify_all();
    if (impl_->thread.joinable()) impl_->thread.join();
}

core::Result<std::size_t> Archive::pull() { return impl_->pull(); }

} // namespace qunbot::bot
