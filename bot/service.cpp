#include "bot/service.hpp"

#include "bot/archive.hpp"
#include "bot/callback_route.hpp"
#include "bot/core/thread_name.hpp"
#include "bot/delivery.hpp"
#include "bot/dispatcher.hpp"
#include "bot/http_server.hpp"
#include "bot/metrics.hpp"
#include "bot/payouts.hpp"
#include "bot/scheduler.hpp"
#include "rules/rule_set.hpp"
#include "storage/journal.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

namespace qunbot::bot {

namespace net = boost::asio;

struct Service::Parts {
    explicit Parts(Config c) : config(std::move(c)), control(net::make_strand(ioc)), signals(control), grace(control) {}

    Config config;
    net::io_context ioc;
    Registry metrics;
    std::unique_ptr<storage::Journal> journal;
    std::unique_ptr<Delivery> delivery;
    std::unique_ptr<Payouts> payouts; ///< null unless wechat_pay is configured
    std::unique_ptr<Archive> archive; ///< null unless the session archive is configured
    std::unique_ptr<Scheduler> scheduler;
    std::unique_ptr<Dispatcher> dispatcher;
    std::unique_ptr<Routes> routes;
    std::unique_ptr<HttpServer> server;
    net::strand<net::io_context::executor_type> control; // owns signals, grace, the flags below
    net::signal_set signals;
    net::steady_timer grace;
    bool shutting_down = false;
    std::atomic<std::size_t> abandoned{0};
    std::vector<std::thread> threads;

    void begin_shutdown() // on `control`
    {
        if (shutting_down) return;
        shutting_down = true;
        spdlog::info("shutdown: no new connections; finishing {} open connection(s)", server->active_connections());
        signals.cancel();
        grace.expires_after(std::chrono::milliseconds(config.shutdown_grace_ms));
        grace.async_wait([this](boost::system::error_code ec) {
            if (ec) return; // cancelled: drained in time
            abandoned = server->active_connections();
            spdlog::error("shutdown: {} connection(s) still busy after {} ms, abandoning them", abandoned.load(),
                          config.shutdown_grace_ms);
            ioc.stop();
        });
        server->drain([this] {
            spdlog::info("shutdown: all connections finished; letting the rule lanes finish");
            dispatcher->drain([this] {
                spdlog::info("shutdown: rule lanes idle; recording the calls in flight");
                delivery->drain([this] {
                    spdlog::info("shutdown: delivery idle");
                    auto finished = [this] { net::post(control, [this] { grace.cancel(); }); };
                    if (!payouts) {
                        finished();
                        return;
                    }
                    payouts->drain([finished] {
                        spdlog::info("shutdown: payouts idle");
                        finished();
                    });
                });
            });
        });
    }

