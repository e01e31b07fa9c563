// qunbot: the process entry point and the command-line tools.
#include "adapters/wecom/callback_crypto.hpp"
#include "adapters/wecom/finance_sdk.hpp"
#include "adapters/wecom/test_event.hpp"
#include "bot/app_api.hpp"
#include "bot/archive.hpp"
#include "bot/cli_util.hpp"
#include "bot/lottery_cli.hpp"
#include "bot/config.hpp"
#include "bot/http_client.hpp"
#include "bot/moderation_eval.hpp"
#include "bot/rule_tests.hpp"
#include "bot/scheduler.hpp"
#include "bot/service.hpp"
#include "rules/loader.hpp"
#include "storage/activity.hpp"
#include "storage/archive_state.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"
#include "storage/outbox.hpp"
#include "storage/rule_state.hpp"
#include "storage/schedule_state.hpp"

#include <CLI/CLI.hpp>
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

namespace {

using namespace qunbot;

using bot::fail;
using bot::local_time;

void setup_logging(const std::string& level)
{
    auto logger = spdlog::stderr_color_mt("qunbot");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_level(spdlog::level::from_str(level));
}

struct ServeArgs {
    std::string config;
    std::string listen;
    std::string database;
    std::string rules;
    unsigned threads = 0;
};

int run_serve(const ServeArgs& args)
{
    auto config = bot::load_config(args.config);
    if (!config) return fail(config.error().message);
    if (!args.listen.empty()) {
        const auto colon = args.listen.rfind(':');
        if (colon == std::string::npos) return fail("--listen expects ADDRESS:PORT");
        config->address = args.listen.substr(0, colon);
        try {
            config->port = static_cast<std::uint16_t>(std::stoul(args.listen.substr(colon + 1)));
        } catch (const std::exception&) {
            return fail("--listen expects ADDRESS:PORT");
        }
    }
    if (!args.database.empty()) config->database = args.database;
    if (args.threads) config->threads = args.threads;
    if (!args.rules.empty()) config->rules.dir = args.rules;
    setup_logging(config->log_level);
    if (auto st = bot::resolve_secrets(*config); !st) return fail(st.error().message);

    auto service = bot::Service::create(*config);
    if (!service) return fail(service.error().message);
    auto& s = **service;
    const std::string base = "http://" + config->address + ":" + std::to_string(s.port());
    // Tests and scripts wait for this exact line; it is printed only once the socket listens.
    std::cout << "qunbot listening on " << base << " (database " << config->database << ", rules " << config->rules.dir << ")"
              << std::endl;
    for (const auto& app : config->apps) {
        std::cout << "  app \"" << app.name << "\": callback URL " << base << app.path << "  corp id " << app.corp_id << "\n";
        if (app.generate_secrets) {
            // Demo apps only: the secrets were generated locally for trying qunbot out, and the
            // quick start needs them to configure a sender. Real apps' secrets are never printed.
            std::cout << "    demo Token          " << app.token.reveal() << "\n"
                      << "    demo EncodingAESKey " << app.encoding_aes_key.reveal() << "\n"
                      << "    (stored in " << app.secrets_file << (app.generated ? ", generated now" : "") << ")\n";
        }
    }
    if (!config->apps.empty()) {
        const auto& app = config->apps.front();
        std::cout << "Send it a test event:\n  ./build/qunbot send-test-event --to " << base << app.path << " --app " << app.name
                  << (args.config.empty() ? "" : " --config " + args.config) << " --kind member_joined\n"
                  << "then see it with:\n  ./build/qunbot activity"
                  << (args.database.empty() ? "" : " --db " + config->database) << "\n"
                  << "Rules: edit " << config->rules.dir << "/*.yaml (reloaded on save; `./build/qunbot rules check "
                  << config->rules.dir << "` first)\n"
                  << "What the rules decided, and what became of it:\n  ./build/qunbot outbox"
                  << (args.database.empty() ? "" : " --db " + config->database) << "\n";
        for (const auto& a : config->apps) {
            if (!a.has_api()) {
                std::cout << "App \"" << a.name << "\" has no WeCom API credentials: its actions are printed here (log adapter).\n";
            }
        }
    }
    std::cout << std::flush;
    s.start(true);
    const auto abandoned = s.wait();
    spdlog::info("stopped{}", abandoned ? " (" + std::to_string(abandoned) + " connection(s) abandoned)" : "");
    return abandoned ? 2 : 0;
}

struct SendArgs {
    std::string to;
    std::string app;
    std::string config;
    wecom::TestEventSpec spec;
    std::string members;
    int count = 1;
    bool json = false;
    bool verify = false;
};

int run_send(SendArgs args)
{
    auto config = bot::load_config(args.config);
    if (!config) return fail(config.error().message);
    std::vector<bot::AppConfig> apps;
    for (auto& a : config->apps) {
        if (a.name == args.app) {
            a.generate_secrets = false; // a sender never creates secrets; it uses the server's
            apps.push_back(a);
        }
    }
    if (apps.empty()) return fail("no app named \"" + args.app + "\" in the configuration");
    config->apps = apps;
    if (auto st = bot::resolve_secrets(*config); !st) return fail(st.error().message);
    const auto& app = config->apps.front();
    auto crypto = wecom::CallbackCrypto::create(app.token, app.encoding_aes_key, app.corp_id);
    if (!crypto) return fail(crypto.error().message);
    auto url = bot::parse_http_url(args.to);
    if (!url) return fail(url.error().message);
    if (!args.members.empty()) {
        args.spec.members.clear();
        std::string_view rest = args.members;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            args.spec.members.emplace_back(rest.substr(0, comma));
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    args.spec.corp_id = app.corp_id;
    bot::HttpClient client(url->host, url->port);
    const char* sep = url->target.find('?') == std::string::npos ? "?" : "&";
    int failures = 0;
    for (int i = 0; i < args.count; ++i) {
        const auto ts = std::to_string(std::time(nullptr));
        const auto nonce = wecom::random_alnum(10);
        core::Result<bot::ClientResponse> res = core::make_error("", "");
        if (args.verify) {
            const auto echo = std::to_string(1'000'000'000'000'000'000ULL + static_cast<unsigned long long>(i));
            res = client.request("GET", url->target + sep + wecom::seal_url_verification(*crypto, echo, ts, nonce));
            if (res && res->status == 200 && res->body != echo) {
                std::cout << "URL verification answered '" << res->body << "', expected '" << echo << "'\n";
                ++failures;
                continue;
            }
        } else {
            auto payload = wecom::make_test_payload(args.spec);
            if (!payload) return fail(payload.error().message);
            const auto sealed = wecom::seal_callback(*crypto, *payload, ts, nonce, args.json);
            res = client.request("POST", url->target + sep + sealed.query, sealed.body,
                                 args.json ? "application/json" : "text/xml");
        }
        if (!res) {
            std::cout << "request " << i + 1 << ": " << res.error().code << ": " << res.error().message << "\n";
            ++failures;
            continue;
        }
        std::cout << (args.verify ? "GET url-verification" : "POST " + args.spec.kind) << " -> HTTP " << res->status
                  << (res->body.empty() ? "" : " " + res->body) << "\n";
        if (res->status != 200) ++failures;
    }
    return failures ? 1 : 0;
}

std::optional<std::int64_t> parse_since(const std::string& s)
{
    if (s.empty()) return std::nullopt;
    const auto now = std::time(nullptr);
    const char unit = s.back();
    if (unit == 'm' || unit == 'h' || unit == 'd' || unit == 's') {
        try {
            const long long n = std::stoll(s.substr(0, s.size() - 1));
            const long long mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
            return now - n * mult;
        } catch (const std::exception&) {
        }
    }
    std::tm tm{};
    for (const char* fmt : {"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
        tm = {};
        const char* end = strptime(s.c_str(), fmt, &tm);
        if (end && *end == '\0') {
            tm.tm_isdst = -1;
            return static_cast<std::int64_t>(std::mktime(&tm));
        }
    }
    if (s.find_first_not_of("0123456789") == std::string::npos) return std::stoll(s);
    throw std::invalid_argument("cannot read --since '" + s + "' (try 2h, 7d, 2026-11-24, 2026-11-24 09:00 or unix seconds)");
}

int run_activity(const std::string& config_path, std::string db_path, const std::string& group, const std::string& since,
                 std::size_t limit)
{
    if (db_path.empty()) {
        auto config = bot::load_config(config_path);
        if (!config) return fail(config.error().message);
        db_path = config->database;
    }
    storage::ActivityFilter filter;
    if (!group.empty()) filter.group_id = group;
    try {
        filter.since = parse_since(since);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    filter.limit = limit;
    std::unique_ptr<SQLite::Database> db;
    try {
        db = storage::open_for_reading(db_path);
    } catch (const std::exception& e) {
        return fail("cannot open " + db_path + ": " + e.what() + " (has `qunbot serve` run yet?)");
    }
    const auto rows = storage::query_activity(*db, filter);
    std::printf("%-19s  %-24s  %-28s  %-20s  %5s  %s\n", "time", "group", "member", "kind", "scene", "detail");
    for (const auto& r : rows) {
        char when[32];
        const std::time_t t = r.at;
        std::tm tm{};
        localtime_r(&t, &tm);
        std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        std::printf("%-19s  %-24s  %-28s  %-20s  %5s  %s\n", when, r.group_id.empty() ? "-" : r.group_id.c_str(),
                    r.member_id.empty() ? "-" : r.member_id.c_str(), r.kind.c_str(),
                    r.scene ? std::to_string(*r.scene).c_str() : "-", r.detail.c_str());
    }
    std::printf("%zu row(s)\n", rows.size());
    return 0;
}

int run_rules_check(const std::string& dir)
{
    const auto r = rules::load_rules(dir);
    std::cout << r.report();
    return r.ok() ? 0 : 1;
}

int utc_offset_s(const std::string& config_path)
{
    auto config = bot::load_config(config_path);
    return config ? config->rules.utc_offset_minutes * 60 : 8 * 3600;
}

int run_rules_test(const std::string& dir, const std::string& config_path)
{
    const auto r = rules::load_rules(dir);
    if (!r.ok()) {
        std::cout << r.report();
        return 1;
    }
    for (const auto& d : r.diagnostics) std::cout << d.format() << "\n";
    const auto report = bot::run_rule_tests(dir, *r.rules, utc_offset_s(config_path));
    std::cout << report.text;
    return report.ok() ? 0 : 1;
}

int run_rules_explain(const std::string& dir, const std::string& event_file, const std::string& config_path)
{
    const auto r = rules::load_rules(dir);
    if (!r.ok()) {
        std::cout << r.report();
        return 1;
    }
    std::string out;
    const bool ok = bot::explain_event(event_file, *r.rules, utc_offset_s(config_path), out);
    (ok ? std::cout : std::cerr) << out;
    return ok ? 0 : 1;
}

struct TagArgs {
    std::string config;
    std::string database;
    std::string tenant;
    std::string member;
    std::string group;
    std::string tag;
    std::string reason = "set by staff";
};

int run_tags(const std::string& verb, TagArgs args)
{
    if (args.database.empty()) {
        auto config = bot::load_config(args.config);
        if (!config) return fail(config.error().message);
        args.database = config->database;
        if (args.tenant.empty() && !config->apps.empty()) args.tenant = config->apps.front().corp_id;
    }
    if (args.tenant.empty()) return fail("--tenant (corp id) is required");
    using clock = std::chrono::system_clock;
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now().time_since_epoch()).count();
    std::unique_ptr<SQLite::Database> db;
    try {
        db = verb == "list" ? storage::open_for_reading(args.database) : storage::open_for_writing(args.database, storage::Durability::full);
    } catch (const std::exception& e) {
        return fail("cannot open " + args.database + ": " + e.what());
    }
    if (verb == "list") {
        for (const auto& t : storage::list_tags(*db, args.tenant, args.member)) {
            const std::time_t when = t.since_ms / 1000;
            std::tm tm{};
            localtime_r(&when, &tm);
            char buf[32];
            std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
            std::cout << t.member << "  " << t.tag << "  since " << buf << "  " << t.source
                      << (t.rule_id.empty() ? "" : " " + t.rule_id) << (t.reason.empty() ? "" : "  (" + t.reason + ")") << "\n";
        }
        return 0;
    }
    if (args.tag.empty() || (args.member.empty() == args.group.empty())) return fail("give --tag and either --member or --group");
    const bool add = verb == "add";
    const bool changed = args.group.empty() ? storage::set_manual_tag(*db, args.tenant, args.member, args.tag, add, args.reason, now)
                                            : storage::set_group_tag(*db, args.tenant, args.group, args.tag, add, now);
    std::cout << (changed ? (add ? "tagged " : "untagged ") : "unchanged: ") << (args.group.empty() ? args.member : args.group) << " "
              << args.tag << "\n";
    return 0;
}

struct OutboxArgs {
    std::string config;
    std::string database;
    std::string status;
    std::size_t limit = 50;
    std::int64_t id = 0;
};

int run_outbox(const std::string& verb, OutboxArgs args)
{
    if (args.database.empty()) {
        auto config = bot::load_config(args.config);
        if (!config) return fail(config.error().message);
        args.database = config->database;
    }
    static const std::set<std::string> statuses{"", "pending", "in_flight", "done", "failed", "dead", "check", "skipped", "dropped"};
    if (!statuses.contains(args.status)) return fail("--status: expected pending, in_flight, done, failed, dead, check, skipped or dropped");
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::unique_ptr<SQLite::Database> db;
    try {
        db = verb.empty() || verb == "tasks" ? storage::open_for_reading(args.database) : storage::open_for_writing(args.database, storage::Durability::full);
    } catch (const std::exception& e) {
        return fail("cannot open " + args.database + ": " + e.what());
    }
    if (verb == "tasks") {
        for (const auto& t : storage::list_mass_tasks(*db, args.limit)) {
            int sent = 0, failed = 0;
            for (const auto& [chat, status] : t.results) {
                if (status == 1) ++sent;
                else if (status >= 2) ++failed;
            }
            std::cout << t.msgid << "  sender=" << t.sender << "  created " << local_time(t.created_ms) << "  groups=" << t.groups.size()
                      << "  sent=" << sent << "  failed=" << failed << (t.settled ? "  settled" : "  waiting for the sender") << "\n";
        }
        return 0;
    }
    if (verb.empty()) {
        for (const auto& [status, n] : storage::outbox_counts(*db)) std::cout << "# " << status << ": " << n << "\n";
        for (const auto& r : storage::list_outbox(*db, args.status, args.limit)) {
            const auto& a = r.action;
            std::cout << r.id << "  " << r.status << "  " << core::to_string(a.kind) << "  " << (a.group_id.empty() ? "-" : a.group_id)
                      << "  " << (a.target.empty() ? "-" : a.target) << "  rule=" << a.rule_id << "  attempts=" << r.attempts
                      << "  updated " << local_time(r.updated_ms) << "\n";
            if (!r.result.empty()) std::cout << "    result: " << r.result << "\n";
            if (!r.last_error.empty()) std::cout << "    last error: " << r.last_error << "\n";
            if ((r.status == "failed" || r.status == "pending") && r.next_try_ms > now) std::cout << "    next try: " << local_time(r.next_try_ms) << "\n";
        }
        return 0;
    }
    const bool ok = verb == "retry" ? storage::retry_outbox(*db, args.id, now) : storage::drop_outbox(*db, args.id, now);
    if (!ok) {
        auto row = storage::get_outbox(*db, args.id);
        if (!row) return fail("no outbox row " + std::to_string(args.id));
        return fail("outbox row " + std::to_string(args.id) + " is " + row->status +
                    (verb == "retry" ? ": only failed, dead, check and skipped rows can be retried" : ": done and dropped rows cannot be dropped"));
    }
    std::cout << (verb == "retry" ? "queued again: " : "dropped: ") << args.id << "\n";
    return 0;
}

struct ArchiveArgs {
    std::string config;
    std::string database;
    std::string fileid;
    std::string out;
};

// `qunbot archive status|media`: where the session archive stands, and one media file.
int run_archive(const std::string& verb, const ArchiveArgs& args)
{
    auto config = bot::load_config(args.config);
    if (!config) return fail(config.error().message);
    const auto database = args.database.empty() ? config->database : args.database;
    if (verb == "status") {
        if (!config->archive.enabled()) std::cout << "the session archive is not configured (archive.library)\n";
        if (!std::filesystem::exists(database)) return fail("no database at " + database);
        auto db = storage::open_for_reading(database);
        const auto now = bot::wall_now_ms();
        for (const auto& p : storage::archive_positions(*db)) {
            std::cout << p.tenant << "  seq " << p.seq << "  messages " << p.messages << "  last pull " << local_time(p.last_pull_ms)
                      << "  newest message " << local_time(p.last_message_ms);
            if (p.last_message_ms > 0) std::cout << " (" << (now - p.last_message_ms) / 1000 << " s ago)";
            std::cout << "\n  last error: " << (p.last_error.empty() ? "none" : p.last_error + " at " + local_time(p.error_ms)) << "\n";
        }
        return 0;
    }
    if (!config->archive.enabled()) return fail("the session archive is not configured (archive.library)");
    if (auto st = bot::resolve_secrets(*config); !st) return fail(st.error().message);
    std::string corp;
    for (const auto& a : config->apps) {
        if (a.name == config->archive.app || (config->archive.app.empty() && corp.empty())) corp = a.corp_id;
    }
    auto sdk = bot::open_archive_sdk(config->archive, corp);
    if (!sdk) return fail(sdk.error().message);
    auto bytes = (*sdk)->media(args.fileid, config->archive.media_max_bytes, config->archive.timeout_s);
    if (!bytes) return fail(bytes.error().message);
    std::ofstream out(args.out, std::ios::binary | std::ios::trunc);
    out << *bytes;
    if (!out) return fail("cannot write " + args.out);
    std::cout << "wrote " << bytes->size() << " bytes to " << args.out << "\n";
    return 0;
}

// `qunbot moderation eval FILE`: precision and recall of the ad rules on labelled messages.
int run_moderation_eval(const std::string& file, const std::string& rules_dir, std::vector<std::string> globs)
{
    auto loaded = rules::load_rules(rules_dir);
    if (!loaded.ok()) {
        for (const auto& d : loaded.diagnostics) std::cerr << d.format() << "\n";
        return fail("the rules in " + rules_dir + " have errors");
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) return fail("cannot read " + file);
    std::stringstream ss;
    ss << in.rdbuf();
    if (globs.empty()) globs.push_back("ads-*");
    const auto r = bot::evaluate_labelled(*loaded.rules, ss.str(), globs);
    for (const auto& p : r.problems) std::cerr << file << ": " << p << "\n";
    for (const auto& t : r.false_positive_texts) std::cout << "false positive: " << t << "\n";
    for (const auto& t : r.false_negative_texts) std::cout << "false negative: " << t << "\n";
    std::cout << "ads " << (r.true_positives + r.false_negatives) << ", ok " << (r.true_negatives + r.false_positives) << "\n";
    std::printf("precision %.4f  recall %.4f  F1 %.4f  (tp %zu, fp %zu, fn %zu, tn %zu)\n", r.precision(), r.recall(), r.f1(),
                r.true_positives, r.false_positives, r.false_negatives, r.true_negatives);
    return r.problems.empty() ? 0 : 1;
}

// `qunbot moderation log|undo`.
int run_moderation(const std::string& verb, const std::string& config_path, std::string database, const std::string& member,
                   std::size_t limit, std::int64_t id, const std::string& by, const std::string& reason)
{
    auto config = bot::load_config(config_path);
    if (!config) return fail(config.error().message);
    if (database.empty()) database = config->database;
    if (!std::filesystem::exists(database)) return fail("no database at " + database);
    if (verb == "log") {
        auto db = storage::open_for_reading(database);
        for (const auto& r : storage::moderation_log(*db, member, limit)) {
            std::cout << r.id << "  " << local_time(r.at_ms) << "  " << r.member << "  group " << r.group_id << "  rule " << r.rule_id
                      << "  offence " << r.offence << "  " << r.steps << (r.dry_run ? " (dry run: nothing done)" : "") << "\n    \"" << r.excerpt
                      << "\"  matched " << r.hits << "\n";
            for (const auto& o : r.outcomes) std::cout << "    " << o.kind << ": " << o.status << (o.detail.empty() ? "" : " (" + o.detail + ")") << "\n";
            if (r.undone_ms) std::cout << "    undone " << local_time(r.undone_ms) << " by " << r.undone_by << ": " << r.undo_reason << "\n";
        }
        return 0;
    }
    auto db = storage::open_for_writing(database, storage::Durability::full);
    SQLite::Transaction tx(*db);
    const auto undone = storage::undo_moderation(*db, id, by, reason, bot::wall_now_ms());
    if (!undone) return fail("no moderation entry " + std::to_string(id) + " that is not already undone");
    tx.commit();
    std::cout << "undone: entry " << id << " (" << undone->member << ", " << undone->steps << ")"
              << (undone->steps.find("blacklist") != std::string::npos ? "; taken off the blacklist" : "") << "\n";
    return 0;
}

struct ScheduleArgs {
    std::string config;
    std::string rules;
    std::string database;
    std::string id;
    int days = 7;
    bool now = false;
    std::string run_id;
    std::size_t limit = 20;
};

// `qunbot schedule list|next|history|run`: the schedules of the rule directory, over the groups
// the database knows.
int run_schedule(const std::string& verb, ScheduleArgs args)
{
    auto config = bot::load_config(args.config);
    if (!config) return fail(config.error().message);
    if (args.rules.empty()) args.rules = config->rules.dir;
    if (args.database.empty()) args.database = config->database;
    auto loaded = rules::load_rules(args.rules);
    if (!loaded.ok()) {
        for (const auto& d : loaded.diagnostics) std::cerr << d.format() << "\n";
        return fail("the rules in " + args.rules + " have errors");
    }
    const auto& set = *loaded.rules;
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    const int offset = config->rules.utc_offset_minutes * 60;
    std::vector<storage::ScheduleTarget> targets;
    try {
        targets = storage::schedule_targets(*storage::open_for_reading(args.database));
    } catch (const std::exception& e) {
        return fail("cannot read " + args.database + ": " + e.what());
    }
    auto count_targets = [&](const rules::Rule& r) {
        std::size_t n = 0;
        for (const auto& t : targets) n += rules::selects(set, r, t.group) ? 1 : 0;
        return n;
    };
    auto count_draw_targets = [&](const rules::DrawSpec& d) {
        std::size_t n = 0;
        for (const auto& t : targets) n += rules::selects(set, d, t.group) ? 1 : 0;
        return n;
    };
    const rules::Rule* chosen = nullptr;
    // Draws that open on a schedule are listed as "draw/<id>" (their slots are kept under that key).
    const rules::DrawSpec* chosen_draw = nullptr;
    if (args.id.starts_with("draw/")) {
        chosen_draw = set.find_draw(args.id.substr(5));
        if (!chosen_draw || !chosen_draw->has_opens) return fail("no draw \"" + args.id.substr(5) + "\" with `opens` in " + args.rules);
        if (verb == "run") return fail("a draw is opened by hand with `qunbot lottery open " + chosen_draw->id + " --group CHAT_ID`");
    } else if (!args.id.empty()) {
        chosen = set.find(args.id);
        if (!chosen || chosen->trigger != rules::Trigger::schedule) return fail("no scheduled rule \"" + args.id + "\" in " + args.rules);
    }
    if (verb == "list") {
        for (const auto& r : set.rules) {
            if (r.trigger != rules::Trigger::schedule) continue;
            const auto next = rules::next_slot(r.schedule, now);
            std::cout << r.id << "  \"" << r.schedule.text << "\"  " << r.schedule.tz << "  missed="
                      << (r.schedule.missed == rules::ScheduleSpec::Missed::skip ? "skip" : "catch_up") << "  groups=" << count_targets(r)
                      << "  next " << (next ? rules::format_local(next->at_ms, r.schedule.tz) : std::string("never")) << "  ("
                      << r.file << ":" << r.line << ")\n";
        }
        for (const auto& d : set.draws) {
            if (!d.has_opens) continue;
            const auto next = rules::next_slot(d.opens, now);
            std::cout << "draw/" << d.id << "  \"" << d.opens.text << "\"  " << d.opens.tz << "  opens a draw  groups=" << count_draw_targets(d)
                      << "  next " << (next ? rules::format_local(next->at_ms, d.opens.tz) : std::string("never")) << "  (" << d.file << ":"
                      << d.line << ")\n";
        }
        return 0;
    }
    if (verb == "next") {
        std::vector<std::tuple<std::int64_t, const rules::Rule*, std::string>> firings;
        const std::int64_t until = now + static_cast<std::int64_t>(args.days) * 86'400'000;
        for (const auto& r : set.rules) {
            if (r.trigger != rules::Trigger::schedule) continue;
            for (auto s = rules::next_slot(r.schedule, now); s && s->at_ms <= until && firings.size() < 10'000;
                 s = rules::next_slot(r.schedule, s->at_ms)) {
                firings.emplace_back(s->at_ms, &r, s->key);
            }
        }
        std::vector<std::tuple<std::int64_t, const rules::DrawSpec*>> openings;
        for (const auto& d : set.draws) {
            if (!d.has_opens) continue;
            for (auto s = rules::next_slot(d.opens, now); s && s->at_ms <= until && openings.size() < 10'000; s = rules::next_slot(d.opens, s->at_ms)) {
                openings.emplace_back(s->at_ms, &d);
            }
        }
        std::vector<std::pair<std::int64_t, std::string>> lines;
        for (const auto& [at, r, key] : firings) {
            lines.emplace_back(at, rules::format_local(at, r->schedule.tz) + "  " + r->id + "  groups=" + std::to_string(count_targets(*r)));
        }
        for (const auto& [at, d] : openings) {
            lines.emplace_back(at, rules::format_local(at, d->opens.tz) + "  draw/" + d->id + " opens  groups=" + std::to_string(count_draw_targets(*d)));
        }
        std::stable_sort(lines.begin(), lines.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        for (const auto& [at, line] : lines) std::cout << line << "\n";
        return 0;
    }
    if (verb == "history") {
        auto db = storage::open_for_reading(args.database);
        for (const auto& h : storage::slot_history(*db, args.id, args.limit)) {
            std::cout << h.slot << "  " << h.status << "  at " << local_time(h.at_ms) << "  recorded " << local_time(h.fired_ms)
                      << "  groups=" << h.groups << "  actions=" << h.actions << "\n";
        }
        return 0;
    }
    // run
    if (!args.now) return fail("`schedule run` needs --now (a manual run now, outside the schedule)");
    if (args.run_id.empty()) args.run_id = std::to_string(now);
    const auto f = bot::run_schedule_now(args.database, set, *chosen, args.run_id, now, offset);
    if (f.status == "already") {
        std::cout << "run " << args.run_id << " of " << f.rule_id << " happened before: nothing done\n";
        return 0;
    }
    std::cout << "ran " << f.rule_id << " as " << f.slot << ": " << f.groups << " group(s), " << f.actions
              << " action(s) in the outbox (the running bot delivers them)\n";
    return 0;
}

struct AppchatArgs {
    std::string config;
    std::string app;
    std::string name;
    std::string owner;
    std::string users;
    std::string chat_id;
};

boost::asio::awaitable<std::optional<wecom::ApiResult<wecom::Json>>> create_appchat(wecom::ApiClient* api, AppchatArgs a,
                                                                                     std::vector<std::string> users)
{
    co_return co_await wecom::appchat_create(*api, a.name, a.owner, std::move(users), a.chat_id);
}

// Creates an internal group chat through the app (appchat/create) and records it, so that the
// bot may post into it (appchat/send) and remove members from it (appchat/update).
int run_appchat_create(AppchatArgs args)
{
    auto config = bot::load_config(args.config);
    if (!config) return fail(config.error().message);
    if (auto st = bot::resolve_secrets(*config); !st) return fail(st.error().message);
    const bot::AppConfig* app = nullptr;
    for (const auto& a : config->apps) {
        if ((args.app.empty() || a.name == args.app) && a.has_api()) app = &a;
        if (app) break;
    }
    if (!app) return fail("no app" + (args.app.empty() ? std::string() : " named \"" + args.app + "\"") + " with WeCom API credentials (corp_secret)");
    std::vector<std::string> users;
    std::stringstream ss(args.users);
    for (std::string u; std::getline(ss, u, ',');) {
        if (!u.empty()) users.push_back(u);
    }
    if (users.size() < 2) return fail("--users: an app chat needs at least two members (comma-separated userids)");
    boost::asio::io_context ioc;
    auto api = bot::make_app_api(ioc.get_executor(), *app, config->delivery, {});
    auto f = boost::asio::co_spawn(ioc, create_appchat(api.api.get(), args, users), boost::asio::use_future);
    ioc.run();
    auto r = *f.get();
    if (!r) return fail("appchat/create failed: " + r.error().describe());
    const auto chat_id = r->value("chatid", std::string());
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto db = storage::open_for_writing(config->database, storage::Durability::full);
    storage::add_app_chat(*db, app->corp_id, app->name, chat_id, args.name, args.owner, now);
    std::cout << "created app chat " << chat_id << " (" << args.name << ", owner " << args.owner << ", " << users.size() << " members)\n";
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App cli{"qunbot: a group-operations bot for WeCom customer groups"};
    cli.require_subcommand(1);

    ServeArgs serve;
    auto* serve_cmd = cli.add_subcommand("serve", "Run the bot: receive WeCom callbacks and journal them");
    serve_cmd->add_option("--config", serve.config, "Configuration file (default: the embedded config/qunbot.json)");
    serve_cmd->add_option("--listen", serve.listen, "Override the listen address, ADDRESS:PORT (port 0 picks one)");
    serve_cmd->add_option("--db", serve.database, "Override the SQLite database path");
    serve_cmd->add_option("--threads", serve.threads, "Override the number of I/O threads");
    serve_cmd->add_option("--rules", serve.rules, "Override the rule directory");

    SendArgs send;
    auto* send_cmd = cli.add_subcommand("send-test-event", "Encrypt and sign a test event like WeCom does, and POST it");
    send_cmd->add_option("--to", send.to, "Callback URL, e.g. http://127.0.0.1:8080/wecom/demo")->required();
    send_cmd->add_option("--app", send.app, "App name in the configuration (its token and key are used)")->required();
    send_cmd->add_option("--config", send.config, "Configuration file (default: embedded)");
    send_cmd->add_option("--kind", send.spec.kind, "Event kind")->check(CLI::IsMember(wecom::test_event_kinds()));
    send_cmd->add_option("--chat", send.spec.chat_id, "Group chat id");
    send_cmd->add_option("--members", send.members, "Comma-separated member ids (joins/leaves)");
    send_cmd->add_option("--user", send.spec.user, "Staff userid (contact events, message sender)");
    send_cmd->add_option("--external-user", send.spec.external_user, "Customer external userid");
    send_cmd->add_option("--text", send.spec.text, "Message text");
    send_cmd->add_option("--state", send.spec.state, "Channel State of a contact event");
    send_cmd->add_option("--scene", send.spec.scene, "Join or quit scene");
    send_cmd->add_option("--count", send.count, "How many events to send")->check(CLI::Range(1, 1000000));
    send_cmd->add_flag("--json", send.json, "Use the JSON body variant");
    send_cmd->add_flag("--verify-url", send.verify, "Send a URL-verification GET instead of an event");

    std::string act_config, act_db, act_group, act_since;
    std::size_t act_limit = 50;
    auto* act_cmd = cli.add_subcommand("activity", "Print the recent member activity log");
    act_cmd->add_option("--config", act_config, "Configuration file (for the database path)");
    act_cmd->add_option("--db", act_db, "SQLite database path (overrides the configuration)");
    act_cmd->add_option("--group", act_group, "Only this group chat id");
    act_cmd->add_option("--since", act_since, "Only since: 2h, 7d, 2026-11-24, '2026-11-24 09:00' or unix seconds");
    act_cmd->add_option("--limit", act_limit, "At most this many rows");

    auto* rules_cmd = cli.add_subcommand("rules", "Check, test and explain rule files");
    rules_cmd->require_subcommand(1);
    std::string rules_dir, explain_event, rules_config;
    auto* check_cmd = rules_cmd->add_subcommand("check", "Print every diagnostic; exit 1 on errors");
    check_cmd->add_option("dir", rules_dir, "Rule directory")->required();
    auto* test_cmd = rules_cmd->add_subcommand("test", "Run the *.test.yaml cases next to the rules");
    test_cmd->add_option("dir", rules_dir, "Rule directory")->required();
    test_cmd->add_option("--config", rules_config, "Configuration (for the local time offset)");
    auto* explain_cmd = rules_cmd->add_subcommand("explain", "Which rules match an event, and why");
    explain_cmd->add_option("--rules", rules_dir, "Rule directory")->required();
    explain_cmd->add_option("--event", explain_event, "Scenario file: groups, members and `event:`")->required();
    explain_cmd->add_option("--config", rules_config, "Configuration (for the local time offset)");

    auto* tags_cmd = cli.add_subcommand("tags", "Manual member and group tags");
    tags_cmd->require_subcommand(1);
    TagArgs tag_args;
    std::string tag_verb;
    for (const char* verb : {"add", "remove", "list"}) {
        auto* c = tags_cmd->add_subcommand(verb, std::string(verb) + " tags");
        c->add_option("--config", tag_args.config, "Configuration (database path, default tenant)");
        c->add_option("--db", tag_args.database, "SQLite database path");
        c->add_option("--tenant", tag_args.tenant, "Corp id (default: the first app's)");
        c->add_option("--member", tag_args.member, "Member (userid or external userid)");
        if (std::string_view(verb) != "list") {
            c->add_option("--group", tag_args.group, "Group chat id (group tags, used by `groups:` selections)");
            c->add_option("--tag", tag_args.tag, "Tag name")->required();
            c->add_option("--reason", tag_args.reason, "Why (kept with the tag)");
        }
        c->callback([&tag_verb, verb] { tag_verb = verb; });
    }

    OutboxArgs outbox_args;
    std::string outbox_verb;
    auto* outbox_cmd = cli.add_subcommand("outbox", "List the outbox; retry or drop an action");
    outbox_cmd->require_subcommand(0, 1);
    outbox_cmd->add_option("--config", outbox_args.config, "Configuration (database path)");
    outbox_cmd->add_option("--db", outbox_args.database, "SQLite database path");
    outbox_cmd->add_option("--status", outbox_args.status, "Only rows in this state (pending, failed, dead, check, ...)");
    outbox_cmd->add_option("--limit", outbox_args.limit, "At most this many rows");
    for (const char* verb : {"retry", "drop"}) {
        auto* c = outbox_cmd->add_subcommand(verb, std::string(verb) == "retry" ? "Queue a failed, dead, check or skipped action again"
                                                                              : "Give up an action that is not done");
        c->add_option("id", outbox_args.id, "Outbox row id")->required();
        c->callback([&outbox_verb, verb] { outbox_verb = verb; });
    }
    outbox_cmd->add_subcommand("tasks", "Mass-send tasks and whether their senders sent them")->callback([&outbox_verb] {
        outbox_verb = "tasks";
    });

    AppchatArgs appchat_args;
    auto* appchat_cmd = cli.add_subcommand("appchat", "Internal group chats created by the app");
    appchat_cmd->require_subcommand(1);
    auto* appchat_create = appchat_cmd->add_subcommand("create", "Create one (appchat/create); the bot may then post and remove members there");
    appchat_create->add_option("--config", appchat_args.config, "Configuration (app credentials, database)");
    appchat_create->add_option("--app", appchat_args.app, "App name (default: the first with API credentials)");
    appchat_create->add_option("--name", appchat_args.name, "Group name (at most 50 characters)")->required();
    appchat_create->add_option("--owner", appchat_args.owner, "Owner userid")->required();
    appchat_create->add_option("--users", appchat_args.users, "Members, comma-separated userids (at least 2)")->required();
    appchat_create->add_option("--chatid", appchat_args.chat_id, "Chat id to use (0-9a-zA-Z, at most 32); WeCom makes one otherwise");

    ScheduleArgs schedule_args;
    std::string schedule_verb;
    auto* schedule_cmd = cli.add_subcommand("schedule", "Scheduled rules: list, next firings, history, manual run");
    schedule_cmd->require_subcommand(1);
    schedule_cmd->add_option("--config", schedule_args.config, "Configuration (rule directory, database)");
    schedule_cmd->add_option("--rules", schedule_args.rules, "Rule directory (overrides the configuration)");
    schedule_cmd->add_option("--db", schedule_args.database, "SQLite database path (overrides the configuration)");
    schedule_cmd->add_subcommand("list", "Every scheduled rule with its timing, groups and next firing")->callback([&] { schedule_verb = "list"; });
    auto* next_cmd = schedule_cmd->add_subcommand("next", "The next firings with their local times and target counts");
    next_cmd->add_option("--days", schedule_args.days, "How far ahead")->check(CLI::Range(1, 366));
    next_cmd->callback([&] { schedule_verb = "next"; });
    auto* history_cmd = schedule_cmd->add_subcommand("history", "Slots of one scheduled rule: fired, skipped, manual");
    history_cmd->add_option("id", schedule_args.id, "Rule id")->required();
    history_cmd->add_option("--limit", schedule_args.limit, "At most this many");
    history_cmd->callback([&] { schedule_verb = "history"; });
    auto* run_cmd = schedule_cmd->add_subcommand("run", "Run a scheduled rule now (exactly once per --run-id)");
    run_cmd->add_option("id", schedule_args.id, "Rule id")->required();
    run_cmd->add_flag("--now", schedule_args.now, "Run it now");
    run_cmd->add_option("--run-id", schedule_args.run_id, "Names this manual run (default: the current time)");
    run_cmd->callback([&] { schedule_verb = "run"; });

    bot::LotteryArgs lottery_args;
    bot::add_lottery_commands(cli, lottery_args);

    std::string mod_config, mod_db, mod_member, mod_by, mod_reason, mod_verb;
    std::int64_t mod_id = 0;
    std::size_t mod_limit = 50;
    std::string eval_file;
    std::string eval_rules = "config/rules";
    std::vector<std::string> eval_globs;
    auto* moderation_cmd = cli.add_subcommand("moderation", "Ad cleanup: measure the rules (eval), the audit log (log), lift a decision (undo)");
    moderation_cmd->require_subcommand(1);
    auto* eval_cmd = moderation_cmd->add_subcommand("eval", "Precision, recall and F1 of the ad rules on labelled messages (label<TAB>text)");
    eval_cmd->add_option("file", eval_file, "Labelled messages, one per line: ad|ok, a tab, the text")->required();
    eval_cmd->add_option("--rules", eval_rules, "Rule directory");
    eval_cmd->add_option("--rule", eval_globs, "Rules that flag an ad (globs; default ads-*)");
    auto* mlog = moderation_cmd->add_subcommand("log", "The moderation audit log, newest first");
    mlog->add_option("--member", mod_member, "Only this member");
    mlog->add_option("--limit", mod_limit, "At most this many");
    mlog->add_option("--config", mod_config, "Configuration (database)");
    mlog->add_option("--db", mod_db, "SQLite database path");
    mlog->callback([&] { mod_verb = "log"; });
    auto* mundo = moderation_cmd->add_subcommand("undo", "Lift a decision: its offence no longer counts, its blacklisting is removed");
    mundo->add_option("id", mod_id, "Log entry id")->required();
    mundo->add_option("--by", mod_by, "Who lifts it")->required();
    mundo->add_option("--reason", mod_reason, "Why");
    mundo->add_option("--config", mod_config, "Configuration (database)");
    mundo->add_option("--db", mod_db, "SQLite database path");
    mundo->callback([&] { mod_verb = "undo"; });

    ArchiveArgs archive_args;
    std::string archive_verb;
    auto* archive_cmd = cli.add_subcommand("archive", "The session archive (会话内容存档): status, media");
    archive_cmd->require_subcommand(1);
    archive_cmd->add_option("--config", archive_args.config, "Configuration (archive section, database)");
    archive_cmd->add_option("--db", archive_args.database, "SQLite database path (overrides the configuration)");
    archive_cmd->add_subcommand("status", "Last seq, messages stored, lag and the last error")->callback([&] { archive_verb = "status"; });
    auto* media_cmd = archive_cmd->add_subcommand("media", "Fetch one media file (chunked GetMediaData)");
    media_cmd->add_option("sdkfileid", archive_args.fileid, "The message's sdkfileid")->required();
    media_cmd->add_option("--out", archive_args.out, "Where to write it")->required();
    media_cmd->callback([&] { archive_verb = "media"; });

    // `qunbot schedule next --db X` as well as `qunbot schedule --db X next`.
    for (auto* parent : {schedule_cmd, outbox_cmd, archive_cmd}) {
        for (auto* sub : parent->get_subcommands({})) sub->fallthrough();
    }

    CLI11_PARSE(cli, argc, argv);
    try {
        if (*serve_cmd) return run_serve(serve);
        if (*send_cmd) return run_send(send);
        if (*act_cmd) return run_activity(act_config, act_db, act_group, act_since, act_limit);
        if (*check_cmd) return run_rules_check(rules_dir);
        if (*test_cmd) return run_rules_test(rules_dir, rules_config);
        if (*explain_cmd) return run_rules_explain(rules_dir, explain_event, rules_config);
        if (*tags_cmd) return run_tags(tag_verb, tag_args);
        if (*outbox_cmd) return run_outbox(outbox_verb, outbox_args);
        if (*appchat_create) return run_appchat_create(appchat_args);
        if (*schedule_cmd) return run_schedule(schedule_verb, schedule_args);
        if (*archive_cmd) return run_archive(archive_verb, archive_args);
        if (*eval_cmd) return run_moderation_eval(eval_file, eval_rules, eval_globs);
        if (!mod_verb.empty()) return run_moderation(mod_verb, mod_config, mod_db, mod_member, mod_limit, mod_id, mod_by, mod_reason);
        bool handled = false;
        const int rc = bot::run_lottery_commands(lottery_args, handled);
        if (handled) return rc;
    } catch (const std::exception& e) {
        // The one task boundary of the command-line tools.
        return fail(std::string("unexpected error: ") + e.what(), 70);
    }
    return 0;
}
