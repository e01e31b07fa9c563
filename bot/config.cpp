#include "bot/config.hpp"

#include "adapters/wecom/test_event.hpp"
#include "bot/core/suggest.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/stat.h>

namespace qunbot::bot {
namespace {

using nlohmann::json;

// Collects every problem instead of stopping at the first, so one edit fixes them all.
class Checker {
public:
    explicit Checker(std::string_view origin) : origin_(origin) {}

    void problem(const std::string& where, const std::string& what)
    {
        problems_.push_back(std::string(origin_) + ": " + (where.empty() ? "/" : where) + ": " + what);
    }

    void only_keys(const json& obj, const std::string& where, std::initializer_list<std::string_view> keys)
    {
        for (const auto& [k, v] : obj.items()) {
            if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
            std::string msg = "unknown key \"" + k + "\"";
            const auto best = core::closest(k, std::vector<std::string_view>(keys));
            if (!best.empty()) msg += "; did you mean \"" + best + "\"?";
            problem(where, msg);
        }
    }

    template <class T>
    void get(const json& obj, const std::string& where, const char* key, T& out)
    {
        auto it = obj.find(key);
        if (it == obj.end()) return;
        try {
            out = it->get<T>();
        } catch (const json::exception&) {
            problem(where + "/" + key, std::string("expected ") + type_name<T>() + ", got " + it->type_name());
        }
    }

    template <class T>
    void get_positive(const json& obj, const std::string& where, const char* key, T& out)
    {
        auto it = obj.find(key);
        if (it == obj.end()) return;
        if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0) {
            problem(where + "/" + key, "expected a positive integer");
            return;
        }
        out = static_cast<T>(it->get<std::uint64_t>());
    }

    [[nodiscard]] bool ok() const { return problems_.empty(); }
    [[nodiscard]] std::string report() const
    {
        std::string s;
        for (const auto& p : problems_) s += p + "\n";
        return s + std::to_string(problems_.size()) + (problems_.size() == 1 ? " error" : " errors");
    }

private:
    template <class T>
    static const char* type_name()
    {
        if constexpr (std::is_same_v<T, std::string>) return "a string";
        else if constexpr (std::is_same_v<T, bool>) return "true or false";
        else return "a number";
    }

    std::string_view origin_;
    std::vector<std::string> problems_;
};

std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

} // namespace

