#pragma once
/// \file
/// What each platform-neutral action becomes on WeCom (the capability table in the README), and
/// performing it through the API client. Where WeCom has no API for an action (removing a member
/// from, or recalling a message in, a customer group), the action is degraded to a notice to the
/// group owner with who, what, why and what to do; the outcome says so. No policy here: which
/// action to take was decided by the rules.

#include "adapters/wecom/api_client.hpp"
#include "bot/core/action.hpp"
#include "bot/core/secret.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qunbot::wecom {

/// The kind of chat an action's group is, as far as the API is concerned.
enum class GroupKind {
    none,     ///< no group: a 1:1 action
    customer, ///< a customer group (客户群): no direct posting, no removal
    app_chat, ///< an internal group this app created (appchat/*)
    robot,    ///< a group with a configured webhook robot
};
[[nodiscard]] std::string_view to_string(GroupKind kind) noexcept;

/// How an action is carried out.
struct Route {
    std::string api;        ///< the call that does it, e.g. "externalcontact/add_msg_template"
    bool retry_safe = false; ///< may be sent again when the first outcome is unknown
    std::string how;        ///< one line for logs and the README table
};
/// `is_customer` tells whether `target` is an external contact (wm…/wo…).
[[nodiscard]] Route route(const core::Action& action, GroupKind kind, bool is_customer);

/// What the delivery worker knows about the action's surroundings.
struct Context {
    GroupKind kind = GroupKind::none;
    std::string group_name;
    std::string owner;               ///< customer group owner (needed for mass sends and notices)
    std::vector<std::string> admins; ///< customer group admins (copied on notices)
    core::Secret robot_key;          ///< for GroupKind::robot
    std::string staff;               ///< staff member a 1:1 customer action goes through
    std::string tag_id;              ///< resolved corp tag id for tag actions (empty: resolve)
    bool is_customer = false;        ///< `target` is an external contact
    int duplicate_check_s = 3600;
    int attempts = 1;                ///< this is attempt number N
};

struct Outcome {
    enum class Status { done, retry, dead, check };
    Status status = Status::done;
    std::string result;                  ///< what was done, for the outbox and `qunbot outbox`
    std::optional<ApiError> error;
    std::vector<core::Action> follow_ups; ///< e.g. the owner notice of a mass-send task
    std::string learned_tag_id;          ///< tag id resolved or created on the way
    std::string task_id;                 ///< msgid of a mass-send task that was created
    std::string task_sender;             ///< who must confirm it
};

/// Maps a failed call to an outcome: transient errors retry; an unknown outcome retries only
/// when the route is safe to repeat, otherwise a person must check; the rest is dead.
[[nodiscard]] Outcome outcome_of(const ApiError& error, bool retry_safe);

/// Performs one action (everything except posts to customer groups, which are batched).
boost::asio::awaitable<Outcome> perform(ApiClient& api, core::Action action, Context context);

/// One mass-send task for `sender` to `groups` with `text` (notes §4.3), plus the owner notice
/// as a follow-up action (keyed by the task's msgid). `tenant`/`app` address the follow-up.
boost::asio::awaitable<Outcome> perform_mass_send(ApiClient& api, std::string tenant, std::string app, std::string sender,
                                                  std::vector<std::string> groups, std::string text, std::string attachments);

/// WeCom's add_msg_template attachments for an action's platform-neutral attachments.
[[nodiscard]] Json template_attachments(const std::string& attachments);
/// One app/robot/staff message for an action with content: text, or a news card for a link or
/// image (those APIs need an uploaded media_id for images), a mini-program named in the text.
/// `degraded` says what was changed, empty when nothing was.
[[nodiscard]] Json single_message(const core::Action& action, bool robot, std::string& degraded);

/// Looks up a corp tag id by name, creating the tag (in tag group "qunbot") when `create`.
boost::asio::awaitable<ApiResult<std::string>> resolve_tag(ApiClient& api, std::string name, bool create);

} // namespace qunbot::wecom
