#include "bot/dispatcher.hpp"

#include "bot/metrics.hpp"
#include "rules/engine.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "storage/journal.hpp"
#include "storage/rule_state.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <SQLiteCpp/Database.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

namespace qunbot::bot {

namespace net = boost::asio;

namespace {

std::int64_t system_now_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// One read connection per thread: SQLite connections are not shared between threads.
storage::StateReader& thread_reader(const std::string& path)
{
    thread_local std::unique_ptr<storage::StateReader> reader;
    thread_local std::string reader_path;
    if (!reader || reader_path != path) {
        reader = std::make_unique<storage::StateReader>(path);
        reader_path = path;
    }
    return *reader;
}

struct Job {
    bool flush = false;
    std::int64_t event_id = 0;
    core::Event event;
    std::string tenant;
    std::string group;
    int attempts = 0;
};

struct Lane {
    explicit Lane(net::io_context& ioc, std::string k) : strand(net::make_strand(ioc)), key(std::move(k)) {}
    net::strand<net::io_context::executor_type> strand;
    std::string key;
    std::deque<Job> queue; // under Impl::mutex
    bool busy = false;     // under Impl::mutex
};

std::string lane_key(const std::string& tenant, const std::string& group, const std::string& contact)
{
    // 1:1 events have no group: their lane is the contact, so one customer's events stay ordered.
    return group.empty() ? tenant + "\x1f" + "1:1" + "\x1f" + contact : tenant + "\x1f" + group;
}

// Enters each candidate into the open rounds of its draw in this group (inside the decision's
// transaction, so a replayed event enters nobody twice: entries are unique per round).
void enter_draws(SQLite::Database& db, const rules::RuleSet& set, const std::vector<rules::DrawEntry>& entries, const std::string& tenant,
                 const std::string& group, std::int64_t now, int offset, Registry& metrics)
{
    if (entries.empty()) return;
    for (const auto& round : storage::open_rounds(db, tenant, group)) {
        for (const auto& e : entries) {
            if (e.draw_id != round.draw_id) continue;
            // A message sent before the close but processed after it still counts: the
            // platform's timestamp decides (never later than now, whatever the sender's clock).
            const auto at = e.at_ms > 0 ? std::min(now, e.at_ms) : now;
            const auto r = storage::enter_round(db, set.find_draw(e.draw_id), round.id, e.member, e.via, at, offset);
            static constexpr const char* results[] = {"entered", "already", "rejected", "closed"};
            metrics.counter("qunbot_draw_entries_total", "Draw entry attempts by result", {{"result", results[static_cast<int>(r.status)]}}).inc();
            if (r.status == storage::EntryResult::Status::rejected) {
                spdlog::info("draw {} round {}: {} not entered: {}", round.draw_id, round.id, e.member, r.reason);
            } else if (r.drew) {
                spdlog::info("draw {} round {}: drawn on reaching {} entries", round.draw_id, round.id, round.close_entries);
            }
        }
    }
}

bool is_rule_file_name(std::string_view name)
{
    return !name.starts_with(".") && (name.ends_with(".yaml") || name.ends_with(".yml"));
}

} // namespace

struct Dispatcher::Impl : std::enable_shared_from_this<Dispatcher::Impl> {
    Impl(net::io_context& i, storage::Journal& j, Registry& m, Options opt)
        : ioc(i), journal(j), metrics(m), o(std::move(opt)),
          reloads_ok(m.counter("qunbot_rules_reloads_total", "Rule reloads by result", {{"result", "ok"}})),
          reloads_failed(m.counter("qunbot_rules_reloads_total", "Rule reloads by result", {{"result", "error"}})),
          rules_loaded(m.gauge("qunbot_rules_loaded", "Rules in the running rule set")),
          rules_errors(m.gauge("qunbot_rules_errors", "Errors in the rule files at the last reload (0: clean)")),
          decisions(m.counter("qunbot_engine_events_total", "Events evaluated by the rule engine")),
          actions(m.counter("qunbot_engine_actions_total", "Actions decided and written to the outbox")),
          failures(m.counter("qunbot_dispatch_failures_total", "Evaluations or decision commits that failed and were retried")),
          flushes(m.counter("qunbot_welcome_batches_flushed_total", "Welcome batches whose window closed")),
          queued(m.gauge("qunbot_dispatch_queued", "Events waiting in the per-group lanes"))
    {
        if (!o.now_ms) o.now_ms = system_now_ms;
        for (const auto& a : o.apps) {
            if (a.name == o.rules.notify.app) notify_tenant = a.corp_id;
        }
    }

