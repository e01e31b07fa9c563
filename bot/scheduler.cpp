#include "bot/scheduler.hpp"

#include "bot/core/thread_name.hpp"
#include "bot/metrics.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "storage/journal.hpp"
#include "storage/schedule_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <spdlog/spdlog.h>

#include <future>
#include <map>

namespace qunbot::bot {

namespace {

std::int64_t system_now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr std::size_t max_slots_per_tick = 100'000; // a minute-cron over ~70 days of downtime

} // namespace

struct Scheduler::Impl {
    Impl(storage::Journal& j, Registry& m, Options o)
        : journal(j), opts(std::move(o)),
          fired(m.counter("qunbot_schedule_slots_total", "Schedule slots, by outcome", {{"status", "fired"}})),
          skipped(m.counter("qunbot_schedule_slots_total", "Schedule slots, by outcome", {{"status", "skipped"}})),
          planned_actions(m.counter("qunbot_schedule_actions_total", "Actions planned by schedules")),
          draws_done(m.counter("qunbot_draws_drawn_total", "Draw rounds drawn at their closing time")),
          plan_seconds(m.histogram("qunbot_schedule_plan_seconds", "Time to plan one slot over its groups",
                                   {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5}))
    {
        if (!opts.now_ms) opts.now_ms = system_now_ms;
        reader = storage::open_for_reading(opts.database);
    }

    storage::Journal& journal;
    Options opts;
    Counter& fired;
    Counter& skipped;
    Counter& planned_actions;
    Counter& draws_done;
    Histogram& plan_seconds;
    std::unique_ptr<SQLite::Database> reader; // used by the ticking thread only
    std::mutex mutex;
    std::condition_variable cv;
    std::shared_ptr<const rules::RuleSet> rules; // under mutex
    bool changed = false;                        // under mutex
    bool stopping = false;                       // under mutex
    std::thread thread;
    std::mutex tick_mutex; // one tick at a time (thread, tests)
    std::map<std::string, std::pair<std::string, std::int64_t>> since; // rule → (timing, since); under tick_mutex

    std::string write(storage::WriteWork work)
    {
        auto done = std::make_shared<std::promise<std::string>>();
        auto result = done->get_future();
        journal.submit(std::move(work), [done](std::string error) { done->set_value(std::move(error)); });
        return result.get();
    }

    std::shared_ptr<const rules::RuleSet> current()
    {
        std::lock_guard lock(mutex);
        return rules;
    }

