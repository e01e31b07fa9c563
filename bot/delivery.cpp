#include "bot/delivery.hpp"

#include "adapters/https/client.hpp"
#include "adapters/wecom/api_client.hpp"
#include "adapters/wecom/performer.hpp"
#include "bot/app_api.hpp"
#include "bot/journal_await.hpp"
#include "bot/core/rate_limiter.hpp"
#include "bot/metrics.hpp"
#include "rules/engine.hpp"
#include "storage/database.hpp"
#include "storage/journal.hpp"
#include "storage/outbox.hpp"

#include <SQLiteCpp/Database.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

namespace qunbot::bot {

namespace net = boost::asio;
using net::awaitable;
using wecom::GroupKind;
using wecom::Outcome;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t round_size = 2000; // rows read when idle: a full mass-send task's worth
constexpr std::size_t max_chat_ids = 2000; // add_msg_template chat_id_list limit (notes §4.3)

std::int64_t system_now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view status_name(Outcome::Status s)
{
    switch (s) {
    case Outcome::Status::done: return "done";
    case Outcome::Status::retry: return "failed";
    case Outcome::Status::dead: return "dead";
    case Outcome::Status::check: return "check";
    }
    return "failed";
}

} // namespace

struct AppState {
    AppConfig config;
    std::unique_ptr<https::Client> http;
    std::unique_ptr<wecom::ApiClient> api;
    std::map<std::string, std::int64_t> last_sync; ///< group → when it was last synced
};

/// One unit of work: a single row, or a mass send of several rows with the same text.
struct Job {
    AppState* app = nullptr;
    std::vector<storage::OutboxRow> rows;
    wecom::Context context;
    wecom::Route route;
    bool mass = false;
    bool aibot = false; ///< an AI bot's answer through a message's response_url
    std::int64_t day = 0;
};

