#pragma once
/// \file
/// The WeCom server API client (notes §4): access_token per app, cached and refreshed before it
/// expires, one refresh at a time however many calls wait for it, invalidated and retried once
/// on 40001/40014/42001; −1 retried with back-off; everything else returned as an `ApiError`.
/// Rate limits and the decision to retry later belong to the caller (bot/delivery). Runs on the
/// strand of its `https::Client`.

#include "adapters/https/client.hpp"
#include "adapters/wecom/api_error.hpp"
#include "bot/core/result.hpp"
#include "bot/core/secret.hpp"

#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qunbot::wecom {

using Json = nlohmann::json;
template <class T>
using ApiResult = core::Result<T, ApiError>;

struct ApiOptions {
    https::Origin origin;     ///< https://qyapi.weixin.qq.com unless configured
    std::string corp_id;
    core::Secret corp_secret; ///< never logged; only sent to gettoken
    int agent_id = 0;         ///< for message/send
    int busy_retries = 3;     ///< −1: "建议重试次数不超过3次"
    std::chrono::milliseconds busy_backoff{200}; ///< doubled per retry
    std::function<std::int64_t()> now_ms;        ///< wall clock; injectable for tests
};

struct ApiStats {
    std::uint64_t token_fetches = 0;
    std::uint64_t token_refreshes_on_error = 0; ///< refreshes forced by 40001/40014/42001
    std::uint64_t busy_retries = 0;
};

class ApiClient {
public:
    ApiClient(https::Client& http, ApiOptions options);

    /// POST `/cgi-bin/<api>?access_token=…` with a JSON body. With `retry_unknown` false, a
    /// timeout after sending is returned as `unknown_outcome` instead of being resent (for
    /// calls that are not idempotent, such as add_msg_template).
    boost::asio::awaitable<ApiResult<Json>> post(std::string api, Json body, bool retry_unknown);
    /// GET `/cgi-bin/<api>?access_token=…&<query>` (query already encoded).
    boost::asio::awaitable<ApiResult<Json>> get(std::string api, std::string query);
    /// A group robot: POST `/cgi-bin/webhook/send?key=…` (no token; the key is a secret).
    boost::asio::awaitable<ApiResult<Json>> webhook(core::Secret key, Json body);

    /// The current token, fetching it if needed (single flight).
    boost::asio::awaitable<ApiResult<std::string>> token();
    /// Drops the cached token if it is still `stale` (several calls may report the same one).
    void invalidate(const std::string& stale);

    [[nodiscard]] const ApiStats& stats() const noexcept { return stats_; }
    [[nodiscard]] const ApiOptions& options() const noexcept { return options_; }

private:
    boost::asio::awaitable<ApiResult<Json>> exchange(std::string api, std::string method, std::string target,
                                                     std::string body);
    boost::asio::awaitable<ApiResult<Json>> with_token(std::string api, std::string method, std::string query,
                                                       std::string body, bool retry_unknown);

    https::Client& http_;
    ApiOptions options_;
    std::string token_;
    std::int64_t token_expires_ms_ = 0; ///< when we stop using it (a margin before WeCom's expiry)
    bool refreshing_ = false;
    std::uint64_t generation_ = 0;      ///< refreshes finished
    std::optional<ApiError> last_refresh_error_;
    boost::asio::steady_timer refreshed_; ///< waiters wait on it; cancelled when a refresh ends
    ApiStats stats_;
};

// Typed calls (notes §4). Each returns WeCom's JSON answer on errcode 0. They are plain
// functions returning the call's awaitable (g++ 12 mishandles string literals passed to
// coroutines inside co_await expressions).

/// §4.2 groupchat/list, one page (status_filter 0). Empty cursor = first page.
boost::asio::awaitable<ApiResult<Json>> groupchat_list(ApiClient& api, std::string cursor, int limit);
/// §4.2 groupchat/get with need_name=1.
boost::asio::awaitable<ApiResult<Json>> groupchat_get(ApiClient& api, std::string chat_id);
/// §4.3 add_msg_template for customer groups: a mass-send task `sender` must confirm.
/// `attachments` is WeCom's attachments array (image/link/miniprogram items), possibly empty.
boost::asio::awaitable<ApiResult<Json>> add_group_msg_template(ApiClient& api, std::string sender,
                                                               std::vector<std::string> chat_ids, std::string text,
                                                               Json attachments = Json::array());
/// §4.3 add_msg_template to customers 1:1 through `sender`.
boost::asio::awaitable<ApiResult<Json>> add_single_msg_template(ApiClient& api, std::string sender,
                                                                std::vector<std::string> external_userids, std::string text,
                                                                Json attachments = Json::array());
/// §4.3 get_groupmsg_send_result: did `userid` send task `msgid`?
boost::asio::awaitable<ApiResult<Json>> get_groupmsg_send_result(ApiClient& api, std::string msgid, std::string userid,
                                                                 std::string cursor);
/// §4.4 send_welcome_msg (welcome code valid 20 s, once).
boost::asio::awaitable<ApiResult<Json>> send_welcome_msg(ApiClient& api, std::string welcome_code, std::string text);
/// §4.5 group_welcome_template add / edit / get / del (text content).
boost::asio::awaitable<ApiResult<Json>> group_welcome_template_add(ApiClient& api, std::string text, bool notify);
boost::asio::awaitable<ApiResult<Json>> group_welcome_template_edit(ApiClient& api, std::string template_id, std::string text);
boost::asio::awaitable<ApiResult<Json>> group_welcome_template_get(ApiClient& api, std::string template_id);
boost::asio::awaitable<ApiResult<Json>> group_welcome_template_del(ApiClient& api, std::string template_id);
/// §4.6 customer tags.
boost::asio::awaitable<ApiResult<Json>> get_corp_tag_list(ApiClient& api);
boost::asio::awaitable<ApiResult<Json>> add_corp_tag(ApiClient& api, std::string group_name, std::vector<std::string> names);
boost::asio::awaitable<ApiResult<Json>> mark_tag(ApiClient& api, std::string userid, std::string external_userid,
                                                 std::vector<std::string> add, std::vector<std::string> remove);
/// §4.7 message/send to staff; `message` holds msgtype and its object (text, markdown,
/// template_card). Duplicate check is on (WeCom drops an identical request within the
/// interval), which makes a resend after a crash harmless.
boost::asio::awaitable<ApiResult<Json>> message_send(ApiClient& api, std::vector<std::string> users, Json message,
                                                     int duplicate_check_s);
/// §6 openid for WeChat Pay: `externalcontact/convert_to_openid` for a WeChat customer (wm…),
/// `user/convert_to_openid` for a staff member. Answer: {"openid": ...}.
boost::asio::awaitable<ApiResult<Json>> convert_to_openid(ApiClient& api, std::string member, bool customer);
/// §4.8 app-created internal groups.
boost::asio::awaitable<ApiResult<Json>> appchat_create(ApiClient& api, std::string name, std::string owner,
                                                       std::vector<std::string> users, std::string chat_id);
boost::asio::awaitable<ApiResult<Json>> appchat_send(ApiClient& api, std::string chat_id, Json message);
boost::asio::awaitable<ApiResult<Json>> appchat_update(ApiClient& api, std::string chat_id, std::vector<std::string> add,
                                                       std::vector<std::string> remove);

} // namespace qunbot::wecom