    net::io_context& ioc;
    storage::Journal& journal;
    Registry& metrics;
    Options o;
    std::string notify_tenant;
    Counter& reloads_ok;
    Counter& reloads_failed;
    Gauge& rules_loaded;
    Gauge& rules_errors;
    Counter& decisions;
    Counter& actions;
    Counter& failures;
    Counter& flushes;
    Gauge& queued;

    mutable std::mutex rules_mutex;
    std::shared_ptr<const rules::RuleSet> current = std::make_shared<const rules::RuleSet>();
    std::mutex reload_mutex; // one reload at a time

    std::mutex mutex; // lanes, draining, in-flight ids, timers
    std::unordered_map<std::string, std::shared_ptr<Lane>> lanes;
    bool draining = false;
    std::function<void()> drained;
    std::set<std::int64_t> in_flight;
    std::int64_t highest_seen = 0;
    std::int64_t saved_cursor = -1;
    std::set<std::shared_ptr<net::steady_timer>> timers;

    int wake_fd = -1;
    std::thread watcher;

    int utc_offset_s() const { return o.rules.utc_offset_minutes * 60; }

    std::shared_ptr<const rules::RuleSet> rules_now() const
    {
        std::lock_guard lock(rules_mutex);
        return current;
    }

    void install(std::shared_ptr<const rules::RuleSet> set)
    {
        rules_loaded.set(static_cast<std::int64_t>(set->rules.size()));
        if (o.on_install) o.on_install(set);
        std::lock_guard lock(rules_mutex);
        current = std::move(set);
    }

    // ---- lanes ---------------------------------------------------------------------------

    void enqueue(Job job)
    {
        const auto key = lane_key(job.tenant, job.group, job.event.subject.empty() ? job.event.actor : job.event.subject);
        std::shared_ptr<Lane> lane;
        {
            std::lock_guard lock(mutex);
            if (draining) return; // stays unprocessed in the inbox; replayed at the next start
            auto& slot = lanes[key];
            if (!slot) slot = std::make_shared<Lane>(ioc, key);
            lane = slot;
            if (job.event_id > 0) {
                in_flight.insert(job.event_id);
                highest_seen = std::max(highest_seen, job.event_id);
            }
            lane->queue.push_back(std::move(job));
            queued.add(1);
            if (lane->busy) return;
            lane->busy = true;
        }
        net::post(lane->strand, [self = shared_from_this(), lane] { self->step(lane); });
    }

    // Runs on the lane's strand; takes the next job, or retires the lane.
    void step(const std::shared_ptr<Lane>& lane)
    {
        Job job;
        {
            std::lock_guard lock(mutex);
            if (lane->queue.empty() || draining) {
                lane->busy = false;
                if (lane->queue.empty()) {
                    if (auto it = lanes.find(lane->key); it != lanes.end() && it->second == lane) lanes.erase(it);
                }
                check_drained_locked();
                return;
            }
            job = std::move(lane->queue.front());
            lane->queue.pop_front();
            queued.add(-1);
        }
        process(std::move(job), lane);
    }

