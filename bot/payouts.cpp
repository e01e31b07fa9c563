#include "bot/payouts.hpp"

#include "adapters/https/client.hpp"
#include "adapters/wechat_pay/redpack.hpp"
#include "adapters/wecom/api_client.hpp"
#include "bot/app_api.hpp"
#include "bot/journal_await.hpp"
#include "bot/metrics.hpp"
#include "rules/engine.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <SQLiteCpp/Database.h>
#include <spdlog/spdlog.h>

#include <map>

namespace qunbot::bot {

namespace net = boost::asio;
using net::awaitable;

std::optional<std::string> payout_limit(const WeChatPayConfig& cfg, const storage::Payout& p, const storage::PaidToday& today,
                                        std::int64_t round_committed_fen, std::int64_t round_budget_fen)
{
    // Default range of an enterprise red packet is ¥1–¥200; outside it WeChat Pay wants a scene_id.
    if ((p.amount_fen < 100 || p.amount_fen > 20'000) && cfg.scene_id.empty()) {
        return "amount " + rules::format_fen(p.amount_fen) + " is outside ¥1.00–¥200.00: set wechat_pay.scene_id to pay it";
    }
    if (cfg.per_user_daily_fen > 0 && today.member_fen + p.amount_fen > cfg.per_user_daily_fen) {
        return "the member would get " + rules::format_fen(today.member_fen + p.amount_fen) + " today, over the per-user limit of " +
               rules::format_fen(cfg.per_user_daily_fen);
    }
    if (cfg.per_user_daily_count > 0 && today.member_count + 1 > static_cast<int>(cfg.per_user_daily_count)) {
        return "the member already got " + std::to_string(today.member_count) + " red packet(s) today, the per-user limit is " +
               std::to_string(cfg.per_user_daily_count);
    }
    if (cfg.daily_total_fen > 0 && today.total_fen + p.amount_fen > cfg.daily_total_fen) {
        return "today's payouts would reach " + rules::format_fen(today.total_fen + p.amount_fen) + ", over the daily cap of " +
               rules::format_fen(cfg.daily_total_fen);
    }
    if (round_committed_fen + p.amount_fen > round_budget_fen) {
        return "the round's payouts would reach " + rules::format_fen(round_committed_fen + p.amount_fen) + ", over its budget of " +
               rules::format_fen(round_budget_fen);
    }
    return std::nullopt;
}

struct Payouts::Impl : std::enable_shared_from_this<Payouts::Impl> {
    Impl(net::io_context& i, storage::Journal& j, Registry& m, Options opt)
        : ioc(i), journal(j), metrics(m), o(std::move(opt)), strand(net::make_strand(ioc)), waker(strand),
          in_flight_gauge(m.gauge("qunbot_payouts_in_flight", "Red-packet calls in flight (0 or 1)"))
    {
        if (!o.now_ms) {
            o.now_ms = [] {
                return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
            };
        }
        auto parsed = https::parse_origin(o.pay.api_base_url);
        if (!parsed) throw std::runtime_error("wechat_pay.api_base_url: " + parsed.error().message);
        origin = *parsed;
        https::Options ho;
        ho.ca_file = o.pay.ca_file;
        ho.cert_file = o.pay.cert_file;
        ho.key_file = o.pay.key_file;
        ho.connect_timeout = std::chrono::milliseconds(o.pay.connect_timeout_ms);
        ho.request_timeout = std::chrono::milliseconds(o.pay.request_timeout_ms);
        // A lost answer to a payment is settled by a query, never by a silent resend.
        ho.retry_stale = false;
        http = std::make_unique<https::Client>(strand, ho);
        for (const auto& a : o.apps) {
            if (a.name == o.pay.app || (o.pay.app.empty() && pay_app.empty())) pay_app = a.name;
        }
        if (pay_app.empty()) throw std::runtime_error("wechat_pay.app: no configured app \"" + o.pay.app + "\"");
        for (const auto& a : o.apps) {
            if (a.name == pay_app) {
                appid = a.corp_id;
                apis.emplace(a.name, make_app_api(strand, a, o.delivery, o.now_ms));
            }
        }
        reader = storage::open_for_reading(o.database);
    }

    net::io_context& ioc;
    storage::Journal& journal;
    Registry& metrics;
    Options o;
    net::strand<net::io_context::executor_type> strand;
    net::steady_timer waker;
    Gauge& in_flight_gauge;
    https::Origin origin;
    std::unique_ptr<https::Client> http;
    std::string pay_app;
    std::string appid;
    std::map<std::string, AppApi> apis;
    std::unique_ptr<SQLite::Database> reader; // strand only
    bool stopping = false;                    // strand only
    bool woken = false;                       // strand only
    std::function<void()> drained;            // strand only
    bool running = false;                     // strand only

    void count(const std::string& status)
    {
        metrics.counter("qunbot_payouts_total", "Red-packet payouts by what became of them", {{"status", status}}).inc();
    }

    awaitable<std::string> commit(storage::WriteWork work) { return commit_on(strand, journal, std::move(work), shared_from_this()); }

    // What to record about a payout. Built in named locals: g++ 12 destroys temporaries of a
    // co_await expression twice, so no call below passes a temporary into a coroutine.
    struct Outcome {
        std::string status;          ///< empty: record nothing
        std::string detail;
        std::int64_t next_try_ms = 0;
        std::string send_listid;
    };

    static Outcome outcome(std::string status, std::string detail, std::int64_t next_try_ms = 0, std::string listid = {})
    {
        return Outcome{std::move(status), std::move(detail), next_try_ms, std::move(listid)};
    }

    // Records a payout's new state (guarded by its current one) and counts it.
    awaitable<void> record(storage::Payout p, Outcome o)
    {
        if (o.status.empty()) co_return;
        const auto now = this->o.now_ms();
        storage::WriteWork work = [p, o, now](SQLite::Database& db) {
            storage::set_payout(db, p.id, p.status, o.status, o.detail, now, false, o.next_try_ms, p.openid, o.send_listid);
        };
        const auto err = co_await commit(std::move(work));
        if (!err.empty()) {
            // Not recorded: the row keeps its state and is taken up again (in flight: looked up first).
            spdlog::error("payout {} (bill {}): could not record {}: {}", p.id, p.billno, o.status, err);
            co_return;
        }
        count(o.status);
        if (o.status == "paid" || o.status == "dry_run") {
            spdlog::info("payout {} round {} pick {}: {} {} to {} ({})", p.id, p.round_id, p.pick, o.status, rules::format_fen(p.amount_fen),
                         p.member, o.detail);
        } else {
            spdlog::warn("payout {} round {} pick {} ({} to {}): {}: {}", p.id, p.round_id, p.pick, rules::format_fen(p.amount_fen), p.member,
                         o.status, o.detail);
        }
    }

    std::int64_t retry_at(int attempts) const
    {
        const int n = std::min(std::max(attempts, 1), 20);
        return o.now_ms() + std::min<std::int64_t>(600'000, static_cast<std::int64_t>(o.pay.retry_base_ms) << std::min(n - 1, 19));
    }

    // Asks WeChat Pay about a bill number. Transport failures come back as `unknown`.
    awaitable<wechat_pay::QueryResult> query(storage::Payout p, std::string* detail, std::string* listid)
    {
        const auto fields = wechat_pay::query_fields(p.billno, o.pay.mch_id, appid, wechat_pay::nonce(), o.pay.mch_key);
        std::string body = wechat_pay::to_xml(fields);
        std::string target = "/mmpaymkttransfers/queryworkwxredpack";
        std::string method = "POST";
        std::string type = "text/xml";
        auto r = co_await http->request(origin, method, target, body, type);
        if (!r) {
            *detail = "query failed: " + r.error().message;
            co_return wechat_pay::QueryResult::unknown;
        }
        if (r->status != 200) {
            *detail = "query answered HTTP " + std::to_string(r->status);
            co_return wechat_pay::QueryResult::unknown;
        }
        co_return wechat_pay::judge_query(r->body, o.pay.mch_key, *detail, *listid);
    }

    // A payout a previous process left in flight: it may have been paid.
    awaitable<void> settle(storage::Payout p)
    {
        std::string detail, listid;
        const auto q = co_await query(p, &detail, &listid);
        Outcome out;
        switch (q) {
        case wechat_pay::QueryResult::paid: out = outcome("paid", "found paid after a restart (" + detail + ")", 0, listid); break;
        case wechat_pay::QueryResult::not_found:
            // WeChat Pay has no such order: it was never placed. Send it (the same bill number).
            out = outcome("pending", "not placed before the restart (" + detail + "); sending again with the same bill number");
            break;
        case wechat_pay::QueryResult::failed: out = outcome("held", "WeChat Pay reports the order failed (" + detail + ")"); break;
        case wechat_pay::QueryResult::unknown:
            // Left in flight: asked again next round. Never resent blindly.
            spdlog::warn("payout {} (bill {}): in flight since a restart, outcome still unknown: {}", p.id, p.billno, detail);
            break;
        }
        co_await record(p, out);
    }

    wecom::ApiClient* api_for(const std::string& app)
    {
        auto it = apis.find(app);
        if (it == apis.end()) it = apis.find(pay_app);
        return it == apis.end() ? nullptr : it->second.api.get();
    }

    // Looks up the member's openid (kept in `p`); an outcome to record when that failed.
    awaitable<Outcome> resolve_openid(storage::Payout* p)
    {
        auto* api = api_for(p->app);
        if (!api) co_return outcome("held", "app " + pay_app + " has no WeCom API credentials to look up the member's openid");
        const bool customer = rules::is_customer_id(p->member);
        std::string member = p->member;
        auto r = co_await wecom::convert_to_openid(*api, member, customer);
        if (!r) {
            const auto& e = r.error();
            const bool transient = e.kind == wecom::ApiErrorKind::busy || e.kind == wecom::ApiErrorKind::not_sent ||
                                   e.kind == wecom::ApiErrorKind::unknown_outcome || e.kind == wecom::ApiErrorKind::server_error ||
                                   e.kind == wecom::ApiErrorKind::frequency_limited;
            if (transient && p->attempts + 1 < static_cast<int>(o.pay.max_attempts)) {
                const auto at = retry_at(p->attempts + 1);
                const auto now = o.now_ms();
                storage::WriteWork work = [id = p->id, from = p->status, at, d = e.describe(), now](SQLite::Database& db) {
                    storage::set_payout(db, id, from, "failed", "openid lookup: " + d, now, true, at);
                };
                const auto err = co_await commit(std::move(work));
                if (err.empty()) count("failed");
                co_return Outcome{};
            }
            co_return outcome("held", "cannot get the member's WeChat openid: " + e.describe() + " (reroll or pay by hand)");
        }
        p->openid = r->value("openid", std::string());
        if (p->openid.empty()) co_return outcome("held", "the openid lookup answered without an openid");
        co_return outcome("", "");
    }

    awaitable<void> pay(storage::Payout p)
    {
        if (p.openid.empty()) {
            auto failed = co_await resolve_openid(&p);
            if (p.openid.empty()) {
                co_await record(p, failed);
                co_return;
            }
        }
        const auto now = o.now_ms();
        const auto round = storage::find_round(*reader, p.round_id);
        const auto day = (now / 1000 + o.utc_offset_s) / 86400;
        const auto today = storage::paid_on_day(*reader, p.tenant, p.member, day, o.utc_offset_s);
        const auto committed = storage::round_committed_fen(*reader, p.round_id);
        if (auto why = payout_limit(o.pay, p, today, committed, round ? round->prizes.budget_fen : 0)) {
            auto out = outcome("held", *why);
            co_await record(p, out);
            co_return;
        }
        wechat_pay::RedpackRequest req;
        req.mch_billno = p.billno;
        req.mch_id = o.pay.mch_id;
        req.wxappid = appid;
        req.sender_name = o.pay.sender_name;
        req.agent_id = o.pay.agent_id;
        req.re_openid = p.openid;
        req.total_amount = p.amount_fen;
        req.wishing = o.pay.wishing;
        req.act_name = o.pay.act_name;
        req.remark = o.pay.remark;
        req.scene_id = o.pay.scene_id;
        req.nonce_str = wechat_pay::nonce();
        std::string body = wechat_pay::to_xml(wechat_pay::send_fields(req, o.pay.payment_secret, o.pay.mch_key));
        if (o.pay.dry_run) {
            auto out = outcome("dry_run", "dry run: signed request for bill " + p.billno + " to openid " + p.openid + " built, not sent");
            co_await record(p, out);
            co_return;
        }
        // In flight is durable before the call: a crash from here on is settled by a query.
        {
            storage::WriteWork work = [p, now](SQLite::Database& db) {
                storage::set_payout(db, p.id, p.status, "in_flight", "sending", now, true, 0, p.openid);
            };
            const auto err = co_await commit(std::move(work));
            if (!err.empty()) {
                spdlog::error("payout {}: could not mark it in flight: {}; not sent", p.id, err);
                co_return;
            }
        }
        p.status = "in_flight";
        ++p.attempts;
        in_flight_gauge.set(1);
        std::string target = "/mmpaymkttransfers/sendworkwxredpack";
        std::string method = "POST";
        std::string type = "text/xml";
        auto r = co_await http->request(origin, method, target, body, type);
        in_flight_gauge.set(0);
        const bool exhausted = p.attempts >= static_cast<int>(o.pay.max_attempts);
        Outcome out;
        if (!r) {
            const auto& code = r.error().code;
            const auto message = r.error().message;
            if (code == "timeout" || code == "io_error") {
                // It may have reached WeChat Pay: ask before anything else.
                std::string detail, listid;
                const auto q = co_await query(p, &detail, &listid);
                if (q == wechat_pay::QueryResult::paid) out = outcome("paid", "answer lost, found paid (" + detail + ")", 0, listid);
                else if (q == wechat_pay::QueryResult::not_found && !exhausted)
                    out = outcome("failed", message + "; not placed (" + detail + "), retrying with the same bill number", retry_at(p.attempts));
                else out = outcome("check", message + "; outcome unknown (" + detail + "): check on the merchant platform");
            } else if (exhausted) {
                // Never sent (resolve, connect, TLS): nothing was paid.
                out = outcome("held", "not sent after " + std::to_string(p.attempts) + " attempts: " + message);
            } else {
                out = outcome("failed", "not sent: " + message, retry_at(p.attempts));
            }
        } else if (r->status != 200) {
            out = outcome("check", "WeChat Pay answered HTTP " + std::to_string(r->status) + ": outcome unknown, check on the merchant platform");
        } else {
            std::string detail, listid;
            switch (wechat_pay::judge_send(r->body, o.pay.mch_key, detail, listid)) {
            case wechat_pay::Verdict::paid: out = outcome("paid", detail, 0, listid); break;
            case wechat_pay::Verdict::retry:
                if (exhausted) out = outcome("check", detail + " after " + std::to_string(p.attempts) + " attempts: check before retrying");
                else out = outcome("failed", detail + "; retrying with the same bill number", retry_at(p.attempts));
                break;
            case wechat_pay::Verdict::refused: out = outcome("held", detail + " (nothing was paid)"); break;
            case wechat_pay::Verdict::unknown: out = outcome("check", detail + ": outcome unknown, never retried under a new number"); break;
            }
        }
        co_await record(p, out);
    }

    static awaitable<void> run(std::shared_ptr<Impl> self)
    {
        while (!self->stopping) {
            std::size_t taken = 0;
            try {
                for (auto& p : storage::in_flight_payouts(*self->reader)) {
                    if (self->stopping) break;
                    co_await self->settle(std::move(p));
                }
                auto due = storage::due_payouts(*self->reader, self->o.now_ms(), 32);
                taken = due.size();
                for (auto& p : due) {
                    if (self->stopping) break;
                    co_await self->pay(std::move(p));
                }
            } catch (const std::exception& e) {
                // A bug or a broken database: logged, and the loop goes on after a pause.
                spdlog::error("payouts: {}", e.what());
                taken = 0;
            }
            if (self->stopping) break;
            if (taken == 32) continue; // a full batch: there may be more
            if (self->woken) {
                self->woken = false;
                continue;
            }
            boost::system::error_code ec;
            self->waker.expires_after(std::chrono::milliseconds(self->o.pay.poll_ms));
            co_await self->waker.async_wait(net::redirect_error(net::use_awaitable, ec));
            self->woken = false;
        }
        self->running = false;
        self->http->close_idle();
        if (self->drained) {
            auto done = std::move(self->drained);
            self->drained = nullptr;
            done();
        }
    }
};

Payouts::Payouts(net::io_context& ioc, storage::Journal& journal, Registry& metrics, Options options)
    : impl_(std::make_shared<Impl>(ioc, journal, metrics, std::move(options)))
{
}

Payouts::~Payouts() = default;

void Payouts::start()
{
    net::post(impl_->strand, [impl = impl_] {
        impl->running = true;
        net::co_spawn(impl->strand, Impl::run(impl), net::detached);
    });
}

void Payouts::wake()
{
    net::post(impl_->strand, [impl = impl_] {
        impl->woken = true;
        impl->waker.cancel();
    });
}

void Payouts::drain(std::function<void()> done)
{
    net::post(impl_->strand, [impl = impl_, done = std::move(done)]() mutable {
        impl->stopping = true;
        if (!impl->running) {
            done();
            return;
        }
        impl->drained = std::move(done);
        impl->waker.cancel();
    });
}

} // namespace qunbot::bot
