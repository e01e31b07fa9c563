#include "adapters/wecom/api_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>

namespace qunbot::wecom {

namespace net = boost::asio;
using net::awaitable;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr int network_attempts = 3;

std::string encode(const std::string& s) { return boost::urls::encode(s, boost::urls::unreserved_chars); }

ApiError error(ApiErrorKind kind, const std::string& api, std::string message, int errcode = 0)
{
    return ApiError{kind, errcode, std::move(message), api};
}

ApiErrorKind kind_of_errcode(int errcode)
{
    switch (errcode) {
    case -1: return ApiErrorKind::busy;
    case 40001:
    case 40014:
    case 42001: return ApiErrorKind::token_invalid;
    case 45009: return ApiErrorKind::frequency_limited;
    case 45033: return ApiErrorKind::concurrency_limited;
    default: return ApiErrorKind::rejected;
    }
}

awaitable<void> pause(std::chrono::milliseconds d)
{
    net::steady_timer t(co_await net::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(use_tuple);
}

} // namespace

ApiClient::ApiClient(https::Client& http, ApiOptions options)
    : http_(http), options_(std::move(options)), refreshed_(http.executor())
{
    if (!options_.now_ms) {
        options_.now_ms = [] {
            return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        };
    }
}

awaitable<ApiResult<Json>> ApiClient::exchange(std::string api, std::string method, std::string target, std::string body)
{
    auto r = co_await http_.request(options_.origin, std::move(method), std::move(target), std::move(body),
                                    "application/json; charset=utf-8");
    if (!r) {
        const auto& c = r.error().code;
        const bool sent = c == "timeout" || c == "io_error";
        co_return error(sent ? ApiErrorKind::unknown_outcome : ApiErrorKind::not_sent, api, r.error().message);
    }
    if (r->status >= 500) co_return error(ApiErrorKind::server_error, api, "HTTP " + std::to_string(r->status));
    if (r->status != 200) co_return error(ApiErrorKind::bad_response, api, "HTTP " + std::to_string(r->status));
    auto j = Json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) co_return error(ApiErrorKind::bad_response, api, "answer is not a JSON object");
    const int errcode = j.value("errcode", 0);
    if (errcode != 0) {
        co_return error(kind_of_errcode(errcode), api, j.value("errmsg", std::string()), errcode);
    }
    co_return j;
}

awaitable<ApiResult<std::string>> ApiClient::token()
{
    for (;;) {
        if (!token_.empty() && options_.now_ms() < token_expires_ms_) co_return token_;
        if (refreshing_) {
            const auto gen = generation_;
            co_await refreshed_.async_wait(use_tuple);
            // Everyone who waited on a refresh that failed gets its error, instead of each
            // starting a refresh of their own (a wrong secret would otherwise multiply the
            // gettoken calls, and WeCom bans an IP after repeated wrong secrets).
            if (generation_ != gen && last_refresh_error_) co_return *last_refresh_error_;
            continue;
        }
        refreshing_ = true;
        refreshed_.expires_at(net::steady_timer::time_point::max());
        ++stats_.token_fetches;
        const auto started = options_.now_ms();
        const std::string target = "/cgi-bin/gettoken?corpid=" + encode(options_.corp_id) +
                                   "&corpsecret=" + encode(std::string(options_.corp_secret.reveal()));
        ApiResult<Json> r = error(ApiErrorKind::not_sent, "gettoken", "not attempted");
        for (int attempt = 0; attempt < network_attempts; ++attempt) {
            r = co_await exchange("gettoken", "GET", target, {});
            if (r || !r.error().transient() || r.error().kind == ApiErrorKind::token_invalid) break;
            co_await pause(options_.busy_backoff * (1 << attempt));
        }
        refreshing_ = false;
        ++generation_;
        std::optional<ApiError> failure;
        if (!r) {
            failure = r.error();
            if (failure->kind == ApiErrorKind::rejected || failure->kind == ApiErrorKind::token_invalid) {
                failure->kind = ApiErrorKind::credentials;
            }
        } else if (!r->contains("access_token") || !(*r)["access_token"].is_string() || (*r)["access_token"].get<std::string>().empty()) {
            failure = error(ApiErrorKind::bad_response, "gettoken", "no access_token in the answer");
        } else {
            token_ = (*r)["access_token"].get<std::string>();
            const std::int64_t expires_s = std::max<std::int64_t>(1, r->value("expires_in", 7200));
            // Stop using a token a while before WeCom's expiry, so no call carries one that
            // expires on the way (a quarter of its life, at most five minutes).
            const std::int64_t margin_s = std::min<std::int64_t>(300, expires_s / 4);
            token_expires_ms_ = started + (expires_s - margin_s) * 1000;
        }
        last_refresh_error_ = failure;
        refreshed_.cancel();
        if (failure) co_return *failure;
        co_return token_;
    }
}