    void check_drained_locked()
    {
        if (!draining || !drained) return;
        for (const auto& [k, l] : lanes) {
            if (l->busy) return;
        }
        auto done = std::move(drained);
        drained = nullptr;
        const auto cursor = watermark_locked();
        // The cursor write is the last thing; `done` runs once it is durable (or failed).
        journal.submit([cursor](SQLite::Database& db) { storage::set_dispatch_cursor(db, cursor); },
                       [done](std::string error) {
                           if (!error.empty()) spdlog::warn("dispatcher: could not save the recovery cursor: {}", error);
                           done();
                       });
    }

    std::int64_t watermark_locked() const { return in_flight.empty() ? highest_seen : *in_flight.begin() - 1; }

    void process(Job job, std::shared_ptr<Lane> lane)
    {
        const auto set = rules_now();
        const auto now = o.now_ms();
        rules::Decision d;
        std::string tenant = job.tenant;
        try {
            auto& reader = thread_reader(o.database);
            if (job.flush) {
                auto state = reader.load_group(job.tenant, job.group, *set, now, utc_offset_s());
                d = rules::flush_due(*set, state);
                // A timer that fired a little early (clock adjustments) re-arms for what is left.
                for (const auto& b : state.batches) {
                    if (b.due_ms > now) arm_timer(b.tenant, b.group_id, b.due_ms);
                }
                for (const auto& t : d.trace) {
                    if (t.outcome == rules::Trace::Outcome::fired) flushes.inc();
                    else if (t.outcome == rules::Trace::Outcome::no_effect) spdlog::warn("welcome batch of rule {}: {}", t.rule_id, t.detail);
                }
            } else if (rules::Trigger t{}; rules::trigger_for(job.event.kind, t) && set->per_trigger[static_cast<std::size_t>(t)] == 0 &&
                                           !(t == rules::Trigger::member_left && set->any_batch)) {
                // No rule listens to this kind of event, and there is no welcome to amend.
                decisions.inc();
            } else {
                auto state = reader.load(job.event, *set, now, utc_offset_s());
                rules::EvaluateOptions eo;
                eo.cause_event_id = job.event_id;
                d = rules::evaluate(*set, job.event, state, eo);
                decisions.inc();
            }
        } catch (const std::exception& e) {
            retry(std::move(job), lane, std::string("evaluation failed: ") + e.what());
            return;
        }
        for (const auto& t : d.trace) {
            spdlog::debug("rule {}: {} {}", t.rule_id, rules::to_string(t.outcome), t.detail);
        }
        auto entries = job.flush ? std::vector<rules::DrawEntry>{} : rules::draw_entries(*set, job.event);
        const bool empty = d.actions.empty() && d.batch_upserts.empty() && d.batch_erases.empty() && d.cooldowns.empty() &&
                           d.tags.empty() && d.moderation.empty() && d.blacklist_adds.empty() && entries.empty();
        if (empty) {
            // Nothing to record: a replay after a crash would decide the same nothing.
            finish(job, lane, {});
            return;
        }
        std::int64_t cursor = 0;
        {
            std::lock_guard lock(mutex);
            cursor = watermark_locked();
        }
        auto decision = std::make_shared<rules::Decision>(std::move(d));
        const auto version = set->fingerprint;
        const auto event_id = job.event_id;
        const auto group = job.event.group_id;
        const int offset = utc_offset_s();
        const bool has_entries = !entries.empty();
        journal.submit(
            [decision, tenant, event_id, now, version, cursor, entries = std::move(entries), set, group, offset,
             &metrics = metrics](SQLite::Database& db) {
                storage::apply_decision(db, *decision, tenant, event_id, now, version);
                enter_draws(db, *set, entries, tenant, group, now, offset, metrics);
                if (cursor > 0) storage::set_dispatch_cursor(db, cursor);
            },
            [self = shared_from_this(), job = std::move(job), lane, decision, has_entries](std::string error) mutable {
                net::post(lane->strand, [self, job = std::move(job), lane, decision, has_entries, error = std::move(error)]() mutable {
                    if (!error.empty()) {
                        self->retry(std::move(job), lane, "decision commit failed: " + error);
                        return;
                    }
                    self->actions.inc(decision->actions.size());
                    for (const auto& m : decision->moderation) {
                        self->metrics
                            .counter("qunbot_moderation_decisions_total", "Strike-ladder decisions, by rule, rung and dry run",
                                     {{"rule", m.rule_id}, {"steps", m.steps}, {"dry_run", m.dry_run ? "true" : "false"}})
                            .inc();
                    }
                    // Draw entries may have drawn a round (its result message is queued).
                    if ((!decision->actions.empty() || has_entries) && self->o.on_actions) self->o.on_actions();
                    self->finish(job, lane, decision->batch_upserts);
                });
            });
    }