core::Result<Config> parse_config(std::string_view text, std::string_view origin)
{
    json root;
    try {
        root = json::parse(text);
    } catch (const json::parse_error& e) {
        // nlohmann's message carries "line L, column C".
        return core::make_error("config_syntax", std::string(origin) + ": " + e.what());
    }
    Checker c(origin);
    Config cfg;
    if (!root.is_object()) {
        c.problem("", "the configuration must be a JSON object");
        return core::make_error("config_invalid", c.report());
    }
    c.only_keys(root, "", {"listen", "threads", "database", "log_level", "http", "journal", "shutdown_grace_ms", "rules", "delivery",
                          "wechat_pay", "archive", "apps"});
    if (auto it = root.find("archive"); it != root.end()) {
        if (!it->is_object()) c.problem("/archive", "expected an object");
        else {
            auto& ar = cfg.archive;
            const std::string at = "/archive";
            c.only_keys(*it, at, {"library", "app", "secrets_file", "secret_env", "private_keys", "poll_ms", "batch", "timeout_s", "media_max_bytes",
                                  "scan_qr"});
            c.get(*it, at, "scan_qr", ar.scan_qr);
            c.get(*it, at, "library", ar.library);
            c.get(*it, at, "app", ar.app);
            c.get(*it, at, "secrets_file", ar.secrets_file);
            c.get(*it, at, "secret_env", ar.secret_env);
            c.get_positive(*it, at, "poll_ms", ar.poll_ms);
            c.get_positive(*it, at, "batch", ar.batch);
            c.get_positive(*it, at, "timeout_s", ar.timeout_s);
            c.get_positive(*it, at, "media_max_bytes", ar.media_max_bytes);
            if (ar.batch > 1000) c.problem(at + "/batch", "GetChatData returns at most 1000 records per call");
            if (auto k = it->find("private_keys"); k != it->end()) {
                if (!k->is_array()) c.problem(at + "/private_keys", "expected a list of {\"version\": N, \"file\": \"key.pem\"}");
                else {
                    for (std::size_t i = 0; i < k->size(); ++i) {
                        const auto& e = (*k)[i];
                        const auto where = at + "/private_keys/" + std::to_string(i);
                        if (!e.is_object() || !e.contains("version") || !e["version"].is_number_integer() || !e.contains("file") ||
                            !e["file"].is_string()) {
                            c.problem(where, "expected {\"version\": N, \"file\": \"key.pem\"}");
                            continue;
                        }
                        ar.private_keys.emplace_back(e["version"].get<int>(), e["file"].get<std::string>());
                    }
                }
            }
            if (ar.enabled()) {
                if (ar.private_keys.empty()) c.problem(at + "/private_keys", "the archive needs the private key of each publickey_ver in use");
                if (ar.secrets_file.empty() == ar.secret_env.empty()) c.problem(at, "give either secrets_file or secret_env for the archive Secret");
            }
        }
    }
    if (auto it = root.find("wechat_pay"); it != root.end()) {
        if (!it->is_object()) c.problem("/wechat_pay", "expected an object");
        else {
            auto& w = cfg.wechat_pay;
            const std::string at = "/wechat_pay";
            c.only_keys(*it, at, {"mch_id", "app", "api_base_url", "ca_file", "cert_file", "key_file", "secrets_file", "mch_key_env",
                                  "payment_secret_env", "sender_name", "agent_id", "act_name", "wishing", "remark", "scene_id", "dry_run",
                                  "per_user_daily_fen", "per_user_daily_count", "daily_total_fen", "max_attempts", "retry_base_ms",
                                  "poll_ms", "connect_timeout_ms", "request_timeout_ms"});
            for (auto [key, field] : {std::pair{"mch_id", &w.mch_id}, {"app", &w.app}, {"api_base_url", &w.api_base_url},
                                      {"ca_file", &w.ca_file}, {"cert_file", &w.cert_file}, {"key_file", &w.key_file},
                                      {"secrets_file", &w.secrets_file}, {"mch_key_env", &w.mch_key_env},
                                      {"payment_secret_env", &w.payment_secret_env}, {"sender_name", &w.sender_name},
                                      {"act_name", &w.act_name}, {"wishing", &w.wishing}, {"remark", &w.remark}, {"scene_id", &w.scene_id}}) {
                c.get(*it, at, key, *field);
            }
            c.get(*it, at, "agent_id", w.agent_id);
            c.get(*it, at, "dry_run", w.dry_run);
            c.get(*it, at, "per_user_daily_fen", w.per_user_daily_fen);
            c.get(*it, at, "per_user_daily_count", w.per_user_daily_count);
            c.get(*it, at, "daily_total_fen", w.daily_total_fen);
            c.get_positive(*it, at, "max_attempts", w.max_attempts);
            c.get_positive(*it, at, "retry_base_ms", w.retry_base_ms);
            c.get_positive(*it, at, "poll_ms", w.poll_ms);
            c.get_positive(*it, at, "connect_timeout_ms", w.connect_timeout_ms);
            c.get_positive(*it, at, "request_timeout_ms", w.request_timeout_ms);
            if (w.enabled()) {
                if (w.cert_file.empty() || w.key_file.empty()) c.problem(at, "cert_file and key_file (the merchant API certificate) are required: the API uses mutual TLS");
                if (w.secrets_file.empty() && (w.mch_key_env.empty() || w.payment_secret_env.empty())) {
                    c.problem(at, "give secrets_file, or both mch_key_env and payment_secret_env");
                }
                if (w.mch_id.size() > 10 || w.mch_id.find_first_not_of("0123456789") != std::string::npos) c.problem(at + "/mch_id", "expected the merchant number (digits)");
                if (!w.sender_name.empty() && w.agent_id > 0) c.problem(at, "sender_name and agent_id are mutually exclusive; set sender_name to \"\" to use agent_id");
            }
        }
    }
    if (auto it = root.find("delivery"); it != root.end()) {
        if (!it->is_object()) c.problem("/delivery", "expected an object");
        else {
            auto& d = cfg.delivery;
            c.only_keys(*it, "/delivery", {"concurrency", "max_attempts", "retry_base_ms", "poll_ms", "mass_send_daily_quota",
                                           "message_per_member_minute", "message_per_member_hour", "webhook_per_minute",
                                           "api_per_minute", "duplicate_check_s", "connect_timeout_ms", "request_timeout_ms",
                                           "frequency_pause_ms", "directory_sync", "directory_resync_ms", "task_check_ms"});
            c.get_positive(*it, "/delivery", "directory_resync_ms", d.directory_resync_ms);
            c.get_positive(*it, "/delivery", "task_check_ms", d.task_check_ms);
            c.get_positive(*it, "/delivery", "concurrency", d.concurrency);
            c.get_positive(*it, "/delivery", "max_attempts", d.max_attempts);
            c.get_positive(*it, "/delivery", "retry_base_ms", d.retry_base_ms);
            c.get_positive(*it, "/delivery", "poll_ms", d.poll_ms);
            c.get(*it, "/delivery", "mass_send_daily_quota", d.mass_send_daily_quota);
            c.get_positive(*it, "/delivery", "message_per_member_minute", d.message_per_member_minute);
            c.get_positive(*it, "/delivery", "message_per_member_hour", d.message_per_member_hour);
            c.get_positive(*it, "/delivery", "webhook_per_minute", d.webhook_per_minute);
            c.get_positive(*it, "/delivery", "api_per_minute", d.api_per_minute);
            c.get(*it, "/delivery", "duplicate_check_s", d.duplicate_check_s);
            if (d.duplicate_check_s > 4 * 3600) c.problem("/delivery/duplicate_check_s", "WeCom allows at most 14400 (4 h)");
            c.get_positive(*it, "/delivery", "connect_timeout_ms", d.connect_timeout_ms);
            c.get_positive(*it, "/delivery", "request_timeout_ms", d.request_timeout_ms);
            c.get_positive(*it, "/delivery", "frequency_pause_ms", d.frequency_pause_ms);
            c.get(*it, "/delivery", "directory_sync", d.directory_sync);
        }
    }
    if (auto it = root.find("listen"); it != root.end()) {
        if (!it->is_object()) c.problem("/listen", "expected an object");
        else {
            c.only_keys(*it, "/listen", {"address", "port"});
            c.get(*it, "/listen", "address", cfg.address);
            if (auto p = it->find("port"); p != it->end()) {
                if (!p->is_number_unsigned() || p->get<std::uint64_t>() > 65535) c.problem("/listen/port", "expected a port number 0..65535");
                else cfg.port = static_cast<std::uint16_t>(p->get<std::uint64_t>());
            }
        }
    }
    c.get(root, "", "threads", cfg.threads);
    c.get(root, "", "database", cfg.database);
    c.get(root, "", "log_level", cfg.log_level);
    {
        static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "off"};
        if (!levels.contains(cfg.log_level)) c.problem("/log_level", "expected one of trace, debug, info, warn, error, off");
    }
    c.get_positive(root, "", "shutdown_grace_ms", cfg.shutdown_grace_ms);
    if (auto it = root.find("http"); it != root.end()) {
        if (!it->is_object()) c.problem("/http", "expected an object");
        else {
            c.only_keys(*it, "/http", {"max_body_bytes", "max_header_bytes", "read_timeout_ms", "idle_timeout_ms", "max_connections"});
            c.get_positive(*it, "/http", "max_body_bytes", cfg.http.max_body_bytes);
            c.get_positive(*it, "/http", "max_header_bytes", cfg.http.max_header_bytes);
            c.get_positive(*it, "/http", "read_timeout_ms", cfg.http.read_timeout_ms);
            c.get_positive(*it, "/http", "idle_timeout_ms", cfg.http.idle_timeout_ms);
            c.get_positive(*it, "/http", "max_connections", cfg.http.max_connections);
        }
    }
    if (auto it = root.find("journal"); it != root.end()) {
        if (!it->is_object()) c.problem("/journal", "expected an object");
        else {
            c.only_keys(*it, "/journal", {"durability", "max_batch", "wal_limit_mb"});
            std::string d = "full";
            c.get(*it, "/journal", "durability", d);
            if (d == "full") cfg.durability = storage::Durability::full;
            else if (d == "normal") cfg.durability = storage::Durability::normal;
            else c.problem("/journal/durability", "expected \"full\" or \"normal\"");
            c.get_positive(*it, "/journal", "max_batch", cfg.max_batch);
            c.get_positive(*it, "/journal", "wal_limit_mb", cfg.wal_limit_mb);
            if (cfg.wal_limit_mb > (std::int64_t{1} << 20)) c.problem("/journal/wal_limit_mb", "expected at most 1048576 (1 TiB)");
        }
    }
    if (auto it = root.find("rules"); it != root.end()) {
        if (!it->is_object()) c.problem("/rules", "expected an object");
        else {
            c.only_keys(*it, "/rules", {"dir", "watch", "utc_offset_minutes", "reload_debounce_ms", "notify"});
            c.get(*it, "/rules", "dir", cfg.rules.dir);
            c.get(*it, "/rules", "watch", cfg.rules.watch);
            c.get(*it, "/rules", "utc_offset_minutes", cfg.rules.utc_offset_minutes);
            c.get_positive(*it, "/rules", "reload_debounce_ms", cfg.rules.reload_debounce_ms);
            if (cfg.rules.utc_offset_minutes < -720 || cfg.rules.utc_offset_minutes > 840) {
                c.problem("/rules/utc_offset_minutes", "expected -720..840");
            }
            if (auto n = it->find("notify"); n != it->end()) {
                if (!n->is_object()) c.problem("/rules/notify", "expected an object");
                else {
                    c.only_keys(*n, "/rules/notify", {"app", "user", "group"});
                    c.get(*n, "/rules/notify", "app", cfg.rules.notify.app);
                    c.get(*n, "/rules/notify", "user", cfg.rules.notify.user);
                    c.get(*n, "/rules/notify", "group", cfg.rules.notify.group);
                    if (cfg.rules.notify.app.empty() || cfg.rules.notify.user.empty() == cfg.rules.notify.group.empty()) {
                        c.problem("/rules/notify", "give app, and either user or group");
                    }
                }
            }
        }
    }
    std::set<std::string> names, paths;
    if (auto it = root.find("apps"); it != root.end()) {
        if (!it->is_array()) c.problem("/apps", "expected an array");
        else {
            for (std::size_t i = 0; i < it->size(); ++i) {
                const auto& a = (*it)[i];
                const std::string where = "/apps/" + std::to_string(i);
                if (!a.is_object()) {
                    c.problem(where, "expected an object");
                    continue;
                }
                c.only_keys(a, where, {"name", "path", "corp_id", "secrets_file", "token_env", "aes_key_env", "generate_secrets",
                                       "api_base_url", "api_ca_file", "agent_id", "corp_secret_env", "kind"});
                AppConfig app;
                std::string kind = "app";
                c.get(a, where, "kind", kind);
                if (kind == "aibot") app.kind = AppKind::aibot;
                else if (kind != "app") c.problem(where + "/kind", "expected \"app\" (a self-built app's callbacks) or \"aibot\" (an AI bot in API mode)");
                c.get(a, where, "name", app.name);
                c.get(a, where, "path", app.path);
                c.get(a, where, "corp_id", app.corp_id);
                c.get(a, where, "secrets_file", app.secrets_file);
                c.get(a, where, "token_env", app.token_env);
                c.get(a, where, "aes_key_env", app.aes_key_env);
                c.get(a, where, "generate_secrets", app.generate_secrets);
                c.get(a, where, "api_base_url", app.api_base_url);
                c.get(a, where, "api_ca_file", app.api_ca_file);
                c.get(a, where, "agent_id", app.agent_id);
                c.get(a, where, "corp_secret_env", app.corp_secret_env);
                if (!app.api_base_url.starts_with("https://")) c.problem(where + "/api_base_url", "must be an https:// URL");
                if (app.name.empty()) c.problem(where + "/name", "required");
                else if (!names.insert(app.name).second) c.problem(where + "/name", "duplicate app name \"" + app.name + "\"");
                if (app.path.empty() || app.path.front() != '/') c.problem(where + "/path", "required, and must start with '/'");
                else if (app.path == "/healthz" || app.path == "/metrics" || app.path.starts_with("/admin/")) c.problem(where + "/path", "reserved path");
                else if (!paths.insert(app.path).second) c.problem(where + "/path", "duplicate path \"" + app.path + "\"");
                if (app.corp_id.empty()) {
                    c.problem(where + "/corp_id", app.kind == AppKind::aibot ? "required (the corp the AI bot belongs to: its events are kept under it)"
                                                                         : "required (the receiveid the callbacks are encrypted for)");
                }
                const bool from_file = !app.secrets_file.empty();
                const bool from_env = !app.token_env.empty() || !app.aes_key_env.empty();
                if (from_file == from_env) c.problem(where, "give either secrets_file, or both token_env and aes_key_env");
                else if (from_env && (app.token_env.empty() || app.aes_key_env.empty()))
                    c.problem(where, "token_env and aes_key_env go together");
                if (app.generate_secrets && !from_file) c.problem(where + "/generate_secrets", "needs secrets_file");
                cfg.apps.push_back(std::move(app));
            }
        }
    }
    if (cfg.rules.notify.enabled() && !names.contains(cfg.rules.notify.app)) {
        c.problem("/rules/notify/app", "no app named \"" + cfg.rules.notify.app + "\"");
    }
    if (!c.ok()) return core::make_error("config_invalid", c.report());
    return cfg;
}