    void wait_for_signal()
    {
        signals.async_wait([this](boost::system::error_code ec, int sig) {
            if (ec) return;
            if (sig == SIGHUP) {
                dispatcher->reload("SIGHUP");
                wait_for_signal();
                return;
            }
            spdlog::info("received {}, shutting down gracefully", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            begin_shutdown();
        });
    }
};

core::Result<std::unique_ptr<Service>> Service::create(Config config)
{
    auto parts = std::make_unique<Parts>(std::move(config));
    auto* p = parts.get();
    auto& commit_seconds = p->metrics.histogram(
        "qunbot_journal_commit_seconds", "Time to commit one batch of the inbox journal (without the WAL sync: qunbot_journal_sync_seconds)",
        {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0});
    auto& batch_events = p->metrics.histogram("qunbot_journal_batch_events", "Events per journal commit",
                                              {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
    storage::Journal::Options jo;
    jo.path = p->config.database;
    jo.durability = p->config.durability;
    jo.max_batch = p->config.max_batch;
    jo.wal_restart_bytes = p->config.wal_limit_mb << 20;
    auto& sync_seconds = p->metrics.histogram("qunbot_journal_sync_seconds",
                                              "Time to make the journal's commits durable (fdatasync of the WAL)",
                                              {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0});
    jo.on_commit = [&commit_seconds, &batch_events](double seconds, std::size_t n) {
        commit_seconds.observe(seconds);
        batch_events.observe(static_cast<double>(n));
    };
    jo.on_sync = [&sync_seconds](double seconds) { sync_seconds.observe(seconds); };
    auto& wal_bytes = p->metrics.gauge("qunbot_journal_wal_bytes", "Bytes of WAL frames since the log last started over");
    auto& wal_restarts = p->metrics.counter("qunbot_journal_wal_restarts_total",
                                            "Times the writer copied the last commits itself so the WAL could start over");
    jo.on_wal = [&wal_bytes, &wal_restarts](std::int64_t bytes, bool restarted) {
        wal_bytes.set(bytes);
        if (restarted) wal_restarts.inc();
    };
    auto& catch_up_seconds = p->metrics.histogram(
        "qunbot_journal_wal_catch_up_seconds", "Pause of the journal writer while it copies the WAL's last commits so the log can start over",
        {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0});
    jo.on_catch_up = [&catch_up_seconds](double seconds) { catch_up_seconds.observe(seconds); };
    jo.complete = [p](std::function<void()> answers) { net::post(p->ioc, std::move(answers)); };
    try {
        p->journal = std::make_unique<storage::Journal>(std::move(jo));
    } catch (const std::exception& e) {
        return core::make_error("journal_open", "cannot open database " + p->config.database + ": " + e.what());
    }
    try {
        Delivery::Options o;
        o.database = p->config.database;
        o.config = p->config.delivery;
        o.apps = p->config.apps;
        o.utc_offset_s = p->config.rules.utc_offset_minutes * 60;
        p->delivery = std::make_unique<Delivery>(p->ioc, *p->journal, p->metrics, std::move(o));
    } catch (const std::exception& e) {
        return core::make_error("delivery_start", std::string("cannot start delivery: ") + e.what());
    }
    if (p->config.wechat_pay.enabled()) {
        try {
            Payouts::Options po;
            po.database = p->config.database;
            po.pay = p->config.wechat_pay;
            po.apps = p->config.apps;
            po.delivery = p->config.delivery;
            po.utc_offset_s = p->config.rules.utc_offset_minutes * 60;
            p->payouts = std::make_unique<Payouts>(p->ioc, *p->journal, p->metrics, std::move(po));
        } catch (const std::exception& e) {
            return core::make_error("payouts_start", std::string("cannot start red-packet payouts: ") + e.what());
        }
    }
    if (p->config.archive.enabled()) {
        Archive::Options ao;
        ao.database = p->config.database;
        ao.config = p->config.archive;
        for (const auto& a : p->config.apps) {
            if (a.name == ao.config.app || (ao.config.app.empty() && ao.app.empty())) {
                ao.app = a.name;
                ao.tenant = a.corp_id;
            }
        }
        if (ao.app.empty()) return core::make_error("archive_start", "archive.app: no configured app \"" + ao.config.app + "\"");
        auto made = Archive::create(*p->journal, p->metrics, std::move(ao));
        if (!made) return core::make_error("archive_start", "cannot start the session archive: " + made.error().message);
        p->archive = std::move(*made);
    }
    // New outbox rows, and perhaps new payouts (a draw was made).
    auto woken = [del = p->delivery.get(), pay = p->payouts.get()] {
        del->wake();
        if (pay) pay->wake();
    };
    try {
        Scheduler::Options so;
        so.database = p->config.database;
        so.utc_offset_s = p->config.rules.utc_offset_minutes * 60;
        so.on_actions = woken;
        p->scheduler = std::make_unique<Scheduler>(*p->journal, p->metrics, std::move(so));
    } catch (const std::exception& e) {
        return core::make_error("scheduler_start", std::string("cannot start the scheduler: ") + e.what());
    }
    try {
        Dispatcher::Options d;
        d.on_actions = woken;
        if (p->archive) d.on_archive_notify = [ar = p->archive.get()] { ar->wake(); };
        d.on_install = [del = p->delivery.get(), sch = p->scheduler.get(), pay = p->config.wechat_pay.enabled()](
                           std::shared_ptr<const rules::RuleSet> set) {
            for (const auto& draw : set->draws) {
                if (draw.payout == rules::PayoutMethod::wechat_pay && !pay) {
                    spdlog::warn("draw {} ({}:{}) pays by wechat_pay, but wechat_pay is not configured: its payouts will wait in the ledger",
                                 draw.id, draw.file, draw.line);
                }
            }
            del->set_welcome_templates(set->welcome_templates);
            sch->install(std::move(set));
        };
        d.database = p->config.database;
        d.rules = p->config.rules;
        d.apps = p->config.apps;
        p->dispatcher = std::make_unique<Dispatcher>(p->ioc, *p->journal, p->metrics, std::move(d));
        p->dispatcher->start();
        p->delivery->start();
        if (p->payouts) p->payouts->start();
        if (p->archive) p->archive->start();
        p->scheduler->start();
    } catch (const std::exception& e) {
        return core::make_error("dispatcher_start", std::string("cannot start the rule dispatcher: ") + e.what());
    }
    auto routes = Routes::create(p->config.apps, *p->journal, p->metrics);
    if (!routes) return routes.error();
    p->routes = std::move(*routes);
    p->routes->on_admin_reload([d = p->dispatcher.get()] { return d->reload("admin request"); });
    auto* r = p->routes.get();
    p->server = std::make_unique<HttpServer>(p->ioc, p->config.address, p->config.port, p->config.http, p->metrics,
                                             [r](HttpRequest req, Respond respond) { r->handle(std::move(req), std::move(respond)); });
    if (auto st = p->server->start(); !st) return st.error();
    return std::unique_ptr<Service>(new Service(std::move(parts)));
}

Service::Service(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Service::~Service()
{
    if (!parts_->threads.empty()) {
        request_shutdown();
        wait();
    }
}

void Service::start(bool handle_signals)
{
    auto* p = parts_.get();
    if (handle_signals) {
        p->signals.add(SIGINT);
        p->signals.add(SIGTERM);
        p->signals.add(SIGHUP);
        net::post(p->control, [p] { p->wait_for_signal(); });
    }
    unsigned n = p->config.threads ? p->config.threads : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) {
        p->threads.emplace_back([p, i] {
            core::name_this_thread("qb-io-" + std::to_string(i));
            for (;;) {
                try {
                    p->ioc.run();
                    return;
                } catch (const std::exception& e) {
                    // A handler threw past its task boundary: a bug. Log it and keep serving.
                    spdlog::critical("io thread: unhandled exception: {}", e.what());
                }
            }
        });
    }
}

void Service::request_shutdown()
{
    auto* p = parts_.get();
    net::post(p->control, [p] { p->begin_shutdown(); });
}

std::size_t Service::wait()
{
    auto* p = parts_.get();
    for (auto& t : p->threads) t.join();
    p->threads.clear();
    // Commits whatever the journal still holds (events of abandoned requests are kept: WeCom's
    // retry of them will be recognised as a duplicate).
    if (p->archive) p->archive->stop(); // a batch being stored is committed first (or not at all)
    p->scheduler->stop(); // a slot being written is finished first
    p->dispatcher.reset(); // unhooks from the journal before it closes
    p->delivery.reset();
    p->payouts.reset();
    p->journal->close();
    return p->abandoned.load();
}

std::uint16_t Service::port() const noexcept { return parts_->server->port(); }
Registry& Service::metrics() noexcept { return parts_->metrics; }
const Config& Service::config() const noexcept { return parts_->config; }

} // namespace qunbot::bot