    void finish(const Job& job, const std::shared_ptr<Lane>& lane, const std::vector<rules::Batch>& upserts)
    {
        for (const auto& b : upserts) {
            // Only a newly opened batch needs a timer; members joining later share its deadline.
            if (!job.flush && b.origin == job.event.dedup_key) arm_timer(b.tenant, b.group_id, b.due_ms);
        }
        {
            std::lock_guard lock(mutex);
            if (job.event_id > 0) in_flight.erase(job.event_id);
        }
        step(lane);
    }

    void retry(Job job, std::shared_ptr<Lane> lane, const std::string& why)
    {
        failures.inc();
        ++job.attempts;
        const auto delay = std::chrono::milliseconds(std::min(30'000, 200 << std::min(job.attempts, 7)));
        spdlog::error("dispatcher: event {} ({}): {}; retrying in {} ms", job.event_id, job.flush ? "batch flush" : core::to_string(job.event.kind),
                      why, delay.count());
        // The job goes back to the head of its lane, so the group's order is kept.
        auto timer = std::make_shared<net::steady_timer>(lane->strand, delay);
        {
            std::lock_guard lock(mutex);
            lane->queue.push_front(std::move(job));
            queued.add(1);
            timers.insert(timer);
        }
        timer->async_wait([self = shared_from_this(), lane, timer](boost::system::error_code) {
            {
                std::lock_guard lock(self->mutex);
                self->timers.erase(timer);
            }
            self->step(lane);
        });
    }

    void arm_timer(const std::string& tenant, const std::string& group, std::int64_t due_ms)
    {
        const auto delay = std::chrono::milliseconds(std::max<std::int64_t>(0, due_ms - o.now_ms()));
        auto timer = std::make_shared<net::steady_timer>(ioc, delay);
        {
            std::lock_guard lock(mutex);
            if (draining) return;
            timers.insert(timer);
        }
        timer->async_wait([self = shared_from_this(), timer, tenant, group](boost::system::error_code ec) {
            {
                std::lock_guard lock(self->mutex);
                self->timers.erase(timer);
            }
            if (ec) return; // cancelled by drain: the batch stays stored and is re-armed at start
            Job j;
            j.flush = true;
            j.tenant = tenant;
            j.group = group;
            self->enqueue(std::move(j));
        });
    }

    // ---- reload ---------------------------------------------------------------------------

    rules::LoadResult reload(const std::string& reason, bool wait_for_save = false)
    {
        std::lock_guard guard(reload_mutex);
        auto result = rules::load_rules(o.rules.dir);
        rules_errors.set(static_cast<std::int64_t>(result.error_count()));
        if (result.ok()) {
            const auto old = rules_now();
            const bool changed = old->fingerprint != result.rules->fingerprint;
            install(result.rules);
            reloads_ok.inc();
            for (const auto& d : result.diagnostics) spdlog::warn("rules: {}", d.headline());
            if (changed) {
                spdlog::info("rules: loaded {} rule(s) and {} draw(s) from {} file(s) in {} ({}), version {}", result.rules->rules.size(),
                             result.rules->draws.size(), result.files.size(), o.rules.dir, reason, result.rules->fingerprint);
                auto saved = std::make_shared<std::promise<void>>();
                journal.submit([sources = result.sources](SQLite::Database& db) { storage::save_good_rules(db, sources); },
                               [saved](std::string error) {
                                   if (!error.empty()) spdlog::warn("rules: could not store the last good rule set: {}", error);
                                   saved->set_value();
                               });
                // At start-up the save completes before the first event, so the order is fixed.
                if (wait_for_save) saved->get_future().wait();
            }
            return result;
        }
        reloads_failed.inc();
        spdlog::error("rules: reload ({}) rejected, {} error(s); still running version {}:", reason, result.error_count(),
                      rules_now()->fingerprint);
        for (const auto& d : result.diagnostics) spdlog::error("rules: {}", d.headline());
        notify_failure(result);
        return result;
    }

    void notify_failure(const rules::LoadResult& result)
    {
        if (!o.rules.notify.enabled()) return;
        core::Action a;
        a.kind = o.rules.notify.group.empty() ? core::ActionKind::reply : core::ActionKind::post;
        a.rule_id = "qunbot.rules_reload";
        a.tenant = notify_tenant;
        a.platform = "wecom";
        a.app = o.rules.notify.app;
        a.group_id = o.rules.notify.group;
        a.target = o.rules.notify.user;
        std::string text = "qunbot: 规则文件有错误,未生效(仍在运行上一版)/ rule files rejected, previous version still running:\n";
        std::size_t shown = 0;
        for (const auto& d : result.diagnostics) {
            if (d.severity != rules::Diagnostic::Severity::error) continue;
            if (++shown > 10) {
                text += "... " + std::to_string(result.error_count() - 10) + " more\n";
                break;
            }
            text += d.headline() + "\n";
        }
        a.text = text;
        std::uint64_t h = 1469598103934665603ull;
        for (const char c : text) { h ^= static_cast<unsigned char>(c); h *= 1099511628211ull; }
        // The same broken edit reported once, however many times it is reloaded.
        a.idempotency_key = notify_tenant + "/rules-reload-failed/" + std::to_string(h);
        rules::Decision d;
        d.actions.push_back(std::move(a));
        const auto now = o.now_ms();
        journal.submit([d = std::move(d), tenant = notify_tenant, now](SQLite::Database& db) {
                           storage::apply_decision(db, d, tenant, 0, now, "");
                       },
                       [self = shared_from_this()](std::string error) {
                           if (!error.empty()) spdlog::error("rules: could not queue the reload failure notice: {}", error);
                           else if (self->o.on_actions) self->o.on_actions();
                       });
    }

    // ---- directory watch -------------------------------------------------------------------

    void start_watch()
    {
        const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) {
            spdlog::warn("rules: cannot watch {} (inotify unavailable); reload with SIGHUP or POST /admin/reload", o.rules.dir);
            return;
        }
        if (inotify_add_watch(fd, o.rules.dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE) < 0) {
            spdlog::warn("rules: cannot watch {}: {}; reload with SIGHUP or POST /admin/reload", o.rules.dir, std::strerror(errno));
            ::close(fd);
            return;
        }
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        watcher = std::thread([self = shared_from_this(), fd] { self->watch_loop(fd); });
    }

    void watch_loop(int fd)
    {
        bool pending = false;
        for (;;) {
            pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
            const int timeout = pending ? static_cast<int>(o.rules.reload_debounce_ms) : -1;
            const int n = ::poll(fds, 2, timeout);
            if (n < 0 && errno == EINTR) continue;
            if (fds[1].revents & POLLIN) break;
            if (n == 0 && pending) {
                pending = false;
                try {
                    reload("rule file changed");
                } catch (const std::exception& e) {
                    spdlog::error("rules: reload failed: {}", e.what());
                }
                continue;
            }
            if (fds[0].revents & POLLIN) {
                alignas(inotify_event) char buf[8192];
                for (;;) {
                    const auto len = ::read(fd, buf, sizeof buf);
                    if (len <= 0) break;
                    for (char* p = buf; p < buf + len;) {
                        auto* ev = reinterpret_cast<inotify_event*>(p);
                        if (ev->len > 0 && is_rule_file_name(ev->name)) pending = true;
                        p += sizeof(inotify_event) + ev->len;
                    }
                }
            }
        }
        ::close(fd);
    }

    void stop_watch()
    {
        if (wake_fd >= 0) {
            const std::uint64_t one = 1;
            [[maybe_unused]] auto w = ::write(wake_fd, &one, sizeof one);
        }
        if (watcher.joinable()) watcher.join();
        if (wake_fd >= 0) ::close(wake_fd);
        wake_fd = -1;
    }
};

Dispatcher::Dispatcher(net::io_context& ioc, storage::Journal& journal, Registry& metrics, Options options)
    : impl_(std::make_shared<Impl>(ioc, journal, metrics, std::move(options)))
{
    auto result = impl_->reload("start", true);
    if (!result.ok()) {
        // Never start blind: fall back to the last set that loaded cleanly, kept in the database.
        std::vector<std::pair<std::string, std::string>> last;
        {
            auto db = storage::open_for_reading(impl_->o.database);
            last = storage::load_good_rules(*db);
        }
        if (!last.empty()) {
            auto fallback = rules::load_rule_sources(last);
            if (fallback.ok()) {
                impl_->install(fallback.rules);
                spdlog::warn("rules: {} has errors; running the last good rule set ({} rule(s), version {}) until it is fixed",
                             impl_->o.rules.dir, fallback.rules->rules.size(), fallback.rules->fingerprint);
            }
        } else {
            spdlog::error("rules: {} has errors and no earlier good rule set is stored; running with no rules until it is fixed",
                          impl_->o.rules.dir);
        }
    }
    journal.on_stored([weak = std::weak_ptr<Impl>(impl_)](std::int64_t id, core::Event&& event) {
        auto self = weak.lock();
        if (!self) return;
        if (event.kind == core::EventKind::archive_notify) {
            // Not a rule trigger: it only says the archive has new messages to pull.
            if (self->o.on_archive_notify) self->o.on_archive_notify();
            return;
        }
        rules::Trigger t;
        if (!rules::trigger_for(event.kind, t)) return;
        Job j;
        j.event_id = id;
        j.tenant = event.tenant;
        j.group = event.group_id;
        j.event = std::move(event);
        self->enqueue(std::move(j));
    });
}

Dispatcher::~Dispatcher()
{
    impl_->journal.on_stored(nullptr);
    impl_->stop_watch();
}

void Dispatcher::start()
{
    auto& impl = *impl_;
    storage::StateReader reader(impl.o.database);
    const auto cursor = reader.dispatch_cursor();
    auto pending = reader.unprocessed(cursor);
    {
        std::lock_guard lock(impl.mutex);
        impl.highest_seen = std::max(impl.highest_seen, reader.last_event_id());
    }
    if (!pending.empty()) spdlog::info("dispatcher: replaying {} event(s) stored but not processed before the last stop", pending.size());
    for (auto& [id, event] : pending) {
        Job j;
        j.event_id = id;
        j.tenant = event.tenant;
        j.group = event.group_id;
        j.event = std::move(event);
        impl.enqueue(std::move(j));
    }
    for (const auto& b : reader.open_batches()) impl.arm_timer(b.tenant, b.group_id, b.due_ms);
    if (impl.o.rules.watch) impl.start_watch();
}

rules::LoadResult Dispatcher::reload(const std::string& reason) { return impl_->reload(reason); }

void Dispatcher::drain(std::function<void()> done)
{
    impl_->stop_watch();
    std::lock_guard lock(impl_->mutex);
    impl_->draining = true;
    for (const auto& t : impl_->timers) t->cancel();
    impl_->drained = std::move(done);
    impl_->check_drained_locked();
}

std::shared_ptr<const rules::RuleSet> Dispatcher::rules() const { return impl_->rules_now(); }

} // namespace qunbot::bot