core::Result<Config> load_config(const std::string& path)
{
    if (path.empty()) return parse_config(embedded_default_config(), "<embedded config/qunbot.json>");
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        return core::make_error("config_missing", path + ": no such configuration file");
    }
    return parse_config(read_file(path), path);
}

core::Status resolve_secrets(Config& config)
{
    std::string problems;
    for (auto& app : config.apps) {
        std::string token, key;
        if (!app.secrets_file.empty()) {
            std::error_code ec;
            if (!std::filesystem::exists(app.secrets_file, ec) && app.generate_secrets) {
                const auto parent = std::filesystem::path(app.secrets_file).parent_path();
                if (!parent.empty()) std::filesystem::create_directories(parent, ec);
                json j{{"token", wecom::generate_token()}, {"encoding_aes_key", wecom::generate_encoding_aes_key()}};
                const auto old_mask = ::umask(077); // secrets file readable by its owner only
                std::ofstream out(app.secrets_file, std::ios::trunc);
                out << j.dump(2) << "\n";
                out.close();
                ::umask(old_mask);
                if (!out) {
                    problems += "app \"" + app.name + "\": cannot write secrets file " + app.secrets_file + "\n";
                    continue;
                }
                app.generated = true;
            }
            const auto text = read_file(app.secrets_file);
            if (text.empty()) {
                problems += "app \"" + app.name + "\": cannot read secrets file " + app.secrets_file + "\n";
                continue;
            }
            const auto j = json::parse(text, nullptr, false);
            if (j.is_discarded() || !j.is_object() || !j.contains("token") || !j["token"].is_string() ||
                !j.contains("encoding_aes_key") || !j["encoding_aes_key"].is_string()) {
                // Do not echo the file: it holds the secrets.
                problems += "app \"" + app.name + "\": secrets file " + app.secrets_file +
                            " must be a JSON object with string fields \"token\" and \"encoding_aes_key\"\n";
                continue;
            }
            token = j["token"].get<std::string>();
            key = j["encoding_aes_key"].get<std::string>();
            if (auto cs = j.find("corp_secret"); cs != j.end()) {
                if (cs->is_string()) app.corp_secret = core::Secret(cs->get<std::string>());
                else problems += "app \"" + app.name + "\": \"corp_secret\" in " + app.secrets_file + " must be a string\n";
            }
            if (auto rb = j.find("robots"); rb != j.end()) {
                if (!rb->is_object()) problems += "app \"" + app.name + "\": \"robots\" in " + app.secrets_file + " must map chat ids to webhook keys\n";
                else {
                    for (const auto& [chat, k] : rb->items()) {
                        if (k.is_string()) app.robots[chat] = core::Secret(k.get<std::string>());
                        else problems += "app \"" + app.name + "\": robot key for " + chat + " must be a string\n";
                    }
                }
            }
        } else {
            const char* t = std::getenv(app.token_env.c_str());
            const char* k = std::getenv(app.aes_key_env.c_str());
            if (t == nullptr || *t == '\0') problems += "app \"" + app.name + "\": environment variable " + app.token_env + " is not set\n";
            if (k == nullptr || *k == '\0') problems += "app \"" + app.name + "\": environment variable " + app.aes_key_env + " is not set\n";
            if (t == nullptr || k == nullptr || *t == '\0' || *k == '\0') continue;
            token = t;
            key = k;
        }
        if (!app.corp_secret_env.empty()) {
            const char* cs = std::getenv(app.corp_secret_env.c_str());
            if (cs == nullptr || *cs == '\0') problems += "app \"" + app.name + "\": environment variable " + app.corp_secret_env + " is not set\n";
            else app.corp_secret = core::Secret(cs);
        }
        app.token = core::Secret(std::move(token));
        app.encoding_aes_key = core::Secret(std::move(key));
    }
    if (auto& ar = config.archive; ar.enabled()) {
        if (!ar.secrets_file.empty()) {
            const auto j = json::parse(read_file(ar.secrets_file), nullptr, false);
            if (j.is_discarded() || !j.is_object() || !j.contains("archive_secret") || !j["archive_secret"].is_string()) {
                problems += "archive: secrets file " + ar.secrets_file + " must be a JSON object with a string field \"archive_secret\"\n";
            } else {
                ar.secret = core::Secret(j["archive_secret"].get<std::string>());
            }
        } else if (const char* v = std::getenv(ar.secret_env.c_str()); v == nullptr || *v == '\0') {
            problems += "archive: environment variable " + ar.secret_env + " is not set\n";
        } else {
            ar.secret = core::Secret(v);
        }
    }
    if (auto& w = config.wechat_pay; w.enabled()) {
        std::string mch_key, payment_secret;
        if (!w.secrets_file.empty()) {
            const auto j = json::parse(read_file(w.secrets_file), nullptr, false);
            if (j.is_discarded() || !j.is_object() || !j.contains("mch_key") || !j["mch_key"].is_string() || !j.contains("payment_secret") ||
                !j["payment_secret"].is_string()) {
                problems += "wechat_pay: secrets file " + w.secrets_file + " must be a JSON object with string fields \"mch_key\" and \"payment_secret\"\n";
            } else {
                mch_key = j["mch_key"].get<std::string>();
                payment_secret = j["payment_secret"].get<std::string>();
            }
        } else {
            const char* k = std::getenv(w.mch_key_env.c_str());
            const char* p = std::getenv(w.payment_secret_env.c_str());
            if (k == nullptr || *k == '\0') problems += "wechat_pay: environment variable " + w.mch_key_env + " is not set\n";
            else mch_key = k;
            if (p == nullptr || *p == '\0') problems += "wechat_pay: environment variable " + w.payment_secret_env + " is not set\n";
            else payment_secret = p;
        }
        w.mch_key = core::Secret(std::move(mch_key));
        w.payment_secret = core::Secret(std::move(payment_secret));
    }
    if (!problems.empty()) {
        problems.pop_back();
        return core::make_error("secrets_unavailable", problems);
    }
    return core::Ok{};
}

} // namespace qunbot::bot
