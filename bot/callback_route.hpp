#pragma once
/// \file
/// The routes: WeCom callback URLs (GET URL verification, POST events) for every configured
/// app, `/healthz` and `/metrics`. A POST is answered 200 only once its event is committed to
/// the inbox journal; everything rejected gets a specific status, log line and metric.

#include "adapters/wecom/callback_crypto.hpp"
#include "bot/config.hpp"
#include "bot/http_types.hpp"
#include "bot/core/result.hpp"
#include "rules/loader.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qunbot::storage {
class Journal;
}

namespace qunbot::bot {

class Registry;
class Counter;

class Routes {
public:
    /// Builds the crypto for each app; fails (naming the app) if a key is not a valid EncodingAESKey.
    static core::Result<std::unique_ptr<Routes>> create(const std::vector<AppConfig>& apps, storage::Journal& journal,
                                                        Registry& metrics);

    /// The `Handler` for the HTTP server.
    void handle(HttpRequest request, Respond respond);

    /// Enables `POST /admin/reload` (loopback clients only): runs `reload` and answers with its
    /// report, 200 when the new rules are live, 422 when they were rejected.
    void on_admin_reload(std::function<rules::LoadResult()> reload);

    /// Decoded query parameters.
    using Params = std::map<std::string, std::string>;

private:
    struct App {
        std::string name;
        wecom::CallbackCrypto crypto;
        bool aibot = false;  ///< JSON AI-bot callbacks (receiveid "")
        std::string tenant;  ///< the corp id events are kept under
        // Resolved once: the hot path must not look series up by label on every callback.
        std::vector<Counter*> events_by_kind;
        Counter* duplicates = nullptr;
        Counter* journal_failures = nullptr;
        Counter* requests_stored = nullptr;
        Counter* requests_duplicate = nullptr;
    };
    Routes(std::map<std::string, App> apps, storage::Journal& journal, Registry& metrics);

    void verify_url(const App& app, const HttpRequest& req, const Params& query, const Respond& respond);
    void receive(const App& app, const HttpRequest& req, const Params& query, const Respond& respond);
    void count(const std::string& route, const std::string& outcome);
    void reject(const App& app, const HttpRequest& req, const core::Error& error, int status, const Respond& respond);

    std::map<std::string, App> apps_; // by path
    std::function<rules::LoadResult()> admin_reload_;
    storage::Journal& journal_;
    Registry& metrics_;
};

} // namespace qunbot::bot
