#include "bot/callback_route.hpp"

#include "adapters/wecom/aibot.hpp"
#include "adapters/wecom/envelope.hpp"
#include "adapters/wecom/event_parser.hpp"
#include "bot/metrics.hpp"
#include "storage/journal.hpp"

#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include <chrono>

namespace qunbot::bot {
namespace {

struct Target {
    std::string path;
    Routes::Params params; // percent-decoded; '+' stays '+' (base64!)
};

core::Result<Target> parse_target(const std::string& target)
{
    auto u = boost::urls::parse_origin_form(target);
    if (!u) return core::make_error("bad_target", "request target is not a valid origin-form URL");
    Target t;
    t.path = u->path();
    boost::urls::encoding_opts opt;
    opt.space_as_plus = false;
    for (const auto& p : u->params(opt)) t.params.emplace(p.key, p.value);
    return t;
}

std::string param(const Routes::Params& params, const char* name)
{
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
}

HttpResponse text(int status, std::string body)
{
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

} // namespace

core::Result<std::unique_ptr<Routes>> Routes::create(const std::vector<AppConfig>& apps, storage::Journal& journal,
                                                     Registry& metrics)
{
    std::map<std::string, App> built;
    for (const auto& a : apps) {
        const bool aibot = a.kind == AppKind::aibot;
        // An AI bot's payloads carry no receiveid (notes §1.11): the crypto checks for "".
        auto crypto = wecom::CallbackCrypto::create(a.token, a.encoding_aes_key, aibot ? std::string() : a.corp_id);
        if (!crypto) {
            return core::make_error(crypto.error().code, "app \"" + a.name + "\": " + crypto.error().message);
        }
        built.emplace(a.path, App{a.name, std::move(*crypto), aibot, a.corp_id, {}, nullptr, nullptr, nullptr, nullptr});
    }
    return std::unique_ptr<Routes>(new Routes(std::move(built), journal, metrics));
}

Routes::Routes(std::map<std::string, App> apps, storage::Journal& journal, Registry& metrics)
    : apps_(std::move(apps)), journal_(journal), metrics_(metrics)
{
    // Registered up front, so /metrics shows every series (at zero) before the first event.
    for (auto& [path, app] : apps_) {
        for (auto kind : core::all_event_kinds()) {
            app.events_by_kind.push_back(&metrics_.counter("qunbot_events_total", "Events committed to the inbox journal, by kind",
                                                           {{"app", app.name}, {"kind", std::string(core::to_string(kind))}}));
        }
        app.duplicates = &metrics_.counter("qunbot_events_duplicate_total",
                                           "Deliveries recognised as retries of a committed event", {{"app", app.name}});
        app.journal_failures = &metrics_.counter("qunbot_journal_failures_total",
                                                 "Events the journal could not commit (answered 503)", {{"app", app.name}});
        app.requests_stored = &metrics_.counter("qunbot_http_requests_total", "HTTP requests by route and outcome",
                                                {{"route", app.name}, {"outcome", "stored"}});
        app.requests_duplicate = &metrics_.counter("qunbot_http_requests_total", "HTTP requests by route and outcome",
                                                   {{"route", app.name}, {"outcome", "duplicate"}});
    }
}

void Routes::count(const std::string& route, const std::string& outcome)
{
    metrics_.counter("qunbot_http_requests_total", "HTTP requests by route and outcome", {{"route", route}, {"outcome", outcome}})
        .inc();
}

void Routes::reject(const App& app, const HttpRequest& req, const core::Error& error, int status, const Respond& respond)
{
    metrics_.counter("qunbot_callback_rejections_total", "Callbacks refused, by reason", {{"app", app.name}, {"reason", error.code}})
        .inc();
    count(app.name, "rejected");
    // The message never carries key material: errors are built from lengths and codes only.
    spdlog::warn("callback rejected: app={} method={} remote={} status={} reason={}: {}", app.name, req.method, req.remote,
                 status, error.code, error.message);
    respond(text(status, error.code));
}

void Routes::handle(HttpRequest request, Respond respond)
{
    auto target = parse_target(request.target);
    if (!target) {
        count("unmatched", "bad_target");
        respond(text(400, "bad request target"));
        return;
    }
    const auto& path = target->path;
    if (path == "/healthz") {
        count("healthz", "ok");
        HttpResponse r;
        r.content_type = "application/json";
        r.body = "{\"status\":\"ok\",\"apps\":" + std::to_string(apps_.size()) + "}";
        respond(std::move(r));
        return;
    }
    if (path == "/metrics") {
        count("metrics", "ok");
        HttpResponse r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics_.render();
        respond(std::move(r));
        return;
    }
    if (path == "/admin/reload" && admin_reload_) {
        // Staff tooling on the same host only: the listener may face WeCom.
        const bool loopback = request.remote.starts_with("127.") || request.remote.starts_with("::1") ||
                              request.remote.starts_with("[::1]");
        if (!loopback) {
            count("admin", "forbidden");
            respond(text(403, "admin endpoints answer loopback clients only"));
            return;
        }
        if (request.method != "POST") {
            count("admin", "method_not_allowed");
            respond(text(405, "POST to reload"));
            return;
        }
        const auto result = admin_reload_();
        count("admin", result.ok() ? "reloaded" : "rejected");
        respond(text(result.ok() ? 200 : 422, result.report()));
        return;
    }
    auto it = apps_.find(path);
    if (it == apps_.end()) {
        count("unmatched", "not_found");
        respond(text(404, "not found"));
        return;
    }
    if (request.method == "GET") return verify_url(it->second, request, target->params, respond);
    if (request.method == "POST") return receive(it->second, request, target->params, respond);
    count(it->second.name, "method_not_allowed");
    respond(text(405, "method not allowed"));
}

void Routes::on_admin_reload(std::function<rules::LoadResult()> reload) { admin_reload_ = std::move(reload); }

void Routes::verify_url(const App& app, const HttpRequest& req, const Params& query, const Respond& respond)
{
    const auto echostr = param(query, "echostr");
    if (echostr.empty()) {
        return reject(app, req, core::make_error("missing_parameter", "GET without echostr"), 403, respond);
    }
    auto plain = app.crypto.open(param(query, "msg_signature"), param(query, "timestamp"), param(query, "nonce"), echostr);
    if (!plain) return reject(app, req, plain.error(), 403, respond);
    count(app.name, "verified");
    spdlog::info("callback URL verified: app={}", app.name);
    // The body is exactly the plaintext: no quotes, no BOM, no newline (notes §1.5).
    respond(text(200, std::move(*plain)));
}

void Routes::receive(const App& app, const HttpRequest& req, const Params& query, const Respond& respond)
{
    const auto signature = param(query, "msg_signature");
    const auto timestamp = param(query, "timestamp");
    const auto nonce = param(query, "nonce");
    if (signature.empty() || timestamp.empty() || nonce.empty()) {
        return reject(app, req, core::make_error("missing_parameter", "msg_signature, timestamp and nonce are required"), 403,
                      respond);
    }
    auto envelope = wecom::parse_envelope(req.body);
    if (!envelope) return reject(app, req, envelope.error(), 400, respond);
    auto payload = app.crypto.open(signature, timestamp, nonce, envelope->encrypt);
    if (!payload) return reject(app, req, payload.error(), 403, respond);
    auto event = app.aibot ? wecom::parse_aibot_event(*payload, wecom::ParseContext{app.name, app.tenant})
                           : wecom::parse_event(*payload, wecom::ParseContext{app.name, app.crypto.receive_id()});
    if (!event) return reject(app, req, event.error(), 400, respond);

    const auto kind = event->kind;
    if (kind == core::EventKind::unknown) {
        spdlog::info("callback: app={} unknown event type '{}' kept raw", app.name, event->raw_type);
    }
    auto& committed = *app.events_by_kind[static_cast<std::size_t>(kind)];
    // An AI bot's payload carries no time: when it arrived is the closest there is (activity,
    // flood windows and draw entries need one).
    if (event->time == 0) {
        event->time = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    auto dedup_key = event->dedup_key;
    journal_.append(std::move(*event), [this, &app, &committed, respond,
                                        dedup_key = std::move(dedup_key)](storage::AppendOutcome outcome) {
        // Runs once the commit is durable (on an I/O thread, see Journal::Options::complete):
        // only now is the 200 honest.
        switch (outcome.status) {
        case storage::AppendOutcome::Status::stored:
            committed.inc();
            app.requests_stored->inc();
            spdlog::debug("callback: app={} stored event {} key={}", app.name, outcome.event_id, dedup_key);
            respond(text(200, ""));
            return;
        case storage::AppendOutcome::Status::duplicate:
            app.duplicates->inc();
            app.requests_duplicate->inc();
            spdlog::debug("callback: app={} duplicate of event {} key={}", app.name, outcome.event_id, dedup_key);
            respond(text(200, ""));
            return;
        case storage::AppendOutcome::Status::failed:
            app.journal_failures->inc();
            count(app.name, "journal_error");
            spdlog::error("callback: app={} journal commit failed, answering 503 so WeCom retries: {}", app.name,
                          outcome.error);
            respond(text(503, "journal unavailable"));
            return;
        }
    });
}

} // namespace qunbot::bot