void ApiClient::invalidate(const std::string& stale)
{
    if (token_ == stale) {
        token_.clear();
        token_expires_ms_ = 0;
    }
}

awaitable<ApiResult<Json>> ApiClient::with_token(std::string api, std::string method, std::string query, std::string body,
                                                 bool retry_unknown)
{
    bool refreshed = false;
    int busy = 0;
    int network = 0;
    for (;;) {
        auto tok = co_await token();
        if (!tok) {
            auto e = tok.error();
            e.api = api;
            co_return e;
        }
        std::string target = "/cgi-bin/" + api + "?access_token=" + encode(*tok);
        if (!query.empty()) target += "&" + query;
        auto r = co_await exchange(api, method, std::move(target), body);
        if (r) co_return r;
        const auto& e = r.error();
        if (e.kind == ApiErrorKind::token_invalid && !refreshed) {
            // WeCom may revoke a token before its expiry ("提前使access_token失效"): fetch a new
            // one and try once more.
            refreshed = true;
            ++stats_.token_refreshes_on_error;
            invalidate(*tok);
            continue;
        }
        if (e.kind == ApiErrorKind::busy && busy < options_.busy_retries) {
            co_await pause(options_.busy_backoff * (1 << busy));
            ++busy;
            ++stats_.busy_retries;
            continue;
        }
        const bool network_retry = e.kind == ApiErrorKind::not_sent || e.kind == ApiErrorKind::server_error ||
                                   (e.kind == ApiErrorKind::unknown_outcome && retry_unknown);
        if (network_retry && network + 1 < network_attempts) {
            co_await pause(options_.busy_backoff * (1 << network));
            ++network;
            continue;
        }
        co_return r;
    }
}

awaitable<ApiResult<Json>> ApiClient::post(std::string api, Json body, bool retry_unknown)
{
    co_return co_await with_token(std::move(api), "POST", {}, body.dump(), retry_unknown);
}

awaitable<ApiResult<Json>> ApiClient::get(std::string api, std::string query)
{
    co_return co_await with_token(std::move(api), "GET", std::move(query), {}, true);
}

awaitable<ApiResult<Json>> ApiClient::webhook(core::Secret key, Json body)
{
    // Robots have no duplicate check: a send whose answer was lost is not repeated.
    const std::string target = "/cgi-bin/webhook/send?key=" + encode(std::string(key.reveal()));
    ApiResult<Json> r = error(ApiErrorKind::not_sent, "webhook/send", "not attempted");
    for (int attempt = 0; attempt < network_attempts; ++attempt) {
        r = co_await exchange("webhook/send", "POST", target, body.dump());
        if (r) co_return r;
        const auto k = r.error().kind;
        if (k != ApiErrorKind::not_sent && k != ApiErrorKind::server_error && k != ApiErrorKind::busy) co_return r;
        co_await pause(options_.busy_backoff * (1 << attempt));
    }
    co_return r;
}

awaitable<ApiResult<Json>> groupchat_list(ApiClient& api, std::string cursor, int limit)
{
    Json body{{"status_filter", 0}, {"limit", limit}};
    if (!cursor.empty()) body["cursor"] = cursor;
    return api.post("externalcontact/groupchat/list", std::move(body), true);
}

awaitable<ApiResult<Json>> groupchat_get(ApiClient& api, std::string chat_id)
{
    return api.post("externalcontact/groupchat/get", Json{{"chat_id", chat_id}, {"need_name", 1}}, true);
}

awaitable<ApiResult<Json>> add_group_msg_template(ApiClient& api, std::string sender, std::vector<std::string> chat_ids,
                                                  std::string text, Json attachments)
{
    Json body{{"chat_type", "group"}, {"sender", sender}, {"chat_id_list", chat_ids}};
    if (!text.empty()) body["text"] = {{"content", text}};
    if (!attachments.empty()) body["attachments"] = std::move(attachments);
    return api.post("externalcontact/add_msg_template", std::move(body), false);
}

awaitable<ApiResult<Json>> add_single_msg_template(ApiClient& api, std::string sender, std::vector<std::string> external_userids,
                                                   std::string text, Json attachments)
{
    Json body{{"chat_type", "single"}, {"sender", sender}, {"external_userid", external_userids}};
    if (!text.empty()) body["text"] = {{"content", text}};
    if (!attachments.empty()) body["attachments"] = std::move(attachments);
    return api.post("externalcontact/add_msg_template", std::move(body), false);
}

awaitable<ApiResult<Json>> get_groupmsg_send_result(ApiClient& api, std::string msgid, std::string userid, std::string cursor)
{
    Json body{{"msgid", msgid}, {"userid", userid}, {"limit", 1000}};
    if (!cursor.empty()) body["cursor"] = cursor;
    return api.post("externalcontact/get_groupmsg_send_result", std::move(body), true);
}