struct Delivery::Impl : std::enable_shared_from_this<Delivery::Impl> {
    Impl(net::io_context& io, storage::Journal& j, Registry& m, Options opts)
        : ioc(io), journal(j), metrics(m), o(std::move(opts)), strand(net::make_strand(io)), waker(strand),
          message_limiter({{60'000, o.config.message_per_member_minute}, {3'600'000, o.config.message_per_member_hour}}),
          robot_limiter({{60'000, o.config.webhook_per_minute}}), api_limiter({{60'000, o.config.api_per_minute}}),
          concurrency(o.config.concurrency),
          in_flight_gauge(m.gauge("qunbot_delivery_in_flight", "Actions being performed now")),
          concurrency_gauge(m.gauge("qunbot_delivery_concurrency", "Current cap on calls in flight (lowered on 45033)")),
          deferred(m.counter("qunbot_delivery_deferred_total", "Actions postponed by a rate limit, quota pause or API pause")),
          token_fetches(m.counter("qunbot_wecom_token_fetches_total", "access_token fetches (gettoken)"))
    {
        if (!o.now_ms) o.now_ms = system_now_ms;
        concurrency_gauge.set(concurrency);
        const auto& c = o.config;
        const std::pair<const char*, unsigned> limits[] = {
            {"message_per_member_minute", c.message_per_member_minute},
            {"message_per_member_hour", c.message_per_member_hour},
            {"webhook_per_minute", c.webhook_per_minute},
            {"mass_send_daily_quota", c.mass_send_daily_quota},
            {"api_per_minute", c.api_per_minute},
            {"concurrency", c.concurrency},
        };
        for (const auto& [name, v] : limits) {
            m.gauge("qunbot_delivery_limit", "Configured delivery limits", {{"limit", name}}).set(v);
        }
        for (const auto& a : o.apps) {
            auto st = std::make_unique<AppState>();
            st->config = a;
            auto made = make_app_api(strand, a, c, o.now_ms);
            st->http = std::move(made.http);
            st->api = std::move(made.api);
            if (a.kind == AppKind::aibot && !st->http) {
                // An AI bot needs no access token: it answers through each message's response_url.
                https::Options ho;
                ho.ca_file = a.api_ca_file;
                ho.connect_timeout = std::chrono::milliseconds(c.connect_timeout_ms);
                ho.request_timeout = std::chrono::milliseconds(c.request_timeout_ms);
                ho.retry_stale = false; // a response_url works once: a lost answer is for a person
                st->http = std::make_unique<https::Client>(strand, ho);
            }
            apps[a.name] = std::move(st);
        }
        reader = storage::open_for_reading(o.database);
    }

    net::io_context& ioc;
    storage::Journal& journal;
    Registry& metrics;
    Options o;
    net::strand<net::io_context::executor_type> strand;
    net::steady_timer waker; // cancelled to wake the loop
    bool woken = false;
    bool draining = false;
    bool stopped = false;
    std::function<void()> drained;
    std::unique_ptr<SQLite::Database> reader;
    std::map<std::string, std::unique_ptr<AppState>> apps;
    core::RateLimiter message_limiter;
    core::RateLimiter robot_limiter;
    core::RateLimiter api_limiter;
    std::map<std::string, std::int64_t> paused_until; ///< app/api → ms (after 45009)
    std::set<std::string> mass_in_flight;             ///< app/group/day with a task being created
    std::vector<std::shared_ptr<net::steady_timer>> directory_timers;
    bool started = false;
    bool templates_known = false;  ///< the rules have said which templates they want
    bool templates_dirty = false;
    bool templates_syncing = false;
    std::vector<std::pair<std::string, std::string>> wanted_templates;
    unsigned concurrency;
    unsigned successes_since_lowered = 0;
    unsigned jobs_in_flight = 0;
    Gauge& in_flight_gauge;
    Gauge& concurrency_gauge;
    Counter& deferred;
    Counter& token_fetches;

    Counter& outcome_counter(std::string_view kind, std::string_view status)
    {
        return metrics.counter("qunbot_delivery_actions_total", "Actions finished by the delivery worker, by kind and outcome",
                               {{"kind", std::string(kind)}, {"outcome", std::string(status)}});
    }

    void count_error(const wecom::ApiError& e)
    {
        metrics.counter("qunbot_wecom_api_errors_total", "WeCom API calls that failed, by API and error kind",
                        {{"api", e.api}, {"kind", std::string(wecom::to_string(e.kind))}})
            .inc();
    }

    void wake_on_strand()
    {
        woken = true;
        waker.cancel();
    }

    awaitable<std::string> commit(storage::WriteWork work) { return commit_on(strand, journal, std::move(work), shared_from_this()); }

    GroupKind group_kind(const AppState& app, const core::Action& a)
    {
        if (a.group_id.empty()) return GroupKind::none;
        if (app.config.robots.contains(a.group_id)) return GroupKind::robot;
        if (storage::is_app_chat(*reader, a.tenant, a.group_id)) return GroupKind::app_chat;
        return GroupKind::customer;
    }

    std::int64_t retry_at(const storage::OutboxRow& row, const std::optional<wecom::ApiError>& error, std::int64_t now) const
    {
        const int n = std::min(row.attempts + 1, 20);
        std::int64_t delay = std::min<std::int64_t>(600'000, static_cast<std::int64_t>(o.config.retry_base_ms) << std::min(n - 1, 19));
        if (error && error->kind == wecom::ApiErrorKind::frequency_limited) delay = std::max<std::int64_t>(delay, o.config.frequency_pause_ms);
        return now + delay;
    }

    // --- start-up ---------------------------------------------------------------------------

    awaitable<void> recover()
    {
        const auto now = o.now_ms();
        auto rows = storage::in_flight_outbox(*reader);
        if (!rows.empty()) spdlog::warn("delivery: {} action(s) were in flight when the last process stopped", rows.size());
        std::vector<std::tuple<std::int64_t, std::string, std::string>> marks;
        for (const auto& r : rows) {
            auto it = apps.find(r.action.app);
            bool safe = true;
            std::string why;
            if (it != apps.end() && it->second->api) {
                const auto kind = group_kind(*it->second, r.action);
                const auto rt = wecom::route(r.action, kind, rules::is_customer_id(r.action.target));
                safe = rt.retry_safe;
                if (rt.api == "message/send" && now - r.updated_ms >= static_cast<std::int64_t>(o.config.duplicate_check_s) * 1000) {
                    safe = false; // outside WeCom's duplicate-check window a resend would arrive twice
                }
                why = rt.api;
            }
            if (safe) {
                marks.emplace_back(r.id, "pending", "");
            } else {
                marks.emplace_back(r.id, "check",
                                   "the process stopped while " + why + " was in flight; WeCom may or may not have done it. "
                                   "Look, then `qunbot outbox retry " + std::to_string(r.id) + "` or `qunbot outbox drop " +
                                   std::to_string(r.id) + "`");
            }
        }
        if (!marks.empty()) {
            // A named work, not a temporary: g++ 12 destroys temporaries of a co_await expression twice.
            storage::WriteWork work = [marks, now](SQLite::Database& db) {
                for (const auto& [id, status, error] : marks) storage::mark_outbox(db, id, status, now, 0, error, "");
            };
            auto err = co_await commit(std::move(work));
            if (!err.empty()) spdlog::error("delivery: could not settle in-flight actions: {}", err);
        }
        // Calls of the last hour count against the limits, so a restart cannot double the rate.
        for (const auto& [key, at] : storage::recent_rate_keys(*reader, now - 3'600'000)) {
            if (key.starts_with("msg:")) message_limiter.record(key, at);
            else if (key.starts_with("robot:")) robot_limiter.record(key, at);
            else if (key.starts_with("api:")) api_limiter.record(key, at);
        }
    }

    // --- the loop ---------------------------------------------------------------------------

    static awaitable<void> run(std::shared_ptr<Impl> self) { co_await self->loop(); }

    awaitable<void> loop()
    {
        co_await recover();
        while (!draining) {
            std::size_t started = 0;
            try {
                started = co_await round();
            } catch (const std::exception& e) {
                spdlog::error("delivery: round failed: {}", e.what());
            }
            if (draining) break;
            if (started > 0 && jobs_in_flight < concurrency) continue;
            // Sleep until woken (new rows, a finished job) or the next due row / poll.
            std::int64_t wait = o.config.poll_ms;
            try {
                if (auto due = storage::next_due(*reader)) wait = std::clamp<std::int64_t>(*due - o.now_ms(), 0, wait);
            } catch (const std::exception&) {
            }
            if (woken) {
                woken = false;
                if (jobs_in_flight < concurrency) continue;
            }
            if (wait == 0 && jobs_in_flight < concurrency) wait = 10; // due rows all deferred this round
            waker.expires_after(std::chrono::milliseconds(wait));
            co_await waker.async_wait(use_tuple);
            woken = false;
        }
        while (jobs_in_flight > 0) {
            waker.expires_after(std::chrono::milliseconds(50));
            co_await waker.async_wait(use_tuple);
        }
        stopped = true;
        if (drained) std::exchange(drained, nullptr)();
    }

    // Claims due rows, turns them into jobs within the limits, and starts them.
    awaitable<std::size_t> round()
    {
        if (jobs_in_flight >= concurrency) co_return 0;
        const auto now = o.now_ms();
        // A whole round when idle (posts with the same text merge into one task); otherwise a
        // few more rows than there is room for, not a whole round each time one call finishes.
        const std::size_t room_now = concurrency - jobs_in_flight;
        auto rows = storage::due_outbox(*reader, now, room_now == concurrency ? round_size : std::min(round_size, room_now * 16 + 16));
        if (rows.empty()) co_return 0;
        std::vector<Job> jobs;
        std::map<std::tuple<AppState*, std::string>, std::size_t> mass_index; // (app, text) → job
        std::vector<std::pair<std::int64_t, std::int64_t>> defers;            // id → next try
        std::vector<std::tuple<std::int64_t, std::string, std::string>> finals; // id, status, error
        std::vector<std::pair<std::int64_t, std::string>> claims;             // id, rate keys
        const unsigned room = concurrency - jobs_in_flight;
        for (auto& row : rows) {
            if (jobs.size() >= room) break;
            auto& a = row.action;
            if (!row.readable) {
                finals.emplace_back(row.id, "dead", "the stored action (action_json) is not readable; nothing was sent");
                continue;
            }
            auto it = apps.find(a.app);
            if (it == apps.end()) {
                finals.emplace_back(row.id, "dead", "no app named \"" + a.app + "\" in the configuration");
                continue;
            }
            AppState& app = *it->second;
            if (a.not_after_ms > 0 && now > a.not_after_ms) {
                finals.emplace_back(row.id, "dead", "expired before it could be performed (deadline passed; a welcome code lives 20 s)");
                continue;
            }
            Job job;
            job.app = &app;
            if (app.config.kind == AppKind::aibot) {
                // Answers only, one per message: no quotas or rate limits of the server API apply.
                job.aibot = true;
                claims.emplace_back(row.id, "");
                job.rows.push_back(std::move(row));
                jobs.push_back(std::move(job));
                continue;
            }
            job.context.kind = app.api ? group_kind(app, a) : GroupKind::none;
            job.context.is_customer = rules::is_customer_id(a.target);
            job.context.duplicate_check_s = static_cast<int>(o.config.duplicate_check_s);
            job.context.attempts = row.attempts + 1;
            job.route = wecom::route(a, job.context.kind, job.context.is_customer);
            if (!app.api) {
                claims.emplace_back(row.id, "");
                job.rows.push_back(std::move(row));
                jobs.push_back(std::move(job));
                continue;
            }
            const bool mass = (a.kind == core::ActionKind::post || a.kind == core::ActionKind::reply) && job.context.kind == GroupKind::customer;
            const std::string api_name = job.route.api;
            if (auto p = paused_until.find(app.config.name + "/" + api_name); p != paused_until.end() && p->second > now) {
                defers.emplace_back(row.id, p->second);
                continue;
            }
            // Limits, checked all together before any is consumed.
            std::vector<std::pair<core::RateLimiter*, std::string>> keys;
            if (!api_name.empty()) keys.emplace_back(&api_limiter, "api:" + app.config.name + ":" + api_name);
            if (api_name == "message/send") {
                if (a.kind == core::ActionKind::remove_member || a.kind == core::ActionKind::recall) {
                    auto entry = storage::group_entry(*reader, a.tenant, a.group_id);
                    job.context.group_name = entry.name;
                    job.context.owner = entry.owner;
                    job.context.admins = entry.admins;
                    if (!entry.owner.empty()) keys.emplace_back(&message_limiter, "msg:" + app.config.name + ":" + entry.owner);
                    for (const auto& ad : entry.admins) {
                        if (ad != entry.owner) keys.emplace_back(&message_limiter, "msg:" + app.config.name + ":" + ad);
                    }
                } else {
                    keys.emplace_back(&message_limiter, "msg:" + app.config.name + ":" + a.target);
                }
            }
            if (api_name == "webhook/send") keys.emplace_back(&robot_limiter, "robot:" + app.config.name + ":" + a.group_id);
            if (mass) {
                job.day = (now + o.utc_offset_s * 1000LL) / 86'400'000;
                const auto slot = app.config.name + "/" + a.group_id + "/" + std::to_string(job.day);
                const auto used = storage::mass_send_used(*reader, a.tenant, app.config.name, a.group_id, job.day);
                if (mass_in_flight.contains(slot) && used + 1 < static_cast<int>(o.config.mass_send_daily_quota)) {
                    // A task for this group is being created; decide once it has counted.
                    defers.emplace_back(row.id, now + o.config.poll_ms);
                    continue;
                }
                if (used >= static_cast<int>(o.config.mass_send_daily_quota) || mass_in_flight.contains(slot)) {
                    finals.emplace_back(row.id, "skipped",
                                        "the group's mass-send quota for today is used (" + std::to_string(o.config.mass_send_daily_quota) +
                                            " per customer group per day)");
                    metrics.counter("qunbot_delivery_quota_skips_total", "Customer-group posts skipped: daily mass-send quota used").inc();
                    continue;
                }
                // Same app and text: one task (per owner) for all of them, with one API call.
                auto key = std::make_tuple(&app, a.text + '\x1f' + a.attachments);
                if (auto m = mass_index.find(key); m != mass_index.end() && jobs[m->second].rows.size() < max_chat_ids) {
                    mass_in_flight.insert(slot);
                    claims.emplace_back(row.id, "");
                    jobs[m->second].rows.push_back(std::move(row));
                    continue;
                }
            }
            std::int64_t wait = 0;
            for (const auto& [lim, k] : keys) wait = std::max(wait, lim->wait_ms(k, now));
            if (wait > 0) {
                defers.emplace_back(row.id, now + wait);
                metrics.counter("qunbot_delivery_rate_limited_total", "Actions postponed so that a platform limit is not exceeded",
                                {{"api", api_name}})
                    .inc();
                continue;
            }
            std::string rate_keys;
            for (const auto& [lim, k] : keys) {
                lim->record(k, now);
                rate_keys += (rate_keys.empty() ? "" : " ") + k;
            }
            if (a.kind == core::ActionKind::assign_tag || a.kind == core::ActionKind::remove_tag) {
                if (auto id = storage::corp_tag_id(*reader, a.tenant, a.text)) job.context.tag_id = *id;
            }
            if ((job.context.is_customer && job.context.kind == GroupKind::none) || a.kind == core::ActionKind::assign_tag ||
                a.kind == core::ActionKind::remove_tag) {
                job.context.staff = !a.staff.empty() ? a.staff : storage::contact_staff(*reader, a.tenant, a.target);
                if (job.context.staff.empty() && !a.group_id.empty()) job.context.staff = storage::group_entry(*reader, a.tenant, a.group_id).owner;
            }
            if (job.context.kind == GroupKind::robot) job.context.robot_key = app.config.robots.at(a.group_id);
            if (mass) {
                job.mass = true;
                mass_in_flight.insert(app.config.name + "/" + a.group_id + "/" + std::to_string(job.day));
                mass_index[std::make_tuple(&app, a.text + '\x1f' + a.attachments)] = jobs.size();
            }
            claims.emplace_back(row.id, rate_keys);
            job.rows.push_back(std::move(row));
            jobs.push_back(std::move(job));
        }
        deferred.inc(defers.size());
        // A named work, not a temporary: g++ 12 destroys temporaries of a co_await expression twice.
        storage::WriteWork work = [claims, defers, finals, now](SQLite::Database& db) {
            for (const auto& [id, keys] : claims) storage::mark_in_flight(db, id, now, keys);
            for (const auto& [id, at] : defers) storage::defer_outbox(db, id, at);
            for (const auto& [id, status, error] : finals) storage::mark_outbox(db, id, status, now, 0, error, "");
        };
        auto err = co_await commit(std::move(work));
        if (!err.empty()) {
            spdlog::error("delivery: could not claim actions: {}", err);
            for (auto& j : jobs) {
                if (j.mass) {
                    for (const auto& r : j.rows) mass_in_flight.erase(j.app->config.name + "/" + r.action.group_id + "/" + std::to_string(j.day));
                }
            }
            co_return 0;
        }
        for (const auto& [id, status, error] : finals) {
            (void)id;
            (void)error;
            outcome_counter("any", status).inc();
        }
        for (auto& j : jobs) {
            ++jobs_in_flight;
            in_flight_gauge.set(jobs_in_flight);
            net::co_spawn(strand, perform_job(shared_from_this(), std::move(j)), [self = shared_from_this()](std::exception_ptr ep) {
                if (!ep) return;
                try {
                    std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    spdlog::critical("delivery: job failed with an exception (a bug): {}", e.what());
                }
            });
        }
        co_return jobs.size();
    }

    // --- performing -------------------------------------------------------------------------

    static awaitable<void> perform_job(std::shared_ptr<Impl> self, Job job)
    {
        try {
            if (job.aibot) co_await self->perform_aibot(job);
            else if (!job.app->api) co_await self->perform_logged(job);
            else if (job.mass) co_await self->perform_mass(job);
            else co_await self->perform_single(job);
        } catch (const std::exception& e) {
            spdlog::critical("delivery: job failed with an exception (a bug): {}", e.what());
        }
        --self->jobs_in_flight;
        self->in_flight_gauge.set(self->jobs_in_flight);
        self->wake_on_strand();
    }

    awaitable<void> perform_logged(Job& job)
    {
        const auto& a = job.rows.front().action;
        const auto how = wecom::route(a, a.group_id.empty() ? GroupKind::none : GroupKind::customer, rules::is_customer_id(a.target)).how;
        std::string where;
        if (!a.group_id.empty()) where += " group " + a.group_id;
        if (!a.target.empty()) where += " member " + a.target;
        if (!a.rule_id.empty()) where += " (rule " + a.rule_id + ")";
        spdlog::info("[log adapter] {}{}: {}{}", core::to_string(a.kind), where, a.text, a.attachments.empty() ? "" : " + " + a.attachments);
        Outcome out;
        out.result = "logged only: app \"" + job.app->config.name + "\" has no WeCom API credentials (with them: " + how + ")";
        std::vector<Outcome> outs(1, std::move(out)); // not a braced list: g++ 12 and co_await
        co_await record(job, std::move(outs));
    }

    // Why an AI bot cannot perform `a`, or nothing; fills `url` with the response_url to use.
    std::optional<std::string> aibot_blocker(const core::Action& a, std::int64_t now, std::string& url)
    {
        if (a.kind != core::ActionKind::post && a.kind != core::ActionKind::reply) {
            return "an AI bot can only answer with a message; " + std::string(core::to_string(a.kind)) + " is not possible through it";
        }
        const auto resp = a.cause_event_id > 0 ? storage::aibot_response(*reader, a.cause_event_id) : std::nullopt;
        if (!resp || resp->url.empty()) {
            return std::string("an AI bot cannot post on its own: it answers a message through that message's response_url, and this "
                               "action answers none (a schedule or a timer)");
        }
        if (now > resp->received_ms + 3'600'000) return std::string("the message's response_url has expired (it is valid for one hour)");
        url = resp->url;
        return std::nullopt;
    }

    awaitable<void> perform_aibot(Job& job)
    {
        const auto& row = job.rows.front();
        const auto& a = row.action;
        const auto now = o.now_ms();
        Outcome out;
        std::string url;
        auto api_origin = https::parse_origin(job.app->config.api_base_url);
        if (auto why = aibot_blocker(a, now, url)) {
            out.status = Outcome::Status::dead;
            out.result = *why;
        } else if (!api_origin || !url.starts_with(job.app->config.api_base_url + "/cgi-bin/aibot/response?")) {
            // Only WeCom's own endpoint: a stored URL never sends the bot anywhere else.
            out.status = Outcome::Status::dead;
            out.result = "the response_url is not WeCom's aibot/response endpoint at " + job.app->config.api_base_url;
        } else {
            auto claimed = std::make_shared<bool>(false);
            storage::WriteWork work = [claimed, id = a.cause_event_id, key = a.idempotency_key, now](SQLite::Database& db) {
                *claimed = storage::claim_aibot_response(db, id, key, now);
            };
            const auto err = co_await commit(std::move(work));
            if (!err.empty()) {
                out.status = Outcome::Status::retry;
                out.result = "could not claim the response_url: " + err;
            } else if (!*claimed) {
                out.status = Outcome::Status::dead;
                out.result = "the message's response_url was already used by another action (an AI bot answers a message once)";
            } else {
                std::string target = url.substr(job.app->config.api_base_url.size());
                std::string body = nlohmann::json{{"msgtype", "markdown"}, {"markdown", {{"content", a.text}}}}.dump();
                std::string method = "POST";
                std::string type = "application/json";
                auto r = co_await job.app->http->request(*api_origin, method, target, body, type);
                if (!r) {
                    const bool maybe_sent = r.error().code == "timeout" || r.error().code == "io_error";
                    out.status = maybe_sent ? Outcome::Status::check : Outcome::Status::retry;
                    out.result = (maybe_sent ? "the answer may have gone out (the URL works once): " : "not sent: ") + r.error().message;
                } else {
                    const auto j = nlohmann::json::parse(r->body, nullptr, false);
                    const int code = j.is_object() ? j.value("errcode", -999) : -999;
                    if (r->status == 200 && code == 0) {
                        out.result = "answered through the message's response_url";
                    } else {
                        out.status = code == -999 ? Outcome::Status::check : Outcome::Status::dead;
                        out.result = "aibot/response answered HTTP " + std::to_string(r->status) + " errcode " + std::to_string(code) + " " +
                                     (j.is_object() ? j.value("errmsg", std::string()) : std::string());
                    }
                }
            }
        }
        std::vector<Outcome> outs(1, std::move(out));
        co_await record(job, std::move(outs));
    }

    awaitable<void> perform_single(Job& job)
    {
        auto out = co_await wecom::perform(*job.app->api, job.rows.front().action, job.context);
        std::vector<Outcome> outs(1, std::move(out));
        co_await record(job, std::move(outs));
    }

    awaitable<void> perform_mass(Job& job)
    {
        auto& app = *job.app;
        // The owner sends the task, so the rows are grouped by owner (learned from the directory,
        // or from groupchat/get when the group was never synced).
        std::map<std::string, std::vector<std::size_t>> by_owner;
        std::vector<Outcome> outcomes(job.rows.size());
        for (std::size_t i = 0; i < job.rows.size(); ++i) {
            const auto& a = job.rows[i].action;
            auto entry = storage::group_entry(*reader, a.tenant, a.group_id);
            if (entry.owner.empty()) {
                auto synced = co_await sync_one(app, a.tenant, a.group_id);
                if (!synced) {
                    outcomes[i] = wecom::outcome_of(synced.error(), true);
                    continue;
                }
                entry.owner = *synced;
            }
            by_owner[entry.owner].push_back(i);
        }
        for (const auto& [owner, idx] : by_owner) {
            std::vector<std::string> groups;
            for (auto i : idx) groups.push_back(job.rows[i].action.group_id);
            const auto& first = job.rows[idx.front()].action;
            auto out = co_await wecom::perform_mass_send(*app.api, first.tenant, app.config.name, owner, groups, first.text, first.attachments);
            for (std::size_t k = 0; k < idx.size(); ++k) {
                outcomes[idx[k]] = out;
                if (k > 0) outcomes[idx[k]].follow_ups.clear(); // one notice per task
            }
        }
        co_await record(job, outcomes);
    }

    // Writes the outcome of each row of a job (plus quota, tags and follow-ups) in one transaction.
    awaitable<void> record(Job& job, std::vector<Outcome> outcomes)
    {
        const auto now = o.now_ms();
        struct Write {
            storage::OutboxRow row;
            Outcome out;
            std::string status;
            std::int64_t next_try = 0;
            std::string error;
        };
        std::vector<Write> writes;
        for (std::size_t i = 0; i < job.rows.size(); ++i) {
            Write w{job.rows[i], outcomes[i], std::string(status_name(outcomes[i].status)), 0, ""};
            if (w.out.error) {
                w.error = w.out.error->describe();
                count_error(*w.out.error);
                react(job.app->config.name, *w.out.error);
            } else if (w.out.status == Outcome::Status::done) {
                on_success();
            }
            if (w.out.status == Outcome::Status::retry) {
                if (w.row.attempts + 1 >= static_cast<int>(o.config.max_attempts)) {
                    w.status = "dead";
                    w.error += " (gave up after " + std::to_string(w.row.attempts + 1) + " attempts)";
                } else {
                    w.next_try = retry_at(w.row, w.out.error, now);
                }
            }
            if (w.out.status == Outcome::Status::check && w.error.empty()) w.error = "outcome unknown: a person must check";
            if (w.status != "done" && w.status != "failed") {
                spdlog::warn("delivery: {} {} is {}: {}", core::to_string(w.row.action.kind), w.row.action.idempotency_key, w.status,
                             w.error.empty() ? w.out.result : w.error);
            }
            outcome_counter(core::to_string(w.row.action.kind), w.status).inc();
            writes.push_back(std::move(w));
        }
        const bool mass = job.mass;
        const auto day = job.day;
        const auto app_name = job.app->config.name;
        for (;;) {
            // A named work, not a temporary: g++ 12 destroys temporaries of a co_await expression twice.
            storage::WriteWork work = [writes, mass, day, app_name, now](SQLite::Database& db) {
                std::set<std::string> tasks;
                for (const auto& w : writes) {
                    const auto& a = w.row.action;
                    storage::mark_outbox(db, w.row.id, w.status, now, w.next_try, w.error, w.out.result);
                    if (!w.out.learned_tag_id.empty()) storage::set_corp_tag_id(db, a.tenant, a.text, w.out.learned_tag_id);
                    for (const auto& f : w.out.follow_ups) storage::enqueue_action(db, f, now);
                }
                if (mass) {
                    // The quota counts each group of each task WeCom accepted.
                    std::map<std::string, std::tuple<std::string, std::string, std::vector<std::string>>> by_task;
                    for (const auto& w : writes) {
                        if (w.status != "done" || w.out.task_id.empty()) continue;
                        auto& [tenant, sender, groups] = by_task[w.out.task_id];
                        tenant = w.row.action.tenant;
                        sender = w.out.task_sender;
                        groups.push_back(w.row.action.group_id);
                    }
                    for (const auto& [msgid, t] : by_task) {
                        storage::add_mass_send(db, std::get<0>(t), app_name, msgid, std::get<1>(t), std::get<2>(t), day, now);
                    }
                }
            };
            auto err = co_await commit(std::move(work));
            if (err.empty()) break;
            // The call happened; its record must not be lost. Keep trying (the writer recovers
            // from transient failures; a persistent one is logged every time).
            spdlog::error("delivery: could not record an outcome (will retry): {}", err);
            net::steady_timer t(strand);
            t.expires_after(std::chrono::milliseconds(500));
            co_await t.async_wait(use_tuple);
        }
        if (mass) {
            for (const auto& w : writes) mass_in_flight.erase(app_name + "/" + w.row.action.group_id + "/" + std::to_string(day));
        }
    }

    void react(const std::string& app, const wecom::ApiError& e)
    {
        if (e.kind == wecom::ApiErrorKind::concurrency_limited && concurrency > 1) {
            concurrency = std::max(1u, concurrency / 2);
            successes_since_lowered = 0;
            concurrency_gauge.set(concurrency);
            spdlog::warn("delivery: 45033 from {}: concurrency lowered to {}", e.api, concurrency);
        }
        if (e.kind == wecom::ApiErrorKind::frequency_limited) {
            paused_until[app + "/" + e.api] = o.now_ms() + o.config.frequency_pause_ms;
            spdlog::warn("delivery: 45009 from {}: pausing it for {} ms", e.api, o.config.frequency_pause_ms);
        }
    }

    void on_success()
    {
        if (concurrency < o.config.concurrency && ++successes_since_lowered >= 20) {
            ++concurrency;
            successes_since_lowered = 0;
            concurrency_gauge.set(concurrency);
        }
    }

    // --- directory --------------------------------------------------------------------------

    // groupchat/get for one group, recorded in the directory; returns the owner.
    awaitable<wecom::ApiResult<std::string>> sync_one(AppState& app, std::string tenant, std::string group_id)
    {
        const auto started = o.now_ms();
        auto r = co_await wecom::groupchat_get(*app.api, group_id);
        if (!r) {
            count_error(r.error());
            co_return r.error();
        }
        const auto& g = (*r)["group_chat"];
        std::vector<storage::SyncedMember> members;
        for (const auto& m : g.value("member_list", wecom::Json::array())) {
            members.push_back({m.value("userid", std::string()), m.value("name", std::string()), m.value("join_time", std::int64_t{0}),
                               m.value("join_scene", 0)});
        }
        std::vector<std::string> admins;
        for (const auto& ad : g.value("admin_list", wecom::Json::array())) admins.push_back(ad.value("userid", std::string()));
        const auto name = g.value("name", std::string());
        const auto owner = g.value("owner", std::string());
        app.last_sync[group_id] = started;
        // A named work, not a temporary: g++ 12 destroys temporaries of a co_await expression twice.
        storage::WriteWork work = [tenant, app_name = app.config.name, group_id, name, owner, admins, members, started](SQLite::Database& db) {
            storage::sync_group(db, tenant, app_name, group_id, name, owner, admins, members, started);
        };
        auto err = co_await commit(std::move(work));
        if (!err.empty()) spdlog::error("directory: could not record group {}: {}", group_id, err);
        metrics.counter("qunbot_directory_syncs_total", "Groups synced from groupchat/get").inc();
        co_return owner;
    }

    // Did the owners send their mass-send tasks? (get_groupmsg_send_result, notes §4.3.) A task
    // is followed for three days, or until no group is waiting.
    static awaitable<void> task_loop(std::shared_ptr<Impl> self, AppState* app)
    {
        auto t = std::make_shared<net::steady_timer>(self->strand);
        self->directory_timers.push_back(t);
        while (!self->draining) {
            t->expires_after(std::chrono::milliseconds(self->o.config.task_check_ms));
            co_await t->async_wait(use_tuple);
            if (self->draining) break;
            const auto now = self->o.now_ms();
            std::vector<storage::MassTask> tasks;
            try {
                tasks = storage::open_mass_tasks(*self->reader, app->config.name, now - 3 * 86'400'000LL);
            } catch (const std::exception& e) {
                spdlog::warn("mass-send follow-up: {}", e.what());
            }
            for (const auto& task : tasks) {
                if (self->draining) break;
                std::vector<std::tuple<std::string, int, std::int64_t>> results;
                std::string cursor;
                bool failed = false;
                do {
                    auto r = co_await wecom::get_groupmsg_send_result(*app->api, task.msgid, task.sender, cursor);
                    if (!r) {
                        self->count_error(r.error());
                        spdlog::warn("mass-send follow-up of {}: {}", task.msgid, r.error().describe());
                        failed = true;
                        break;
                    }
                    for (const auto& s : r->value("send_list", wecom::Json::array())) {
                        results.emplace_back(s.value("chat_id", std::string()), s.value("status", 0), s.value("send_time", std::int64_t{0}));
                    }
                    cursor = r->value("next_cursor", std::string());
                } while (!cursor.empty());
                if (failed) continue;
                bool waiting = results.empty();
                for (const auto& r : results) {
                    if (std::get<1>(r) == 0) waiting = true;
                }
                storage::WriteWork work = [msgid = task.msgid, results, waiting, now](SQLite::Database& db) {
                    storage::record_mass_task_results(db, msgid, results, !waiting, now);
                };
                auto err = co_await self->commit(std::move(work));
                if (!err.empty()) spdlog::error("mass-send follow-up: could not record {}: {}", task.msgid, err);
                if (!waiting) {
                    for (const auto& r : results) {
                        self->metrics
                            .counter("qunbot_mass_send_results_total", "Groups of settled mass-send tasks, by outcome",
                                     {{"status", std::get<1>(r) == 1 ? "sent" : "failed"}})
                            .inc();
                    }
                }
            }
        }
    }

    // Group welcome templates follow the `wecom_template` rules: added when new, edited when the
    // text changed, deleted when the rule is gone. Re-run after every reload; retried after a
    // pause when WeCom refuses.
    static awaitable<void> template_sync(std::shared_ptr<Impl> self)
    {
        self->templates_syncing = true;
        while (self->templates_dirty && !self->draining) {
            self->templates_dirty = false;
            const auto wanted = self->wanted_templates;
            bool failed = false;
            for (auto& [name, app] : self->apps) {
                if (!app->api) continue;
                const auto tenant = app->config.corp_id;
                std::vector<storage::WelcomeTemplate> have;
                try {
                    have = storage::welcome_templates(*self->reader, tenant, name);
                } catch (const std::exception& e) {
                    spdlog::error("welcome templates: {}", e.what());
                    failed = true;
                    continue;
                }
                for (const auto& [rule_id, text] : wanted) {
                    auto it = std::find_if(have.begin(), have.end(), [&](const auto& h) { return h.rule_id == rule_id; });
                    storage::WelcomeTemplate t{rule_id, it == have.end() ? std::string() : it->template_id, text};
                    if (it != have.end() && it->text == text) continue;
                    if (it == have.end()) {
                        auto r = co_await wecom::group_welcome_template_add(*app->api, text, true);
                        if (!r) {
                            self->count_error(r.error());
                            spdlog::warn("welcome template of rule {}: {}", rule_id, r.error().describe());
                            failed = true;
                            continue;
                        }
                        t.template_id = r->value("template_id", std::string());
                        spdlog::info("welcome template of rule {} added on WeCom as {} (group owners apply it in the client)", rule_id,
                                     t.template_id);
                    } else {
                        auto r = co_await wecom::group_welcome_template_edit(*app->api, t.template_id, text);
                        if (!r) {
                            self->count_error(r.error());
                            spdlog::warn("welcome template of rule {}: {}", rule_id, r.error().describe());
                            failed = true;
                            continue;
                        }
                        spdlog::info("welcome template of rule {} ({}) updated on WeCom", rule_id, t.template_id);
                    }
                    const auto now = self->o.now_ms();
                    storage::WriteWork work = [tenant, name, t, now](SQLite::Database& db) { storage::set_welcome_template(db, tenant, name, t, now); };
                    if (auto err = co_await self->commit(std::move(work)); !err.empty()) spdlog::error("welcome templates: {}", err);
                }
                for (const auto& h : have) {
                    if (std::any_of(wanted.begin(), wanted.end(), [&](const auto& w) { return w.first == h.rule_id; })) continue;
                    auto r = co_await wecom::group_welcome_template_del(*app->api, h.template_id);
                    // 41xxx "not found" means someone deleted it already: forget it as well.
                    if (!r && r.error().transient()) {
                        self->count_error(r.error());
                        spdlog::warn("welcome template of removed rule {}: {}", h.rule_id, r.error().describe());
                        failed = true;
                        continue;
                    }
                    spdlog::info("welcome template of removed rule {} ({}) deleted on WeCom", h.rule_id, h.template_id);
                    storage::WriteWork work = [tenant, name, rule_id = h.rule_id](SQLite::Database& db) {
                        storage::delete_welcome_template(db, tenant, name, rule_id);
                    };
                    if (auto err = co_await self->commit(std::move(work)); !err.empty()) spdlog::error("welcome templates: {}", err);
                }
            }
            if (failed && !self->draining) {
                self->templates_dirty = true;
                auto t = std::make_shared<net::steady_timer>(self->strand);
                self->directory_timers.push_back(t);
                t->expires_after(std::chrono::milliseconds(self->o.config.frequency_pause_ms));
                co_await t->async_wait(use_tuple);
            }
        }
        self->templates_syncing = false;
    }

    void request_template_sync()
    {
        if (!started || !templates_known) return;
        templates_dirty = true;
        if (!templates_syncing) net::co_spawn(strand, template_sync(shared_from_this()), net::detached);
    }

    static awaitable<void> directory_loop(std::shared_ptr<Impl> self, AppState* app)
    {
        // At start: every group WeCom lists (new ones are added, all are refreshed).
        std::string cursor;
        std::size_t listed = 0;
        for (int page = 0; page < 10'000 && !self->draining; ++page) {
            auto r = co_await wecom::groupchat_list(*app->api, cursor, 1000);
            if (!r) {
                self->count_error(r.error());
                spdlog::warn("directory: groupchat/list failed: {}", r.error().describe());
                break;
            }
            for (const auto& g : r->value("group_chat_list", wecom::Json::array())) {
                if (self->draining) break;
                auto s = co_await self->sync_one(*app, app->config.corp_id, g.value("chat_id", std::string()));
                if (!s) spdlog::warn("directory: {}", s.error().describe());
                ++listed;
            }
            cursor = r->value("next_cursor", std::string());
            if (cursor.empty()) break;
        }
        spdlog::info("directory: app {}: {} group(s) synced at start", app->config.name, listed);
        // Then: groups marked by change events, each at most once per directory_resync_ms (WeCom
        // applies some changes asynchronously, and a busy group changes all the time).
        auto t = std::make_shared<net::steady_timer>(self->strand);
        self->directory_timers.push_back(t);
        while (!self->draining) {
            const auto now = self->o.now_ms();
            std::vector<std::string> stale;
            try {
                stale = storage::groups_needing_sync(*self->reader, app->config.corp_id, 50);
            } catch (const std::exception& e) {
                spdlog::warn("directory: {}", e.what());
            }
            for (const auto& g : stale) {
                if (self->draining) break;
                if (auto it = app->last_sync.find(g); it != app->last_sync.end() && now - it->second < static_cast<std::int64_t>(self->o.config.directory_resync_ms)) continue;
                auto s = co_await self->sync_one(*app, app->config.corp_id, g);
                if (!s) spdlog::warn("directory: {}", s.error().describe());
            }
            t->expires_after(std::chrono::milliseconds(self->o.config.poll_ms));
            co_await t->async_wait(use_tuple);
        }
    }
};

Delivery::Delivery(net::io_context& ioc, storage::Journal& journal, Registry& metrics, Options options)
    : impl_(std::make_shared<Impl>(ioc, journal, metrics, std::move(options)))
{
}

Delivery::~Delivery() = default;

void Delivery::start()
{
    auto impl = impl_;
    for (const auto& [name, app] : impl->apps) {
        if (app->config.kind == AppKind::aibot) {
            spdlog::info("delivery: app \"{}\" is an AI bot: it answers each message once, through the message's response_url", name);
        } else if (!app->api) {
            spdlog::info("delivery: app \"{}\" has no WeCom API credentials: actions are printed by the log adapter", name);
        } else {
            if (impl->o.config.directory_sync) net::co_spawn(impl->strand, Impl::directory_loop(impl, app.get()), net::detached);
            net::co_spawn(impl->strand, Impl::task_loop(impl, app.get()), net::detached);
        }
    }
    net::co_spawn(impl->strand, Impl::run(impl), net::detached);
    net::post(impl->strand, [impl] {
        impl->started = true;
        impl->request_template_sync();
    });
}

void Delivery::set_welcome_templates(std::vector<std::pair<std::string, std::string>> templates)
{
    auto impl = impl_;
    net::post(impl->strand, [impl, templates = std::move(templates)]() mutable {
        if (impl->templates_known && impl->wanted_templates == templates) return;
        impl->wanted_templates = std::move(templates);
        impl->templates_known = true;
        impl->request_template_sync();
    });
}

void Delivery::wake()
{
    auto impl = impl_;
    net::post(impl->strand, [impl] { impl->wake_on_strand(); });
}

void Delivery::drain(std::function<void()> done)
{
    auto impl = impl_;
    net::post(impl->strand, [impl, done = std::move(done)]() mutable {
        impl->draining = true;
        for (auto& t : impl->directory_timers) t->cancel();
        if (impl->stopped) {
            done();
            return;
        }
        impl->drained = std::move(done);
        impl->wake_on_strand();
    });
}

} // namespace qunbot::bot