    void run()
    {
        for (;;) {
            try {
                (void)tick();
            } catch (const std::exception& e) {
                spdlog::error("scheduler: {}", e.what());
            }
            std::unique_lock lock(mutex);
            if (stopping) return;
            std::int64_t wait = 60'000;
            lock.unlock();
            try {
                if (auto next = next_due()) wait = std::clamp<std::int64_t>(*next - opts.now_ms(), 0, 60'000);
            } catch (const std::exception& e) {
                spdlog::error("scheduler: {}", e.what());
            }
            lock.lock();
            cv.wait_for(lock, std::chrono::milliseconds(wait), [this] { return stopping || changed; });
            changed = false;
            if (stopping) return;
        }
    }

    std::optional<std::int64_t> next_due()
    {
        auto set = current();
        if (!set) return std::nullopt;
        const auto now = opts.now_ms();
        std::optional<std::int64_t> best;
        for (const auto& r : set->rules) {
            if (r.trigger != rules::Trigger::schedule) continue;
            if (auto s = rules::next_slot(r.schedule, now - 1)) {
                if (!best || s->at_ms < *best) best = s->at_ms;
            }
        }
        for (const auto& d : set->draws) {
            if (!d.has_opens) continue;
            if (auto s = rules::next_slot(d.opens, now - 1)) {
                if (!best || s->at_ms < *best) best = s->at_ms;
            }
        }
        if (auto c = storage::next_close_ms(*reader)) {
            const auto at = *c + opts.close_grace_ms;
            if (!best || at < *best) best = at;
        }
        return best;
    }

    // The slots of `spec` (kept under `key`) due at `now`, oldest first; `catch_up` is the index
    // of a missed slot that still fires under `missed: catch_up` (due.size() when none).
    std::vector<rules::Slot> due_slots(const std::string& key, const rules::ScheduleSpec& spec, std::int64_t now, std::size_t& catch_up)
    {
        std::vector<rules::Slot> due;
        const auto timing = spec.text + "|" + spec.tz;
        auto known = since.find(key);
        if (known == since.end() || known->second.first != timing) {
            std::int64_t from = 0;
            const auto err = write([&from, key, timing, now](SQLite::Database& db) { from = storage::note_schedule(db, key, timing, now); });
            if (!err.empty()) {
                spdlog::error("scheduler: {}: {}", key, err);
                catch_up = 0;
                return due;
            }
            known = since.insert_or_assign(key, std::make_pair(timing, from)).first;
        }
        std::int64_t from = known->second.second;
        if (auto last = storage::last_slot_ms(*reader, key); last && *last > from) from = *last;
        for (auto s = rules::next_slot(spec, from); s && s->at_ms <= now && due.size() < max_slots_per_tick; s = rules::next_slot(spec, s->at_ms)) {
            due.push_back(std::move(*s));
        }
        // On time: fire. Missed (qunbot was down or the clock jumped): skip, or with catch_up
        // fire the latest one still within grace.
        catch_up = due.size();
        if (!due.empty() && spec.missed == rules::ScheduleSpec::Missed::catch_up && now - due.back().at_ms <= spec.grace_ms) {
            catch_up = due.size() - 1;
        }
        return due;
    }

    // Opens the rounds of draws whose `opens` slot came, and draws rounds whose time is up.
    void tick_draws(const rules::RuleSet& set, std::int64_t now, std::vector<Fired>& out)
    {
        for (const auto& draw : set.draws) {
            if (!draw.has_opens) continue;
            const auto key = "draw/" + draw.id; // rule ids cannot contain '/': no clash
            std::size_t catch_up = 0;
            const auto due = due_slots(key, draw.opens, now, catch_up);
            for (std::size_t i = 0; i < due.size(); ++i) {
                const auto& s = due[i];
                Fired f{key, s.key, s.at_ms, now - s.at_ms <= opts.on_time_ms || i == catch_up ? "fired" : "skipped", 0, 0};
                std::vector<storage::ScheduleTarget> targets;
                if (f.status == "fired") {
                    for (auto& t : storage::schedule_targets(*reader)) {
                        if (rules::selects(set, draw, t.group)) targets.push_back(std::move(t));
                    }
                }
                bool inserted = false;
                const auto offset = opts.utc_offset_s;
                const auto on_time = opts.on_time_ms;
                const auto err = write([&inserted, &f, &draw, targets, key, slot = s, now, offset, on_time, status = f.status](SQLite::Database& db) {
                    storage::SlotRecord record{key, slot.key, slot.at_ms, now, status, static_cast<std::int64_t>(targets.size()), 0};
                    inserted = storage::record_slot(db, record, {}, now);
                    if (!inserted || status != "fired") return;
                    // On time, the round opens at the slot's own time, so `closes: {after: 1h}`
                    // of a 20:00 draw is 21:00 sharp; a late catch-up opens now.
                    const auto opened = now - slot.at_ms <= on_time ? slot.at_ms : now;
                    for (const auto& t : targets) {
                        if (storage::open_round(db, draw, t.tenant, t.app, t.group, slot.key, opened, offset)) ++f.groups;
                    }
                    f.actions = f.groups;
                });
                if (!err.empty()) {
                    spdlog::error("scheduler: draw {} slot {}: {}", draw.id, s.key, err);
                    break;
                }
                if (!inserted) f.status = "already";
                else if (f.status == "fired") {
                    fired.inc();
                    spdlog::info("draw {}: slot {} opened {} round(s)", draw.id, s.key, f.groups);
                    if (f.groups > 0 && opts.on_actions) opts.on_actions();
                } else {
                    skipped.inc();
                    spdlog::warn("draw {}: opening slot {} missed by {} s, skipped", draw.id, s.key, (now - s.at_ms) / 1000);
                }
                out.push_back(std::move(f));
            }
        }
        // A little after the closing time, so entries sent just before it are in.
        for (const auto id : storage::rounds_due(*reader, now - opts.close_grace_ms)) {
            std::string draw_id;
            storage::DrawResult r;
            const auto offset = opts.utc_offset_s;
            const auto err = write([&r, &draw_id, &set, id, now, offset](SQLite::Database& db) {
                const auto round = storage::find_round(db, id);
                if (!round) return;
                draw_id = round->draw_id;
                r = storage::draw_round(db, set.find_draw(round->draw_id), id, now, offset, "time");
            });
            if (!err.empty()) {
                spdlog::error("scheduler: drawing round {}: {}", id, err);
                continue;
            }
            if (!r.drawn) continue;
            draws_done.inc();
            spdlog::info("draw {} round {}: drawn at its closing time, {} entries, {} winner(s), {}", draw_id, id, r.entries, r.winners,
                         rules::format_fen(r.total_fen));
            out.push_back(Fired{"draw/" + draw_id, "round " + std::to_string(id), now, "drawn", 1, 1});
            if (opts.on_actions) opts.on_actions();
        }
    }

    std::vector<Fired> tick()
    {
        std::lock_guard tick_lock(tick_mutex);
        std::vector<Fired> out;
        auto set = current();
        if (!set) return out;
        const auto now = opts.now_ms();
        std::vector<storage::ScheduleTarget> targets;
        bool targets_loaded = false;
        for (const auto& rule : set->rules) {
            if (rule.trigger != rules::Trigger::schedule) continue;
            std::size_t catch_up = 0;
            const auto due = due_slots(rule.id, rule.schedule, now, catch_up);
            std::string err;
            for (std::size_t i = 0; i < due.size(); ++i) {
                const auto& s = due[i];
                const bool on_time = now - s.at_ms <= opts.on_time_ms;
                Fired f{rule.id, s.key, s.at_ms, on_time || i == catch_up ? "fired" : "skipped", 0, 0};
                std::vector<core::Action> actions;
                if (f.status == "fired") {
                    if (!targets_loaded) {
                        targets = storage::schedule_targets(*reader);
                        targets_loaded = true;
                    }
                    const auto started = std::chrono::steady_clock::now();
                    actions = storage::plan_slot(*set, rule, targets, s.key, s.at_ms, opts.utc_offset_s, f.groups);
                    plan_seconds.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
                    f.actions = actions.size();
                }
                bool inserted = false;
                storage::SlotRecord record{rule.id, s.key, s.at_ms, now, f.status, static_cast<std::int64_t>(f.groups), 0};
                err = write([&inserted, record, actions = std::move(actions), now](SQLite::Database& db) {
                    inserted = storage::record_slot(db, record, actions, now);
                });
                if (!err.empty()) {
                    // Nothing was recorded: the next tick tries this slot again.
                    spdlog::error("scheduler: rule {} slot {}: {}", rule.id, s.key, err);
                    break;
                }
                if (!inserted) {
                    f.status = "already";
                } else if (f.status == "fired") {
                    fired.inc();
                    planned_actions.inc(f.actions);
                    spdlog::info("schedule {}: slot {} fired for {} group(s), {} action(s)", rule.id, s.key, f.groups, f.actions);
                    if (f.actions > 0 && opts.on_actions) opts.on_actions();
                } else {
                    skipped.inc();
                    spdlog::warn("schedule {}: slot {} missed by {} s, skipped (missed: {})", rule.id, s.key, (now - s.at_ms) / 1000,
                                 rule.schedule.missed == rules::ScheduleSpec::Missed::skip ? "skip" : "catch_up, beyond grace");
                }
                out.push_back(std::move(f));
            }
        }
        tick_draws(*set, now, out);
        return out;
    }
};

Scheduler::Scheduler(storage::Journal& journal, Registry& metrics, Options options)
    : impl_(std::make_unique<Impl>(journal, metrics, std::move(options)))
{
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::install(std::shared_ptr<const rules::RuleSet> rules)
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->rules = std::move(rules);
        impl_->changed = true;
    }
    impl_->cv.notify_all();
}

void Scheduler::start()
{
    impl_->thread = std::thread([impl = impl_.get()] {
        core::name_this_thread("qb-scheduler");
        impl->run();
    });
}

void Scheduler::stop()
{
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->cv.notify_all();
    if (impl_->thread.joinable()) impl_->thread.join();
}

std::vector<Scheduler::Fired> Scheduler::tick() { return impl_->tick(); }
std::optional<std::int64_t> Scheduler::next_due_ms() { return impl_->next_due(); }

Scheduler::Fired run_schedule_now(const std::string& database, const rules::RuleSet& rules, const rules::Rule& rule,
                                  const std::string& run_id, std::int64_t now_ms, int utc_offset_s)
{
    auto db = storage::open_for_writing(database, storage::Durability::full);
    Scheduler::Fired f{rule.id, "manual:" + run_id, now_ms, "manual", 0, 0};
    const auto targets = storage::schedule_targets(*db);
    const auto actions = storage::plan_slot(rules, rule, targets, f.slot, now_ms, utc_offset_s, f.groups);
    f.actions = actions.size();
    SQLite::Transaction tx(*db);
    if (!storage::record_slot(*db, {rule.id, f.slot, now_ms, now_ms, "manual", static_cast<std::int64_t>(f.groups), 0}, actions, now_ms)) {
        f.status = "already";
        f.actions = 0;
    }
    tx.commit();
    return f;
}

} // namespace qunbot::bot