awaitable<ApiResult<Json>> send_welcome_msg(ApiClient& api, std::string welcome_code, std::string text)
{
    // A code is usable once: a resend after a lost answer gets 41051, never a second welcome.
    Json body{{"welcome_code", welcome_code}, {"text", {{"content", text}}}};
    return api.post("externalcontact/send_welcome_msg", std::move(body), true);
}

awaitable<ApiResult<Json>> group_welcome_template_add(ApiClient& api, std::string text, bool notify)
{
    Json body{{"text", {{"content", text}}}, {"notify", notify ? 1 : 0}};
    return api.post("externalcontact/group_welcome_template/add", std::move(body), false);
}

awaitable<ApiResult<Json>> group_welcome_template_edit(ApiClient& api, std::string template_id, std::string text)
{
    Json body{{"template_id", template_id}, {"text", {{"content", text}}}};
    return api.post("externalcontact/group_welcome_template/edit", std::move(body), true);
}

awaitable<ApiResult<Json>> group_welcome_template_get(ApiClient& api, std::string template_id)
{
    return api.post("externalcontact/group_welcome_template/get", Json{{"template_id", template_id}}, true);
}

awaitable<ApiResult<Json>> group_welcome_template_del(ApiClient& api, std::string template_id)
{
    return api.post("externalcontact/group_welcome_template/del", Json{{"template_id", template_id}}, true);
}

awaitable<ApiResult<Json>> get_corp_tag_list(ApiClient& api)
{
    return api.post("externalcontact/get_corp_tag_list", Json::object(), true);
}

awaitable<ApiResult<Json>> add_corp_tag(ApiClient& api, std::string group_name, std::vector<std::string> names)
{
    Json tags = Json::array();
    for (const auto& n : names) tags.push_back({{"name", n}});
    // Not retried on an unknown outcome: a second add of the same name fails, and the tag list
    // is read again before the next attempt.
    return api.post("externalcontact/add_corp_tag", Json{{"group_name", group_name}, {"tag", tags}}, false);
}

awaitable<ApiResult<Json>> mark_tag(ApiClient& api, std::string userid, std::string external_userid, std::vector<std::string> add,
                                    std::vector<std::string> remove)
{
    Json body{{"userid", userid}, {"external_userid", external_userid}};
    if (!add.empty()) body["add_tag"] = add;
    if (!remove.empty()) body["remove_tag"] = remove;
    // Marking a tag twice leaves the same state: safe to resend.
    return api.post("externalcontact/mark_tag", std::move(body), true);
}

awaitable<ApiResult<Json>> message_send(ApiClient& api, std::vector<std::string> users, Json message, int duplicate_check_s)
{
    std::string touser;
    for (const auto& u : users) touser += (touser.empty() ? "" : "|") + u;
    Json body = std::move(message);
    body["touser"] = touser;
    body["agentid"] = api.options().agent_id;
    body["enable_duplicate_check"] = duplicate_check_s > 0 ? 1 : 0;
    if (duplicate_check_s > 0) body["duplicate_check_interval"] = duplicate_check_s;
    return api.post("message/send", std::move(body), duplicate_check_s > 0);
}

awaitable<ApiResult<Json>> convert_to_openid(ApiClient& api, std::string member, bool customer)
{
    // A lookup: asking twice is harmless.
    if (customer) return api.post("externalcontact/convert_to_openid", Json{{"external_userid", member}}, true);
    return api.post("user/convert_to_openid", Json{{"userid", member}}, true);
}

awaitable<ApiResult<Json>> appchat_create(ApiClient& api, std::string name, std::string owner, std::vector<std::string> users,
                                          std::string chat_id)
{
    Json body{{"name", name}, {"owner", owner}, {"userlist", users}};
    if (!chat_id.empty()) body["chatid"] = chat_id;
    // With a chat id of our own, a resend gets 86215 (exists) rather than a second group.
    return api.post("appchat/create", std::move(body), !chat_id.empty());
}

awaitable<ApiResult<Json>> appchat_send(ApiClient& api, std::string chat_id, Json message)
{
    Json body = std::move(message);
    body["chatid"] = chat_id;
    return api.post("appchat/send", std::move(body), false);
}

awaitable<ApiResult<Json>> appchat_update(ApiClient& api, std::string chat_id, std::vector<std::string> add,
                                          std::vector<std::string> remove)
{
    Json body{{"chatid", chat_id}};
    if (!add.empty()) body["add_user_list"] = add;
    if (!remove.empty()) body["del_user_list"] = remove;
    return api.post("appchat/update", std::move(body), true);
}

} // namespace qunbot::wecom
